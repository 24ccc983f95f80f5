import CHDF5
import Foundation
import MLResModel

/// A checkpoint problem, reported by file and HDF5 path, e.g.
/// `ckpt.h5: /model/stages/1/blocks/0/conv1/weight has shape [32,16,3,3], expected [32,32,3,3]`.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var message: String
    public init(file: String, message: String) { self.file = file; self.message = message }
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

/// What ``CheckpointIO/verify(path:)`` checked.
public struct CheckpointVerification: Sendable {
    /// The checkpoint as read.
    public var checkpoint: Checkpoint
    /// Tensor datasets read and checked (model and optimizer).
    public var tensorCount: Int
    /// Their float32 payload in bytes.
    public var tensorBytes: Int
}

/// Reads and writes checkpoint format v1 (docs/checkpoint-format.md). Every HDF5 call of the
/// project goes through this module, serialised by one process-wide lock.
public enum CheckpointIO {
    /// Reads and validates a checkpoint; throws ``CheckpointError`` naming the first problem
    /// by its HDF5 path. Structure, dtypes and shapes are checked against the `/model`
    /// attributes before any tensor data is read; every chunk's Fletcher32 sum is verified.
    public static func read(path: String) throws -> Checkpoint {
        do {
            return try H5.locked { try CheckpointReader.read(path: path, strict: false) }
        } catch let p as H5Problem {
            throw CheckpointError(file: path, message: p.message)
        }
    }

    /// Full conformance check: everything ``read(path:)`` checks, plus the Fletcher32 filter
    /// on every tensor dataset, every tensor (model and momentum buffers) finite.
    public static func verify(path: String) throws -> CheckpointVerification {
        let ckpt: Checkpoint
        do {
            ckpt = try H5.locked { try CheckpointReader.read(path: path, strict: true) }
        } catch let p as H5Problem {
            throw CheckpointError(file: path, message: p.message)
        }
        var count = 0, bytes = 0
        func check(_ p: String, _ t: Tensor) throws {
            if let i = t.data.firstIndex(where: { !$0.isFinite }) {
                throw CheckpointError(file: path, message: "/\(p)[\(i)] = \(t.data[i]), expected a finite number")
            }
            count += 1; bytes += t.byteCount
        }
        for nt in ckpt.network.namedTensors { try check(nt.path, nt.tensor) }
        if let opt = ckpt.optimizer {
            for p in ckpt.network.trainablePaths { if let t = opt.buffers[p] { try check("optimizer/momentum/" + p, t) } }
        }
        return CheckpointVerification(checkpoint: ckpt, tensorCount: count, tensorBytes: bytes)
    }

    /// The first reason `checkpoint` is not a valid format v1 checkpoint (named by the HDF5 path
    /// it would be written at), or nil. ``write(_:to:options:)`` refuses such a checkpoint.
    public static func validationError(of checkpoint: Checkpoint) -> String? {
        CheckpointSchema.problem(in: checkpoint)
    }

    /// Writes a checkpoint atomically: the file is written as `NAME.tmp-<random>` in the same
    /// folder (created exclusively: an existing file is never opened for writing), closed,
    /// fsynced, renamed over `NAME`, and the folder is fsynced. On any error the temporary
    /// file is removed and an existing `NAME` is untouched.
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
        let suffix = String(rng.next() & 0xffff_ffff_ffff, radix: 16)
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
