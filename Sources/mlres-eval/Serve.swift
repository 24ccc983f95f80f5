import ArgumentParser
import Foundation
import MLResServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve checkpoints over HTTP (Open Inference Protocol v2) with dynamic batching.",
        discussion: """
        Serves every valid NAME.h5 of --models. Endpoints: /v2, /v2/health/{live,ready},
        /v2/models/NAME[/versions/V], /v2/models/NAME[/versions/V]/{ready,infer,config,stats},
        /v2/repository/models/NAME/{load,unload}, /v1/evaluations, /metrics. Triton's binary tensor
        data and classification extensions; gzip/deflate request bodies. SIGTERM or SIGINT: stop
        accepting, drop requests whose body has not arrived, finish queued work, exit 0.
        See docs/server.md.
        """)

    @Option(help: "Folder of NAME.h5 checkpoints to serve.")
    var models: String

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port; the bound port is printed).")
    var port: Int = 8080

    @Option(help: "Most images in one batched execution.")
    var maxBatch: Int = 64

    @Option(help: "Longest wait, in milliseconds, for a batch to fill.")
    var maxQueueDelayMs: Double = 2

    @Option(help: "Most images waiting per model; more get HTTP 429 at once.")
    var maxQueue: Int = 1024

    @Option(help: "Largest request body in MiB (HTTP 413 above).")
    var maxBodyMb: Double = 16

    @Option(help: "Threads per batched execution (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Rescan the models folder every S seconds (new, replaced, removed files).")
    var pollSeconds: Double?

    @Option(help: "Folder of datasets for /v1/evaluations jobs: one folder per dataset (cifar10/, fashion-mnist/, ...).")
    var dataDir: String?

    @Option(help: "Seconds a request's head (from its first byte) and its body (from the head) may take to arrive; HTTP 408 and close after.")
    var requestTimeoutS: Double = 30

    @Option(help: "Seconds an idle keep-alive connection stays open.")
    var idleTimeoutS: Double = 60

    /// libgomp (loaded with oneDNN when the process starts) reads OMP_WAIT_POLICY once, in its
    /// load-time constructor, so setting it from `run` would be too late. When it is unset the
    /// process sets it to `passive` and re-executes itself (same arguments) before anything
    /// else runs: spinning OpenMP workers starve the HTTP threads (measured 4x less throughput on
    /// 2 cores). An explicit OMP_WAIT_POLICY in the environment is kept.
    private func ensurePassiveOpenMPWait() {
        guard getenv("OMP_WAIT_POLICY") == nil else { return }
        setenv("OMP_WAIT_POLICY", "passive", 1)
        let args = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // exec failed (no /proc): serve anyway, with OpenMP's default waiting.
        FileHandle.standardError.write(Data("mlres-eval serve: warning: could not re-execute with OMP_WAIT_POLICY=passive (errno \(errno)); set it in the environment\n".utf8))
    }

    func run() async throws {
        ensurePassiveOpenMPWait()
        guard maxQueueDelayMs.isFinite, maxBodyMb.isFinite, maxBodyMb > 0 else {
            throw ValidationError("--max-queue-delay-ms and --max-body-mb must be finite, --max-body-mb positive")
        }
        if let p = pollSeconds, !(p.isFinite && p > 0) {
            throw ValidationError("--poll-seconds \(p): must be a positive number of seconds")
        }
        for (flag, v) in [("--request-timeout-s", requestTimeoutS), ("--idle-timeout-s", idleTimeoutS)]
        where !(v.isFinite && v > 0 && v < 1e6) {
            throw ValidationError("\(flag) \(v): must be a positive number of seconds")
        }
        let config = ServerConfiguration(
            modelsDirectory: models, host: host, port: port,
            batching: BatchingOptions(maxBatch: maxBatch, maxQueueDelay: .microseconds(Int64(maxQueueDelayMs * 1000)),
                                      maxQueue: maxQueue),
            maxBodyBytes: Int(maxBodyMb * 1024 * 1024), threads: threads,
            pollInterval: pollSeconds.map { .milliseconds(Int64($0 * 1000)) }, dataDirectory: dataDir,
            requestTimeout: .milliseconds(Int64(requestTimeoutS * 1000)),
            idleTimeout: .milliseconds(Int64(idleTimeoutS * 1000)))
        if let problem = config.validationError() { throw ValidationError(problem) }
        let server: InferenceServer
        do {
            // The oneDNN engine serves; evaluation jobs score with the MLResAnalysis code path of
            // `mlres-eval score`.
            server = try InferenceServer(configuration: config, loader: ModelLoaders.engine,
                                         evaluator: AnalysisEvaluation.evaluator(threads: threads))
        } catch let e as ServerSetupError {
            throw ValidationError(e.description)
        }
        let host = self.host
        do {
            try await serve(server, host: host)
        } catch {
            // The one CLI contract: a refused operation exits 2.
            FileHandle.standardError.write(Data("mlres-eval serve: cannot serve on \(host):\(port): \(error)\n".utf8))
            throw ExitCode(2)
        }
        print("mlres-eval serve: stopped")
    }

    private func serve(_ server: InferenceServer, host: String) async throws {
        try await server.run(handleSignals: true) { port in
            let statuses = server.repository.allStatuses()
            for s in statuses where !s.ready {
                FileHandle.standardError.write(Data("mlres-eval serve: not serving \(s.name): \(s.lastError ?? "not loaded")\n".utf8))
            }
            let ready = statuses.filter(\.ready).map(\.name)
            print("mlres-eval serve: listening on http://\(host):\(port) with \(ready.count) model(s)"
                  + (ready.isEmpty ? "" : ": " + ready.joined(separator: ", ")))
            fflush(stdout)
        }
    }
}
