import Foundation
import MLResModel
import MLResData
import MLResTestSupport

/// The committed dataset fixtures (scripts/make_dataset_fixtures.py).
enum Fix {
    static let root: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/datasets").path
    }()
    /// The 12-image Fashion-MNIST test fixture.
    static func fashionTest() throws -> Dataset {
        try DatasetSelection(kind: .fashionMNIST, dataDirectory: root + "/fashion-mnist").load(.test)
    }
    static func scratch() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-analysis-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}

/// A tiny 1x28x28 network (blocks 2-1-2, widths 4-6-8, so the shortcut pads 1 channel on each
/// side) with random BN parameters and running statistics, mixed step sizes, a non-trivial
/// input standardisation.
func tinyNet(seed: UInt64 = 11, hs: [[Double]] = [[0.5, 0.8], [1.0], [0.7, 0.3]]) -> Network {
    networkWithBNStatistics(Architecture(blocks: hs.map(\.count), widths: [4, 6, 8], inputShape: [1, 28, 28]),
                            seed: seed, hs: hs, inputMean: [0.45], inputStd: [0.3])
}

/// The dataset's images scaled to [0,1] and standardised as `net` says, in float64.
func referenceInput(_ net: Network, _ ds: Dataset) -> Array64 {
    Ref.standardised(net, pixels: ds.images.map { Double($0) / 255 }, count: ds.count)
}

/// Mean over images of each image's L2 norm.
func meanNorm(_ x: Array64) -> Double {
    let n = x.shape[0], per = x.v.count / n
    var total = 0.0
    for i in 0 ..< n { total += x.v[(i * per) ..< ((i + 1) * per)].reduce(0) { $0 + $1 * $1 }.squareRoot() }
    return total / Double(n)
}

func relClose(_ a: Double, _ b: Double, _ tol: Double = 1e-4) -> Bool {
    abs(a - b) <= tol * max(abs(a), abs(b), 1e-3)
}
