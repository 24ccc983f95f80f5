import Foundation
import Testing
import MLResModel
@testable import MLResData
@testable import MLResTraining

/// Independent reference of pad → crop → flip on one channel: builds the padded image
/// explicitly, crops it at (dy, dx), mirrors if asked. Returns raw pixel values (0 in the padding).
func referenceCrop(_ img: [UInt8], h: Int, w: Int, pad p: Int, dy: Int, dx: Int, flip: Bool) -> [UInt8] {
    let ph = h + 2 * p, pw = w + 2 * p
    var padded = [UInt8](repeating: 0, count: ph * pw)
    for y in 0 ..< h { for x in 0 ..< w { padded[(y + p) * pw + x + p] = img[y * w + x] } }
    var crop = [UInt8](repeating: 0, count: h * w)
    for y in 0 ..< h { for x in 0 ..< w { crop[y * w + x] = padded[(y + dy) * pw + x + dx] } }
    if flip { for y in 0 ..< h { crop[(y * w) ..< (y * w + w)].reverse() } }
    return crop
}

/// Standardizer whose table is v/255 (mean 0, std 1): output pixel → raw value by ×255.
let identity1 = Standardizer(mean: [0], std: [1])

@Test("Crop offsets and flip on a known image match an explicit pad-crop-mirror, for every offset")
func cropAndFlipExhaustive() {
    let (h, w, p) = (5, 7, 3)
    let img = (0 ..< h * w).map { UInt8(10 + $0) }  // all distinct, none zero
    var out = [Float](repeating: -1, count: h * w)
    for dy in 0 ... 2 * p { for dx in 0 ... 2 * p { for flip in [false, true] {
        img.withUnsafeBufferPointer { s in identity1.lut.withUnsafeBufferPointer { t in out.withUnsafeMutableBufferPointer { o in
            writeAugmented(src: s.baseAddress!, dst: o.baseAddress!, channels: 1, height: h, width: w,
                           padding: p, dy: dy, dx: dx, flip: flip, lut: t.baseAddress!)
        } } }
        let got = out.map { UInt8(($0 * 255).rounded()) }
        let want = referenceCrop(img, h: h, w: w, pad: p, dy: dy, dx: dx, flip: flip)
        #expect(got == want, "dy \(dy) dx \(dx) flip \(flip)")
    } } }
    // Centre crop without flip is the identity; dy = dx = 0 shifts the image down-right by p.
    img.withUnsafeBufferPointer { s in identity1.lut.withUnsafeBufferPointer { t in out.withUnsafeMutableBufferPointer { o in
        writeAugmented(src: s.baseAddress!, dst: o.baseAddress!, channels: 1, height: h, width: w,
                       padding: p, dy: 0, dx: 0, flip: false, lut: t.baseAddress!)
    } } }
    #expect(out[p * w + p] == Float(Double(img[0]) / 255) && out[0] == 0)
}

@Test("Standardisation statistics equal a float64 recomputation; the table is (v/255 - mean)/std")
func channelStatistics() throws {
    let ds = try DatasetKind.cifar10.load(.train, from: Fixtures.dir("cifar10"))
    let stats = ChannelStats(of: ds)
    for c in 0 ..< 3 {
        var vals: [Double] = []
        for i in 0 ..< ds.count { for j in 0 ..< 1024 { vals.append(Double(ds.images[i * 3072 + c * 1024 + j]) / 255) } }
        let m = vals.reduce(0, +) / Double(vals.count)
        let v = vals.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(vals.count)
        #expect(abs(stats.mean[c] - m) < 1e-12 && abs(stats.std[c] - v.squareRoot()) < 1e-12)
    }
    let st = Standardizer(stats)
    for c in 0 ..< 3 { for v in [0, 1, 128, 255] {
        let want = (Double(v) / 255 - Double(Float(stats.mean[c]))) / Double(Float(stats.std[c]))
        #expect(abs(Double(st.lut[c * 256 + v]) - want) <= 1e-6 * max(1, abs(want)))
    } }
    #expect(stats.meanTensor.shape == [3] && stats.stdTensor.data[1] == Float(stats.std[1]))
    // Eval batches: file order, no augmentation, standardised by the table.
    let eval = try EvalBatches(dataset: ds, batchSize: 16, standardizer: st)
    #expect(eval.count == 3)
    let last = eval.batch(2)
    #expect(last.shape == [8, 3, 32, 32] && last.labels == Array(ds.labels[32 ..< 40]))
    let k = 5, c = 2, y = 7, x = 30
    let raw = Int(ds.images[(32 + k) * 3072 + c * 1024 + y * 32 + x])
    #expect(last.images[k * 3072 + c * 1024 + y * 32 + x] == st.lut[c * 256 + raw])
}

/// A loader over the CIFAR-10 fixture (40 images).
func fixtureLoader(seed: UInt64, batch: Int = 16, prefetch: Bool = false, dropLast: Bool = false) throws -> TrainingLoader {
    let ds = try DatasetKind.cifar10.load(.train, from: Fixtures.dir("cifar10"))
    return try TrainingLoader(dataset: ds, batchSize: batch, augmentation: Augmentation(padding: 4, flip: true),
                          standardizer: Standardizer(ChannelStats(of: ds)), seed: seed,
                          dropLast: dropLast, prefetch: prefetch)
}

@Test("Loader: each epoch is a permutation; every image is an augmented view of the source the order names")
func loaderContents() throws {
    let loader = try fixtureLoader(seed: 42)
    #expect(loader.batchesPerEpoch == 3)
    let ds = loader.dataset
    let order = loader.order(epoch: 0)
    #expect(order.sorted() == (0 ..< 40).map { Int32($0) } && order != (0 ..< 40).map { Int32($0) })
    #expect(loader.order(epoch: 1) != order)
    var seen: [Int32] = []
    var flips = 0, offsets = Set<Int>()
    for b in 0 ..< 3 {
        let batch = loader.next()
        #expect(batch.count == (b < 2 ? 16 : 8))
        for k in 0 ..< batch.count {
            let src = Int(order[b * 16 + k])
            #expect(batch.labels[k] == ds.labels[src])
            seen.append(order[b * 16 + k])
            // Find the (dy, dx, flip) that reproduces this image with the reference crop.
            var match: (Int, Int, Bool)?
            let got = Array(batch.images[(k * 3072) ..< (k * 3072 + 1024)])  // channel 0
            let src0 = Array(ds.images[(src * 3072) ..< (src * 3072 + 1024)])
            search: for dy in 0 ... 8 { for dx in 0 ... 8 { for f in [false, true] {
                let ref = referenceCrop(src0, h: 32, w: 32, pad: 4, dy: dy, dx: dx, flip: f)
                if ref.map({ loader.standardizer.lut[Int($0)] }) == got { match = (dy, dx, f); break search }
            } } }
            #expect(match != nil, "image \(k) of batch \(b) is no augmented view of image \(src)")
            if let m = match { if m.2 { flips += 1 }; offsets.insert(m.0 * 9 + m.1) }
        }
    }
    #expect(seen.sorted() == (0 ..< 40).map { Int32($0) })
    #expect(flips > 5 && flips < 35 && offsets.count > 10, "flips \(flips), distinct offsets \(offsets.count)")
    #expect(loader.state == [42, 1, 0])
}

@Test("Loader determinism: same seed same batches, resume from state, prefetch changes nothing")
func loaderDeterminism() throws {
    let a = try fixtureLoader(seed: 7), b = try fixtureLoader(seed: 7), c = try fixtureLoader(seed: 8)
    let p = try fixtureLoader(seed: 7, prefetch: true)
    var fromA: [Batch] = []
    for _ in 0 ..< 7 { fromA.append(a.next()) }  // crosses two epoch boundaries (3 batches per epoch)
    var fromB: [Batch] = [], fromP: [Batch] = []
    for _ in 0 ..< 7 { fromB.append(b.next()); fromP.append(p.next()) }
    #expect(fromA == fromB && fromA == fromP)
    #expect(c.next() != fromA[0])
    // Resume: a fresh loader restored to the state after 4 batches continues identically.
    let r = try fixtureLoader(seed: 7)
    try r.restore([7, 1, 1])
    #expect(r.next() == fromA[4] && r.next() == fromA[5] && r.next() == fromA[6])
    #expect(a.state == [7, 2, 1])
    // A state from another seed or out of range is refused with a message.
    #expect(message { try r.restore([8, 0, 0]) }.contains("does not fit this loader"))
    #expect(caught { try r.restore([7, 0, 3]) } != nil)
    // dropLast: the 8 left-over images are skipped, 2 batches per epoch.
    let d = try fixtureLoader(seed: 7, batch: 16, dropLast: true)
    #expect(d.batchesPerEpoch == 2)
    _ = d.next(); _ = d.next()
    #expect(d.state == [7, 1, 0])
}

@Test("Loader and eval batches refuse bad settings with a message")
func loaderErrors() throws {
    let ds = try DatasetKind.cifar10.load(.test, from: Fixtures.dir("cifar10"))
    let st = Standardizer(ChannelStats(of: ds))
    #expect(message { try TrainingLoader(dataset: ds, batchSize: 0, augmentation: .none, standardizer: st, seed: 1) }
        .contains("batch size must be positive"))
    #expect(message { try TrainingLoader(dataset: ds, batchSize: 21, augmentation: .none, standardizer: st, seed: 1, dropLast: true) }
        .contains("batch size 21 is larger than the 20 training images"))
    #expect(message { try EvalBatches(dataset: ds, batchSize: 10, standardizer: Standardizer(mean: [0], std: [1])) }
        .contains("input mean/std have 1 channels but the images have 3"))
    #expect(message { try TrainingLoader(dataset: ds, batchSize: 10, augmentation: .none, standardizer: st, seed: 1, position: 2) }
        .contains("does not fit"))
}
