import Foundation

/// How one row of logits scores against its label: the softmax cross-entropy, the predicted
/// class and the log-sum-exp. The one scoring rule of mlres: the trainer's loss and gradient
/// (MLResEngine), the trainer's per-epoch test evaluation and `mlres-eval score`/`lesion`
/// (MLResAnalysis) all call it.
///
///     lse       = m + log Σ_k exp(z_k − m),   m = max_k z_k   (float64, from the float32 logits)
///     loss      = lse − z_label
///     predicted = arg max_k z_k, ties to the lowest class index (the first maximum)
///
/// The softmax probability of class k is `exp(z_k − lse)` (the engine's gradient uses it).
/// A NaN logit makes `loss` NaN (callers that must not go on check `loss.isFinite`).
public struct LogitScore: Sendable, Equatable {
    /// Softmax cross-entropy of the row against `label`, nats.
    public var loss: Double
    /// The arg-max class (first maximum).
    public var predicted: Int
    /// log Σ_k exp z_k.
    public var logSumExp: Double

    /// Scores `row` (K logits, K ≥ 1) against `label` (in 0..<K; the caller checks it).
    public init(_ row: UnsafeBufferPointer<Float>, label: Int) {
        precondition(!row.isEmpty && label >= 0 && label < row.count,
                     "logit row of \(row.count) classes, label \(label)")
        var best = 0
        var maxv = row[0]
        for c in 1 ..< row.count where row[c] > maxv { maxv = row[c]; best = c }
        let m = Double(maxv)
        var s = 0.0
        for c in 0 ..< row.count { s += Foundation.exp(Double(row[c]) - m) }
        logSumExp = m + Foundation.log(s)
        loss = logSumExp - Double(row[label])
        predicted = best
    }

    /// Scores `logits[row·K ..< (row+1)·K]` of a row-major `N × K` array.
    public init(_ logits: [Float], row: Int, classes: Int, label: Int) {
        self = logits.withUnsafeBufferPointer {
            LogitScore(UnsafeBufferPointer(rebasing: $0[(row * classes) ..< ((row + 1) * classes)]), label: label)
        }
    }
}
