import CDNNL
import Foundation
import MLResModel

// What data-parallel training needs from the engine, kept apart from the single-process code:
// the gradients and BN running statistics as one flat buffer (summed over replicas by the
// caller, who owns the transport), and synchronised batch norm. The engine never talks to
// another process itself: the caller hands it a ``ReplicaSum``.

/// In-place element-wise sum of a float64 vector over the replicas (ranks) of a data-parallel
/// job, e.g. an MPI_Allreduce. Every replica must call it at the same points with vectors of
/// the same length; ``replicas`` is their number.
public struct ReplicaSum {
    public let replicas: Int
    public let sum: (inout [Double]) -> Void
    public init(replicas: Int, sum: @escaping (inout [Double]) -> Void) {
        self.replicas = replicas; self.sum = sum
    }
}

extension NetworkExecutor {
    /// Number of floats in the flat gradient buffer (every trainable tensor in
    /// ``Network/trainablePaths`` order, in the engine's layouts, padding lanes included).
    public var flatGradientCount: Int { params.reduce(0) { $0 + $1.grad.count } }

    /// Copies every gradient left by ``computeGradients(input:labels:)`` into one flat buffer,
    /// calls `body` on it (e.g. an in-place allreduce and a scale by 1/N), and copies it back,
    /// ready for ``applySGD(lr:)``. `buffer` is reused between calls (pass the same array).
    public func withFlatGradients(_ buffer: inout [Float], _ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let n = flatGradientCount
        if buffer.count != n { buffer = [Float](repeating: 0, count: n) }
        try buffer.withUnsafeMutableBufferPointer { b in
            var off = 0
            for p in params { (b.baseAddress! + off).update(from: p.grad.floats, count: p.grad.count); off += p.grad.count }
            try body(b)
            off = 0
            for p in params { p.grad.floats.update(from: b.baseAddress! + off, count: p.grad.count); off += p.grad.count }
        }
    }

    /// Every batch norm's running mean and variance (stem to head, mean then variance per
    /// layer), as float64.
    public func runningStatistics() -> [Double] {
        var out: [Double] = []
        for bn in allBatchNorms {
            out += UnsafeBufferPointer(start: bn.runningMean.floats, count: bn.channels).map(Double.init)
            out += UnsafeBufferPointer(start: bn.runningVar.floats, count: bn.channels).map(Double.init)
        }
        return out
    }

    /// Replaces the running statistics with `values` (the layout of ``runningStatistics()``,
    /// rounded to float32), e.g. their mean over the replicas before an evaluation.
    public func setRunningStatistics(_ values: [Double]) throws {
        let need = allBatchNorms.reduce(0) { $0 + 2 * $1.channels }
        guard values.count == need else {
            throw EngineError("running statistics: \(values.count) values for \(need)")
        }
        var k = 0
        for bn in allBatchNorms {
            for c in 0 ..< bn.channels { bn.runningMean.floats[c] = Float(values[k + c]) }
            k += bn.channels
            for c in 0 ..< bn.channels { bn.runningVar.floats[c] = Float(values[k + c]) }
            k += bn.channels
        }
        version += 1   // eval plans fold the running statistics into their weights
    }

    private var allBatchNorms: [BNState] { blockParams.flatMap { [$0.bn1, $0.bn2] } + [headBN] }
}

/// Synchronised batch norm (+ReLU) for one layer of a data-parallel training plan: the batch
/// statistics are those of the global batch (all replicas), as if one process had the whole
/// batch; this is what PyTorch's `SyncBatchNorm` computes.
///
///     forward:  local μ_r, σ²_r (oneDNN) → Σ M_r, Σ M_r μ_r, Σ M_r (σ²_r + μ_r²) over replicas
///               → μ, σ² of the global batch; y = max(0, γ·(x − μ)/√(σ² + ε) + β)
///               (oneDNN forward with use_global_stats)
///     backward: oneDNN backward with use_global_stats gives g' = γ/√(σ²+ε)·g and the local
///               dβ_r = Σ g, dγ_r = Σ g·x̂; summed over replicas, the exact gradient is
///               dx = g' − γ/√(σ²+ε)·(dβ/M + x̂·dγ/M) = g' − (a_c + b_c·x)
///               with b_c = γ dγ / (M (σ²+ε)) and a_c = γ/√(σ²+ε)·dβ/M − b_c μ_c, applied as an
///               affine batch-norm primitive (mean 0, variance 1, ε 0) and a sum.
/// Every replica's g is the gradient of its own mean loss (N times its share of the global
/// mean loss, the same factor on every replica), so the result is consistent; the trainer
/// divides the summed parameter gradients by N.
final class SyncBatchNorm {
    let replicas: ReplicaSum
    let channels: Int
    let localCount: Int
    private(set) var globalCount: Int = 0
    let mean: Mem, variance: Mem
    private let epsilon: Float
    private let state: BNState
    private let fwd: BoundPrimitive
    private let bwd: BoundPrimitive?
    private let affine: BoundPrimitive?
    private let subtract: ScaledSum?
    private let affineScale: Mem, affineShift: Mem, zeros: Mem, ones: Mem
    private let dScale: Mem, dShift: Mem

    init(state: BNState, x: Mem, y: Mem, epsilon: Float, dx: Mem?, dy: Mem?, localCount: Int,
         replicas: ReplicaSum) throws {
        self.state = state; self.replicas = replicas; self.epsilon = epsilon
        channels = state.channels; self.localCount = localCount
        mean = try Mem(dims: [channels], tag: dnnl_a)
        variance = try Mem(dims: [channels], tag: dnnl_a)
        let flags = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue | dnnl_fuse_norm_relu.rawValue
            | dnnl_use_global_stats.rawValue
        var d = dnnl_batch_normalization_desc_t()
        var xmd = x.md
        try check(dnnl_batch_normalization_forward_desc_init(&d, dnnl_forward_training, &xmd, epsilon, flags),
                  "batch_normalization_forward_desc_init (sync)")
        let fpd = try PrimitiveDesc.create(&d, name: "sync batch norm forward")
        let ws = try Mem(fpd.md(dnnl_query_workspace_md))
        fwd = try BoundPrimitive(fpd, [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_DST), y),
                                       (Int32(MLRES_ARG_SCALE), state.weight.value),
                                       (Int32(MLRES_ARG_SHIFT), state.bias.value),
                                       (Int32(MLRES_ARG_MEAN), mean), (Int32(MLRES_ARG_VARIANCE), variance),
                                       (Int32(MLRES_ARG_WORKSPACE), ws)])
        affineScale = try Mem(dims: [channels], tag: dnnl_a)
        affineShift = try Mem(dims: [channels], tag: dnnl_a)
        zeros = try Mem(dims: [channels], tag: dnnl_a)
        ones = try Mem(dims: [channels], tag: dnnl_a)
        dScale = state.weight.grad; dShift = state.bias.grad
        for c in 0 ..< channels { zeros.floats[c] = 0; ones.floats[c] = 1 }
        if let dx, let dy {
            guard mdEqual(dx.md, x.md) else { throw EngineError("sync batch norm: dx and x layouts differ") }
            var bd = dnnl_batch_normalization_desc_t()
            var dmd = dy.md
            try check(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &dmd, &xmd, epsilon, flags),
                      "batch_normalization_backward_desc_init (sync)")
            let bpd = try PrimitiveDesc.create(&bd, hint: fpd, name: "sync batch norm backward")
            bwd = try BoundPrimitive(bpd, [
                (Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_MEAN), mean), (Int32(MLRES_ARG_VARIANCE), variance),
                (Int32(MLRES_ARG_DIFF_DST), dy), (Int32(MLRES_ARG_SCALE), state.weight.value),
                (Int32(MLRES_ARG_SHIFT), state.bias.value), (Int32(MLRES_ARG_WORKSPACE), ws),
                (Int32(MLRES_ARG_DIFF_SRC), dx), (Int32(MLRES_ARG_DIFF_SCALE), state.weight.grad),
                (Int32(MLRES_ARG_DIFF_SHIFT), state.bias.grad)])
            // t = b_c·x + a_c as batch norm in inference: scale·(x − 0)/√(1 + 0) + shift.
            var ad = dnnl_batch_normalization_desc_t()
            let aflags = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue | dnnl_use_global_stats.rawValue
            try check(dnnl_batch_normalization_forward_desc_init(&ad, dnnl_forward_inference, &xmd, 0, aflags),
                      "batch_normalization_forward_desc_init (sync affine)")
            let apd = try PrimitiveDesc.create(&ad, name: "sync batch norm correction")
            let t = try Mem(x.md)
            affine = try BoundPrimitive(apd, [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_DST), t),
                                             (Int32(MLRES_ARG_SCALE), affineScale), (Int32(MLRES_ARG_SHIFT), affineShift),
                                             (Int32(MLRES_ARG_MEAN), zeros), (Int32(MLRES_ARG_VARIANCE), ones)])
            subtract = try ScaledSum(1, dx, -1, t, into: dx)
        } else {
            bwd = nil; affine = nil; subtract = nil
        }
    }

    /// From this replica's batch statistics (biased variance) to the global batch's; then
    /// normalises x into y with them. Leaves μ, σ² in ``mean`` / ``variance``.
    func forward(localMean: UnsafeMutablePointer<Float>, localVar: UnsafeMutablePointer<Float>) {
        let c = channels, m = Double(localCount)
        var v = [Double](repeating: 0, count: 1 + 2 * c)
        v[0] = m
        for k in 0 ..< c {
            let mu = Double(localMean[k])
            v[1 + k] = m * mu
            v[1 + c + k] = m * (Double(localVar[k]) + mu * mu)
        }
        replicas.sum(&v)
        let total = v[0]
        globalCount = Int(total)
        for k in 0 ..< c {
            let mu = v[1 + k] / total
            mean.floats[k] = Float(mu)
            variance.floats[k] = Float(max(0, v[1 + c + k] / total - mu * mu))
        }
        fwd.run()
        DNNLContext.shared.wait()
    }

    /// dx through the global statistics; leaves this replica's dγ, dβ sums in the gradients.
    func backward() {
        guard let bwd, let affine, let subtract else { return }
        bwd.run()
        DNNLContext.shared.wait()
        let c = channels
        var v = [Double](repeating: 0, count: 2 * c)
        for k in 0 ..< c { v[k] = Double(dShift.floats[k]); v[c + k] = Double(dScale.floats[k]) }
        replicas.sum(&v)
        let m = Double(globalCount)
        for k in 0 ..< c {
            let s2 = Double(variance.floats[k]) + Double(epsilon)
            let gamma = Double(state.weight.value.floats[k])
            let b = gamma * v[c + k] / (m * s2)
            let a = gamma / s2.squareRoot() * v[k] / m - b * Double(mean.floats[k])
            affineScale.floats[k] = Float(b)
            affineShift.floats[k] = Float(a)
        }
        affine.run()
        subtract.run()
        DNNLContext.shared.wait()
    }
}
