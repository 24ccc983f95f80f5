import Testing
import Foundation
@testable import MLResModel

// The dynamical-systems claims behind surgery, checked with a small float64 reference forward
// pass written here (inference mode: BN uses running statistics). It is independent of the
// engine; its only job is to evaluate Y_{j+1} = P(Y_j) + h_j·F_j(Y_j) literally.

/// A feature map [C][H][W] in float64.
private typealias Map = [[[Double]]]

private func conv3x3(_ x: Map, _ w: Tensor, stride: Int) -> Map {
    let cout = w.shape[0], cin = w.shape[1], h = x[0].count, wd = x[0][0].count
    let ho = (h - 1) / stride + 1, wo = (wd - 1) / stride + 1
    var y = Map(repeating: [[Double]](repeating: [Double](repeating: 0, count: wo), count: ho), count: cout)
    for o in 0..<cout { for i in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
        let k = Double(w.data[((o * cin + i) * 3 + ky) * 3 + kx])
        for r in 0..<ho { for c in 0..<wo {
            let yy = r * stride + ky - 1, xx = c * stride + kx - 1
            if yy >= 0 && yy < h && xx >= 0 && xx < wd { y[o][r][c] += k * x[i][yy][xx] }
        } }
    } } } }
    return y
}

private func bnRelu(_ x: Map, _ bn: BatchNorm, eps: Double) -> Map {
    x.indices.map { c in
        let scale = Double(bn.weight.data[c]) / (Double(bn.runningVar.data[c]) + eps).squareRoot()
        let shift = Double(bn.bias.data[c]) - Double(bn.runningMean.data[c]) * scale
        return x[c].map { row in row.map { max(0, $0 * scale + shift) } }
    }
}

/// F(Y) = conv2(relu(bn2(conv1(relu(bn1(Y)))))).
private func residual(_ y: Map, _ b: ResidualBlock, eps: Double) -> Map {
    conv3x3(bnRelu(conv3x3(bnRelu(y, b.bn1, eps: eps), b.conv1, stride: b.stride), b.bn2, eps: eps),
            b.conv2, stride: 1)
}

/// P(Y): identity, or subsample by the stride and zero-pad the channels at the block's offset.
private func shortcut(_ y: Map, _ b: ResidualBlock) -> Map {
    guard b.changesShape else { return y }
    let sub = y.map { ch in stride(from: 0, to: ch.count, by: b.stride).map { r in
        stride(from: 0, to: ch[0].count, by: b.stride).map { ch[r][$0] } } }
    let zero = sub[0].map { $0.map { _ in 0.0 } }
    var out = Map(repeating: zero, count: b.outChannels)
    for c in 0..<b.inChannels { out[c + b.shortcutChannelOffset] = sub[c] }
    return out
}

private func axpy(_ p: Map, _ h: Double, _ f: Map) -> Map {
    zip(p, f).map { zip($0, $1).map { zip($0, $1).map { $0 + h * $1 } } }
}

/// Logits of one input, plus the input of every block (by stage, block) for inspection.
private func forward(_ net: Network, _ x: Map) -> (logits: [Double], blockInputs: [[Map]], stageOutputs: [Map]) {
    let eps = net.bnEpsilon
    var y = conv3x3(x.indices.map { c in
        x[c].map { $0.map { ($0 - Double(net.inputMean[c])) / Double(net.inputStd[c]) } } }, net.stem, stride: 1)
    var inputs: [[Map]] = [], outputs: [Map] = []
    for stage in net.stages {
        var ins: [Map] = []
        for b in stage.blocks {
            ins.append(y)
            y = axpy(shortcut(y, b), b.h, residual(y, b, eps: eps))
        }
        inputs.append(ins); outputs.append(y)
    }
    let pooled = bnRelu(y, net.headBN, eps: eps).map { ch in ch.joined().reduce(0, +) / Double(ch.count * ch[0].count) }
    let k = net.numClasses
    let logits = (0..<k).map { o in
        Double(net.fcBias.data[o]) + pooled.indices.reduce(0) { $0 + Double(net.fcWeight.data[o * pooled.count + $1]) * pooled[$1] }
    }
    return (logits, inputs, outputs)
}

private func input(seed: UInt64) -> Map {
    var rng = SplitMix64(seed: seed)
    return (0..<3).map { _ in (0..<8).map { _ in (0..<8).map { _ in rng.nextUnit() } } }
}

/// A small trained-looking net: 3x8x8 input, widths 4-8-16, random BN statistics.
private func smallNet(_ blocks: [Int]) -> Network {
    surgeryFixture(blocks, widths: [4, 8, 16], seed: 21, momentum: false).network
}

private func relChange(_ a: [Double], _ b: [Double]) -> Double {
    let num = zip(a, b).map { ($1 - $0) * ($1 - $0) }.reduce(0, +).squareRoot()
    return num / a.map { $0 * $0 }.reduce(0, +).squareRoot()
}

private func maxAbs(_ a: Map, _ b: Map) -> Double {
    zip(a.joined().joined(), b.joined().joined()).map { abs($0 - $1) }.max() ?? 0
}

private func withInput(_ net: Network) -> Network {
    var n = net
    n.inputShape = [3, 8, 8]
    return n
}

@Test("A fresh identity block is an exact identity step (single-block stages, h kept)")
func identityBlockIsExact() throws {
    let c0 = Checkpoint(network: withInput(smallNet([1, 1, 1])))
    let (c1, _) = try Surgery.interpolate(c0, stages: [1, 2], hPolicy: .keep)
    for seed in UInt64(1)...2 {
        let x = input(seed: seed)
        #expect(forward(c0.network, x).logits == forward(c1.network, x).logits)
    }
}

@Test("Interpolation moves the logits only a little, and less as h shrinks")
func interpolationIsCloseForSmallSteps() throws {
    var changes: [Double] = []
    for h in [0.4, 0.1, 0.025] {
        let (c0, _) = try Surgery.setH(Checkpoint(network: withInput(smallNet([2, 2, 2]))), h: h)
        let (c1, _) = try Surgery.interpolate(c0)
        var worst = 0.0
        for seed in UInt64(1)...3 {
            let x = input(seed: seed)
            worst = max(worst, relChange(forward(c0.network, x).logits, forward(c1.network, x).logits))
        }
        changes.append(worst)
    }
    print("relative logit change after interpolation at h = 0.4, 0.1, 0.025: \(changes.map { String(format: "%.2e", $0) })")
    #expect(changes[0] > changes[1] && changes[1] > changes[2])
    #expect(changes[2] < 0.01)
    #expect(changes[2] > 0)   // not a no-op: the discretisation did change
}

@Test("Splitting steps of one stage (no Appendix B copy) changes the logits at second order in h")
func interpolationOrder() throws {
    func change(_ h: Double, stages: [Int]) throws -> Double {
        let (c0, _) = try Surgery.setH(Checkpoint(network: withInput(smallNet([2, 2, 2]))), h: h)
        let (c1, _) = try Surgery.interpolate(c0, stages: stages)
        let x = input(seed: 6)
        return relChange(forward(c0.network, x).logits, forward(c1.network, x).logits)
    }
    // Stage 0: every block is replaced by two half steps of itself: Y + h/2·F(Y) + h/2·F(Y + h/2·F(Y))
    // differs from Y + h·F(Y) by h²/4·F'F + O(h³), so halving h divides the change by ~4.
    let s0 = try [0.1, 0.05, 0.025].map { try change($0, stages: [0]) }
    // Stage 1 (Appendix B): block 0's step is halved and block 1 is used three times at h/2, a
    // first-order change in h: halving h divides the change by ~2.
    let s1 = try [0.1, 0.05, 0.025].map { try change($0, stages: [1]) }
    print("stage 0 change at h = 0.1, 0.05, 0.025: \(s0.map { String(format: "%.2e", $0) });"
          + " stage 1: \(s1.map { String(format: "%.2e", $0) })")
    #expect(s0[0] / s0[1] > 3.5 && s0[0] / s0[1] < 4.5 && s0[1] / s0[2] > 3.5 && s0[1] / s0[2] < 4.5)
    #expect(s1[0] / s1[1] > 1.6 && s1[0] / s1[1] < 2.6 && s1[1] / s1[2] > 1.8 && s1[1] / s1[2] < 2.3)
}

@Test("Reordering two steps changes the logits at second order in h (the steps nearly commute)")
func shuffleOrder2() throws {
    func change(_ h: Double) throws -> Double {
        let (c0, _) = try Surgery.setH(Checkpoint(network: withInput(smallNet([3, 3, 3]))), h: h)
        let (c1, _) = try Surgery.shuffle(c0, stage: 1, .order([0, 2, 1]))
        let x = input(seed: 7)
        return relChange(forward(c0.network, x).logits, forward(c1.network, x).logits)
    }
    // Y + h·F1 + h·F2(Y + h·F1) versus Y + h·F2 + h·F1(Y + h·F2): they differ by h²(F2′F1 − F1′F2).
    let c = try [0.1, 0.05, 0.025].map(change)
    print("shuffle change at h = 0.1, 0.05, 0.025: \(c.map { String(format: "%.2e", $0) })")
    #expect(c[2] > 0)
    #expect(c[0] / c[1] > 3.5 && c[0] / c[1] < 4.5 && c[1] / c[2] > 3.5 && c[1] / c[2] < 4.5)
}

@Test("Removing block j changes the next block's input by exactly h_j·F_j(Y_j) (Eq. 8)")
func removalChangesByOneStep() throws {
    let c0 = Checkpoint(network: withInput(smallNet([3, 3, 3])))
    let (c1, _) = try Surgery.remove(c0, blocks: [BlockID(stage: 1, block: 1)])
    let x = input(seed: 4)
    let a = forward(c0.network, x), b = forward(c1.network, x)
    let yj = a.blockInputs[1][1]                        // Y_1 of stage 1, the removed block's input
    #expect(maxAbs(b.blockInputs[1][1], yj) < 1e-12)   // after removal, old block 2 sees Y_1
    let blk = c0.network.stages[1].blocks[1]
    let step = axpy(a.blockInputs[1][2], -1, yj)        // Y_2 − Y_1 in the original
    let hF = residual(yj, blk, eps: c0.network.bnEpsilon).map { $0.map { $0.map { blk.h * $0 } } }
    #expect(maxAbs(step, hF) < 1e-12)
    #expect(maxAbs(b.blockInputs[1][1], a.blockInputs[1][2]) > 1e-3)   // the lesion is visible
    // Stage 0 is untouched.
    #expect(maxAbs(a.stageOutputs[0], b.stageOutputs[0]) == 0)
}

@Test("Removing a shape-changing block leaves exactly the shortcut P(Y)")
func removalOfDownsamplingBlockIsShortcut() throws {
    let c0 = Checkpoint(network: withInput(smallNet([2, 2, 2])))
    let (c1, _) = try Surgery.remove(c0, blocks: [BlockID(stage: 2, block: 0)])
    let x = input(seed: 5)
    let r = forward(c1.network, x)
    let y = r.blockInputs[2][0]
    #expect(maxAbs(r.blockInputs[2][1], shortcut(y, c1.network.stages[2].blocks[0])) == 0)
    // The padded channels are zero, the input channels sit at offset (Cout − Cin)/2 = 4.
    #expect(r.blockInputs[2][1][0].joined().allSatisfy { $0 == 0 })
    #expect(r.blockInputs[2][1][4][0][0] == y[0][0][0])
}

/// The interpolation policies of issue 17, as (first block, h policy).
private let interpolationPolicies: [(String, Surgery.FirstBlockPolicy, Surgery.StepPolicy)] = [
    ("paper", .auto, .halve), ("preserve", .auto, .preserve),
    ("identity", .identity, .halve), ("identity+preserve", .identity, .preserve),
]

@Test("On a stage whose block 0 changes shape, preserve and identity change the logits at second order in h; the paper's rule at first order")
func functionPreservingInterpolationOrder() throws {
    func change(_ h: Double, _ first: Surgery.FirstBlockPolicy, _ policy: Surgery.StepPolicy) throws -> Double {
        let (c0, _) = try Surgery.setH(Checkpoint(network: withInput(smallNet([2, 2, 2]))), h: h)
        let (c1, _) = try Surgery.interpolate(c0, stages: [1], firstBlock: first, hPolicy: policy)
        var worst = 0.0
        for seed in UInt64(8)...9 {
            let x = input(seed: seed)
            worst = max(worst, relChange(forward(c0.network, x).logits, forward(c1.network, x).logits))
        }
        return worst
    }
    var atSmallestH: [String: Double] = [:]
    for (name, first, policy) in interpolationPolicies {
        let c = try [0.1, 0.05, 0.025].map { try change($0, first, policy) }
        print("\(name): logit change at h = 0.1, 0.05, 0.025: \(c.map { String(format: "%.2e", $0) })"
              + String(format: "; ratios %.2f %.2f", c[0] / c[1], c[1] / c[2]))
        #expect(c[2] > 0, "\(name) is not a no-op: the discretisation changed")
        if name == "paper" {
            // P + h/2·F0 + 3h/2·F1 instead of P + h·F0 + h·F1: halving h halves the change.
            #expect(c[0] / c[1] > 1.6 && c[0] / c[1] < 2.6 && c[1] / c[2] > 1.8 && c[1] / c[2] < 2.3, "\(name)")
        } else {
            // Every old block keeps its total step: halving h quarters the change.
            #expect(c[0] / c[1] > 3.4 && c[0] / c[1] < 4.6 && c[1] / c[2] > 3.5 && c[1] / c[2] < 4.5, "\(name)")
        }
        atSmallestH[name] = c[2]
    }
    for name in ["preserve", "identity", "identity+preserve"] {
        #expect(atSmallestH[name]! < atSmallestH["paper"]! / 5, "\(name) is closer than the paper's rule at small h")
    }
}

@Test("--first-block identity on a stage whose only block changes shape: block 0 keeps h, the function is unchanged exactly")
func identityFirstBlockSingleBlockStage() throws {
    let (c0, _) = try Surgery.setH(Checkpoint(network: withInput(smallNet([1, 1, 1]))), h: 0.3)
    let (c1, plan) = try Surgery.interpolate(c0, firstBlock: .identity)
    #expect(c1.network.stepSizes == [[0.15, 0.15], [0.3, 0.15], [0.3, 0.15]])
    #expect(plan.stages[1].blocks.map(\.kind) == [.kept, .identity])
    // Stage 0 (block 0 keeps its shape) is split into two half steps as usual: not exact, so
    // compare the input of stage 1 onwards through a network interpolated in stages 1, 2 only.
    let (c2, _) = try Surgery.interpolate(c0, stages: [1, 2], firstBlock: .identity)
    for seed in UInt64(1)...2 {
        let x = input(seed: seed)
        #expect(forward(c0.network, x).logits == forward(c2.network, x).logits)
    }
}
