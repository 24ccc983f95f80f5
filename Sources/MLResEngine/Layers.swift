import CDNNL
import Foundation
import MLResModel

// Each layer of the network with its forward and backward. Activations are NHWC (oneDNN `nhwc`,
// logical dims [N, C, H, W]); conv weights are in the blocked layout oneDNN picks.

/// What a convolution adds to its result before writing it (a oneDNN post-op).
enum ConvPostOp {
    case none
    /// y ← conv(x) + y (accumulate into the destination's current contents).
    case sum
    /// y ← conv(x) + r (a second tensor of y's shape).
    case add(Mem)
    /// y ← max(0, conv(x) + b) (with a bias, for BN folded into the conv in eval mode).
    case relu
}

/// Weights as a primitive wants them: w' = s ⊙ w (s a scalar, or one factor per output
/// channel), reordered from the stored layout into the primitive's. Run when weights change.
final class WeightPrep {
    let dst: Mem
    private let prim: BoundPrimitive

    init(from w: Mem, to md: dnnl_memory_desc_t, scales: Mem?) throws {
        dst = try Mem(md)
        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        var args: [(Int32, Mem)] = [(Int32(MLRES_ARG_FROM), w), (Int32(MLRES_ARG_TO), dst)]
        if let scales {
            var rt = mlres_runtime_f32()
            try check(dnnl_primitive_attr_set_output_scales(attr, 1, scales.count == 1 ? 0 : 1, &rt),
                      "primitive_attr_set_output_scales")
            args.append((Int32(MLRES_ARG_ATTR_OUTPUT_SCALES), scales))
        }
        var pd: dnnl_primitive_desc_t?
        var s = w.md, d = md
        let e = DNNLContext.shared.engine
        try check(dnnl_reorder_primitive_desc_create(&pd, &s, e, &d, e, attr), "reorder_primitive_desc_create")
        prim = try BoundPrimitive(PrimitiveDesc(pd!, name: "weight reorder"), args)
    }
    func run() { prim.run() }
}

/// 3x3 convolution, padding 1, no bias, stride s ∈ {1, 2} (oneDNN primitives).
///
///     forward:          y[n,o,i,j]  = Σ_{c,a,b} w[o,c,a,b] · x[n,c, s·i+a−1, s·j+b−1]   (x = 0 outside)
///     backward data:    dx[n,c,p,q] = Σ_{o,i,j,a,b : s·i+a−1 = p, s·j+b−1 = q} w[o,c,a,b] · dy[n,o,i,j]
///     backward weights: dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] · x[n,c, s·i+a−1, s·j+b−1]
///
/// Fusions: the forward and backward-data passes may use scaled weights s ⊙ w (the block's
/// step size h, or a folded BN's γ/σ), an optional bias, and a post-op (``ConvPostOp``).
/// The weight gradient is always that of the unscaled product (dw of conv(w, x) w.r.t. w).
final class Conv3x3 {
    private var fwd: BoundPrimitive
    private var bwdData: BoundPrimitive?
    private var bwdWeights: BoundPrimitive?
    /// Weight preparations for the forward and backward-data kernels (layout + scale).
    private var preps: [WeightPrep] = []
    /// Layout conversions run before the backward-weights kernel (plain copies of x and dy).
    private var beforeWeights: [BoundPrimitive] = []
    private var afterWeights: [BoundPrimitive] = []
    /// The implementation oneDNN chose for the forward pass.
    let implementation: String
    /// The implementation oneDNN chose for the weight gradient (nil: inference).
    private(set) var backwardWeightsImplementation: String?

    static let strides: (Int) -> [Int64] = { [Int64($0), Int64($0)] }
    static let padding: [Int64] = [1, 1]

    static func forwardPD(prop: dnnl_prop_kind_t, x: dnnl_memory_desc_t, w: dnnl_memory_desc_t,
                          bias: dnnl_memory_desc_t?, y: dnnl_memory_desc_t, stride: Int,
                          attr: dnnl_primitive_attr_t? = nil) throws -> PrimitiveDesc {
        var d = dnnl_convolution_desc_t()
        var x = x, w = w, y = y
        if var b = bias {
            try check(dnnl_convolution_forward_desc_init(&d, prop, dnnl_convolution_direct, &x, &w, &b, &y,
                                                         strides(stride), padding, padding),
                      "convolution_forward_desc_init")
        } else {
            try check(dnnl_convolution_forward_desc_init(&d, prop, dnnl_convolution_direct, &x, &w, nil, &y,
                                                         strides(stride), padding, padding),
                      "convolution_forward_desc_init")
        }
        return try PrimitiveDesc.create(&d, attr: attr, name: "conv forward")
    }

    /// The weight layout the backward-weights kernel prefers (used once, to store parameters in
    /// it so that gradients, weights and momentum share one layout and SGD needs no reorder).
    /// The layout is that of fp32 weight gradients (fp32 master weights) also when the
    /// activations are bf16 (`type`): oneDNN's bf16 backward-weights kernels write fp32.
    static func preferredWeightLayout(cin: Int, cout: Int, stride: Int, height: Int, width: Int,
                                      batch: Int, block: Int, type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
        let x = try makeMD([batch, cin, height, width], ActLayout.tag(channels: cin, block: block), type)
        let y = try makeMD([batch, cout, (height - 1) / stride + 1, (width - 1) / stride + 1],
                           ActLayout.tag(channels: cout, block: block), type)
        let w = try makeMD([cout, cin, 3, 3], dnnl_format_tag_any, type)
        let fpd = try forwardPD(prop: dnnl_forward_training, x: x, w: w, bias: nil, y: y, stride: stride)
        var d = dnnl_convolution_desc_t()
        var xm = x, wm = try makeMD([cout, cin, 3, 3], dnnl_format_tag_any), ym = y
        try check(dnnl_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &xm, &wm, nil, &ym,
                                                              strides(stride), padding, padding),
                  "convolution_backward_weights_desc_init")
        let wpd = try PrimitiveDesc.create(&d, hint: fpd, name: "conv probe")
        if !wpd.isReference { return wpd.md(dnnl_query_diff_weights_md) }
        var m = fpd.md(dnnl_query_weights_md)
        m.data_type = dnnl_f32   // same blocking, fp32 elements (strides count elements)
        return m
    }

    /// - Parameters:
    ///   - scales: `[1]` (a scalar) or `[Cout]` factors applied to the weights, or nil.
    ///   - bias: `[Cout]` bias, or nil.
    ///   - dx: nil means no backward-data pass (the stem); `dy` nil means inference.
    init(weight: Param, stride: Int, x: Mem, y: Mem, training: Bool, dx: Mem?, dy: Mem?,
         scales: Mem? = nil, bias: Mem? = nil, post: ConvPostOp = .none) throws {
        let prop = training ? dnnl_forward_training : dnnl_forward_inference
        // Weights as the forward/backward-data kernels read them: the activations' type (bf16
        // copies of the fp32 master weights in bf16 precision).
        let anyW = try makeMD(weight.shape, dnnl_format_tag_any, x.md.data_type)
        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        var po: dnnl_post_ops_t?
        try check(dnnl_post_ops_create(&po), "post_ops_create")
        defer { dnnl_post_ops_destroy(po) }
        var extra: [(Int32, Mem)] = []
        switch post {
        case .none: break
        case .sum: try check(dnnl_post_ops_append_sum(po, 1), "post_ops_append_sum")
        case .relu: try check(dnnl_post_ops_append_eltwise(po, 1, dnnl_eltwise_relu, 0, 0), "post_ops_append_eltwise")
        case .add(let r):
            var rmd = r.md
            try check(dnnl_post_ops_append_binary(po, dnnl_binary_add, &rmd), "post_ops_append_binary")
            extra.append((Int32(MLRES_ARG_POST_OP0_SRC_1), r))
        }
        try check(dnnl_primitive_attr_set_post_ops(attr, po), "primitive_attr_set_post_ops")
        let fpd = try Conv3x3.forwardPD(prop: prop, x: x.md, w: anyW, bias: bias?.md, y: y.md, stride: stride, attr: attr)
        guard !fpd.isReference else {
            throw EngineError("oneDNN has no optimised convolution for \(weight.path) with these layouts and post-ops")
        }
        implementation = fpd.implementation
        let wF = try WeightPrep(from: weight.value, to: fpd.md(dnnl_query_weights_md), scales: scales)
        preps.append(wF)
        var fargs: [(Int32, Mem)] = [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_WEIGHTS), wF.dst),
                                     (Int32(MLRES_ARG_DST), y)] + extra
        if let bias { fargs.append((Int32(MLRES_ARG_BIAS), bias)) }
        fwd = try BoundPrimitive(fpd, fargs)
        guard training, let dy else { return }
        let s = Conv3x3.strides(stride), p = Conv3x3.padding
        if let dx {
            var dd = dnnl_convolution_desc_t()
            var dxmd = dx.md, wmd = anyW, dymd = dy.md
            try check(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &dxmd, &wmd, &dymd, s, p, p),
                      "convolution_backward_data_desc_init")
            let bpd = try PrimitiveDesc.create(&dd, hint: fpd, name: "conv backward data")
            let wB = try WeightPrep(from: weight.value, to: bpd.md(dnnl_query_weights_md), scales: scales)
            preps.append(wB)
            bwdData = try BoundPrimitive(bpd, [(Int32(MLRES_ARG_DIFF_DST), dy), (Int32(MLRES_ARG_WEIGHTS), wB.dst),
                                               (Int32(MLRES_ARG_DIFF_SRC), dx)])
        }
        var wd = dnnl_convolution_desc_t()
        var xmd = x.md, gmd = weight.grad.md, dymd = dy.md
        try check(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &xmd, &gmd, nil, &dymd, s, p, p),
                  "convolution_backward_weights_desc_init")
        var gW = weight.grad
        let wpd: PrimitiveDesc
        if let pd = try? PrimitiveDesc.create(&wd, hint: fpd, name: "conv backward weights"), !pd.isReference {
            wpd = pd
        } else {
            var anyw = try makeMD(weight.shape, dnnl_format_tag_any)   // fp32 gradient
            try check(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &xmd, &anyw, nil, &dymd, s, p, p),
                      "convolution_backward_weights_desc_init")
            wpd = try PrimitiveDesc.create(&wd, hint: fpd, name: "conv backward weights")
            gW = try Mem(wpd.md(dnnl_query_diff_weights_md))
            afterWeights.append(try makeReorder(from: gW, to: weight.grad))
        }
        var (wX, wDy, bwdPD) = (x, dy, wpd)
        if wpd.isReference {
            // oneDNN 2.6 on AVX2 has no JIT backward-weights kernel for a plain few-channel source
            // with a blocked (nChw8c) dy: the 1-channel stem of Fashion-MNIST fell to `ref:any`,
            // 946 of the 1241 ms of a 1-thread 2-2-2 training step. Its GEMM kernel takes plain
            // NCHW, so x and dy are copied to NCHW first (100x16x28x28 floats for that stem).
            let plainX = try Mem(dims: dims4(x.md), tag: dnnl_abcd, type: x.md.data_type)
            let plainDy = try Mem(dims: dims4(dy.md), tag: dnnl_abcd, type: dy.md.data_type)
            var pxmd = plainX.md, pdymd = plainDy.md, anyw = try makeMD(weight.shape, dnnl_format_tag_any)
            try check(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &pxmd, &anyw, nil, &pdymd, s, p, p),
                      "convolution_backward_weights_desc_init")
            if let pd = try? PrimitiveDesc.create(&wd, hint: fpd, name: "conv backward weights (plain)"), !pd.isReference {
                beforeWeights = [try makeReorder(from: x, to: plainX), try makeReorder(from: dy, to: plainDy)]
                (wX, wDy, bwdPD) = (plainX, plainDy, pd)
                let plainGW = try Mem(pd.md(dnnl_query_diff_weights_md))
                afterWeights = [try makeReorder(from: plainGW, to: weight.grad)]
                gW = plainGW
            }
        }
        backwardWeightsImplementation = bwdPD.implementation
        bwdWeights = try BoundPrimitive(bwdPD, [(Int32(MLRES_ARG_SRC), wX), (Int32(MLRES_ARG_DIFF_DST), wDy),
                                                (Int32(MLRES_ARG_DIFF_WEIGHTS), gW)])
    }

    /// Refreshes the scaled/reordered weight copies from the stored weights.
    func prepareWeights() { for p in preps { p.run() } }

    func forward() { fwd.run() }

    /// Writes dx (if planned) and the weight gradient (overwritten, not accumulated).
    func backward() {
        bwdData?.run()
        for r in beforeWeights { r.run() }
        bwdWeights?.run()
        for r in afterWeights { r.run() }
    }
}

/// The four logical dimensions (N, C, H, W) of an activation descriptor.
private func dims4(_ md: dnnl_memory_desc_t) -> [Int] {
    [Int(md.dims.0), Int(md.dims.1), Int(md.dims.2), Int(md.dims.3)]
}

/// dst = x + y elementwise (oneDNN `binary` add): the backward of the residual sum,
/// dY_j = dY_{j+1} + (gradient through the residual branch).
final class Add {
    private let prim: BoundPrimitive
    init(_ x: Mem, _ y: Mem, into dst: Mem) throws {
        var d = dnnl_binary_desc_t()
        var a = x.md, b = y.md, c = dst.md
        try check(dnnl_binary_desc_init(&d, dnnl_binary_add, &a, &b, &c), "binary_desc_init")
        prim = try BoundPrimitive(PrimitiveDesc.create(&d, name: "binary add"),
                                  [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_SRC_1), y), (Int32(MLRES_ARG_DST), dst)])
    }
    func run() { prim.run() }
}

/// Batch normalisation fused with the ReLU that follows it (oneDNN `fuse_norm_relu`).
///
///     train:  μ_c = mean_{n,h,w} x,  σ²_c = mean_{n,h,w} (x − μ)²,  x̂ = (x − μ)/√(σ² + ε)
///             y = max(0, γ·x̂ + β)
///             running: r_μ ← (1−m)·r_μ + m·μ,  r_σ² ← (1−m)·r_σ² + m·σ²·M/(M−1)  (M = N·H·W,
///             PyTorch's convention: unbiased variance for the running statistic)
///     eval:   the same with μ, σ² replaced by r_μ, r_σ²
///     backward (train): g = dy·[y > 0];  dβ = Σ g;  dγ = Σ g·x̂;
///             dx = γ/√(σ² + ε) · (g − dβ/M − x̂·dγ/M)
final class BatchNormReLU {
    let state: BNState
    private let fwd: BoundPrimitive
    private var bwd: BoundPrimitive?
    private let training: Bool
    private let batchMean: Mem
    private let batchVar: Mem
    private let momentum: Float
    private let reduced: Int

    /// Synchronised batch norm across data-parallel replicas (nil: this batch's statistics).
    private let sync: SyncBatchNorm?

    init(state: BNState, x: Mem, y: Mem, training: Bool, epsilon: Float, momentum: Float,
         dx: Mem?, dy: Mem?, replicas: ReplicaSum? = nil) throws {
        self.state = state; self.training = training; self.momentum = momentum
        let dims = x.md.dims
        reduced = Int(dims.0) * Int(dims.2) * Int(dims.3)
        if training, let replicas {
            sync = try SyncBatchNorm(state: state, x: x, y: y, epsilon: epsilon, dx: dx, dy: dy,
                                     localCount: reduced, replicas: replicas)
        } else {
            sync = nil
        }
        let flags = dnnl_use_scale.rawValue | dnnl_use_shift.rawValue | dnnl_fuse_norm_relu.rawValue
            | (training ? 0 : dnnl_use_global_stats.rawValue)
        var d = dnnl_batch_normalization_desc_t()
        var xmd = x.md
        try check(dnnl_batch_normalization_forward_desc_init(
            &d, training ? dnnl_forward_training : dnnl_forward_inference, &xmd, epsilon, flags),
                  "batch_normalization_forward_desc_init")
        let fpd = try PrimitiveDesc.create(&d, name: "batch norm forward")
        batchMean = try Mem(dims: [state.channels], tag: dnnl_a)
        batchVar = try Mem(dims: [state.channels], tag: dnnl_a)
        var args: [(Int32, Mem)] = [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_DST), y),
                                    (Int32(MLRES_ARG_SCALE), state.weight.value),
                                    (Int32(MLRES_ARG_SHIFT), state.bias.value)]
        if training {
            let ws = try Mem(fpd.md(dnnl_query_workspace_md))
            args += [(Int32(MLRES_ARG_MEAN), batchMean), (Int32(MLRES_ARG_VARIANCE), batchVar),
                     (Int32(MLRES_ARG_WORKSPACE), ws)]
            fwd = try BoundPrimitive(fpd, args)
            if let dx, let dy {
                var bd = dnnl_batch_normalization_desc_t()
                var dmd = dy.md
                try check(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &dmd, &xmd, epsilon,
                                                                      flags),
                          "batch_normalization_backward_desc_init")
                let bpd = try PrimitiveDesc.create(&bd, hint: fpd, name: "batch norm backward")
                bwd = try BoundPrimitive(bpd, [
                    (Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_MEAN), batchMean),
                    (Int32(MLRES_ARG_VARIANCE), batchVar), (Int32(MLRES_ARG_DIFF_DST), dy),
                    (Int32(MLRES_ARG_SCALE), state.weight.value), (Int32(MLRES_ARG_SHIFT), state.bias.value),
                    (Int32(MLRES_ARG_WORKSPACE), ws), (Int32(MLRES_ARG_DIFF_SRC), dx),
                    (Int32(MLRES_ARG_DIFF_SCALE), state.weight.grad),
                    (Int32(MLRES_ARG_DIFF_SHIFT), state.bias.grad)])
            }
        } else {
            args += [(Int32(MLRES_ARG_MEAN), state.runningMean), (Int32(MLRES_ARG_VARIANCE), state.runningVar)]
            fwd = try BoundPrimitive(fpd, args)
        }
    }

    /// Normalises (batch statistics in training, running ones in eval); in training also
    /// updates the running statistics.
    func forward() {
        fwd.run()
        guard training else { return }
        DNNLContext.shared.wait()
        let m = momentum
        var mean = batchMean.floats, variance = batchVar.floats, count = reduced
        if let sync {
            // Local statistics → the global batch's, then normalise with those.
            sync.forward(localMean: batchMean.floats, localVar: batchVar.floats)
            mean = sync.mean.floats; variance = sync.variance.floats; count = sync.globalCount
        }
        let unbias = count > 1 ? Float(count) / Float(count - 1) : 1
        let rm = state.runningMean.floats, rv = state.runningVar.floats
        for c in 0..<state.channels {
            rm[c] = (1 - m) * rm[c] + m * mean[c]
            rv[c] = (1 - m) * rv[c] + m * variance[c] * unbias
        }
    }

    /// The statistics the last training-mode ``forward()`` normalised with: per-channel mean,
    /// biased variance σ² and the number M of values per channel they were taken over (with
    /// synchronised batch norm, those of the global batch). For BN recalibration (issue 17).
    func lastBatchStatistics() -> (mean: [Double], variance: [Double], count: Int) {
        let n = state.channels
        let (m, v, count) = sync.map { ($0.mean.floats, $0.variance.floats, $0.globalCount) }
            ?? (batchMean.floats, batchVar.floats, reduced)
        return ((0 ..< n).map { Double(m[$0]) }, (0 ..< n).map { Double(v[$0]) }, count)
    }

    /// Writes dx and the γ, β gradients (overwritten). With synchronised batch norm, the γ, β
    /// gradients are this replica's sums (the trainer sums them over replicas with every other
    /// gradient) and dx is the exact gradient through the global batch statistics.
    func backward() {
        if let sync { sync.backward(); return }
        bwd?.run()
    }
}

/// dst = a·x + b·y elementwise over one shape (oneDNN `sum`, multi-threaded).
/// Used for the residual sum  Y' = P(Y) + h·F  and its backward  dY = dY' + h·dF_in.
final class ScaledSum {
    private let prim: BoundPrimitive
    init(_ a: Float, _ x: Mem, _ b: Float, _ y: Mem, into dst: Mem) throws {
        var pd: dnnl_primitive_desc_t?
        let scales: [Float] = [a, b]
        var dmd = dst.md
        let srcs = [x.md, y.md]
        try check(dnnl_sum_primitive_desc_create(&pd, &dmd, 2, scales, srcs, nil, DNNLContext.shared.engine),
                  "sum_primitive_desc_create")
        prim = try BoundPrimitive(PrimitiveDesc(pd!, name: "sum"),
                                  [(Int32(MLRES_ARG_MULTIPLE_SRC), x), (Int32(MLRES_ARG_MULTIPLE_SRC + 1), y),
                                   (Int32(MLRES_ARG_DST), dst)])
    }
    func run() { prim.run() }
}

/// Where element (n, c, h, w) of an activation lives: NHWC (`nhwc`, block 0), or oneDNN's blocked
/// `nChw16c` / `nChw8c` (channels in blocks of 16 or 8, innermost; ``CPUISA/activationBlock``)
/// when every width is a multiple of the block.
/// Both are separable: index = n·C·H·W + (h·W + w)·spatialStride + channelOffset[c].
struct ActLayout {
    let channels: Int, height: Int, width: Int
    /// Channels per block (16 or 8), or 0 for NHWC.
    let block: Int
    let spatialStride: Int
    let channelOffset: [Int]

    init(channels: Int, height: Int, width: Int, block: Int) {
        self.channels = channels; self.height = height; self.width = width; self.block = block
        spatialStride = block > 0 ? block : channels
        channelOffset = (0..<channels).map { block > 0 ? ($0 / block) * height * width * block + $0 % block : $0 }
    }

    /// The oneDNN tag of an activation with `c` channels under this policy (`nchw` for a network
    /// input whose channel count is not a multiple of the block: the first conv reads it directly).
    static func tag(channels c: Int, block: Int) -> dnnl_format_tag_t {
        switch block {
        case 16: c % 16 == 0 ? dnnl_nChw16c : dnnl_nchw
        case 8: c % 8 == 0 ? dnnl_nChw8c : dnnl_nchw
        default: dnnl_nhwc
        }
    }

    @inline(__always) func index(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Int {
        n * count + (h * width + w) * spatialStride + channelOffset[c]
    }
    /// Elements per image.
    var count: Int { channels * height * width }
}

/// The parameter-free shortcut of a block that changes shape:
///
///     forward:  S[n,c,i,j] = x[n, c − off, s·i, s·j]  for off ≤ c < off + Cin, else 0
///     backward: dx[n,c,p,q] += dS[n, c + off, p/s, q/s]  when s divides p and q
///
/// with off = (Cout − Cin)/2 (``ResidualBlock/shortcutChannelOffset``).
struct ZeroPadShortcut {
    let batch: Int, stride: Int
    let input: ActLayout, output: ActLayout
    var offset: Int { (output.channels - input.channels) / 2 }

    /// Calls body(inputIndex, outputIndex) for every input element the shortcut keeps.
    @inline(__always) private func pairs(_ body: (Int, Int) -> Void) {
        let off = offset, cin = input.channels
        input.channelOffset.withUnsafeBufferPointer { ic in
            output.channelOffset.withUnsafeBufferPointer { oc in
                for n in 0..<batch {
                    for i in 0..<output.height {
                        for j in 0..<output.width {
                            let ib = n * input.count + (i * stride * input.width + j * stride) * input.spatialStride
                            let ob = n * output.count + (i * output.width + j) * output.spatialStride
                            for c in 0..<cin { body(ib + ic[c], ob + oc[c + off]) }
                        }
                    }
                }
            }
        }
    }

    /// S = P(x) (f32 or bf16 data; a copy, so exact in both).
    func forward(x: Mem, into s: Mem) {
        if x.isBF16 {
            let xs = x.bf16, ss = s.bf16
            ss.update(repeating: 0, count: batch * output.count)
            pairs { ss[$1] = xs[$0] }
        } else {
            let xs = x.floats, ss = s.floats
            ss.update(repeating: 0, count: batch * output.count)
            pairs { ss[$1] = xs[$0] }
        }
    }

    /// dx += Pᵀ(dS): adds the shortcut's share of the output gradient to the input gradient
    /// (which already holds the gradient through the residual branch). In bf16 the sum is
    /// formed in f32 and rounded once to bf16, as oneDNN's binary add does.
    func backwardAccumulate(dS: Mem, into dx: Mem) {
        if dx.isBF16 {
            let d = dx.bf16, g = dS.bf16
            pairs { d[$0] = (Float(bf16Bits: d[$0]) + Float(bf16Bits: g[$1])).bf16Bits }
        } else {
            let d = dx.floats, g = dS.floats
            pairs { d[$0] += g[$1] }
        }
    }
}

/// Global average pool over H, W to [N, C]:
///
///     forward:  p[n,c] = (1/HW) Σ_{h,w} a[n,c,h,w]
///     backward: da[n,c,h,w] = dp[n,c] / HW
struct GlobalAvgPool {
    let batch: Int
    let layout: ActLayout

    func forward(_ a: UnsafePointer<Float>, into p: UnsafeMutablePointer<Float>) {
        let (C, HW, S) = (layout.channels, layout.height * layout.width, layout.spatialStride)
        let inv = 1 / Float(HW)
        p.update(repeating: 0, count: batch * C)
        layout.channelOffset.withUnsafeBufferPointer { co in
            for n in 0..<batch {
                let out = p + n * C
                for s in 0..<HW {
                    let base = a + n * layout.count + s * S
                    for c in 0..<C { out[c] += base[co[c]] }
                }
                for c in 0..<C { out[c] *= inv }
            }
        }
    }

    func backward(_ dp: UnsafePointer<Float>, into da: UnsafeMutablePointer<Float>) {
        let (C, HW, S) = (layout.channels, layout.height * layout.width, layout.spatialStride)
        let inv = 1 / Float(HW)
        layout.channelOffset.withUnsafeBufferPointer { co in
            for n in 0..<batch {
                let g = dp + n * C
                for s in 0..<HW {
                    let base = da + n * layout.count + s * S
                    for c in 0..<C { base[co[c]] = g[c] * inv }
                }
            }
        }
    }
}

/// Fully connected layer, W `[K, C]`, b `[K]`:
///
///     forward:  z[n,k] = b[k] + Σ_c W[k,c]·p[n,c]
///     backward: dW[k,c] = Σ_n dz[n,k]·p[n,c];  db[k] = Σ_n dz[n,k];  dp[n,c] = Σ_k dz[n,k]·W[k,c]
struct FullyConnected {
    let batch: Int, inputs: Int, outputs: Int

    func forward(p: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>,
                 into z: UnsafeMutablePointer<Float>) {
        for n in 0..<batch {
            let pn = p + n * inputs
            for k in 0..<outputs {
                let wk = w + k * inputs
                var s: Float = 0
                for c in 0..<inputs { s += wk[c] * pn[c] }
                z[n * outputs + k] = b[k] + s
            }
        }
    }

    func backward(dz: UnsafePointer<Float>, p: UnsafePointer<Float>, w: UnsafePointer<Float>,
                  dw: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>,
                  dp: UnsafeMutablePointer<Float>) {
        dw.update(repeating: 0, count: outputs * inputs)
        db.update(repeating: 0, count: outputs)
        dp.update(repeating: 0, count: batch * inputs)
        for n in 0..<batch {
            let pn = p + n * inputs, dpn = dp + n * inputs
            for k in 0..<outputs {
                let g = dz[n * outputs + k]
                db[k] += g
                let wk = w + k * inputs, dwk = dw + k * inputs
                for c in 0..<inputs {
                    dwk[c] += g * pn[c]
                    dpn[c] += g * wk[c]
                }
            }
        }
    }
}

/// Mean softmax cross-entropy over a batch, with its gradient:
///
///     loss = (1/N) Σ_n [ log Σ_k exp z[n,k] − z[n, y_n] ]
///     dz[n,k] = (softmax(z_n)_k − [k = y_n]) / N
enum SoftmaxCrossEntropy {
    /// Returns (mean loss, number of rows whose arg-max equals the label); writes dz if given.
    /// Loss and arg-max are ``LogitScore``'s (the one scoring rule of mlres).
    static func evaluate(z: UnsafePointer<Float>, labels: [Int], classes: Int,
                         dz: UnsafeMutablePointer<Float>?) -> (loss: Double, correct: Int) {
        let n = labels.count
        var total = 0.0, correct = 0
        for i in 0..<n {
            let row = z + i * classes
            let score = LogitScore(UnsafeBufferPointer(start: row, count: classes), label: labels[i])
            if score.predicted == labels[i] { correct += 1 }
            total += score.loss
            if let dz {
                for k in 0..<classes {
                    let p = Foundation.exp(Double(row[k]) - score.logSumExp)
                    dz[i * classes + k] = Float((p - (k == labels[i] ? 1 : 0)) / Double(n))
                }
            }
        }
        return (total / Double(max(n, 1)), correct)
    }
}
