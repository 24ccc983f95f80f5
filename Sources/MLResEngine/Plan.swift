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
    private(set) var shared: [RawBuffer] = []
    let maxBytes: Int
    init(batch: Int, maxFloats: Int, sharedCount: Int) {
        self.batch = batch
        maxBytes = maxFloats * 4
        shared = (0..<sharedCount).map { _ in RawBuffer(bytes: maxFloats * 4) }
    }
    func unique(_ c: Int, _ h: Int, _ w: Int) throws -> Mem { try Mem(dims: [batch, c, h, w], tag: dnnl_nhwc) }
    func view(_ i: Int, _ c: Int, _ h: Int, _ w: Int) throws -> Mem {
        try Mem(dims: [batch, c, h, w], tag: dnnl_nhwc, buffer: shared[i])
    }
}

/// One block's primitives and memories within a plan.
///
///     Y_{j+1} = P(Y_j) + h·F(Y_j),   F = conv2 ∘ relu∘bn2 ∘ conv1 ∘ relu∘bn1
///
/// Backward: with G = dL/dY_{j+1}, the residual branch is run backward on G itself (all of it
/// is linear in G), then every gradient it produced is multiplied by h:
///     dY_j = Pᵀ(G) + h·F'(Y_j)ᵀ G,   d(params of F) = h·(…computed with G…)
final class BlockPlan {
    let geo: BlockGeometry
    let params: BlockParams
    let x: Mem, y: Mem          // Y_j, Y_{j+1}
    let f: Mem                  // F(Y_j) (scratch)
    let s: Mem?                 // P(Y_j) for a shape-changing block (scratch)
    let bn1: BatchNormReLU, conv1: Conv3x3, bn2: BatchNormReLU, conv2: Conv3x3
    let sum: ScaledSum
    let shortcut: ZeroPadShortcut?
    // Backward (training only).
    let dy: Mem?, dx: Mem?, dF: Mem?
    let backSum: ScaledSum?

    init(geo g: BlockGeometry, params: BlockParams, x: Mem, y: Mem, storage st: Storage,
         training: Bool, epsilon: Float, momentum: Float, dy: Mem?, dx: Mem?) throws {
        self.geo = g; self.params = params; self.x = x; self.y = y; self.dy = dy; self.dx = dx
        let n = st.batch
        let a1: Mem, z1: Mem, a2: Mem
        if training {
            a1 = try st.unique(g.cin, g.inH, g.inW)
            z1 = try st.unique(g.cout, g.outH, g.outW)
            a2 = try st.unique(g.cout, g.outH, g.outW)
            f = try st.view(0, g.cout, g.outH, g.outW)
            s = g.changesShape ? try st.view(1, g.cout, g.outH, g.outW) : nil
        } else {
            a1 = try st.view(0, g.cin, g.inH, g.inW)
            z1 = try st.view(1, g.cout, g.outH, g.outW)
            a2 = try st.view(0, g.cout, g.outH, g.outW)
            f = try st.view(1, g.cout, g.outH, g.outW)
            s = g.changesShape ? try st.view(2, g.cout, g.outH, g.outW) : nil
        }
        // Backward scratch: da2 → 0, dz1 → 1, da1 → 0, dF (= dY_j through F, unscaled) → 1.
        let da2 = training ? try st.view(0, g.cout, g.outH, g.outW) : nil
        let dz1 = training ? try st.view(1, g.cout, g.outH, g.outW) : nil
        let da1 = training ? try st.view(0, g.cin, g.inH, g.inW) : nil
        dF = training ? try st.view(1, g.cin, g.inH, g.inW) : nil
        bn1 = try BatchNormReLU(state: params.bn1, x: x, y: a1, training: training, epsilon: epsilon,
                                momentum: momentum, dx: dF, dy: da1)
        conv1 = try Conv3x3(weight: params.conv1, stride: g.stride, x: a1, y: z1, training: training,
                            dx: da1, dy: dz1)
        bn2 = try BatchNormReLU(state: params.bn2, x: z1, y: a2, training: training, epsilon: epsilon,
                                momentum: momentum, dx: dz1, dy: da2)
        conv2 = try Conv3x3(weight: params.conv2, stride: 1, x: a2, y: f, training: training,
                            dx: da2, dy: dy)
        shortcut = g.changesShape
            ? ZeroPadShortcut(batch: n, cin: g.cin, cout: g.cout, stride: g.stride, inH: g.inH, inW: g.inW)
            : nil
        sum = try ScaledSum(1, s ?? x, g.h, f, into: y)
        if training, !g.changesShape, let dy, let dx, let dF {
            backSum = try ScaledSum(1, dy, g.h, dF, into: dx)
        } else {
            backSum = nil
        }
    }

    /// Y_{j+1} = P(Y_j) + h·F(Y_j); with `skip`, Y_{j+1} = P(Y_j) (a lesioned block).
    func forward(skip: Bool = false) {
        if !skip {
            bn1.forward(); conv1.forward(); bn2.forward(); conv2.forward()
        }
        if let shortcut, let s {
            DNNLContext.shared.wait()
            shortcut.forward(x: x.floats, into: s.floats)
        }
        if skip {
            DNNLContext.shared.wait()
            memcpy(y.buffer.ptr, (s ?? x).buffer.ptr, y.bytes)
        } else {
            sum.run()
        }
    }

    /// From dy = dL/dY_{j+1}: writes dx = dL/dY_j and the gradients of the block's parameters.
    func backward() {
        conv2.backward(); bn2.backward(); conv1.backward(); bn1.backward()
        if let backSum {
            backSum.run()
        } else if let shortcut, let dy, let dx, let dF {
            DNNLContext.shared.wait()
            shortcut.backwardCombine(h: geo.h, dF: dF.floats, dS: dy.floats, into: dx.floats)
        }
        DNNLContext.shared.wait()
        for p in [params.conv1, params.conv2, params.bn1.weight, params.bn1.bias,
                  params.bn2.weight, params.bn2.bias] { p.scaleGrad(geo.h) }
    }
}

/// Everything for one batch size and mode (training or eval): primitives created once, memory
/// allocated once.
final class Plan {
    let batch: Int
    let training: Bool
    let input: Mem            // user NCHW
    let x0: Mem               // stem input, NHWC
    let inputReorder: BoundPrimitive
    let stem: Conv3x3
    let blocks: [BlockPlan]
    let head: BatchNormReLU
    let headOut: Mem
    let pool: GlobalAvgPool
    let fc: FullyConnected
    var pooled: [Float], logits: [Float], dLogits: [Float], dPooled: [Float]
    let dHead: Mem?           // dL/d relu(bn(Y_L)) (training)
    let dTop: Mem?            // dL/dY_L (training)

    init(engine e: NetworkExecutor, batch n: Int, training: Bool) throws {
        self.batch = n; self.training = training
        let geos = e.geometry
        let c0 = e.network.inputShape[0], h0 = e.network.inputShape[1], w0 = e.network.inputShape[2]
        let wStem = e.network.stem.shape[0]
        var maxFloats = n * wStem * h0 * w0
        for g in geos { maxFloats = max(maxFloats, n * g.cin * g.inH * g.inW, n * g.cout * g.outH * g.outW) }
        let st = Storage(batch: n, maxFloats: maxFloats, sharedCount: training ? 4 : 5)
        input = try Mem(dims: [n, c0, h0, w0], tag: dnnl_nchw)
        x0 = try Mem(dims: [n, c0, h0, w0], tag: dnnl_nhwc)
        inputReorder = try makeReorder(from: input, to: x0)
        // Activations Y_0 … Y_L: own buffers in training, two alternating buffers in eval.
        // Gradients dY_k alternate between shared buffers 2 and 3 (dY_L in 2).
        let L = geos.count
        var ys: [Mem] = []
        var dys: [Mem?] = []
        for k in 0...L {
            let c: Int = k == 0 ? wStem : geos[k - 1].cout
            let hh: Int = k == 0 ? h0 : geos[k - 1].outH
            let ww: Int = k == 0 ? w0 : geos[k - 1].outW
            ys.append(training ? try st.unique(c, hh, ww) : try st.view(3 + k % 2, c, hh, ww))
            dys.append(training ? try st.view(2 + (L - k) % 2, c, hh, ww) : nil)
        }
        stem = try Conv3x3(weight: e.stem, stride: 1, x: x0, y: ys[0], training: training, dx: nil, dy: dys[0])
        let eps = Float(e.network.bnEpsilon), mom = Float(e.network.bnMomentum)
        var bps: [BlockPlan] = []
        for (j, g) in geos.enumerated() {
            bps.append(try BlockPlan(geo: g, params: e.blockParams[j], x: ys[j], y: ys[j + 1], storage: st,
                                     training: training, epsilon: eps, momentum: mom,
                                     dy: dys[j + 1], dx: dys[j]))
        }
        blocks = bps
        let cL: Int = geos.last?.cout ?? wStem
        let hL: Int = geos.last?.outH ?? h0
        let wL: Int = geos.last?.outW ?? w0
        headOut = try st.view(0, cL, hL, wL)
        dHead = training ? try st.view(1, cL, hL, wL) : nil
        dTop = dys[L]
        head = try BatchNormReLU(state: e.headBN, x: ys[L], y: headOut, training: training, epsilon: eps,
                                 momentum: mom, dx: dTop, dy: dHead)
        pool = GlobalAvgPool(batch: n, channels: cL, spatial: hL * wL)
        let k = e.network.numClasses
        fc = FullyConnected(batch: n, inputs: cL, outputs: k)
        pooled = [Float](repeating: 0, count: n * cL)
        dPooled = pooled
        logits = [Float](repeating: 0, count: n * k)
        dLogits = logits
    }
}
