import Foundation
import Testing
import MLResAnalysis
import MLResEngine
import MLResHDF5
import MLResModel
import MLResData
import MLResTestSupport

/// Error, loss, confusion and logits of a float64 forward pass.
private func reference(_ net: Network, _ ds: Dataset) -> (logits: Array64, correct: Int, loss: Double, confusion: [[Int]]) {
    let z = Ref.forward(net, referenceInput(net, ds))
    let k = net.numClasses
    var correct = 0, loss = 0.0
    var conf = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
    for i in 0 ..< ds.count {
        let row = Array(z.v[(i * k) ..< ((i + 1) * k)])
        let best = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }!
        let m = row.max()!
        loss += m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) }) - row[Int(ds.labels[i])]
        conf[Int(ds.labels[i])][best] += 1
        if best == Int(ds.labels[i]) { correct += 1 }
    }
    return (z, correct, loss / Double(ds.count), conf)
}

@Suite struct ScoringTests {
    @Test func scoreMatchesFloat64Reference() throws {
        let ds = try Fix.fashionTest()
        let net = tinyNet()
        // Batch 5 over 12 images: two full batches and a remainder of 2.
        let ev = try Evaluator(dataset: ds, batchSize: 5, threads: 1).evaluate(net, keepLogits: true)
        let ref = reference(net, ds)
        let z = try #require(ev.logits)
        #expect(z.count == 12 * 10)
        expectClose(z, ref.logits.v, tolerance: 1e-4, floor: 1e-2, "logits vs the float64 reference")
        #expect(ev.count == 12)
        #expect(ev.correct == ref.correct)
        #expect(ev.confusion == ref.confusion)
        #expect(relClose(ev.meanLoss, ref.loss))
        #expect(abs(ev.error - (1 - Double(ref.correct) / 12)) < 1e-12)
        for (k, acc) in ev.perClassAccuracy.enumerated() {
            let n = ref.confusion[k].reduce(0, +)
            if n == 0 { #expect(acc == nil) } else { #expect(acc == Double(ref.confusion[k][k]) / Double(n)) }
        }
        #expect(ev.imagesPerSecond > 0)
    }

    @Test func shuffledStageAndZeroStepCheckpointsScoreLikeTheReference() throws {
        let ds = try Fix.fashionTest()
        // A stage permuted by the surgery function, and blocks with h = 0 (one shape-changing).
        let base = Checkpoint(network: tinyNet(seed: 5, hs: [[0.6, 0, 0.9], [0], [0.4, 0.5]]))
        let (shuffled, plan) = try Surgery.shuffle(base, stage: 0, .order([2, 0, 1]))
        #expect(plan.order == [2, 0, 1])
        let evaluator = try Evaluator(dataset: ds, batchSize: 4, threads: 1)
        for net in [base.network, shuffled.network] {
            let ev = try evaluator.evaluate(net, keepLogits: true)
            let ref = reference(net, ds)
            #expect(ev.correct == ref.correct)
            #expect(relClose(ev.meanLoss, ref.loss))
            expectClose(try #require(ev.logits), ref.logits.v, tolerance: 1e-4, floor: 1e-2)
        }
        // The permutation really changes the function computed.
        let a = try evaluator.evaluate(base.network, keepLogits: true).logits!
        let b = try evaluator.evaluate(shuffled.network, keepLogits: true).logits!
        #expect(a != b)
    }

    @Test func mismatchedCheckpointIsRefusedWithAClearMessage() throws {
        let ds = try Fix.fashionTest()
        let evaluator = try Evaluator(dataset: ds, batchSize: 4)
        let rgb = Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8]), seed: 1)
        let msg = evaluator.mismatch(rgb, name: "rgb.h5") ?? ""
        #expect(msg.contains("rgb.h5") && msg.contains("[3,32,32]") && msg.contains("[1,28,28]"))
        #expect(throws: AnalysisError.self) { try evaluator.evaluate(rgb, name: "rgb.h5") }
        let classes = Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [1, 28, 28],
                                                       numClasses: 7), seed: 1)
        #expect(evaluator.mismatch(classes, name: "c.h5")?.contains("7 classes but the dataset has 10") == true)
        #expect(throws: AnalysisError.self) { try Evaluator(dataset: ds, batchSize: 0) }
    }

    @Test func npyRoundTripAndHeaderLayout() throws {
        let values: [Float] = (0 ..< 30).map { Float($0) * 0.25 - 3 }
        let d = NPY.float32(values, shape: [3, 10])
        let bytes = [UInt8](d)
        #expect(Array(bytes[0 ..< 8]) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let hlen = Int(bytes[8]) | Int(bytes[9]) << 8
        #expect((10 + hlen) % 64 == 0)
        #expect(bytes[10 + hlen - 1] == 0x0a)
        #expect(d.count == 10 + hlen + 4 * 30)
        let back = try NPY.readFloat32(d)
        #expect(back.shape == [3, 10] && back.values == values)
        #expect(throws: AnalysisError.self) { try NPY.readFloat32(Data([1, 2, 3])) }
    }

    @Test func lineageSummaryCollapsesRuns() {
        let s = LineageSummary([LineageEvent(op: "init"), LineageEvent(op: "train"), LineageEvent(op: "train"),
                                LineageEvent(op: "interpolate"), LineageEvent(op: "train", at: "T")])
        #expect(s.text == "init → train ×2 → interpolate → train")
        #expect(s.events == 5 && s.counts == ["init": 1, "train": 3, "interpolate": 1])
        #expect(s.lastOp == "train" && s.lastAt == "T")
    }
}

@Suite struct NormTests {
    @Test func normsMatchFloat64RecomputationIncludingZeroSteps() throws {
        let ds = try Fix.fashionTest()
        // h = 0 on a shape-keeping block (0.1) and on a shape-changing one (1.0).
        let hs: [[Double]] = [[0.5, 0], [0], [0.7, 0.3]]
        let net = tinyNet(seed: 21, hs: hs)
        let evaluator = try Evaluator(dataset: ds, batchSize: 5, threads: 1)
        let (rows, gamma, ev) = try ResidualNorms.measure(net, evaluator: evaluator)
        let blocks = Ref.trace(net, referenceInput(net, ds)).blocks
        let flat = hs.flatMap { $0 }
        #expect(rows.count == 5)
        var t = 0.0
        for (j, r) in rows.enumerated() {
            let yRef = meanNorm(blocks[j].y), fRef = meanNorm(blocks[j].f)
            #expect(r.index == j && r.h == flat[j])
            #expect(r.t == t, "t of block \(r.block)")
            t += flat[j]
            #expect(relClose(r.yNorm, yRef), "‖Y‖ of \(r.block): \(r.yNorm) vs \(yRef)")
            #expect(relClose(r.fNorm, fRef), "‖F‖ of \(r.block): \(r.fNorm) vs \(fRef)")
            #expect(relClose(r.gNorm, abs(flat[j]) * fRef), "‖G‖ of \(r.block)")
            #expect(r.fNorm > 0)
        }
        #expect(rows[1].gNorm == 0 && rows[2].gNorm == 0)
        #expect(rows[2].changesShape && !rows[1].changesShape)
        #expect(rows.map(\.block) == ["0.0", "0.1", "1.0", "2.0", "2.1"])
        #expect(rows.map(\.tStage) == [0, 0.5, 0, 0, 0.7])
        #expect(relClose(gamma, rows.map(\.gNorm).reduce(0, +) / 5, 1e-12))
        // The probe (h = 1 and skipped for h = 0 blocks) computes the same function as the net
        // (up to float32 rounding: the engine may fuse layers differently when it observes).
        let plain = try evaluator.evaluate(net)
        #expect(ev.correct == plain.correct && relClose(ev.meanLoss, plain.meanLoss, 1e-5))
    }
}

@Suite struct LesionTests {
    /// Scores `ckpt` after a CheckpointIO write and read, with a fresh evaluator.
    private func scoreThroughFile(_ ckpt: Checkpoint, _ ds: Dataset, dir: String, name: String) throws -> Evaluation {
        let path = dir + "/" + name + ".h5"
        try CheckpointIO.write(ckpt, to: path)
        let back = try CheckpointIO.read(path: path)
        return try Evaluator(dataset: ds, batchSize: 5, threads: 1).evaluate(back.network, name: path)
    }

    @Test(arguments: [LesionMode.single, .shuffle, .dropK])
    func lesionRowsEqualSurgeryWrittenToFileAndScored(mode: LesionMode) throws {
        let ds = try Fix.fashionTest()
        let ckpt = Checkpoint(network: tinyNet(seed: 31, hs: [[0.5, 0.8, 0.6], [1.0], [0.7, 0.3]]),
                              lineage: [LineageEvent(op: "init")])
        let dir = try Fix.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (intact, rows, _) = try LesionStudy.run(ckpt, evaluator: try Evaluator(dataset: ds, batchSize: 5, threads: 1),
                                                 mode: mode, seeds: 2, ks: [1, 3])
        let expected = mode == .single ? 6 : (mode == .shuffle ? 2 : 4)
        #expect(rows.count == expected)
        for (n, row) in rows.enumerated() {
            // The same edit, made independently with the surgery functions.
            var edited = ckpt
            switch mode {
            case .single, .dropK:
                let ids = row.removed.map { BlockID($0)! }
                if mode == .single { #expect(ids == [BlockID(row.label.replacingOccurrences(of: "remove ", with: ""))!]) }
                edited = try Surgery.remove(ckpt, blocks: ids).0
            case .shuffle:
                for s in row.orders.keys.sorted() {
                    edited = try Surgery.shuffle(edited, stage: Int(s)!, .seed(UInt64(row.seed!))).0
                }
            }
            let ev = try scoreThroughFile(edited, ds, dir: dir, name: "e\(n)")
            #expect(row.error == ev.error, "\(row.label)")
            #expect(row.meanLoss == ev.meanLoss, "\(row.label)")
            #expect(row.deltaError == ev.error - intact.error)
            #expect(row.blocksAfter == edited.network.blocksDescription)
        }
        if mode == .single {
            #expect(rows.map(\.actions) == [["deleted"], ["deleted"], ["deleted"], ["h=0"], ["h=0"], ["deleted"]])
            #expect(rows.map(\.blocksAfter) == ["2-1-2", "2-1-2", "2-1-2", "3-1-2", "3-1-2", "3-1-1"])
        }
        if mode == .shuffle { #expect(rows.allSatisfy { $0.orders.keys.sorted() == ["0"] }) }
    }

    @Test func singleLesionOfAShapeChangingBlockEqualsTheShortcutInTheReference() throws {
        let ds = try Fix.fashionTest()
        let net = tinyNet(seed: 41)
        let (_, rows, _) = try LesionStudy.run(Checkpoint(network: net), evaluator: try Evaluator(dataset: ds, batchSize: 6),
                                            mode: .single, seeds: 1)
        var zeroed = net
        zeroed.stages[1].blocks[0].h = 0
        let ref = reference(zeroed, ds)
        let row = try #require(rows.first { $0.label == "remove 1.0" })
        #expect(row.actions == ["h=0"])
        #expect(row.error == 1 - Double(ref.correct) / 12)
        #expect(relClose(row.meanLoss!, ref.loss))
    }

    @Test func dropSelectionIsNestedSeededAndNeverEmptiesAStage() {
        let net = tinyNet(seed: 1, hs: [[1, 1], [1, 1, 1], [1]])
        // Movable: 0.0, 0.1, 1.1, 1.2 (1.0 and 2.0 change shape).
        #expect(LesionStudy.movableBlocks(net).map(\.description) == ["0.0", "0.1", "1.1", "1.2"])
        for seed in 0 ..< 20 as Range<UInt64> {
            var previous: Set<BlockID> = []
            for k in 1 ... 3 {
                let sel = LesionStudy.dropSelection(net, k: k, seed: seed)!
                #expect(sel.count == k && Set(sel).isSuperset(of: previous))
                #expect(sel.filter { $0.stage == 0 }.count <= 1, "stage 0 has only movable blocks: one must stay")
                #expect(sel.allSatisfy { !net.block($0)!.changesShape })
                #expect(LesionStudy.dropSelection(net, k: k, seed: seed) == sel)
                previous = Set(sel)
            }
            #expect(LesionStudy.dropSelection(net, k: 4, seed: seed) == nil)
        }
        let picks = Set((0 ..< 20 as Range<UInt64>).map { LesionStudy.dropSelection(net, k: 1, seed: $0)! })
        #expect(picks.count > 1, "different seeds choose different blocks")
    }

    @Test func refusedLesionsAreReportedNotScored() throws {
        let ds = try Fix.fashionTest()
        // Stage 0 has a single (movable) block: removing it would empty the stage.
        let net = tinyNet(seed: 2, hs: [[0.5], [1.0], [0.7]])
        let (_, rows, _) = try LesionStudy.run(Checkpoint(network: net), evaluator: try Evaluator(dataset: ds, batchSize: 12),
                                            mode: .single, seeds: 1)
        #expect(rows.count == 3)
        #expect(rows[0].error == nil && rows[0].note?.contains("stage 0") == true)
        #expect(rows[1].error != nil && rows[1].actions == ["h=0"])
    }
}
