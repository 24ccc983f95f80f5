import Foundation
import MLResModel

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
    /// The file exists but cannot be read: permission refused, a folder, a FIFO, a device, a
    /// dangling symbolic link, an I/O error; `reason` says which and how to fix it.
    case unreadable(path: String, reason: String)

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
        case let .unreadable(path, reason):
            return "dataset file \(path) \(reason)"
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

/// Reads a whole file through one descriptor (``InputFile``): "no such file" becomes
/// ``DatasetError/missingFile``, every other cause (permission, folder, FIFO: refused at once,
/// never waited on) ``DatasetError/unreadable`` naming it.
func readWholeFile(_ path: String, expected: @autoclosure () -> String) throws -> [UInt8] {
    do {
        return try InputFile(path: path).readAll()
    } catch let f as InputFile.Failure {
        if f.missing { throw DatasetError.missingFile(path: path, expected: expected()) }
        throw DatasetError.unreadable(path: path, reason: f.reason)
    }
}

/// True when something (a file, a folder, even a dangling link) exists at `path`.
func somethingExists(at path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// `dir/name`, without doubling a trailing slash.
func joinPath(_ dir: String, _ name: String) -> String {
    dir.hasSuffix("/") ? dir + name : dir + "/" + name
}
