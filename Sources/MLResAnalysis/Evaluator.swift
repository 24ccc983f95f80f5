import Foundation
import MLResEngine
import MLResModel
import MLResData

/// A problem an analysis cannot get past (a checkpoint that does not fit the dataset, a bad
/// request), with a message that names what is wrong.
public struct AnalysisError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Eval-mode results of one network on one test set.
public struct Evaluation: Sendable {
    /// Images scored.
    public var count: Int
    /// Images whose arg-max logit is the label (ties go to the lowest class index).
    public var correct: Int
    /// Mean softmax cross-entropy, computed in float64 from the float32 logits.
    public var meanLoss: Double
    /// `confusion[true][predicted]` image counts.
    public var confusion: [[Int]]
    /// Row-major `count × K` logits in test-set order, when asked for.
    public var logits: [Float]?
    /// Wall time of the timed batch loop (standardisation, inference, loss): after the first
    /// batch, which is run once untimed to plan the primitives.
    public var seconds: Double
    /// Wall time of everything, including building/loading the executor and the warm-up.
    public var totalSeconds: Double

    /// Top-1 error, 1 − correct / count.
    public var error: Double { count == 0 ? 0 : 1 - Double(correct) / Double(count) }
    /// Timed images per second.
    public var imagesPerSecond: Double { seconds > 0 ? Double(count) / seconds : 0 }
    /// Accuracy per true class (nil for a class with no test image).
    public var perClassAccuracy: [Double?] {
        confusion.enumerated().map { k, row in
            let n = row.reduce(0, +)
            return n == 0 ? nil : Double(row[k]) / Double(n)
        }
    }
}

extension Evaluation {
    /// Eval-mode scoring of the network `executor` holds on `batchCount` batches (running BN
    /// statistics): per image the ``LogitScore`` of its logits (float64 softmax cross-entropy,
    /// arg-max with ties to the lowest class). The one scoring loop of mlres: the trainer's
    /// per-epoch test evaluation and ``Evaluator/evaluate(_:name:skipping:keepLogits:observe:)``
    /// (`mlres-eval score`, `lesion`) call it. `seconds` and `totalSeconds` are left 0.
    ///
    /// - Parameters:
    ///   - batch: the standardised batch `b` in `0 ..< batchCount` (images in dataset order).
    ///   - classes: K, the network's class count; every label must be in `0 ..< K`.
    ///   - skipping: blocks whose residual branch is left out.
    ///   - keepLogits: return the `N × K` logits.
    ///   - observe: every block's Y_j and h·F(Y_j), with the index of the batch's first image.
    /// - Throws: `AnalysisError` for a label outside `0 ..< K`; the engine's errors.
    public static func score(_ executor: NetworkExecutor, batchCount: Int, batch: (Int) throws -> Batch,
                             classes k: Int, skipping: Set<BlockID> = [], keepLogits: Bool = false,
                             observe: ((_ firstImage: Int, BlockActivation) -> Void)? = nil) throws -> Evaluation {
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        var correct = 0, count = 0
        var lossSum = 0.0
        var logits: [Float] = []
        for b in 0 ..< batchCount {
            let batch = try batch(b)
            let z: [Float]
            if let observe {
                let offset = count
                z = try executor.forward(batch.images, count: batch.count, skipping: skipping) { observe(offset, $0) }
            } else {
                z = try executor.forward(batch.images, count: batch.count, skipping: skipping)
            }
            if let i = batch.labels.firstIndex(where: { $0 < 0 || Int($0) >= k }) {
                throw AnalysisError("image \(count + i) has label \(batch.labels[i]), outside the network's \(k) classes 0..<\(k)")
            }
            z.withUnsafeBufferPointer { zp in
                for i in 0 ..< batch.count {
                    let label = Int(batch.labels[i])
                    let s = LogitScore(UnsafeBufferPointer(rebasing: zp[(i * k) ..< ((i + 1) * k)]), label: label)
                    lossSum += s.loss
                    confusion[label][s.predicted] += 1
                    if s.predicted == label { correct += 1 }
                }
            }
            if keepLogits { logits += z.prefix(batch.count * k) }
            count += batch.count
        }
        return Evaluation(count: count, correct: correct, meanLoss: count == 0 ? 0 : lossSum / Double(count),
                          confusion: confusion, logits: keepLogits ? logits : nil, seconds: 0, totalSeconds: 0)
    }
}

/// Scores networks on one test set through the oneDNN engine, in eval mode (BN running
/// statistics). The dataset is read once; each network's inputs are the uint8 pixels scaled to
/// [0, 1] and standardised with that network's own `input_mean`/`input_std`.
///
/// Executors are reused between networks of the same architecture and step sizes (the engine
/// fixes both when it builds its primitives), so a lesion study does not re-plan every edit.
/// Not thread-safe.
public final class Evaluator {
    public let dataset: Dataset
    public let batchSize: Int
    public let threads: Int?
    private var executors: [String: NetworkExecutor] = [:]
    private var cachedInputs: (key: [Float], batches: [Batch])?

    /// - Parameters:
    ///   - dataset: the test split (any subset), in the order results and logits follow.
    ///   - batchSize: inference batch size (the last batch holds the remainder).
    ///   - threads: oneDNN threads (nil: all cores).
    public init(dataset: Dataset, batchSize: Int = 100, threads: Int? = nil) throws {
        guard batchSize > 0 else { throw AnalysisError("--batch must be positive (got \(batchSize))") }
        if let t = threads, t <= 0 { throw AnalysisError("--threads must be positive (got \(t))") }
        guard dataset.count > 0 else { throw AnalysisError("the test set has no images") }
        self.dataset = dataset; self.batchSize = batchSize; self.threads = threads
    }

    /// Why `network` cannot be scored on this dataset (input shape or class count differ),
    /// or nil. `name` (the checkpoint file) starts the message.
    public func mismatch(_ network: Network, name: String) -> String? {
        if network.inputShape != dataset.imageShape {
            return "\(name): the network takes inputs \(Tensor.describe(network.inputShape)) (C,H,W) but the dataset's images are \(Tensor.describe(dataset.imageShape))"
        }
        if network.numClasses != dataset.numClasses {
            return "\(name): the network has \(network.numClasses) classes but the dataset has \(dataset.numClasses)"
        }
        if network.inputMean.count != dataset.channels || network.inputStd.count != dataset.channels {
            return "\(name): input_mean/input_std have \(network.inputMean.count)/\(network.inputStd.count) values for \(dataset.channels) channels"
        }
        return nil
    }

    /// The standardised test batches for `network` (cached for the last mean/std used when the
    /// whole set fits in 256 MB of floats).
    func batches(for network: Network) throws -> [Batch] {
        let key = network.inputMean + network.inputStd
        if let c = cachedInputs, c.key == key { return c.batches }
        let eval = try EvalBatches(dataset: dataset, batchSize: batchSize,
                                   standardizer: Standardizer(mean: network.inputMean, std: network.inputStd))
        let all = (0 ..< eval.count).map { eval.batch($0) }
        if dataset.count * dataset.imageSize <= 64 << 20 { cachedInputs = (key, all) }
        return all
    }

    /// An executor holding `network`'s parameters: a cached one of the same architecture and
    /// step sizes reloaded, or a new one.
    func executor(for network: Network) throws -> NetworkExecutor {
        let key = "\(network.architectureValue)|\(network.stepSizes)"
        if let e = executors[key] {
            try e.load(network)
            return e
        }
        let e = try NetworkExecutor(network: network, batchSize: batchSize, threads: threads)
        executors[key] = e
        return e
    }

    /// Eval-mode error, loss and confusion of `network` on the whole test set.
    ///
    /// - Parameters:
    ///   - name: how messages name the network (its file).
    ///   - skipping: blocks whose residual branch is left out (the block outputs P(Y_j)).
    ///   - keepLogits: return the `N × K` logits.
    ///   - observe: called with every block's input Y_j and residual h·F(Y_j), batch by batch,
    ///     with the index of the batch's first image.
    public func evaluate(_ network: Network, name: String = "network", skipping: Set<BlockID> = [],
                         keepLogits: Bool = false,
                         observe: ((_ firstImage: Int, BlockActivation) -> Void)? = nil) throws -> Evaluation {
        if let m = mismatch(network, name: name) { throw AnalysisError(m) }
        let start = DispatchTime.now().uptimeNanoseconds
        let exe = try executor(for: network)
        let batches = try batches(for: network)
        // Warm-up: plan the primitives of the first batch size outside the timed loop.
        if observe == nil {
            _ = try exe.forward(batches[0].images, count: batches[0].count, skipping: skipping)
        }
        let timed = DispatchTime.now().uptimeNanoseconds
        var ev = try Evaluation.score(exe, batchCount: batches.count, batch: { batches[$0] }, classes: network.numClasses,
                                      skipping: skipping, keepLogits: keepLogits, observe: observe)
        let end = DispatchTime.now().uptimeNanoseconds
        ev.seconds = Double(end - timed) / 1e9
        ev.totalSeconds = Double(end - start) / 1e9
        return ev
    }
}
