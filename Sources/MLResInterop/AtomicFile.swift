import Foundation

/// A problem with an interop file, reported by file name (`file: message`).
public struct InteropError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var message: String
    public init(file: String, message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// Publishes bytes under a name the way the checkpoint writer does (docs/checkpoint-format.md,
/// "Atomic publish"): `NAME.tmp-<random>` created exclusively in the destination folder,
/// written, fsynced, then renamed over NAME (or hard-linked when overwriting is not allowed,
/// failing if NAME appeared meanwhile), then the folder is fsynced. On any error the temporary
/// file is removed: readers see the old file or the new one, never a half-written one.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var st = stat()
        if lstat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { throw InteropError(file: path, message: "is a directory") }
            if !overwrite { throw InteropError(file: path, message: "already exists (use --force to replace it)") }
        }
        var rng = SystemRandomNumberGenerator()
        let tmp = (dir as NSString).appendingPathComponent(
            "\(url.lastPathComponent).tmp-\(String(rng.next() & 0xffff_ffff_ffff, radix: 16))")
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw InteropError(file: path, message: "cannot create \(tmp): \(errnoText())") }
        var published = false
        defer { if !published { unlink(tmp) } }
        do {
            defer { close(fd) }
            var done = 0
            try bytes.withUnsafeBytes { raw in
                while done < raw.count {
                    let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw InteropError(file: path, message: "cannot write \(tmp): \(errnoText())")
                    }
                    done += n
                }
            }
            if fsync(fd) != 0 { throw InteropError(file: path, message: "fsync of \(tmp) failed: \(errnoText())") }
        }
        if overwrite {
            if rename(tmp, path) != 0 { throw InteropError(file: path, message: "cannot rename \(tmp) over it: \(errnoText())") }
        } else {
            if link(tmp, path) != 0 {
                throw InteropError(file: path, message: errno == EEXIST ? "already exists (use --force to replace it)"
                                                                        : "cannot publish \(tmp): \(errnoText())")
            }
            unlink(tmp)
        }
        published = true
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
