import MLResModel

// PLACEHOLDER API (to be implemented by the HDF5 work): signatures other modules build against.

/// A checkpoint problem, reported by file and HDF5 path.
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
    /// Replace an existing file at the destination (atomically).
    public var overwrite: Bool = true
    public init(compress: Bool = false, overwrite: Bool = true) {
        self.compress = compress; self.overwrite = overwrite
    }
}

/// Reads and writes checkpoint format v1.
public enum CheckpointIO {
    /// Reads and validates a checkpoint; throws ``CheckpointError`` naming the first problem.
    public static func read(path: String) throws -> Checkpoint {
        throw CheckpointError(file: path, message: "HDF5 reader not implemented yet")
    }

    /// Writes a checkpoint atomically (temp file, fsync, rename, fsync folder).
    public static func write(_ checkpoint: Checkpoint, to path: String,
                             options: CheckpointWriteOptions = .init()) throws {
        throw CheckpointError(file: path, message: "HDF5 writer not implemented yet")
    }
}
