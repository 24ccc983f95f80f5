import CMPI
import Foundation

/// How the current process was started: by an MPI launcher (`mpirun`, `mpiexec`, `srun` with
/// PMIx), which tells each process its rank and the world size in the environment, or alone.
///
/// Read before any MPI call, so that a process started without a launcher never initialises
/// MPI (Open MPI would otherwise start a singleton runtime) and behaves exactly as before.
public struct MPILaunch: Sendable, Equatable {
    /// This process's rank, 0 ..< size.
    public let rank: Int
    /// Number of processes in the job (MPI_COMM_WORLD).
    public let size: Int
    /// The variable the rank was read from (for messages).
    public let source: String

    /// The launch described by `environment`, or nil when no launcher variables are set.
    /// Recognised: Open MPI's `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE`, PMIx's
    /// `PMIX_RANK` (with `OMPI_COMM_WORLD_SIZE` or `PMI_SIZE`), MPICH/Hydra's `PMI_RANK`/`PMI_SIZE`.
    public static func detect(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> MPILaunch? {
        let pairs = [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),
                     ("PMI_RANK", "PMI_SIZE"), ("PMIX_RANK", "PMI_SIZE")]
        for (r, s) in pairs {
            if let rank = environment[r].flatMap({ Int($0) }), let size = environment[s].flatMap({ Int($0) }),
               size >= 1, rank >= 0, rank < size {
                return MPILaunch(rank: rank, size: size, source: r)
            }
        }
        return nil
    }
}

/// An MPI failure: the call and the library's message.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ call: String, code: Int32) {
        var buf = [CChar](repeating: 0, count: Int(mlres_mpi_max_error_string()) + 1)
        mlres_mpi_error_string(code, &buf)
        let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        description = "\(call) failed (MPI error \(code)\(text.isEmpty ? "" : ": \(text)"))"
    }
    init(_ message: String) { description = message }
}

/// The processes of one `mpirun` job (MPI_COMM_WORLD): the only type in mlres that calls MPI
/// (through the `CMPI` shim). Collectives follow MPI semantics: every rank must make the same
/// calls in the same order with the same counts.
///
/// Failure policy: a collective that fails (a peer died, the network broke) cannot be retried
/// consistently by all ranks, so it prints the error naming the call and this rank, and calls
/// `MPI_Abort`: mpirun then stops every rank and exits non-zero. Nothing is written after a
/// failed collective, so the last checkpoint written before stays the last good one.
public final class MPIProcessGroup: @unchecked Sendable {
    /// This process's rank in MPI_COMM_WORLD.
    public let rank: Int
    /// Number of ranks.
    public let size: Int

    nonisolated(unsafe) private static var shared: MPIProcessGroup?

    private init(rank: Int, size: Int) { self.rank = rank; self.size = size }

    /// Initialises MPI (`MPI_Init_thread`, MPI_THREAD_FUNNELED: only the calling thread uses MPI)
    /// when the process was started by an MPI launcher, and returns the group; returns nil, and
    /// touches no MPI function, when it was not. Idempotent: later calls return the same group.
    ///
    /// Throws ``MPIError`` when the launcher's variables are set but MPI cannot start, or when
    /// MPI's rank/size disagree with the launcher's.
    public static func joinIfLaunched(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MPIProcessGroup? {
        if let g = shared { return g }
        guard let launch = MPILaunch.detect(environment) else { return nil }
        var funneled: Int32 = 0
        let rc = mlres_mpi_init(&funneled)
        guard rc == mlres_mpi_success() else { throw MPIError("MPI_Init_thread", code: rc) }
        var r: Int32 = 0, s: Int32 = 0
        var c = mlres_mpi_rank(&r)
        guard c == mlres_mpi_success() else { throw MPIError("MPI_Comm_rank", code: c) }
        c = mlres_mpi_size(&s)
        guard c == mlres_mpi_success() else { throw MPIError("MPI_Comm_size", code: c) }
        guard Int(r) == launch.rank, Int(s) == launch.size else {
            throw MPIError("MPI reports rank \(r) of \(s) but the launcher's \(launch.source) says rank \(launch.rank) of \(launch.size)")
        }
        guard funneled != 0 else { throw MPIError("the MPI library does not provide MPI_THREAD_FUNNELED") }
        let g = MPIProcessGroup(rank: Int(r), size: Int(s))
        shared = g
        return g
    }

    /// The MPI library's version line (e.g. "Open MPI v4.1.4, ..."); needs no initialisation.
    public static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: 512)
        mlres_mpi_library_version(&buf, Int32(buf.count))
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .split(separator: "\n").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
    }

    /// Rank 0 (the one that writes files and prints).
    public var isRoot: Bool { rank == 0 }

    // MARK: - Collectives

    /// Largest element count per MPI call (MPI counts are `int`).
    static let chunk = 1 << 30

    /// Sums `buffer` element-wise over all ranks, in place (MPI_Allreduce, MPI_IN_PLACE,
    /// MPI_FLOAT, MPI_SUM). Every rank gets the same result (Open MPI's reduction algorithms
    /// give all ranks the same bits).
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let base = buffer.baseAddress else { return check("MPI_Allreduce(float)", mlres_mpi_allreduce_sum_float(nil, 0)) }
        var off = 0
        repeat {
            let n = min(Self.chunk, buffer.count - off)
            check("MPI_Allreduce(float, \(n))", mlres_mpi_allreduce_sum_float(base + off, Int32(n)))
            off += n
        } while off < buffer.count
    }

    /// Sums `values` over all ranks, in place.
    public func allreduceSum(_ values: inout [Float]) {
        values.withUnsafeMutableBufferPointer { allreduceSum($0) }
    }

    /// Sums `values` over all ranks, in place (float64, e.g. loss sums).
    public func allreduceSum(_ values: inout [Double]) {
        let n = values.count
        values.withUnsafeMutableBufferPointer { b in
            check("MPI_Allreduce(double, \(n))", mlres_mpi_allreduce_sum_double(b.baseAddress, Int32(n)))
        }
    }

    /// Sums `values` over all ranks, in place (int64, e.g. counts of correct predictions).
    public func allreduceSum(_ values: inout [Int]) { intReduce(&values, "sum", mlres_mpi_allreduce_sum_int64) }
    /// Element-wise maximum over all ranks, in place.
    public func allreduceMax(_ values: inout [Int]) { intReduce(&values, "max", mlres_mpi_allreduce_max_int64) }
    /// Element-wise minimum over all ranks, in place.
    public func allreduceMin(_ values: inout [Int]) { intReduce(&values, "min", mlres_mpi_allreduce_min_int64) }

    private func intReduce(_ values: inout [Int], _ op: String,
                           _ f: (UnsafeMutablePointer<Int64>?, Int32) -> Int32) {
        var v = values.map { Int64($0) }
        let n = v.count
        v.withUnsafeMutableBufferPointer { b in check("MPI_Allreduce(int64 \(op), \(n))", f(b.baseAddress, Int32(n))) }
        values = v.map { Int($0) }
    }

    /// True on every rank when `flag` is true on at least one (the per-step stop flag: a
    /// SIGTERM seen by any rank stops all of them after the same step).
    public func any(_ flag: Bool) -> Bool {
        var v = [flag ? 1 : 0]
        allreduceMax(&v)
        return v[0] != 0
    }

    /// Rank `root`'s bytes on every rank (MPI_Bcast); the other ranks' `bytes` are replaced,
    /// whatever their length (the length is broadcast first).
    public func broadcast(_ bytes: inout [UInt8], root: Int = 0) {
        var n = [rank == root ? bytes.count : 0]
        n.withUnsafeMutableBytes { b in check("MPI_Bcast(length)", mlres_mpi_bcast_bytes(b.baseAddress, Int32(b.count), Int32(root))) }
        if rank != root { bytes = [UInt8](repeating: 0, count: n[0]) }
        var off = 0
        bytes.withUnsafeMutableBytes { b in
            repeat {
                let k = min(Self.chunk, b.count - off)
                check("MPI_Bcast(\(k) bytes)", mlres_mpi_bcast_bytes(b.baseAddress.map { $0 + off }, Int32(k), Int32(root)))
                off += k
            } while off < b.count
        }
    }

    /// Rank `root`'s `values` on every rank (same count on every rank).
    public func broadcast(_ values: inout [UInt64], root: Int = 0) {
        let n = values.count
        values.withUnsafeMutableBytes { b in
            check("MPI_Bcast(\(n) uint64)", mlres_mpi_bcast_bytes(b.baseAddress, Int32(b.count), Int32(root)))
        }
    }

    /// Waits until every rank has called it.
    public func barrier() { check("MPI_Barrier", mlres_mpi_barrier()) }

    /// Stops the whole job (MPI_Abort): mpirun kills every rank and exits with `code`.
    public func abort(code: Int32) -> Never {
        _ = mlres_mpi_abort(code)
        exit(code)  // not reached: MPI_Abort does not return
    }

    /// Ends MPI (MPI_Finalize) before a normal exit; every rank must call it.
    public func finalize() {
        if mlres_mpi_finalized() == 0 { _ = mlres_mpi_finalize() }
    }

    private func check(_ call: String, _ rc: Int32) {
        guard rc != mlres_mpi_success() else { return }
        let e = MPIError(call, code: rc)
        FileHandle.standardError.write(Data("error: rank \(rank) of \(size): \(e); aborting the job\n".utf8))
        abort(code: 2)
    }
}
