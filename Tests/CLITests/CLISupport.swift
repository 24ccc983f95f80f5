import Foundation

// Running the built executables from tests: one place for the whole CLITests target.

/// What one run of a built executable printed and returned.
struct ToolRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// stdout parsed as a JSON object (empty when it is not one).
    var object: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]) ?? [:] }
}

/// The package's root folder (fixtures/ and scripts/ are below it).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The folder holding the built executables: $MLRES_BIN_DIR, else the nearest folder above the
/// test binary that holds them, else <package>/.build/debug.
func productsDirectory() -> URL {
    if let dir = ProcessInfo.processInfo.environment["MLRES_BIN_DIR"] { return URL(fileURLWithPath: dir) }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("mlres-surgery").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    return packageRoot.appendingPathComponent(".build/debug")
}

/// Runs `tool args...` to completion, capturing stdout and stderr through files (no pipe deadlock).
func runTool(_ tool: String, _ args: [String]) throws -> ToolRun {
    let p = Process()
    p.executableURL = productsDirectory().appendingPathComponent(tool)
    p.arguments = args
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("mlres-cli-\(UUID().uuidString).out")
    let err = tmp.appendingPathComponent("mlres-cli-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    try p.run()
    p.waitUntilExit()
    return ToolRun(status: p.terminationStatus,
                   stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// A fresh temporary folder.
func scratchFolder() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-cli-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
