import Foundation
import MLResAnalysis
import MLResData
import MLResEngine
import MLResHDF5
import MLResModel

/// How a call to ``Trainer/run()`` ended.
public enum TrainOutcome: Sendable, Equatable {
    /// Every epoch trained; `RUN/last.h5` holds the final network.
    case finished(checkpoint: String, testError: Double)
    /// Stopped by SIGINT/SIGTERM (or ``StopRequest/request(_:)``) after a step; `RUN/last.h5`
    /// holds the state to resume from.
    case interrupted(checkpoint: String, epoch: Int, globalStep: Int)
}

/// The multi-level trainer (the paper's Algorithm 1 with the cyclic learning rate).
///
/// A run trains `config.epochs` epochs of SGD (momentum, weight decay) with one cosine
/// learning-rate cycle per segment of the schedule; the segments end at the `--interpolate-at`
/// epochs, where the network is interpolated (every stage doubles its blocks and halves h,
/// exactly `mlres-surgery interpolate`) and the executor is rebuilt, and at the `--restart-at`
/// epochs, where only the learning rate restarts (the paper's first-cycle/last-cycle baselines).
///
/// Files in the run folder: `last.h5` after every epoch (atomic; also on SIGINT/SIGTERM,
/// mid-epoch), `cycle-K.h5` at the end of cycle K (0-based, before any interpolation),
/// `metrics.jsonl` (one JSON line per epoch, and per `--log-every` steps).
///
/// Exact resume: everything that decides the next step is in the checkpoint: the parameters,
/// BN statistics, momentum buffers, the data order and augmentation (a pure function of seed,
/// epoch and batch index: `/training/rng_state` = `[seed, epoch, batch]`), the step counters
/// and the config (including the sums of an unfinished epoch).
public final class Trainer {
    /// The resolved configuration (stored in `/training/config`).
    public private(set) var config: TrainConfig
    /// Run folder.
    public let outDir: String
    public let train: Dataset
    public let test: Dataset
    /// Optimizer steps per epoch (the last partial batch of an epoch is dropped).
    public let stepsPerEpoch: Int
    public private(set) var plan: CyclePlan
    public private(set) var globalStep: Int
    public private(set) var epochsDone: Int
    /// What the run started from, for the start message.
    public let startDescription: String

    private var executor: NetworkExecutor
    private let loader: TrainingLoader
    private let evalSource: EvalBatches
    /// The standardised test batches, kept when they fit in 256 MB (else made per evaluation).
    private let evalCache: [Batch]?
    private var lineage: [LineageEvent]
    private var history: [String: [Double]]
    /// The step count ends a cycle whose transition (interpolation) has not been done yet.
    private var transitionPending: Bool
    private var partial: TrainConfig.PartialEpoch?
    private var epochClock = Date()
    private let resumed: Bool
    /// "train" events appended by this process.
    private var segments = 0
    private let stop: StopRequest
    /// (depth, test error) at the end of each cycle this process finished, for the summary.
    private var cycleResults: [(blocks: String, error: Double)] = []
    private let reporter: ProgressReporter
    /// The data-parallel job (``SingleProcess`` when alone); rank 0 alone writes files.
    private let group: ProcessGroup
    /// `--sync-bn`: batch statistics over the global batch (only with more than one rank).
    private let syncBN: Bool
    private var flatGradients: [Float] = []
    private var communication = CommunicationClock()

    /// Stop (as on SIGTERM: write `last.h5`, return ``TrainOutcome/interrupted``) once this
    /// many global steps are done; for tests and scripted pauses.
    public var stopAtStep: Int?

    /// `RUN/last.h5`.
    public var lastPath: String { (outDir as NSString).appendingPathComponent("last.h5") }
    /// `RUN/cycle-K.h5`.
    public func cyclePath(_ k: Int) -> String { (outDir as NSString).appendingPathComponent("cycle-\(k).h5") }

    /// Validates everything before any work: flags, the checkpoint to resume (readable, its
    /// config, its network against the data's image shape and class count), the data files,
    /// and the run folder. Throws ``TrainError``, `DatasetError` or `CheckpointError` naming
    /// the flag, file or HDF5 path at fault.
    ///
    /// - Parameters:
    ///   - quiet: no console output (metrics.jsonl is still written).
    ///   - group: the ranks of a data-parallel job (see docs/distributed.md): every rank trains
    ///     on `--batch-size / group.size` images of each global batch, gradients are summed
    ///     over the ranks before the SGD step, and rank 0 alone writes files.
    public init(_ request: TrainRequest, stop: StopRequest = StopRequest(), quiet: Bool = false,
                group: ProcessGroup = SingleProcess()) throws {
        self.stop = stop
        self.group = group
        syncBN = request.syncBN && group.size > 1
        // 1. The checkpoint to resume, if any, and the configuration.
        let ckpt = try Self.readCheckpointToResume(request.resume)
        let stored = try ckpt?.training.map { try TrainConfig.parse($0.config, file: request.resume!) }
        var cfg = try stored.map { try $0.resumed(with: request, file: request.resume!) }
            ?? TrainConfig.fresh(request, network: ckpt?.network)

        // 2. The data, and the schedule in optimizer steps.
        (train, test) = try cfg.selection.load()
        if let net = ckpt?.network { try Self.check(net, file: request.resume!, fits: train, config: cfg) }
        guard cfg.batchSize % group.size == 0 else {
            throw TrainError("--batch-size \(cfg.batchSize) is not a multiple of the \(group.size) ranks: every rank takes an equal slice of each global batch")
        }
        let spe = train.count / cfg.batchSize
        guard spe > 0 else {
            throw TrainError("--batch-size \(cfg.batchSize) is larger than the \(train.count) training images")
        }
        if stored != nil && cfg.stepsPerEpoch != spe {
            throw TrainError("\(request.resume!): trained with \(cfg.stepsPerEpoch) steps per epoch, but the training data now gives \(spe) (\(train.count) images, batch \(cfg.batchSize)): not the same data")
        }
        cfg.stepsPerEpoch = spe
        stepsPerEpoch = spe
        let schedule: CyclePlan
        do {
            schedule = try CyclePlan(epochs: cfg.epochs, stepsPerEpoch: spe, boundaries: cfg.boundaries,
                                     cosine: CosineCycle(lrMax: cfg.lrMax, lrMin: cfg.lrMin))
        } catch let e as ScheduleError { throw TrainError(e.description) }

        // 3. The run folder.
        outDir = try Self.prepareRunFolder(request, removesOldRun: group.rank == 0)

        // 4. The starting state.
        let start: StartState
        if let ck = ckpt, let ts = ck.training {
            start = try Self.resumeState(ck, ts, file: request.resume!, config: &cfg, schedule: schedule)
        } else {
            start = try Self.freshState(from: ckpt, file: request.resume, config: cfg, train: train, schedule: schedule)
        }
        history = start.history
        globalStep = start.globalStep; epochsDone = start.epochsDone; partial = start.partial
        transitionPending = start.transitionPending
        resumed = start.resumed
        plan = start.plan
        startDescription = start.description
        lineage = start.lineage
        cfg.partialEpoch = nil
        config = cfg

        // 5. Engine, data loaders, reporting.
        executor = try Self.makeExecutor(start.network, optimizer: start.optimizer, config: cfg, group: group, syncBN: syncBN)
        let standardizer = Standardizer(mean: start.network.inputMean, std: start.network.inputStd)
        loader = try TrainingLoader(dataset: train, batchSize: cfg.batchSize,
                                    augmentation: Augmentation(padding: cfg.padding, flip: cfg.flip),
                                    standardizer: standardizer, seed: cfg.seed, dropLast: true, prefetch: true,
                                    replica: group.rank, replicas: group.size)
        if let s = start.loaderState { try loader.restore(s) }
        let eb = try EvalBatches(dataset: test, batchSize: max(cfg.batchSize, 100), standardizer: standardizer)
        evalSource = eb
        evalCache = test.count * test.imageSize <= 64 << 20 ? (0 ..< eb.count).map { eb.batch($0) } : nil
        reporter = try ProgressReporter(format: cfg.logFormat, logEvery: cfg.logEvery,
                                        metricsPath: group.rank == 0 ? (outDir as NSString).appendingPathComponent("metrics.jsonl") : nil,
                                        quiet: quiet || group.rank != 0, bar: group.size == 1)
    }

    // MARK: - Setting up a run

    /// Where a run starts: the network, optimizer, counters and cycle plan.
    private struct StartState {
        var network: Network
        /// Momentum buffers to load (nil: zero).
        var optimizer: OptimizerState?
        var lineage: [LineageEvent]
        /// The loader's `[seed, epoch, batch]` to restore (nil: the beginning).
        var loaderState: [UInt64]?
        var history: [String: [Double]]
        var globalStep = 0
        var epochsDone = 0
        var partial: TrainConfig.PartialEpoch?
        var transitionPending = false
        var resumed = false
        var plan: CyclePlan
        var description: String
    }

    /// `--resume FILE` read (nil without the flag); errors name the flag and file.
    private static func readCheckpointToResume(_ path: String?) throws -> Checkpoint? {
        guard let path else { return nil }
        var isDir: ObjCBool = false
        var st = stat()
        guard lstat(path, &st) == 0 else { throw TrainError("--resume \(path): no such file") }
        // Anything else that exists (a dangling link, a FIFO, a locked file...) is named by the reader.
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw TrainError("--resume \(path): is a folder; give the checkpoint file, e.g. \(path)/last.h5")
        }
        return try CheckpointIO.read(path: path)
    }

    /// The checkpoint's network must take the data's images and predict its classes.
    private static func check(_ net: Network, file: String, fits train: Dataset, config cfg: TrainConfig) throws {
        let kind = cfg.dataset.rawValue
        guard net.inputShape == train.imageShape else {
            throw TrainError("\(file): the network takes \(Tensor.describe(net.inputShape)) inputs but --dataset \(kind) has \(Tensor.describe(train.imageShape)) images")
        }
        guard net.numClasses == train.numClasses else {
            throw TrainError("\(file): the network has \(net.numClasses) classes but --dataset \(kind)\(cfg.labels == .coarse ? " --labels coarse" : "") has \(train.numClasses)")
        }
    }

    /// `--out RUN` (default on resume: the checkpoint's folder), created if needed and checked
    /// writable; a folder holding a run is refused unless resuming or `--force` (which removes
    /// the old run's metrics and cycle snapshots).
    /// `removesOldRun`: false on every rank of a data-parallel job but rank 0.
    private static func prepareRunFolder(_ request: TrainRequest, removesOldRun: Bool) throws -> String {
        let out: String
        if let o = request.out { out = o }
        else if let r = request.resume { out = (r as NSString).deletingLastPathComponent.isEmpty ? "." : (r as NSString).deletingLastPathComponent }
        else { throw TrainError("--out RUN is required: the folder for last.h5, cycle-K.h5 and metrics.jsonl") }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw TrainError("--out \(out): exists and is not a folder") }
        } else {
            do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) }
            catch { throw TrainError("--out \(out): cannot create the folder (\(error.localizedDescription))") }
        }
        guard fm.isWritableFile(atPath: out) else { throw TrainError("--out \(out): folder is not writable") }
        let last = (out as NSString).appendingPathComponent("last.h5")
        if request.resume == nil && !request.force && fm.fileExists(atPath: last) {
            throw TrainError("--out \(out) already holds a run (\(last)); continue it with --resume \(last), choose another --out, or pass --force to start over")
        }
        if request.resume == nil && request.force && removesOldRun {
            // Starting over: the old run's metrics and cycle snapshots would mislead.
            for f in (try? fm.contentsOfDirectory(atPath: out)) ?? []
            where f == "metrics.jsonl" || (f.hasPrefix("cycle-") && f.hasSuffix(".h5")) {
                try? fm.removeItem(atPath: (out as NSString).appendingPathComponent(f))
            }
        }
        return out
    }

    /// Resuming a checkpoint the trainer wrote: its counters, loader position and history; a
    /// new cycle (at lr_max) when surgery changed the network since, or when a finished cycle
    /// is extended by `--epochs` (recorded in `config.extraCycleStarts`).
    private static func resumeState(_ ck: Checkpoint, _ ts: TrainingState, file: String, config cfg: inout TrainConfig,
                                    schedule: CyclePlan) throws -> StartState {
        guard ts.rngState.count == 3, ts.rngState[0] == cfg.seed, Int(ts.rngState[1]) == ts.epoch,
              ts.epoch * schedule.stepsPerEpoch + Int(ts.rngState[2]) == ts.globalStep else {
            throw TrainError("\(file): /training/rng_state \(ts.rngState) does not match epoch \(ts.epoch), global step \(ts.globalStep) and seed \(cfg.seed)")
        }
        guard ts.globalStep < schedule.totalSteps else {
            throw TrainError("\(file): the run is complete (\(ts.epoch) of \(cfg.epochs) epochs); pass a larger --epochs to train on (a new cycle starts at lr_max)")
        }
        let edited = ck.editedSinceTraining
        let cycleDone = ts.cycleSteps > 0 && ts.stepInCycle == ts.cycleSteps
        if edited || cycleDone {
            // Surgery since the last training, or a finished cycle extended by --epochs:
            // a new cycle starts here (lr back to lr_max).
            let probe = schedule.adding(starts: cfg.extraCycleStarts)
            if !probe.starts.contains(ts.globalStep) { cfg.extraCycleStarts.append(ts.globalStep) }
        }
        let optimizer = (edited && cfg.resetMomentum) ? nil : ck.optimizer
        return StartState(
            network: ck.network, optimizer: optimizer, lineage: ck.lineage, loaderState: ts.rngState,
            history: ts.history, globalStep: ts.globalStep, epochsDone: ts.epoch, partial: cfg.partialEpoch,
            // A cycle-K.h5 snapshot is taken before its interpolation; surgery replaces it.
            transitionPending: cycleDone && !edited, resumed: true,
            plan: schedule.adding(starts: cfg.extraCycleStarts),
            description: "resuming \(file) at epoch \(ts.epoch), step \(ts.globalStep)"
                + (edited ? " (network changed by surgery: new cycle at lr_max, momentum \(optimizer == nil ? "zero" : "mapped"))" : ""))
    }

    /// A run from its first step: a new network (`--blocks`, `--widths`, `--seed`) or the one
    /// of an `mlres-train init` file, with the input standardisation of the training set.
    private static func freshState(from ckpt: Checkpoint?, file: String?, config cfg: TrainConfig, train: Dataset,
                                   schedule: CyclePlan) throws -> StartState {
        let arch = Architecture(blocks: cfg.blocks, widths: cfg.widths, inputShape: train.imageShape,
                                numClasses: train.numClasses)
        if let e = arch.validationError() { throw TrainError("--blocks/--widths: \(e)") }
        var network: Network
        var optimizer: OptimizerState?
        let lineage: [LineageEvent]
        let description: String
        if let ck = ckpt, let file {
            network = ck.network; lineage = ck.lineage
            // An init file's optimizer has no buffers: nothing to load.
            optimizer = ck.optimizer.flatMap { $0.buffers.isEmpty ? nil : $0 }
            description = "training \(file) (\(network.blocksDescription)) from its first step"
        } else {
            network = Network.initialized(arch, seed: cfg.seed)
            lineage = [LineageEvent.initialization(arch, seed: cfg.seed)]
            description = "new run: \(network.blocksDescription), widths \(cfg.widths.map(String.init).joined(separator: ","))"
        }
        // Standardisation from the training set, stored with the network.
        let stats = ChannelStats(of: train)
        network.inputMean = stats.meanTensor.data
        network.inputStd = stats.stdTensor.data
        return StartState(network: network, optimizer: optimizer, lineage: lineage, loaderState: nil,
                          history: TrainingState().history, plan: schedule,
                          description: description)
    }

    /// An executor holding `network` and, if given, its momentum buffers, with the run's
    /// momentum and weight decay (at the start and after every interpolation).
    /// With N ranks the executor's batch is this rank's slice, `--batch-size / N`.
    private static func makeExecutor(_ network: Network, optimizer: OptimizerState?, config cfg: TrainConfig,
                                     group: ProcessGroup, syncBN: Bool) throws -> NetworkExecutor {
        let executor = try NetworkExecutor(network: network, batchSize: cfg.batchSize / group.size, threads: cfg.threads,
                                           replicaSum: syncBN ? ReplicaSum(replicas: group.size) { group.allreduceSum(&$0) } : nil)
        executor.momentum = cfg.momentum
        executor.weightDecay = cfg.weightDecay
        if var o = optimizer {
            o.momentum = cfg.momentum; o.weightDecay = cfg.weightDecay
            try executor.importOptimizerState(o)
        }
        return executor
    }

    /// Number of residual blocks of the current network.
    public var currentBlocks: String { executor.network.blocksDescription }

    /// Trains until the last epoch or a stop request.
    public func run() throws -> TrainOutcome {
        reporter.say(startDescription + "; \(train.count) training / \(test.count) test images, \(stepsPerEpoch) steps per epoch, \(plan.totalSteps) steps in all")
        if transitionPending { try cycleTransition() }
        appendTrainEvent()
        let runClock = Date()
        var runSteps = 0
        while globalStep < plan.totalSteps {
            // Every rank stops after the same step: the stop flag is reduced over the ranks.
            if group.any(stop.isRequested || stopAtStep == globalStep) { return try interrupt() }
            let pos = plan.position(ofStep: globalStep)
            if partial == nil {
                partial = .init(lossSum: 0, correct: 0, seen: 0, seconds: 0, lrStart: pos.lr)
            }
            if runSteps == 0 || globalStep % stepsPerEpoch == 0 { epochClock = Date() }
            let batch = loader.next()
            let r = try step(batch, lr: pos.lr)
            partial!.lossSum += r.lossSum
            partial!.correct += r.correct
            partial!.seen += r.count
            globalStep += 1; runSteps += 1
            let inEpoch = globalStep - epochsDone * stepsPerEpoch
            let elapsed = Date().timeIntervalSince(runClock)
            let p = partial!
            reporter.step(epoch: epochsDone, epochs: config.epochs, step: inEpoch, steps: stepsPerEpoch,
                          imagesPerSecond: Double(runSteps * config.batchSize) / max(elapsed, 1e-9),
                          loss: p.lossSum / Double(p.seen), error: 1 - Double(p.correct) / Double(p.seen), lr: pos.lr,
                          eta: elapsed / Double(runSteps) * Double(plan.totalSteps - globalStep))
            if let every = config.logEvery, globalStep % every == 0 {
                logStep(lr: pos.lr, imagesPerSecond: Double(runSteps * config.batchSize) / max(elapsed, 1e-9))
            }
            if inEpoch == stepsPerEpoch { try endEpoch(lastLR: pos.lr) }
        }
        let err = history["test_error"]?.last ?? .nan
        if cycleResults.count > 1 {
            reporter.say("test error by cycle: " + cycleResults.map { String(format: "%@ %.2f%%", $0.blocks, 100 * $0.error) }
                .joined(separator: " → "))
        }
        try reportDigest()
        reporter.say("done: \(epochsDone) epochs, \(currentBlocks) blocks, test error \(String(format: "%.2f", 100 * err))%; wrote \(lastPath)")
        return .finished(checkpoint: lastPath, testError: err)
    }

    // MARK: - Steps, epochs, cycles

    /// One optimizer step on `batch` at learning rate `lr`: forward and backward (training-mode
    /// BN; the gradient of the mean softmax cross-entropy), the check that loss and gradient are
    /// finite, then the SGD update. With N > 1 ranks `batch` is this rank's slice: the flat
    /// gradient is summed over the ranks (one MPI_Allreduce) and divided by N (each rank's
    /// gradient is that of its own mean loss), so every rank makes the same update; the loss
    /// sum and correct count are summed too. Returns the global batch's loss sum, correct
    /// count and size.
    ///
    /// - Throws: ``TrainError`` at the first non-finite loss or gradient, before the update;
    ///   nothing is written, so `RUN/last.h5` keeps the last finite state. (Every rank sees
    ///   the same summed values, so all ranks stop together.)
    private func step(_ batch: Batch, lr: Double) throws -> (lossSum: Double, correct: Int, count: Int) {
        let r = try executor.computeGradients(input: batch.images, labels: batch.labels.map { Int($0) })
        var loss = r.loss, correct = r.correct, count = batch.count
        if group.size > 1 {
            let clock = Date()
            let scale = 1 / Float(group.size)
            executor.withFlatGradients(&flatGradients) { b in
                group.allreduceSum(b)
                for i in b.indices { b[i] *= scale }
            }
            var sums = [r.loss * Double(batch.count), Double(r.correct)]
            group.allreduceSum(&sums)
            communication.seconds += Date().timeIntervalSince(clock)
            communication.calls += 1
            communication.bytes += flatGradients.count * MemoryLayout<Float>.size
            count = batch.count * group.size
            loss = sums[0] / Double(count); correct = Int(sums[1].rounded())
        }
        if !loss.isFinite {
            throw diverged("the loss is \(loss)", lr: lr)
        }
        if let bad = executor.firstNonFiniteGradient() {
            throw diverged("the gradient of \(bad.path) is \(bad.value) at element \(bad.index)", lr: lr)
        }
        executor.applySGD(lr: Float(lr))
        return (loss * Double(count), correct, count)
    }

    /// The error that stops a diverged run at the step in progress (1-based global step).
    private func diverged(_ what: String, lr: Double) -> TrainError {
        let kept = FileManager.default.fileExists(atPath: lastPath)
            ? "\(lastPath) keeps the last finite state (the last checkpoint written)"
            : "no checkpoint was written"
        return TrainError("training stopped: \(what) at step \(globalStep + 1) (epoch \(epochsDone + 1), step \(globalStep - epochsDone * stepsPerEpoch + 1)/\(stepsPerEpoch)), learning rate \(lr); \(kept). Try a smaller --lr-max")
    }

    private func logStep(lr: Double, imagesPerSecond: Double) {
        let p = partial!
        let loss = p.lossSum / Double(p.seen), err = 1 - Double(p.correct) / Double(p.seen)
        let step = globalStep - epochsDone * stepsPerEpoch
        reporter.record(["type": .string("step"), "epoch": .int(epochsDone + 1), "step_in_epoch": .int(step),
                         "global_step": .int(globalStep), "lr": .double(lr), "train_loss": .double(loss),
                         "train_error": .double(err), "images_per_second": .double(imagesPerSecond)])
        if reporter.mode == .lines {
            reporter.say(String(format: "epoch %d/%d step %d/%d loss %.4f err %.2f%% lr %.5f %.0f img/s",
                                epochsDone + 1, config.epochs, step, stepsPerEpoch, loss, 100 * err, lr, imagesPerSecond))
        }
    }

    private func endEpoch(lastLR: Double) throws {
        try averageRunningStatistics()
        try checkRanksAgree()
        let (testLoss, testError) = try evaluate()
        let p = partial!
        let seconds = p.seconds + Date().timeIntervalSince(epochClock)
        let trainLoss = p.lossSum / Double(p.seen), trainError = 1 - Double(p.correct) / Double(p.seen)
        let cycle = plan.position(ofStep: globalStep - 1).cycle
        epochsDone += 1
        let blocks = Double(executor.network.totalBlocks)
        let row: [String: Double] = ["epoch": Double(epochsDone), "global_step": Double(globalStep), "lr": lastLR,
                                     "train_loss": trainLoss, "train_error": trainError, "test_loss": testLoss,
                                     "test_error": testError, "wall_seconds": seconds, "blocks": blocks]
        for c in TrainingState.historyColumns { history[c, default: []].append(row[c]!) }
        partial = nil
        var rec: [String: JSONValue] = row.mapValues { .double($0) }
        rec["epoch"] = .int(epochsDone); rec["global_step"] = .int(globalStep); rec["blocks"] = .int(Int(blocks))
        rec["type"] = .string("epoch"); rec["cycle"] = .int(cycle); rec["lr_start"] = .double(p.lrStart)
        rec["depth"] = .string(currentBlocks)
        if group.size > 1 {
            rec["ranks"] = .int(group.size)
            rec["allreduce_seconds"] = .double(communication.seconds)
            rec["allreduce_calls"] = .int(communication.calls)
            rec["allreduce_bytes"] = .int(communication.bytes)
            communication.reset()
        }
        reporter.record(rec)
        if reporter.mode != .json {
            reporter.say(String(format: "epoch %d/%d %@ cycle %d: train loss %.4f err %.2f%% | test loss %.4f err %.2f%% | lr %.4f→%.4f | %.1fs",
                                epochsDone, config.epochs, currentBlocks, cycle, trainLoss, 100 * trainError,
                                testLoss, 100 * testError, p.lrStart, lastLR, seconds))
        }
        if plan.endsCycle(afterSteps: globalStep) {
            cycleResults.append((currentBlocks, testError))
            if reporter.mode != .json {
                reporter.say(String(format: "cycle %d done after epoch %d: %@ blocks, test error %.2f%%",
                                    cycle, epochsDone, currentBlocks, 100 * testError))
            }
            try write(to: cyclePath(cycle), cycleEnd: true)
            if globalStep < plan.totalSteps {
                try cycleTransition()
                appendTrainEvent()
            }
        }
        try write(to: lastPath, cycleEnd: globalStep == plan.totalSteps)
    }

    /// At a cycle boundary: interpolate when it is an `--interpolate-at` epoch (the learning
    /// rate restarts by itself, the plan's next cycle starts at η_max), with the run's
    /// `--first-block` and `--h-policy`; then, with `--recalibrate-bn N`, re-estimate every BN
    /// running statistic from N training batches (``Recalibration``: the first N batches of the
    /// epoch that follows, in the run's data order and augmentation, so a resume repeats it
    /// exactly; with several ranks each takes its slice and the ranks' statistics are averaged).
    /// The test error right after the interpolation (and after the recalibration) is recorded
    /// in metrics.jsonl: the jump, before any training step.
    private func cycleTransition() throws {
        transitionPending = false
        guard globalStep % stepsPerEpoch == 0, config.interpolateAt.contains(globalStep / stepsPerEpoch) else { return }
        let k = plan.position(ofStep: globalStep - 1).cycle
        let parent = cyclePath(k)
        let sha = FileManager.default.fileExists(atPath: parent) ? try? FileDigest.sha256(fileAt: parent) : nil
        let before = try checkpoint(cycleEnd: true)
        let (after, splan) = try Surgery.interpolate(before, firstBlock: config.firstBlock, hPolicy: config.hPolicyOrPaper,
                                                     resetOptimizer: config.resetMomentum, parentSHA256: sha)
        executor = try Self.makeExecutor(after.network, optimizer: after.optimizer, config: config, group: group, syncBN: syncBN)
        lineage = after.lineage
        let policy = "first block \(config.firstBlock.rawValue), h \(config.hPolicyOrPaper == .halve ? "paper" : config.hPolicyOrPaper.rawValue)"
        reporter.say("after epoch \(epochsDone): interpolated \(splan.blocksBefore.map(String.init).joined(separator: "-")) → \(currentBlocks) (\(policy), momentum \(config.resetMomentum ? "reset to zero" : "mapped")); new cycle at lr \(config.lrMax)")
        let jump = try evaluate()
        var rec: [String: JSONValue] = [
            "type": .string("interpolate"), "epoch": .int(epochsDone), "global_step": .int(globalStep),
            "blocks_before": .string(splan.blocksBefore.map(String.init).joined(separator: "-")),
            "blocks_after": .string(currentBlocks), "reset_momentum": .bool(config.resetMomentum),
            "first_block": .string(config.firstBlock.rawValue), "h_policy": .string(config.hPolicyOrPaper.rawValue),
            "test_error_before": .double(history["test_error"]?.last ?? .nan),
            "test_error_after": .double(jump.error), "test_loss_after": .double(jump.loss),
        ]
        if let n = config.recalibrateBN {
            let settings = RecalibrationSettings(batches: n, batchSize: config.batchSize, seed: config.seed,
                                                 epoch: epochsDone,
                                                 augmentation: Augmentation(padding: config.padding, flip: config.flip))
            let clock = Date()
            try Recalibration.recalibrate(executor, train: train, settings: settings, replica: group.rank, replicas: group.size)
            try averageRunningStatistics()
            rec["recalibrate_seconds"] = .double(Date().timeIntervalSince(clock))
            lineage.append(LineageEvent(.recalibrate, args: settings.lineageArgs(dataset: config.dataset.rawValue)))
            let recal = try evaluate()
            rec["recalibrate_bn"] = .int(n)
            rec["test_error_recalibrated"] = .double(recal.error); rec["test_loss_recalibrated"] = .double(recal.loss)
            reporter.say(String(format: "BN statistics recalibrated from %d batches: test error %.2f%% → %.2f%% (before interpolation %.2f%%)",
                                n, 100 * jump.error, 100 * recal.error, 100 * (history["test_error"]?.last ?? .nan)))
        } else {
            reporter.say(String(format: "test error right after interpolation: %.2f%% (before %.2f%%)",
                                100 * jump.error, 100 * (history["test_error"]?.last ?? .nan)))
        }
        reporter.record(rec)
    }

    /// One "train" lineage event per run segment (from here to the end of the current cycle).
    private func appendTrainEvent() {
        guard globalStep < plan.totalSteps else { return }
        let pos = plan.position(ofStep: globalStep)
        let endStep = globalStep - pos.stepInCycle + pos.cycleSteps
        let endEpoch = (endStep + stepsPerEpoch - 1) / stepsPerEpoch
        lineage.append(LineageEvent(.train, args: [
            "epochs": .int(endEpoch - epochsDone), "cycle": .int(pos.cycle), "from_epoch": .int(epochsDone),
            "to_epoch": .int(endEpoch), "global_step": .int(globalStep), "dataset": .string(config.dataset.rawValue),
            "blocks": .string(currentBlocks), "resumed": .bool(resumed && segments == 0),
            "ranks": .int(group.size), "sync_bn": .bool(syncBN),
        ]))
        segments += 1
    }

    private func interrupt() throws -> TrainOutcome {
        try averageRunningStatistics()
        try write(to: lastPath, cycleEnd: false)
        try reportDigest()
        let sig = stop.signal.map { $0 == SIGINT ? "SIGINT" : "SIGTERM" } ?? "stop requested"
        reporter.say("\(sig): stopped after step \(globalStep) (epoch \(epochsDone + 1), \(globalStep - epochsDone * stepsPerEpoch)/\(stepsPerEpoch)); wrote \(lastPath). Resume with: mlres-train --resume \(lastPath)")
        return .interrupted(checkpoint: lastPath, epoch: epochsDone, globalStep: globalStep)
    }

    // MARK: - Evaluation and checkpoints

    /// Eval-mode mean cross-entropy and error on the test set (running BN statistics): the one
    /// scoring loop, ``Evaluation/score(_:batchCount:batch:classes:skipping:keepLogits:observe:)``,
    /// that `mlres-eval score` runs.
    /// With N ranks the batches are split (rank r scores the batches b with b mod N = r) and the
    /// sums are added.
    private func evaluate() throws -> (loss: Double, error: Double) {
        let mine = Array(stride(from: group.rank, to: evalSource.count, by: group.size))
        let ev = try Evaluation.score(executor, batchCount: mine.count,
                                      batch: { [evalCache, evalSource] in evalCache?[mine[$0]] ?? evalSource.batch(mine[$0]) },
                                      classes: executor.network.numClasses)
        guard group.size > 1 else { return (ev.meanLoss, ev.error) }
        var sums = [ev.count > 0 ? ev.meanLoss * Double(ev.count) : 0, Double(ev.correct), Double(ev.count)]
        group.allreduceSum(&sums)
        return (sums[0] / sums[2], 1 - sums[1] / sums[2])
    }

    /// The current state as a checkpoint. `cycleEnd`: the step count ends a cycle and the record
    /// says so (`step_in_cycle == cycle_steps`); a resume from it runs the boundary's transition.
    private func checkpoint(cycleEnd: Bool) throws -> Checkpoint {
        var cfg = config
        if let p = partial {
            var q = p
            q.seconds += Date().timeIntervalSince(epochClock)
            cfg.partialEpoch = q
        }
        let state: TrainingState
        if cycleEnd || globalStep == plan.totalSteps {
            let pos = plan.position(ofStep: globalStep - 1)
            state = TrainingState(epoch: epochsDone, globalStep: globalStep, cycle: pos.cycle, stepInCycle: pos.cycleSteps,
                                  cycleSteps: pos.cycleSteps, rngState: loader.state, config: cfg.jsonText, history: history)
        } else {
            let pos = plan.position(ofStep: globalStep)
            state = TrainingState(epoch: epochsDone, globalStep: globalStep, cycle: pos.cycle, stepInCycle: pos.stepInCycle,
                                  cycleSteps: pos.cycleSteps, rngState: loader.state, config: cfg.jsonText, history: history)
        }
        return Checkpoint(network: try executor.exportNetwork(), optimizer: try executor.exportOptimizerState(),
                          training: state, lineage: lineage)
    }

    /// Rank 0 alone writes (atomically); the other ranks hold the same state.
    private func write(to path: String, cycleEnd: Bool) throws {
        guard group.rank == 0 else { return }
        try CheckpointIO.write(try checkpoint(cycleEnd: cycleEnd), to: path)
    }

    // MARK: - Data parallelism (see docs/distributed.md)

    /// Per-rank batch statistics leave each rank its own running statistics: their mean over
    /// the ranks replaces them before any evaluation or checkpoint, so all ranks evaluate and
    /// save the same model (with `--sync-bn` they are already equal and stay so).
    private func averageRunningStatistics() throws {
        guard group.size > 1 else { return }
        var stats = executor.runningStatistics()
        group.average(&stats)
        try executor.setRunningStatistics(stats)
    }

    /// Compares a fingerprint of every tensor over the ranks; throws naming the first tensor
    /// that differs (a rank that diverged would otherwise go on training silently).
    private func checkRanksAgree() throws {
        guard group.size > 1 else { return }
        let prints = tensorFingerprints(try executor.exportNetwork())
        var lo = prints.map(\.value), hi = lo
        group.allreduceMin(&lo); group.allreduceMax(&hi)
        if let path = firstDivergence(paths: prints.map(\.path), minimum: lo, maximum: hi) {
            throw TrainError("the \(group.size) ranks hold different weights after step \(globalStep): first differing tensor \(path)")
        }
    }

    /// With several ranks, every rank prints the digest of the weights it holds (they agree).
    private func reportDigest() throws {
        guard group.size > 1 else { return }
        let d = networkDigest(try executor.exportNetwork())
        FileHandle.standardError.write(Data("rank \(group.rank)/\(group.size): weights sha256 \(d) at step \(globalStep)\n".utf8))
    }
}
