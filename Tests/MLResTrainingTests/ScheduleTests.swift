import Foundation
import Testing
@testable import MLResData
@testable import MLResTraining

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

@Test("Multi-level schedule, 160 epochs interpolated at 60 and 110: cycles, steps, restarts")
func multiLevelMapping() throws {
    let spe = 500  // 50,000 images / batch 100
    let s = try MultiLevelSchedule(totalEpochs: 160, stepsPerEpoch: spe, boundaries: [60, 110])
    #expect(s.cycleCount == 3 && s.totalSteps == 80_000)
    #expect(s.cycleStartEpochs == [0, 60, 110] && s.cycleEndEpochs == [60, 110, 160] && s.cycleEpochs == [60, 50, 50])
    #expect([0, 59, 60, 109, 110, 159].map { s.cycle(ofEpoch: $0) } == [0, 0, 1, 1, 2, 2])
    #expect((1 ... 160).filter { s.endsCycle(afterEpochs: $0) } == [60, 110, 160])
    #expect((1 ... 160).filter { s.isBoundary(afterEpochs: $0) } == [60, 110])

    let p0 = s.position(ofStep: 0)
    #expect(p0 == .init(globalStep: 0, epoch: 0, stepInEpoch: 0, cycle: 0, stepInCycle: 0, cycleSteps: 30_000, lr: 0.5))
    let pEnd0 = s.position(ofStep: 29_999)
    #expect(pEnd0.cycle == 0 && pEnd0.epoch == 59 && pEnd0.stepInEpoch == 499 && pEnd0.stepInCycle == 29_999)
    #expect(abs(pEnd0.lr - referenceLR(29_999, 30_000)) < 1e-15 && pEnd0.lr < 0.00101)
    // Restart at the boundary: back to lr_max, with the new cycle's length.
    let p1 = s.position(ofStep: 30_000)
    #expect(p1 == .init(globalStep: 30_000, epoch: 60, stepInEpoch: 0, cycle: 1, stepInCycle: 0, cycleSteps: 25_000, lr: 0.5))
    let mid1 = s.position(ofStep: 30_000 + 12_500)
    #expect(mid1.epoch == 85 && abs(mid1.lr - 0.2505) < 1e-15)
    let p2 = s.position(ofStep: 55_000)
    #expect(p2.cycle == 2 && p2.stepInCycle == 0 && p2.lr == 0.5 && p2.epoch == 110)
    let last = s.position(ofStep: 79_999)
    #expect(last.cycle == 2 && last.stepInCycle == 24_999 && last.epoch == 159 && abs(last.lr - referenceLR(24_999, 25_000)) < 1e-15)
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
    let one = try MultiLevelSchedule(totalEpochs: 10, stepsPerEpoch: 3, boundaries: [])
    #expect(abs(one.position(ofStep: 15).lr - referenceLR(15, 30)) < 1e-15)
    #expect(one.cycleEndEpochs == [10])
}

@Test("Schedule errors name the flag")
func scheduleErrors() {
    #expect(message { try MultiLevelSchedule(totalEpochs: 160, stepsPerEpoch: 5, boundaries: [60, 160]) }
        .contains("--interpolate-at 160: each epoch must be between 1 and 159"))
    #expect(message { try MultiLevelSchedule(totalEpochs: 160, stepsPerEpoch: 5, boundaries: [110, 60], flag: "--restart-at") }
        .contains("--restart-at must be strictly increasing, got 110,60"))
    #expect(message { try MultiLevelSchedule(totalEpochs: 0, stepsPerEpoch: 5, boundaries: []) }.contains("--epochs"))
    #expect(message { try MultiLevelSchedule(totalEpochs: 5, stepsPerEpoch: 5, boundaries: [],
                                             cosine: CosineCycle(lrMax: 0.1, lrMin: 0.2)) }.contains("lr_min"))
}

@Test("Resume after surgery: a new cycle from that epoch; flag parsing")
func newCycleAndParsing() throws {
    let s = try MultiLevelSchedule(totalEpochs: 160, stepsPerEpoch: 10, boundaries: [60, 110])
    let r = try s.withNewCycle(afterEpochs: 80)
    #expect(r.boundaries == [60, 80, 110] && r.position(ofStep: 800).lr == 0.5 && r.position(ofStep: 800).cycleSteps == 300)
    #expect(try s.withNewCycle(afterEpochs: 60) == s)
    let longer = try s.withNewCycle(afterEpochs: 160, totalEpochs: 200)
    #expect(longer.boundaries == [60, 110, 160] && longer.position(ofStep: 1600).cycle == 3)
    #expect(message { try s.withNewCycle(afterEpochs: 160) }.contains("nothing left to train"))
    #expect(try MultiLevelSchedule.parseEpochs("60, 110", flag: "--interpolate-at") == [60, 110])
    #expect(try MultiLevelSchedule.parseEpochs("", flag: "--restart-at") == [])
    #expect(message { try MultiLevelSchedule.parseEpochs("60,x", flag: "--restart-at") }.contains("--restart-at 60,x: \"x\""))
}

@Test("Table 2 theory: cost ∝ blocks × epochs")
func timeRatio() throws {
    // Three equal cycles doubling the depth: 7/12 of the last-cycle cost, the paper's 42% saving.
    #expect(abs(TrainingCost.multiLevelRatio(blocks: [6, 12, 24], epochs: [10, 10, 10]) - 7.0 / 12) < 1e-15)
    let s = try MultiLevelSchedule(totalEpochs: 160, stepsPerEpoch: 500, boundaries: [60, 110])
    #expect(abs(TrainingCost.theoreticalSaving(s, initialBlocks: 6) - (1 - 2160.0 / 3840)) < 1e-15)
    #expect(TrainingCost.multiLevelRatio(blocks: [24], epochs: [160]) == 1)
    #expect(TrainingCost.doublingBlocks(initial: 6, cycles: 3) == [6, 12, 24])
}
