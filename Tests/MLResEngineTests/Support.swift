import Foundation
import MLResModel
import MLResTestSupport
@testable import MLResEngine

/// The tiny network of the gradient checks: input 2x6x6, stages of widths 3 and 6 with 1 and 2
/// blocks (the second stage starts with a stride-2 zero-pad shortcut whose channel offset is 1),
/// 3 classes, every h = 0.5, and non-trivial BN parameters and running statistics.
func tinyNetwork(seed: UInt64 = 7, h: Double = 0.5) -> Network {
    networkWithBNStatistics(Architecture(blocks: [1, 2], widths: [3, 6], inputShape: [2, 6, 6], numClasses: 3),
                            seed: seed, h: h)
}

func randomInput(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(rng.nextNormal()) }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor {
    var rng = SplitMix64(seed: seed)
    return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * scale) })
}

/// NCHW ↔ NHWC for filling engine memories in layer tests.
func toNHWC(_ x: Array64) -> [Float] {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = [Float](repeating: 0, count: x.v.count)
    for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
        out[((b * h + i) * w + j) * c + ch] = Float(x.v[x.i4(b, ch, i, j)])
    } } } }
    return out
}
func fromNHWC(_ p: UnsafePointer<Float>, _ shape: [Int]) -> Array64 {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    var x = Array64(shape)
    for b in 0..<n { for ch in 0..<c { for i in 0..<h { for j in 0..<w {
        x.v[x.i4(b, ch, i, j)] = Double(p[((b * h + i) * w + j) * c + ch])
    } } } }
    return x
}
func fill(_ m: Mem, _ v: [Float]) { v.withUnsafeBufferPointer { m.floats.update(from: $0.baseAddress!, count: v.count) } }
