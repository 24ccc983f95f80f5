import Foundation
import MLResModel

/// Limits of dynamic batching (`--max-batch`, `--max-queue-delay-ms`, `--max-queue`).
public struct BatchingOptions: Sendable {
    /// Most images one backend execution receives.
    public var maxBatch: Int
    /// Longest time a batch waits for more requests to join it, counted from the oldest queued
    /// request's arrival or, when that request arrived while the previous batch ran, from the end
    /// of that batch (Triton's `max_queue_delay_microseconds`).
    public var maxQueueDelay: Duration
    /// Most images waiting in one model's queue; a request that does not fit gets 429.
    public var maxQueue: Int

    public init(maxBatch: Int = 64, maxQueueDelay: Duration = .milliseconds(2), maxQueue: Int = 1024) {
        self.maxBatch = maxBatch; self.maxQueueDelay = maxQueueDelay; self.maxQueue = maxQueue
    }
}

/// Why a queued inference did not produce logits.
public enum BatchError: Error, CustomStringConvertible, Sendable {
    /// The queue holds `queued` images already and the request does not fit under `limit`.
    case queueFull(queued: Int, limit: Int)
    /// The batcher is stopping (server shutdown or model unloaded) and takes no new work.
    case stopped
    /// The model was reloaded with another input shape after the request was checked.
    case shapeChanged(expected: [Int], got: [Int])
    /// The request named a model version (`/versions/V/infer`) and the model was reloaded to
    /// another version while the request waited.
    case versionChanged(requested: Int, now: Int)
    /// The backend threw.
    case backend(String)

    public var description: String {
        switch self {
        case .queueFull(let q, let l): "queue full: \(q) images waiting, limit --max-queue \(l)"
        case .stopped: "the model is being unloaded or the server is shutting down"
        case .shapeChanged(let e, let g):
            "the model was reloaded with input shape \(Tensor.describe(e)), request has \(Tensor.describe(g))"
        case .versionChanged(let r, let n):
            "version '\(r)' was replaced by version '\(n)' (a reload) while the request waited"
        case .backend(let m): "inference failed: \(m)"
        }
    }
}

/// The result of one request: its logits and which loaded version produced them.
public struct BatchResult: Sendable {
    public var logits: [Float]
    public var numClasses: Int
    public var modelVersion: Int
    /// The class names of the checkpoint that ran the batch (labels of the classification extension).
    public var classNames: [String]?
}

/// Running totals of one model's batcher (since the server started, across reloads).
public struct BatcherStats: Sendable {
    public var requests = 0
    public var failedRequests = 0
    public var rejectedRequests = 0
    public var inferences = 0
    public var executions = 0
    public var queueNanoseconds: Int64 = 0
    public var computeNanoseconds: Int64 = 0
}

/// The model a batcher currently executes: standardisation constants plus the backend.
struct ServingModel: Sendable {
    var version: Int
    var inputShape: [Int]
    var numClasses: Int
    var inputMean: [Float]
    var inputStd: [Float]
    var classNames: [String]?
    var backend: any InferenceBackend
}

/// Dynamic batching for one model.
///
/// Requests are queued; a dedicated thread takes the oldest request, waits until either
/// `maxBatch` images are queued or `maxQueueDelay` has passed since the later of the oldest
/// request's arrival and the end of the previous batch, then runs the queued
/// requests (up to `maxBatch` images) as one backend call and hands each its slice of the
/// logits. Work runs on its own thread so that a long forward pass never blocks the HTTP event
/// loops or Swift's cooperative pool. `stop()` refuses new work, runs what is queued, and ends
/// the thread.
public final class DynamicBatcher: @unchecked Sendable {
    private struct Pending {
        var pixels: [Float]          // values in [0, 1], N×C×H×W
        var count: Int
        var shape: [Int]             // C, H, W
        var version: Int?            // the model version the request requires, if any
        var enqueued: ContinuousClock.Instant
        var reply: @Sendable (Result<BatchResult, BatchError>) -> Void
    }

    public let name: String
    public let options: BatchingOptions
    private let metrics: ServerMetrics
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [Pending] = []
    private var queuedImages = 0
    private var stopping = false
    private var finished = false
    private var model: ServingModel
    private var finishWaiters: [CheckedContinuation<Void, Never>] = []
    private var totals = BatcherStats()
    /// When the previous batch finished (its replies sent). Under load, the requests queued while
    /// a batch ran are past their own deadline when it ends, while the clients it just answered
    /// are about to send their next request: counting the delay from the batch's end lets those
    /// join instead of splitting a steady load into two half-size batches that alternate
    /// (measured with scripts/bench-server.sh: concurrency 32 formed batches of 16 of a possible 32).
    private var lastBatchEnd = ContinuousClock.now

    init(name: String, model: ServingModel, options: BatchingOptions, metrics: ServerMetrics) {
        self.name = name; self.model = model; self.options = options; self.metrics = metrics
        let thread = Thread { [self] in self.loop() }
        thread.name = "mlres-batcher-\(name)"
        thread.start()
    }

    /// Swaps the model that later batches run (a reload); queued requests run on the new one.
    func replace(_ newModel: ServingModel) {
        condition.lock(); model = newModel; condition.unlock()
    }

    /// Totals so far.
    public var stats: BatcherStats { condition.lock(); defer { condition.unlock() }; return totals }

    /// Images waiting now.
    public var queueDepth: Int { condition.lock(); defer { condition.unlock() }; return queuedImages }

    /// Queues `count` images (pixels scaled to [0, 1], N×C×H×W with `shape` = C,H,W) and returns
    /// their logits once their batch ran. Throws ``BatchError/queueFull`` at once when the queue
    /// has no room, ``BatchError/versionChanged`` when `version` is given and another version
    /// runs the batch.
    public func submit(pixels: [Float], count: Int, shape: [Int], version: Int? = nil) async throws -> BatchResult {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<BatchResult, any Error>) in
            condition.lock()
            if stopping {
                condition.unlock()
                cont.resume(throwing: BatchError.stopped)
                return
            }
            if queuedImages + count > options.maxQueue {
                let q = queuedImages
                totals.rejectedRequests += 1
                condition.unlock()
                metrics.rejected(model: name)
                cont.resume(throwing: BatchError.queueFull(queued: q, limit: options.maxQueue))
                return
            }
            queue.append(Pending(pixels: pixels, count: count, shape: shape, version: version,
                                 enqueued: .now, reply: { cont.resume(with: $0.mapError { $0 as any Error }) }))
            queuedImages += count
            condition.signal()
            condition.unlock()
        }
    }

    /// Stops taking work, runs everything queued, and returns when the worker thread ended.
    public func stop() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if finished {
                condition.unlock()
                cont.resume()
                return
            }
            finishWaiters.append(cont)
            condition.broadcast()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty {   // stopping and drained
                finished = true
                let waiters = finishWaiters
                finishWaiters = []
                condition.unlock()
                for w in waiters { w.resume() }
                return
            }
            // Wait for the batch to fill, at most until the oldest request's deadline.
            let deadline = max(queue[0].enqueued, lastBatchEnd) + options.maxQueueDelay
            while queuedImages < options.maxBatch && !stopping {
                let remaining = ContinuousClock.now.duration(to: deadline)
                if remaining <= .zero { break }
                let (s, atto) = remaining.components
                let seconds = Double(s) + Double(atto) * 1e-18
                _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
            }
            // Take whole requests up to maxBatch images (always at least one request).
            var taken: [Pending] = [queue[0]]
            var images = queue[0].count
            var k = 1
            while k < queue.count && images + queue[k].count <= options.maxBatch {
                images += queue[k].count
                taken.append(queue[k])
                k += 1
            }
            queue.removeFirst(k)
            queuedImages -= images
            let current = model
            condition.unlock()
            run(taken, on: current)
            condition.lock(); lastBatchEnd = .now; condition.unlock()
        }
    }

    /// Runs one batch: standardises the inputs, calls the backend in chunks of at most
    /// `maxBatch` images, and replies to every request.
    private func run(_ requests: [Pending], on m: ServingModel) {
        let start = ContinuousClock.now
        var ok: [Pending] = []
        var queueNanos: Int64 = 0
        for r in requests {
            let wait = r.enqueued.duration(to: start)
            queueNanos += Self.nanoseconds(wait)
            metrics.queued(model: name, wait: wait)
            if let v = r.version, v != m.version { r.reply(.failure(.versionChanged(requested: v, now: m.version))) }
            else if r.shape == m.inputShape { ok.append(r) }
            else { r.reply(.failure(.shapeChanged(expected: m.inputShape, got: r.shape))) }
        }
        var computeNanos: Int64 = 0
        var executions = 0
        defer {
            condition.lock()
            totals.requests += requests.count
            totals.queueNanoseconds += queueNanos
            totals.computeNanoseconds += computeNanos
            totals.executions += executions
            condition.unlock()
        }
        if ok.isEmpty {
            condition.lock(); totals.failedRequests += requests.count; condition.unlock()
            return
        }
        let c = m.inputShape[0], plane = m.inputShape[1] * m.inputShape[2]
        let imageSize = c * plane
        let total = ok.reduce(0) { $0 + $1.count }
        // x_std = (x − mean_c) / std_c, x already scaled to [0, 1].
        var input = [Float](repeating: 0, count: total * imageSize)
        var offset = 0
        for r in ok {
            for n in 0..<r.count {
                for ch in 0..<c {
                    let mean = m.inputMean[ch], inv = 1 / m.inputStd[ch]
                    let base = (n * c + ch) * plane
                    for p in 0..<plane { input[offset + base + p] = (r.pixels[base + p] - mean) * inv }
                }
            }
            offset += r.count * imageSize
        }
        var logits = [Float]()
        logits.reserveCapacity(total * m.numClasses)
        var failure: String?
        var done = 0
        while done < total && failure == nil {
            let n = min(options.maxBatch, total - done)
            let t0 = ContinuousClock.now
            do {
                let chunk = Array(input[done * imageSize ..< (done + n) * imageSize])
                let out = try m.backend.infer(chunk, count: n)
                if out.count != n * m.numClasses {
                    failure = "backend returned \(out.count) logits for \(n) images of \(m.numClasses) classes"
                } else {
                    logits.append(contentsOf: out)
                }
            } catch {
                failure = "\(error)"
            }
            let compute = t0.duration(to: .now)
            computeNanos += Self.nanoseconds(compute)
            executions += 1
            metrics.execution(model: name, images: n, compute: compute)
            done += n
        }
        condition.lock()
        if failure == nil { totals.inferences += total }
        totals.failedRequests += requests.count - (failure == nil ? ok.count : 0)
        condition.unlock()
        var at = 0
        for r in ok {
            if let failure {
                r.reply(.failure(.backend(failure)))
            } else {
                let k = m.numClasses
                r.reply(.success(BatchResult(logits: Array(logits[at * k ..< (at + r.count) * k]),
                                             numClasses: k, modelVersion: m.version, classNames: m.classNames)))
            }
            at += r.count
        }
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
