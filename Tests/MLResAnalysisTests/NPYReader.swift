import Foundation
import MLResAnalysis

// The test-side reader of the `.npy` files `mlres-eval score --save-logits` writes (the
// production code only writes them; numpy reads them in scripts).
extension NPY {
    /// Parses a float32 `.npy` (version 1.0 or 2.0, little-endian, C order) into values and
    /// shape; throws naming what is wrong.
    static func readFloat32(_ data: Data, name: String = "npy") throws -> (values: [Float], shape: [Int]) {
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

}
