import Foundation
import MLResModel

/// What an evaluation job is asked to do (`POST /v1/evaluations`).
public struct EvaluationRequest: Sendable {
    /// The model name and the checkpoint file it was loaded from (inside the models folder).
    public var model: String
    public var checkpointPath: String
    /// SHA-256 of that file at load time.
    public var sha256: String
    /// Dataset name, e.g. "cifar10" (letters, digits, `-`, `_` only).
    public var dataset: String
    /// The server's `--data-dir`.
    public var dataDir: String
    /// Optional lesion specification, passed through as given.
    public var lesion: JSONValue?
    /// CIFAR-100's label set, "fine" or "coarse" (`--labels` of the CLI evaluators); nil: the
    /// label set the checkpoint records, else fine.
    public var labels: String? = nil
    /// `recalibrate_bn`: also score every network after re-estimating its BN running
    /// statistics from this many training batches (issue 17; nil: no recalibration).
    public var recalibrateBN: Int? = nil
    /// `recalibrate_batch_size`, `recalibrate_seed` (as `mlres-eval lesion`'s flags; nil: the
    /// checkpoint's training batch size, else the dataset's default; seed 0).
    public var recalibrateBatchSize: Int? = nil
    public var recalibrateSeed: Int? = nil
}

/// Runs one evaluation and returns the same JSON value as `mlres-eval score`.
public typealias Evaluator = @Sendable (EvaluationRequest) async throws -> JSONValue

/// One job's state as `GET /v1/evaluations/ID` reports it.
public struct EvaluationJob: Sendable {
    public enum State: String, Sendable { case queued, running, succeeded, failed }
    public var id: String
    public var request: EvaluationRequest
    public var state: State
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var result: JSONValue?
    public var error: String?

    /// The job as JSON.
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "id": .string(id), "status": .string(state.rawValue), "model": .string(request.model),
            "dataset": .string(request.dataset), "sha256": .string(request.sha256),
            "created_at": .string(Self.iso(createdAt)),
        ]
        if let l = request.lesion { o["lesion"] = l }
        if let l = request.labels { o["labels"] = .string(l) }
        if let n = request.recalibrateBN { o["recalibrate_bn"] = .int(n) }
        if let n = request.recalibrateBatchSize { o["recalibrate_batch_size"] = .int(n) }
        if let n = request.recalibrateSeed { o["recalibrate_seed"] = .int(n) }
        if let s = startedAt { o["started_at"] = .string(Self.iso(s)) }
        if let f = finishedAt { o["finished_at"] = .string(Self.iso(f)) }
        if let r = result { o["result"] = r }
        if let e = error { o["error"] = .string(e) }
        return .object(o)
    }

    static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }
}

/// Evaluation jobs: run one at a time (they are long and use every core), in submission order.
public actor EvaluationJobs {
    private let evaluator: Evaluator
    private var jobs: [String: EvaluationJob] = [:]
    /// Queued job ids, oldest first.
    private var order: [String] = []
    /// Every job id, oldest first; finished jobs beyond ``maxKept`` are forgotten.
    private var history: [String] = []
    /// Most jobs remembered (finished ones are dropped oldest first).
    public static let maxKept = 1000
    private var worker: Task<Void, Never>?
    private var counter = 0

    public init(evaluator: @escaping Evaluator) { self.evaluator = evaluator }

    /// Queues a job and returns it.
    public func submit(_ request: EvaluationRequest) -> EvaluationJob {
        counter += 1
        var rng = SystemRandomNumberGenerator()
        let id = "eval-\(counter)-" + String(rng.next() & 0xFFFF_FFFF, radix: 16)
        let job = EvaluationJob(id: id, request: request, state: .queued, createdAt: Date())
        jobs[id] = job
        order.append(id)
        history.append(id)
        while history.count > Self.maxKept,
              let i = history.firstIndex(where: { jobs[$0]?.state == .succeeded || jobs[$0]?.state == .failed }) {
            jobs[history.remove(at: i)] = nil
        }
        if worker == nil { worker = Task { await self.drain() } }
        return job
    }

    public func job(_ id: String) -> EvaluationJob? { jobs[id] }

    /// Cancels the job running now and drops queued ones (server shutdown).
    public func cancelAll() {
        worker?.cancel()
        for id in order where jobs[id]?.state == .queued {
            jobs[id]?.state = .failed
            jobs[id]?.error = "server shut down before the job started"
        }
        order.removeAll()
    }

    private func drain() async {
        while !order.isEmpty && !Task.isCancelled {
            let id = order.removeFirst()
            guard let request = jobs[id]?.request else { continue }
            jobs[id]?.state = .running
            jobs[id]?.startedAt = Date()
            let evaluator = self.evaluator
            let outcome: Result<JSONValue, any Error>
            do { outcome = .success(try await evaluator(request)) } catch { outcome = .failure(error) }
            jobs[id]?.finishedAt = Date()
            switch outcome {
            case .success(let v): jobs[id]?.state = .succeeded; jobs[id]?.result = v
            case .failure(let e): jobs[id]?.state = .failed; jobs[id]?.error = "\(e)"
            }
        }
        worker = nil
    }
}
