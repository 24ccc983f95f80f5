import CZlib

/// Bounded decompression of gzip (RFC 1952) and zlib (RFC 1950) data through the system zlib:
/// the one Swift module that calls zlib (the ground rule "one module per C library"). Used by
/// the dataset readers (`.gz` files) and by the server (`Content-Encoding: gzip` / `deflate`
/// request bodies: HTTP's `deflate` is the zlib format, what Python's `zlib.compress` writes).
///
/// The output never grows past `limit` bytes, so a small input that inflates to gigabytes
/// (a "zip bomb") costs at most `limit` bytes of memory before it is refused.
public enum Inflate {
    public enum Failure: Error, Equatable, Sendable {
        /// The data inflates to more than the limit.
        case tooLarge(limit: Int)
        /// The data ends before the end of the compressed stream.
        case truncated
        /// Not valid gzip/zlib data (zlib's message), or bytes after its end.
        case corrupt(String)
    }

    /// Inflates `input`, a gzip or zlib stream (detected from its header). With
    /// `concatenatedMembers`, gzip members that follow one another are inflated one after the
    /// other, as gzip(1) writes and reads them; otherwise bytes after the end are refused.
    public static func decompress(_ input: [UInt8], limit: Int, concatenatedMembers: Bool = false) throws -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 32: a zlib or a gzip header, detected from the data.
        guard inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure.corrupt("zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8]()
        out.reserveCapacity(min(limit, max(1 << 16, input.count * 4)))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        try input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            while true {
                let (rc, produced) = chunk.withUnsafeMutableBufferPointer { outBuf -> (Int32, Int) in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = UInt32(outBuf.count)
                    let rc = inflate(&stream, Z_NO_FLUSH)
                    return (rc, outBuf.count - Int(stream.avail_out))
                }
                if out.count + produced > limit { throw Failure.tooLarge(limit: limit) }
                out.append(contentsOf: chunk[..<produced])
                switch rc {
                case Z_STREAM_END:
                    if concatenatedMembers && stream.avail_in >= 2 && stream.next_in[0] == 0x1f && stream.next_in[1] == 0x8b {
                        inflateReset(&stream)
                        continue
                    }
                    if stream.avail_in != 0 { throw Failure.corrupt("\(stream.avail_in) bytes after the end of the compressed data") }
                    return
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // There was output room, so no progress means no input left.
                    throw Failure.truncated
                default:
                    throw Failure.corrupt(stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)")
                }
            }
        }
        return out
    }
}
