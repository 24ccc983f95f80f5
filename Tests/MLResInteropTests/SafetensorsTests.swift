import Foundation
import Testing
import MLResHDF5
import MLResInterop
import MLResModel
import MLResTestSupport

/// A safetensors file from a header text and a byte buffer (for hostile inputs).
func safetensorsFile(header: String, buffer: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out = [UInt8]()
    withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    return out + h + buffer
}

func floatBytes(_ v: [Float]) -> [UInt8] {
    v.flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } }
}

@Suite struct SafetensorsFormatTests {
    @Test("encode → parse gives back names, dtypes, shapes, values and metadata; header padded to 8")
    func roundTrip() throws {
        let bytes = Safetensors.encode([.init(name: "a.weight", float32: [1, -2.5, 3, .pi], shape: [2, 2]),
                                        .init(name: "a.count", int64: [7], shape: []),
                                        .init(name: "b", float32: [], shape: [0, 3])],
                                       metadata: ["k": "v", "json": "[1,2]"])
        let n = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(n % 8 == 0)
        let f = try Safetensors.parse(bytes)
        #expect(f.metadata == ["k": "v", "json": "[1,2]"])
        #expect(f.entries.map(\.name) == ["a.weight", "a.count", "b"])
        let a = try #require(f.entry("a.weight"))
        #expect(a.dtype == .F32 && a.shape == [2, 2] && f.float32(a) == [1, -2.5, 3, .pi])
        #expect(f.int64(try #require(f.entry("a.count"))) == [7])
    }

    /// Each hostile file and a phrase its error must contain.
    static let hostile: [(String, [UInt8], String)] = {
        let good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}"
        let buf = floatBytes([1, 2, 3])
        return [
            ("header length past the end", safetensorsFile(header: good, buffer: buf, declaredLength: 500), "runs past the end"),
            ("huge header length", safetensorsFile(header: good, buffer: buf, declaredLength: 1 << 40), "larger than the limit"),
            ("header length 2^64-1", safetensorsFile(header: good, buffer: buf, declaredLength: .max), "larger than the limit"),
            ("shorter than 8 bytes", [1, 0, 0], "shorter than the 8-byte"),
            ("overlapping offsets", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", buffer: buf), "b: data_offsets [4, 12] overlaps"),
            ("offsets out of range", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", buffer: buf), "b: data_offsets [8, 24] run past the end"),
            ("a gap", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", buffer: buf), "b: data_offsets [8, 12] leaves a gap"),
            ("bytes left over", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", buffer: buf), "cover 8 bytes but the buffer after the header holds 12"),
            ("dtype × shape mismatch", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,12]}}", buffer: buf), "b: data_offsets [8, 12] hold 4 bytes, but dtype F64 × shape [1] needs 8"),
            ("shape overflow", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,12]}}", buffer: buf), "overflows"),
            ("duplicate names", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", buffer: buf), "'a' appears more than once"),
            ("begin after end", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", buffer: buf), "not 0 <= begin <= end"),
            ("unknown dtype", safetensorsFile(header: "{\"a\":{\"dtype\":\"F31\",\"shape\":[3],\"data_offsets\":[0,12]}}", buffer: buf), "unknown dtype 'F31'"),
            ("fractional shape", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,12]}}", buffer: buf), "a: entry is not"),
            ("negative offset", safetensorsFile(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[-4,8]}}", buffer: buf), "not 0 <= begin"),
            ("not JSON", safetensorsFile(header: "{\"a\": [", buffer: buf), "header is not a JSON object"),
            ("not an object", safetensorsFile(header: "[1,2,3]     ", buffer: buf), "does not start with '{'"),
            ("metadata not strings", safetensorsFile(header: "{\"__metadata__\":{\"h\":[1]},\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", buffer: buf), "__metadata__ is not a map of strings"),
            ("invalid UTF-8", safetensorsFile(header: "{\"a\":1}", buffer: []).enumerated().map { $0.offset == 10 ? 0xff : $0.element }, "not valid UTF-8"),
        ]
    }()

    @Test("hostile files are refused with an error naming the problem")
    func hostileRefused() {
        for (what, bytes, phrase) in Self.hostile {
            do {
                _ = try Safetensors.parse(bytes)
                Issue.record("\(what): accepted")
            } catch let e as Safetensors.FormatError {
                #expect(e.message.contains(phrase), "\(what): \(e.message)")
            } catch {
                Issue.record("\(what): unexpected error \(error)")
            }
        }
    }

    @Test("mlres-surgery import refuses every hostile file: exit 2, the file named, nothing written")
    func importRefusesHostile() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (i, (what, bytes, phrase)) in Self.hostile.enumerated() {
            let f = dir + "/h\(i).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: f))
            let before = listing(dir)
            let r = try surgery("import", f, "-o", dir + "/out.h5", "--blocks", "1", "--widths", "2", "--input-shape", "1,4,4")
            #expect(r.status == 2, "\(what): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(f) && r.stderr.contains(phrase), "\(what): \(r.stderr)")
            #expect(listing(dir) == before, "\(what): something was written")
        }
    }
}

@Suite struct StateDictTests {
    func exported(_ net: Network, lineage: [LineageEvent] = []) throws -> Safetensors.File {
        try Safetensors.parse(StateDict.encode(Checkpoint(network: net, lineage: lineage), sourceSHA256: "00ff"))
    }

    @Test("names are the PyTorch state_dict names, with num_batches_tracked; metadata carries architecture, h, standardisation, lineage")
    func namesAndMetadata() throws {
        let net = trainedLikeNetwork(Architecture(blocks: [1, 2], widths: [4, 6], inputShape: [3, 8, 8], numClasses: 5),
                                     h: [[0.5], [0, 1.25]], seed: 3)
        let f = try exported(net, lineage: [LineageEvent(op: "init")])
        let names = f.entries.map(\.name)
        #expect(names.first == "stem.conv.weight" && names.contains("stages.1.blocks.0.conv1.weight"))
        #expect(names.contains("stages.1.blocks.1.bn2.num_batches_tracked") && names.contains("head.bn.num_batches_tracked"))
        #expect(names.count == net.namedTensors.count + 7)   // 3 blocks × 2 BNs + head
        let m = try #require(f.metadata)
        #expect(m["h"] == "[[0.5],[0,1.25]]" && m["stage_blocks"] == "[1,2]" && m["stage_widths"] == "[4,6]")
        #expect(m["input_shape"] == "[3,8,8]" && m["num_classes"] == "5" && m["format"] == "pt")
        #expect(m["lineage"]?.contains("\"op\":\"export\"") == true && m["source_sha256"] == "00ff")
        let mean = try JSONDecoder().decode([Float].self, from: Data(m["input_mean"]!.utf8))
        #expect(mean == net.inputMean)
    }

    @Test("decode(encode(x)) is x: every tensor bit for bit, h, standardisation, origins; lineage gains export and import")
    func roundTrip() throws {
        let net = trainedLikeNetwork(Architecture(blocks: [2, 3], widths: [4, 8], inputShape: [1, 6, 6], numClasses: 4),
                                     h: [[1, 0], [0.1, 0.2, 0.3]], seed: 4)
        let f = try exported(net, lineage: [LineageEvent(op: "init")])
        let c = try StateDict.decode(f, fileName: "/x/y.safetensors", sha256: "beef")
        #expect(c.network == net)
        #expect(c.lineage.map(\.op) == ["init", "export", "import"])
        #expect(c.lineage[1].parentSHA256 == "00ff" && c.lineage[2].parentSHA256 == "beef")
        #expect(c.lineage[2].args["source"] == .string("y.safetensors"))
    }

    @Test("missing, unexpected, mistyped, misshapen, NaN tensors and contradicting flags are refused by name")
    func importRefusals() throws {
        let net = trainedLikeNetwork(Architecture(blocks: [1, 1], widths: [2, 4], inputShape: [1, 4, 4], numClasses: 3),
                                     h: [[1], [1]], seed: 5)
        let good = try exported(net)
        func tensors(_ edit: (inout [Safetensors.TensorBytes]) -> Void) -> [Safetensors.TensorBytes] {
            var t = good.entries.map { e in
                Safetensors.TensorBytes(name: e.name, dtype: e.dtype, shape: e.shape,
                                        bytes: Array(good.bytes[(good.dataStart + e.offsets.lowerBound) ..< (good.dataStart + e.offsets.upperBound)]))
            }
            edit(&t)
            return t
        }
        func refused(_ t: [Safetensors.TensorBytes], _ phrase: String, flags: StateDict.ArchitectureFlags = .init(),
                     metadata: [String: String]?? = .none) {
            do {
                let f = try Safetensors.parse(Safetensors.encode(t, metadata: metadata ?? good.metadata))
                _ = try StateDict.decode(f, fileName: "f", sha256: "", flags: flags)
                Issue.record("accepted; expected \(phrase)")
            } catch {
                #expect("\(error)".contains(phrase), "\(error)")
            }
        }
        refused(tensors { $0.removeAll { $0.name == "stages.1.blocks.0.bn2.bias" } }, "stages.1.blocks.0.bn2.bias: missing tensor")
        refused(tensors { $0.append(.init(name: "stages.1.blocks.1.conv1.weight", float32: [0], shape: [1])) },
                "stages.1.blocks.1.conv1.weight: unexpected tensor")
        refused(tensors { $0.append(.init(name: "fc.weight", float32: [0], shape: [1])) }, "fc.weight: unexpected tensor")
        refused(tensors { t in
            let i = t.firstIndex { $0.name == "head.fc.bias" }!
            t[i] = .init(name: "head.fc.bias", dtype: .F64, shape: [3], bytes: [UInt8](repeating: 0, count: 24))
        }, "head.fc.bias: dtype F64, expected F32")
        refused(tensors { t in
            let i = t.firstIndex { $0.name == "stem.conv.weight" }!
            t[i] = .init(name: "stem.conv.weight", float32: [Float](repeating: 0, count: 18), shape: [2, 1, 3, 3, 1])
        }, "stem.conv.weight: shape [2,1,3,3,1], expected [2,1,3,3]")
        refused(tensors { t in
            let i = t.firstIndex { $0.name == "stages.0.blocks.0.conv2.weight" }!
            var v = [Float](repeating: 0.5, count: 36); v[7] = .nan
            t[i] = .init(name: "stages.0.blocks.0.conv2.weight", float32: v, shape: [2, 2, 3, 3])
        }, "stages.0.blocks.0.conv2.weight[7] = nan")
        refused(tensors { t in
            let i = t.firstIndex { $0.name == "head.bn.running_var" }!
            t[i] = .init(name: "head.bn.running_var", float32: [1, -1, 1, 1], shape: [4])
        }, "head.bn.running_var[1] = -1.0, a variance must be >= 0")
        refused(tensors { _ in }, "--blocks [2, 2] contradicts", flags: .init(blocks: [2, 2]))
        refused(tensors { _ in }, "give --blocks", metadata: .some(nil))
        var noArch = good.metadata!; noArch["h"] = "[[1],[-0.5]]"
        refused(tensors { _ in }, "h of block 1.0 is -0.5", metadata: .some(noArch))
    }
}
