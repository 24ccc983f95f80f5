import Foundation
import MLResAnalysis
import MLResHDF5
import MLResModel
import MLResData

/// The evaluator behind `POST /v1/evaluations`: the MLResAnalysis scorer, the code path of
/// `mlres-eval score --json` (or, with a `lesion` object, of `mlres-eval lesion --json`).
///
/// - Datasets: the server's `--data-dir` holds one folder per dataset, named by its canonical
///   `--dataset` spelling (`cifar10/`, `cifar100/`, `stl10/`, `fashion-mnist/`) with the official
///   files; the request's dataset name is only mapped to one of these, never used as a path.
/// - The job re-reads the checkpoint file the model was loaded from and refuses to score it if its
///   SHA-256 is no longer the one that was loaded (reload the model and resubmit).
/// - Lesion: `{"mode": "single"|"shuffle"|"drop-k", "seeds": N (default 5), "k": [1,2,4]}`.
/// - `recalibrate_bn: N` (issue 17): every network is also scored after its BN running statistics
///   are re-estimated from N batches of the dataset's training split (``Recalibration``, as
///   `mlres-train recalibrate`; `recalibrate_batch_size` and `recalibrate_seed` as `mlres-eval
///   lesion`'s flags, default the checkpoint's training batch size and seed 0): a lesion's rows get the `*_recalibrated` fields, a plain score gets
///   `recalibration` and `recalibrated_results`.
/// - Work runs on a thread of its own, never on the HTTP event loops or Swift's cooperative pool.
public enum AnalysisEvaluation {
    /// Inference batch size of evaluation jobs (`mlres-eval score`'s default).
    public static let batchSize = 100
    /// The largest `recalibrate_bn` a request may ask for.
    public static let maxRecalibrationBatches = 10_000

    /// An ``Evaluator`` (the server's job closure) that scores with `threads` oneDNN threads.
    public static func evaluator(threads: Int?) -> Evaluator {
        return { request in
            try await runOnOwnThread(name: "mlres-eval-job") { try evaluate(request, threads: threads) }
        }
    }

    /// Runs one evaluation synchronously and returns the JSON document `mlres-eval score --json`
    /// (or `lesion --json`) prints for the same checkpoint, dataset and options.
    public static func evaluate(_ request: EvaluationRequest, threads: Int?) throws -> JSONValue {
        guard let kind = DatasetKind(flag: request.dataset) else {
            throw AnalysisError("dataset '\(request.dataset)': unknown, expected one of "
                + DatasetKind.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let lesion = try request.lesion.map(LesionSpec.init(json:))
        let path = request.checkpointPath
        // One read: the digest belongs to the bytes evaluated.
        let loaded: LoadedCheckpoint
        do { loaded = try CheckpointIO.load(path: path) }
        catch let e as CheckpointError { throw AnalysisError(e.description) }
        guard loaded.sha256 == request.sha256 else {
            throw AnalysisError("\(path) changed since model '\(request.model)' was loaded (sha256 \(loaded.sha256), loaded \(request.sha256)); reload the model and resubmit")
        }
        let checkpoint = loaded.checkpoint
        let directory = (request.dataDir as NSString).appendingPathComponent(kind.rawValue)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw AnalysisError("dataset \(kind.rawValue): no folder \(directory) (--data-dir holds one folder per dataset)")
        }
        let coarse = try coarseLabels(request.labels, kind: kind, network: checkpoint.network)
        let dataset = try DatasetSelection(kind: kind, dataDirectory: directory, coarseLabels: coarse).load(.test)
        let scorer = try MLResAnalysis.Evaluator(dataset: dataset, batchSize: batchSize, threads: threads)
        if let m = scorer.mismatch(checkpoint.network, name: path) {
            throw AnalysisError(m + " (dataset \(kind.rawValue))")
        }
        // BN recalibration: the training split of the same folder.
        var recalibration: (settings: RecalibrationSettings, train: Dataset)?
        if let n = request.recalibrateBN {
            let train = try DatasetSelection(kind: kind, dataDirectory: directory, coarseLabels: coarse).load(.train)
            let settings = RecalibrationSettings.forCheckpoint(checkpoint, dataset: kind, batches: n,
                                                               batchSize: request.recalibrateBatchSize,
                                                               seed: UInt64(request.recalibrateSeed ?? 0))
            do { try settings.validate(trainingImages: train.count); try Recalibration.fits(checkpoint.network, train) }
            catch let e as AnalysisError { throw AnalysisError("recalibrate_bn: \(e.description) (dataset \(kind.rawValue))") }
            recalibration = (settings, train)
        }
        let recalibrate: ((Network) throws -> Network)? = recalibration.map { r in
            { try Recalibration.recalibrated($0, train: r.train, settings: r.settings, threads: threads) }
        }
        let settingsJSON = recalibration?.settings.lineageArgs(dataset: kind.rawValue)
        let text: String
        if let lesion {
            let (intact, rows, intactR) = try LesionStudy.run(checkpoint, evaluator: scorer, mode: lesion.mode,
                                                              seeds: lesion.seeds, ks: lesion.ks, name: path,
                                                              recalibrate: recalibrate)
            text = try analysisJSON(LesionReport(
                checkpoint: path, sha256: loaded.sha256, dataset: kind.rawValue, images: dataset.count,
                mode: lesion.mode, blocks: checkpoint.network.blocksDescription, intactError: intact.error,
                intactLoss: intact.meanLoss, rows: rows, recalibration: settingsJSON, intactRecalibrated: intactR))
        } else {
            let ev = try scorer.evaluate(checkpoint.network, name: path)
            let report = ScoreReport(checkpoint: path, sha256: loaded.sha256, checkpoint, ev)
            var doc = ScoreDocument(
                dataset: kind.rawValue, dataDir: directory, images: dataset.count, classNames: dataset.classNames,
                batch: batchSize, threads: threads, results: [report])
            if let recalibrate {
                var recal = checkpoint
                recal.network = try recalibrate(checkpoint.network)
                let ev = try scorer.evaluate(recal.network, name: path + " (BN recalibrated)")
                doc.recalibration = settingsJSON
                doc.recalibratedResults = [ScoreReport(checkpoint: path, sha256: loaded.sha256, recal, ev)]
            }
            text = try analysisJSON(doc)
        }
        return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Whether to score with CIFAR-100's 20 coarse labels: as the request's `labels` says, else
    /// as the checkpoint's network was trained (20 classes on CIFAR-100 are the coarse set).
    static func coarseLabels(_ labels: String?, kind: DatasetKind, network: Network) throws -> Bool {
        switch labels {
        case "coarse"?:
            guard kind == .cifar100 else { throw AnalysisError("labels: \"coarse\" applies to cifar100 only (dataset \(kind.rawValue))") }
            return true
        case "fine"?: return false
        case nil: return kind == .cifar100 && network.numClasses == 20
        case let other?: throw AnalysisError("labels: '\(other)': expected \"fine\" or \"coarse\"")
        }
    }

    /// The `lesion` object of an evaluation request.
    public struct LesionSpec: Equatable, Sendable {
        public var mode: LesionMode
        public var seeds: Int
        public var ks: [Int]

        /// Parses and checks `{"mode": ..., "seeds"?: N, "k"?: [..]}`; errors name the field.
        public init(json: JSONValue) throws {
            guard case .object(let o) = json else { throw AnalysisError("lesion: must be an object") }
            if let extra = o.keys.sorted().first(where: { !["mode", "seeds", "k"].contains($0) }) {
                throw AnalysisError("lesion.\(extra): unknown field (expected mode, seeds, k)")
            }
            guard case .string(let m)? = o["mode"], let mode = LesionMode(rawValue: m) else {
                throw AnalysisError("lesion.mode: expected \"single\", \"shuffle\" or \"drop-k\"")
            }
            self.mode = mode
            switch o["seeds"] {
            case nil, .null?: seeds = 5
            case .int(let n)? where n > 0 && n <= 1000: seeds = n
            default: throw AnalysisError("lesion.seeds: expected a positive integer up to 1000")
            }
            switch o["k"] {
            case nil, .null?: ks = [1, 2, 4]
            case .array(let a)?:
                ks = try a.map {
                    guard case .int(let k) = $0, k > 0 else { throw AnalysisError("lesion.k: expected positive integers") }
                    return k
                }
                if ks.isEmpty || ks.count > 100 { throw AnalysisError("lesion.k: expected 1 to 100 values") }
            default: throw AnalysisError("lesion.k: expected a list of positive integers like [1,2,4]")
            }
        }
    }
}

/// Runs blocking `body` on a new thread and resumes with its result, so long computations
/// never occupy the cooperative pool or an event loop.
func runOnOwnThread<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.stackSize = 16 << 20
        thread.start()
    }
}
