// A plain float64 reference of every layer of the network (NCHW), used only by the tests.
// Written for clarity, not speed: direct loops over the defining sums.
import Foundation
import MLResModel

/// A float64 NCHW (or any-rank) array.
struct A: Equatable {
    var shape: [Int]
    var v: [Double]
    init(_ shape: [Int], _ v: [Double]? = nil) {
        self.shape = shape
        self.v = v ?? [Double](repeating: 0, count: shape.reduce(1, *))
        precondition(self.v.count == shape.reduce(1, *))
    }
    init(_ t: Tensor) { self.init(t.shape, t.data.map(Double.init)) }
    var tensor: Tensor { Tensor(shape: shape, data: v.map(Float.init)) }
    @inline(__always) func i4(_ n: Int, _ c: Int, _ h: Int, _ w: Int) -> Int {
        ((n * shape[1] + c) * shape[2] + h) * shape[3] + w
    }
    static func + (a: A, b: A) -> A { A(a.shape, zip(a.v, b.v).map { $0 + $1 }) }
    static func * (s: Double, a: A) -> A { A(a.shape, a.v.map { s * $0 }) }
}

enum Ref {
    // Conv 3x3, pad 1, no bias: y[n,o,i,j] = Σ w[o,c,a,b]·x[n,c,s·i+a−1,s·j+b−1].
    static func conv(_ x: A, _ w: A, stride s: Int) -> A {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = w.shape[0], oh = (h - 1) / s + 1, ow = (wd - 1) / s + 1
        var y = A([n, o, oh, ow])
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

    static func convBackward(_ x: A, _ w: A, _ dy: A, stride s: Int) -> (dx: A, dw: A) {
        var dx = A(x.shape), dw = A(w.shape)
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

    struct BNCache { var xhat: A; var mean: [Double]; var variance: [Double]; var eps: Double }

    // Batch norm, training: batch mean and biased variance over (n, h, w).
    static func bnTrain(_ x: A, _ g: [Double], _ beta: [Double], eps: Double) -> (A, BNCache) {
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
        var xhat = A(x.shape), y = A(x.shape)
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = x.i4(b, ch, i, j)
            xhat.v[k] = (x.v[k] - mean[ch]) / (varc[ch] + eps).squareRoot()
            y.v[k] = g[ch] * xhat.v[k] + beta[ch]
        } } } }
        return (y, BNCache(xhat: xhat, mean: mean, variance: varc, eps: eps))
    }

    static func bnEval(_ x: A, _ g: [Double], _ beta: [Double], mean: [Double], variance: [Double], eps: Double) -> A {
        var y = A(x.shape)
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        for bb in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = x.i4(bb, ch, i, j)
            y.v[k] = g[ch] * (x.v[k] - mean[ch]) / (variance[ch] + eps).squareRoot() + beta[ch]
        } } } }
        return y
    }

    // dβ = Σ dy; dγ = Σ dy·x̂; dx = γ/√(σ²+ε)·(dy − dβ/M − x̂·dγ/M).
    static func bnBackward(_ dy: A, _ cache: BNCache, _ g: [Double]) -> (dx: A, dg: [Double], db: [Double]) {
        let (n, c, h, w) = (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3])
        let m = Double(n * h * w)
        var dg = [Double](repeating: 0, count: c), db = dg
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = dy.i4(b, ch, i, j)
            db[ch] += dy.v[k]; dg[ch] += dy.v[k] * cache.xhat.v[k]
        } } } }
        var dx = A(dy.shape)
        for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
            let k = dy.i4(b, ch, i, j)
            let inv = 1 / (cache.variance[ch] + cache.eps).squareRoot()
            dx.v[k] = g[ch] * inv * (dy.v[k] - db[ch] / m - cache.xhat.v[k] * dg[ch] / m)
        } } } }
        return (dx, dg, db)
    }

    static func relu(_ x: A) -> A { A(x.shape, x.v.map { max(0, $0) }) }
    static func reluBackward(_ x: A, _ dy: A) -> A { A(x.shape, zip(x.v, dy.v).map { $0 > 0 ? $1 : 0 }) }

    // Zero-pad shortcut: S[n,c,i,j] = x[n, c−off, s·i, s·j] for off ≤ c < off+Cin.
    static func shortcut(_ x: A, cout: Int, stride s: Int) -> A {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let off = (cout - c) / 2, oh = (h - 1) / s + 1, ow = (w - 1) / s + 1
        var y = A([n, cout, oh, ow])
        for b in 0..<n { for ch in 0..<c { for i in 0..<oh { for j in 0..<ow {
            y.v[y.i4(b, ch + off, i, j)] = x.v[x.i4(b, ch, s * i, s * j)]
        } } } }
        return y
    }

    static func shortcutBackward(_ dy: A, inShape: [Int], stride s: Int) -> A {
        var dx = A(inShape)
        let (n, c) = (inShape[0], inShape[1])
        let off = (dy.shape[1] - c) / 2
        for b in 0..<n { for ch in 0..<c { for i in 0..<dy.shape[2] { for j in 0..<dy.shape[3] {
            dx.v[dx.i4(b, ch, s * i, s * j)] += dy.v[dy.i4(b, ch + off, i, j)]
        } } } }
        return dx
    }

    static func gap(_ x: A) -> A {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var p = A([n, c])
        for b in 0..<n { for ch in 0..<c {
            var s = 0.0
            for k in 0..<hw { s += x.v[(b * c + ch) * hw + k] }
            p.v[b * c + ch] = s / Double(hw)
        } }
        return p
    }

    static func gapBackward(_ dp: A, shape: [Int]) -> A {
        let hw = shape[2] * shape[3]
        var dx = A(shape)
        for k in 0..<dx.v.count { dx.v[k] = dp.v[k / hw] / Double(hw) }
        return dx
    }

    static func fc(_ p: A, _ w: A, _ b: A) -> A {
        let (n, c, k) = (p.shape[0], p.shape[1], w.shape[0])
        var z = A([n, k])
        for i in 0..<n { for o in 0..<k {
            var s = b.v[o]
            for ch in 0..<c { s += w.v[o * c + ch] * p.v[i * c + ch] }
            z.v[i * k + o] = s
        } }
        return z
    }

    static func fcBackward(_ dz: A, _ p: A, _ w: A) -> (dp: A, dw: A, db: A) {
        let (n, c, k) = (p.shape[0], p.shape[1], w.shape[0])
        var dp = A(p.shape), dw = A(w.shape), db = A([k])
        for i in 0..<n { for o in 0..<k {
            let g = dz.v[i * k + o]
            db.v[o] += g
            for ch in 0..<c { dw.v[o * c + ch] += g * p.v[i * c + ch]; dp.v[i * c + ch] += g * w.v[o * c + ch] }
        } }
        return (dp, dw, db)
    }

    static func crossEntropy(_ z: A, _ labels: [Int]) -> (loss: Double, dz: A) {
        let (n, k) = (z.shape[0], z.shape[1])
        var loss = 0.0
        var dz = A(z.shape)
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
    static func trainForwardBackward(_ net: Network, _ x: A, _ labels: [Int],
                                     perturb: (path: String, index: Int, delta: Double)? = nil)
        -> (loss: Double, grads: [String: A], stats: [String: ([Double], [Double], Int)]) {
        let eps = net.bnEpsilon
        var grads: [String: A] = [:]
        var stats: [String: ([Double], [Double], Int)] = [:]
        func P(_ path: String, _ t: Tensor) -> A {
            var a = A(t)
            if let perturb, perturb.path == path { a.v[perturb.index] += perturb.delta }
            return a
        }
        func V(_ path: String, _ t: Tensor) -> [Double] { P(path, t).v }
        let stemW = P("model/stem/conv/weight", net.stem)
        var y = conv(x, stemW, stride: 1)
        struct Saved { var path: String; var blk: ResidualBlock; var x: A; var c1: BNCache; var t1: A; var a1: A
            var z1: A; var c2: BNCache; var t2: A; var a2: A; var g1: [Double]; var g2: [Double]; var w1: A; var w2: A }
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
                let sc = blk.changesShape ? shortcut(y, cout: blk.outChannels, stride: blk.stride) : y
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
        grads["model/head/bn/weight"] = A([dgh.count], dgh); grads["model/head/bn/bias"] = A([dbh.count], dbh)
        var g = dyh
        for sv in saved.reversed() {
            let blk = sv.blk, h = blk.h
            let df = h * g
            let (da2, dw2) = convBackward(sv.a2, sv.w2, df, stride: 1)
            let (dz1, dg2, db2) = bnBackward(reluBackward(sv.t2, da2), sv.c2, sv.g2)
            let (da1, dw1) = convBackward(sv.a1, sv.w1, dz1, stride: blk.stride)
            let (dxf, dg1, db1) = bnBackward(reluBackward(sv.t1, da1), sv.c1, sv.g1)
            let dsc = blk.changesShape ? shortcutBackward(g, inShape: sv.x.shape, stride: blk.stride) : g
            grads[sv.path + "/conv2/weight"] = dw2; grads[sv.path + "/conv1/weight"] = dw1
            grads[sv.path + "/bn2/weight"] = A([dg2.count], dg2); grads[sv.path + "/bn2/bias"] = A([db2.count], db2)
            grads[sv.path + "/bn1/weight"] = A([dg1.count], dg1); grads[sv.path + "/bn1/bias"] = A([db1.count], db1)
            g = dsc + dxf
        }
        grads["model/stem/conv/weight"] = convBackward(x, stemW, g, stride: 1).dw
        return (loss, grads, stats)
    }

    /// Whole network, eval mode (running statistics): logits [N, K].
    static func evalLogits(_ net: Network, _ x: A) -> A {
        let eps = net.bnEpsilon
        func vec(_ t: Tensor) -> [Double] { t.data.map(Double.init) }
        func bnr(_ x: A, _ bn: BatchNorm) -> A {
            relu(bnEval(x, vec(bn.weight), vec(bn.bias), mean: vec(bn.runningMean), variance: vec(bn.runningVar), eps: eps))
        }
        var y = conv(x, A(net.stem), stride: 1)
        for stage in net.stages {
            for blk in stage.blocks {
                let f = conv(bnr(conv(bnr(y, blk.bn1), A(blk.conv1), stride: blk.stride), blk.bn2), A(blk.conv2), stride: 1)
                let sc = blk.changesShape ? shortcut(y, cout: blk.outChannels, stride: blk.stride) : y
                y = sc + blk.h * f
            }
        }
        return fc(gap(bnr(y, net.headBN)), A(net.fcWeight), A(net.fcBias))
    }

    /// Training-mode loss only (for finite differences).
    static func trainLoss(_ net: Network, _ x: A, _ labels: [Int],
                          perturb: (path: String, index: Int, delta: Double)? = nil) -> Double {
        trainForwardBackward(net, x, labels, perturb: perturb).loss
    }
}
