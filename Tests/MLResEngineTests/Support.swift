import Foundation
import MLResModel
@testable import MLResEngine

/// The tiny network of the gradient checks: input 2x6x6, stages of widths 3 and 6 with 1 and 2
/// blocks (the second stage starts with a stride-2 zero-pad shortcut whose channel offset is 1),
/// 3 classes, every h = 0.5, and non-trivial BN parameters and running statistics.
func tinyNetwork(seed: UInt64 = 7, h: Double = 0.5) -> Network {
    var net = Network.initialized(Architecture(blocks: [1, 2], widths: [3, 6], inputShape: [2, 6, 6], numClasses: 3),
                                  seed: seed, h: h)
    var rng = SplitMix64(seed: seed &+ 1000)
    func rand(_ t: inout Tensor, _ lo: Double, _ hi: Double) {
        for i in t.data.indices { t.data[i] = Float(rng.nextUniform(lo, hi)) }
    }
    func bn(_ b: inout BatchNorm) {
        rand(&b.weight, 0.5, 1.5); rand(&b.bias, -0.3, 0.3)
        rand(&b.runningMean, -0.2, 0.2); rand(&b.runningVar, 0.5, 1.5)
    }
    for s in net.stages.indices {
        for b in net.stages[s].blocks.indices {
            bn(&net.stages[s].blocks[b].bn1); bn(&net.stages[s].blocks[b].bn2)
        }
    }
    bn(&net.headBN)
    return net
}

func randomInput(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(rng.nextNormal()) }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor {
    var rng = SplitMix64(seed: seed)
    return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * scale) })
}

/// max |a − b| / max(max |b|, floor): an error relative to the size of the reference.
func relError(_ a: [Double], _ b: [Double], floor: Double = 1e-6) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var d = 0.0, m = floor
    for i in a.indices { d = max(d, abs(a[i] - b[i])); m = max(m, abs(b[i])) }
    return d / m
}
func relError(_ a: Tensor, _ b: A) -> Double { relError(a.data.map(Double.init), b.v) }

/// NCHW ↔ NHWC for filling engine memories in layer tests.
func toNHWC(_ x: A) -> [Float] {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = [Float](repeating: 0, count: x.v.count)
    for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
        out[((b * h + i) * w + j) * c + ch] = Float(x.v[x.i4(b, ch, i, j)])
    } } } }
    return out
}
func fromNHWC(_ p: UnsafePointer<Float>, _ shape: [Int]) -> A {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    var x = A(shape)
    for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
        x.v[x.i4(b, ch, i, j)] = Double(p[((b * h + i) * w + j) * c + ch])
    } } } }
    return x
}
func fill(_ m: Mem, _ v: [Float]) { v.withUnsafeBufferPointer { m.floats.update(from: $0.baseAddress!, count: v.count) } }
func randomA(_ shape: [Int], seed: UInt64, scale: Double = 1) -> A {
    var rng = SplitMix64(seed: seed)
    return A(shape, (0..<shape.reduce(1, *)).map { _ in rng.nextNormal() * scale })
}
func dot(_ a: A, _ b: A) -> Double { zip(a.v, b.v).reduce(0) { $0 + $1.0 * $1.1 } }
