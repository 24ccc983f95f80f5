import Dispatch
import Foundation
import MLResData
import MLResModel

/// A request to stop training, set from a signal handler thread and polled by the training
/// loop between optimizer steps.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var requested: Int32?
    private var sources: [DispatchSourceSignal] = []
    public init() {}

    /// The signal that asked to stop (SIGINT or SIGTERM), or nil.
    public var signal: Int32? { lock.lock(); defer { lock.unlock() }; return requested }
    public var isRequested: Bool { signal != nil }
    /// Asks the loop to stop after the current step.
    public func request(_ sig: Int32 = SIGTERM) { lock.lock(); if requested == nil { requested = sig }; lock.unlock() }

    /// Routes SIGINT and SIGTERM to ``request(_:)`` instead of killing the process. A second
    /// SIGINT while the first is being honoured is ignored (the checkpoint is being written).
    public func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            Foundation.signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: DispatchQueue.global())
            src.setEventHandler { [weak self] in self?.request(sig) }
            src.resume()
            sources.append(src)
        }
    }
}

/// Console progress and `RUN/metrics.jsonl`.
///
/// - On a terminal (text format): a live single-line bar (epoch, step/steps, images/s, loss,
///   error, lr, ETA) rewritten in place, and a line per finished epoch.
/// - Otherwise (text): one plain line per epoch, and per `--log-every` steps if asked.
/// - `--log-format json`: the same records as JSON lines, as metrics.jsonl holds them.
final class ProgressReporter {
    enum Mode { case bar, lines, json }
    let mode: Mode
    let logEvery: Int?
    private let metrics: FileHandle?
    private var lastDraw = 0.0
    private var barShown = false
    private let quiet: Bool

    /// - Parameter metricsPath: nil: no metrics file (ranks other than 0 of a data-parallel job).
    /// - Parameter bar: allow the live bar on a terminal (off under mpirun, whose output
    ///   forwarding gives every rank a pseudo-terminal).
    init(format: String, logEvery: Int?, metricsPath: String?, quiet: Bool = false, bar: Bool = true) throws {
        self.quiet = quiet
        if format == "json" { mode = .json } else { mode = bar && isatty(STDOUT_FILENO) == 1 ? .bar : .lines }
        self.logEvery = logEvery
        guard let metricsPath else { metrics = nil; return }
        if !FileManager.default.fileExists(atPath: metricsPath) {
            guard FileManager.default.createFile(atPath: metricsPath, contents: nil) else {
                throw TrainError("\(metricsPath): cannot create the metrics file")
            }
        }
        guard let h = FileHandle(forWritingAtPath: metricsPath) else {
            throw TrainError("\(metricsPath): cannot open the metrics file for writing")
        }
        h.seekToEndOfFile()
        metrics = h
    }

    deinit { try? metrics?.close() }

    /// Writes a record to metrics.jsonl (always) and, in JSON mode, to the console.
    func record(_ fields: [String: JSONValue]) {
        let line = JSONValue.object(fields).jsonText + "\n"
        metrics?.write(Data(line.utf8))
        if mode == .json && !quiet { emit(line) }
    }

    /// Plain text to the console (clears a live bar first).
    func say(_ text: String) {
        if quiet { return }
        if mode == .json {
            emit(JSONValue.object(["type": .string("message"), "text": .string(text)]).jsonText + "\n")
            return
        }
        clearBar()
        emit(text + "\n")
    }

    /// After every step: redraws the live bar (at most 5 times a second) on a terminal.
    func step(epoch: Int, epochs: Int, step: Int, steps: Int, imagesPerSecond: Double,
              loss: Double, error: Double, lr: Double, eta: Double) {
        guard mode == .bar, !quiet else { return }
        let now = Date().timeIntervalSinceReferenceDate
        if now - lastDraw < 0.2 && step != steps { return }
        lastDraw = now
        let width = 20, filled = steps > 0 ? width * step / steps : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let text = String(format: "\r\u{1B}[2Kepoch %d/%d [%@] %d/%d %.0f img/s loss %.4f err %.2f%% lr %.4g ETA %@",
                          epoch + 1, epochs, bar, step, steps, imagesPerSecond, loss, 100 * error, lr,
                          formatDuration(eta))
        emit(text)
        barShown = true
    }

    private func clearBar() {
        if barShown { emit("\r\u{1B}[2K"); barShown = false }
    }

    private func emit(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }
}

/// "1h02m", "3m05s", "12s".
func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) }
    if t >= 60 { return String(format: "%dm%02ds", t / 60, t % 60) }
    return "\(t)s"
}
