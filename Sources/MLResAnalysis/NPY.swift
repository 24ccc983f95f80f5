import Foundation

/// NumPy `.npy` files (format version 1.0), enough to write float32 matrices (`--save-logits`).
public enum NPY {
    /// The bytes of an `.npy` file holding a little-endian float32 array of `shape` (C order).
    /// Header: magic `\x93NUMPY`, version 1.0, a little-endian uint16 header length, then a
    /// Python dict literal padded with spaces and ending in `\n` so the data starts at a
    /// multiple of 64 bytes.
    public static func float32(_ values: [Float], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "npy: \(values.count) values for shape \(shape)")
        let dims = shape.count == 1 ? "\(shape[0])," : shape.map(String.init).joined(separator: ", ")
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let prefix = 10
        let total = ((prefix + dict.utf8.count + 1 + 63) / 64) * 64
        dict += String(repeating: " ", count: total - prefix - dict.utf8.count - 1) + "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let n = UInt16(dict.utf8.count)
        d.append(contentsOf: [UInt8(n & 0xff), UInt8(n >> 8)])
        d.append(contentsOf: Array(dict.utf8))
        values.withUnsafeBufferPointer { buf in
            for v in buf {
                let bits = v.bitPattern.littleEndian
                withUnsafeBytes(of: bits) { d.append(contentsOf: $0) }
            }
        }
        return d
    }

    /// Writes `data` to `path` atomically (a temporary file in the same folder, then rename):
    /// a failed write never leaves a half-written file.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw AnalysisError("\(path): is a directory")
        }
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw AnalysisError("\(path): cannot write: \(error.localizedDescription)")
        }
    }
}
