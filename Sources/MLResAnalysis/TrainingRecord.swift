import Foundation
import MLResData
import MLResModel

/// The data a checkpoint was trained on, as its `/training/config` records it (`dataset`,
/// `labels`): how the evaluators (`mlres-eval score`, `lesion`, `norms`, `/v1/evaluations`)
/// choose the label set when none is asked for.
public struct TrainingDataRecord: Sendable, Equatable {
    public var dataset: DatasetKind?
    public var labels: LabelSet?
    /// The run's batch size and augmentation (`batch_size`, `padding`, `flip`), when recorded.
    public var batchSize: Int?
    public var padding: Int?
    public var flip: Bool?

    /// The record of `checkpoint`, or nil when it has no `/training` group (an `init` or
    /// surgery file of an untrained network) or its config names no dataset.
    public init?(_ checkpoint: Checkpoint) {
        guard let text = checkpoint.training?.config,
              case .object(let o)? = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return nil }
        if case .string(let d)? = o["dataset"] { dataset = DatasetKind(flag: d) }
        if case .string(let l)? = o["labels"] { labels = LabelSet(rawValue: l) }
        if case .int(let b)? = o["batch_size"] { batchSize = b }
        if case .int(let p)? = o["padding"] { padding = p }
        if case .bool(let f)? = o["flip"] { flip = f }
        if dataset == nil && labels == nil { return nil }
    }

    /// The label set to score `checkpoints` with on `dataset`: `explicit` (`--labels`) when
    /// given; else the one recorded by the checkpoints trained on `dataset` (they must agree);
    /// else fine.
    /// - Throws: `AnalysisError` when the checkpoints record different label sets (the message
    ///   names them and asks for `--labels`).
    public static func labels(explicit: LabelSet?, dataset: DatasetKind,
                              checkpoints: [(name: String, checkpoint: Checkpoint)]) throws -> LabelSet {
        if let explicit { return explicit }
        var seen: [LabelSet: String] = [:]
        for (name, c) in checkpoints {
            guard let r = TrainingDataRecord(c), r.dataset == dataset, let l = r.labels else { continue }
            seen[l] = seen[l] ?? name
        }
        if seen.count > 1 {
            let list = seen.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) was trained on \($0.key.rawValue) labels" }
            throw AnalysisError(list.joined(separator: ", ") + "; score them separately or pass --labels fine|coarse")
        }
        return seen.keys.first ?? .fine
    }
}
