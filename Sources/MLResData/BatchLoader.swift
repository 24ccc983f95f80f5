import Dispatch
import MLResModel

/// A mini-batch: float32 images `[count, C, H, W]` (standardised) and their labels.
public struct Batch: Sendable, Equatable {
    public var images: [Float]
    public var labels: [Int32]
    public var channels: Int, height: Int, width: Int
    public var count: Int { labels.count }
    /// `[N, C, H, W]`.
    public var shape: [Int] { [count, channels, height, width] }
}

/// Combines words into one 64-bit seed (SplitMix64 finaliser over each word in turn).
func mixSeed(_ words: UInt64...) -> UInt64 {
    var h: UInt64 = 0x6D6C_7265_735F_6461  // "mlres_da"
    for w in words {
        var g = SplitMix64(seed: h ^ w)
        h = g.next()
    }
    return h
}

/// Training batches: a seeded shuffle of the training set per epoch and augmented images.
///
/// Everything is a pure function of `(seed, epoch, batch index)`: the order of epoch `e` is a
/// Fisher–Yates shuffle with `SplitMix64(mixSeed(seed, e, 0))`, and batch `b` of epoch `e` draws
/// its crops and flips from `SplitMix64(mixSeed(seed, e, b + 1))`, image by image in batch order.
/// So a run resumes exactly from ``state`` (seed, epoch, position) alone, and a background thread
/// can prepare the next batch without changing any result.
///
/// Data parallelism: with `replicas` N > 1 the loader returns only this `replica`'s part of
/// each batch, images `n·r/N ..< n·(r+1)/N` of it, with the draws they have in the whole batch
/// (the draws of the images before the part are made and discarded), so the global batch of
/// every step holds the same augmented images whatever the number of replicas.
///
/// `next()` always returns a batch: after the last batch of epoch `e` the position moves to
/// epoch `e + 1`, batch 0. The last batch of an epoch is smaller when the dataset size is not a
/// multiple of the batch size, unless `dropLast` (then those images are skipped that epoch).
public final class TrainingLoader: @unchecked Sendable {
    public let dataset: Dataset
    public let batchSize: Int
    public let augmentation: Augmentation
    public let standardizer: Standardizer
    public let seed: UInt64
    public let dropLast: Bool
    /// Prepare the next batch on a background thread while the caller uses the current one.
    public let prefetch: Bool
    /// This process's part of every batch (data-parallel training): replica `replica` of `replicas`.
    public let replica: Int, replicas: Int

    /// Epoch of the next batch (0-based).
    public private(set) var epoch: Int
    /// Index within the epoch of the next batch.
    public private(set) var position: Int

    private var orderEpoch = -1
    private var order: [Int32] = []
    private let queue = DispatchQueue(label: "mlres.loader.prefetch")
    private var pending: (epoch: Int, index: Int, result: PrefetchBox)?

    /// Fails (with a message naming the problem) for a non-positive batch size, an empty
    /// dataset, mean/std for another number of channels, or `dropLast` with fewer images than
    /// one batch.
    public init(dataset: Dataset, batchSize: Int, augmentation: Augmentation, standardizer: Standardizer,
                seed: UInt64, dropLast: Bool = false, prefetch: Bool = false, epoch: Int = 0, position: Int = 0,
                replica: Int = 0, replicas: Int = 1) throws {
        try checkBatching(dataset: dataset, batchSize: batchSize, standardizer: standardizer)
        guard !dropLast || dataset.count >= batchSize else {
            throw DatasetError.invalidRequest(detail:
                "batch size \(batchSize) is larger than the \(dataset.count) training images (with the last partial batch dropped)")
        }
        guard epoch >= 0, position >= 0 else {
            throw DatasetError.invalidRequest(detail: "loader epoch \(epoch) and position \(position) must not be negative")
        }
        self.dataset = dataset; self.batchSize = batchSize; self.augmentation = augmentation
        self.standardizer = standardizer; self.seed = seed; self.dropLast = dropLast; self.prefetch = prefetch
        self.epoch = epoch; self.position = position
        guard replicas >= 1, replica >= 0, replica < replicas else {
            throw DatasetError.invalidRequest(detail: "replica \(replica) of \(replicas) does not exist")
        }
        self.replica = replica; self.replicas = replicas
        try restore(state)
    }

    /// Batches (optimizer steps) in one epoch.
    public var batchesPerEpoch: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// What a checkpoint must store to continue exactly: `[seed, epoch, position]`.
    public var state: [UInt64] { [seed, UInt64(epoch), UInt64(position)] }

    /// Moves to a saved ``state``. The seed must be the one this loader was built with.
    public func restore(_ state: [UInt64]) throws {
        guard state.count == 3, state[0] == seed, state[1] < UInt64(Int.max), state[2] < UInt64(batchesPerEpoch) else {
            throw DatasetError.invalidRequest(detail:
                "data-order state \(state) does not fit this loader (seed \(seed), \(batchesPerEpoch) batches per epoch)")
        }
        epoch = Int(state[1]); position = Int(state[2])
        pending = nil
    }

    /// The image order of `epoch` (indices into the dataset).
    public func order(epoch e: Int) -> [Int32] {
        var idx = (0 ..< Int32(dataset.count)).map { $0 }
        var rng = SplitMix64(seed: mixSeed(seed, UInt64(e), 0))
        rng.shuffle(&idx)
        return idx
    }

    /// The next training batch; advances the position (and the epoch after its last batch).
    public func next() -> Batch {
        let e = epoch, b = position
        let batch: Batch
        if let p = pending, p.epoch == e, p.index == b {
            batch = p.result.wait()
        } else {
            batch = makeBatch(epoch: e, index: b, order: currentOrder(e))
        }
        pending = nil
        position += 1
        if position == batchesPerEpoch { epoch += 1; position = 0 }
        if prefetch {
            let (ne, nb) = (epoch, position)
            let ord = currentOrder(ne)
            let box = PrefetchBox()
            queue.async { [self] in box.fill(self.makeBatch(epoch: ne, index: nb, order: ord)) }
            pending = (ne, nb, box)
        }
        return batch
    }

    private func currentOrder(_ e: Int) -> [Int32] {
        if orderEpoch != e { order = order(epoch: e); orderEpoch = e }
        return order
    }

    /// Batch `index` of `epoch` given that epoch's order: a pure function.
    public func makeBatch(epoch e: Int, index b: Int, order: [Int32]) -> Batch {
        let start = b * batchSize
        let whole = min(batchSize, dataset.count - start)
        let lo = whole * replica / replicas, hi = whole * (replica + 1) / replicas
        let n = hi - lo
        let (c, h, w) = (dataset.channels, dataset.height, dataset.width)
        let size = c * h * w
        var rng = SplitMix64(seed: mixSeed(seed, UInt64(e), UInt64(b) + 1))
        var images = [Float](repeating: 0, count: n * size)
        var labels = [Int32](repeating: 0, count: n)
        for _ in 0 ..< lo { _ = augmentation.draw(&rng) }  // the other replicas' images before ours
        dataset.images.withUnsafeBufferPointer { px in
            standardizer.lut.withUnsafeBufferPointer { lut in
                images.withUnsafeMutableBufferPointer { out in
                    for k in 0 ..< n {
                        let i = Int(order[start + lo + k])
                        labels[k] = dataset.labels[i]
                        let d = augmentation.draw(&rng)
                        writeAugmented(src: px.baseAddress! + i * size, dst: out.baseAddress! + k * size,
                                       channels: c, height: h, width: w, padding: augmentation.padding,
                                       dy: d.dy, dx: d.dx, flip: d.flip, lut: lut.baseAddress!)
                    }
                }
            }
        }
        return Batch(images: images, labels: labels, channels: c, height: h, width: w)
    }
}

/// A one-shot slot the prefetch thread fills and the caller waits on.
final class PrefetchBox: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: Batch?
    func fill(_ b: Batch) { value = b; done.signal() }
    func wait() -> Batch { done.wait(); return value! }
}

/// Evaluation batches: the split in file order, standardised, no augmentation; the last batch
/// holds the remainder.
public struct EvalBatches: Sendable {
    public let dataset: Dataset
    public let batchSize: Int
    public let standardizer: Standardizer

    public init(dataset: Dataset, batchSize: Int, standardizer: Standardizer) throws {
        try checkBatching(dataset: dataset, batchSize: batchSize, standardizer: standardizer)
        self.dataset = dataset; self.batchSize = batchSize; self.standardizer = standardizer
    }

    public var count: Int { (dataset.count + batchSize - 1) / batchSize }

    public func batch(_ b: Int) -> Batch {
        precondition(b >= 0 && b < count)
        let start = b * batchSize, n = min(batchSize, dataset.count - start)
        let size = dataset.imageSize
        var images = [Float](repeating: 0, count: n * size)
        dataset.images.withUnsafeBufferPointer { px in
            standardizer.lut.withUnsafeBufferPointer { lut in
                images.withUnsafeMutableBufferPointer { out in
                    let plane = dataset.height * dataset.width
                    for k in 0 ..< n {
                        let s = px.baseAddress! + (start + k) * size, d = out.baseAddress! + k * size
                        for c in 0 ..< dataset.channels {
                            let t = lut.baseAddress! + c * 256
                            for j in 0 ..< plane { d[c * plane + j] = t[Int(s[c * plane + j])] }
                        }
                    }
                }
            }
        }
        return Batch(images: images, labels: Array(dataset.labels[start ..< start + n]),
                     channels: dataset.channels, height: dataset.height, width: dataset.width)
    }
}

func checkBatching(dataset: Dataset, batchSize: Int, standardizer: Standardizer) throws {
    guard batchSize > 0 else { throw DatasetError.invalidRequest(detail: "batch size must be positive, got \(batchSize)") }
    guard dataset.count > 0 else { throw DatasetError.invalidRequest(detail: "the dataset has no images") }
    guard standardizer.channels == dataset.channels else {
        throw DatasetError.invalidRequest(detail:
            "input mean/std have \(standardizer.channels) channels but the images have \(dataset.channels)")
    }
}
