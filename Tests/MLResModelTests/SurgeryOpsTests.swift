import Testing
import Foundation
@testable import MLResModel

private func id(_ s: String) -> BlockID { BlockID(s)! }

@Test("remove: a shape-keeping block is deleted and later blocks (and momentum) renumbered")
func removeDeletesAndRenumbers() throws {
    let c0 = surgeryFixture([3, 3, 3])
    let (c1, plan) = try Surgery.remove(c0, blocks: [id("0.0"), id("2.1")], parentSHA256: "p")
    #expect(c1.network.stageBlocks == [2, 3, 2])
    for name in blockTensorNames {
        #expect(c1.network.tensor(at: blockPath(0, 0, name)) == c0.network.tensor(at: blockPath(0, 1, name)))
        #expect(c1.network.tensor(at: blockPath(0, 1, name)) == c0.network.tensor(at: blockPath(0, 2, name)))
        #expect(c1.network.tensor(at: blockPath(2, 0, name)) == c0.network.tensor(at: blockPath(2, 0, name)))
        #expect(c1.network.tensor(at: blockPath(2, 1, name)) == c0.network.tensor(at: blockPath(2, 2, name)))
    }
    for name in trainableBlockTensorNames {
        #expect(c1.optimizer?.buffers[blockPath(0, 0, name)] == c0.optimizer?.buffers[blockPath(0, 1, name)])
        #expect(c1.optimizer?.buffers[blockPath(2, 1, name)] == c0.optimizer?.buffers[blockPath(2, 2, name)])
        #expect(c1.optimizer?.buffers[blockPath(0, 2, name)] == nil)
    }
    #expect(Set(c1.optimizer!.buffers.keys) == Set(c1.network.trainablePaths))
    #expect(plan.actions.map(\.action) == [.deleted, .deleted])
    #expect(c1.network.parameterCount == Architecture(blocks: [2, 3, 2]).parameterCount)
    #expect(c1.lineage.last?.op == "remove" && c1.lineage.last?.parentSHA256 == "p")
    #expect(c1.lineage.last?.args["blocks"] == .array([.string("0.0"), .string("2.1")]))
}

@Test("remove: a shape-changing block stays with h = 0 (exactly the shortcut)")
func removeShapeChangingBlock() throws {
    let c0 = surgeryFixture([2, 2, 2])
    let (c1, plan) = try Surgery.remove(c0, blocks: [id("1.0"), id("1.1")])
    #expect(c1.network.stageBlocks == [2, 1, 2])
    #expect(c1.network.stages[1].blocks[0].h == 0)
    var expected = c0.network.stages[1].blocks[0]; expected.h = 0
    #expect(c1.network.stages[1].blocks[0] == expected)
    #expect(plan.actions.map(\.action) == [.zeroed, .deleted])
    #expect(plan.text.contains("h = 0"))
}

@Test("remove: unknown, duplicate, empty and stage-emptying requests are refused")
func removeErrors() throws {
    let c0 = surgeryFixture([2, 2, 2])
    #expect(throws: SurgeryError.unknownBlock(id("0.2"), stageBlocks: [2, 2, 2])) { try Surgery.remove(c0, blocks: [id("0.2")]) }
    #expect(throws: SurgeryError.unknownBlock(id("3.0"), stageBlocks: [2, 2, 2])) { try Surgery.remove(c0, blocks: [id("3.0")]) }
    #expect(throws: SurgeryError.duplicateBlock(id("1.1"))) { try Surgery.remove(c0, blocks: [id("1.1"), id("1.1")]) }
    #expect(throws: SurgeryError.stageWouldBeEmpty(stage: 0)) { try Surgery.remove(c0, blocks: [id("0.0"), id("0.1")]) }
    #expect(throws: SurgeryError.emptySelection("the list of blocks to remove")) { try Surgery.remove(c0, blocks: []) }
    let msg = SurgeryError.unknownBlock(id("0.2"), stageBlocks: [2, 2, 2]).description
    #expect(msg.contains("0.2") && msg.contains("2-2-2"))
}

@Test("remove then diff reports exactly the removed block")
func removeThenDiff() throws {
    let c0 = surgeryFixture([3, 3, 3])
    let (c1, _) = try Surgery.remove(c0, blocks: [id("1.1")])
    let d = Surgery.diff(c0, c1)
    #expect(!d.equal)
    #expect(d.entries(.removed).map(\.a) == ["1.1"])
    #expect(d.entries(.added).isEmpty && d.entries(.moved).isEmpty && d.entries(.modified).isEmpty)
    #expect(d.entries(.renumbered).map { "\($0.a!)>\($0.b!)" } == ["1.2>1.1"])
    #expect(d.hChanges.isEmpty)
    #expect(d.text.contains("removed  1.1"))
    // Stage 1 block 0 is the same; the tensors now at path 1.1 are old 1.2's, so they differ.
    #expect(d.onlyInA.count == blockTensorNames.count && d.onlyInA.allSatisfy { $0.hasPrefix("model/stages/1/blocks/2/") })
}

@Test("shuffle: the same seed gives the same order, block 0 that changes shape stays pinned")
func shuffleSeed() throws {
    let c0 = surgeryFixture([5, 5, 5])
    let (a, pa) = try Surgery.shuffle(c0, stage: 1, .seed(42))
    let (b, pb) = try Surgery.shuffle(c0, stage: 1, .seed(42))
    #expect(a.network == b.network && pa == pb)
    var orders = Set<[Int]>()
    for seed in UInt64(0)..<20 {
        let (_, p) = try Surgery.shuffle(c0, stage: 1, .seed(seed))
        #expect(p.order[0] == 0 && p.pinned == [0])
        #expect(p.order.sorted() == [0, 1, 2, 3, 4])
        orders.insert(p.order)
    }
    #expect(orders.count > 5)   // the seed matters
    // Stage 0's block 0 keeps its shape, so it may move.
    var moved0 = false
    for seed in UInt64(0)..<20 {
        let (_, p) = try Surgery.shuffle(c0, stage: 0, .seed(seed))
        if p.order[0] != 0 { moved0 = true }
        #expect(p.pinned.isEmpty)
    }
    #expect(moved0)
    // Tensors and momentum follow the order; other stages untouched.
    for (k, i) in pa.order.enumerated() {
        for name in blockTensorNames {
            #expect(a.network.tensor(at: blockPath(1, k, name)) == c0.network.tensor(at: blockPath(1, i, name)))
        }
        #expect(a.optimizer?.buffers[blockPath(1, k, "conv2/weight")] == c0.optimizer?.buffers[blockPath(1, i, "conv2/weight")])
    }
    #expect(a.network.stages[0] == c0.network.stages[0] && a.network.stages[2] == c0.network.stages[2])
    #expect(a.lineage.last?.args["seed"] == .int(42))
}

@Test("shuffle: an explicit order is applied; bad orders are refused with a reason")
func shuffleOrder() throws {
    let c0 = surgeryFixture([4, 4, 4])
    let (a, _) = try Surgery.shuffle(c0, stage: 2, .order([0, 3, 1, 2]))
    #expect(a.network.stages[2].blocks.map(\.conv1) == [0, 3, 1, 2].map { c0.network.stages[2].blocks[$0].conv1 })
    let d = Surgery.diff(c0, a)
    #expect(d.entries(.moved).map { "\($0.a!)>\($0.b!)" } == ["2.3>2.1"])
    #expect(d.entries(.removed).isEmpty && d.entries(.added).isEmpty)

    #expect(throws: SurgeryError.movesShapeChangingBlock(id("2.0"), to: 1)) {
        try Surgery.shuffle(c0, stage: 2, .order([1, 0, 2, 3]))
    }
    #expect(throws: SurgeryError.notAPermutation(stage: 2, order: [0, 1, 1, 2], blocks: 4)) {
        try Surgery.shuffle(c0, stage: 2, .order([0, 1, 1, 2]))
    }
    #expect(throws: SurgeryError.notAPermutation(stage: 2, order: [0, 1, 2], blocks: 4)) {
        try Surgery.shuffle(c0, stage: 2, .order([0, 1, 2]))
    }
    #expect(throws: SurgeryError.notAPermutation(stage: 2, order: [0, 1, 2, 4], blocks: 4)) {
        try Surgery.shuffle(c0, stage: 2, .order([0, 1, 2, 4]))
    }
    #expect(throws: SurgeryError.unknownStage(3, stages: 3)) { try Surgery.shuffle(c0, stage: 3, .seed(1)) }
    #expect(SurgeryError.movesShapeChangingBlock(id("2.0"), to: 1).description.contains("changes shape"))
    // Stage 0 block 0 keeps its shape, so it may move.
    let (b, _) = try Surgery.shuffle(c0, stage: 0, .order([1, 0, 2, 3]))
    #expect(b.network.stages[0].blocks[0] == c0.network.stages[0].blocks[1])
}

@Test("set-h: all blocks or one; h must be finite and ≥ 0")
func setH() throws {
    let c0 = surgeryFixture([2, 2, 2])
    let (all, plan) = try Surgery.setH(c0, h: 0.25)
    #expect(all.network.stepSizes == [[0.25, 0.25], [0.25, 0.25], [0.25, 0.25]])
    #expect(plan.changes.count == 6 && plan.totalTimeAfter == [0.5, 0.5, 0.5])
    let (one, _) = try Surgery.setH(c0, h: 0, block: id("2.1"))
    #expect(one.network.stepSizes == [[1, 1], [1, 1], [1, 0]])
    #expect(one.lineage.last?.args == ["h": .double(0), "block": .string("2.1")])
    for bad in [-0.5, .nan, .infinity] {
        #expect(throws: SurgeryError.self) { try Surgery.setH(c0, h: bad) }
    }
    #expect(throws: SurgeryError.unknownBlock(id("2.2"), stageBlocks: [2, 2, 2])) { try Surgery.setH(c0, h: 1, block: id("2.2")) }
    // Only h changed: the diff sees an h change and nothing else.
    let d = Surgery.diff(c0, one)
    #expect(!d.equal && d.hChanges.map(\.a) == ["2.1"])
    #expect(d.tensors.allSatisfy { $0.maxAbs == 0 } && d.entries(.same).count == 6)
}

@Test("diff: equal files, interpolated copies, and numbers checked against a direct computation")
func diffReport() throws {
    let c0 = surgeryFixture([2, 2, 2])
    let same = Surgery.diff(c0, c0)
    #expect(same.equal && same.text.hasPrefix("equal"))
    #expect(same.tensors.count == c0.network.namedTensors.count)

    let (c1, _) = try Surgery.interpolate(c0)
    let d = Surgery.diff(c0, c1)
    #expect(!d.equal)
    // Old block i is kept at 2i; the inserted blocks (origin "copy:...") are reported as added,
    // with the Appendix B copies of old block 1 in stages 1 and 2.
    #expect(d.entries(.added).map(\.b) == ["0.1", "0.3", "1.1", "1.3", "2.1", "2.3"])
    #expect(d.entries(.added).map(\.copyOf) == ["0.0", "0.1", "1.1", "1.1", "2.1", "2.1"])
    #expect(d.entries(.renumbered).map { "\($0.a!)>\($0.b!)" } == ["0.1>0.2", "1.1>1.2", "2.1>2.2"])
    #expect(d.hChanges.count == 6)
    #expect(d.entries(.removed).isEmpty)

    // Perturb one element: max|Δ| = δ and rel L2 = δ / ‖a‖ (computed here in float64).
    var c2 = c0
    let path = blockPath(2, 1, "conv1/weight")
    var t = c0.network.tensor(at: path)!
    let delta: Float = 0.125
    t.data[7] += delta
    c2.network.setTensor(at: path, t)
    let e = Surgery.diff(c0, c2)
    #expect(!e.equal)
    #expect(e.entries(.modified).map(\.a) == ["2.1"])
    let row = e.tensors.first { $0.path == path }!
    let orig = c0.network.tensor(at: path)!.data.map(Double.init)
    let norm = orig.map { $0 * $0 }.reduce(0, +).squareRoot()
    let actualDelta = Double(t.data[7]) - orig[7]
    #expect(abs(row.maxAbs - actualDelta) < 1e-12)
    #expect(abs(row.relL2 - abs(actualDelta) / norm) < 1e-12)
    #expect(e.tensors.filter { $0.maxAbs != 0 }.map(\.path) == [path])
    let json = try JSONSerialization.jsonObject(with: Data(e.jsonText.utf8)) as? [String: Any]
    #expect(json?["equal"] as? Bool == false)
}
