import ArgumentParser
import MLResCLI
import Foundation
import MLResAnalysis
import MLResHDF5
import MLResModel
import MLResData

// Shared plumbing of score, norms and lesion. Exit codes (MLResCLI's contract): 0 success,
// 2 a checkpoint or the dataset could not be read, does not fit, or an output could not be
// written; 64 bad flags.

/// The test-set flags every analysis takes.
struct TestSetOptions: ParsableArguments {
    @Option(help: "Dataset: cifar10, cifar100, stl10 or fashion-mnist.")
    var dataset: DatasetKind

    @Option(name: .customLong("data-dir"),
            help: ArgumentHelp("Folder with the official files (fashion-mnist default: the Debian package's).",
                               valueName: "DIR"))
    var dataDir: String?

    @Option(help: ArgumentHelp("CIFAR-100 labels: fine or coarse (default: the label set recorded in the checkpoint's training config, else fine).",
                               valueName: "fine|coarse"))
    var labels: LabelSet?

    @Option(name: .customLong("test-subset"), help: ArgumentHelp("Use only the first N test images.", valueName: "N"))
    var testSubset: Int?

    @Option(help: "Inference batch size.")
    var batch: Int = 100

    @Option(help: "oneDNN threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if batch <= 0 { throw ValidationError("--batch must be positive (got \(batch))") }
        if let t = threads, t <= 0 { throw ValidationError("--threads must be positive (got \(t))") }
        if let n = testSubset, n <= 0 { throw ValidationError("--test-subset must be positive (got \(n))") }
        if labels == .coarse && dataset != .cifar100 {
            throw ValidationError("--labels coarse applies to cifar100 only, not \(dataset.rawValue)")
        }
    }

    var kind: DatasetKind { dataset }

    /// The label set for `checkpoints`: `--labels`, else the one their training recorded.
    func labelSet(for checkpoints: [(name: String, checkpoint: Checkpoint)]) throws -> LabelSet {
        try refusingErrors { try TrainingDataRecord.labels(explicit: labels, dataset: dataset, checkpoints: checkpoints) }
    }

    /// The test split with `labels`, read and validated once.
    func loadTestSet(labels: LabelSet = .fine) throws -> (Dataset, directory: String) {
        let sel = DatasetSelection(kind: kind, dataDirectory: dataDir, labels: labels, testSubset: testSubset)
        return try refusingErrors { (try sel.load(.test), try sel.resolvedDirectory()) }
    }

    /// The checkpoint's network must fit the test set; a CIFAR-100 class-count mismatch says
    /// which `--labels` fits.
    func checkFits(_ network: Network, name: String, evaluator: Evaluator, labels: LabelSet) throws {
        guard var m = evaluator.mismatch(network, name: name) else { return }
        m += " (--dataset \(dataset.rawValue)\(dataset == .cifar100 ? " --labels \(labels.rawValue)" : ""))"
        if dataset == .cifar100 {
            for other in LabelSet.allCases where other != labels && dataset.classNames(coarse: other == .coarse).count == network.numClasses {
                m += "; the network has the \(other.rawValue) label set's \(network.numClasses) classes: pass --labels \(other.rawValue)"
            }
        }
        throw cliFailure(m)
    }

    func evaluator(_ ds: Dataset) throws -> Evaluator {
        try refusingErrors { try Evaluator(dataset: ds, batchSize: batch, threads: threads) }
    }
}

/// Reads a checkpoint and the SHA-256 of its bytes; failures become `error: FILE: ...`, exit 2.
func loadCheckpoint(_ path: String) throws -> (Checkpoint, sha256: String) {
    // CheckpointIO names every cause (no such file, a dangling link, a folder, a FIFO, a
    // permission refused, a lock, ...) from the one open of the file.
    do {
        let loaded = try CheckpointIO.load(path: path)      // the digest of the bytes scored
        return (loaded.checkpoint, loaded.sha256)
    } catch let e as CheckpointError {
        throw cliFailure(e.description)
    } catch {
        throw cliFailure("\(path): \(error)")
    }
}

/// Runs an analysis step, turning its errors into `error: ...`, exit 2.
func checked<T>(_ body: () throws -> T) throws -> T { try refusingErrors(body) }

func percent(_ x: Double) -> String { String(format: "%.2f%%", 100 * x) }

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score checkpoints on a test set (error, loss, per-class accuracy, confusion, images/s).",
        discussion: """
        The test set is read once; each checkpoint's inputs are the pixels scaled to [0,1] and \
        standardised with that checkpoint's input_mean/input_std, then run through the engine in \
        eval mode (BN running statistics), batch by batch. Each result carries the file's sha256 \
        and a lineage summary. The checkpoint's input shape and class count must match the dataset. \
        images/s is timed after one untimed warm-up batch.
        The label set (CIFAR-100 fine or coarse) is --labels, else the one recorded in the \
        checkpoints' training config, else fine.
        Exit status: 0 scored, 2 unreadable or unfit checkpoint/dataset or unwritable output, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Checkpoints to score.", valueName: "CKPT"))
    var checkpoints: [String]

    @OptionGroup var data: TestSetOptions

    @Flag(help: "Print JSON (one object per checkpoint under \"results\").")
    var json = false

    @Flag(help: "Print CSV, one row per checkpoint.")
    var csv = false

    @Option(name: .customLong("save-logits"),
            help: ArgumentHelp("Write the N×K float32 logits, in test-set order, as a .npy file (one checkpoint only).",
                               valueName: "OUT.npy"))
    var saveLogits: String?

    func validate() throws {
        if checkpoints.isEmpty { throw ValidationError("give at least one checkpoint") }
        if json && csv { throw ValidationError("--json and --csv cannot be combined") }
        if saveLogits != nil && checkpoints.count != 1 {
            throw ValidationError("--save-logits takes exactly one checkpoint (got \(checkpoints.count))")
        }
    }

    func run() throws {
        // Read every checkpoint first: a bad file stops the run before any scoring.
        let loaded = try checkpoints.map { try loadCheckpoint($0) }
        let labels = try data.labelSet(for: zip(checkpoints, loaded).map { ($0, $1.0) })
        let (ds, dir) = try data.loadTestSet(labels: labels)
        let evaluator = try data.evaluator(ds)
        for (path, (c, _)) in zip(checkpoints, loaded) {
            try data.checkFits(c.network, name: path, evaluator: evaluator, labels: labels)
        }
        if csv { print(ScoreReport.csvHeader) }
        var reports: [ScoreReport] = []
        for (path, (c, sha)) in zip(checkpoints, loaded) {
            let ev = try checked { try evaluator.evaluate(c.network, name: path, keepLogits: saveLogits != nil) }
            let r = ScoreReport(checkpoint: path, sha256: sha, c, ev)
            reports.append(r)
            if let out = saveLogits, let z = ev.logits {
                try checked { try NPY.writeAtomically(NPY.float32(z, shape: [ev.count, c.network.numClasses]), to: out) }
            }
            if csv { print(r.csvRow) }
            else if !json {
                print("\(path)  \(r.blocks)  error \(percent(r.error)) (\(r.correct)/\(r.images))  loss \(String(format: "%.4f", r.meanLoss))  \(String(format: "%.0f", r.imagesPerSecond)) images/s")
                print("  sha256 \(sha)")
                print("  lineage: \(r.lineage.text)")
                let acc = zip(ds.classNames, r.perClassAccuracy).map { n, a in "\(n) \(a.map { String(format: "%.1f", 100 * $0) } ?? "-")" }
                print("  per-class accuracy %: " + acc.joined(separator: ", "))
            }
        }
        if let out = saveLogits, !json, !csv { print("wrote \(out)") }
        if json {
            let doc = ScoreDocument(dataset: data.kind.rawValue, labels: labels.rawValue, dataDir: dir, images: ds.count,
                                    classNames: ds.classNames, batch: data.batch, threads: data.threads,
                                    results: reports)
            print(try checked { try analysisJSON(doc) })
        }
    }
}
