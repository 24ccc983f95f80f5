import Crypto
import Foundation

/// The content digests of format v1.1 (docs/checkpoint-format.md, "Integrity"): SHA-256 bound
/// to what the bytes mean, stored as 64-character fixed-length string attributes, i.e. inside
/// the object headers that HDF5's newest layout checksums.
///
/// - Tensor (attribute `sha256` of the dataset): SHA-256 of
///   `"mlres-tensor\n" + path + "\n" + dtype + "\n" + shape joined by "," + "\n"` followed by
///   the values as little-endian bytes of that dtype, e.g. for `/model/head/fc/bias` of 10
///   classes: `mlres-tensor\n/model/head/fc/bias\nfloat32\n10\n` + 40 bytes. A chunk moved to
///   another tensor, or bits Fletcher32 cannot see, change it.
/// - Strings of an object (attribute `strings_sha256` of that group or dataset): SHA-256 of,
///   for each covered string attribute present, in the documented order,
///   `name NUL count NUL (value NUL)*` (count in decimal). Variable-length strings live in
///   HDF5's global heap, which has no checksum of its own.
///
/// SHA-256 rather than CRC32C: the digest the tools already report for files (one library),
/// and it binds content against deliberate edits that keep a CRC. scripts/bench-digest.sh
/// measures its cost on load, and SHA-256 against CRC-32 over the same bytes (docs/checkpoint-format.md).
enum ContentDigest {
    static let tensorAttribute = "sha256"
    static let stringsAttribute = "strings_sha256"

    static func tensor(path: String, dtype: String, shape: [Int], bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(data: Array("mlres-tensor\n\(path)\n\(dtype)\n\(shape.map(String.init).joined(separator: ","))\n".utf8))
        h.update(bufferPointer: bytes)
        return FileDigest.hex(h.finalize())
    }

    static func tensor(path: String, _ values: [Float], shape: [Int]) -> String {
        values.withUnsafeBytes { tensor(path: path, dtype: "float32", shape: shape, bytes: $0) }
    }

    /// Accumulates the strings of one object.
    struct Strings {
        private var h = SHA256()
        private(set) var names: [String] = []
        init() {}
        mutating func add(_ name: String, _ values: [String]) {
            names.append(name)
            var b = Array(name.utf8); b.append(0)
            b += Array(String(values.count).utf8); b.append(0)
            for v in values { b += Array(v.utf8); b.append(0) }
            h.update(data: b)
        }
        var hex: String { FileDigest.hex(h.finalize()) }
    }
}
