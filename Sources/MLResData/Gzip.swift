import CZlib

/// gzip decompression through the system zlib.
enum Gzip {
    /// True when `bytes` start with the gzip magic number 1f 8b.
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// Inflates a gzip file's bytes (concatenated members are allowed, as gzip(1) writes them).
    /// Corrupt, truncated or oversized data throws ``DatasetError/badGzip`` naming `path`.
    static func decompress(_ input: [UInt8], path: String, maxBytes: Int = 1 << 31) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(1 << 16, min(maxBytes, input.count * 4)))
        var produced = 0
        var stream = z_stream()
        // windowBits 15 + 32: accept a zlib or gzip header, detected automatically.
        var rc = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw DatasetError.badGzip(path: path, detail: "zlib init failed (\(rc))") }
        defer { inflateEnd(&stream) }

        try input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            while true {
                if produced == out.count {
                    guard out.count < maxBytes else {
                        throw DatasetError.badGzip(path: path, detail: "decompresses to more than \(maxBytes) bytes")
                    }
                    out.append(contentsOf: [UInt8](repeating: 0, count: min(out.count, maxBytes - out.count)))
                }
                let room = out.count - produced
                rc = out.withUnsafeMutableBufferPointer { outBuf -> Int32 in
                    stream.next_out = outBuf.baseAddress! + produced
                    let avail = UInt32(min(room, Int(UInt32.max)))
                    stream.avail_out = avail
                    let r = inflate(&stream, Z_NO_FLUSH)
                    produced += Int(avail - stream.avail_out)
                    return r
                }
                switch rc {
                case Z_STREAM_END:
                    // Another gzip member may follow (gzip allows concatenation).
                    if stream.avail_in >= 2 && stream.next_in[0] == 0x1f && stream.next_in[1] == 0x8b {
                        inflateReset(&stream)
                        continue
                    }
                    if stream.avail_in != 0 {
                        throw DatasetError.badGzip(path: path, detail: "\(stream.avail_in) trailing bytes after the gzip stream")
                    }
                    return
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // There was output room (ensured above), so no progress means no input left.
                    throw DatasetError.badGzip(path: path, detail: "truncated: the data ends before the gzip end marker")
                default:
                    let msg = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                    throw DatasetError.badGzip(path: path, detail: msg)
                }
            }
        }
        out.removeSubrange(produced...)
        return out
    }
}
