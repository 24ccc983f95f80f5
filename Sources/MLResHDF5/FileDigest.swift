import Crypto
import Foundation

/// SHA-256 (FIPS 180-4) of files and byte buffers, from apple/swift-crypto (BoringSSL's
/// implementation, which uses the CPU's SHA extensions where present). A well-kept library
/// instead of our own: hashing is not what mlres exists for.
///
/// Every digest is 64 lowercase hexadecimal characters.
public enum FileDigest {
    /// SHA-256 of a byte buffer.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        hex(SHA256.hash(data: bytes))
    }

    /// SHA-256 of `data`.
    public static func sha256(_ data: Data) -> String {
        data.withUnsafeBytes { sha256($0) }
    }

    /// SHA-256 of the file at `path`, streamed in 1 MiB chunks (constant memory).
    /// Throws ``CheckpointError`` when the file cannot be opened or read.
    ///
    /// To tie a digest to a checkpoint's contents use ``CheckpointIO/load(path:)``, which
    /// hashes the very bytes it parses; hashing a path separately can meet another file if
    /// the path is replaced in between.
    public static func sha256(fileAt path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw CheckpointError(file: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var hasher = SHA256()
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError(file: path, message: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return hex(hasher.finalize())
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](); out.reserveCapacity(64)
        for b in digest { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
