import Foundation
import Testing
import MLResAnalysis
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResData
@testable import MLResTraining

// Issue 17 inside a training run: `--h-policy`, `--first-block identity` and `--recalibrate-bn N`
// at the in-run interpolation are the surgery and recalibration functions (same tensors as doing
// them by hand on cycle-0.h5), stored in the config so that a resume repeats them, and recorded
// in the lineage and metrics.jsonl. Fixture as in TrainerTests (30 Fashion-MNIST images, batch 8).

@Suite("Trainer: interpolation policies and BN recalibration", .serialized)
struct PolicyTrainingTests {
    typealias F = TrainerFixture

    static func request(out: String, policy: Surgery.StepPolicy?, firstBlock: Surgery.FirstBlockPolicy? = nil,
                        recalibrate: Int?) -> TrainRequest {
        var r = F.request(out: out, epochs: 3, blocks: "2-2", interpolateAt: "2")
        r.hPolicy = policy; r.firstBlock = firstBlock; r.recalibrateBN = recalibrate
        return r
    }

    @Test("--h-policy preserve --recalibrate-bn 2: Σh kept, lineage, metrics; = surgery + recalibration by hand; resume repeats it")
    func preserveWithRecalibration() throws {
        let dir = try F.scratch()
        _ = try Trainer(Self.request(out: dir, policy: .preserve, recalibrate: 2), quiet: true).run()
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        let c0 = try CheckpointIO.read(path: dir + "/cycle-0.h5")
        // Appendix B stage 1: block 0 keeps h = 1, old block 1's three copies take 1/3 each.
        let third = 1.0 / 3
        #expect(last.network.stepSizes == [[0.5, 0.5, 0.5, 0.5], [1, third, third, third]])
        #expect(last.lineage.map(\.op) == ["init", "train", "interpolate", "recalibrate", "train"])
        #expect(last.lineage[2].args["h_policy"] == .string("preserve"))
        let rec = last.lineage[3].args
        #expect(rec["batches"] == .int(2) && rec["batch_size"] == .int(8) && rec["seed"] == .int(7) && rec["epoch"] == .int(2))
        let cfg = try TrainConfig.parse(try #require(last.training).config, file: "")
        #expect(cfg.hPolicy == .preserve && cfg.recalibrateBN == 2)
        let jump = try #require(try F.metrics(dir, type: "interpolate").first)
        #expect(jump["h_policy"] == .string("preserve") && jump["recalibrate_bn"] == .int(2))
        for key in ["test_error_before", "test_error_after", "test_error_recalibrated"] {
            let v = try #require(F.number(jump[key]), "\(key) missing")
            #expect(v >= 0 && v <= 1)
        }

        // By hand: interpolate cycle-0.h5 with the same policy, recalibrate from the same
        // batches (epoch 2 of seed 7, batch 8, Fashion-MNIST augmentation: pad 4, no flip),
        // resume: the same final tensors, bit for bit.
        let (cut, _) = try Surgery.interpolate(c0, hPolicy: .preserve, parentSHA256: try FileDigest.sha256(fileAt: dir + "/cycle-0.h5"))
        let train = try DatasetSelection(kind: .fashionMNIST, dataDirectory: Fixtures.dir("fashion-mnist")).load(.train)
        let settings = RecalibrationSettings(batches: 2, batchSize: 8, seed: 7, epoch: 2,
                                             augmentation: Augmentation(padding: 4, flip: false))
        let recal = try Recalibration.recalibrated(cut, train: train, dataset: "fashion-mnist", settings: settings, threads: 1)
        #expect(recal.lineage.last?.kind == .recalibrate)
        // Only running statistics differ from the interpolated network.
        for (a, b) in zip(cut.network.namedTensors, recal.network.namedTensors) where a.tensor != b.tensor {
            #expect(a.path.hasSuffix("running_mean") || a.path.hasSuffix("running_var"), "\(a.path) changed")
        }
        #expect(!F.differingPaths(cut, recal).isEmpty)
        let dir2 = try F.scratch()
        try CheckpointIO.write(recal, to: dir2 + "/surgery.h5")
        _ = try Trainer(F.resume(dir2 + "/surgery.h5"), quiet: true).run()
        #expect(F.differingPaths(last, try CheckpointIO.read(path: dir2 + "/last.h5")).isEmpty)

        // Resuming cycle-0.h5 (saved before the interpolation) repeats policy and recalibration.
        let dir3 = try F.scratch()
        try FileManager.default.copyItem(atPath: dir + "/cycle-0.h5", toPath: dir3 + "/cycle-0.h5")
        _ = try Trainer(F.resume(dir3 + "/cycle-0.h5"), quiet: true).run()
        let again = try CheckpointIO.read(path: dir3 + "/last.h5")
        #expect(F.differingPaths(last, again).isEmpty)
        #expect(again.lineage.map(\.op) == ["init", "train", "interpolate", "recalibrate", "train"])

        // Without recalibration the tensors differ (the recalibration did something).
        let dir4 = try F.scratch()
        _ = try Trainer(Self.request(out: dir4, policy: .preserve, recalibrate: nil), quiet: true).run()
        let plain = try CheckpointIO.read(path: dir4 + "/last.h5")
        #expect(!F.differingPaths(last, plain).isEmpty)
        #expect(plain.lineage.map(\.op) == ["init", "train", "interpolate", "train"])
        #expect(try F.metrics(dir4, type: "interpolate").first?["test_error_recalibrated"] == nil)
    }

    @Test("--first-block identity in a run: an identity block after the shape-changing block 0, which keeps h")
    func identityFirstBlock() throws {
        let dir = try F.scratch()
        _ = try Trainer(Self.request(out: dir, policy: nil, firstBlock: .identity, recalibrate: nil), quiet: true).run()
        let c0 = try CheckpointIO.read(path: dir + "/cycle-0.h5")
        let (cut, _) = try Surgery.interpolate(c0, firstBlock: .identity)
        #expect(cut.network.stepSizes[1][0] == 1)
        #expect(cut.network.stages[1].blocks[1].origin.hasPrefix("identity"))
        let last = try CheckpointIO.read(path: dir + "/last.h5")
        #expect(last.network.stepSizes == cut.network.stepSizes)
        #expect(last.lineage[2].args["first_block"] == .string("identity"))
        #expect(last.lineage[2].args["h_policy"] == .string("halve"))
        let cfg = try TrainConfig.parse(try #require(last.training).config, file: "")
        #expect(cfg.firstBlock == .identity && cfg.hPolicyOrPaper == .halve && cfg.recalibrateBN == nil)
    }

    @Test("Resume refuses a conflicting --h-policy or --recalibrate-bn; a config without them means the paper's rule")
    func resumeConflicts() throws {
        let dir = try F.scratch()
        let t = try Trainer(Self.request(out: dir, policy: .preserve, recalibrate: 2), quiet: true)
        t.stopAtStep = 2
        _ = try t.run()
        func msg(_ r: TrainRequest) -> String {
            do { _ = try Trainer(r, quiet: true); return "" } catch { return "\(error)" }
        }
        var r = F.resume(dir + "/last.h5"); r.hPolicy = .halve
        #expect(msg(r).contains("--h-policy paper conflicts"))
        r = F.resume(dir + "/last.h5"); r.recalibrateBN = 3
        #expect(msg(r).contains("--recalibrate-bn 3 conflicts"))
        r = F.resume(dir + "/last.h5"); r.hPolicy = .preserve; r.recalibrateBN = 2
        #expect(msg(r) == "")
        var bad = Self.request(out: dir + "/b", policy: nil, recalibrate: 0)
        #expect(msg(bad).contains("--recalibrate-bn must be a positive"))
        bad = Self.request(out: dir + "/c", policy: nil, recalibrate: nil)
        #expect(msg(bad) == "")
        // A config written before issue 17 (no h_policy, no recalibrate_bn) reads as paper, off.
        let old = #"{"batch_size":8,"blocks":[1,1],"dataset":"fashion-mnist","epochs":3,"extra_cycle_starts":[],"first_block":"auto","flip":false,"interpolate_at":[2],"labels":"fine","log_format":"text","lr_max":0.5,"lr_min":0.001,"momentum":0.9,"padding":4,"reset_momentum":false,"restart_at":[],"seed":7,"steps_per_epoch":3,"weight_decay":0.0002,"widths":[4,8]}"#
        let c = try TrainConfig.parse(old, file: "old.h5")
        #expect(c.hPolicy == nil && c.hPolicyOrPaper == .halve && c.recalibrateBN == nil)
    }
}
