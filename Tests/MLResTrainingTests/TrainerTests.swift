import Foundation
import Testing
import MLResHDF5
import MLResModel
@testable import MLResData
@testable import MLResTraining

// The trainer on the committed Fashion-MNIST fixture (30 training / 12 test images of 28x28),
// a tiny network (widths 4,8), batch 8 → 3 steps per epoch, one oneDNN thread.

enum TrainerFixture {
    static func scratch() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-trainer-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func request(out: String, epochs: Int = 4, blocks: String = "1-1", interpolateAt: String? = nil,
                        restartAt: String? = nil) -> TrainRequest {
        var r = TrainRequest()
        r.dataset = .fashionMNIST; r.dataDir = Fixtures.dir("fashion-mnist")
        r.blocks = blocks.split(separator: "-").map { Int($0)! }; r.widths = [4, 8]; r.epochs = epochs; r.batchSize = 8
        r.interpolateAt = interpolateAt.map { $0.split(separator: ",").map { Int($0)! } }
        r.restartAt = restartAt.map { $0.split(separator: ",").map { Int($0)! } }
        r.threads = 1; r.seed = 7; r.out = out
        return r
    }

    static func resume(_ path: String, out: String? = nil) -> TrainRequest {
        var r = TrainRequest()
        r.resume = path; r.out = out; r.threads = 1
        return r
    }

    /// Lines of RUN/metrics.jsonl of one type, as JSON objects.
    static func metrics(_ dir: String, type: String) throws -> [[String: JSONValue]] {
        let text = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").compactMap { line in
            guard case .object(let o) = try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)) else { return nil }
            return o["type"] == .string(type) ? o : nil
        }
    }

    static func number(_ v: JSONValue?) -> Double? {
        switch v {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }

    /// Every tensor of the network and every momentum buffer, by path.
    static func allTensors(_ c: Checkpoint) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for nt in c.network.namedTensors { out[nt.path] = nt.tensor }
        for (k, v) in c.optimizer?.buffers ?? [:] { out["optimizer/" + k] = v }
        return out
    }

    /// Paths whose tensors are not bit-identical (compared as raw float bits).
    static func differingPaths(_ a: Checkpoint, _ b: Checkpoint) -> [String] {
        let ta = allTensors(a), tb = allTensors(b)
        var diff: [String] = []
        for (k, x) in ta {
            guard let y = tb[k], x.shape == y.shape,
                  zip(x.data, y.data).allSatisfy({ $0.bitPattern == $1.bitPattern }) else { diff.append(k); continue }
        }
        if Set(ta.keys) != Set(tb.keys) { diff.append("<different tensor sets>") }
        return diff.sorted()
    }

    /// Float64 form of the paper's learning rate: η_min + (η_max − η_min)·cos²(πt / 2T).
    static func referenceLR(_ t: Int, _ T: Int, max: Double = 0.5, min: Double = 0.001) -> Double {
        let c = cos(Double.pi * Double(t) / (2 * Double(T)))
        return min + (max - min) * c * c
    }
}

@Suite("Trainer", .serialized)
struct TrainerTests {
    typealias F = TrainerFixture

    @Test("Cycle plan: positions against an independent formula; a surgery restart mid-epoch")
    func cyclePlan() throws {
        let p = try CyclePlan(epochs: 10, stepsPerEpoch: 7, boundaries: [3, 6])
        for step in 0 ..< p.totalSteps {
            // Independent: cycles are epochs [0,3), [3,6), [6,10) of 7 steps.
            let (start, len) = step < 21 ? (0, 21) : step < 42 ? (21, 21) : (42, 28)
            let a = p.position(ofStep: step)
            #expect(a.cycle == (step < 21 ? 0 : step < 42 ? 1 : 2) && a.stepInCycle == step - start && a.cycleSteps == len
                    && abs(a.lr - referenceLR(step - start, len)) < 1e-15)
        }
        #expect((1 ... 70).filter { p.endsCycle(afterSteps: $0) } == [21, 42, 70])
        let q = p.adding(starts: [30])
        #expect(q.starts == [0, 21, 30, 42])
        let at = q.position(ofStep: 30)
        #expect(at.cycle == 2 && at.stepInCycle == 0 && at.cycleSteps == 12 && at.lr == 0.5)
        #expect(q.position(ofStep: 29).cycleSteps == 9)
    }

    @Test("Learning rate per step along a run with a restart, in metrics.jsonl and /training/history")
    func lrAlongRun() throws {
        let dir = try F.scratch()
        var r = F.request(out: dir, epochs: 4, restartAt: "2")
        r.logEvery = 1
        let t = try Trainer(r, quiet: true)
        #expect(t.stepsPerEpoch == 3)
        let outcome = try t.run()
        guard case .finished = outcome else { Issue.record("not finished: \(outcome)"); return }
        let steps = try F.metrics(dir, type: "step")
        #expect(steps.count == 12)
        for (i, rec) in steps.enumerated() {
            // Cycles of 6 steps: [0, 6) and [6, 12); the rate restarts at lr_max at step 6.
            let want = F.referenceLR(i % 6, 6)
            #expect(F.number(rec["global_step"]) == Double(i + 1))
            #expect(abs((F.number(rec["lr"]) ?? -1) - want) < 1e-12, "step \(i)")
        }
        #expect(F.number(steps[6]["lr"]) == 0.5)
        let ck = try CheckpointIO.read(path: dir + "/last.h5")
        let h = try #require(ck.training).history
        #expect(h["epoch"] == [1, 2, 3, 4] && h["global_step"] == [3, 6, 9, 12] && h["blocks"] == [2, 2, 2, 2])
        // The history's lr is the epoch's last step.
        let lrs = try #require(h["lr"])
        for (e, lr) in lrs.enumerated() { #expect(abs(lr - F.referenceLR((e % 2) * 3 + 2, 6)) < 1e-12) }
        #expect(h["test_error"]!.allSatisfy { $0 >= 0 && $0 <= 1 } && h["wall_seconds"]!.allSatisfy { $0 > 0 })
        // Both cycles' snapshots; standardisation from the training set.
        #expect(FileManager.default.fileExists(atPath: dir + "/cycle-0.h5") && FileManager.default.fileExists(atPath: dir + "/cycle-1.h5"))
        let train = try DatasetSelection(kind: .fashionMNIST, dataDirectory: Fixtures.dir("fashion-mnist")).load(.train)
        let stats = ChannelStats(of: train)
        #expect(ck.network.inputMean == stats.meanTensor.data && ck.network.inputStd == stats.stdTensor.data)
        #expect(ck.network.inputStd[0] != 1)
        let ts = try #require(ck.training)
        #expect(ts.epoch == 4 && ts.globalStep == 12 && ts.cycle == 1 && ts.stepInCycle == 6 && ts.cycleSteps == 6)
        #expect(ck.lineage.map(\.op) == ["init", "train", "train"])
        let cfg = try TrainConfig.parse(ts.config, file: "last.h5")
        #expect(cfg.restartAt == [2] && cfg.lrMax == 0.5 && cfg.lrMin == 0.001 && cfg.momentum == 0.9
                && cfg.weightDecay == 2e-4 && cfg.padding == 4 && !cfg.flip && cfg.seed == 7)
    }

    @Test("Interpolation inside a run: 1-1 → 2-2 after epoch 2, h halved; same result via cycle-0.h5")
    func interpolationInRun() throws {
        let dir = try F.scratch()
        let t = try Trainer(F.request(out: dir, epochs: 3, interpolateAt: "2"), quiet: true)
        _ = try t.run()
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        let c0 = try CheckpointIO.read(path: dir + "/cycle-0.h5")
        #expect(c0.network.stageBlocks == [1, 1] && c0.network.stepSizes == [[1], [1]])
        #expect(last.network.stageBlocks == [2, 2] && last.network.stepSizes == [[0.5, 0.5], [0.5, 0.5]])
        let h = try #require(last.training).history
        #expect(h["blocks"] == [2, 2, 4])
        #expect(last.lineage.map(\.op) == ["init", "train", "interpolate", "train"])
        let sha = try FileDigest.sha256(fileAt: dir + "/cycle-0.h5")
        #expect(last.lineage[2].parentSHA256 == sha)
        #expect(last.lineage[2].args["blocks_after"] == .string("2-2"))
        // Epoch 3 starts a new cycle at lr_max.
        let epochs = try F.metrics(dir, type: "epoch")
        #expect(epochs.map { F.number($0["lr_start"]) } == [0.5, F.referenceLR(3, 6), 0.5])
        #expect(epochs.map { $0["depth"] } == [.string("1-1"), .string("1-1"), .string("2-2")])

        // Resuming the end-of-cycle snapshot runs the same interpolation and the same last epoch.
        let dir2 = try F.scratch()
        try FileManager.default.copyItem(atPath: dir + "/cycle-0.h5", toPath: dir2 + "/cycle-0.h5")
        _ = try Trainer(F.resume(dir2 + "/cycle-0.h5"), quiet: true).run()
        let again = try CheckpointIO.read(path: dir2 + "/last.h5")
        #expect(F.differingPaths(last, again).isEmpty)
        #expect(again.training?.history["blocks"] == [2, 2, 4])

        // `mlres-surgery interpolate` on cycle-0.h5 + resume (a new cycle at the same step)
        // trains to the same tensors: the in-run interpolation is the surgery operation.
        let dir3 = try F.scratch()
        let (cut, _) = try Surgery.interpolate(c0, parentSHA256: sha)
        try CheckpointIO.write(cut, to: dir3 + "/surgery.h5")
        let t3 = try Trainer(F.resume(dir3 + "/surgery.h5"), quiet: true)
        #expect(t3.plan.starts == [0, 6])
        _ = try t3.run()
        #expect(F.differingPaths(last, try CheckpointIO.read(path: dir3 + "/last.h5")).isEmpty)
    }

    @Test("--reset-momentum: the in-run interpolation zeroes momentum, like surgery --reset-optimizer")
    func resetMomentumInRun() throws {
        let dir = try F.scratch()
        var r = F.request(out: dir, epochs: 3, interpolateAt: "2"); r.resetMomentum = true
        _ = try Trainer(r, quiet: true).run()
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        let c0 = try CheckpointIO.read(path: dir + "/cycle-0.h5")
        #expect(last.lineage[2].args["reset_optimizer"] == .bool(true))
        let dir2 = try F.scratch()
        let (cut, _) = try Surgery.interpolate(c0, resetOptimizer: true)
        #expect(cut.optimizer == nil)
        try CheckpointIO.write(cut, to: dir2 + "/surgery.h5")
        _ = try Trainer(F.resume(dir2 + "/surgery.h5"), quiet: true).run()
        let viaSurgery = try CheckpointIO.read(path: dir2 + "/last.h5")
        #expect(F.differingPaths(last, viaSurgery).isEmpty)
        // ... and differs from the mapped-momentum run.
        let dir3 = try F.scratch()
        _ = try Trainer(F.request(out: dir3, epochs: 3, interpolateAt: "2"), quiet: true).run()
        #expect(!F.differingPaths(last, try CheckpointIO.read(path: dir3 + "/last.h5")).isEmpty)
    }

    @Test("Exact resume: 4 epochs straight = stop mid-epoch 2 (SIGTERM-style) + resume, every tensor bit for bit")
    func exactResume() throws {
        let a = try F.scratch(), b = try F.scratch()
        _ = try Trainer(F.request(out: a, epochs: 4, interpolateAt: "2"), quiet: true).run()
        let first = try Trainer(F.request(out: b, epochs: 4, interpolateAt: "2"), quiet: true)
        first.stopAtStep = 5
        let o = try first.run()
        #expect(o == .interrupted(checkpoint: b + "/last.h5", epoch: 1, globalStep: 5))
        let mid = try CheckpointIO.read(path: b + "/last.h5")
        let ts = try #require(mid.training)
        #expect(ts.epoch == 1 && ts.globalStep == 5 && ts.stepInCycle == 5 && ts.cycleSteps == 6 && ts.rngState == [7, 1, 2])
        #expect(try TrainConfig.parse(ts.config, file: "").partialEpoch?.seen == 16)
        let second = try Trainer(F.resume(b + "/last.h5"), quiet: true)
        #expect(second.globalStep == 5)
        _ = try second.run()
        let straight = try CheckpointIO.read(path: a + "/last.h5"), resumed = try CheckpointIO.read(path: b + "/last.h5")
        #expect(straight.network.stageBlocks == [2, 2] && resumed.network.stageBlocks == [2, 2])
        #expect(F.differingPaths(straight, resumed) == [])
        for c in TrainingState.historyColumns where c != "wall_seconds" {
            #expect(straight.training?.history[c] == resumed.training?.history[c], "history \(c)")
        }
        let sa = try #require(straight.training), sb = try #require(resumed.training)
        #expect(sa.globalStep == sb.globalStep && sa.cycle == sb.cycle && sa.rngState == sb.rngState)
        #expect(resumed.lineage.map(\.op) == ["init", "train", "train", "interpolate", "train"])
        #expect(resumed.lineage[2].args["resumed"] == .bool(true))
    }

    @Test("Resume after mlres-surgery interpolate: new cycle at lr_max, deeper net, epochs left")
    func resumeAfterSurgery() throws {
        let dir = try F.scratch()
        let t = try Trainer(F.request(out: dir, epochs: 4), quiet: true)
        t.stopAtStep = 6
        _ = try t.run()
        let trained = try CheckpointIO.read(path: dir + "/last.h5")
        #expect(!trained.editedSinceTraining)
        let (edited, _) = try Surgery.interpolate(trained)
        #expect(edited.editedSinceTraining)
        let path = dir + "/edited.h5"
        try CheckpointIO.write(edited, to: path)

        var r = F.resume(path)
        r.logEvery = 1
        let resumed = try Trainer(r, quiet: true)
        #expect(resumed.plan.starts == [0, 6])
        _ = try resumed.run()
        let steps = try F.metrics(dir, type: "step")
        #expect(steps.count == 6)
        for (i, rec) in steps.enumerated() { #expect(abs((F.number(rec["lr"]) ?? -1) - F.referenceLR(i, 6)) < 1e-12) }
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        let ts = try #require(last.training)
        #expect(last.network.stageBlocks == [2, 2] && ts.history["blocks"] == [2, 2, 4, 4])
        #expect(ts.cycle == 1 && ts.epoch == 4)
        #expect(last.lineage.map(\.op) == ["init", "train", "interpolate", "train"])
        // The first post-surgery step used the surgery's mapped momentum: reset gives other weights.
        let dir2 = try F.scratch()
        var r2 = F.resume(path, out: dir2); r2.resetMomentum = true
        _ = try Trainer(r2, quiet: true).run()
        let reset = try CheckpointIO.read(path: dir2 + "/last.h5")
        #expect(!F.differingPaths(last, reset).isEmpty)
    }

    @Test("Surgery on a mid-epoch checkpoint: the new cycle starts at that step, lr_max, to the end")
    func surgeryMidEpoch() throws {
        let dir = try F.scratch()
        let t = try Trainer(F.request(out: dir, epochs: 4), quiet: true)
        t.stopAtStep = 4
        _ = try t.run()
        let (edited, _) = try Surgery.interpolate(try CheckpointIO.read(path: dir + "/last.h5"))
        try CheckpointIO.write(edited, to: dir + "/edited.h5")
        var r = F.resume(dir + "/edited.h5"); r.logEvery = 1
        let resumed = try Trainer(r, quiet: true)
        #expect(resumed.plan.starts == [0, 4] && resumed.globalStep == 4)
        resumed.stopAtStep = 6
        _ = try resumed.run()
        let steps = try F.metrics(dir, type: "step")
        let lrs = steps.compactMap { F.number($0["lr"]) }
        #expect(lrs.count == 2 && lrs[0] == 0.5 && abs(lrs[1] - F.referenceLR(1, 8)) < 1e-12)
        let ts = try #require(try CheckpointIO.read(path: dir + "/last.h5").training)
        #expect(ts.cycle == 1 && ts.stepInCycle == 2 && ts.cycleSteps == 8 && ts.epoch == 2)
        #expect(try TrainConfig.parse(ts.config, file: "").extraCycleStarts == [4])
    }

    @Test("Resume from a plain init checkpoint starts training it; its depth is kept")
    func resumeFromInit() throws {
        let dir = try F.scratch()
        let arch = Architecture(blocks: [2, 1], widths: [4, 8], inputShape: [1, 28, 28], numClasses: 10)
        let ck = Checkpoint(network: Network.initialized(arch, seed: 3), lineage: [LineageEvent(op: "init")])
        try CheckpointIO.write(ck, to: dir + "/init.h5")
        var r = F.resume(dir + "/init.h5")
        r.dataset = .fashionMNIST; r.dataDir = Fixtures.dir("fashion-mnist"); r.epochs = 1; r.batchSize = 8
        let t = try Trainer(r, quiet: true)
        _ = try t.run()
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        #expect(last.network.stageBlocks == [2, 1] && last.training?.epoch == 1)
        #expect(last.lineage.map(\.op) == ["init", "train"])
    }

    @Test("Errors before any work: flags, data, incompatible resume, occupied run folder, finished run")
    func errors() throws {
        let dir = try F.scratch()
        func msg(_ r: TrainRequest) -> String {
            do { _ = try Trainer(r, quiet: true); return "" } catch { return "\(error)" }
        }
        var r = F.request(out: dir + "/a"); r.epochs = 0
        #expect(msg(r).contains("--epochs must be positive"))
        #expect(msg(F.request(out: dir + "/a", epochs: 4, interpolateAt: "5")).contains("--interpolate-at 5"))
        #expect(msg(F.request(out: dir + "/a", epochs: 4, interpolateAt: "2", restartAt: "2")).contains("both"))
        r = F.request(out: dir + "/a"); r.widths = [4, 8, 16]
        #expect(msg(r).contains("--blocks has 2 stages but --widths has 3"))
        r = F.request(out: dir + "/a"); r.dataset = nil
        #expect(msg(r).contains("--dataset is required"))
        r = F.request(out: dir + "/a"); r.batchSize = 31
        #expect(msg(r).contains("--batch-size 31 is larger than the 30 training images"))
        r = F.request(out: dir + "/a"); r.dataDir = dir + "/nowhere"
        #expect(msg(r).contains("nowhere/train-images-idx3-ubyte"))
        r = F.request(out: dir + "/a"); r.out = nil
        #expect(msg(r).contains("--out RUN is required"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/last.h5"))

        // Incompatible resume: a CIFAR-shaped network, then a 5-class one, on Fashion-MNIST.
        for (shape, classes, want) in [([3, 32, 32], 10, "[3,32,32] inputs"), ([1, 28, 28], 5, "5 classes")] {
            let arch = Architecture(blocks: [1, 1], widths: [4, 8], inputShape: shape, numClasses: classes)
            let p = dir + "/init-\(classes).h5"
            try CheckpointIO.write(Checkpoint(network: Network.initialized(arch, seed: 1)), to: p)
            var rr = F.resume(p); rr.dataset = .fashionMNIST; rr.dataDir = Fixtures.dir("fashion-mnist")
            #expect(msg(rr).contains(want), "\(want)")
        }
        #expect(msg(F.resume(dir + "/missing.h5")).contains("--resume \(dir)/missing.h5: no such file"))
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: dir + "/bad.h5"))
        #expect(msg(F.resume(dir + "/bad.h5")).contains("bad.h5"))

        // A finished run: the folder is taken, and resuming needs a larger --epochs.
        _ = try Trainer(F.request(out: dir + "/done", epochs: 1), quiet: true).run()
        #expect(msg(F.request(out: dir + "/done", epochs: 1)).contains("already holds a run"))
        #expect(msg(F.resume(dir + "/done/last.h5")).contains("the run is complete"))
        var conflict = F.resume(dir + "/done/last.h5"); conflict.epochs = 2; conflict.seed = 9
        #expect(msg(conflict).contains("--seed 9 conflicts"))
        var more = F.resume(dir + "/done/last.h5"); more.epochs = 2
        let t = try Trainer(more, quiet: true)
        #expect(t.plan.starts == [0, 3])  // extending a finished run starts a new cycle
    }
}

/// Issue 12 kind 1, training part: a run stops at the first non-finite loss or gradient, before
/// the update, naming the step and the learning rate, and never writes a non-finite checkpoint.
@Suite("Trainer stops on non-finite values")
struct NonFiniteTrainingTests {
    typealias F = TrainerFixture

    /// Ways a resumed network's first step goes non-finite while every stored value is finite.
    static let edits: [(String, (inout Network) -> Void)] = [
        ("input std 1e-45 (standardised pixels overflow)", { $0.inputStd = $0.inputStd.map { _ in 1e-45 } }),
        ("input mean 3e38, std 1e-38", { $0.inputMean = $0.inputMean.map { _ in 3e38 }; $0.inputStd = $0.inputStd.map { _ in 1e-38 } }),
        ("fc weight at the float32 limit", { n in
            n.fcWeight = Tensor(shape: n.fcWeight.shape, data: n.fcWeight.data.indices.map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude })
        }),
    ]

    @Test("Resuming a network whose first step is non-finite: stopped at step 4, last.h5 untouched",
          arguments: edits.indices)
    func resumeStops(_ i: Int) throws {
        let dir = try F.scratch()
        _ = try Trainer(F.request(out: dir, epochs: 1), quiet: true).run()
        let last = dir + "/last.h5"
        let before = try Data(contentsOf: URL(fileURLWithPath: last))
        var ck = try CheckpointIO.read(path: last)
        Self.edits[i].1(&ck.network)
        try CheckpointIO.write(ck, to: dir + "/edited.h5")
        var r = F.resume(dir + "/edited.h5", out: dir); r.epochs = 2
        let t = try Trainer(r, quiet: true)
        let message: String
        do { _ = try t.run(); message = "" } catch { message = "\(error)" }
        #expect(message.contains("training stopped: the ") && message.contains("at step 4 (epoch 2, step 1/3), learning rate 0.5"),
                "\(Self.edits[i].0): \(message)")
        #expect(message.contains("\(last) keeps the last finite state"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: last)) == before, "last.h5 must not change")
        #expect(t.globalStep == 3)
    }

    @Test("A learning rate that blows the weights up: stopped with the step and rate; any checkpoint written is finite",
          arguments: [1e30, 1e20])
    func divergingRun(_ lr: Double) throws {
        let dir = try F.scratch()
        var r = F.request(out: dir, epochs: 3); r.lrMax = lr; r.lrMin = 0
        let message: String
        do { _ = try Trainer(r, quiet: true).run(); message = "" } catch { message = "\(error)" }
        #expect(message.contains("training stopped: the ") && message.contains("learning rate"), "\(message)")
        #expect(message.contains("Try a smaller --lr-max"))
        if FileManager.default.fileExists(atPath: dir + "/last.h5") {
            let ck = try CheckpointIO.read(path: dir + "/last.h5")
            #expect(ck.network.namedTensors.allSatisfy { $0.tensor.data.allSatisfy(\.isFinite) })
        } else {
            #expect(message.contains("no checkpoint was written"))
        }
    }
}
