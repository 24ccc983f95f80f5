import CDNNL
import Foundation

// Each layer of the network with its forward and backward. Activations are NHWC (oneDNN `nhwc`,
// logical dims [N, C, H, W]); conv weights are in the blocked layout oneDNN picks.

/// 3x3 convolution, padding 1, no bias, stride s ∈ {1, 2} (oneDNN primitives).
///
///     forward:          y[n,o,i,j]  = Σ_{c,a,b} w[o,c,a,b] · x[n,c, s·i+a−1, s·j+b−1]   (x = 0 outside)
///     backward data:    dx[n,c,p,q] = Σ_{o,i,j,a,b : s·i+a−1 = p, s·j+b−1 = q} w[o,c,a,b] · dy[n,o,i,j]
///     backward weights: dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] · x[n,c, s·i+a−1, s·j+b−1]
final class Conv3x3 {
    private var fwd: BoundPrimitive
    private var bwdData: BoundPrimitive?
    private var bwdWeights: BoundPrimitive?
    /// Weight reorders, only when a primitive refuses the stored layout (not on the usual path).
    private var before: [BoundPrimitive] = []
    private var afterWeights: [BoundPrimitive] = []
    /// The implementation oneDNN chose for the forward pass.
    let implementation: String

    static func desc(prop: dnnl_prop_kind_t, x: dnnl_memory_desc_t, w: dnnl_memory_desc_t,
                     y: dnnl_memory_desc_t, stride: Int) throws -> dnnl_convolution_desc_t {
        var d = dnnl_convolution_desc_t()
        var x = x, w = w, y = y
        let s: [Int64] = [Int64(stride), Int64(stride)], p: [Int64] = [1, 1]
        try check(dnnl_convolution_forward_desc_init(&d, prop, dnnl_convolution_direct, &x, &w, nil, &y, s, p, p),
                  "convolution_forward_desc_init")
        return d
    }

    /// The weight layout oneDNN prefers for this shape (used once, when parameters are loaded).
    static func preferredWeightLayout(cin: Int, cout: Int, stride: Int, height: Int, width: Int,
                                      batch: Int) throws -> dnnl_memory_desc_t {
        let x = try makeMD([batch, cin, height, width], dnnl_nhwc)
        let y = try makeMD([batch, cout, (height - 1) / stride + 1, (width - 1) / stride + 1], dnnl_nhwc)
        let w = try makeMD([cout, cin, 3, 3], dnnl_format_tag_any)
        var d = try desc(prop: dnnl_forward_training, x: x, w: w, y: y, stride: stride)
        return try PrimitiveDesc.create(&d, name: "conv probe").md(dnnl_query_weights_md)
    }

    /// - Parameters: `dx` nil means no backward-data pass (the stem); `dy` nil means inference.
    init(weight: Param, stride: Int, x: Mem, y: Mem, training: Bool, dx: Mem?, dy: Mem?) throws {
        let prop = training ? dnnl_forward_training : dnnl_forward_inference
        // Forward, with the stored weight layout if the primitive accepts it.
        var fd = try Conv3x3.desc(prop: prop, x: x.md, w: weight.value.md, y: y.md, stride: stride)
        var fpd: PrimitiveDesc
        var wFwd = weight.value
        if let pd = try? PrimitiveDesc.create(&fd, name: "conv forward") {
            fpd = pd
        } else {
            var anyd = try Conv3x3.desc(prop: prop, x: x.md, w: try makeMD(weight.shape, dnnl_format_tag_any),
                                        y: y.md, stride: stride)
            fpd = try PrimitiveDesc.create(&anyd, name: "conv forward")
            wFwd = try Mem(fpd.md(dnnl_query_weights_md))
            before.append(try makeReorder(from: weight.value, to: wFwd))
        }
        implementation = fpd.implementation
        fwd = try BoundPrimitive(fpd, [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_WEIGHTS), wFwd),
                                       (Int32(MLRES_ARG_DST), y)])
        guard training, let dy else { return }
        let s: [Int64] = [Int64(stride), Int64(stride)], p: [Int64] = [1, 1]
        if let dx {
            var dd = dnnl_convolution_desc_t()
            var dxmd = dx.md, wmd = weight.value.md, dymd = dy.md
            try check(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &dxmd, &wmd, &dymd, s, p, p),
                      "convolution_backward_data_desc_init")
            var wB = weight.value
            let bpd: PrimitiveDesc
            if let pd = try? PrimitiveDesc.create(&dd, hint: fpd, name: "conv backward data") {
                bpd = pd
            } else {
                var anyw = try makeMD(weight.shape, dnnl_format_tag_any)
                try check(dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &dxmd, &anyw, &dymd, s, p, p),
                          "convolution_backward_data_desc_init")
                bpd = try PrimitiveDesc.create(&dd, hint: fpd, name: "conv backward data")
                wB = try Mem(bpd.md(dnnl_query_weights_md))
                before.append(try makeReorder(from: weight.value, to: wB))
            }
            bwdData = try BoundPrimitive(bpd, [(Int32(MLRES_ARG_DIFF_DST), dy), (Int32(MLRES_ARG_WEIGHTS), wB),
                                               (Int32(MLRES_ARG_DIFF_SRC), dx)])
        }
        var wd = dnnl_convolution_desc_t()
        var xmd = x.md, gmd = weight.grad.md, dymd = dy.md
        try check(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &xmd, &gmd, nil, &dymd, s, p, p),
                  "convolution_backward_weights_desc_init")
        var gW = weight.grad
        let wpd: PrimitiveDesc
        if let pd = try? PrimitiveDesc.create(&wd, hint: fpd, name: "conv backward weights") {
            wpd = pd
        } else {
            var anyw = try makeMD(weight.shape, dnnl_format_tag_any)
            try check(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &xmd, &anyw, nil, &dymd, s, p, p),
                      "convolution_backward_weights_desc_init")
            wpd = try PrimitiveDesc.create(&wd, hint: fpd, name: "conv backward weights")
            gW = try Mem(wpd.md(dnnl_query_diff_weights_md))
            afterWeights.append(try makeReorder(from: gW, to: weight.grad))
        }
        bwdWeights = try BoundPrimitive(wpd, [(Int32(MLRES_ARG_SRC), x), (Int32(MLRES_ARG_DIFF_DST), dy),
                                              (Int32(MLRES_ARG_DIFF_WEIGHTS), gW)])
    }

    func forward() {
        for r in before { r.run() }
        fwd.run()
    }

    /// Writes dx (if planned) and the weight gradient (overwritten, not accumulated).
    func backward() {
        bwdData?.run()
        bwdWeights?.run()
        for r in afterWeights { r.run() }
    }
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

    init(state: BNState, x: Mem, y: Mem, training: Bool, epsilon: Float, momentum: Float,
         dx: Mem?, dy: Mem?) throws {
        self.state = state; self.training = training; self.momentum = momentum
        let dims = x.md.dims
        reduced = Int(dims.0) * Int(dims.2) * Int(dims.3)
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
        let unbias = reduced > 1 ? Float(reduced) / Float(reduced - 1) : 1
        let rm = state.runningMean.floats, rv = state.runningVar.floats
        for c in 0..<state.channels {
            rm[c] = (1 - m) * rm[c] + m * batchMean.floats[c]
            rv[c] = (1 - m) * rv[c] + m * batchVar.floats[c] * unbias
        }
    }

    /// Writes dx and the γ, β gradients (overwritten).
    func backward() { bwd?.run() }
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

/// The parameter-free shortcut of a block that changes shape (NHWC loops):
///
///     forward:  S[n,i,j,c] = x[n, s·i, s·j, c − off]  for off ≤ c < off + Cin, else 0
///     backward: dx[n,p,q,c] = dS[n, p/s, q/s, c + off] when s divides p and q, else 0
///
/// with off = (Cout − Cin)/2 (``ResidualBlock/shortcutChannelOffset``).
struct ZeroPadShortcut {
    let batch: Int, cin: Int, cout: Int, stride: Int, inH: Int, inW: Int
    var offset: Int { (cout - cin) / 2 }
    var outH: Int { (inH - 1) / stride + 1 }
    var outW: Int { (inW - 1) / stride + 1 }

    func forward(x: UnsafePointer<Float>, into s: UnsafeMutablePointer<Float>) {
        let (oh, ow, off) = (outH, outW, offset)
        for n in 0..<batch {
            for i in 0..<oh {
                for j in 0..<ow {
                    let dst = s + ((n * oh + i) * ow + j) * cout
                    let src = x + ((n * inH + i * stride) * inW + j * stride) * cin
                    dst.update(repeating: 0, count: cout)
                    (dst + off).update(from: src, count: cin)
                }
            }
        }
    }

    /// dx = h·dF + Pᵀ(dS): the block's input gradient from the residual branch `dF` (not yet
    /// scaled by h) and the shortcut's share of the output gradient `dS`.
    func backwardCombine(h: Float, dF: UnsafePointer<Float>, dS: UnsafePointer<Float>,
                         into dx: UnsafeMutablePointer<Float>) {
        let (oh, ow, off) = (outH, outW, offset)
        for n in 0..<batch {
            for p in 0..<inH {
                for q in 0..<inW {
                    let base = ((n * inH + p) * inW + q) * cin
                    let d = dx + base, f = dF + base
                    if p % stride == 0 && q % stride == 0 {
                        let g = dS + ((n * oh + p / stride) * ow + q / stride) * cout + off
                        for c in 0..<cin { d[c] = h * f[c] + g[c] }
                    } else {
                        for c in 0..<cin { d[c] = h * f[c] }
                    }
                }
            }
        }
    }
}

/// Global average pool over H, W of an NHWC tensor to [N, C]:
///
///     forward:  p[n,c] = (1/HW) Σ_{h,w} a[n,h,w,c]
///     backward: da[n,h,w,c] = dp[n,c] / HW
struct GlobalAvgPool {
    let batch: Int, channels: Int, spatial: Int

    func forward(_ a: UnsafePointer<Float>, into p: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(spatial)
        for n in 0..<batch {
            let out = p + n * channels
            out.update(repeating: 0, count: channels)
            for s in 0..<spatial {
                let row = a + (n * spatial + s) * channels
                for c in 0..<channels { out[c] += row[c] }
            }
            for c in 0..<channels { out[c] *= inv }
        }
    }

    func backward(_ dp: UnsafePointer<Float>, into da: UnsafeMutablePointer<Float>) {
        let inv = 1 / Float(spatial)
        for n in 0..<batch {
            let g = dp + n * channels
            for s in 0..<spatial {
                let row = da + (n * spatial + s) * channels
                for c in 0..<channels { row[c] = g[c] * inv }
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
    static func evaluate(z: UnsafePointer<Float>, labels: [Int], classes: Int,
                         dz: UnsafeMutablePointer<Float>?) -> (loss: Double, correct: Int) {
        let n = labels.count
        var total = 0.0, correct = 0
        for i in 0..<n {
            let row = z + i * classes
            var mx = row[0], arg = 0
            for k in 1..<max(classes, 1) where row[k] > mx { mx = row[k]; arg = k }
            if arg == labels[i] { correct += 1 }
            var sum = 0.0
            for k in 0..<classes { sum += Foundation.exp(Double(row[k] - mx)) }
            total += Foundation.log(sum) + Double(mx) - Double(row[labels[i]])
            if let dz {
                for k in 0..<classes {
                    let p = Foundation.exp(Double(row[k] - mx)) / sum
                    dz[i * classes + k] = Float((p - (k == labels[i] ? 1 : 0)) / Double(n))
                }
            }
        }
        return (total / Double(max(n, 1)), correct)
    }
}
