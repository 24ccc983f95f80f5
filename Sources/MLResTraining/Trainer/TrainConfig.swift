import Foundation
import MLResData
import MLResModel

/// The whole configuration of a training run, stored as JSON text in the checkpoint's
/// `/training/config` so that `--resume` continues with exactly the same settings.
///
/// Besides the flags, two fields record where a run stands that the fixed attributes of
/// `/training` do not cover: ``extraCycleStarts`` (global steps where a resume after surgery
/// started a new learning-rate cycle) and ``partialEpoch`` (running sums of the epoch in
/// progress when a checkpoint is written mid-epoch, e.g. on SIGTERM).
public struct TrainConfig: Codable, Sendable, Equatable {
    /// `--dataset` (stored as its spelling: cifar10, cifar100, stl10, fashion-mnist).
    public var dataset: DatasetKind
    /// `--data-dir`, nil for the dataset's default (Fashion-MNIST: the Debian package).
    public var dataDir: String?
    /// `--labels`: fine, or coarse (CIFAR-100 only).
    public var labels: LabelSet
    public var trainSubset: Int?
    public var testSubset: Int?
    /// Blocks per stage and widths of the network the run started with.
    public var blocks: [Int]
    public var widths: [Int]
    /// Total epochs of the run.
    public var epochs: Int
    /// Epoch counts after which the network is interpolated and a new cycle starts.
    public var interpolateAt: [Int]
    /// Epoch counts after which a new cycle starts without interpolation (the baselines).
    public var restartAt: [Int]
    public var batchSize: Int
    public var lrMax: Double
    public var lrMin: Double
    public var momentum: Double
    public var weightDecay: Double
    /// Augmentation: zero padding before the random crop, and the random horizontal flip.
    public var padding: Int
    public var flip: Bool
    /// Seed of the initial network (fresh runs), the data order and the augmentation.
    public var seed: UInt64
    /// oneDNN threads (nil: all cores). Exact resume needs the same value.
    public var threads: Int?
    /// Zero the momentum buffers at an interpolation instead of mapping them like the weights.
    public var resetMomentum: Bool
    /// Which old block new block 1 of a stage copies at an interpolation (see `mlres-surgery interpolate`).
    public var firstBlock: Surgery.FirstBlockPolicy
    /// `--h-policy`: the step sizes at an interpolation (`Surgery.StepPolicy`; nil, as in files
    /// written before issue 17, is the paper's rule ``hPolicyOrPaper``).
    public var hPolicy: Surgery.StepPolicy?
    /// `--recalibrate-bn N`: after each interpolation, re-estimate every BN running statistic
    /// from N training batches before training continues (issue 17; nil: off).
    public var recalibrateBN: Int?
    /// Also log every N optimizer steps (nil: once per epoch).
    public var logEvery: Int?
    /// "text" or "json" (console output; RUN/metrics.jsonl is always JSON).
    public var logFormat: String
    /// Optimizer steps per epoch the run was planned with (checked on resume: other data → error).
    public var stepsPerEpoch: Int
    /// Global steps at which a resume after surgery started a new cycle.
    public var extraCycleStarts: [Int]
    /// Sums of the epoch in progress (nil at an epoch boundary).
    public var partialEpoch: PartialEpoch?

    enum CodingKeys: String, CodingKey {
        case dataset, dataDir = "data_dir", labels, trainSubset = "train_subset", testSubset = "test_subset"
        case blocks, widths, epochs, interpolateAt = "interpolate_at", restartAt = "restart_at"
        case batchSize = "batch_size", lrMax = "lr_max", lrMin = "lr_min", momentum
        case weightDecay = "weight_decay", padding, flip, seed, threads
        case resetMomentum = "reset_momentum", firstBlock = "first_block", hPolicy = "h_policy"
        case recalibrateBN = "recalibrate_bn", logEvery = "log_every"
        case logFormat = "log_format", stepsPerEpoch = "steps_per_epoch"
        case extraCycleStarts = "extra_cycle_starts", partialEpoch = "partial_epoch"
    }

    /// Running sums of an unfinished epoch, so that its history row after a resume is the one
    /// an uninterrupted run writes.
    public struct PartialEpoch: Codable, Sendable, Equatable {
        public var lossSum: Double
        public var correct: Int
        public var seen: Int
        public var seconds: Double
        public var lrStart: Double
        enum CodingKeys: String, CodingKey {
            case lossSum = "loss_sum", correct, seen, seconds, lrStart = "lr_start"
        }
    }

    /// The step-size rule of an interpolation: `--h-policy`, default the paper's (halve).
    public var hPolicyOrPaper: Surgery.StepPolicy { hPolicy ?? .halve }

    /// The dataset flags as a ``DatasetSelection``.
    public var selection: DatasetSelection {
        DatasetSelection(kind: dataset, dataDirectory: dataDir, labels: labels,
                         trainSubset: trainSubset, testSubset: testSubset)
    }

    /// Cycle boundaries (epochs) from both lists, sorted.
    public var boundaries: [Int] { Array(Set(interpolateAt + restartAt)).sorted() }

    /// Compact JSON text with sorted keys (what `/training/config` holds).
    public var jsonText: String {
        (try? JSONText.compact(self)) ?? "{}"
    }

    /// Parses `/training/config`.
    public static func parse(_ text: String, file: String) throws -> TrainConfig {
        do {
            return try JSONDecoder().decode(TrainConfig.self, from: Data(text.utf8))
        } catch {
            throw TrainError("\(file): /training/config is not a configuration this trainer wrote (\(error))")
        }
    }
}

/// The command line of a training run before defaults are applied: every field nil unless the
/// user gave the flag, so that a resume can tell a conflicting flag from an unset one.
public struct TrainRequest: Sendable {
    public var dataset: DatasetKind?
    public var dataDir: String?
    public var labels: LabelSet?
    public var trainSubset: Int?
    public var testSubset: Int?
    /// Blocks per stage (`--blocks 2-2-2`) and stage widths (`--widths 16,32,64`).
    public var blocks: [Int]?
    public var widths: [Int]?
    public var epochs: Int?
    /// Epochs after which to interpolate / restart the learning-rate cycle.
    public var interpolateAt: [Int]?
    public var restartAt: [Int]?
    public var batchSize: Int?
    public var lrMax: Double?
    public var lrMin: Double?
    public var momentum: Double?
    public var weightDecay: Double?
    public var padding: Int?
    public var flip: Bool?
    public var seed: UInt64?
    public var threads: Int?
    public var resetMomentum: Bool = false
    public var firstBlock: Surgery.FirstBlockPolicy?
    /// `--h-policy` (default the paper's rule, halve).
    public var hPolicy: Surgery.StepPolicy?
    /// `--recalibrate-bn N`.
    public var recalibrateBN: Int?
    public var logEvery: Int?
    public var logFormat: String?
    /// `--out RUN` (default on resume: the checkpoint's folder).
    public var out: String?
    /// `--resume CKPT`.
    public var resume: String?
    /// Start a fresh run in a folder that already holds one.
    public var force: Bool = false
    /// `--sync-bn`: with several ranks, batch statistics over the global batch (a launch
    /// setting like `--threads`: not stored, a resume may change it).
    public var syncBN: Bool = false

    public init() {}
}

/// A training request that cannot run, with the message to print (it names the flag or file).
public struct TrainError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

extension TrainConfig {
    /// The configuration of a fresh run: the flags, with the paper's defaults for the rest
    /// (batch 100 / 32 for STL-10, lr 0.5 → 0.001, momentum 0.9, weight decay 2e-4, pad 4 /
    /// 12 for STL-10, flip except Fashion-MNIST). `network` is the checkpoint a run starts
    /// from (an `mlres-train init` file), whose depth then replaces the `--blocks` default.
    /// `stepsPerEpoch` is filled in once the data is read.
    public static func fresh(_ r: TrainRequest, network: Network? = nil) throws -> TrainConfig {
        guard let kind = r.dataset else { throw TrainError("--dataset is required (cifar10, cifar100, stl10 or fashion-mnist)") }
        var blocks = r.blocks ?? [2, 2, 2]
        var widths = r.widths ?? [16, 32, 64]
        func dashed(_ v: [Int], _ sep: String) -> String { v.map(String.init).joined(separator: sep) }
        if let bad = (blocks + widths).first(where: { $0 <= 0 }) {
            throw TrainError("--blocks/--widths: \(bad) is not a positive number (--blocks \(dashed(blocks, "-")), --widths \(dashed(widths, ",")))")
        }
        if let net = network {
            if r.blocks != nil && blocks != net.stageBlocks {
                throw TrainError("--blocks \(dashed(blocks, "-")) but the checkpoint's network is \(net.blocksDescription)")
            }
            if r.widths != nil && widths != net.stageWidths {
                throw TrainError("--widths \(dashed(widths, ",")) but the checkpoint's network has widths \(dashed(net.stageWidths, ","))")
            }
            blocks = net.stageBlocks; widths = net.stageWidths
        }
        guard blocks.count == widths.count else {
            throw TrainError("--blocks has \(blocks.count) stages but --widths has \(widths.count)")
        }
        let labels = r.labels ?? .fine
        if labels == .coarse && kind != .cifar100 { throw TrainError("--labels coarse applies to cifar100 only") }
        var c = TrainConfig(
            dataset: kind, dataDir: r.dataDir, labels: labels,
            trainSubset: r.trainSubset, testSubset: r.testSubset, blocks: blocks, widths: widths,
            epochs: r.epochs ?? 160, interpolateAt: r.interpolateAt ?? [], restartAt: r.restartAt ?? [],
            batchSize: r.batchSize ?? kind.defaultBatchSize, lrMax: r.lrMax ?? 0.5, lrMin: r.lrMin ?? 0.001,
            momentum: r.momentum ?? 0.9, weightDecay: r.weightDecay ?? 2e-4,
            padding: r.padding ?? kind.defaultPadding, flip: r.flip ?? kind.defaultFlip, seed: r.seed ?? 0,
            threads: r.threads, resetMomentum: r.resetMomentum, firstBlock: r.firstBlock ?? .auto,
            hPolicy: r.hPolicy ?? .halve, recalibrateBN: r.recalibrateBN,
            logEvery: r.logEvery, logFormat: r.logFormat ?? "text", stepsPerEpoch: 0,
            extraCycleStarts: [], partialEpoch: nil)
        try c.validate()
        return c
    }

    /// The configuration of a resumed run: the stored one, with the flags a resume may change
    /// (`--epochs`, `--data-dir`, `--threads`, `--reset-momentum`, logging). Any other training
    /// flag must agree with the stored value.
    public func resumed(with r: TrainRequest, file: String) throws -> TrainConfig {
        var c = self
        func same<T: Equatable>(_ flag: String, _ given: T?, _ stored: T) throws {
            if let g = given, g != stored {
                throw TrainError("\(flag) \(g) conflicts with the checkpoint being resumed (\(file) was trained with \(stored)); drop the flag or start a new run")
            }
        }
        try same("--dataset", r.dataset?.rawValue, dataset.rawValue)
        try same("--labels", r.labels?.rawValue, labels.rawValue)
        try same("--train-subset", r.trainSubset, trainSubset ?? -1)
        try same("--test-subset", r.testSubset, testSubset ?? -1)
        try same("--batch-size", r.batchSize, batchSize)
        try same("--lr-max", r.lrMax, lrMax)
        try same("--lr-min", r.lrMin, lrMin)
        try same("--momentum", r.momentum, momentum)
        try same("--weight-decay", r.weightDecay, weightDecay)
        try same("--pad", r.padding, padding)
        try same("--flip", r.flip, flip)
        try same("--seed", r.seed, seed)
        try same("--first-block", r.firstBlock?.rawValue, firstBlock.rawValue)
        try same("--h-policy", r.hPolicy.map { $0 == .halve ? "paper" : $0.rawValue }, hPolicyOrPaper == .halve ? "paper" : hPolicyOrPaper.rawValue)
        try same("--recalibrate-bn", r.recalibrateBN.map(String.init), recalibrateBN.map(String.init) ?? "off")
        try same("--interpolate-at", r.interpolateAt, interpolateAt)
        try same("--restart-at", r.restartAt, restartAt)
        if let e = r.epochs { c.epochs = e }
        if let d = r.dataDir { c.dataDir = d }
        if let t = r.threads { c.threads = t }
        if r.resetMomentum { c.resetMomentum = true }
        if let l = r.logEvery { c.logEvery = l }
        if let f = r.logFormat { c.logFormat = f }
        try c.validate()
        return c
    }

    /// Checks the numbers; the message names the flag.
    func validate() throws {
        guard epochs > 0 else { throw TrainError("--epochs must be positive, got \(epochs)") }
        guard batchSize > 0 else { throw TrainError("--batch-size must be positive, got \(batchSize)") }
        guard lrMax.isFinite, lrMin.isFinite, lrMin >= 0, lrMax >= lrMin else {
            throw TrainError("learning rates need 0 <= --lr-min <= --lr-max, got \(lrMin) and \(lrMax)")
        }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw TrainError("--momentum must be in [0, 1), got \(momentum)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw TrainError("--weight-decay must be >= 0, got \(weightDecay)") }
        guard padding >= 0 else { throw TrainError("--pad must be >= 0, got \(padding)") }
        if let t = threads, t < 1 { throw TrainError("--threads must be positive, got \(t)") }
        if let l = logEvery, l < 1 { throw TrainError("--log-every must be positive, got \(l)") }
        if let n = recalibrateBN, n < 1 { throw TrainError("--recalibrate-bn must be a positive number of batches, got \(n)") }
        guard logFormat == "text" || logFormat == "json" else { throw TrainError("--log-format \(logFormat): expected text or json") }
        if let n = trainSubset, n < 1 { throw TrainError("--train-subset must be positive, got \(n)") }
        if let n = testSubset, n < 1 { throw TrainError("--test-subset must be positive, got \(n)") }
        let both = Set(interpolateAt).intersection(restartAt)
        if let e = both.min() { throw TrainError("epoch \(e) is in both --interpolate-at and --restart-at") }
        do {
            try CyclePlan.checkBoundaries(interpolateAt, epochs: epochs, flag: "--interpolate-at")
            try CyclePlan.checkBoundaries(restartAt, epochs: epochs, flag: "--restart-at")
        } catch let e as ScheduleError { throw TrainError(e.description) }
    }
}
