import Foundation
import MLResData
import MLResEngine
import MLResModel

/// Which training batches a BN recalibration (issue 17) averages over, and how its lineage
/// event reads. The averaging itself is the engine's
/// ``MLResEngine/NetworkExecutor/recalibrateBatchNorm(batches:next:)`` (PyTorch's
/// `momentum=None` cumulative average, see `Sources/MLResEngine/Recalibration.swift`).
///
/// The batches are those the trainer would draw: the training set through a ``TrainingLoader``
/// with the given augmentation (random crop after zero padding, flip), standardised with the
/// network's own input mean/std, in the SplitMix64 order of `seed`, starting at batch 0 of
/// `epoch` (continuing into the next epoch when `batches` exceeds one epoch); every batch has
/// `batchSize` images (the last partial batch of an epoch is dropped). A pure function of
/// (training set, seed, epoch, batch size, augmentation): the same settings give the same
/// batches and, on one machine and thread count, the same statistics.
public struct RecalibrationSettings: Sendable, Equatable {
    /// N, the number of batches (≥ 1).
    public var batches: Int
    /// Images per batch (≥ 1, at most the training set).
    public var batchSize: Int
    /// Seed of the data order and augmentation.
    public var seed: UInt64
    /// Epoch of the data order whose batches are used (0 for `mlres-train recalibrate`; the
    /// trainer uses the epoch that follows the interpolation).
    public var epoch: Int
    public var augmentation: Augmentation

    public init(batches: Int, batchSize: Int, seed: UInt64 = 0, epoch: Int = 0, augmentation: Augmentation) {
        self.batches = batches; self.batchSize = batchSize; self.seed = seed; self.epoch = epoch
        self.augmentation = augmentation
    }

    /// The settings for recalibrating `checkpoint` on `dataset`: each value as given, else as
    /// the checkpoint's training config records it (when it was trained on `dataset`), else the
    /// dataset's defaults (batch 100 / STL-10 32, pad 4 / STL-10 12, flip except Fashion-MNIST).
    /// `mlres-train recalibrate`, `mlres-eval lesion --recalibrate-bn` and `/v1/evaluations` use it.
    public static func forCheckpoint(_ checkpoint: Checkpoint, dataset: DatasetKind, batches: Int, batchSize: Int? = nil,
                                     seed: UInt64 = 0, padding: Int? = nil, flip: Bool? = nil) -> RecalibrationSettings {
        let record = TrainingDataRecord(checkpoint).flatMap { $0.dataset == dataset ? $0 : nil }
        return RecalibrationSettings(
            batches: batches, batchSize: batchSize ?? record?.batchSize ?? dataset.defaultBatchSize, seed: seed,
            augmentation: Augmentation(padding: padding ?? record?.padding ?? dataset.defaultPadding,
                                       flip: flip ?? record?.flip ?? dataset.defaultFlip))
    }

    /// Default number of batches of `mlres-train recalibrate` and `mlres-eval lesion`.
    public static let defaultBatches = 100

    /// The arguments of the `recalibrate` lineage event (``LineageOp/recalibrate``): `batches`,
    /// `batch_size`, `seed`, `epoch`, `padding`, `flip`, `dataset`, and `images` (N × batch size).
    public func lineageArgs(dataset: String) -> [String: JSONValue] {
        ["batches": .int(batches), "batch_size": .int(batchSize), "seed": .int(Int(truncatingIfNeeded: seed)),
         "epoch": .int(epoch), "padding": .int(augmentation.padding), "flip": .bool(augmentation.flip),
         "dataset": .string(dataset), "images": .int(batches * batchSize),
         "statistics": .string("cumulative average (momentum=None)")]
    }

    /// Checks the numbers against the training set; the message names the flag.
    public func validate(trainingImages: Int) throws {
        guard batches >= 1 else { throw AnalysisError("--batches must be at least 1 (got \(batches))") }
        guard batchSize >= 1 else { throw AnalysisError("--batch-size must be at least 1 (got \(batchSize))") }
        guard batchSize <= trainingImages else {
            throw AnalysisError("--batch-size \(batchSize) is larger than the \(trainingImages) training images")
        }
    }
}

public enum Recalibration {
    /// The loader of ``RecalibrationSettings``' batches for `network` (its standardisation).
    /// `replica` of `replicas`: this process's slice of each batch (data-parallel training).
    public static func loader(_ network: Network, train: Dataset, settings s: RecalibrationSettings,
                              replica: Int = 0, replicas: Int = 1) throws -> TrainingLoader {
        try s.validate(trainingImages: train.count)
        let loader = try TrainingLoader(dataset: train, batchSize: s.batchSize, augmentation: s.augmentation,
                                        standardizer: Standardizer(mean: network.inputMean, std: network.inputStd),
                                        seed: s.seed, dropLast: true, prefetch: false,
                                        replica: replica, replicas: replicas)
        try loader.restore([s.seed, UInt64(s.epoch), 0])
        return loader
    }

    /// Recalibrates the network `executor` holds in place: its running statistics become the
    /// cumulative average of the batch statistics of the settings' batches. With `replicas` > 1
    /// every replica takes its slice of each batch (the caller averages the result over the
    /// replicas, or uses synchronised batch norm).
    /// - Throws: ``AnalysisError`` for bad settings; the engine's and loader's errors.
    public static func recalibrate(_ executor: NetworkExecutor, train: Dataset, settings: RecalibrationSettings,
                                   replica: Int = 0, replicas: Int = 1) throws {
        let loader = try loader(executor.network, train: train, settings: settings, replica: replica, replicas: replicas)
        try executor.recalibrateBatchNorm(batches: settings.batches) {
            let b = loader.next()
            return (b.images, b.count)
        }
    }

    /// `network` with recalibrated running statistics and nothing else changed, computed on
    /// a new executor of the settings' batch size.
    public static func recalibrated(_ network: Network, train: Dataset, settings: RecalibrationSettings,
                                    threads: Int? = nil) throws -> Network {
        try fits(network, train)
        try settings.validate(trainingImages: train.count)
        let executor = try NetworkExecutor(network: network, batchSize: settings.batchSize, threads: threads)
        try recalibrate(executor, train: train, settings: settings)
        let engine = try executor.exportNetwork()
        // Only the running statistics come from the engine; every other value stays bit-identical.
        var net = network
        for (s, stage) in engine.stages.enumerated() {
            for (b, blk) in stage.blocks.enumerated() {
                net.stages[s].blocks[b].bn1.runningMean = blk.bn1.runningMean
                net.stages[s].blocks[b].bn1.runningVar = blk.bn1.runningVar
                net.stages[s].blocks[b].bn2.runningMean = blk.bn2.runningMean
                net.stages[s].blocks[b].bn2.runningVar = blk.bn2.runningVar
            }
        }
        net.headBN.runningMean = engine.headBN.runningMean
        net.headBN.runningVar = engine.headBN.runningVar
        return net
    }

    /// The checkpoint with recalibrated running statistics and one `recalibrate` lineage event
    /// (`parentSHA256`: the SHA-256 of the input file). Optimizer and training state are kept.
    public static func recalibrated(_ ckpt: Checkpoint, train: Dataset, dataset: String,
                                    settings: RecalibrationSettings, threads: Int? = nil,
                                    parentSHA256: String? = nil) throws -> Checkpoint {
        var out = ckpt
        out.network = try recalibrated(ckpt.network, train: train, settings: settings, threads: threads)
        out.lineage.append(LineageEvent(.recalibrate, args: settings.lineageArgs(dataset: dataset),
                                        parentSHA256: parentSHA256))
        return out
    }

    /// The network must take the training images and predict their classes.
    public static func fits(_ net: Network, _ train: Dataset) throws {
        guard net.inputShape == train.imageShape else {
            throw AnalysisError("the network takes \(Tensor.describe(net.inputShape)) inputs but the training images are \(Tensor.describe(train.imageShape))")
        }
        guard net.numClasses == train.numClasses else {
            throw AnalysisError("the network has \(net.numClasses) classes but the training set has \(train.numClasses)")
        }
    }
}
