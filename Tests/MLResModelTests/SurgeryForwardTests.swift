import Testing
import Foundation
@testable import MLResModel
import MLResTestSupport

// The dynamical-systems claims behind surgery, checked with the shared float64 reference
// forward pass (Ref, inference mode: BN uses running statistics). It is independent of the
// engine; its only job is to evaluate Y_{j+1} = P(Y_j) + h_j·F_j(Y_j) literally.

/// Logits of one image (standardised as the network says), plus the input Y_j of every block
/// (by stage, block) for inspection.
private func forward(_ net: Network, _ x: Array64) -> (logits: [Double], blockInputs: [[Array64]]) {
    var inputs: [[Array64]] = net.stages.map { _ in [] }
    let z = Ref.forward(net, Ref.standardised(net, pixels: x.v, count: 1)) { id, y, _ in inputs[id.stage].append(y) }
    return (z.v, inputs)
}

/// One 3x8x8 image of pixels in [0, 1).
private func input(seed: UInt64) -> Array64 {
    var rng = SplitMix64(seed: seed)
    return Array64([1, 3, 8, 8], (0..<(3 * 8 * 8)).map { _ in rng.nextUnit() })
}

/// A small trained-looking net: 3x8x8 input, widths 4-8-16, random BN statistics.
private func smallNet(_ blocks: [Int]) -> Network {
    surgeryFixture(blocks, widths: [4, 8, 16], seed: 21, momentum: false).network
}

private func relChange(_ a: [Double], _ b: [Double]) -> Double {
    guard a.count == b.count, !a.isEmpty else { return .infinity }
    let num = zip(a, b).map { ($1 - $0) * ($1 - $0) }.reduce(0, +).squareRoot()
    return num / a.map { $0 * $0 }.reduce(0, +).squareRoot()
}

private func maxAbs(_ a: Array64, _ b: Array64) -> Double { a.maxAbsDifference(b) }

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
    let step = a.blockInputs[1][2] - yj                 // Y_2 − Y_1 in the original
    let hF = blk.h * Ref.residual(yj, blk, eps: c0.network.bnEpsilon)
    #expect(maxAbs(step, hF) < 1e-12)
    #expect(maxAbs(b.blockInputs[1][1], a.blockInputs[1][2]) > 1e-3)   // the lesion is visible
    // Stage 0 is untouched: its output, stage 1's first input, is the same.
    #expect(maxAbs(a.blockInputs[1][0], b.blockInputs[1][0]) == 0)
}

@Test("Removing a shape-changing block leaves exactly the shortcut P(Y)")
func removalOfDownsamplingBlockIsShortcut() throws {
    let c0 = Checkpoint(network: withInput(smallNet([2, 2, 2])))
    let (c1, _) = try Surgery.remove(c0, blocks: [BlockID(stage: 2, block: 0)])
    let x = input(seed: 5)
    let r = forward(c1.network, x)
    let y = r.blockInputs[2][0]
    #expect(maxAbs(r.blockInputs[2][1], Ref.shortcut(y, c1.network.stages[2].blocks[0])) == 0)
    // The padded channels are zero, the input channels sit at offset (Cout − Cin)/2 = 4.
    #expect(r.blockInputs[2][1].plane(0, 0).allSatisfy { $0 == 0 })
    #expect(r.blockInputs[2][1][0, 4, 0, 0] == y[0, 0, 0, 0])
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
