import Foundation

/// The safetensors file format (huggingface/safetensors, the format of its README and of its
/// reference Rust reader `safetensors::tensor::SafeTensors::read_metadata` / `Metadata::validate`):
///
///     8 bytes   N, little-endian u64: the length of the header
///     N bytes   UTF-8 JSON object {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
///               …, "__metadata__": {"key": "value", …}} (padded with spaces)
///     rest      the byte buffer; tensor NAME is bytes b..<e of it, little-endian, C order
///
/// We keep our own reader (about 200 lines) because no Swift package of the local copies reads
/// the format, and because every check below must run before a byte is trusted.
public enum Safetensors {
    /// Largest header accepted, as the reference reader's `MAX_HEADER_SIZE` (100 MB).
    public static let maxHeaderSize = 100_000_000

    /// Element types of the format (`Dtype` of the reference), with their sizes in bytes.
    public enum DType: String, Sendable, CaseIterable {
        case BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64
        public var size: Int {
            switch self {
            case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3: 1
            case .I16, .U16, .F16, .BF16: 2
            case .I32, .U32, .F32: 4
            case .F64, .I64, .U64: 8
            }
        }
    }

    /// One tensor's entry of the header: where its bytes are in the byte buffer.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte range relative to the start of the byte buffer.
        public var offsets: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// A tensor to write: its name, element type, shape and little-endian bytes.
    public struct TensorBytes: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var bytes: [UInt8]
        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
        }
        /// A float32 tensor.
        public init(name: String, float32 values: [Float], shape: [Int]) {
            var b = [UInt8](); b.reserveCapacity(values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { b.append(contentsOf: $0) } }
            self.init(name: name, dtype: .F32, shape: shape, bytes: b)
        }
        /// An int64 tensor.
        public init(name: String, int64 values: [Int64], shape: [Int]) {
            var b = [UInt8](); b.reserveCapacity(values.count * 8)
            for v in values { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
            self.init(name: name, dtype: .I64, shape: shape, bytes: b)
        }
    }

    /// A validated safetensors file: every entry's range lies in the buffer, the ranges tile it
    /// exactly in offset order, each matches dtype × shape, names are unique.
    public struct File: Sendable {
        /// The `__metadata__` map (string to string), nil when absent.
        public var metadata: [String: String]?
        /// Entries in offset order.
        public var entries: [Entry]
        /// The whole file.
        public var bytes: [UInt8]
        /// Where the byte buffer starts in `bytes` (8 + N).
        public var dataStart: Int

        public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

        /// The float32 values of an F32 entry.
        public func float32(_ e: Entry) -> [Float] {
            precondition(e.dtype == .F32)
            var out = [Float](repeating: 0, count: e.elementCount)
            let base = dataStart + e.offsets.lowerBound
            bytes.withUnsafeBytes { raw in
                for i in out.indices {
                    let bits = raw.loadUnaligned(fromByteOffset: base + 4 * i, as: UInt32.self)
                    out[i] = Float(bitPattern: UInt32(littleEndian: bits))
                }
            }
            return out
        }

        /// The int64 values of an I64 entry.
        public func int64(_ e: Entry) -> [Int64] {
            precondition(e.dtype == .I64)
            let base = dataStart + e.offsets.lowerBound
            return bytes.withUnsafeBytes { raw in
                (0..<e.elementCount).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8 * $0, as: Int64.self)) }
            }
        }
    }

    /// A file that is not valid safetensors; `message` names the tensor or field.
    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
        init(_ m: String) { message = m }
    }

    /// Parses and validates `bytes` (a whole file). Throws ``FormatError`` naming the first
    /// problem: a header length past the end of the file or above ``maxHeaderSize``, a header
    /// that is not a UTF-8 JSON object, an unknown dtype, a negative dimension, overflowing
    /// sizes, duplicate names, offsets that do not tile the buffer contiguously from 0 to its
    /// end (overlaps, gaps, out of range), a range whose length is not dtype size × element count,
    /// or a `__metadata__` that is not a map of strings.
    public static func parse(_ bytes: [UInt8]) throws -> File {
        guard bytes.count >= 8 else {
            throw FormatError("file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var n64: UInt64 = 0
        for i in 0..<8 { n64 |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n64 <= UInt64(maxHeaderSize) else {
            throw FormatError("header length \(n64) is larger than the limit of \(maxHeaderSize) bytes")
        }
        let n = Int(n64)
        guard n <= bytes.count - 8 else {
            throw FormatError("header length \(n) runs past the end of the file (\(bytes.count - 8) bytes follow the length)")
        }
        guard n >= 2 else { throw FormatError("header length \(n) is too small for a JSON object") }
        let headerBytes = Array(bytes[8 ..< 8 + n])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw FormatError("header does not start with '{'")
        }
        guard String(validating: headerBytes, as: UTF8.self) != nil else {
            throw FormatError("header is not valid UTF-8")
        }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(headerBytes)) }
        catch let e as FormatError { throw e }
        catch { throw FormatError("header is not a JSON object of tensor entries: \(describe(error))") }
        if let dup = duplicateTopLevelKey(headerBytes) {
            throw FormatError("tensor name '\(dup)' appears more than once in the header")
        }
        var entries: [Entry] = []
        for (name, info) in header.tensors {
            let dt = info.dtype
            guard let dtype = DType(rawValue: dt) else { throw FormatError("\(name): unknown dtype '\(dt)'") }
            let shape = info.shape, offs = info.data_offsets
            if let d = shape.first(where: { $0 < 0 }) { throw FormatError("\(name): shape \(shape) has a negative dimension \(d)") }
            guard offs.count == 2 else { throw FormatError("\(name): data_offsets has \(offs.count) numbers, expected 2") }
            guard offs[0] >= 0, offs[0] <= offs[1] else {
                throw FormatError("\(name): data_offsets [\(offs[0]), \(offs[1])] are not 0 <= begin <= end")
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                if o { throw FormatError("\(name): shape \(shape) overflows") }
                count = p
            }
            let (nbytes, o) = count.multipliedReportingOverflow(by: dtype.size)
            if o { throw FormatError("\(name): shape \(shape) overflows") }
            guard offs[1] - offs[0] == nbytes else {
                throw FormatError("\(name): data_offsets [\(offs[0]), \(offs[1])] hold \(offs[1] - offs[0]) bytes, but dtype \(dt) × shape \(shape) needs \(nbytes)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, offsets: offs[0] ..< offs[1]))
        }
        let metadata = header.metadata
        // Offsets must tile the buffer in order: 0 = b₀, e₀ = b₁, …, e_last = buffer length.
        entries.sort { ($0.offsets.lowerBound, $0.offsets.upperBound, $0.name) < ($1.offsets.lowerBound, $1.offsets.upperBound, $1.name) }
        let bufferLength = bytes.count - 8 - n
        var expected = 0
        for e in entries {
            if e.offsets.lowerBound != expected {
                let what = e.offsets.lowerBound < expected ? "overlaps the tensor before it" : "leaves a gap after the tensor before it"
                throw FormatError("\(e.name): data_offsets [\(e.offsets.lowerBound), \(e.offsets.upperBound)] \(what) (expected it to start at \(expected))")
            }
            if e.offsets.upperBound > bufferLength {
                throw FormatError("\(e.name): data_offsets [\(e.offsets.lowerBound), \(e.offsets.upperBound)] run past the end of the \(bufferLength)-byte buffer")
            }
            expected = e.offsets.upperBound
        }
        guard expected == bufferLength else {
            throw FormatError("the tensors cover \(expected) bytes but the buffer after the header holds \(bufferLength)")
        }
        return File(metadata: metadata, entries: entries, bytes: bytes, dataStart: 8 + n)
    }

    /// Serialises tensors (in the given order) and metadata. The header is padded with spaces
    /// to a multiple of 8 bytes, as the reference writer does, so the buffer is aligned.
    public static func encode(_ tensors: [TensorBytes], metadata: [String: String]?) -> [UInt8] {
        var header: [String: Any] = [:]
        var offset = 0
        for t in tensors {
            precondition(header[t.name] == nil && t.name != "__metadata__", "duplicate tensor name \(t.name)")
            precondition(t.bytes.count == t.shape.reduce(1, *) * t.dtype.size, "\(t.name): bytes do not match shape")
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]] as [String: Any]
            offset += t.bytes.count
        }
        if let m = metadata { header["__metadata__"] = m }
        var json = [UInt8]((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8))
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        for t in tensors { out.append(contentsOf: t.bytes) }
        return out
    }

    /// The decoded header: JSONDecoder rejects non-integers, booleans and overflow in shapes
    /// and offsets, and non-strings in `__metadata__`.
    private struct Header: Decodable {
        struct Info: Decodable { var dtype: String; var shape: [Int]; var data_offsets: [Int] }
        struct Key: CodingKey {
            var stringValue: String; var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        var tensors: [(String, Info)] = []
        var metadata: [String: String]?
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            for k in c.allKeys {
                if k.stringValue == "__metadata__" {
                    do { metadata = try c.decode([String: String].self, forKey: k) }
                    catch { throw FormatError("__metadata__ is not a map of strings to strings") }
                } else {
                    do { tensors.append((k.stringValue, try c.decode(Info.self, forKey: k))) }
                    catch { throw FormatError("\(k.stringValue): entry is not {\"dtype\": string, \"shape\": [non-negative integers], \"data_offsets\": [begin, end]}: \(Safetensors.describe(error))") }
                }
            }
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription
        case DecodingError.keyNotFound(let k, _): return "field '\(k.stringValue)' missing"
        case DecodingError.typeMismatch(_, let c): return c.debugDescription
        case DecodingError.valueNotFound(_, let c): return c.debugDescription
        default: return "\(error)"
        }
    }

    /// The first key of the top-level JSON object that occurs twice, or nil. JSONSerialization
    /// keeps the last of duplicate keys silently, so the header text is scanned for its keys.
    static func duplicateTopLevelKey(_ text: [UInt8]) -> String? {
        var seen = Set<String>()
        var depth = 0
        var i = 0
        var expectKey = false
        while i < text.count {
            let c = text[i]
            if c == UInt8(ascii: "\"") {
                let start = i
                i += 1
                while i < text.count && text[i] != UInt8(ascii: "\"") {
                    i += text[i] == UInt8(ascii: "\\") ? 2 : 1
                }
                if depth == 1 && expectKey {
                    let literal = Data(text[start ... min(i, text.count - 1)])
                    if let key = (try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed)) as? String {
                        if !seen.insert(key).inserted { return key }
                    }
                    expectKey = false
                }
            } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                depth += 1
                if depth == 1 { expectKey = true }
            } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                depth -= 1
            } else if c == UInt8(ascii: ",") && depth == 1 {
                expectKey = true
            }
            i += 1
        }
        return nil
    }
}
