// The one float64 reference of the paper's network (Chang et al., ICLR 2018, Section 2: a
// ResNet block is the forward-Euler step Y_{j+1} = P(Y_j) + h_j·F_j(Y_j)), shared by every test
// target. NCHW throughout, written for clarity, not speed: direct loops over the defining sums,
// no engine code. Eval mode (running statistics) for `forward`/`evalLogits`/`logits`; training
// mode (batch statistics) with the backward pass for `trainForwardBackward`.
import Foundation
import MLResModel

/// A float64 NCHW (or any-rank) array: `shape` and its values in row-major order.
public struct Array64: Equatable, Sendable {
    public var shape: [Int]
    public var v: [Double]
    public init(_ shape: [Int], _ v: [Double]? = nil) {
        self.shape = shape
        self.v = v ?? [Double](repeating: 0, count: shape.reduce(1, *))
        precondition(self.v.count == shape.reduce(1, *))
    }
    public init(_ t: Tensor) { self.init(t.shape, t.data.map(Double.init)) }
    public var tensor: Tensor { Tensor(shape: shape, data: v.map(Float.init)) }
    /// Flat index of element (n, c, h, w) of a rank-4 array.
    @inline(__always) public func i4(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Int {
        ((n * shape[1] + c) * shape[2] + h) * shape[3] + w
    }
    /// Element (n, c, h, w) of a rank-4 array.
    public subscript(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Double { v[i4(n, c, h, w)] }
    /// Channel `c` of image `n` of a rank-4 array, row-major.
    public func plane(_ n: Int, _ c: Int) -> ArraySlice<Double> {
        let hw = shape[2] * shape[3], start = (n * shape[1] + c) * hw
        return v[start ..< start + hw]
    }
    public static func + (a: Array64, b: Array64) -> Array64 {
        precondition(a.shape == b.shape, "shapes differ: \(a.shape) vs \(b.shape)")
        return Array64(a.shape, zip(a.v, b.v).map { $0 + $1 })
    }
    public static func - (a: Array64, b: Array64) -> Array64 {
        precondition(a.shape == b.shape, "shapes differ: \(a.shape) vs \(b.shape)")
        return Array64(a.shape, zip(a.v, b.v).map { $0 - $1 })
    }
    public static func * (s: Double, a: Array64) -> Array64 { Array64(a.shape, a.v.map { s * $0 }) }
    /// max |a − b| over elements (infinity when the shapes differ).
    public func maxAbsDifference(_ o: Array64) -> Double {
        guard shape == o.shape else { return .infinity }
        return zip(v, o.v).map { abs($0 - $1) }.max() ?? 0
    }
}

/// Per block of an eval-mode forward pass: which block, its input Y_j and its residual F_j(Y_j).
public struct BlockTrace: Sendable {
    public var id: BlockID
    public var y: Array64
    public var f: Array64
}

public enum Ref {
    // Conv 3x3, pad 1, no bias: y[n,o,i,j] = Σ w[o,c,a,b]·x[n,c,s·i+a−1,s·j+b−1].
    public static func conv(_ x: Array64, _ w: Array64, stride s: Int) -> Array64 {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = w.shape[0], oh = (h - 1) / s + 1, ow = (wd - 1) / s + 1
        var y = Array64([n, o, oh, ow])
        for b in 0..<n { for oc in 0..<o { for i in 0..<oh { for j in 0..<ow {
            var acc = 0.0
            for ic in 0..<c { for a in 0..<3 { for bb in 0..<3 {
                let p = s * i + a - 1, q = s * j + bb - 1
                if p < 0 || q < 0 || p >= h || q >= wd { continue }
                acc += w.v[w.i4(oc, ic, a, bb)] * x.v[x.i4(b, ic, p, q)]
            } } }
            y.v[y.i4(b, oc, i, j)] = acc
        } } } }
        return y
    }

    public static func convBackward(_ x: Array64, _ w: Array64, _ dy: Array64, stride s: Int) -> (dx: Array64, dw: Array64) {
        var dx = Array64(x.shape), dw = Array64(w.shape)
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, oh, ow) = (dy.shape[1], dy.shape[2], dy.shape[3])
        for b in 0..<n { for oc in 0..<o { for i in 0..<oh { for j in 0..<ow {
            let g = dy.v[dy.i4(b, oc, i, j)]
            for ic in 0..<c { for a in 0..<3 { for bb in 0..<3 {
                let p = s * i + a - 1, q = s * j + bb - 1
                if p < 0 || q < 0 || p >= h || q >= wd { continue }
                dx.v[dx.i4(b, ic, p, q)] += g * w.v[w.i4(oc, ic, a, bb)]
                dw.v[dw.i4(oc, ic, a, bb)] += g * x.v[x.i4(b, ic, p, q)]
            } } }
        } } } }
        return (dx, dw)
    }

    public struct BNCache { public var xhat: Array64; public var mean: [Double]; public var variance: [Double]; public var eps: Double }

    // Batch norm, training: batch mean and biased variance over (n, h, w).
    public static func bnTrain(_ x: Array64, _ g: [Double], _ beta: [Double], eps: Double) -> (Array64, BNCache) {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let m = Double(n * h * w)
        var mean = [Double](repeating: 0, count: c), varc = mean
        for ch in 0..<c {
            var s = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w { s += x.v[x.i4(b, ch, i, j)] } } }
            mean[ch] = s / m
            var q = 0.0
            for b in 0..<n { for i in 0..<h { for j in 0..<w { let d = x.v[x.i4(b, ch, i, j)] - mean[ch]; q += d * d } } }
            varc[ch] = q / m
        }
        var xhat = Array64(x.shape), y = Array64(x.shape)
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = x.i4(b, ch, i, j)
            xhat.v[k] = (x.v[k] - mean[ch]) / (varc[ch] + eps).squareRoot()
            y.v[k] = g[ch] * xhat.v[k] + beta[ch]
        } } } }
        return (y, BNCache(xhat: xhat, mean: mean, variance: varc, eps: eps))
    }

    public static func bnEval(_ x: Array64, _ g: [Double], _ beta: [Double], mean: [Double], variance: [Double], eps: Double) -> Array64 {
        var y = Array64(x.shape)
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        for bb in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = x.i4(bb, ch, i, j)
            y.v[k] = g[ch] * (x.v[k] - mean[ch]) / (variance[ch] + eps).squareRoot() + beta[ch]
        } } } }
        return y
    }

    // dβ = Σ dy; dγ = Σ dy·x̂; dx = γ/√(σ²+ε)·(dy − dβ/M − x̂·dγ/M).
    public static func bnBackward(_ dy: Array64, _ cache: BNCache, _ g: [Double]) -> (dx: Array64, dg: [Double], db: [Double]) {
        let (n, c, h, w) = (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3])
        let m = Double(n * h * w)
        var dg = [Double](repeating: 0, count: c), db = dg
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = dy.i4(b, ch, i, j)
            db[ch] += dy.v[k]; dg[ch] += dy.v[k] * cache.xhat.v[k]
        } } } }
        var dx = Array64(dy.shape)
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = dy.i4(b, ch, i, j)
            let inv = 1 / (cache.variance[ch] + cache.eps).squareRoot()
            dx.v[k] = g[ch] * inv * (dy.v[k] - db[ch] / m - cache.xhat.v[k] * dg[ch] / m)
        } } } }
        return (dx, dg, db)
    }

    public static func relu(_ x: Array64) -> Array64 { Array64(x.shape, x.v.map { max(0, $0) }) }
    public static func reluBackward(_ x: Array64, _ dy: Array64) -> Array64 { Array64(x.shape, zip(x.v, dy.v).map { $0 > 0 ? $1 : 0 }) }

    /// Zero-pad shortcut: S[n,c,i,j] = x[n, c−off, s·i, s·j] for off ≤ c < off+Cin, else 0.
    /// `offset` defaults to mlres's placement, (Cout − Cin)/2 (zero channels split evenly).
    public static func shortcut(_ x: Array64, cout: Int, stride s: Int, offset: Int? = nil) -> Array64 {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let off = offset ?? (cout - c) / 2, oh = (h - 1) / s + 1, ow = (w - 1) / s + 1
        var y = Array64([n, cout, oh, ow])
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            y.v[y.i4(b, ch + off, i, j)] = x.v[x.i4(b, ch, s * i, s * j)]
        } } } }
        return y
    }

    public static func shortcutBackward(_ dy: Array64, inShape: [Int], stride s: Int, offset: Int? = nil) -> Array64 {
        var dx = Array64(inShape)
        let (n, c) = (inShape[0], inShape[1])
        let off = offset ?? (dy.shape[1] - c) / 2
        for b in 0..<n { for ch in 0..<c { for i in 0..<dy.shape[2] { for j in 0..<dy.shape[3] {
            dx.v[dx.i4(b, ch, s * i, s * j)] += dy.v[dy.i4(b, ch + off, i, j)]
        } } } }
        return dx
    }

    public static func gap(_ x: Array64) -> Array64 {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var p = Array64([n, c])
        for b in 0..<n { for ch in 0..<c {
            var s = 0.0
            for k in 0..<hw { s += x.v[(b * c + ch) * hw + k] }
            p.v[b * c + ch] = s / Double(hw)
        } }
        return p
    }

    public static func gapBackward(_ dp: Array64, shape: [Int]) -> Array64 {
        let hw = shape[2] * shape[3]
        var dx = Array64(shape)
        for k in 0..<dx.v.count { dx.v[k] = dp.v[k / hw] / Double(hw) }
        return dx
    }

    public static func fc(_ p: Array64, _ w: Array64, _ b: Array64) -> Array64 {
        let (n, c, k) = (p.shape[0], p.shape[1], w.shape[0])
        var z = Array64([n, k])
        for i in 0..<n { for o in 0..<k {
            var s = b.v[o]
            for ch in 0..<c { s += w.v[o * c + ch] * p.v[i * c + ch] }
            z.v[i * k + o] = s
        } }
        return z
    }

    public static func fcBackward(_ dz: Array64, _ p: Array64, _ w: Array64) -> (dp: Array64, dw: Array64, db: Array64) {
        let (n, c, k) = (p.shape[0], p.shape[1], w.shape[0])
        var dp = Array64(p.shape), dw = Array64(w.shape), db = Array64([k])
        for i in 0..<n { for o in 0..<k {
            let g = dz.v[i * k + o]
            db.v[o] += g
            for ch in 0..<c { dw.v[o * c + ch] += g * p.v[i * c + ch]; dp.v[i * c + ch] += g * w.v[o * c + ch] }
        } }
        return (dp, dw, db)
    }

    public static func crossEntropy(_ z: Array64, _ labels: [Int]) -> (loss: Double, dz: Array64) {
        let (n, k) = (z.shape[0], z.shape[1])
        var loss = 0.0
        var dz = Array64(z.shape)
        for i in 0..<n {
            let row = Array(z.v[(i * k)..<((i + 1) * k)])
            let mx = row.max()!
            let se = row.reduce(0) { $0 + exp($1 - mx) }
            loss += log(se) + mx - row[labels[i]]
            for o in 0..<k { dz.v[i * k + o] = (exp(row[o] - mx) / se - (o == labels[i] ? 1 : 0)) / Double(n) }
        }
        return (loss / Double(n), dz)
    }

    /// Whole network, training mode: loss, gradients by path, and the batch statistics
    /// (mean, biased variance, M) of every BN by its path prefix.
    /// `perturb` adds `delta` to element `index` of the tensor at `path` (in float64).
    public static func trainForwardBackward(_ net: Network, _ x: Array64, _ labels: [Int],
                                     perturb: (path: String, index: Int, delta: Double)? = nil)
        -> (loss: Double, grads: [String: Array64], stats: [String: ([Double], [Double], Int)]) {
        let eps = net.bnEpsilon
        var grads: [String: Array64] = [:]
        var stats: [String: ([Double], [Double], Int)] = [:]
        func P(_ path: String, _ t: Tensor) -> Array64 {
            var a = Array64(t)
            if let perturb, perturb.path == path { a.v[perturb.index] += perturb.delta }
            return a
        }
        func V(_ path: String, _ t: Tensor) -> [Double] { P(path, t).v }
        let stemW = P("model/stem/conv/weight", net.stem)
        var y = conv(x, stemW, stride: 1)
        struct Saved { var path: String; var blk: ResidualBlock; var x: Array64; var c1: BNCache; var t1: Array64; var a1: Array64
            var z1: Array64; var c2: BNCache; var t2: Array64; var a2: Array64; var g1: [Double]; var g2: [Double]; var w1: Array64; var w2: Array64 }
        var saved: [Saved] = []
        for (s, stage) in net.stages.enumerated() {
            for (b, blk) in stage.blocks.enumerated() {
                let path = "model/stages/\(s)/blocks/\(b)"
                let g1 = V(path + "/bn1/weight", blk.bn1.weight), g2 = V(path + "/bn2/weight", blk.bn2.weight)
                let w1 = P(path + "/conv1/weight", blk.conv1), w2 = P(path + "/conv2/weight", blk.conv2)
                let (t1, c1) = bnTrain(y, g1, V(path + "/bn1/bias", blk.bn1.bias), eps: eps)
                let a1 = relu(t1)
                let z1 = conv(a1, w1, stride: blk.stride)
                let (t2, c2) = bnTrain(z1, g2, V(path + "/bn2/bias", blk.bn2.bias), eps: eps)
                let a2 = relu(t2)
                let f = conv(a2, w2, stride: 1)
                stats[path + "/bn1"] = (c1.mean, c1.variance, y.shape[0] * y.shape[2] * y.shape[3])
                stats[path + "/bn2"] = (c2.mean, c2.variance, z1.shape[0] * z1.shape[2] * z1.shape[3])
                let sc = shortcut(y, blk)
                saved.append(Saved(path: path, blk: blk, x: y, c1: c1, t1: t1, a1: a1, z1: z1, c2: c2, t2: t2, a2: a2,
                                    g1: g1, g2: g2, w1: w1, w2: w2))
                y = sc + blk.h * f
            }
        }
        let gh = V("model/head/bn/weight", net.headBN.weight)
        let fw = P("model/head/fc/weight", net.fcWeight)
        let (th, ch) = bnTrain(y, gh, V("model/head/bn/bias", net.headBN.bias), eps: eps)
        stats["model/head/bn"] = (ch.mean, ch.variance, y.shape[0] * y.shape[2] * y.shape[3])
        let ah = relu(th)
        let p = gap(ah)
        let z = fc(p, fw, P("model/head/fc/bias", net.fcBias))
        let (loss, dz) = crossEntropy(z, labels)
        let (dp, dfw, dfb) = fcBackward(dz, p, fw)
        grads["model/head/fc/weight"] = dfw; grads["model/head/fc/bias"] = dfb
        let dah = gapBackward(dp, shape: ah.shape)
        let (dyh, dgh, dbh) = bnBackward(reluBackward(th, dah), ch, gh)
        grads["model/head/bn/weight"] = Array64([dgh.count], dgh); grads["model/head/bn/bias"] = Array64([dbh.count], dbh)
        var g = dyh
        for sv in saved.reversed() {
            let blk = sv.blk, h = blk.h
            let df = h * g
            let (da2, dw2) = convBackward(sv.a2, sv.w2, df, stride: 1)
            let (dz1, dg2, db2) = bnBackward(reluBackward(sv.t2, da2), sv.c2, sv.g2)
            let (da1, dw1) = convBackward(sv.a1, sv.w1, dz1, stride: blk.stride)
            let (dxf, dg1, db1) = bnBackward(reluBackward(sv.t1, da1), sv.c1, sv.g1)
            let dsc = blk.changesShape
                ? shortcutBackward(g, inShape: sv.x.shape, stride: blk.stride, offset: blk.shortcutChannelOffset) : g
            grads[sv.path + "/conv2/weight"] = dw2; grads[sv.path + "/conv1/weight"] = dw1
            grads[sv.path + "/bn2/weight"] = Array64([dg2.count], dg2); grads[sv.path + "/bn2/bias"] = Array64([db2.count], db2)
            grads[sv.path + "/bn1/weight"] = Array64([dg1.count], dg1); grads[sv.path + "/bn1/bias"] = Array64([db1.count], db1)
            g = dsc + dxf
        }
        grads["model/stem/conv/weight"] = convBackward(x, stemW, g, stride: 1).dw
        return (loss, grads, stats)
    }

    /// P(Y) of a block: the identity, or (a block that changes shape) Y subsampled by the
    /// block's stride with its channels at the block's offset inside Cout zero channels.
    public static func shortcut(_ y: Array64, _ blk: ResidualBlock) -> Array64 {
        blk.changesShape ? shortcut(y, cout: blk.outChannels, stride: blk.stride, offset: blk.shortcutChannelOffset) : y
    }

    /// relu(bn(x)) with the running statistics (eval mode).
    public static func bnReluEval(_ x: Array64, _ bn: BatchNorm, eps: Double) -> Array64 {
        func vec(_ t: Tensor) -> [Double] { t.data.map(Double.init) }
        return relu(bnEval(x, vec(bn.weight), vec(bn.bias), mean: vec(bn.runningMean), variance: vec(bn.runningVar), eps: eps))
    }

    /// F(Y) = conv2(relu(bn2(conv1(relu(bn1(Y)))))) of one block, eval mode; `eps` is the network's BN ε.
    public static func residual(_ y: Array64, _ blk: ResidualBlock, eps: Double) -> Array64 {
        conv(bnReluEval(conv(bnReluEval(y, blk.bn1, eps: eps), Array64(blk.conv1), stride: blk.stride), blk.bn2, eps: eps),
             Array64(blk.conv2), stride: 1)
    }

    /// Whole network, eval mode (running statistics) on an already standardised input x
    /// [N, C, H, W]: logits [N, K]. `onBlock` sees every block's (id, Y_j, F_j(Y_j)) in order;
    /// the block's output is Y_{j+1} = P(Y_j) + h_j·F_j(Y_j).
    public static func forward(_ net: Network, _ x: Array64,
                               onBlock: ((BlockID, _ y: Array64, _ f: Array64) -> Void)? = nil) -> Array64 {
        let eps = net.bnEpsilon
        var y = conv(x, Array64(net.stem), stride: 1)
        for (s, stage) in net.stages.enumerated() {
            for (b, blk) in stage.blocks.enumerated() {
                let f = residual(y, blk, eps: eps)
                onBlock?(BlockID(stage: s, block: b), y, f)
                y = shortcut(y, blk) + blk.h * f
            }
        }
        return fc(gap(bnReluEval(y, net.headBN, eps: eps)), Array64(net.fcWeight), Array64(net.fcBias))
    }

    /// Logits and every block's (id, Y_j, F_j(Y_j)) of an eval-mode forward pass.
    public static func trace(_ net: Network, _ x: Array64) -> (logits: Array64, blocks: [BlockTrace]) {
        var blocks: [BlockTrace] = []
        let z = forward(net, x) { blocks.append(BlockTrace(id: $0, y: $1, f: $2)) }
        return (z, blocks)
    }

    /// Whole network, eval mode: logits [N, K] of a standardised input.
    public static func evalLogits(_ net: Network, _ x: Array64) -> Array64 { forward(net, x) }

    /// The checkpoint's input standardisation (x − mean_c)/std_c (``Network/inputMean``,
    /// ``Network/inputStd``) of `count` images of pixels in [0, 1], NCHW, in float64.
    public static func standardised(_ net: Network, pixels: [Double], count: Int) -> Array64 {
        let c = net.inputShape[0], plane = net.inputShape[1] * net.inputShape[2]
        precondition(pixels.count == count * c * plane, "\(pixels.count) pixels for \(count) images of \(net.inputShape)")
        var x = Array64([count] + net.inputShape, pixels)
        for n in 0 ..< count { for ch in 0 ..< c { for p in 0 ..< plane {
            let i = (n * c + ch) * plane + p
            x.v[i] = (pixels[i] - Double(net.inputMean[ch])) / Double(net.inputStd[ch])
        } } }
        return x
    }

    /// Logits [count × K] (row-major) of a whole batch of raw pixels in [0, 1] (NCHW), standardised
    /// as the checkpoint says and run in eval mode: what a server should answer.
    public static func logits(_ net: Network, pixels: [Float], count: Int) -> [Double] {
        forward(net, standardised(net, pixels: pixels.map(Double.init), count: count)).v
    }

    /// Training-mode loss only (for finite differences).
    public static func trainLoss(_ net: Network, _ x: Array64, _ labels: [Int],
                          perturb: (path: String, index: Int, delta: Double)? = nil) -> Double {
        trainForwardBackward(net, x, labels, perturb: perturb).loss
    }
}

/// An array of `shape` with standard normal values from `SplitMix64(seed:)`, times `scale`.
public func randomA(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Array64 {
    var rng = SplitMix64(seed: seed)
    return Array64(shape, (0..<shape.reduce(1, *)).map { _ in rng.nextNormal() * scale })
}

/// Σ a_i·b_i of two arrays of one shape.
public func dot(_ a: Array64, _ b: Array64) -> Double {
    precondition(a.shape == b.shape, "shapes differ: \(a.shape) vs \(b.shape)")
    return zip(a.v, b.v).reduce(0) { $0 + $1.0 * $1.1 }
}
