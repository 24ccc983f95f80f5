import Foundation
import MLResTestSupport

// Launching the built executables under mpirun (MLResTestSupport finds them), for the whole
// DistributedTests target.

/// `mpirun` from the PATH (scripts/setup.sh installs Debian's openmpi-bin).
func mpirunPath() -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let p = "\(dir)/mpirun"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// The environment for mpirun in a container or CI as root: Open MPI refuses root without the
/// two allow-run-as-root variables. Any launcher variables inherited from an enclosing job are
/// dropped, so a rank started without mpirun really is alone.
func launchEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") && !$0.key.hasPrefix("PMI_") }
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    for (k, v) in extra { env[k] = v }
    return env
}

/// A started job (mpirun or a single process) with stdout/stderr going to files.
final class Job {
    let process = Process()
    let outPath: String, errPath: String
    init(_ executable: String, _ args: [String], logs: String, environment: [String: String]) throws {
        outPath = logs + "/stdout-\(UUID().uuidString).txt"; errPath = logs + "/stderr-\(UUID().uuidString).txt"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
    /// Waits at most `seconds`; a job still running then is killed (SIGKILL) and reported as
    /// status -1 so the test fails instead of hanging.
    @discardableResult
    func wait(seconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }
}

/// Starts `tool args...` on `ranks` ranks with mpirun (`--bind-to none`: the ranks share the
/// cores with oneDNN's threads instead of each being pinned to one; `--oversubscribe`: CI
/// may count fewer slots than ranks), or alone when `ranks` is nil.
func launch(_ tool: String, _ args: [String], ranks: Int?, logs: String, mca: [String: String] = [:]) throws -> Job {
    let exe = builtExecutable(tool).path
    guard let n = ranks else { return try Job(exe, args, logs: logs, environment: launchEnvironment()) }
    guard let mpirun = mpirunPath() else { throw TestFailure("mpirun is not on the PATH: run scripts/setup.sh (installs openmpi-bin)") }
    var mpiArgs = ["-np", "\(n)", "--bind-to", "none", "--oversubscribe"]
    for (k, v) in mca.sorted(by: { $0.key < $1.key }) { mpiArgs += ["--mca", k, v] }
    // The test runner's threads block SIGTERM/SIGINT (libdispatch's signal sources), and a
    // spawned child inherits that mask: mpirun would never see the SIGTERM a test sends it.
    // A one-line exec wrapper unblocks them first, as a shell would have them.
    let unblock = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT}); os.execv(sys.argv[1], sys.argv[1:])"
    return try Job("/usr/bin/python3", ["-c", unblock, mpirun] + mpiArgs + [exe] + args, logs: logs,
                   environment: launchEnvironment())
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The JSON objects printed one per line.
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}
