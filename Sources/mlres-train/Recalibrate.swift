import ArgumentParser
import Foundation
import MLResAnalysis
import MLResCLI
import MLResData
import MLResHDF5
import MLResModel

/// `mlres-train recalibrate`: BN recalibration (issue 17) of a checkpoint file. Every batch-norm
/// running mean and variance becomes the cumulative average of N training batches' statistics
/// (training-mode forward, PyTorch `momentum=None`; see ``Recalibration``); no weight changes.
/// The output gets one `recalibrate` lineage event; optimizer and training state are kept.
///
/// Exit status: 0 written; 2 unreadable checkpoint or dataset, a network that does not fit the
/// dataset, an existing OUT without `--force`, OUT = CKPT, bad numbers; 64 malformed flags.
struct Recalibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-estimate every BN running mean/variance from N training batches (no weight change).",
        discussion: """
        The batches are the training set in the SplitMix64 order of --seed (batch 0, 1, ... of \
        epoch 0; the last partial batch of an epoch is dropped), with the training augmentation \
        (the checkpoint's training config, else the dataset's defaults; --pad/--flip override), \
        standardised with the checkpoint's input mean/std. Each batch's per-channel mean and \
        biased variance come from a training-mode forward pass; the running mean becomes their \
        equal-weight average and the running variance the average of the unbiased (M/(M-1)) \
        variances, as PyTorch's BatchNorm with momentum=None after reset_running_stats(). \
        Same flags, same file: the statistics are deterministic for a given seed.
        Exit status: 0 written, 2 unreadable or unfit checkpoint/dataset or refused output, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Checkpoint to recalibrate (never modified).", valueName: "CKPT"))
    var checkpoint: String

    @Option(help: "cifar10, cifar100, stl10 or fashion-mnist (its training split is used).")
    var dataset: DatasetKind
    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Folder with the official files (fashion-mnist: default the Debian package's).", valueName: "DIR"))
    var dataDir: String?
    @Option(help: ArgumentHelp("CIFAR-100 labels (default: the checkpoint's training config, else fine).", valueName: "fine|coarse"))
    var labels: LabelSet?
    @Option(name: .customLong("train-subset"), help: ArgumentHelp("Use the first N training images.", valueName: "N"))
    var trainSubset: Int?
    @Option(help: ArgumentHelp("Number of training batches N (default \(RecalibrationSettings.defaultBatches)).", valueName: "N"))
    var batches: Int = RecalibrationSettings.defaultBatches
    @Option(name: [.customLong("batch-size"), .customLong("batch")], help: "Images per batch (default: the checkpoint's training batch size, else the dataset's default, 100 / STL-10 32).")
    var batchSize: Int?
    @Option(help: "Seed of the batches' order and augmentation (default 0).")
    var seed: UInt64 = 0
    @Option(name: .customLong("pad"), help: "Zero padding before the random crop (default: the training config's, else the dataset's).")
    var padding: Int?
    @Flag(inversion: .prefixedNo, help: "Random horizontal flip (default: the training config's, else the dataset's).")
    var flip: Bool?
    @Option(help: "oneDNN threads (default all cores).")
    var threads: Int?
    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output checkpoint.", valueName: "OUT"))
    var output: String
    @Flag(help: "Replace OUT if it exists (the input itself can never be the output).")
    var force = false
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if batches < 1 { throw ValidationError("--batches must be at least 1 (got \(batches))") }
        if let b = batchSize, b < 1 { throw ValidationError("--batch-size must be at least 1 (got \(b))") }
        if let p = padding, p < 0 { throw ValidationError("--pad must be >= 0 (got \(p))") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be positive (got \(t))") }
        if let n = trainSubset, n < 1 { throw ValidationError("--train-subset must be positive (got \(n))") }
        if labels == .coarse && dataset != .cifar100 {
            throw ValidationError("--labels coarse applies to cifar100 only, not \(dataset.rawValue)")
        }
    }

    func run() throws {
        if URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: checkpoint).standardizedFileURL.resolvingSymlinksInPath().path {
            throw cliFailure("\(output): the output would replace the input; the input is never modified (choose another -o)")
        }
        if !force && FileManager.default.fileExists(atPath: output) {
            throw cliFailure("\(output): already exists (use --force to replace it)")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: checkpoint, isDirectory: &isDir) else { throw cliFailure("\(checkpoint): no such file") }
        if isDir.boolValue { throw cliFailure("\(checkpoint): is a directory, not a checkpoint file") }
        let loaded: LoadedCheckpoint
        do { loaded = try CheckpointIO.load(path: checkpoint) } catch let e as CheckpointError {
            throw cliFailure(e.description)
        } catch { throw cliFailure("\(checkpoint): \(error)") }
        let ckpt = loaded.checkpoint
        let labelSet = try refusingErrors {
            try TrainingDataRecord.labels(explicit: labels, dataset: dataset, checkpoints: [(checkpoint, ckpt)])
        }
        let selection = DatasetSelection(kind: dataset, dataDirectory: dataDir, labels: labelSet, trainSubset: trainSubset)
        let train = try refusingErrors { try selection.load(.train) }
        let settings = RecalibrationSettings.forCheckpoint(ckpt, dataset: dataset, batches: batches, batchSize: batchSize,
                                                           seed: seed, padding: padding, flip: flip)
        let out = try refusingErrors {
            do {
                return try Recalibration.recalibrated(ckpt, train: train, dataset: dataset.rawValue, settings: settings,
                                                      threads: threads, parentSHA256: loaded.sha256)
            } catch let e as AnalysisError { throw AnalysisError("\(checkpoint): \(e.description) (--dataset \(dataset.rawValue))") }
        }
        do {
            try CheckpointIO.write(out, to: output, options: CheckpointWriteOptions(overwrite: force))
        } catch let e as CheckpointError {
            throw cliFailure(e.description)
        } catch { throw cliFailure("\(output): cannot write: \(error)") }
        let a = settings.augmentation
        if json {
            let obj: [String: JSONValue] = [
                "input": .string(checkpoint), "input_sha256": .string(loaded.sha256), "output": .string(output),
                "recalibrate": .object(settings.lineageArgs(dataset: dataset.rawValue)),
            ]
            print((try? JSONText.compact(obj)) ?? "{}")
        } else {
            print("recalibrated \(ckpt.network.blocksDescription): every BN running mean/variance from \(settings.batches) batches of \(settings.batchSize) \(dataset.rawValue) training images (seed \(seed), pad \(a.padding), flip \(a.flip ? "on" : "off"))")
            print("wrote \(output)")
        }
    }
}
