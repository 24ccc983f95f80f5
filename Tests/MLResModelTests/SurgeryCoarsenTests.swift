import Testing
import Foundation
@testable import MLResModel

// Issue 17: coarsening (the inverse of interpolation) and the function-preserving
// interpolation policies, checked on their tensors, step sizes, plans and lineage.
// (Their effect on the function is checked by the float64 forward in SurgeryForwardTests.)

@Test("coarsen(interpolate(x)) == x bit for bit (paper's rule, uniform h, optimizer included)",
      arguments: [[2, 2, 2], [1, 3, 2], [1, 1, 1]])
func coarsenUndoesInterpolation(blocks: [Int]) throws {
    let (x, _) = try Surgery.setH(surgeryFixture(blocks), h: 0.3)
    let (up, _) = try Surgery.interpolate(x)
    #expect(up.network.stageBlocks == blocks.map { 2 * $0 })
    let (back, plan) = try Surgery.coarsen(up, merge: .keep)
    #expect(back.network == x.network)
    #expect(back.optimizer == x.optimizer)
    #expect(plan.blocksBefore == blocks.map { 2 * $0 } && plan.blocksAfter == blocks)
    #expect(plan.stages.allSatisfy { abs($0.totalTimeBefore - $0.totalTimeAfter) < 1e-12 })   // sums of different terms
    // average of the two identical copies is the same values (origins aside).
    let (avg, _) = try Surgery.coarsen(up, merge: .average)
    #expect(avg.network.stepSizes == x.network.stepSizes)
    for (a, b) in zip(avg.network.namedTensors, x.network.namedTensors) {
        #expect(a.path == b.path && a.tensor == b.tensor, "\(a.path)")
    }
    if blocks == [2, 2, 2] {
        #expect(avg.network.stages[0].blocks[0].origin == "average:stages/0/blocks/0,stages/0/blocks/1")
        #expect(avg.optimizer == x.optimizer)   // identical buffers averaged
    }
}

@Test("coarsen --merge average: each merged block is the mean of its pair; a shape-changing block 0 is kept")
func coarsenAverage() throws {
    let c0 = surgeryFixture([2, 4, 2])
    let (c1, plan) = try Surgery.coarsen(c0, merge: .average, parentSHA256: "ab")
    #expect(c1.network.stageBlocks == [1, 2, 1])
    func close(_ got: Tensor?, _ a: Tensor?, _ b: Tensor?) -> Bool {
        guard let got, let a, let b, got.count == a.count, a.count == b.count, got.count > 0 else { return false }
        for k in got.data.indices {
            let want: Double = (Double(a.data[k]) + Double(b.data[k])) / 2
            let g = Double(got.data[k])
            if abs(g - want) > 1e-7 * max(1.0, abs(g)) { return false }
        }
        return true
    }
    // Stage 0 pair (0,1) and stage 1 pair (2,3): means of parameters, statistics and momentum.
    for (s, newB, a, b) in [(0, 0, 0, 1), (1, 1, 2, 3)] {
        for name in blockTensorNames {
            #expect(close(c1.network.tensor(at: blockPath(s, newB, name)),
                          c0.network.tensor(at: blockPath(s, a, name)), c0.network.tensor(at: blockPath(s, b, name))),
                    "\(blockPath(s, newB, name))")
        }
        for name in trainableBlockTensorNames {
            #expect(close(c1.optimizer?.buffers[blockPath(s, newB, name)],
                          c0.optimizer?.buffers[blockPath(s, a, name)], c0.optimizer?.buffers[blockPath(s, b, name)]))
        }
        #expect(c1.network.stages[s].blocks[newB].h == 2)
    }
    // Stage 1 and 2 block 0 changes shape: kept as it is, h summed.
    for s in [1, 2] {
        var kept = c0.network.stages[s].blocks[0]
        kept.h = 2
        #expect(c1.network.stages[s].blocks[0] == kept)
        #expect(plan.stages[s].pairs[0].rule == .keptShapeChanging)
        for name in trainableBlockTensorNames {
            #expect(c1.optimizer?.buffers[blockPath(s, 0, name)] == c0.optimizer?.buffers[blockPath(s, 0, name)])
        }
    }
    #expect(plan.stages[0].pairs.map(\.rule) == [.averaged])
    #expect(Set(c1.optimizer!.buffers.keys) == Set(c1.network.trainablePaths))
    #expect(c1.network.parameterCount == Architecture(blocks: [1, 2, 1]).parameterCount)
    // Lineage and plan.
    let e = try #require(c1.lineage.last)
    #expect(e.kind == .coarsen && e.op == "coarsen" && e.parentSHA256 == "ab")
    #expect(e.args["merge"] == .string("average") && e.args["stages"] == .array([.int(0), .int(1), .int(2)]))
    #expect(e.args["blocks_before"] == .string("2-4-2") && e.args["blocks_after"] == .string("1-2-1"))
    #expect(c0.lineage.count + 1 == c1.lineage.count)
    let json = try JSONSerialization.jsonObject(with: Data(plan.jsonText.utf8)) as? [String: Any]
    #expect(json?["op"] as? String == "coarsen" && json?["merge"] as? String == "average")
    #expect(json?["optimizer"] as? String == "momentum remapped")
    #expect(plan.text.contains("2-4-2 → 1-2-1"))
}

@Test("coarsen of chosen stages leaves the others untouched; --reset-optimizer drops the state")
func coarsenChosenStages() throws {
    let c0 = surgeryFixture([3, 2, 4])
    let (c1, plan) = try Surgery.coarsen(c0, stages: [2], resetOptimizer: true)
    #expect(c1.network.stageBlocks == [3, 2, 2])
    #expect(c1.network.stages[0] == c0.network.stages[0] && c1.network.stages[1] == c0.network.stages[1])
    #expect(c1.network.stages[2].blocks.map(\.h) == [2, 2])
    #expect(c1.network.stages[2].blocks[1].conv2 == c0.network.stages[2].blocks[2].conv2)
    #expect(c1.optimizer == nil && plan.optimizer == .dropped)
    #expect(!plan.stages[0].coarsened && plan.stages[2].coarsened)
}

@Test("coarsen refusals: odd block count, a shape-changing block merged away, bad stage lists")
func coarsenRefusals() throws {
    let c0 = surgeryFixture([3, 2, 2])
    #expect(throws: SurgeryError.oddBlockCount(stage: 0, blocks: 3)) { try Surgery.coarsen(c0) }
    #expect(throws: SurgeryError.unknownStage(3, stages: 3)) { try Surgery.coarsen(c0, stages: [3]) }
    #expect(throws: SurgeryError.duplicateStage(1)) { try Surgery.coarsen(c0, stages: [1, 1]) }
    #expect(throws: SurgeryError.emptySelection("the list of stages")) { try Surgery.coarsen(c0, stages: []) }
    // A network whose block 1 changes shape (not format v1, but a value surgery may be handed).
    var odd = surgeryFixture([2, 2, 2])
    odd.network.stages[1].blocks.swapAt(0, 1)
    for merge in Surgery.MergePolicy.allCases {
        #expect(throws: SurgeryError.wouldMergeAwayShapeChangingBlock(BlockID(stage: 1, block: 1))) {
            try Surgery.coarsen(odd, stages: [1], merge: merge)
        }
    }
    let msg = SurgeryError.oddBlockCount(stage: 0, blocks: 3).description
    #expect(msg.contains("stage 0") && msg.contains("3 blocks") && msg.contains("even"))
    #expect(SurgeryError.wouldMergeAwayShapeChangingBlock(BlockID(stage: 1, block: 1)).description.contains("block 1.1"))
    // A refused operation changes nothing: the input is a value, and a good stage list works.
    let (ok, _) = try Surgery.coarsen(c0, stages: [1, 2])
    #expect(ok.network.stageBlocks == [3, 1, 1])
}

@Test("--h-policy preserve: each old block's copies share its h, Σh of every stage unchanged; plan and lineage record it")
func preserveStepSizes() throws {
    var c0 = surgeryFixture([2, 3, 2])
    c0.network.stages[1].blocks[0].h = 0.75
    c0.network.stages[1].blocks[1].h = 0.6
    let (c1, plan) = try Surgery.interpolate(c0, hPolicy: .preserve, parentSHA256: "cd")
    // Stage 0 (no shape change): two halves each. Stage 1 (Appendix B): block 0 keeps h0,
    // old block 1's three copies take h1/3, old block 2's two copies h2/2.
    #expect(c1.network.stepSizes[0] == [0.5, 0.5, 0.5, 0.5])
    let h1: Double = 0.6 / 3
    let preserved: [Double] = [0.75, h1, h1, h1, 0.5, 0.5]
    #expect(c1.network.stepSizes[1] == preserved)
    for s in 0..<3 {
        #expect(abs(c1.network.stages[s].totalTime - c0.network.stages[s].totalTime) < 1e-15)
        #expect(abs(plan.stages[s].totalTimeAfter - plan.stages[s].totalTimeBefore) < 1e-15)
    }
    #expect(plan.stages[1].blocks.map(\.kind) == [.kept, .copy, .kept, .copy, .kept, .copy])
    #expect(plan.stages[1].blocks.map(\.source) == [0, 1, 1, 1, 2, 2])
    #expect(plan.hPolicy == .preserve)
    // Same parameters as the paper's rule: only the steps differ.
    let (paper, _) = try Surgery.interpolate(c0)
    for (a, b) in zip(paper.network.namedTensors, c1.network.namedTensors) { #expect(a.tensor == b.tensor) }
    let e = try #require(c1.lineage.last)
    #expect(e.kind == .interpolate && e.args["h_policy"] == .string("preserve") && e.parentSHA256 == "cd")
    let json = try JSONSerialization.jsonObject(with: Data(plan.jsonText.utf8)) as? [String: Any]
    #expect(json?["h_policy"] as? String == "preserve" && json?["op"] as? String == "interpolate")
}

@Test("--first-block identity: a fresh identity step after a shape-changing block 0, which keeps its h; plan and lineage record it")
func identityFirstBlock() throws {
    let c0 = surgeryFixture([2, 2, 2])
    let (c1, plan) = try Surgery.interpolate(c0, firstBlock: .identity, identitySeed: 40, parentSHA256: "ef")
    #expect(c1.network.stageBlocks == [4, 4, 4])
    // Stage 0: block 0 keeps its shape, so the ordinary copies (as auto).
    #expect(plan.stages[0].blocks.map(\.kind) == [.kept, .copy, .kept, .copy])
    #expect(c1.network.stepSizes[0] == [0.5, 0.5, 0.5, 0.5])
    for s in [1, 2] {
        let blocks = c1.network.stages[s].blocks
        #expect(plan.stages[s].blocks.map(\.kind) == [.kept, .identity, .kept, .copy])
        #expect(blocks.map(\.h) == [1, 0.5, 0.5, 0.5])
        #expect(blocks[0].conv1 == c0.network.stages[s].blocks[0].conv1)
        #expect(blocks[1].conv2.count > 0 && blocks[1].conv2.data.allSatisfy { $0 == 0 })
        #expect(blocks[1].origin == "identity:seed=\(40 + s)")
        #expect(blocks[2].conv1 == c0.network.stages[s].blocks[1].conv1 && blocks[3] .conv1 == blocks[2].conv1)
        #expect(plan.stages[s].rule.contains("first block identity"))
        for name in trainableBlockTensorNames {   // the fresh block's momentum starts at zero
            let m = c1.optimizer?.buffers[blockPath(s, 1, name)]
            #expect(m != nil && m!.data.allSatisfy { $0 == 0 })
        }
    }
    #expect(plan.firstBlock == .identity)
    let e = try #require(c1.lineage.last)
    #expect(e.kind == .interpolate && e.args["first_block"] == .string("identity") && e.parentSHA256 == "ef")
    #expect(e.args["identity_seed"] == .int(40))
    let json = try JSONSerialization.jsonObject(with: Data(plan.jsonText.utf8)) as? [String: Any]
    #expect(json?["first_block"] as? String == "identity")
}

@Test("Lineage ops and plan kinds are closed sets whose JSON keeps the stored names")
func lineageOpsAndPlanKinds() throws {
    #expect(LineageOp.allCases.map(\.rawValue)
            == ["init", "train", "interpolate", "remove", "shuffle", "set-h", "coarsen", "recalibrate"])
    #expect(LineageEvent(op: "set-h").kind == .setH && LineageEvent(op: "someone-else's").kind == nil)
    for k in SurgeryPlanKind.allCases where k != .diff { #expect(k.lineageOp?.rawValue == k.rawValue) }
    // The init event is built in one place, for mlres-train init and a new training run alike.
    let arch = Architecture(blocks: [2, 3, 2], widths: [8, 16, 32], inputShape: [1, 28, 28], numClasses: 7)
    let e = LineageEvent.initialization(arch, seed: 9, h: 0.5, compress: true)
    #expect(e.kind == .initialize && e.op == "init")
    #expect(e.args == ["blocks": .array([.int(2), .int(3), .int(2)]), "widths": .array([.int(8), .int(16), .int(32)]),
                       "classes": .int(7), "input_shape": .array([.int(1), .int(28), .int(28)]),
                       "seed": .int(9), "h": .double(0.5), "compress": .bool(true)])
    #expect(LineageEvent.initialization(arch, seed: 9).args["compress"] == nil)
    // editedSinceTraining follows the ops that change the network.
    var c = Checkpoint(network: Network(zeros: arch), lineage: [e, LineageEvent(.train)])
    #expect(!c.editedSinceTraining)
    c.lineage.append(LineageEvent(.coarsen))
    #expect(c.editedSinceTraining)
    c.lineage.append(LineageEvent(.train))
    c.lineage.append(LineageEvent(.recalibrate))
    #expect(!c.editedSinceTraining)
}
