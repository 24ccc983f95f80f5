import Foundation
import MLResEngine
import MLResModel

/// The processes of a data-parallel training job as the trainer sees them (PyTorch's
/// `ProcessGroup`): `size` ranks, each holding the whole network and a `1/size` slice of every
/// global mini-batch. MLResDistributed implements it on MPI; ``SingleProcess`` is the
/// one-process group every collective of which is the identity.
///
/// Every rank must make the same calls in the same order with the same lengths.
public protocol ProcessGroup: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sum over the ranks, in place.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
    func allreduceSum(_ values: inout [Double])
    /// Element-wise minimum / maximum over the ranks, in place.
    func allreduceMin(_ values: inout [Int])
    func allreduceMax(_ values: inout [Int])
    /// True on every rank when `flag` is true on at least one.
    func any(_ flag: Bool) -> Bool
}

/// A job of one process.
public final class SingleProcess: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
    public func allreduceSum(_ values: inout [Double]) {}
    public func allreduceMin(_ values: inout [Int]) {}
    public func allreduceMax(_ values: inout [Int]) {}
    public func any(_ flag: Bool) -> Bool { flag }
}

/// Per-tensor fingerprints of a network: the first 8 bytes of the SHA-256 of each tensor's
/// float32 bytes (little-endian), in ``Network/namedTensors`` order, with the paths.
public func tensorFingerprints(_ net: Network) -> [(path: String, value: Int)] {
    net.namedTensors.map { nt in
        var h = SHA256Digest()
        nt.tensor.data.withUnsafeBytes { h.update(Data($0)) }
        let hex = h.finalize()
        return (nt.path, Int(bitPattern: UInt(hex.prefix(16), radix: 16) ?? 0))
    }
}

/// SHA-256 (hex) of every tensor of the network in ``Network/namedTensors`` order: equal
/// digests mean bit-identical parameters and BN statistics.
public func networkDigest(_ net: Network) -> String {
    var h = SHA256Digest()
    for nt in net.namedTensors { nt.tensor.data.withUnsafeBytes { h.update(Data($0)) } }
    return h.finalize()
}

/// The first path whose fingerprint differs between ranks, given the element-wise minimum
/// and maximum of the ranks' fingerprints (equal everywhere iff all ranks agree), or nil.
public func firstDivergence(paths: [String], minimum: [Int], maximum: [Int]) -> String? {
    precondition(paths.count == minimum.count && paths.count == maximum.count)
    return paths.indices.first { minimum[$0] != maximum[$0] }.map { paths[$0] }
}

/// Time and volume of the gradient exchange, for metrics.jsonl and the benchmark.
struct CommunicationClock {
    var seconds = 0.0
    var calls = 0
    var bytes = 0
    mutating func reset() { seconds = 0; calls = 0; bytes = 0 }
}

extension ProcessGroup {
    /// Sums `values` over the ranks and divides by their number (the mean of float64 values).
    func average(_ values: inout [Double]) {
        allreduceSum(&values)
        let n = Double(size)
        for i in values.indices { values[i] /= n }
    }
}
