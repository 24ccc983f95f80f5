import Foundation
import Testing
import MLResModel
@testable import MLResData
@testable import MLResTraining

/// Loader throughput (images/s, single consumer thread), run by scripts/bench-loader.sh in a
/// release build with MLRES_BENCH=1; skipped otherwise (debug numbers mean nothing).
let benchEnabled = ProcessInfo.processInfo.environment["MLRES_BENCH"] == "1"

func syntheticDataset(count: Int, c: Int, h: Int, w: Int, seed: UInt64) -> Dataset {
    var rng = SplitMix64(seed: seed)
    var px = [UInt8](repeating: 0, count: count * c * h * w)
    for i in px.indices { px[i] = UInt8(truncatingIfNeeded: rng.next()) }
    let labels = (0 ..< count).map { Int32($0 % 10) }
    return Dataset(images: px, labels: labels, channels: c, height: h, width: w, classNames: ClassNames.cifar10)
}

func measure(_ name: String, _ ds: Dataset, batch: Int, aug: Augmentation, prefetch: Bool) throws -> Double {
    let st = Standardizer(ChannelStats(of: ds))
    let loader = try TrainingLoader(dataset: ds, batchSize: batch, augmentation: aug, standardizer: st,
                                seed: 1, prefetch: prefetch)
    var sink: Float = 0
    _ = loader.next()  // warm-up
    let steps = loader.batchesPerEpoch * 2
    let t0 = DispatchTime.now().uptimeNanoseconds
    var images = 0
    for _ in 0 ..< steps { let b = loader.next(); images += b.count; sink += b.images[0] }
    let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    let rate = Double(images) / secs
    print(String(format: "loader %-28@ batch %3d pad %2d flip %@ prefetch %@: %9.0f images/s (%d images in %.2fs)%@",
                 name as NSString, batch, aug.padding, aug.flip ? "y" : "n", prefetch ? "y" : "n", rate, images, secs,
                 sink.isNaN ? "!" : ""))
    return rate
}

@Test("Loader throughput (MLRES_BENCH=1, release build)", .enabled(if: benchEnabled, "set MLRES_BENCH=1 (scripts/bench-loader.sh)"))
func loaderThroughput() throws {
    var results: [String: Double] = [:]
    if FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz") {
        let t0 = Date()
        let fm = try DatasetKind.fashionMNIST.load(.train, from: FashionMNIST.defaultDirectory)
        print(String(format: "read Fashion-MNIST train (60000, gzip) in %.2fs", Date().timeIntervalSince(t0)))
        results["fashion"] = try measure("fashion-mnist 1x28x28", fm, batch: 100, aug: .defaults(for: .fashionMNIST), prefetch: false)
        _ = try measure("fashion-mnist 1x28x28", fm, batch: 100, aug: .defaults(for: .fashionMNIST), prefetch: true)
    }
    let cifar = syntheticDataset(count: 20_000, c: 3, h: 32, w: 32, seed: 3)
    results["cifar"] = try measure("cifar-shaped 3x32x32", cifar, batch: 100, aug: .defaults(for: .cifar10), prefetch: false)
    _ = try measure("cifar-shaped 3x32x32", cifar, batch: 100, aug: .defaults(for: .cifar10), prefetch: true)
    let stl = syntheticDataset(count: 2_000, c: 3, h: 96, w: 96, seed: 4)
    _ = try measure("stl-shaped 3x96x96", stl, batch: 32, aug: .defaults(for: .stl10), prefetch: false)
    let ev = try EvalBatches(dataset: cifar, batchSize: 100, standardizer: Standardizer(ChannelStats(of: cifar)))
    let t0 = DispatchTime.now().uptimeNanoseconds
    var s: Float = 0
    for b in 0 ..< ev.count { s += ev.batch(b).images[1] }
    let evRate = Double(cifar.count) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    print(String(format: "eval batches cifar-shaped: %9.0f images/s%@", evRate, s.isNaN ? "!" : ""))
    for (k, v) in results { #expect(v > 20_000, "\(k): \(v) images/s") }
}
