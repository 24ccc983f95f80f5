import Testing
import Foundation
@testable import MLResModel

/// The expected source of new block k after one interpolation of a stage with n blocks, written
/// out independently of the implementation: new 2i and 2i+1 come from old i, except new block 1
/// of a stage whose block 0 changes shape, which comes from old block 1 (Appendix B).
private func expectedSource(stage s: Int, newBlock k: Int, block0ChangesShape: Bool) -> Int {
    if k == 1 && block0ChangesShape { return 1 }
    return k / 2
}

/// Checks every tensor and momentum buffer of `new` against its expected source in `old`.
private func checkMapping(old: Checkpoint, new: Checkpoint, sourceLog: inout [[Int]]) {
    sourceLog = []
    for (s, stage) in new.network.stages.enumerated() {
        var srcs: [Int] = []
        let b0Changes = s > 0   // the paper's nets: block 0 of every later stage has stride 2
        for k in stage.blocks.indices {
            let src = expectedSource(stage: s, newBlock: k, block0ChangesShape: b0Changes)
            srcs.append(src)
            for name in blockTensorNames {
                let got = new.network.tensor(at: blockPath(s, k, name))
                let want = old.network.tensor(at: blockPath(s, src, name))
                #expect(got != nil && got == want, "\(blockPath(s, k, name)) should equal old block \(s).\(src)")
            }
            for name in trainableBlockTensorNames {
                let got = new.optimizer?.buffers[blockPath(s, k, name)]
                let want = old.optimizer?.buffers[blockPath(s, src, name)]
                #expect(got != nil && got == want, "momentum \(blockPath(s, k, name)) should follow old block \(s).\(src)")
            }
            let block = stage.blocks[k]
            #expect(block.h == old.network.stages[s].blocks[k / 2].h / 2)
            #expect(block.origin == (k % 2 == 0 ? old.network.stages[s].blocks[k / 2].origin
                                                 : "copy:stages/\(s)/blocks/\(src)"))
        }
        sourceLog.append(srcs)
    }
    // Nothing outside the blocks changes.
    for path in ["model/stem/conv/weight", "model/head/bn/running_var", "model/head/fc/weight", "model/head/fc/bias"] {
        #expect(new.network.tensor(at: path) == old.network.tensor(at: path))
        if !path.contains("running") { #expect(new.optimizer?.buffers[path] == old.optimizer?.buffers[path]) }
    }
    #expect(new.optimizer?.buffers.count == new.network.trainablePaths.count)
    #expect(Set(new.optimizer?.buffers.keys.map { $0 } ?? []) == Set(new.network.trainablePaths))
}

@Test("ResNet-14 2-2-2 → 4-4-4 → 8-8-8: tensor-by-tensor mapping, h, Σh, Table 5 counts, lineage")
func interpolateTwice() throws {
    var c0 = surgeryFixture([2, 2, 2])
    c0.createdBy = "mlres 0.0.1"; c0.createdAt = "2026-01-01T00:00:00Z"
    let (c1, plan1) = try Surgery.interpolate(c0, parentSHA256: "aa")
    #expect(c1.network.stageBlocks == [4, 4, 4])
    #expect(c1.createdBy == nil && c1.createdAt == nil)   // a new file: the writer stamps it
    var log: [[Int]] = []
    checkMapping(old: c0, new: c1, sourceLog: &log)
    // Appendix B: stage 0 copies block 0 into slot 1; stages 1 and 2 copy block 1.
    #expect(log == [[0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])
    #expect(c1.network.stepSizes.allSatisfy { $0.allSatisfy { $0 == 0.5 } })
    #expect(c1.network.parameterCount == Architecture(blocks: [4, 4, 4]).parameterCount)
    #expect(plan1.parameterCountAfter == c1.network.parameterCount)
    #expect(plan1.stages[1].rule.contains("Appendix B"))
    #expect(plan1.stages[0].blocks.map(\.source) == [0, 0, 1, 1])
    #expect(plan1.stages[2].blocks.map(\.source) == [0, 1, 1, 1])

    let (c2, _) = try Surgery.interpolate(c1, parentSHA256: "bb")
    #expect(c2.network.stageBlocks == [8, 8, 8])
    checkMapping(old: c1, new: c2, sourceLog: &log)
    #expect(c2.network.stepSizes.allSatisfy { $0.allSatisfy { $0 == 0.25 } })
    #expect(c2.network.parameterCount == 755_802)   // ResNet-50, the paper's Table 5
    for s in 0..<3 {
        #expect(c0.network.stages[s].totalTime == 2)
        #expect(c1.network.stages[s].totalTime == 2)
        #expect(c2.network.stages[s].totalTime == 2)
    }
    #expect(c2.lineage.map(\.op) == ["init", "interpolate", "interpolate"])
    #expect(c2.lineage.map(\.parentSHA256) == [nil, "aa", "bb"])
    #expect(c2.lineage[2].args["first_block"] == .string("auto"))
    #expect(c2.lineage[2].args["blocks_after"] == .string("8-8-8"))
    #expect(c2.lineage[2].args["identity_seed"] == .int(0))
    // The input value is untouched (value semantics).
    #expect(c0.network == surgeryFixture([2, 2, 2]).network)  // (lineage time stamps differ)
}

@Test("Plan text shows old→new with sources and h before/after; JSON parses")
func interpolatePlanOutput() throws {
    let (_, plan) = try Surgery.interpolate(surgeryFixture([3, 3, 3]), stages: [1])
    let text = plan.text
    #expect(text.contains("3-3-3 → 3-6-3"))
    for row in ["0→0'", "1→1'", "1→2'", "1→3'", "2→4'", "2→5'"] { #expect(text.contains(row), "\(row)") }
    #expect(text.contains("h 1 → 0.5"))
    let json = try JSONSerialization.jsonObject(with: Data(plan.jsonText.utf8)) as? [String: Any]
    #expect(json?["op"] as? String == "interpolate")
    #expect(json?["blocks_after"] as? [Int] == [3, 6, 3])
}

@Test("--first-block next / self, --h-policy keep, selected stages, reset optimizer")
func interpolatePolicies() throws {
    let c0 = surgeryFixture([3, 3, 3])
    let (n, _) = try Surgery.interpolate(c0, firstBlock: .next)
    #expect(n.network.stages[0].blocks[1].conv1 == c0.network.stages[0].blocks[1].conv1)   // from old 1
    #expect(n.network.stages[0].blocks[1].origin == "copy:stages/0/blocks/1")
    #expect(n.network.stages[2].blocks[1].conv2 == c0.network.stages[2].blocks[1].conv2)

    #expect(throws: SurgeryError.cannotCopyShapeChangingBlock(BlockID(stage: 1, block: 0))) {
        try Surgery.interpolate(c0, firstBlock: .own)
    }
    let (own, _) = try Surgery.interpolate(c0, stages: [0], firstBlock: .own)
    #expect(own.network.stages[0].blocks[1].conv1 == c0.network.stages[0].blocks[0].conv1)
    #expect(own.network.stageBlocks == [6, 3, 3])
    #expect(own.network.stages[1] == c0.network.stages[1])

    let (keep, _) = try Surgery.interpolate(c0, stages: [2], hPolicy: .keep)
    #expect(keep.network.stages[2].totalTime == 6)
    #expect(keep.network.stages[2].blocks.allSatisfy { $0.h == 1 })

    let (reset, plan) = try Surgery.interpolate(c0, resetOptimizer: true)
    #expect(reset.optimizer == nil)
    #expect(plan.optimizer == .dropped)

    #expect(throws: SurgeryError.unknownStage(3, stages: 3)) { try Surgery.interpolate(c0, stages: [3]) }
    #expect(throws: SurgeryError.duplicateStage(1)) { try Surgery.interpolate(c0, stages: [1, 1]) }
    #expect(throws: SurgeryError.emptySelection("the list of stages")) { try Surgery.interpolate(c0, stages: []) }
    // A (non-v1) network with a shape-changing block inside a stage cannot be interpolated there.
    var odd = c0
    odd.network.stages[1].blocks[2].stride = 2
    #expect(throws: SurgeryError.shapeChangeInsideStage(BlockID(stage: 1, block: 2))) { try Surgery.interpolate(odd) }
    #expect(try Surgery.interpolate(odd, stages: [0, 2]).0.network.stageBlocks == [6, 3, 6])
}

@Test("A stage whose only block changes shape gets a fresh exact-identity block 1")
func interpolateSingleBlockStages() throws {
    let c0 = surgeryFixture([1, 1, 1])
    let (c1, plan) = try Surgery.interpolate(c0)
    #expect(c1.network.stageBlocks == [2, 2, 2])
    // Stage 0's block 0 keeps its shape: a plain copy.
    #expect(c1.network.stages[0].blocks[1].conv1 == c0.network.stages[0].blocks[0].conv1)
    for s in 1...2 {
        let w = c0.network.stages[s].width
        let fresh = c1.network.stages[s].blocks[1]
        #expect(fresh.stride == 1 && fresh.inChannels == w && fresh.outChannels == w)
        #expect(fresh.conv2.shape == [w, w, 3, 3] && fresh.conv2.data.allSatisfy { $0 == 0 })  // F ≡ 0
        #expect(fresh.bn1 == BatchNorm(channels: w) && fresh.bn2 == BatchNorm(channels: w))
        #expect(fresh.conv1.data.contains { $0 != 0 })
        #expect(fresh.h == 0.5 && c1.network.stages[s].totalTime == 1)
        #expect(fresh.origin.hasPrefix("identity"))
        #expect(plan.stages[s].blocks[1].kind == .identity)
        #expect(plan.stages[s].rule.contains("identity"))
        // Momentum: zero buffers for the fresh block's trainable tensors.
        for name in trainableBlockTensorNames {
            let m = c1.optimizer?.buffers[blockPath(s, 1, name)]
            #expect(m != nil && m!.data.allSatisfy { $0 == 0 })
        }
        // Old block 0 stays at 0 with all its momentum.
        #expect(c1.optimizer?.buffers[blockPath(s, 0, "conv1/weight")] == c0.optimizer?.buffers[blockPath(s, 0, "conv1/weight")])
    }
    // He-normal scale and seed reproducibility.
    let conv1 = c1.network.stages[2].blocks[1].conv1.data.map(Double.init)
    let std = (conv1.map { $0 * $0 }.reduce(0, +) / Double(conv1.count)).squareRoot()
    #expect(abs(std - (2.0 / (64 * 9)).squareRoot()) < 0.005)
    let (again, _) = try Surgery.interpolate(c0)
    #expect(again.network == c1.network)
    let (other, _) = try Surgery.interpolate(c0, identitySeed: 5)
    #expect(other.network.stages[1].blocks[1].conv1 != c1.network.stages[1].blocks[1].conv1)
    #expect(c1.network.parameterCount == Architecture(blocks: [2, 2, 2]).parameterCount)
}

@Test("Interpolating a WResNet-122 in memory is fast")
func interpolateWResNet122Speed() throws {
    // Constant-valued tensors of the right shapes and zero momentum buffers (one per trainable
    // tensor): the values do not matter for the cost, and random init is slow in debug builds.
    let net = Network(zeros: Architecture(.wresnet122))
    let buffers = Dictionary(uniqueKeysWithValues: net.namedTensors.filter(\.trainable).map {
        ($0.path, Tensor(shape: $0.tensor.shape))
    })
    let c0 = Checkpoint(network: net, optimizer: OptimizerState(buffers: buffers))
    #expect(c0.network.parameterCount == 7_669_418)
    let clock = ContinuousClock()
    var out: (Checkpoint, InterpolationPlan)? = nil
    let elapsed = try clock.measure { out = try Surgery.interpolate(c0) }
    #expect(out?.0.network.stageBlocks == [40, 40, 40])
    #expect(out?.0.optimizer?.buffers.count == out?.0.network.trainablePaths.count)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    print("interpolate WResNet-122 (7,669,418 parameters + momentum) in memory: \(String(format: "%.4f", seconds)) s")
    #expect(seconds < 1.0)
}
