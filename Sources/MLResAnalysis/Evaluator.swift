import Foundation
import MLResEngine
import MLResModel
import MLResTraining

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
        let k = network.numClasses
        // Warm-up: plan the primitives of the first batch size outside the timed loop.
        if observe == nil {
            _ = try exe.forward(batches[0].images, count: batches[0].count, skipping: skipping)
        }
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        var correct = 0
        var lossSum = 0.0
        var logits: [Float] = []
        if keepLogits { logits.reserveCapacity(dataset.count * k) }
        let timed = DispatchTime.now().uptimeNanoseconds
        var first = 0
        for batch in batches {
            let z: [Float]
            if let observe {
                let offset = first
                z = try exe.forward(batch.images, count: batch.count, skipping: skipping) { observe(offset, $0) }
            } else {
                z = try exe.forward(batch.images, count: batch.count, skipping: skipping)
            }
            z.withUnsafeBufferPointer { zp in
                for i in 0 ..< batch.count {
                    let row = zp.baseAddress! + i * k
                    let label = Int(batch.labels[i])
                    var best = 0
                    var maxv = row[0]
                    for c in 1 ..< k where row[c] > maxv { maxv = row[c]; best = c }
                    // log-sum-exp in float64 around the maximum.
                    let m = Double(maxv)
                    var s = 0.0
                    for c in 0 ..< k { s += Foundation.exp(Double(row[c]) - m) }
                    lossSum += m + Foundation.log(s) - Double(row[label])
                    confusion[label][best] += 1
                    if best == label { correct += 1 }
                }
            }
            if keepLogits { logits += z.prefix(batch.count * k) }
            first += batch.count
        }
        let end = DispatchTime.now().uptimeNanoseconds
        return Evaluation(count: dataset.count, correct: correct, meanLoss: lossSum / Double(dataset.count),
                          confusion: confusion, logits: keepLogits ? logits : nil,
                          seconds: Double(end - timed) / 1e9, totalSeconds: Double(end - start) / 1e9)
    }
}
