import Foundation
import MLResModel

// Batch-norm recalibration (issue 17): re-estimate every running mean and variance from a few
// training batches, no weight change. The running statistics a network carries are an
// exponential average over the last steps of training, and after surgery (interpolation copies a
// block's BN statistics into a block that now sees another input; a lesion removes the block
// that fed the next one) they describe inputs the network no longer produces. PyTorch's recipe,
// `bn.reset_running_stats(); bn.momentum = None; model.train()` and a forward pass over N
// batches, replaces them with the cumulative (equal-weight) average of the N batch statistics.
// This file is that recipe on the oneDNN engine: the engine's train-mode forward gives each
// batch's statistics, and ``CumulativeBatchStatistics`` averages them.

/// The statistics one batch-norm layer normalised one batch with (training mode).
public struct BatchNormStatistics: Sendable, Equatable {
    /// The layer's checkpoint path prefix, e.g. `model/stages/1/blocks/0/bn2` or `model/head/bn`.
    public var path: String
    /// Per-channel batch mean μ_c = mean over (n, h, w), `[C]`.
    public var mean: [Double]
    /// Per-channel *biased* batch variance σ²_c = mean over (n, h, w) of (x − μ_c)², `[C]`
    /// (what the layer normalises with).
    public var variance: [Double]
    /// M = N·H·W, the number of values per channel the statistics were taken over.
    public var count: Int

    public init(path: String, mean: [Double], variance: [Double], count: Int) {
        self.path = path; self.mean = mean; self.variance = variance; self.count = count
    }
}

/// The cumulative (equal-weight) average of batch statistics: PyTorch's `BatchNorm` running
/// statistics with `momentum=None` after `reset_running_stats()`. After batches 1 … K,
///
///     running_mean_c = (1/K) Σ_k μ_{k,c}
///     running_var_c  = (1/K) Σ_k σ²_{k,c} · M_k / (M_k − 1)
///
/// (PyTorch stores the *unbiased* batch variance in running_var, as the engine's own momentum
/// update does, see `BatchNormReLU`; M_k = 1 is taken as is). Sums are kept in float64. A pure
/// value: add the batches in order, read ``runningStatistics``.
public struct CumulativeBatchStatistics: Sendable, Equatable {
    /// Layer paths, in the order of the first batch added.
    public private(set) var paths: [String] = []
    /// Σ_k μ_k and Σ_k unbiased σ²_k, per layer, per channel.
    public private(set) var meanSums: [[Double]] = []
    public private(set) var varianceSums: [[Double]] = []
    /// Number of batches added (K).
    public private(set) var batches = 0

    public init() {}

    /// Adds one batch's statistics (every layer, in the same order each time).
    /// - Throws: ``EngineError`` when the layers differ from those of the first batch.
    public mutating func add(_ batch: [BatchNormStatistics]) throws {
        if batches == 0 {
            paths = batch.map(\.path)
            meanSums = batch.map { [Double](repeating: 0, count: $0.mean.count) }
            varianceSums = meanSums
        }
        guard batch.map(\.path) == paths, zip(batch, meanSums).allSatisfy({ $0.mean.count == $1.count && $0.variance.count == $1.count }) else {
            throw EngineError("batch statistics of another network: layers \(batch.map(\.path)) after \(paths)")
        }
        for (l, s) in batch.enumerated() {
            let unbias = s.count > 1 ? Double(s.count) / Double(s.count - 1) : 1
            for c in s.mean.indices {
                meanSums[l][c] += s.mean[c]
                varianceSums[l][c] += s.variance[c] * unbias
            }
        }
        batches += 1
    }

    /// The running statistics, layer by layer (running mean then running variance per layer):
    /// the layout of ``NetworkExecutor/runningStatistics()``. Empty before the first batch.
    public var runningStatistics: [Double] {
        guard batches > 0 else { return [] }
        let k = Double(batches)
        return zip(meanSums, varianceSums).flatMap { m, v in m.map { $0 / k } + v.map { $0 / k } }
    }
}

extension NetworkExecutor {
    /// Checkpoint path prefixes of every batch-norm layer, stem to head: `bn1`, `bn2` of each
    /// block, then `model/head/bn` (the order of ``runningStatistics()``).
    public var batchNormPaths: [String] {
        geometry.flatMap { g in
            let pre = "model/stages/\(g.id.stage)/blocks/\(g.id.block)"
            return [pre + "/bn1", pre + "/bn2"]
        } + ["model/head/bn"]
    }

    /// The batch statistics of every batch-norm layer in a training-mode forward pass of
    /// `count` standardised NCHW images `input` (`[count·C·H·W]`): each layer normalises with
    /// its own batch's statistics, as in training (with synchronised batch norm, those of the
    /// global batch: every replica must call this together). Nothing the network holds
    /// changes: no weight, and the running statistics are left as they were.
    ///
    /// - Returns: one entry per layer, in ``batchNormPaths`` order.
    /// - Throws: ``EngineError`` for an empty batch or an input of the wrong size.
    public func batchStatistics(input: [Float], count: Int) throws -> [BatchNormStatistics] {
        guard count > 0 else { throw EngineError("batch must hold at least one image") }
        let saved = runningStatistics()
        let plan = try plan(batch: count, mode: .train)
        try loadInput(input, into: plan)
        plan.stem.forward()
        for bp in plan.blocks { bp.forward() }
        plan.headInReorder?.run()
        plan.head.forward()
        DNNLContext.shared.wait()
        let layers = plan.blocks.flatMap { [$0.bn1, $0.bn2!] } + [plan.head]
        let stats = zip(batchNormPaths, layers).map { path, bn in
            let s = bn.lastBatchStatistics()
            return BatchNormStatistics(path: path, mean: s.mean, variance: s.variance, count: s.count)
        }
        // The training-mode forward moved the running statistics by the momentum rule: undo it.
        try setRunningStatistics(saved)
        return stats
    }

    /// BN recalibration (issue 17): replaces every running mean and variance by the cumulative
    /// average (``CumulativeBatchStatistics``, PyTorch `momentum=None`) of the batch statistics
    /// of `batches` training-mode forward passes; `next` gives each batch's standardised images
    /// (NCHW `[n·C·H·W]`) and count n. No weight changes.
    ///
    /// - Returns: the cumulative average that was installed.
    /// - Throws: ``EngineError`` for `batches` < 1 or a bad batch; on error the running
    ///   statistics are unchanged.
    @discardableResult
    public func recalibrateBatchNorm(batches: Int, next: () throws -> (images: [Float], count: Int)) throws
        -> CumulativeBatchStatistics {
        guard batches >= 1 else { throw EngineError("BN recalibration needs at least one batch (got \(batches))") }
        var acc = CumulativeBatchStatistics()
        for _ in 0 ..< batches {
            let b = try next()
            try acc.add(try batchStatistics(input: b.images, count: b.count))
        }
        try setRunningStatistics(acc.runningStatistics)
        return acc
    }
}
