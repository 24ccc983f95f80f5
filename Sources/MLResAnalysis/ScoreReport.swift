import Foundation
import MLResModel

/// What a checkpoint's lineage says, in one line and as counts: enough to tie a score to a
/// history without printing every event.
public struct LineageSummary: Codable, Equatable, Sendable {
    /// Number of events.
    public var events: Int
    /// The operations, oldest first, runs collapsed: e.g. `init → train ×3 → interpolate → train`.
    public var text: String
    /// Operation name → how many times it occurs.
    public var counts: [String: Int]
    /// The newest event's operation and time (nil for an empty lineage).
    public var lastOp: String?
    public var lastAt: String?

    enum CodingKeys: String, CodingKey {
        case events, text, counts, lastOp = "last_op", lastAt = "last_at"
    }

    public init(_ lineage: [LineageEvent]) {
        events = lineage.count
        var runs: [(String, Int)] = []
        var counts: [String: Int] = [:]
        for e in lineage {
            counts[e.op, default: 0] += 1
            if let last = runs.last, last.0 == e.op { runs[runs.count - 1].1 += 1 } else { runs.append((e.op, 1)) }
        }
        self.counts = counts
        text = runs.isEmpty ? "(empty)" : runs.map { $0.1 == 1 ? $0.0 : "\($0.0) ×\($0.1)" }.joined(separator: " → ")
        lastOp = lineage.last?.op
        lastAt = lineage.last?.at
    }
}

/// The score of one checkpoint file: `mlres-eval score`'s JSON object per checkpoint.
public struct ScoreReport: Codable, Sendable {
    public var checkpoint: String
    /// SHA-256 of the file's bytes: the score belongs to exactly these bytes.
    public var sha256: String
    public var blocks: String
    public var stepSizes: [[Double]]
    public var parameters: Int
    public var lineage: LineageSummary
    public var images: Int
    public var correct: Int
    public var error: Double
    public var meanLoss: Double
    /// Accuracy per class, in label order (null for a class without test images).
    public var perClassAccuracy: [Double?]
    /// `confusion[true][predicted]`.
    public var confusion: [[Int]]
    public var imagesPerSecond: Double
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case checkpoint, sha256, blocks, stepSizes = "step_sizes", parameters, lineage, images, correct
        case error, meanLoss = "mean_loss", perClassAccuracy = "per_class_accuracy", confusion
        case imagesPerSecond = "images_per_s", seconds
    }

    public init(checkpoint path: String, sha256: String, _ ckpt: Checkpoint, _ ev: Evaluation) {
        checkpoint = path; self.sha256 = sha256
        blocks = ckpt.network.blocksDescription
        stepSizes = ckpt.network.stepSizes
        parameters = ckpt.network.parameterCount
        lineage = LineageSummary(ckpt.lineage)
        images = ev.count; correct = ev.correct; error = ev.error; meanLoss = ev.meanLoss
        perClassAccuracy = ev.perClassAccuracy; confusion = ev.confusion
        imagesPerSecond = ev.imagesPerSecond; seconds = ev.totalSeconds
    }

    /// The `--csv` header line.
    public static let csvHeader = "checkpoint,sha256,blocks,images,correct,error,mean_loss,images_per_s,lineage"

    /// One CSV row (fields quoted where needed).
    public var csvRow: String {
        func q(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        return [q(checkpoint), sha256, blocks, String(images), String(correct), String(error),
                String(meanLoss), String(format: "%.1f", imagesPerSecond), q(lineage.text)].joined(separator: ",")
    }
}

/// The whole `mlres-eval score --json` document.
public struct ScoreDocument: Codable, Sendable {
    public var dataset: String
    /// The label set scored against: "fine", or "coarse" (CIFAR-100's 20 superclasses).
    public var labels: String
    public var dataDir: String
    public var images: Int
    public var classNames: [String]
    public var batch: Int
    public var threads: Int?
    public var results: [ScoreReport]
    /// With BN recalibration (`/v1/evaluations` `recalibrate_bn`, issue 17): its settings and
    /// each network's result after it, in `results` order (absent otherwise).
    public var recalibration: [String: JSONValue]?
    public var recalibratedResults: [ScoreReport]?
    enum CodingKeys: String, CodingKey {
        case dataset, labels, dataDir = "data_dir", images, classNames = "class_names", batch, threads, results
        case recalibration, recalibratedResults = "recalibrated_results"
    }
    public init(dataset: String, labels: String = "fine", dataDir: String, images: Int, classNames: [String], batch: Int,
                threads: Int?, results: [ScoreReport]) {
        self.dataset = dataset; self.labels = labels; self.dataDir = dataDir; self.images = images; self.classNames = classNames
        self.batch = batch; self.threads = threads; self.results = results
    }
}

/// Pretty JSON with sorted keys (non-finite numbers as strings), as every `--json` prints it.
public func analysisJSON<T: Encodable>(_ value: T) throws -> String {
    try JSONText.pretty(value)
}
