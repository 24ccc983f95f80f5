import Foundation
import MLResModel
import MLResData

/// The committed dataset fixtures (scripts/make_dataset_fixtures.py).
enum Fix {
    static let root: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/datasets").path
    }()
    /// The 12-image Fashion-MNIST test fixture.
    static func fashionTest() throws -> Dataset {
        try DatasetSelection(kind: .fashionMNIST, dataDirectory: root + "/fashion-mnist").load(.test)
    }
    static func scratch() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-analysis-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}

/// A tiny 1x28x28 network (blocks 2-1-2, widths 4-6-8, so the shortcut pads 1 channel on each
/// side) with random BN parameters and running statistics, mixed step sizes, a non-trivial
/// input standardisation.
func tinyNet(seed: UInt64 = 11, hs: [[Double]] = [[0.5, 0.8], [1.0], [0.7, 0.3]]) -> Network {
    var net = Network.initialized(Architecture(blocks: hs.map(\.count), widths: [4, 6, 8], inputShape: [1, 28, 28]),
                                  seed: seed)
    var rng = SplitMix64(seed: seed &+ 1000)
    func bn(_ b: inout BatchNorm) {
        for i in 0 ..< b.channels {
            b.weight.data[i] = Float(rng.nextUniform(0.5, 1.5))
            b.bias.data[i] = Float(rng.nextUniform(-0.2, 0.2))
            b.runningMean.data[i] = Float(rng.nextUniform(-0.3, 0.3))
            b.runningVar.data[i] = Float(rng.nextUniform(0.5, 2))
        }
    }
    for s in net.stages.indices {
        for b in net.stages[s].blocks.indices {
            net.stages[s].blocks[b].h = hs[s][b]
            bn(&net.stages[s].blocks[b].bn1); bn(&net.stages[s].blocks[b].bn2)
        }
    }
    bn(&net.headBN)
    net.inputMean = [0.45]; net.inputStd = [0.3]
    return net
}

/// A float64 array with an NCHW shape.
struct D {
    var shape: [Int]
    var v: [Double]
    init(_ shape: [Int], _ v: [Double]) { self.shape = shape; self.v = v }
    init(zeros shape: [Int]) { self.init(shape, [Double](repeating: 0, count: shape.reduce(1, *))) }
}

/// An independent float64 forward pass of a ``Network`` in eval mode, written from the
/// equations in Network.swift (no engine code), returning each block's input Y_j and F(Y_j).
enum Ref64 {
    static func conv(_ x: D, _ w: Tensor, stride s: Int) -> D {
        let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let co = w.shape[0]
        let oh = (h - 1) / s + 1, ow = (wd - 1) / s + 1
        var y = D(zeros: [n, co, oh, ow])
        for i in 0 ..< n { for o in 0 ..< co { for yy in 0 ..< oh { for xx in 0 ..< ow {
            var acc = 0.0
            for c in 0 ..< ci { for ky in 0 ..< 3 { for kx in 0 ..< 3 {
                let iy = yy * s + ky - 1, ix = xx * s + kx - 1
                if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                acc += x.v[((i * ci + c) * h + iy) * wd + ix] * Double(w.data[((o * ci + c) * 3 + ky) * 3 + kx])
            } } }
            y.v[((i * co + o) * oh + yy) * ow + xx] = acc
        } } } }
        return y
    }

    /// relu(bn(x)) with running statistics.
    static func bnRelu(_ x: D, _ b: BatchNorm, eps: Double) -> D {
        var y = x
        let c = x.shape[1], hw = x.shape[2] * x.shape[3]
        for i in 0 ..< x.shape[0] { for ch in 0 ..< c {
            let scale = Double(b.weight.data[ch]) / (Double(b.runningVar.data[ch]) + eps).squareRoot()
            for k in 0 ..< hw {
                let idx = (i * c + ch) * hw + k
                y.v[idx] = max(0, (x.v[idx] - Double(b.runningMean.data[ch])) * scale + Double(b.bias.data[ch]))
            }
        } }
        return y
    }

    /// P(Y): subsample by `stride`, put the channels at `offset` inside `cout` zero channels.
    static func shortcut(_ x: D, cout: Int, stride s: Int, offset: Int) -> D {
        let (n, ci, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h - 1) / s + 1, ow = (w - 1) / s + 1
        var y = D(zeros: [n, cout, oh, ow])
        for i in 0 ..< n { for c in 0 ..< ci { for yy in 0 ..< oh { for xx in 0 ..< ow {
            y.v[((i * cout + c + offset) * oh + yy) * ow + xx] = x.v[((i * ci + c) * h + yy * s) * w + xx * s]
        } } } }
        return y
    }

    /// Logits `[N, K]` and, per block, (Y_j, F(Y_j)).
    static func forward(_ net: Network, _ x: D) -> (logits: D, blocks: [(y: D, f: D)]) {
        var y = conv(x, net.stem, stride: 1)
        var blocks: [(D, D)] = []
        for stage in net.stages {
            for b in stage.blocks {
                let a = conv(bnRelu(y, b.bn1, eps: net.bnEpsilon), b.conv1, stride: b.stride)
                let f = conv(bnRelu(a, b.bn2, eps: net.bnEpsilon), b.conv2, stride: 1)
                blocks.append((y, f))
                var out = b.changesShape ? shortcut(y, cout: b.outChannels, stride: b.stride, offset: b.shortcutChannelOffset) : y
                for i in out.v.indices { out.v[i] += b.h * f.v[i] }
                y = out
            }
        }
        let z = bnRelu(y, net.headBN, eps: net.bnEpsilon)
        let (n, c, hw) = (z.shape[0], z.shape[1], z.shape[2] * z.shape[3])
        let k = net.numClasses
        var logits = D(zeros: [n, k])
        for i in 0 ..< n {
            var pooled = [Double](repeating: 0, count: c)
            for ch in 0 ..< c { for s in 0 ..< hw { pooled[ch] += z.v[(i * c + ch) * hw + s] }; pooled[ch] /= Double(hw) }
            for o in 0 ..< k {
                var acc = Double(net.fcBias.data[o])
                for ch in 0 ..< c { acc += Double(net.fcWeight.data[o * c + ch]) * pooled[ch] }
                logits.v[i * k + o] = acc
            }
        }
        return (logits, blocks)
    }

    /// The dataset's images scaled to [0,1] and standardised, in float64.
    static func input(_ ds: Dataset, mean: [Float], std: [Float]) -> D {
        var x = D(zeros: ds.shape)
        let plane = ds.height * ds.width
        for i in 0 ..< ds.count { for c in 0 ..< ds.channels { for k in 0 ..< plane {
            let idx = (i * ds.channels + c) * plane + k
            x.v[idx] = (Double(ds.images[idx]) / 255 - Double(mean[c])) / Double(std[c])
        } } }
        return x
    }

    /// Mean over images of each image's L2 norm.
    static func meanNorm(_ x: D) -> Double {
        let n = x.shape[0], per = x.v.count / n
        var total = 0.0
        for i in 0 ..< n { total += x.v[(i * per) ..< ((i + 1) * per)].reduce(0) { $0 + $1 * $1 }.squareRoot() }
        return total / Double(n)
    }
}

func relClose(_ a: Double, _ b: Double, _ tol: Double = 1e-4) -> Bool {
    abs(a - b) <= tol * max(abs(a), abs(b), 1e-3)
}
