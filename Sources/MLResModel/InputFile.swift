import Foundation

/// An input file (a checkpoint, a dataset file) opened ONCE for reading, through one
/// descriptor, with the reason it cannot be read in words a user can act on: a missing file, a
/// dangling symbolic link, a symbolic-link loop, a permission refused, a folder, a FIFO, a
/// socket or a device given instead of a file. The file is opened with O_NONBLOCK, so a FIFO is
/// refused at once instead of blocking the reader until some writer appears.
///
/// Shared by the checkpoint reader (MLResHDF5) and the dataset readers (MLResData), so that both
/// name these causes the same way (issue 12, kind 3: errors from the layer below diagnosed).
public final class InputFile {
    /// Why a file cannot be read. `description` is `PATH: reason`.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var reason: String
        /// Nothing exists at the path (not even a dangling link).
        public var missing: Bool
        public var description: String { "\(path): \(reason)" }
    }

    public let path: String
    /// The open descriptor (closed when the value goes away).
    public let descriptor: Int32
    /// fstat of the open descriptor: the identity and size of the file actually read.
    public let status: stat

    /// Opens `path` for reading; refuses anything but a regular file.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw Self.openFailure(path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw Failure(path: path, reason: "cannot read its status: \(String(cString: strerror(e)))", missing: false)
        }
        if let kind = Self.notAFile(st.st_mode) {
            close(fd)
            throw Failure(path: path, reason: kind, missing: false)
        }
        descriptor = fd
        status = st
    }

    deinit { close(descriptor) }

    /// Size in bytes when it was opened.
    public var size: Int { Int(status.st_size) }

    /// Reads the whole file (what fstat said it holds; less if it shrank meanwhile).
    public func readAll() throws -> [UInt8] {
        let expected = size
        var out = [UInt8](repeating: 0, count: expected)
        var got = 0
        while got < expected {
            let n = out.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + got, expected - got) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Failure(path: path, reason: Self.readFailure(errno), missing: false)
            }
            if n == 0 { break }
            got += n
        }
        if got < expected { out.removeSubrange(got...) }
        return out
    }

    /// What a non-regular file is, as a refusal; nil for a regular file.
    static func notAFile(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "is a directory, not a file"
        case S_IFIFO: return "is a FIFO (named pipe), not a regular file: it is read whole, never from a pipe; write the data to a file first"
        case S_IFSOCK: return "is a socket, not a regular file"
        case S_IFCHR: return "is a character device, not a regular file"
        case S_IFBLK: return "is a block device, not a regular file"
        default: return "is not a regular file"
        }
    }

    private static func readFailure(_ e: Int32) -> String {
        e == EIO ? "the system could not read it (input/output error: a failing disk or network file system)"
                 : "cannot read it: \(String(cString: strerror(e)))"
    }

    /// The cause of a failed open(2), looked at more closely where errno alone is vague.
    static func openFailure(_ path: String, errno e: Int32) -> Failure {
        var l = stat()
        let exists = lstat(path, &l) == 0
        switch e {
        case ENOENT:
            if exists && (l.st_mode & S_IFMT) == S_IFLNK {
                return Failure(path: path, reason: "is a symbolic link to '\(linkTarget(path))', which does not exist", missing: false)
            }
            return Failure(path: path, reason: "no such file", missing: true)
        case EACCES, EPERM:
            var s = stat()
            if stat(path, &s) == 0 {
                let mode = String(s.st_mode & 0o777, radix: 8)
                return Failure(path: path, reason: "permission denied: the file exists (mode \(mode), owner uid \(s.st_uid)) "
                    + "but user uid \(geteuid()) may not read it; make it readable (chmod a+r) or run as its owner", missing: false)
            }
            return Failure(path: path, reason: "permission denied: a folder on its path may not be searched by user uid \(geteuid())",
                           missing: false)
        case ELOOP:
            return Failure(path: path, reason: "is a symbolic link loop (a link that leads back to itself)", missing: false)
        case ENOTDIR:
            return Failure(path: path, reason: "a component of the path is a file, not a folder", missing: false)
        case ENXIO where exists:
            return Failure(path: path, reason: notAFile(l.st_mode) ?? "is not a regular file", missing: false)
        case EIO:
            return Failure(path: path, reason: readFailure(e), missing: false)
        default:
            return Failure(path: path, reason: "cannot open it: \(String(cString: strerror(e)))", missing: false)
        }
    }

    private static func linkTarget(_ path: String) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
}
