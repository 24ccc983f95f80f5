import Foundation

/// Everything `mlres-eval serve` can be told.
public struct ServerConfiguration: Sendable {
    /// Folder of `NAME.h5` checkpoints (`--models`).
    public var modelsDirectory: String
    /// Address to bind (`--host`), loopback by default.
    public var host: String
    /// Port (`--port`); 0 picks a free one (the bound port is reported when listening).
    public var port: Int
    public var batching: BatchingOptions
    /// Largest request body accepted (`--max-body-mb`), in bytes.
    public var maxBodyBytes: Int
    /// Threads a backend may use per batch (`--threads`).
    public var threads: Int
    /// Rescan the models folder this often (`--poll-seconds`); nil = only explicit loads.
    public var pollInterval: Duration?
    /// Where evaluation jobs find datasets (`--data-dir`).
    public var dataDirectory: String?
    /// Longest time a request's head may take to arrive (from its first byte), and its body
    /// (from the head); 408 and close otherwise (`--request-timeout-s`).
    public var requestTimeout: Duration
    /// Longest time a keep-alive connection may stay open without a request (`--idle-timeout-s`).
    public var idleTimeout: Duration

    public init(modelsDirectory: String, host: String = "127.0.0.1", port: Int = 8080,
                batching: BatchingOptions = .init(), maxBodyBytes: Int = 16 << 20,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                pollInterval: Duration? = nil, dataDirectory: String? = nil,
                requestTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60)) {
        self.modelsDirectory = modelsDirectory; self.host = host; self.port = port
        self.batching = batching; self.maxBodyBytes = maxBodyBytes; self.threads = threads
        self.pollInterval = pollInterval; self.dataDirectory = dataDirectory
        self.requestTimeout = requestTimeout; self.idleTimeout = idleTimeout
    }

    /// The first problem with the values, naming the flag, or nil.
    public func validationError() -> String? {
        if modelsDirectory.isEmpty { return "--models: a folder is required" }
        if host.isEmpty { return "--host: empty" }
        if !(0...65535).contains(port) { return "--port \(port): must be 0...65535" }
        if batching.maxBatch < 1 { return "--max-batch \(batching.maxBatch): must be at least 1" }
        if batching.maxQueueDelay < .zero { return "--max-queue-delay-ms: must not be negative" }
        if batching.maxQueue < batching.maxBatch {
            return "--max-queue \(batching.maxQueue): must be at least --max-batch (\(batching.maxBatch))"
        }
        if maxBodyBytes < 1 { return "--max-body-mb: must be positive" }
        if threads < 1 { return "--threads \(threads): must be at least 1" }
        if let p = pollInterval, p <= .zero { return "--poll-seconds: must be positive" }
        if requestTimeout <= .zero { return "--request-timeout-s: must be positive" }
        if idleTimeout <= .zero { return "--idle-timeout-s: must be positive" }
        return nil
    }
}
