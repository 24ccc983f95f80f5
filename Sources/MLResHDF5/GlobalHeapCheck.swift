import Foundation

/// A structural check of HDF5 global heap collections, run on the raw bytes before HDF5 sees
/// the file.
///
/// Variable-length strings live in global heap collections ("GCOL"), the one part of an HDF5
/// file that carries no checksum in any format version. HDF5 1.10 trusts the object sizes and
/// indices it finds there (the checks are debug-only assertions), so a flipped bit can make it
/// copy gigabytes or dereference a null pointer. Every collection is therefore parsed here
/// exactly as the library will parse it, and refused unless its objects tile it: each object
/// inside the collection, indices unique and numbered 1...n without gaps, free space last.
///
/// A collection is recognised by its 8-byte prefix "GCOL", version 1, three zero bytes; float
/// data matching that prefix by chance has probability 2^-64 per byte offset.
enum GlobalHeapCheck {
    static let prefix: [UInt8] = Array("GCOL".utf8) + [1, 0, 0, 0]

    /// Valid collections by byte offset: object index -> object size.
    typealias Heaps = [Int: [Int: UInt64]]

    /// The first problem found in any collection of `bytes`, or nil; fills `heaps`.
    static func problem(in bytes: UnsafeRawBufferPointer, heaps: inout Heaps) -> String? {
        let n = bytes.count
        guard n >= 16, let base = bytes.baseAddress else { return nil }
        var at = 0
        while at + 16 <= n {
            guard let hit = memchr(base + at, 0x47, n - at - 15) else { break }   // 'G'
            let o = base.distance(to: UnsafeRawPointer(hit))
            at = o + 1
            if memcmp(base + o, prefix, 8) != 0 { continue }
            var objects: [Int: UInt64] = [:]
            if let p = collectionProblem(bytes, o, &objects) { return "global heap collection at byte \(o): \(p)" }
            heaps[o] = objects
        }
        return nil
    }

    static func u16(_ b: UnsafeRawBufferPointer, _ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
    static func u64(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in (0..<8).reversed() { v = v << 8 | UInt64(b[i + k]) }
        return v
    }

    /// Parses one collection as H5HG's deserialiser does (8-byte lengths, objects aligned to 8).
    static func collectionProblem(_ b: UnsafeRawBufferPointer, _ o: Int, _ objects: inout [Int: UInt64]) -> String? {
        let size = u64(b, o + 8)
        guard size >= 32, size <= UInt64(b.count - o) else {
            return "its size \(size) does not fit in the file"
        }
        let end = o + Int(size)
        var p = o + 16
        var seen = Set<Int>()
        var maxIndex = 0
        while p < end {
            if p + 16 > end { p = end; break }            // a tail too small for a header: free
            let idx = u16(b, p)
            let objSize = u64(b, p + 8)
            guard objSize <= UInt64(end - p) else { return "object \(idx) of \(objSize) bytes overruns the collection" }
            let need: Int
            if idx == 0 {
                need = Int(objSize)                       // free space: size includes its header
                guard need >= 16 || need == end - p else { return "free space of \(need) bytes is malformed" }
            } else {
                let aligned = (Int(objSize) + 7) & ~7
                need = 16 + aligned
                guard !seen.contains(idx) else { return "object index \(idx) appears twice" }
                seen.insert(idx)
                objects[idx] = objSize
                maxIndex = max(maxIndex, idx)
            }
            guard need > 0, p + need <= end else { return "object \(idx) overruns the collection" }
            p += need
        }
        guard p == end else { return "its objects do not fill it exactly" }
        if seen.count != maxIndex { return "object indices have gaps (\(seen.count) objects, highest index \(maxIndex))" }
        return nil
    }

    /// Checks stored variable-length string references (4-byte length, 8-byte collection
    /// address, 4-byte object index, little-endian) against the scanned heaps: each must name
    /// an existing object whose size equals the stored length — else HDF5 would copy the
    /// object into a buffer of the stored length. Collection addresses are relative to the
    /// file's base address (the user block size), `heaps` is keyed by file offset.
    static func referenceProblem(_ refs: [UInt8], count: Int, heaps: Heaps, baseAddress: Int) -> (index: Int, message: String)? {
        for i in 0..<count {
            let r = 16 * i
            let len = refs[r..<(r + 4)].reversed().reduce(0) { $0 << 8 | UInt64($1) }
            let addr = refs[(r + 4)..<(r + 12)].reversed().reduce(0) { $0 << 8 | UInt64($1) }
            let idx = refs[(r + 12)..<(r + 16)].reversed().reduce(0) { $0 << 8 | UInt64($1) }
            if addr == 0 && len == 0 { continue }          // an empty string has no heap object
            guard addr < UInt64(Int.max / 2), let heap = heaps[Int(addr) + baseAddress] else {
                return (i, "refers to a global heap at byte \(addr) that does not exist")
            }
            guard idx < 65536, let size = heap[Int(idx)] else { return (i, "refers to a missing heap object \(idx)") }
            guard size == len else { return (i, "has length \(len) but its heap object holds \(size) bytes") }
        }
        return nil
    }
}
