import Foundation
import MLResModel

/// A checkpoint's network as a PyTorch `state_dict` in safetensors, and back.
///
/// Names are the checkpoint paths below `/model` with `.` for `/` — the attribute names of the
/// module in `scripts/mlres_torch.py` — e.g. `stages.1.blocks.0.conv1.weight`. Every BN also
/// carries PyTorch's `num_batches_tracked` (int64 scalar, written as 0: with a fixed momentum
/// PyTorch never reads it), so that `load_state_dict(strict=True)` accepts the file.
/// Everything that is not a tensor travels in `__metadata__` (string → string, JSON values):
/// see ``MetadataKey``.
public enum StateDict {
    /// The `__metadata__` keys written by ``encode(_:sourceSHA256:)``.
    public enum MetadataKey: String, CaseIterable, Sendable {
        case format                 // "pt", the safetensors convention for PyTorch tensors
        case mlresFormat = "mlres_format"   // "mlres.state_dict.v1"
        case architecture, shortcut // "preact-resnet", "zero-pad"
        case stageBlocks = "stage_blocks", stageWidths = "stage_widths"   // JSON [Int]
        case inputShape = "input_shape"                                    // JSON [C,H,W]
        case numClasses = "num_classes"                                    // JSON Int
        case h                                                             // JSON [[Double]] per stage, per block
        case origin                                                        // JSON [[String]]
        case inputMean = "input_mean", inputStd = "input_std"             // JSON [Float]
        case bnEpsilon = "bn_epsilon", bnMomentum = "bn_momentum"          // JSON Double
        case classNames = "class_names"                                    // JSON [String] (optional)
        case lineage                                                       // JSON [event], oldest first
        case sourceSHA256 = "source_sha256"                                // the exported checkpoint's digest
    }

    public static let mlresFormat = "mlres.state_dict.v1"

    /// `model/stages/0/blocks/1/bn1/weight` → `stages.0.blocks.1.bn1.weight`.
    public static func torchName(_ checkpointPath: String) -> String {
        var p = checkpointPath
        if p.hasPrefix("model/") { p.removeFirst(6) }
        return p.replacingOccurrences(of: "/", with: ".")
    }

    /// The BN prefixes of a network (`stages.0.blocks.0.bn1`, …, `head.bn`), for `num_batches_tracked`.
    static func bnPrefixes(_ paths: [String]) -> [String] {
        paths.filter { $0.hasSuffix(".running_var") }.map { String($0.dropLast(".running_var".count)) }
    }

    /// The safetensors bytes of `checkpoint`'s network. `sourceSHA256` is the digest of the
    /// checkpoint file; the lineage in the metadata ends with this export. Throws when a
    /// tensor holds a non-finite value (named by tensor and index): nothing is exported then.
    public static func encode(_ checkpoint: Checkpoint, sourceSHA256: String) throws -> [UInt8] {
        let net = checkpoint.network
        try requireFinite(net)
        var tensors: [Safetensors.TensorBytes] = []
        for nt in net.namedTensors {
            let name = torchName(nt.path)
            tensors.append(.init(name: name, float32: nt.tensor.data, shape: nt.tensor.shape))
            if name.hasSuffix(".running_var") {
                tensors.append(.init(name: String(name.dropLast("running_var".count)) + "num_batches_tracked",
                                     int64: [0], shape: []))
            }
        }
        var lineage = checkpoint.lineage
        lineage.append(LineageEvent(op: "export", args: ["format": .string("safetensors")], parentSHA256: sourceSHA256))
        var m: [MetadataKey: String] = [
            .format: "pt", .mlresFormat: mlresFormat,
            .architecture: Network.architecture, .shortcut: Network.shortcut,
            .stageBlocks: json(net.stageBlocks), .stageWidths: json(net.stageWidths),
            .inputShape: json(net.inputShape), .numClasses: json(net.numClasses),
            .h: json(net.stepSizes), .origin: json(net.stages.map { $0.blocks.map(\.origin) }),
            .inputMean: json(net.inputMean), .inputStd: json(net.inputStd),
            .bnEpsilon: json(net.bnEpsilon), .bnMomentum: json(net.bnMomentum),
            .lineage: "[" + lineage.map(\.jsonText).joined(separator: ",") + "]",
            .sourceSHA256: sourceSHA256,
        ]
        if let names = net.classNames { m[.classNames] = json(names) }
        return Safetensors.encode(tensors, metadata: Dictionary(uniqueKeysWithValues: m.map { ($0.key.rawValue, $0.value) }))
    }

    /// What `mlres-surgery import` takes from flags when the file's metadata does not say it.
    public struct ArchitectureFlags: Sendable, Equatable {
        public var blocks: [Int]?
        public var widths: [Int]?
        public var inputShape: [Int]?
        public var classes: Int?
        /// One h for every block, or one per block in checkpoint order (stage by stage).
        public var h: [Double]?
        public var inputMean: [Float]?
        public var inputStd: [Float]?
        public init(blocks: [Int]? = nil, widths: [Int]? = nil, inputShape: [Int]? = nil, classes: Int? = nil,
                    h: [Double]? = nil, inputMean: [Float]? = nil, inputStd: [Float]? = nil) {
            self.blocks = blocks; self.widths = widths; self.inputShape = inputShape; self.classes = classes
            self.h = h; self.inputMean = inputMean; self.inputStd = inputStd
        }
        public var isEmpty: Bool { self == ArchitectureFlags() }
    }

    /// A problem with the file's contents, named by tensor, metadata key or flag.
    public struct ImportError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
        init(_ m: String) { message = m }
    }

    /// The checkpoint a validated safetensors file describes. The architecture comes from the
    /// `__metadata__` (as ``encode(_:sourceSHA256:)`` writes it) or, when the file has none,
    /// from `flags` (blocks, widths and input shape required; classes from the classifier's
    /// shape unless given; h = 1 and the identity standardisation unless given). Flags that
    /// contradict the metadata are refused. Every expected tensor must be present, F32, of the
    /// expected shape and finite; any other name (except BN `num_batches_tracked` int64
    /// scalars, which PyTorch adds and mlres does not need) is refused by name. The lineage
    /// is the file's (if any) followed by an `import` event whose `parent_sha256` is `sha256`,
    /// the digest of the imported file.
    public static func decode(_ file: Safetensors.File, fileName: String, sha256: String,
                              flags: ArchitectureFlags = .init()) throws -> Checkpoint {
        let meta = file.metadata ?? [:]
        let hasArch = meta[MetadataKey.stageBlocks.rawValue] != nil
        func value<T: Decodable>(_ k: MetadataKey, _ t: T.Type) throws -> T? {
            guard let text = meta[k.rawValue] else { return nil }
            do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) }
            catch { throw ImportError("__metadata__[\"\(k.rawValue)\"] = \(text.prefix(80)) is not a valid \(T.self)") }
        }
        if let a = meta[MetadataKey.architecture.rawValue], a != Network.architecture {
            throw ImportError("__metadata__[\"architecture\"] is \"\(a)\", only \"\(Network.architecture)\" is supported")
        }
        if let s = meta[MetadataKey.shortcut.rawValue], s != Network.shortcut {
            throw ImportError("__metadata__[\"shortcut\"] is \"\(s)\", only \"\(Network.shortcut)\" is supported")
        }

        func pick<T: Equatable>(_ key: MetadataKey, _ metaValue: T?, _ flag: T?, _ flagName: String) throws -> T? {
            if let m = metaValue, let f = flag, m != f {
                throw ImportError("\(flagName) \(f) contradicts the file's __metadata__[\"\(key.rawValue)\"] = \(m)")
            }
            return metaValue ?? flag
        }
        let blocks = try pick(.stageBlocks, try value(.stageBlocks, [Int].self), flags.blocks, "--blocks")
        let widths = try pick(.stageWidths, try value(.stageWidths, [Int].self), flags.widths, "--widths")
        let inputShape = try pick(.inputShape, try value(.inputShape, [Int].self), flags.inputShape, "--input-shape")
        guard let blocks else { throw ImportError("the file has no architecture in its __metadata__: give --blocks (e.g. 2-2-2), --widths and --input-shape") }
        guard let widths else { throw ImportError("the file has no stage_widths in its __metadata__: give --widths (e.g. 16,32,64)") }
        guard let inputShape else { throw ImportError("the file has no input_shape in its __metadata__: give --input-shape C,H,W (e.g. 3,32,32)") }
        var classes = try pick(.numClasses, try value(.numClasses, Int.self), flags.classes, "--classes")
        if classes == nil, let fc = file.entry("head.fc.bias"), fc.shape.count == 1 { classes = fc.shape[0] }
        guard let classes else { throw ImportError("head.fc.bias is missing, and --classes was not given") }

        let arch = Architecture(blocks: blocks, widths: widths, inputShape: inputShape, numClasses: classes)
        if let e = arch.validationError() { throw ImportError("architecture: \(e)") }
        if blocks.count > 64 || blocks.contains(where: { $0 > 10_000 }) || widths.contains(where: { $0 > 65_536 })
            || inputShape.contains(where: { $0 > 65_536 }) || classes > 1 << 22 {
            throw ImportError("architecture \(blocks) × \(widths), input \(inputShape), \(classes) classes is beyond the format's bounds")
        }

        // Step sizes and origins.
        var hs: [[Double]]
        if let metaH = try value(.h, [[Double]].self) {
            if flags.h != nil && hasArch { throw ImportError("--h contradicts the file's __metadata__[\"h\"] (drop --h, or use mlres-surgery set-h afterwards)") }
            guard metaH.map(\.count) == blocks else {
                throw ImportError("__metadata__[\"h\"] has \(metaH.map(\.count)) step sizes per stage, the network has \(blocks)")
            }
            hs = metaH
        } else {
            let given = flags.h ?? [1]
            let total = blocks.reduce(0, +)
            guard given.count == 1 || given.count == total else {
                throw ImportError("--h has \(given.count) values, expected 1 or one per block (\(total))")
            }
            var k = 0
            hs = blocks.map { n in (0..<n).map { _ in defer { k += 1 }; return given.count == 1 ? given[0] : given[k] } }
        }
        for (s, st) in hs.enumerated() {
            for (b, h) in st.enumerated() where !(h.isFinite && h >= 0) {
                throw ImportError("h of block \(s).\(b) is \(h), expected a finite number >= 0")
            }
        }
        var origins = blocks.map { [String](repeating: "import", count: $0) }
        if let o = try value(.origin, [[String]].self), o.map(\.count) == blocks { origins = o }

        // Tensors: every expected name present, F32, right shape; nothing else. Checked on the
        // header alone, before anything is allocated.
        let expected = expectedTensors(arch)
        let expectedNames = Set(expected.map(\.name))
        let bookkeeping = Set(bnPrefixes(expected.map(\.name)).map { $0 + ".num_batches_tracked" })
        for e in file.entries where !expectedNames.contains(e.name) {
            if bookkeeping.contains(e.name) {
                guard e.shape.isEmpty || e.shape == [1], e.dtype == .I64 else {
                    throw ImportError("\(e.name): dtype \(e.dtype.rawValue) shape \(e.shape), expected an int64 scalar (PyTorch's BN counter)")
                }
                continue
            }
            throw ImportError("\(e.name): unexpected tensor: a \(arch.blocks.map(String.init).joined(separator: "-")) network of widths \(arch.widths) has no such parameter")
        }
        var found: [Safetensors.Entry] = []
        for (name, shape) in expected {
            guard let e = file.entry(name) else { throw ImportError("\(name): missing tensor (shape \(Tensor.describe(shape)))") }
            guard e.dtype == .F32 else { throw ImportError("\(name): dtype \(e.dtype.rawValue), expected F32 (float32)") }
            guard e.shape == shape else {
                throw ImportError("\(name): shape \(Tensor.describe(e.shape)), expected \(Tensor.describe(shape))")
            }
            found.append(e)
        }
        // Values: finite, variances >= 0.
        var template = Network.initialized(arch, seed: 0)
        for (nt, e) in zip(template.namedTensors, found) {
            precondition(torchName(nt.path) == e.name)
            let values = file.float32(e)
            if let i = values.firstIndex(where: { !$0.isFinite }) {
                throw ImportError("\(e.name)[\(i)] = \(values[i]), expected a finite number")
            }
            if e.name.hasSuffix("running_var"), let i = values.firstIndex(where: { $0 < 0 }) {
                throw ImportError("\(e.name)[\(i)] = \(values[i]), a variance must be >= 0")
            }
            template.setTensor(at: nt.path, Tensor(shape: e.shape, data: values))
        }
        for s in hs.indices { for b in hs[s].indices {
            template.stages[s].blocks[b].h = hs[s][b]
            template.stages[s].blocks[b].origin = origins[s][b]
        } }

        // Standardisation and BN hyper-parameters.
        let c = inputShape[0]
        let mean = try pick(.inputMean, try value(.inputMean, [Float].self), flags.inputMean, "--input-mean") ?? [Float](repeating: 0, count: c)
        let std = try pick(.inputStd, try value(.inputStd, [Float].self), flags.inputStd, "--input-std") ?? [Float](repeating: 1, count: c)
        guard mean.count == c, mean.allSatisfy(\.isFinite) else { throw ImportError("input_mean \(mean) must be \(c) finite numbers") }
        guard std.count == c, std.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw ImportError("input_std \(std) must be \(c) finite positive numbers") }
        template.inputMean = mean; template.inputStd = std
        if let eps = try value(.bnEpsilon, Double.self) {
            guard eps.isFinite && eps > 0 else { throw ImportError("bn_epsilon \(eps) must be finite and positive") }
            template.bnEpsilon = eps
        }
        if let mom = try value(.bnMomentum, Double.self) {
            guard mom.isFinite && mom >= 0 && mom <= 1 else { throw ImportError("bn_momentum \(mom) must be in [0, 1]") }
            template.bnMomentum = mom
        }
        if let names = try value(.classNames, [String].self) {
            guard names.count == classes else { throw ImportError("class_names has \(names.count) names for \(classes) classes") }
            template.classNames = names
        }

        var lineage: [LineageEvent] = []
        if let text = meta[MetadataKey.lineage.rawValue] {
            guard let data = text.data(using: .utf8),
                  let arr = try? JSONDecoder().decode([JSONValue].self, from: data) else {
                throw ImportError("__metadata__[\"lineage\"] is not a JSON list of events")
            }
            lineage = arr.compactMap { LineageEvent.parse($0.jsonText) }
        }
        var args: [String: JSONValue] = ["format": .string("safetensors"),
                                         "source": .string((fileName as NSString).lastPathComponent)]
        if !flags.isEmpty { args["architecture_from"] = .string(hasArch ? "metadata" : "flags") }
        lineage.append(LineageEvent(op: "import", args: args, parentSHA256: sha256))
        return Checkpoint(network: template, lineage: lineage)
    }

    /// (state_dict name, shape) of every tensor of `arch`, in the canonical order of
    /// ``Network/namedTensors`` (docs/checkpoint-format.md, "What the numbers must agree on").
    static func expectedTensors(_ arch: Architecture) -> [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = [("stem.conv.weight", [arch.widths[0], arch.inputShape[0], 3, 3])]
        func bn(_ p: String, _ c: Int) { for n in ["weight", "bias", "running_mean", "running_var"] { out.append(("\(p).\(n)", [c])) } }
        for s in arch.blocks.indices {
            for b in 0..<arch.blocks[s] {
                let (cin, cout, _) = arch.blockShape(stage: s, block: b)
                let p = "stages.\(s).blocks.\(b)"
                bn("\(p).bn1", cin)
                out.append(("\(p).conv1.weight", [cout, cin, 3, 3]))
                bn("\(p).bn2", cout)
                out.append(("\(p).conv2.weight", [cout, cout, 3, 3]))
            }
        }
        let last = arch.widths[arch.widths.count - 1]
        bn("head.bn", last)
        out.append(("head.fc.weight", [arch.numClasses, last]))
        out.append(("head.fc.bias", [arch.numClasses]))
        return out
    }

    /// Throws naming the first non-finite value of the network.
    static func requireFinite(_ net: Network) throws {
        for nt in net.namedTensors {
            if let i = nt.tensor.data.firstIndex(where: { !$0.isFinite }) {
                throw ImportError("\(torchName(nt.path))[\(i)] = \(nt.tensor.data[i]): refusing to export a non-finite value")
            }
        }
        for (s, st) in net.stages.enumerated() {
            for (b, blk) in st.blocks.enumerated() where !blk.h.isFinite {
                throw ImportError("h of block \(s).\(b) is \(blk.h): refusing to export a non-finite value")
            }
        }
    }

    static func json<T: Encodable>(_ v: T) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? enc.encode(v)) ?? Data("null".utf8), as: UTF8.self)
    }
}
