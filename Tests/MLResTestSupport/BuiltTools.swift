// The one place that finds and launches the built executables (mlres-train, mlres-surgery,
// mlres-eval) from tests. `swift build --build-tests` / `swift test` build them first.
import Foundation

/// The package's root folder (fixtures/ and scripts/ are below it).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The built executable `tool`: in $MLRES_BIN_DIR when set, else in the nearest folder above
/// the test binary that holds it, else <package>/.build/debug/`tool`.
public func builtExecutable(_ tool: String) -> URL {
    if let dir = ProcessInfo.processInfo.environment["MLRES_BIN_DIR"] {
        return URL(fileURLWithPath: dir).appendingPathComponent(tool)
    }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent(tool)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return packageRoot.appendingPathComponent(".build/debug").appendingPathComponent(tool)
}

/// Starts `tool args...` without waiting. `stdout`/`stderr` are a `Pipe`, a `FileHandle`, or a
/// file path (a `String`, created or truncated; not a terminal); nil inherits the test's.
/// `environment` changes the test's environment for the child: a nil value removes the variable.
public func startTool(_ tool: String, _ args: [String], stdout: Any? = nil, stderr: Any? = nil,
                      environment: [String: String?] = [:]) throws -> Process {
    func sink(_ s: Any?) throws -> Any? {
        guard let path = s as? String else { return s }
        FileManager.default.createFile(atPath: path, contents: nil)
        return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    }
    let p = Process()
    p.executableURL = builtExecutable(tool)
    p.arguments = args
    if !environment.isEmpty {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
    }
    if let out = try sink(stdout) { p.standardOutput = out }
    if let err = try sink(stderr) { p.standardError = err }
    try p.run()
    return p
}

/// What one run of a built executable printed and returned.
public struct ToolRun: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// stdout parsed as a JSON object (empty when it is not one).
    public var object: [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]) ?? [:]
    }
}

/// Runs `tool args...` to completion, capturing stdout and stderr through files (no pipe deadlock).
public func runTool(_ tool: String, _ args: [String]) throws -> ToolRun {
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("mlres-tool-\(UUID().uuidString).out").path
    let err = tmp.appendingPathComponent("mlres-tool-\(UUID().uuidString).err").path
    defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
    let p = try startTool(tool, args, stdout: out, stderr: err)
    p.waitUntilExit()
    return ToolRun(status: p.terminationStatus,
                   stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

/// A fresh, empty temporary folder named mlres-`tag`-<UUID>.
public func scratchFolder(_ tag: String = "test") throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-\(tag)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Waits at most `seconds` for `p` to exit; a process still running then is killed (SIGKILL).
/// Returns false when it had to be killed. A test that waits on a process never hangs the suite.
@discardableResult
public func waitForExit(_ p: Process, seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning && Date() < deadline { usleep(2000) }
    let exited = !p.isRunning
    if !exited { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    return exited
}

/// Runs any program to completion, capturing stdout and stderr through files; after `timeout`
/// seconds it is killed (SIGKILL) and the run reports status -9 and "TIMED OUT" in stderr.
public func runProgram(_ executable: String, _ args: [String], timeout: Double) throws -> ToolRun {
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("mlres-run-\(UUID().uuidString).out").path
    let err = tmp.appendingPathComponent("mlres-run-\(UUID().uuidString).err").path
    defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
    FileManager.default.createFile(atPath: out, contents: nil)
    FileManager.default.createFile(atPath: err, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    try p.run()
    let timedOut = !waitForExit(p, seconds: timeout)
    let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
    return ToolRun(status: timedOut ? -9 : p.terminationStatus,
                   stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                   stderr: timedOut ? "TIMED OUT after \(timeout) s\n" + stderr : stderr)
}
