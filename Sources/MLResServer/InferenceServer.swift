import Foundation
import Hummingbird
import HummingbirdCore
import MLResModel
import NIOCore
import ServiceLifecycle

/// The inference server: model repository, dynamic batchers, evaluation jobs, metrics and the
/// HTTP front (Hummingbird) speaking the Open Inference Protocol v2.
///
/// Life cycle: ``run(handleSignals:onListening:)`` loads every checkpoint of the
/// folder, listens, and serves until SIGTERM/SIGINT arrives (with `handleSignals`) or
/// ``shutdown()`` is called; then it stops accepting connections, lets the requests in flight
/// (and so every queued batch) finish, stops the batchers and returns.
public final class InferenceServer: Sendable {
    public let configuration: ServerConfiguration
    public let repository: ModelRepository
    public let metrics: ServerMetrics
    /// nil when no evaluator was given: `/v1/evaluations` then answers 501.
    public let jobs: EvaluationJobs?
    private let state = LockedState()

    /// - Throws: ``ServerSetupError`` for a bad configuration or models folder.
    public init(configuration: ServerConfiguration, loader: @escaping ModelLoader,
                evaluator: Evaluator? = nil) throws {
        if let problem = configuration.validationError() { throw ServerSetupError(problem) }
        if let d = configuration.dataDirectory {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue else {
                throw ServerSetupError("--data-dir \(d): not a folder")
            }
        }
        self.configuration = configuration
        let metrics = ServerMetrics()
        self.metrics = metrics
        repository = try ModelRepository(directory: configuration.modelsDirectory, loader: loader,
                                         loaderOptions: LoaderOptions(threads: configuration.threads,
                                                                        maxBatch: configuration.batching.maxBatch),
                                         batching: configuration.batching, metrics: metrics)
        jobs = evaluator.map { EvaluationJobs(evaluator: $0) }
    }

    /// True while listening and not shutting down.
    public var isReady: Bool { state.withLock { $0.listening && !$0.draining } }

    /// Loads the models, serves, and returns after a graceful shutdown.
    /// - Parameters:
    ///   - handleSignals: shut down gracefully on SIGTERM and SIGINT (the command line); off in
    ///     tests, which call ``shutdown()``.
    ///   - onListening: called with the bound port once the server accepts connections.
    public func run(handleSignals: Bool = false,
                    onListening: @escaping @Sendable (_ port: Int) async -> Void = { _ in }) async throws {
        await repository.loadAll()
        let requestTimeout = TimeAmount.nanoseconds(DynamicBatcher.nanoseconds(configuration.requestTimeout))
        let idleTimeout = TimeAmount.nanoseconds(DynamicBatcher.nanoseconds(configuration.idleTimeout))
        let metrics = self.metrics
        let app = Application(
            responder: ServerResponder(server: self),
            server: HTTPServerBuilder { responder in
                DeadlineHTTP1Channel(inner: HTTP1Channel(responder: responder), requestTimeout: requestTimeout,
                                     idleTimeout: idleTimeout) { status, method, path in
                    let endpoint = path.flatMap { Route.parse(String($0.prefix { $0 != "?" }))?.template } ?? "other"
                    metrics.request(method: ServerMetrics.methodLabel(method ?? "other"), endpoint: endpoint, status: status)
                }
            },
            configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                 serverName: "mlres/\(MLRes.version)"),
            onServerRunning: { [self] channel in
                state.withLock { $0.listening = true }
                await onListening(channel.localAddress?.port ?? configuration.port)
            })
        var services: [any Service] = [app]
        if let interval = configuration.pollInterval {
            services.append(RepositoryPoller(repository: repository, interval: interval))
        }
        // Last, so that it hears of a shutdown first (ServiceGroup stops services in reverse).
        services.append(ShutdownWatcher(state: state))
        let group = ServiceGroup(configuration: .init(
            services: services, gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: app.logger))
        let startNow = state.withLock { s -> Bool in
            s.group = group
            return !s.draining
        }
        if !startNow { return }
        defer { state.withLock { $0.group = nil; $0.listening = false } }
        do {
            try await group.run()
        } catch {
            await finish()
            throw error
        }
        await finish()
    }

    private func finish() async {
        state.withLock { $0.draining = true }
        await repository.shutdown()
        await jobs?.cancelAll()
    }

    /// Starts a graceful shutdown (as SIGTERM does): stop accepting, finish work, return from run.
    public func shutdown() async {
        let group = state.withLock { s -> ServiceGroup? in
            s.draining = true
            return s.group
        }
        await group?.triggerGracefulShutdown()
    }
}

/// Mutable server state behind a lock.
final class LockedState: @unchecked Sendable {
    struct Values {
        var listening = false
        var draining = false
        var group: ServiceGroup?
    }
    private let lock = NSLock()
    private var values = Values()
    func withLock<T>(_ body: (inout Values) -> T) -> T {
        lock.lock(); defer { lock.unlock() }
        return body(&values)
    }
}

/// Marks the server as draining (`/v2/health/ready` answers 503) as soon as a shutdown starts.
struct ShutdownWatcher: Service {
    let state: LockedState

    func run() async throws {
        try? await gracefulShutdown()
        state.withLock { $0.draining = true }
    }
}

/// Rescans the models folder every `interval` (`--poll-seconds`).
struct RepositoryPoller: Service {
    let repository: ModelRepository
    let interval: Duration

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await repository.poll()
            }
        }
    }
}
