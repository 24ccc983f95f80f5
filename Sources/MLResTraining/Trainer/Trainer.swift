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
    public init(_ request: TrainRequest, stop: StopRequest = StopRequest(), quiet: Bool = false) throws {
        self.stop = stop
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

        if request.resume == nil && request.force {
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
                startLineage = [.initialization(arch, seed: cfg.seed)]
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

        executor = try NetworkExecutor(network: network, batchSize: cfg.batchSize, threads: cfg.threads)
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
                                    standardizer: standardizer, seed: cfg.seed, dropLast: true, prefetch: true)
        if let s = loaderState { try loader.restore(s) }
        let eb = try EvalBatches(dataset: testSet, batchSize: max(cfg.batchSize, 100), standardizer: standardizer)
        evalSource = eb
        evalCache = testSet.count * testSet.imageSize <= 64 << 20 ? (0 ..< eb.count).map { eb.batch($0) } : nil
        reporter = try ProgressReporter(format: cfg.logFormat, logEvery: cfg.logEvery,
                                        metricsPath: (out as NSString).appendingPathComponent("metrics.jsonl"),
                                        quiet: quiet)
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
            if stop.isRequested || stopAtStep == globalStep { return try interrupt() }
            let pos = plan.position(ofStep: globalStep)
            if partial == nil {
                partial = .init(lossSum: 0, correct: 0, seen: 0, seconds: 0, lrStart: pos.lr)
            }
            if runSteps == 0 || globalStep % stepsPerEpoch == 0 { epochClock = Date() }
            let batch = loader.next()
            let r = try executor.trainStep(input: batch.images, labels: batch.labels.map { Int($0) }, lr: Float(pos.lr))
            guard r.loss.isFinite else {
                throw TrainError("training diverged: loss \(r.loss) at epoch \(epochsDone + 1), step \(globalStep) (lr \(pos.lr)); try a smaller --lr-max")
            }
            partial!.lossSum += r.loss * Double(batch.count)
            partial!.correct += r.correct
            partial!.seen += batch.count
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
        let fresh = try NetworkExecutor(network: after.network, batchSize: config.batchSize, threads: config.threads)
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
        lineage.append(LineageEvent(.train, args: [
            "epochs": .int(endEpoch - epochsDone), "cycle": .int(pos.cycle), "from_epoch": .int(epochsDone),
            "to_epoch": .int(endEpoch), "global_step": .int(globalStep), "dataset": .string(config.dataset),
            "blocks": .string(currentBlocks), "resumed": .bool(resumed && segments == 0),
        ]))
        segments += 1
    }

    private func interrupt() throws -> TrainOutcome {
        try write(to: lastPath, cycleEnd: false)
        let sig = stop.signal.map { $0 == SIGINT ? "SIGINT" : "SIGTERM" } ?? "stop requested"
        reporter.say("\(sig): stopped after step \(globalStep) (epoch \(epochsDone + 1), \(globalStep - epochsDone * stepsPerEpoch)/\(stepsPerEpoch)); wrote \(lastPath). Resume with: mlres-train --resume \(lastPath)")
        return .interrupted(checkpoint: lastPath, epoch: epochsDone, globalStep: globalStep)
    }

    // MARK: - Evaluation and checkpoints

    /// Mean cross-entropy and error rate on the test set, eval mode (running BN statistics).
    private func evaluate() throws -> (loss: Double, error: Double) {
        var lossSum = 0.0, wrong = 0, n = 0
        let k = executor.network.numClasses
        for bi in 0 ..< evalSource.count {
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
        return (lossSum / Double(n), Double(wrong) / Double(n))
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

    private func write(to path: String, cycleEnd: Bool) throws {
        try CheckpointIO.write(try checkpoint(cycleEnd: cycleEnd), to: path)
    }
}
