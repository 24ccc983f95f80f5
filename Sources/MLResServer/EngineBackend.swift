import Foundation
import MLResEngine
import MLResModel

/// The oneDNN engine (``NetworkExecutor``, eval mode) behind ``InferenceBackend``: what
/// `mlres-eval serve` runs by default.
///
/// Two properties of the executor shape this adapter:
/// - It is not thread-safe. The model's batcher already calls `infer` from one thread, one
///   batch at a time; the lock makes that a guarantee for any other caller too.
/// - It builds and keeps one plan (primitives + activation buffers) per batch size it sees.
///   Batches are therefore padded with zero images up to the next *bucket* size (see
///   ``bucketSizes(maxBatch:)``), so at most about 2·log2(max-batch) plans ever exist and at most
///   a third of a batch is padding. Padded rows are computed and dropped; eval-mode BN uses
///   running statistics, so they cannot change the real rows.
///
/// OpenMP's thread count is a per-thread setting, so `infer` applies `threads` on the thread
/// that runs the batch (the batcher's own thread), not only where the model was loaded.
public final class EngineBackend: InferenceBackend, @unchecked Sendable {
    public let inputShape: [Int]
    public let numClasses: Int
    /// Threads per batch (`--threads`).
    public let threads: Int
    /// The batch sizes plans are built for, ascending; the last one is the largest batch.
    public let buckets: [Int]
    private let executor: NetworkExecutor
    private let lock = NSLock()
    /// Bucket sizes planned so far (for tests and metadata).
    private var planned: Set<Int> = []

    /// - Parameters:
    ///   - network: the checkpoint's network (parameters copied into the engine).
    ///   - threads: OpenMP threads per batch.
    ///   - maxBatch: the largest batch `infer` will be given at once (`--max-batch`); larger
    ///     calls are split.
    public init(network: Network, threads: Int, maxBatch: Int) throws {
        guard maxBatch >= 1 else { throw EngineError("max batch must be at least 1 (got \(maxBatch))") }
        inputShape = network.inputShape
        numClasses = network.numClasses
        self.threads = max(1, threads)
        buckets = Self.bucketSizes(maxBatch: maxBatch)
        // The batch size only picks the weights' preferred memory layout; use the largest batch,
        // the one that matters under load.
        executor = try NetworkExecutor(network: network, batchSize: maxBatch, threads: self.threads)
    }

    /// Plan sizes for batches of up to `maxBatch` images: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers
    /// of two and 1.5 times them) below `maxBatch`, then `maxBatch` itself. A batch of n runs on
    /// the smallest bucket ≥ n, so padding is under a third of the bucket and the number of
    /// plans is at most 2·log2(maxBatch) + 2.
    public static func bucketSizes(maxBatch: Int) -> [Int] {
        var sizes: [Int] = []
        var p = 1
        while p < maxBatch {
            sizes.append(p)
            if p >= 2, p + p / 2 < maxBatch { sizes.append(p + p / 2) }
            p *= 2
        }
        sizes.append(maxBatch)
        return sizes
    }

    /// The bucket a batch of `count` images runs on (`count` ≤ the largest bucket).
    public func bucket(for count: Int) -> Int {
        buckets.first { $0 >= count } ?? buckets[buckets.count - 1]
    }

    /// Batch sizes that have a plan so far.
    public var plannedSizes: [Int] { lock.withLock { planned.sorted() } }

    public func infer(_ input: [Float], count: Int) throws -> [Float] {
        let imageSize = inputShape.reduce(1, *)
        guard count > 0, input.count == count * imageSize else {
            throw EngineError("\(input.count) floats for \(count) images of \(imageSize)")
        }
        lock.lock(); defer { lock.unlock() }
        setEngineThreads(threads)
        let largest = buckets[buckets.count - 1]
        var out: [Float] = []
        out.reserveCapacity(count * numClasses)
        var done = 0
        while done < count {
            let n = min(largest, count - done)
            let size = bucket(for: n)
            var chunk = Array(input[done * imageSize ..< (done + n) * imageSize])
            if size > n { chunk.append(contentsOf: repeatElement(0, count: (size - n) * imageSize)) }
            let z = try executor.forward(chunk, count: size)
            planned.insert(size)
            out.append(contentsOf: z[0 ..< n * numClasses])
            done += n
        }
        return out
    }
}
