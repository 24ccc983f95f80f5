// A writer that keeps replacing one file atomically, as a trainer publishes RUN/last.h5 every
// epoch: the next version is written to a temporary file beside it and renamed over the path.
// Used by the read-during-replace families (issue 12 kind 2, field case fc-19).
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Replaces `path` by rename with `versions[0]`, `versions[1]`, ... in turn, in a tight loop on
/// a thread of its own, from ``start()`` until ``stop()``.
public final class AtomicSwapper: @unchecked Sendable {
    public let path: String
    private let versions: [[UInt8]]
    private let pause: useconds_t
    private let lock = NSLock()
    private var running = false
    private var swaps = 0
    private var failure: String?
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameter pauseMicroseconds: sleep after each replacement (leaves CPU to the readers).
    public init(path: String, versions: [[UInt8]], pauseMicroseconds: UInt32 = 200) {
        precondition(versions.count >= 2)
        self.path = path; self.versions = versions; self.pause = pauseMicroseconds
    }

    public func start() {
        lock.withLock { running = true }
        Thread.detachNewThread { self.loop() }
    }

    /// Stops the writer and returns how many replacements it made; throws when one failed.
    @discardableResult
    public func stop() throws -> Int {
        lock.withLock { running = false }
        finished.wait()
        return try lock.withLock {
            if let failure { throw SwapperError(description: failure) }
            return swaps
        }
    }

    private func loop() {
        defer { finished.signal() }
        // Not NAME.tmp-<hex>: no mlres writer may take it for its own stale temporary.
        let tmp = path + ".swap-next"
        var i = 0
        while lock.withLock({ running }) {
            i += 1
            if let problem = Self.replace(path, via: tmp, with: versions[i % versions.count]) {
                lock.withLock { failure = problem; running = false }
                return
            }
            lock.withLock { swaps += 1 }
            if pause > 0 { usleep(pause) }
        }
    }

    /// Writes `bytes` to `tmp`, then renames it over `path`. Returns the problem, or nil.
    public static func replace(_ path: String, via tmp: String, with bytes: [UInt8]) -> String? {
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return "cannot create \(tmp): errno \(errno)" }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n <= 0 { close(fd); return "cannot write \(tmp): errno \(errno)" }
            done += n
        }
        close(fd)
        if rename(tmp, path) != 0 { return "cannot rename \(tmp) over \(path): errno \(errno)" }
        return nil
    }
}

public struct SwapperError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// SHA-256 of a file as coreutils' `sha256sum` prints it (an independent reference for the
/// digests mlres reports).
public func sha256sum(_ path: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0, let first = text.split(separator: " ").first, first.count == 64 else {
        throw SwapperError(description: "sha256sum \(path) failed: \(text)")
    }
    return String(first)
}
