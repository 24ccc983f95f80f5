import Foundation
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
    /// - Parameter quiet: no console output (metrics.jsonl is still written).
    ///
    /// - Parameter group: the ranks of a data-parallel job (see docs/distributed.md): every rank
    ///   trains on `--batch-size / group.size` images of each global batch, gradients are
    ///   summed over the ranks before the SGD step, and rank 0 alone writes files.
    public init(_ request: TrainRequest, stop: StopRequest = StopRequest(), quiet: Bool = false,
                group: ProcessGroup = SingleProcess()) throws {
        self.stop = stop
        self.group = group
        syncBN = request.syncBN && group.size > 1
        // 1. The checkpoint to resume, if any.
        var ckpt: Checkpoint?
        if let path = request.resume {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw TrainError("--resume \(path): no such file")
            }
            if isDir.boolValue {
                throw TrainError("--resume \(path): is a folder; give the checkpoint file, e.g. \(path)/last.h5")
            }
            ckpt = try CheckpointIO.read(path: path)
        }
        let stored = try ckpt?.training.map { try TrainConfig.parse($0.config, file: request.resume!) }
        var cfg = try stored.map { try $0.resumed(with: request, file: request.resume!) }
            ?? TrainConfig.fresh(request, network: ckpt?.network)

        // 2. The data.
        let (trainSet, testSet) = try cfg.selection.load()
        train = trainSet; test = testSet
        let kind = cfg.selection.datasetKind!
        if let net = ckpt?.network {
            let file = request.resume!
            guard net.inputShape == trainSet.imageShape else {
                throw TrainError("\(file): the network takes \(Tensor.describe(net.inputShape)) inputs but --dataset \(kind.rawValue) has \(Tensor.describe(trainSet.imageShape)) images")
            }
            guard net.numClasses == trainSet.numClasses else {
                throw TrainError("\(file): the network has \(net.numClasses) classes but --dataset \(kind.rawValue)\(cfg.labels == "coarse" ? " --labels coarse" : "") has \(trainSet.numClasses)")
            }
        }
        guard cfg.batchSize % group.size == 0 else {
            throw TrainError("--batch-size \(cfg.batchSize) is not a multiple of the \(group.size) ranks: every rank takes an equal slice of each global batch")
        }
        let spe = trainSet.count / cfg.batchSize
        guard spe > 0 else {
            throw TrainError("--batch-size \(cfg.batchSize) is larger than the \(trainSet.count) training images")
        }
        if stored != nil && cfg.stepsPerEpoch != spe {
            throw TrainError("\(request.resume!): trained with \(cfg.stepsPerEpoch) steps per epoch, but the training data now gives \(spe) (\(trainSet.count) images, batch \(cfg.batchSize)): not the same data")
        }
        cfg.stepsPerEpoch = spe
        stepsPerEpoch = spe
        let schedule: MultiLevelSchedule
        do {
            schedule = try MultiLevelSchedule(totalEpochs: cfg.epochs, stepsPerEpoch: spe, boundaries: cfg.boundaries,
                                              cosine: CosineCycle(lrMax: cfg.lrMax, lrMin: cfg.lrMin))
        } catch let e as ScheduleError { throw TrainError(e.description) }

        // 3. The run folder.
        let out: String
        if let o = request.out { out = o }
        else if let r = request.resume { out = (r as NSString).deletingLastPathComponent.isEmpty ? "." : (r as NSString).deletingLastPathComponent }
        else { throw TrainError("--out RUN is required: the folder for last.h5, cycle-K.h5 and metrics.jsonl") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw TrainError("--out \(out): exists and is not a folder") }
        } else {
            do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
            catch { throw TrainError("--out \(out): cannot create the folder (\(error.localizedDescription))") }
        }
        guard FileManager.default.isWritableFile(atPath: out) else { throw TrainError("--out \(out): folder is not writable") }
        outDir = out
        let last = (out as NSString).appendingPathComponent("last.h5")
        if request.resume == nil && !request.force && FileManager.default.fileExists(atPath: last) {
            throw TrainError("--out \(out) already holds a run (\(last)); continue it with --resume \(last), choose another --out, or pass --force to start over")
        }

        if request.resume == nil && request.force && group.rank == 0 {
            // Starting over: the old run's metrics and cycle snapshots would mislead.
            let fm = FileManager.default
            for f in (try? fm.contentsOfDirectory(atPath: out)) ?? []
            where f == "metrics.jsonl" || (f.hasPrefix("cycle-") && f.hasSuffix(".h5")) {
                try? fm.removeItem(atPath: (out as NSString).appendingPathComponent(f))
            }
        }

        // 4. The starting state.
        var network: Network
        var optimizer: OptimizerState?
        var startLineage: [LineageEvent]
        var loaderState: [UInt64]? = nil
        if let ck = ckpt, let ts = ck.training {
            let file = request.resume!
            network = ck.network
            startLineage = ck.lineage
            history = ts.history
            globalStep = ts.globalStep
            epochsDone = ts.epoch
            partial = cfg.partialEpoch
            guard ts.rngState.count == 3, ts.rngState[0] == cfg.seed, Int(ts.rngState[1]) == ts.epoch,
                  ts.epoch * spe + Int(ts.rngState[2]) == ts.globalStep else {
                throw TrainError("\(file): /training/rng_state \(ts.rngState) does not match epoch \(ts.epoch), global step \(ts.globalStep) and seed \(cfg.seed)")
            }
            loaderState = ts.rngState
            guard globalStep < schedule.totalSteps else {
                throw TrainError("\(file): the run is complete (\(epochsDone) of \(cfg.epochs) epochs); pass a larger --epochs to train on (a new cycle starts at lr_max)")
            }
            let edited = ck.editedSinceTraining
            let cycleDone = ts.cycleSteps > 0 && ts.stepInCycle == ts.cycleSteps
            var probe = CyclePlan(schedule: schedule, extraStarts: cfg.extraCycleStarts)
            if edited || cycleDone {
                // Surgery since the last training, or a finished cycle extended by --epochs:
                // a new cycle starts here (lr back to lr_max).
                if !probe.starts.contains(globalStep) { cfg.extraCycleStarts.append(globalStep) }
                probe = CyclePlan(schedule: schedule, extraStarts: cfg.extraCycleStarts)
            }
            // A cycle-K.h5 snapshot is taken before its interpolation; surgery replaces it.
            transitionPending = cycleDone && !edited
            optimizer = (edited && cfg.resetMomentum) ? nil : ck.optimizer
            plan = probe
            resumed = true
            startDescription = "resuming \(file) at epoch \(epochsDone), step \(globalStep)"
                + (edited ? " (network changed by surgery: new cycle at lr_max, momentum \(optimizer == nil ? "zero" : "mapped"))" : "")
        } else {
            let arch = Architecture(blocks: cfg.blocks, widths: cfg.widths, inputShape: trainSet.imageShape,
                                    numClasses: trainSet.numClasses)
            if let e = arch.validationError() { throw TrainError("--blocks/--widths: \(e)") }
            if let ck = ckpt {
                network = ck.network; optimizer = ck.optimizer; startLineage = ck.lineage
                startDescription = "training \(request.resume!) (\(network.blocksDescription)) from its first step"
            } else {
                network = Network.initialized(arch, seed: cfg.seed)
                optimizer = nil
                startLineage = [LineageEvent(op: "init", args: [
                    "blocks": .array(arch.blocks.map { .int($0) }), "widths": .array(arch.widths.map { .int($0) }),
                    "classes": .int(arch.numClasses), "input_shape": .array(arch.inputShape.map { .int($0) }),
                    "seed": .int(Int(truncatingIfNeeded: cfg.seed)), "h": .double(1)])]
                startDescription = "new run: \(network.blocksDescription), widths \(cfg.widths.map(String.init).joined(separator: ","))"
            }
            // Standardisation from the training set, stored with the network.
            let stats = ChannelStats(of: trainSet)
            network.inputMean = stats.meanTensor.data
            network.inputStd = stats.stdTensor.data
            history = TrainingState().history
            globalStep = 0; epochsDone = 0; partial = nil
            transitionPending = false
            resumed = false
            plan = CyclePlan(schedule: schedule)
        }
        cfg.partialEpoch = nil
        config = cfg
        lineage = startLineage

        executor = try NetworkExecutor(network: network, batchSize: cfg.batchSize / group.size, threads: cfg.threads,
                                       replicaSum: Trainer.replicaSum(group, sync: syncBN))
        executor.momentum = cfg.momentum
        executor.weightDecay = cfg.weightDecay
        if let opt = optimizer {
            var o = opt
            o.momentum = cfg.momentum; o.weightDecay = cfg.weightDecay
            if ckpt?.training != nil || !o.buffers.isEmpty { try executor.importOptimizerState(o) }
        }
        let standardizer = Standardizer(mean: network.inputMean, std: network.inputStd)
        loader = try TrainingLoader(dataset: trainSet, batchSize: cfg.batchSize,
                                    augmentation: Augmentation(padding: cfg.padding, flip: cfg.flip),
                                    standardizer: standardizer, seed: cfg.seed, dropLast: true, prefetch: true,
                                    replica: group.rank, replicas: group.size)
        if let s = loaderState { try loader.restore(s) }
        let eb = try EvalBatches(dataset: testSet, batchSize: max(cfg.batchSize, 100), standardizer: standardizer)
        evalSource = eb
        evalCache = testSet.count * testSet.imageSize <= 64 << 20 ? (0 ..< eb.count).map { eb.batch($0) } : nil
        reporter = try ProgressReporter(format: cfg.logFormat, logEvery: cfg.logEvery,
                                        metricsPath: group.rank == 0 ? (out as NSString).appendingPathComponent("metrics.jsonl") : nil,
                                        quiet: quiet || group.rank != 0, bar: group.size == 1)
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
            let r = try trainStep(batch, lr: pos.lr)
            guard r.lossSum.isFinite else {
                throw TrainError("training diverged: loss \(r.lossSum / Double(r.count)) at epoch \(epochsDone + 1), step \(globalStep) (lr \(pos.lr)); try a smaller --lr-max")
            }
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
        try reportDigest()
        reporter.say("done: \(epochsDone) epochs, \(currentBlocks) blocks, test error \(String(format: "%.2f", 100 * err))%; wrote \(lastPath)")
        return .finished(checkpoint: lastPath, testError: err)
    }

    // MARK: - Steps, epochs, cycles

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
            try write(to: cyclePath(cycle), cycleEnd: true)
            if globalStep < plan.totalSteps {
                try cycleTransition()
                appendTrainEvent()
            }
        }
        try write(to: lastPath, cycleEnd: globalStep == plan.totalSteps)
    }

    /// At a cycle boundary: interpolate when it is an `--interpolate-at` epoch (the learning
    /// rate restarts by itself, the plan's next cycle starts at η_max).
    private func cycleTransition() throws {
        transitionPending = false
        guard globalStep % stepsPerEpoch == 0, config.interpolateAt.contains(globalStep / stepsPerEpoch) else { return }
        let k = plan.position(ofStep: globalStep - 1).cycle
        let parent = cyclePath(k)
        let sha = FileManager.default.fileExists(atPath: parent) ? try? SHA256Digest.hex(fileAt: parent) : nil
        let before = try checkpoint(cycleEnd: true)
        let (after, splan) = try Surgery.interpolate(before, firstBlock: config.firstBlock, hPolicy: .halve,
                                                     resetOptimizer: config.resetMomentum, parentSHA256: sha)
        let fresh = try NetworkExecutor(network: after.network, batchSize: config.batchSize / group.size,
                                        threads: config.threads, replicaSum: Trainer.replicaSum(group, sync: syncBN))
        fresh.momentum = config.momentum; fresh.weightDecay = config.weightDecay
        if let opt = after.optimizer { try fresh.importOptimizerState(opt) }
        executor = fresh
        lineage = after.lineage
        reporter.say("after epoch \(epochsDone): interpolated \(splan.blocksBefore.map(String.init).joined(separator: "-")) → \(currentBlocks) (h halved, momentum \(config.resetMomentum ? "reset to zero" : "mapped")); new cycle at lr \(config.lrMax)")
        reporter.record(["type": .string("interpolate"), "epoch": .int(epochsDone), "global_step": .int(globalStep),
                         "blocks_before": .string(splan.blocksBefore.map(String.init).joined(separator: "-")),
                         "blocks_after": .string(currentBlocks), "reset_momentum": .bool(config.resetMomentum)])
    }

    /// One "train" lineage event per run segment (from here to the end of the current cycle).
    private func appendTrainEvent() {
        guard globalStep < plan.totalSteps else { return }
        let pos = plan.position(ofStep: globalStep)
        let endStep = globalStep - pos.stepInCycle + pos.cycleSteps
        let endEpoch = (endStep + stepsPerEpoch - 1) / stepsPerEpoch
        lineage.append(LineageEvent(op: "train", args: [
            "epochs": .int(endEpoch - epochsDone), "cycle": .int(pos.cycle), "from_epoch": .int(epochsDone),
            "to_epoch": .int(endEpoch), "global_step": .int(globalStep), "dataset": .string(config.dataset),
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

    /// Mean cross-entropy and error rate on the test set, eval mode (running BN statistics).
    /// Split over the ranks: rank r evaluates the batches b with b mod N = r; the sums are added.
    private func evaluate() throws -> (loss: Double, error: Double) {
        var lossSum = 0.0, wrong = 0, n = 0
        let k = executor.network.numClasses
        for bi in stride(from: group.rank, to: evalSource.count, by: group.size) {
            let b = evalCache?[bi] ?? evalSource.batch(bi)
            let z = try executor.forward(b.images, count: b.count)
            for i in 0 ..< b.count {
                let row = z[(i * k) ..< ((i + 1) * k)]
                var best = row.startIndex
                for j in row.indices where row[j] > row[best] { best = j }
                let m = Double(row[best])
                var s = 0.0
                for v in row { s += Foundation.exp(Double(v) - m) }
                let label = Int(b.labels[i])
                lossSum += m + Foundation.log(s) - Double(row[row.startIndex + label])
                if best - row.startIndex != label { wrong += 1 }
                n += 1
            }
        }
        var sums = [lossSum, Double(wrong), Double(n)]
        group.allreduceSum(&sums)
        return (sums[0] / sums[2], sums[1] / sums[2])
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

    /// The engine's hook for `--sync-bn`: per-channel sums over the ranks.
    private static func replicaSum(_ group: ProcessGroup, sync: Bool) -> ReplicaSum? {
        sync ? ReplicaSum(replicas: group.size) { group.allreduceSum(&$0) } : nil
    }

    /// One optimizer step on this rank's slice of the global batch. With N > 1 ranks: forward
    /// and backward on the slice, the flat gradient summed over the ranks (one MPI_Allreduce)
    /// and divided by N (each rank's gradient is that of its own mean loss), then the same SGD
    /// step everywhere. Returns the global batch's loss sum, correct count and size.
    private func trainStep(_ batch: Batch, lr: Double) throws -> (lossSum: Double, correct: Int, count: Int) {
        let labels = batch.labels.map { Int($0) }
        guard group.size > 1 else {
            let r = try executor.trainStep(input: batch.images, labels: labels, lr: Float(lr))
            return (r.loss * Double(batch.count), r.correct, batch.count)
        }
        let r = try executor.computeGradients(input: batch.images, labels: labels)
        let scale = 1 / Float(group.size)
        let clock = Date()
        executor.withFlatGradients(&flatGradients) { b in
            group.allreduceSum(b)
            for i in b.indices { b[i] *= scale }
        }
        var sums = [r.loss * Double(batch.count), Double(r.correct)]
        group.allreduceSum(&sums)
        communication.seconds += Date().timeIntervalSince(clock)
        communication.calls += 1
        communication.bytes += flatGradients.count * MemoryLayout<Float>.size
        executor.applySGD(lr: Float(lr))
        return (sums[0], Int(sums[1].rounded()), batch.count * group.size)
    }

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
        let net = try executor.exportNetwork()
        let prints = tensorFingerprints(net)
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
