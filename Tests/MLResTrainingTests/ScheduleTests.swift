import Foundation
import Testing
@testable import MLResData
@testable import MLResTraining
import MLResCLI

/// Independent float64 form of the cosine cycle: η_min + (η_max − η_min)·cos²(πt / 2T),
/// equal to η_min + ½(η_max − η_min)(1 + cos(πt/T)) by the half-angle identity.
func referenceLR(_ t: Int, _ T: Int, max: Double = 0.5, min: Double = 0.001) -> Double {
    let c = cos(Double.pi * Double(t) / (2 * Double(T)))
    return min + (max - min) * c * c
}

@Test("Cosine cycle: starts at lr_max, half way at the mean, ends at lr_min, decreasing")
func cosineValues() {
    let cyc = CosineCycle()
    #expect(cyc.lrMax == 0.5 && cyc.lrMin == 0.001)
    let T = 1000
    #expect(cyc.lr(step: 0, of: T) == 0.5)
    #expect(abs(cyc.lr(step: 500, of: T) - (0.5 + 0.001) / 2) < 1e-15)
    #expect(abs(cyc.lr(step: T, of: T) - 0.001) < 1e-15)
    var prev = Double.infinity
    for t in 0 ... T {
        let v = cyc.lr(step: t, of: T)
        #expect(abs(v - referenceLR(t, T)) < 1e-14)
        #expect(v < prev); prev = v
    }
    let other = CosineCycle(lrMax: 0.1, lrMin: 0)
    #expect(abs(other.lr(step: 250, of: 1000) - referenceLR(250, 1000, max: 0.1, min: 0)) < 1e-15)
}

@Test("Cycle plan, 160 epochs interpolated at 60 and 110: cycles, steps, restarts")
func multiLevelMapping() throws {
    let spe = 500  // 50,000 images / batch 100
    let s = try CyclePlan(epochs: 160, stepsPerEpoch: spe, boundaries: [60, 110])
    #expect(s.starts == [0, 30_000, 55_000] && s.totalSteps == 80_000)
    let epochOf = { (step: Int) in step / spe }
    // Cycle of the first step of each epoch, and the epochs after which a cycle ends.
    #expect([0, 59, 60, 109, 110, 159].map { s.position(ofStep: $0 * spe).cycle } == [0, 0, 1, 1, 2, 2])
    #expect((1 ... 160).filter { s.endsCycle(afterSteps: $0 * spe) } == [60, 110, 160])

    let p0 = s.position(ofStep: 0)
    #expect(p0 == .init(cycle: 0, stepInCycle: 0, cycleSteps: 30_000, lr: 0.5))
    let pEnd0 = s.position(ofStep: 29_999)
    #expect(pEnd0.cycle == 0 && epochOf(29_999) == 59 && 29_999 % spe == 499 && pEnd0.stepInCycle == 29_999)
    #expect(abs(pEnd0.lr - referenceLR(29_999, 30_000)) < 1e-15 && pEnd0.lr < 0.00101)
    // Restart at the boundary: back to lr_max, with the new cycle's length.
    let p1 = s.position(ofStep: 30_000)
    #expect(p1 == .init(cycle: 1, stepInCycle: 0, cycleSteps: 25_000, lr: 0.5) && epochOf(30_000) == 60)
    let mid1 = s.position(ofStep: 30_000 + 12_500)
    #expect(epochOf(42_500) == 85 && abs(mid1.lr - 0.2505) < 1e-15)
    let p2 = s.position(ofStep: 55_000)
    #expect(p2.cycle == 2 && p2.stepInCycle == 0 && p2.lr == 0.5 && epochOf(55_000) == 110)
    let last = s.position(ofStep: 79_999)
    #expect(last.cycle == 2 && last.stepInCycle == 24_999 && epochOf(79_999) == 159 && abs(last.lr - referenceLR(24_999, 25_000)) < 1e-15)
    // Every step against the float64 reference.
    var maxErr = 0.0
    for step in stride(from: 0, to: 80_000, by: 7) {
        let p = s.position(ofStep: step)
        let (start, len) = step < 30_000 ? (0, 30_000) : step < 55_000 ? (30_000, 25_000) : (55_000, 25_000)
        maxErr = max(maxErr, abs(p.lr - referenceLR(step - start, len)))
        #expect(p.stepInCycle == step - start && p.cycleSteps == len)
    }
    #expect(maxErr < 1e-14)
    // Without boundaries it is one cycle over the whole run.
    let one = try CyclePlan(epochs: 10, stepsPerEpoch: 3, boundaries: [])
    #expect(abs(one.position(ofStep: 15).lr - referenceLR(15, 30)) < 1e-15)
    #expect(one.starts == [0] && (1 ... 30).filter { one.endsCycle(afterSteps: $0) } == [30])
}

@Test("Schedule errors name the flag and say what is allowed")
func scheduleErrors() {
    #expect(message { try CyclePlan.checkBoundaries([60, 160], epochs: 160, flag: "--interpolate-at") }
        .contains("--interpolate-at 160: a new cycle can start only after epoch 1 ... 159 of --epochs 160"))
    #expect(message { try CyclePlan.checkBoundaries([1], epochs: 1, flag: "--interpolate-at") }
        .contains("--interpolate-at 1: --epochs 1 has no place for it"))
    #expect(message { try CyclePlan.checkBoundaries([1], epochs: 1, flag: "--interpolate-at") }.contains("--epochs 2 or more"))
    #expect(message { try CyclePlan.checkBoundaries([110, 60], epochs: 160, flag: "--restart-at") }
        .contains("--restart-at must be strictly increasing, got 110,60"))
    #expect(message { try CyclePlan(epochs: 0, stepsPerEpoch: 5, boundaries: []) }.contains("--epochs"))
    #expect(message { try CyclePlan(epochs: 5, stepsPerEpoch: 5, boundaries: [],
                                    cosine: CosineCycle(lrMax: 0.1, lrMin: 0.2)) }.contains("lr_min"))
}

@Test("Resume after surgery: a new cycle from that step; list flag parsing")
func newCycleAndParsing() throws {
    let s = try CyclePlan(epochs: 160, stepsPerEpoch: 10, boundaries: [60, 110])
    let r = s.adding(starts: [800])
    #expect(r.starts == [0, 600, 800, 1100] && r.position(ofStep: 800).lr == 0.5 && r.position(ofStep: 800).cycleSteps == 300)
    #expect(s.adding(starts: [600]) == s)
    let longer = try CyclePlan(epochs: 200, stepsPerEpoch: 10, boundaries: [60, 110]).adding(starts: [1600])
    #expect(longer.starts == [0, 600, 1100, 1600] && longer.position(ofStep: 1600).cycle == 3)
    #expect(try integerList("60, 110", flag: "--interpolate-at") == [60, 110])
    #expect(try integerList("", flag: "--restart-at", allowEmpty: true) == [])
    #expect(try integerList("2-2-2", separator: "-", flag: "--blocks") == [2, 2, 2])
    #expect(message { try integerList("60,x", flag: "--restart-at") }.contains("--restart-at 60,x: 'x'"))
    #expect(message { try integerList("2-0", separator: "-", flag: "--blocks") }.contains("--blocks 2-0: '0' is not a positive"))
}

@Test("Table 2 theory: cost ∝ blocks × epochs")
func timeRatio() throws {
    // Three equal cycles doubling the depth: 7/12 of the last-cycle cost, the paper's 42% saving.
    #expect(abs(TrainingCost.multiLevelRatio(blocks: [6, 12, 24], epochs: [10, 10, 10]) - 7.0 / 12) < 1e-15)
    #expect(abs(1 - TrainingCost.multiLevelRatio(blocks: TrainingCost.doublingBlocks(initial: 6, cycles: 3),
                                                 epochs: [60, 50, 50]) - (1 - 2160.0 / 3840)) < 1e-15)
    #expect(TrainingCost.multiLevelRatio(blocks: [24], epochs: [160]) == 1)
    #expect(TrainingCost.doublingBlocks(initial: 6, cycles: 3) == [6, 12, 24])
}
