import Foundation

/// NumPy `.npy` files (format version 1.0), enough for float32 matrices.
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

    /// Parses a float32 `.npy` (version 1.0 or 2.0, little-endian, C order) into values and
    /// shape; throws naming what is wrong.
    public static func readFloat32(_ data: Data, name: String = "npy") throws -> (values: [Float], shape: [Int]) {
        let b = [UInt8](data)
        guard b.count >= 10, b[0] == 0x93, Array(b[1 ..< 6]) == Array("NUMPY".utf8) else {
            throw AnalysisError("\(name): not a .npy file (bad magic)")
        }
        let major = b[6]
        let (hlen, start): (Int, Int)
        if major == 1 { (hlen, start) = (Int(b[8]) | Int(b[9]) << 8, 10) }
        else if major == 2 || major == 3, b.count >= 12 {
            (hlen, start) = (Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24, 12)
        } else { throw AnalysisError("\(name): unsupported .npy version \(major)") }
        guard b.count >= start + hlen else { throw AnalysisError("\(name): truncated header") }
        let header = String(decoding: b[start ..< start + hlen], as: UTF8.self)
        guard header.contains("'descr': '<f4'") else { throw AnalysisError("\(name): dtype is not '<f4' (\(header))") }
        guard header.contains("'fortran_order': False") else { throw AnalysisError("\(name): Fortran order is not supported") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw AnalysisError("\(name): no shape in header")
        }
        let shape = try header[open.upperBound ..< close].split(separator: ",").map { part -> Int in
            guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 0 else {
                throw AnalysisError("\(name): bad shape entry '\(part)'")
            }
            return v
        }
        let n = shape.reduce(1, *)
        let off = start + hlen
        guard b.count == off + 4 * n else {
            throw AnalysisError("\(name): \(b.count - off) data bytes, shape \(shape) needs \(4 * n)")
        }
        var values = [Float](repeating: 0, count: n)
        for i in 0 ..< n {
            let o = off + 4 * i
            let bits = UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
            values[i] = Float(bitPattern: bits)
        }
        return (values, shape)
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
