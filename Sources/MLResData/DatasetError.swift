import Foundation

/// Everything that can be wrong with dataset files. Every case names the file (and, where it
/// applies, the record) so that the message alone tells the user what to fix.
public enum DatasetError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The file does not exist (or is not readable); `expected` describes the size it should have.
    case missingFile(path: String, expected: String)
    /// The file's size is not what the format requires.
    case badSize(path: String, actualBytes: Int, expected: String)
    /// A label outside the valid range; `record` is the 0-based record index in the file.
    case badLabel(path: String, record: Int, value: Int, valid: ClosedRange<Int>, label: String = "label")
    /// An IDX file whose magic number is not the one expected.
    case badMagic(path: String, found: UInt32, expected: UInt32)
    /// A header field (IDX dimension, ...) that does not match the format.
    case badHeader(path: String, detail: String)
    /// The gzip stream is corrupt or truncated.
    case badGzip(path: String, detail: String)
    /// Two files that must agree (images and labels) do not.
    case mismatch(detail: String)
    /// A subset larger than the split, or another invalid request.
    case invalidRequest(detail: String)

    public var description: String {
        switch self {
        case let .missingFile(path, expected):
            return "missing dataset file \(path) (expected \(expected))"
        case let .badSize(path, actual, expected):
            return "dataset file \(path) has \(actual) bytes, expected \(expected)"
        case let .badLabel(path, record, value, valid, label):
            return "dataset file \(path): record \(record) has \(label) \(value), "
                + "valid \(label)s are \(valid.lowerBound)...\(valid.upperBound)"
        case let .badMagic(path, found, expected):
            return "dataset file \(path): IDX magic number 0x\(hex(found)), expected 0x\(hex(expected))"
        case let .badHeader(path, detail):
            return "dataset file \(path): \(detail)"
        case let .badGzip(path, detail):
            return "dataset file \(path): corrupt gzip data (\(detail))"
        case let .mismatch(detail):
            return detail
        case let .invalidRequest(detail):
            return detail
        }
    }

    public var errorDescription: String? { description }
}

private func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// Byte counts written with thousands separators, as error messages show them.
func formatBytes(_ n: Int) -> String {
    let s = String(n)
    var out = ""
    for (i, ch) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return String(out.reversed()) + " bytes"
}

/// Reads a whole file, turning "no such file" into ``DatasetError/missingFile``.
func readWholeFile(_ path: String, expected: @autoclosure () -> String) throws -> [UInt8] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
          let data = FileManager.default.contents(atPath: path) else {
        throw DatasetError.missingFile(path: path, expected: expected())
    }
    return [UInt8](data)
}

/// `dir/name`, without doubling a trailing slash.
func joinPath(_ dir: String, _ name: String) -> String {
    dir.hasSuffix("/") ? dir + name : dir + "/" + name
}
