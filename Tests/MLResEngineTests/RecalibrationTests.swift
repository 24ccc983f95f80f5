import Foundation
import Testing
import MLResModel
@testable import MLResEngine
import MLResTestSupport

// BN recalibration (issue 17, Sources/MLResEngine/Recalibration.swift) against an independent
// float64 recomputation: the batch statistics of every batch norm come from the float64
// reference network's training-mode forward pass (Ref.trainForwardBackward), and their
// cumulative average is taken here in float64 with PyTorch's momentum=None recurrence.

@Suite("BN recalibration")
struct RecalibrationTests {
    /// The tiny network (NHWC activations) and one whose widths are multiples of 8 and 16
    /// (blocked activation layouts on AVX2 / AVX-512), both with a shape-changing block.
    static let networks: [String: Network] = [
        "tiny 1-2 widths 3,6": tinyNetwork(),
        "1-2 widths 16,32": networkWithBNStatistics(
            Architecture(blocks: [1, 2], widths: [16, 32], inputShape: [3, 8, 8], numClasses: 4), seed: 5, h: 0.5),
    ]

    /// PyTorch's running-statistics update with momentum=None after reset_running_stats():
    /// the k-th batch (k = 1, 2, ...) moves r by (x_k − r)/k, starting from mean 0, variance 1.
    static func torchCumulative(_ batches: [(mean: [Double], unbiasedVar: [Double])]) -> (mean: [Double], variance: [Double]) {
        var m = [Double](repeating: 0, count: batches[0].mean.count), v = [Double](repeating: 1, count: m.count)
        for (k, b) in batches.enumerated() {
            let f = 1 / Double(k + 1)
            for c in m.indices { m[c] += f * (b.mean[c] - m[c]); v[c] += f * (b.unbiasedVar[c] - v[c]) }
        }
        return (m, v)
    }

    @Test("recalibrated running statistics = float64 cumulative average of the reference's batch statistics",
          arguments: ["tiny 1-2 widths 3,6", "1-2 widths 16,32"])
    func matchesFloat64CumulativeAverage(name: String) throws {
        let net = Self.networks[name]!
        let n = 6, batches = 3
        let per = net.inputShape.reduce(1, *)
        let inputs = (0 ..< batches).map { randomInput(count: n * per, seed: 40 + UInt64($0)) }
        let e = try NetworkExecutor(network: net, batchSize: n, threads: 1)
        var k = 0
        let acc = try e.recalibrateBatchNorm(batches: batches) {
            defer { k += 1 }
            return (inputs[k], n)
        }
        #expect(k == batches && acc.batches == batches)
        // Float64 reference: every BN's batch statistics per batch, averaged as PyTorch does.
        let labels = (0 ..< n).map { $0 % net.numClasses }
        let ref = inputs.map { Ref.trainForwardBackward(net, Array64([n] + net.inputShape, $0.map(Double.init)), labels).stats }
        var expected: [Double] = []
        for path in e.batchNormPaths {
            let perBatch = ref.map { r -> (mean: [Double], unbiasedVar: [Double]) in
                let (mean, variance, m) = r[path]!
                return (mean, variance.map { $0 * Double(m) / Double(m - 1) })
            }
            let avg = Self.torchCumulative(perBatch)
            expected += avg.mean + avg.variance
        }
        let got = e.runningStatistics()
        #expect(got.count == expected.count)
        let err = relError(got, expected, floor: 1e-3)
        #expect(err < 2e-5, "\(name): relative error \(err) of the recalibrated running statistics")
        // And they are not the network's old statistics (the test would pass vacuously otherwise).
        let old = try NetworkExecutor(network: net, batchSize: n, threads: 1).runningStatistics()
        #expect(relError(old, expected, floor: 1e-3) > 1e-2)
    }

    @Test("the equal-weight average is PyTorch's momentum=None recurrence; unbiased variance M/(M−1)")
    func cumulativeAverageIsTorchRecurrence() throws {
        var acc = CumulativeBatchStatistics()
        #expect(acc.runningStatistics.isEmpty)
        let batches: [[BatchNormStatistics]] = [
            [BatchNormStatistics(path: "a", mean: [1, -2], variance: [0.5, 2], count: 4)],
            [BatchNormStatistics(path: "a", mean: [3, 0], variance: [1.5, 1], count: 4)],
            [BatchNormStatistics(path: "a", mean: [-1, 5], variance: [0.25, 4], count: 4)],
        ]
        for b in batches { try acc.add(b) }
        let torch = Self.torchCumulative(batches.map { ($0[0].mean, $0[0].variance.map { $0 * 4 / 3 }) })
        #expect(relError(acc.runningStatistics, torch.mean + torch.variance, floor: 1e-12) < 1e-14)
        // Equal weights: the plain mean of the means.
        #expect(abs(acc.runningStatistics[0] - 1) < 1e-15 && abs(acc.runningStatistics[1] - 1) < 1e-15)
        // A batch of another network's layers is refused.
        #expect(throws: EngineError.self) {
            try acc.add([BatchNormStatistics(path: "b", mean: [0, 0], variance: [1, 1], count: 4)])
        }
    }

    @Test("recalibration changes the running statistics and nothing else; batchStatistics changes nothing")
    func changesOnlyRunningStatistics() throws {
        let net = Self.networks["1-2 widths 16,32"]!
        let n = 4
        let per = net.inputShape.reduce(1, *)
        let e = try NetworkExecutor(network: net, batchSize: n, threads: 1)
        // Give the optimizer non-zero momentum buffers first (one SGD step), then keep a copy.
        _ = try e.trainStep(input: randomInput(count: n * per, seed: 1), labels: [0, 1, 2, 3], lr: 0.1)
        let before = try e.exportNetwork(), momentum = try e.exportOptimizerState()
        let stats0 = e.runningStatistics()
        _ = try e.batchStatistics(input: randomInput(count: n * per, seed: 2), count: n)
        #expect(e.runningStatistics() == stats0, "batchStatistics must leave the running statistics as they were")
        try e.recalibrateBatchNorm(batches: 2) { (randomInput(count: n * per, seed: 3), n) }
        let after = try e.exportNetwork()
        var changed = 0
        for (a, b) in zip(before.namedTensors, after.namedTensors) {
            #expect(a.path == b.path)
            if a.path.hasSuffix("running_mean") || a.path.hasSuffix("running_var") {
                if a.tensor != b.tensor { changed += 1 }
            } else {
                #expect(a.tensor == b.tensor, "\(a.path) changed")
            }
        }
        #expect(changed == 2 * e.batchNormPaths.count, "every running mean and variance is re-estimated")
        #expect(after.stepSizes == before.stepSizes)
        let m2 = try e.exportOptimizerState()
        #expect(m2.buffers == momentum.buffers)
        #expect(throws: EngineError.self) { try e.recalibrateBatchNorm(batches: 0) { ([], 0) } }
    }
}
