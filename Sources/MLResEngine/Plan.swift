import CDNNL
import Foundation
import MLResModel

/// Geometry of one residual block inside a plan.
struct BlockGeometry {
    let id: BlockID
    let h: Float
    let stride: Int, cin: Int, cout: Int
    let inH: Int, inW: Int, outH: Int, outW: Int
    let changesShape: Bool
}

/// Activation memory for one batch size and mode, allocated once: per-block buffers that the
/// backward pass needs (training), plus a few shared scratch buffers of the largest
/// activation size reused by every block.
final class Storage {
    let batch: Int
    let block: Int
    /// The activations' data type (f32, or bf16 in bf16 precision).
    let type: dnnl_data_type_t
    private(set) var shared: [RawBuffer] = []
    let maxBytes: Int
    init(batch: Int, maxFloats: Int, sharedCount: Int, block: Int, type: dnnl_data_type_t) {
        self.batch = batch; self.block = block; self.type = type
        maxBytes = maxFloats * 4
        shared = (0..<sharedCount).map { _ in RawBuffer(bytes: maxFloats * 4) }
    }
    func unique(_ c: Int, _ h: Int, _ w: Int, type t: dnnl_data_type_t? = nil) throws -> Mem {
        try Mem(dims: [batch, c, h, w], tag: ActLayout.tag(channels: c, block: block), type: t ?? type)
    }
    /// A view of shared buffer `i` (sized for the largest activation in f32).
    func view(_ i: Int, _ c: Int, _ h: Int, _ w: Int, type t: dnnl_data_type_t? = nil) throws -> Mem {
        try Mem(dims: [batch, c, h, w], tag: ActLayout.tag(channels: c, block: block), type: t ?? type, buffer: shared[i])
    }
}

/// What a plan is for.
enum PlanMode: String {
    /// Forward with batch statistics, backward, gradients.
    case train
    /// Eval-mode forward, fused for speed: BN2 folded into conv1 (+ReLU), residual sum as a
    /// post-op of conv2 written in place.
    case infer
    /// Eval-mode forward that materialises h·F(Y_j) for every block (hooks, lesions).
    case analyze
}

/// One block's primitives and memories within a plan.
///
///     Y_{j+1} = P(Y_j) + h·F(Y_j),   F = conv2 ∘ relu∘bn2 ∘ conv1 ∘ relu∘bn1
///
/// h is folded into conv2's weights (conv2 runs with h·W2), and the sum with P(Y_j) is conv2's
/// post-op. Backward, with G = dL/dY_{j+1}: conv2's backward-data pass uses h·W2, so every
/// gradient below it is already the true one; dW2 = h·(a2 ⋆ G); and
///     dY_j = Pᵀ(G) + (gradient through F).
final class BlockPlan {
    let geo: BlockGeometry
    let params: BlockParams
    let mode: PlanMode
    let x: Mem, y: Mem          // Y_j, Y_{j+1} (the same memory for an identity block in infer mode)
    let f: Mem?                 // h·F(Y_j) (analyze mode)
    let bn1: BatchNormReLU, conv1: Conv3x3, conv2: Conv3x3
    let bn2: BatchNormReLU?     // nil in infer mode (folded into conv1)
    let shortcut: ZeroPadShortcut?
    private let hScale: Mem
    private let foldScale: Mem?, foldBias: Mem?
    private let analyzeSum: ScaledSum?
    // Backward (train mode).
    let dy: Mem?, dx: Mem?, dF: Mem?
    private let backAdd: Add?

    init(geo g: BlockGeometry, params: BlockParams, x: Mem, y: Mem, storage st: Storage,
         mode: PlanMode, epsilon: Float, momentum: Float, dy: Mem?, dx: Mem?,
         replicas: ReplicaSum? = nil) throws {
        self.geo = g; self.params = params; self.mode = mode
        self.x = x; self.y = y; self.dy = dy; self.dx = dx
        let n = st.batch
        hScale = try Mem(dims: [1], tag: dnnl_a)
        hScale.floats[0] = g.h
        shortcut = g.changesShape
            ? ZeroPadShortcut(batch: n, stride: g.stride,
                              input: ActLayout(channels: g.cin, height: g.inH, width: g.inW, block: st.block),
                              output: ActLayout(channels: g.cout, height: g.outH, width: g.outW, block: st.block))
            : nil
        switch mode {
        case .train:
            let a1 = try st.unique(g.cin, g.inH, g.inW)
            let z1 = try st.unique(g.cout, g.outH, g.outW)
            let a2 = try st.unique(g.cout, g.outH, g.outW)
            // Backward scratch: da2 → 0, dz1 → 1, da1 → 0, dF → 1 (or dx itself for a
            // shape-changing block, which then adds the shortcut's share in place).
            let da2 = try st.view(0, g.cout, g.outH, g.outW)
            let dz1 = try st.view(1, g.cout, g.outH, g.outW)
            let da1 = try st.view(0, g.cin, g.inH, g.inW)
            let dF = g.changesShape ? dx! : try st.view(1, g.cin, g.inH, g.inW)
            self.dF = dF
            bn1 = try BatchNormReLU(state: params.bn1, x: x, y: a1, training: true, epsilon: epsilon,
                                    momentum: momentum, dx: dF, dy: da1, replicas: replicas)
            conv1 = try Conv3x3(weight: params.conv1, stride: g.stride, x: a1, y: z1, training: true,
                                dx: da1, dy: dz1)
            bn2 = try BatchNormReLU(state: params.bn2, x: z1, y: a2, training: true, epsilon: epsilon,
                                    momentum: momentum, dx: dz1, dy: da2, replicas: replicas)
            conv2 = try Conv3x3(weight: params.conv2, stride: 1, x: a2, y: y, training: true, dx: da2, dy: dy,
                                scales: hScale, post: g.changesShape ? .sum : .add(x))
            f = nil; foldScale = nil; foldBias = nil; analyzeSum = nil
            backAdd = g.changesShape ? nil : try Add(dy!, dF, into: dx!)
        case .infer, .analyze:
            let a1 = try st.view(0, g.cin, g.inH, g.inW)
            let a2 = try st.view(1, g.cout, g.outH, g.outW)
            bn1 = try BatchNormReLU(state: params.bn1, x: x, y: a1, training: false, epsilon: epsilon,
                                    momentum: momentum, dx: nil, dy: nil)
            let fs = try Mem(dims: [g.cout], tag: dnnl_a), fb = try Mem(dims: [g.cout], tag: dnnl_a)
            foldScale = fs; foldBias = fb
            conv1 = try Conv3x3(weight: params.conv1, stride: g.stride, x: a1, y: a2, training: false,
                                dx: nil, dy: nil, scales: fs, bias: fb, post: .relu)
            bn2 = nil
            if mode == .infer {
                f = nil; analyzeSum = nil
                conv2 = try Conv3x3(weight: params.conv2, stride: 1, x: a2, y: y, training: false,
                                    dx: nil, dy: nil, scales: hScale, post: .sum)
            } else {
                let fm = try st.view(2, g.cout, g.outH, g.outW)
                f = fm
                conv2 = try Conv3x3(weight: params.conv2, stride: 1, x: a2, y: fm, training: false,
                                    dx: nil, dy: nil, scales: hScale)
                // P(Y_j) for a shape-changing block goes to y first, then y += h·F; else y = x + h·F.
                analyzeSum = try ScaledSum(1, g.changesShape ? y : x, 1, fm, into: y)
            }
            dF = nil; backAdd = nil
        }
    }

    /// Refreshes the prepared weights (h·W2, and in eval the BN2-folded conv1) from the
    /// parameters: eval folds  relu(bn2(conv1(a)))  into  relu(conv(s ⊙ W1, a) + b)  with
    /// s = γ/√(r_σ² + ε), b = β − r_μ·s.
    func prepareWeights(epsilon: Float) {
        if let foldScale, let foldBias {
            let st = params.bn2
            for c in 0..<st.channels {
                let sc = st.weight.value.floats[c] / (st.runningVar.floats[c] + epsilon).squareRoot()
                foldScale.floats[c] = sc
                foldBias.floats[c] = st.bias.value.floats[c] - st.runningMean.floats[c] * sc
            }
        }
        conv1.prepareWeights(); conv2.prepareWeights()
    }

    /// Y_{j+1} = P(Y_j) + h·F(Y_j); with `skip` (analyze mode), Y_{j+1} = P(Y_j).
    func forward(skip: Bool = false) {
        bn1.forward(); conv1.forward(); bn2?.forward()
        if let shortcut {
            DNNLContext.shared.wait()
            shortcut.forward(x: x, into: y)
        }
        if mode == .analyze {
            conv2.forward()
            if skip {
                if shortcut == nil {
                    DNNLContext.shared.wait()
                    memcpy(y.buffer.ptr, x.buffer.ptr, y.bytes)
                }
            } else {
                analyzeSum!.run()
            }
        } else {
            conv2.forward()
        }
    }

    /// From dy = dL/dY_{j+1}: writes dx = dL/dY_j and the gradients of the block's parameters.
    func backward() {
        conv2.backward(); bn2!.backward(); conv1.backward(); bn1.backward()
        if let backAdd {
            backAdd.run()
        } else if let shortcut, let dy, let dx {
            DNNLContext.shared.wait()
            shortcut.backwardAccumulate(dS: dy, into: dx)
        }
        DNNLContext.shared.wait()
        params.conv2.scaleGrad(geo.h)
    }
}

/// Everything for one batch size and mode: primitives created once, memory allocated once.
final class Plan {
    let batch: Int
    let mode: PlanMode
    let input: Mem            // user NCHW, f32
    let x0: Mem               // stem input (the stem's layout and the activations' type)
    let inputReorder: BoundPrimitive?
    let stem: Conv3x3
    let blocks: [BlockPlan]
    /// The head (BN+ReLU, pool, fc) runs in f32: Y_L converted to f32 (bf16 precision), and
    /// the gradient dL/dY_L converted back.
    let headIn: Mem
    let headInReorder: BoundPrimitive?
    let dTopReorder: BoundPrimitive?
    let head: BatchNormReLU
    let headOut: Mem
    let pool: GlobalAvgPool
    let fc: FullyConnected
    var pooled: [Float], logits: [Float], dLogits: [Float], dPooled: [Float]
    let dHead: Mem?           // dL/d relu(bn(Y_L)) (train)
    let dTop: Mem?            // dL/dY_L in f32 (train)
    let epsilon: Float
    /// The executor's parameter version the prepared weights reflect.
    var preparedVersion = -1

    init(engine e: NetworkExecutor, batch n: Int, mode: PlanMode) throws {
        self.batch = n; self.mode = mode
        let training = mode == .train
        let geos = e.geometry
        let c0 = e.network.inputShape[0], h0 = e.network.inputShape[1], w0 = e.network.inputShape[2]
        let wStem = e.network.stem.shape[0]
        var maxFloats = n * wStem * h0 * w0
        for g in geos { maxFloats = max(maxFloats, n * g.cin * g.inH * g.inW, n * g.cout * g.outH * g.outW) }
        let type = e.precision.dataType
        let st = Storage(batch: n, maxFloats: maxFloats, sharedCount: training ? 4 : 5, block: e.block, type: type)
        input = try Mem(dims: [n, c0, h0, w0], tag: dnnl_nchw)
        // Activations Y_0 … Y_L: own buffers in train mode; in eval two alternating buffers
        // (infer mode switches buffer only at shape-changing blocks: identity blocks work in place).
        // Gradients dY_k alternate between shared buffers 2 and 3 (dY_L in 2).
        let L = geos.count
        var ys: [Mem] = []
        var dys: [Mem?] = []
        var slot = 3
        for k in 0...L {
            let c: Int = k == 0 ? wStem : geos[k - 1].cout
            let hh: Int = k == 0 ? h0 : geos[k - 1].outH
            let ww: Int = k == 0 ? w0 : geos[k - 1].outW
            switch mode {
            case .train: ys.append(try st.unique(c, hh, ww))
            case .analyze: ys.append(try st.view(3 + k % 2, c, hh, ww))
            case .infer:
                if k > 0 && !geos[k - 1].changesShape { ys.append(ys[k - 1]) } else {
                    if k > 0 { slot = 7 - slot }
                    ys.append(try st.view(slot, c, hh, ww))
                }
            }
            dys.append(training ? try st.view(2 + (L - k) % 2, c, hh, ww) : nil)
        }
        if type == dnnl_f32 {
            let x0tag = ActLayout.tag(channels: c0, block: e.block)
            x0 = x0tag == dnnl_nchw ? input : try Mem(dims: [n, c0, h0, w0], tag: x0tag)
        } else {
            // bf16: the layout oneDNN's bf16 stem kernel wants for a 3-channel input.
            let probe = try Conv3x3.forwardPD(
                prop: training ? dnnl_forward_training : dnnl_forward_inference,
                x: try makeMD([n, c0, h0, w0], dnnl_format_tag_any, type),
                w: try makeMD(e.stem.shape, dnnl_format_tag_any, type), bias: nil, y: ys[0].md, stride: 1)
            x0 = try Mem(probe.md(dnnl_query_src_md))
        }
        inputReorder = x0 === input ? nil : try makeReorder(from: input, to: x0)
        stem = try Conv3x3(weight: e.stem, stride: 1, x: x0, y: ys[0], training: training, dx: nil, dy: dys[0])
        let eps = Float(e.network.bnEpsilon), mom = Float(e.network.bnMomentum)
        epsilon = eps
        var bps: [BlockPlan] = []
        for (j, g) in geos.enumerated() {
            bps.append(try BlockPlan(geo: g, params: e.blockParams[j], x: ys[j], y: ys[j + 1], storage: st,
                                     mode: mode, epsilon: eps, momentum: mom, dy: dys[j + 1], dx: dys[j],
                                     replicas: e.replicaSum))
        }
        blocks = bps
        let cL: Int = geos.last?.cout ?? wStem
        let hL: Int = geos.last?.outH ?? h0
        let wL: Int = geos.last?.outW ?? w0
        headOut = try st.view(0, cL, hL, wL, type: dnnl_f32)
        dHead = training ? try st.view(1, cL, hL, wL, type: dnnl_f32) : nil
        if type == dnnl_f32 {
            headIn = ys[L]; headInReorder = nil
            dTop = dys[L]; dTopReorder = nil
        } else {
            headIn = try st.unique(cL, hL, wL, type: dnnl_f32)
            headInReorder = try makeReorder(from: ys[L], to: headIn)
            if training, let dyL = dys[L] {
                let d = try st.unique(cL, hL, wL, type: dnnl_f32)
                dTop = d
                dTopReorder = try makeReorder(from: d, to: dyL)
            } else {
                dTop = nil; dTopReorder = nil
            }
        }
        head = try BatchNormReLU(state: e.headBN, x: headIn, y: headOut, training: training, epsilon: eps,
                                 momentum: mom, dx: dTop, dy: dHead, replicas: e.replicaSum)
        pool = GlobalAvgPool(batch: n, layout: ActLayout(channels: cL, height: hL, width: wL, block: e.block))
        let k = e.network.numClasses
        fc = FullyConnected(batch: n, inputs: cL, outputs: k)
        pooled = [Float](repeating: 0, count: n * cL)
        dPooled = pooled
        logits = [Float](repeating: 0, count: n * k)
        dLogits = logits
    }

    /// Brings the prepared (scaled, reordered, folded) weights up to parameter version `v`.
    func prepare(version v: Int) {
        guard v != preparedVersion else { return }
        stem.prepareWeights()
        for b in blocks { b.prepareWeights(epsilon: epsilon) }
        preparedVersion = v
    }
}
