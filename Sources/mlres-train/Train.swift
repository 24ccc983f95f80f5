import ArgumentParser
import MLResCLI
import Foundation
import MLResDistributed
import MLResModel
import MLResData
import MLResTraining

/// `mlres-train [train]`: the multi-level trainer (see docs/training.md). A thin shell over
/// ``Trainer``: flags → ``TrainRequest``, signals → ``StopRequest``, errors → exit status.
///
/// Exit status: 0 finished, or stopped by SIGINT/SIGTERM with `RUN/last.h5` written;
/// 2 refused before training (bad flag value, unreadable data or checkpoint, incompatible
/// resume) or failed during training; 64 a malformed command line.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a network, multi-level (--interpolate-at) or with LR restarts (--restart-at).",
        discussion: """
        Example (the paper's CIFAR-10 run): mlres-train --dataset cifar10 --data-dir DIR \
        --blocks 2-2-2 --epochs 160 --interpolate-at 60,110 --out RUN

        Every epoch writes RUN/last.h5 (atomically) and a line of RUN/metrics.jsonl; the end of \
        cycle K writes RUN/cycle-K.h5. SIGINT/SIGTERM finishes the current step, writes \
        RUN/last.h5 and exits 0; `mlres-train --resume RUN/last.h5` continues exactly. A \
        checkpoint changed by mlres-surgery since its training resumes as a new cycle (lr_max).
        """)

    @Option(help: "cifar10, cifar100, stl10 or fashion-mnist.") var dataset: DatasetKind?
    @Option(name: .customLong("data-dir"), help: "Folder with the official files (fashion-mnist: default the Debian package's).")
    var dataDir: String?
    @Option(help: "CIFAR-100 labels: fine (default) or coarse (the 20 superclasses).") var labels: LabelSet?
    @Option(name: .customLong("train-subset"), help: "Use the first N training images.") var trainSubset: Int?
    @Option(name: .customLong("test-subset"), help: "Use the first N test images.") var testSubset: Int?
    @Option(help: "Blocks per stage at the start, e.g. 2-2-2 (default).") var blocks: String?
    @Option(help: "Stage widths, e.g. 16,32,64 (default).") var widths: String?
    @Option(help: "Total epochs (default 160).") var epochs: Int?
    @Option(name: .customLong("interpolate-at"), help: "Epochs after which to interpolate and restart the LR cycle, e.g. 60,110.")
    var interpolateAt: String?
    @Option(name: .customLong("restart-at"), help: "Epochs after which to restart the LR cycle without interpolation (baselines).")
    var restartAt: String?
    @Option(name: [.customLong("batch-size"), .customLong("batch")], help: "Mini-batch size (default 100, STL-10 32).")
    var batchSize: Int?
    @Option(name: .customLong("lr-max"), help: "Learning rate at the start of each cycle (default 0.5).") var lrMax: Double?
    @Option(name: .customLong("lr-min"), help: "Learning rate the cosine decays towards (default 0.001).") var lrMin: Double?
    @Option(help: "SGD momentum (default 0.9).") var momentum: Double?
    @Option(name: .customLong("weight-decay"), help: "Weight decay (default 2e-4).") var weightDecay: Double?
    @Option(name: .customLong("pad"), help: "Zero padding before the random crop (default 4, STL-10 12).") var padding: Int?
    @Flag(inversion: .prefixedNo, help: "Random horizontal flip (default on, off for fashion-mnist).") var flip: Bool?
    @Option(help: "Seed of the initial network, data order and augmentation (default 0).") var seed: UInt64?
    @Option(help: "oneDNN threads (default all cores); exact resume needs the same value.") var threads: Int?
    @Flag(name: .customLong("reset-momentum"), help: "Zero the momentum buffers at an interpolation (default: map them like the weights).")
    var resetMomentum = false
    @Option(name: .customLong("first-block"), help: "Interpolation's new block 1 after a shape-changing block 0: auto (Appendix B, default), next, self, or identity (an exact identity step, issue 17).")
    var firstBlock: Surgery.FirstBlockPolicy?
    @Option(name: .customLong("h-policy"), help: "Interpolation's step sizes: paper (halve every h, default) or preserve (each old block's copies share its h, issue 17); also halve, keep.")
    var hPolicy: Surgery.StepPolicy?
    @Option(name: .customLong("recalibrate-bn"), help: ArgumentHelp("After each interpolation, re-estimate every BN running statistic from N training batches before training continues (default off).", valueName: "N"))
    var recalibrateBN: Int?
    @Option(name: .customLong("log-every"), help: "Also log every N steps.") var logEvery: Int?
    @Option(name: .customLong("log-format"), help: "text (default) or json.") var logFormat: String?
    @Option(help: "Run folder (default on --resume: the checkpoint's folder).") var out: String?
    @Option(help: "Continue from a checkpoint: RUN/last.h5, a cycle-K.h5, a surgery output or an init file.")
    var resume: String?
    @Flag(help: "Start a new run in a folder that already holds one.") var force = false
    @Flag(name: .customLong("sync-bn"), help: "Under mpirun: batch-norm statistics over the global batch (default: each rank's slice).")
    var syncBN = false

    func run() throws {
        var r = TrainRequest()
        r.dataset = dataset; r.dataDir = dataDir; r.labels = labels
        r.trainSubset = trainSubset; r.testSubset = testSubset
        r.blocks = try blocks.map { try integerList($0, separator: "-", flag: "--blocks") }
        r.widths = try widths.map { try integerList($0, separator: ",", flag: "--widths") }
        r.epochs = epochs
        r.interpolateAt = try interpolateAt.map { try integerList($0, flag: "--interpolate-at", allowEmpty: true) }
        r.restartAt = try restartAt.map { try integerList($0, flag: "--restart-at", allowEmpty: true) }
        r.batchSize = batchSize; r.lrMax = lrMax; r.lrMin = lrMin
        r.momentum = momentum; r.weightDecay = weightDecay; r.padding = padding; r.flip = flip
        r.seed = seed; r.threads = threads; r.resetMomentum = resetMomentum; r.firstBlock = firstBlock
        r.hPolicy = hPolicy; r.recalibrateBN = recalibrateBN
        r.logEvery = logEvery; r.logFormat = logFormat; r.out = out; r.resume = resume; r.force = force
        r.syncBN = syncBN

        // Under mpirun: one rank of a data-parallel job (docs/distributed.md); else alone.
        let world: MPIProcessGroup?
        do { world = try MPIProcessGroup.joinIfLaunched() } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard let world else { return try train(r, group: SingleProcess()) }
        if r.threads == nil, let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap({ Int($0) }),
           local > 1 {
            // Ranks on one machine share its cores: --threads defaults to cores / local ranks.
            r.threads = max(1, ProcessInfo.processInfo.activeProcessorCount / local)
        }
        try trainDistributed(r, world: world)
    }

    /// One rank of an mpirun job. Refusals before training: the ranks agree (the lowest
    /// failing rank prints its error) and all exit 2 through MPI_Finalize. An error during
    /// training (a failed collective, a write error, diverged ranks) aborts the whole job
    /// (MPI_Abort, exit 2): nothing more is written and the last checkpoint stays intact.
    /// SIGINT/SIGTERM: every rank stops after the same step, rank 0 writes last.h5, all exit 0.
    private func trainDistributed(_ r: TrainRequest, world: MPIProcessGroup) throws {
        let stop = StopRequest()
        var trainer: Trainer?
        var failure: Error?
        do { trainer = try Trainer(r, stop: stop, group: world) } catch { failure = error }
        var first = [failure == nil ? Int.max : world.rank]
        world.allreduceMin(&first)
        if first[0] != Int.max {
            if first[0] == world.rank, let failure {
                FileHandle.standardError.write(Data("error: \(world.rank == 0 ? "" : "rank \(world.rank): ")\(failure)\n".utf8))
            }
            world.finalize()
            throw ExitCode(2)
        }
        stop.installSignalHandlers()
        do {
            _ = try trainer!.run()
        } catch {
            FileHandle.standardError.write(Data("error: rank \(world.rank) of \(world.size): \(error)\n".utf8))
            world.abort(code: 2)
        }
        world.finalize()
    }

    /// One process: errors before training and during it exit 2.
    private func train(_ r: TrainRequest, group: ProcessGroup) throws {
        let stop = StopRequest()
        let trainer: Trainer
        do {
            trainer = try Trainer(r, stop: stop, group: group)
        } catch {
            throw cliFailure("\(error)")
        }
        stop.installSignalHandlers()
        do {
            _ = try trainer.run()
        } catch {
            throw cliFailure("\(error)")
        }
    }
}

/// MLResDistributed's MPI group is the trainer's process group.
extension MPIProcessGroup: ProcessGroup {}
