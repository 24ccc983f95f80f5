/// gzip files (`.gz` dataset files), inflated by ``Inflate``.
enum Gzip {
    /// True when `bytes` start with the gzip magic number 1f 8b.
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// Inflates a gzip file's bytes (concatenated members are allowed, as gzip(1) writes them).
    /// Corrupt, truncated or oversized data throws ``DatasetError/badGzip`` naming `path`.
    static func decompress(_ input: [UInt8], path: String, maxBytes: Int = 1 << 31) throws -> [UInt8] {
        do {
            return try Inflate.decompress(input, limit: maxBytes, concatenatedMembers: true)
        } catch let f as Inflate.Failure {
            let detail: String
            switch f {
            case .tooLarge(let limit): detail = "decompresses to more than \(limit) bytes"
            case .truncated: detail = "truncated: the data ends before the gzip end marker"
            case .corrupt(let message): detail = message
            }
            throw DatasetError.badGzip(path: path, detail: detail)
        }
    }
}
