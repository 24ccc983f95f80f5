import CHDF5
import Foundation
import MLResModel

/// A checkpoint problem, reported by file and HDF5 path, e.g.
/// `ckpt.h5: /model/stages/1/blocks/0/conv1/weight has shape [32,16,3,3], expected [32,32,3,3]`.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var message: String
    /// The cause may go away by itself (the file is locked by a program writing it): reading
    /// it again later may succeed although the file did not change.
    public var retryable: Bool
    public init(file: String, message: String, retryable: Bool = false) {
        self.file = file; self.message = message; self.retryable = retryable
    }
    public var description: String { "\(file): \(message)" }
}

/// Options of the writer.
public struct CheckpointWriteOptions: Sendable {
    /// shuffle+deflate compression of tensor datasets (off by default).
    public var compress: Bool = false
    /// Replace an existing file at the destination (atomically). When false an existing
    /// destination is refused, and the final step cannot replace a file that appeared meanwhile.
    public var overwrite: Bool = true
    public init(compress: Bool = false, overwrite: Bool = true) {
        self.compress = compress; self.overwrite = overwrite
    }
}

/// A checkpoint and what is known about the bytes it was read from.
public struct LoadedCheckpoint: Sendable {
    /// The checkpoint as read (every rule of docs/checkpoint-format.md checked).
    public var checkpoint: Checkpoint
    /// SHA-256 of the exact bytes that were parsed (64 hex digits): the file's digest, as
    /// `sha256sum` prints it, even if the path was replaced while it was read.
    public var sha256: String
    /// Size of those bytes.
    public var byteCount: Int
    /// The identity (device, inode, size, mtime) of the open file those bytes were read from:
    /// compare it with ``FileIdentity/init(path:)`` later to tell whether the path was replaced
    /// since.
    public var identity: FileIdentity
    /// True for format 1.1 files: every dataset and string set carries a digest, and all of
    /// them matched. False for 1.0 and h5py-written files ("unprotected": tensor bytes are
    /// Fletcher32-checked only if the writer asked for it, strings not at all).
    public var contentProtected: Bool
    /// Content digests checked (tensors, history columns, string sets).
    public var digestsChecked: Int
    /// True when the file's structure is checksummed (HDF5 superblock version >= 2, as our
    /// writer produces). False for HDF5's oldest layout, h5py's default: there a corrupted
    /// group or chunk index can go unnoticed.
    public var metadataChecksummed: Bool
    /// Tensor datasets read (model and momentum buffers) and their float32 payload in bytes.
    public var tensorCount: Int
    public var tensorBytes: Int
}

/// What ``CheckpointIO/verify(path:)`` checked: everything ``CheckpointIO/load(path:)``
/// checks, with the Fletcher32 filter required on every tensor.
public typealias CheckpointVerification = LoadedCheckpoint

/// Reads and writes checkpoint format v1 / v1.1 (docs/checkpoint-format.md). Every HDF5 call
/// of the project goes through this module, serialised by one process-wide lock.
public enum CheckpointIO {
    /// THE read path of every consumer (score, norms, lesion, serve load/reload, train
    /// --resume, every surgery op, inspect, verify): reads the file's bytes once, hashes those
    /// bytes and parses the same bytes, so that ``LoadedCheckpoint/sha256`` always belongs to
    /// the checkpoint returned. Refuses, with a ``CheckpointError`` naming the HDF5 path and
    /// the problem: storage outside the allow-list (virtual, external, compact, unknown
    /// filters, links out of the file, unwritten or filter-skipping chunks) before any data
    /// is read; any structural mismatch with the `/model` attributes; any number without
    /// meaning (non-finite parameters, input_std <= 0, ...); any format 1.1 digest mismatch.
    public static func load(path: String) throws -> LoadedCheckpoint {
        try load(path: path, strict: false)
    }

    /// ``load(path:)``'s checkpoint.
    public static func read(path: String) throws -> Checkpoint {
        try load(path: path, strict: false).checkpoint
    }

    /// Full conformance check: everything ``load(path:)`` checks, plus the Fletcher32 filter
    /// required on every tensor dataset.
    public static func verify(path: String) throws -> CheckpointVerification {
        try load(path: path, strict: true)
    }

    private static func load(path: String, strict: Bool) throws -> LoadedCheckpoint {
        do {
            let image = try FileImage.load(path: path)
            let sha = image.bytes.withUnsafeBytes { FileDigest.sha256($0) }
            let r = try H5.locked { try CheckpointReader.read(image, strict: strict) }
            return LoadedCheckpoint(checkpoint: r.checkpoint, sha256: sha, byteCount: image.size, identity: image.identity,
                                    contentProtected: r.protected, digestsChecked: r.digestsChecked,
                                    metadataChecksummed: r.metadataChecksummed,
                                    tensorCount: r.tensorCount, tensorBytes: r.tensorBytes)
        } catch let p as H5Problem {
            throw CheckpointError(file: path, message: p.message, retryable: p.retryable)
        }
    }

    /// The first reason `checkpoint` is not a valid format v1 checkpoint (named by the HDF5 path
    /// it would be written at), or nil. ``write(_:to:options:)`` refuses such a checkpoint.
    public static func validationError(of checkpoint: Checkpoint) -> String? {
        CheckpointSchema.problem(in: checkpoint)
    }

    /// Writes a checkpoint atomically: the file is written as `NAME.tmp-<random>` in the same
    /// folder (created exclusively and locked by this writer until it is published: an
    /// existing file is never opened for writing), closed, fsynced, renamed over `NAME`, and
    /// the folder is fsynced. On any error the temporary file is removed and an existing
    /// `NAME` is untouched. After a successful write, stale `NAME.tmp-*` files that a killed
    /// writer left behind (same owner, no writer holding their lock) are removed.
    public static func write(_ checkpoint: Checkpoint, to path: String,
                             options: CheckpointWriteOptions = .init()) throws {
        if let problem = validationError(of: checkpoint) {
            throw CheckpointError(file: path, message: "refusing to write an invalid checkpoint: \(problem)")
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        var st = stat()
        if lstat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { throw CheckpointError(file: path, message: "is a directory") }
            if !options.overwrite { throw CheckpointError(file: path, message: "already exists (not overwriting it)") }
        }
        var rng = SystemRandomNumberGenerator()
        // NAME.tmp-<pid>-<random>: the process id tells a later writer whether its owner is
        // still alive (see removeStaleTemporaries).
        let suffix = "\(getpid())-" + String(rng.next() & 0xffff_ffff_ffff, radix: 16)
        let tmp = (dir as NSString).appendingPathComponent("\(name).tmp-\(suffix)")
        var published = false
        defer { if !published { unlink(tmp) } }

        do {
            try H5.locked { try CheckpointWriter.write(checkpoint, newFile: tmp, compress: options.compress) }
        } catch let p as H5Problem {
            throw CheckpointError(file: path, message: p.message)
        }
        try fsyncPath(tmp, directory: false, reportAs: path)
        if options.overwrite {
            if rename(tmp, path) != 0 {
                throw CheckpointError(file: path, message: "cannot rename \(tmp) over it: \(errnoText())")
            }
        } else {
            // link() fails with EEXIST instead of replacing a file that appeared meanwhile.
            if link(tmp, path) != 0 {
                throw CheckpointError(file: path, message: errno == EEXIST ? "already exists (not overwriting it)"
                                                                           : "cannot publish \(tmp): \(errnoText())")
            }
            unlink(tmp)
        }
        published = true
        try fsyncPath(dir.isEmpty ? "." : dir, directory: true, reportAs: path)
        removeStaleTemporaries(directory: dir.isEmpty ? "." : dir, name: name)
    }

    /// Removes the temporaries `NAME.tmp-<pid>-<hex>` in `directory` whose writer process
    /// no longer exists (a writer killed with -9 leaves one behind), and the older form
    /// `NAME.tmp-<hex>` when no HDF5 writer holds it locked. Only files of this user.
    static func removeStaleTemporaries(directory: String, name: String) {
        let prefix = name + ".tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            let parts = entry.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.count <= 16 }),
                  parts.last!.allSatisfy(\.isHexDigit) else { continue }
            let p = (directory as NSString).appendingPathComponent(entry)
            let fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid() else { continue }
            if parts.count == 2 {
                guard let pid = Int32(parts[0]), pid > 0, pid != getpid() else { continue }
                guard kill(pid, 0) != 0 && errno == ESRCH else { continue }      // owner alive
            } else {
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }        // HDF5 writing it
            }
            unlink(p)
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    private static func fsyncPath(_ p: String, directory: Bool, reportAs: String) throws {
        let fd = open(p, directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY)
        guard fd >= 0 else { throw CheckpointError(file: reportAs, message: "cannot open \(p) to fsync it: \(errnoText())") }
        defer { close(fd) }
        if fsync(fd) != 0 && !(directory && (errno == EINVAL || errno == EROFS)) {
            throw CheckpointError(file: reportAs, message: "fsync of \(p) failed: \(errnoText())")
        }
    }
}
