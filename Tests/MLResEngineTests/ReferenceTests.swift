// The float64 reference's backward passes against central finite differences of its forward
// passes, layer by layer (objective L = Σ r·y with a fixed random r).
import Foundation
import Testing
import MLResModel
import MLResTestSupport

/// Central difference of `f` along every coordinate of `x` (or the first `limit`).
private func numericGrad(_ x: Array64, limit: Int = .max, _ f: (Array64) -> Double) -> [Double] {
    let eps = 1e-6
    var g: [Double] = []
    for i in 0..<min(x.v.count, limit) {
        var p = x, m = x
        p.v[i] += eps; m.v[i] -= eps
        g.append((f(p) - f(m)) / (2 * eps))
    }
    return g
}

@Test func referenceConvolutionBackward() {
    for stride in [1, 2] {
        let x = randomA([2, 3, 5, 5], seed: 1), w = randomA([4, 3, 3, 3], seed: 2)
        let y = Ref.conv(x, w, stride: stride)
        let r = randomA(y.shape, seed: 3)
        let (dx, dw) = Ref.convBackward(x, w, r, stride: stride)
        #expect(relError(dx.v, numericGrad(x) { dot(Ref.conv($0, w, stride: stride), r) }) < 1e-7)
        #expect(relError(dw.v, numericGrad(w) { dot(Ref.conv(x, $0, stride: stride), r) }) < 1e-7)
    }
}

@Test func referenceBatchNormReLUBackward() {
    let x = randomA([3, 2, 3, 3], seed: 4)
    let g = [1.3, 0.7], b = [0.1, -0.2]
    let (t, cache) = Ref.bnTrain(x, g, b, eps: 1e-5)
    let r = randomA(t.shape, seed: 5)
    let dt = Ref.reluBackward(t, r)
    let (dx, dg, db) = Ref.bnBackward(dt, cache, g)
    func loss(_ x: Array64, _ g: [Double], _ b: [Double]) -> Double { dot(Ref.relu(Ref.bnTrain(x, g, b, eps: 1e-5).0), r) }
    #expect(relError(dx.v, numericGrad(x) { loss($0, g, b) }) < 1e-6)
    #expect(relError(dg, numericGrad(Array64([2], g)) { loss(x, $0.v, b) }) < 1e-6)
    #expect(relError(db, numericGrad(Array64([2], b)) { loss(x, g, $0.v) }) < 1e-6)
    // Batch statistics: biased variance.
    let m0 = (0..<3).flatMap { n in (0..<9).map { x.v[n * 18 + $0] } }
    let mean = m0.reduce(0, +) / 27
    #expect(abs(cache.mean[0] - mean) < 1e-12)
    #expect(abs(cache.variance[0] - m0.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 27) < 1e-12)
}

@Test func referenceShortcutPoolLinearLossBackward() {
    let x = randomA([2, 3, 5, 5], seed: 6)
    let s = Ref.shortcut(x, cout: 6, stride: 2)
    #expect(s.shape == [2, 6, 3, 3])
    #expect(s.v[s.i4(1, 1, 2, 1)] == x.v[x.i4(1, 0, 4, 2)])   // offset (6−3)/2 = 1
    #expect(s.v[s.i4(1, 0, 2, 1)] == 0 && s.v[s.i4(1, 4, 2, 1)] == 0)
    let r = randomA(s.shape, seed: 7)
    #expect(relError(Ref.shortcutBackward(r, inShape: x.shape, stride: 2).v,
                     numericGrad(x) { dot(Ref.shortcut($0, cout: 6, stride: 2), r) }) < 1e-7)
    let rp = randomA([2, 3], seed: 8)
    #expect(relError(Ref.gapBackward(rp, shape: x.shape).v, numericGrad(x) { dot(Ref.gap($0), rp) }) < 1e-7)
    let p = randomA([4, 3], seed: 9), w = randomA([5, 3], seed: 10), b = randomA([5], seed: 11)
    let rz = randomA([4, 5], seed: 12)
    let (dp, dw, db) = Ref.fcBackward(rz, p, w)
    #expect(relError(dp.v, numericGrad(p) { dot(Ref.fc($0, w, b), rz) }) < 1e-7)
    #expect(relError(dw.v, numericGrad(w) { dot(Ref.fc(p, $0, b), rz) }) < 1e-7)
    #expect(relError(db.v, numericGrad(b) { dot(Ref.fc(p, w, $0), rz) }) < 1e-7)
    let labels = [0, 4, 2, 2]
    let (_, dz) = Ref.crossEntropy(p.shape == [4, 3] ? Ref.fc(p, w, b) : p, labels)
    #expect(relError(dz.v, numericGrad(Ref.fc(p, w, b)) { Ref.crossEntropy($0, labels).loss }) < 1e-6)
}
