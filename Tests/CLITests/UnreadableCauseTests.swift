import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// Issue 12 kind 3 (field case fc-02): errors from the layer below (HDF5, the file system) passed
// on undiagnosed. Each cause × each command that reads a checkpoint (and the server's load):
// exit 2 (the server: "not serving NAME: ..."), one error line naming the file, the real cause
// and the way out; a good file (locked, marked open, written with another driver or a newer
// format) is never called "corrupt" or "truncated"; nothing hangs (a FIFO is refused at once).
// The HDF5 cause files are made by scripts/make_hdf5_cause_files.py from a fresh checkpoint.

private let fashion = packageRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path

/// One cause: the file given to the command, what the message must say, and whether the file
/// itself is a good checkpoint (then "corrupt"/"truncated" would be a wrong diagnosis).
private struct Cause {
    var name: String
    var file: String
    var says: [String]
    var goodFile: Bool
}

private func causes(_ dir: String) -> [Cause] {
    let c = dir + "/causes"
    return [
        Cause(name: "locked", file: dir + "/locked.h5", says: ["is locked by another process", "wait until"], goodFile: true),
        Cause(name: "open-mark", file: c + "/open-mark.h5", says: ["marked open-for-write", "h5clear -s"], goodFile: true),
        Cause(name: "truncated", file: c + "/truncated.h5", says: ["is truncated", "it has"], goodFile: false),
        Cause(name: "superblock-v4", file: c + "/superblock-v4.h5", says: ["superblock version 4", "libver="], goodFile: false),
        Cause(name: "family", file: c + "/family0.h5", says: ["family driver", "h5repart -family_to_single"], goodFile: true),
        Cause(name: "split", file: c + "/split-m.h5", says: ["split or multi driver", "default driver"], goodFile: true),
        Cause(name: "small-offsets", file: c + "/small-offsets.h5", says: ["4-byte addresses", "H5Pset_sizes"], goodFile: true),
        Cause(name: "newer-format", file: c + "/newer-format.h5", says: ["newer than HDF5 1.10", "libver=(\"earliest\", \"v110\")"], goodFile: true),
        Cause(name: "lzf", file: c + "/lzf.h5", says: ["filter 32000 (lzf)", "compression=\"gzip\""], goodFile: true),
        Cause(name: "directory", file: dir + "/folder.h5", says: ["is a"], goodFile: true),
        Cause(name: "fifo", file: dir + "/fifo.h5", says: ["FIFO (named pipe)"], goodFile: true),
        Cause(name: "socket", file: dir + "/socket.h5", says: ["is a socket"], goodFile: true),
        Cause(name: "device", file: "/dev/null", says: ["character device"], goodFile: true),
        Cause(name: "dangling-link", file: dir + "/dangling.h5", says: ["symbolic link to 'nowhere.h5', which does not exist"], goodFile: true),
        Cause(name: "link-loop", file: dir + "/loop.h5", says: ["symbolic link loop"], goodFile: true),
        Cause(name: "permission", file: dir + "/denied.h5", says: ["permission denied", "chmod a+r"], goodFile: true),
        Cause(name: "missing", file: dir + "/missing.h5", says: ["no such file"], goodFile: true),
    ]
}

/// Every command that reads a checkpoint; FILE is the cause's file.
private let commands: [(tool: String, args: [String])] = [
    ("mlres-surgery", ["inspect", "FILE"]),
    ("mlres-surgery", ["verify", "FILE"]),
    ("mlres-surgery", ["interpolate", "FILE", "-o", "OUT"]),
    ("mlres-eval", ["score", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-eval", ["norms", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-eval", ["lesion", "FILE", "--mode", "single", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-train", ["--resume", "FILE", "--epochs", "2", "--out", "RUN", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
]

/// Runs a tool as an unprivileged user when the tests run as root (root reads any file, so a
/// permission refusal can only be met by another user), and with a time limit (nothing may hang).
private func runUnprivileged(_ tool: String, _ args: [String], seconds: Double = 60) throws -> ToolRun {
    let exe = builtExecutable(tool).path
    let (cmd, argv) = geteuid() == 0
        ? ("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", exe] + args)
        : (exe, args)
    return try runProgram(cmd, argv, timeout: seconds)
}

/// A folder with every cause in place, and the python process that holds locked.h5 open for
/// writing (stopped by `release`).
private final class CauseFolder {
    let dir: String
    let holder: Process
    let good: String

    init() throws {
        dir = try scratchFolder("causes")
        chmod(dir, 0o777)          // the unprivileged runs write their outputs here
        good = dir + "/good.h5"
        let made = try runTool("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--input-shape", "1,28,28",
                                               "-o", good])
        guard made.status == 0 else { throw SwapperError(description: made.stderr) }
        let script = packageRoot.appendingPathComponent("scripts/make_hdf5_cause_files.py").path
        let r = try runProgram("/usr/bin/env", ["python3", script, good, dir + "/causes"], timeout: 120)
        guard r.status == 0 else { throw SwapperError(description: "make_hdf5_cause_files.py: \(r.stderr)") }
        try FileManager.default.createDirectory(atPath: dir + "/folder.h5", withIntermediateDirectories: false)
        guard mkfifo(dir + "/fifo.h5", 0o644) == 0 else { throw SwapperError(description: "mkfifo failed") }
        try FileManager.default.createSymbolicLink(atPath: dir + "/dangling.h5", withDestinationPath: "nowhere.h5")
        try FileManager.default.createSymbolicLink(atPath: dir + "/loop.h5", withDestinationPath: "loop.h5")
        try FileManager.default.copyItem(atPath: good, toPath: dir + "/denied.h5")
        chmod(dir + "/denied.h5", 0)
        try Self.bindSocket(dir + "/socket.h5")
        // Another program has locked.h5 open for writing (h5py, HDF5's own locking).
        try FileManager.default.copyItem(atPath: good, toPath: dir + "/locked.h5")
        holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); print('held', flush=True); time.sleep(600)",
                            dir + "/locked.h5"]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        let line = out.fileHandleForReading.availableDataOrLine()
        guard line.contains("held") else { throw SwapperError(description: "the h5py holder did not start: \(line)") }
    }

    static func bindSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            path.utf8CString.withUnsafeBytes { src in memcpy(buf.baseAddress!, src.baseAddress!, min(src.count, buf.count - 1)) }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        guard rc == 0 else { throw SwapperError(description: "cannot bind a socket at \(path)") }
    }

    func release() {
        // SIGKILL: a child started by Foundation's Process may have SIGTERM blocked.
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        chmod(dir + "/denied.h5", 0o644)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

private extension FileHandle {
    /// The first line written (blocking until one arrives or the writer closes).
    func availableDataOrLine() -> String {
        var data = Data()
        while !data.contains(10) {
            let chunk = availableData
            if chunk.isEmpty { break }
            data.append(chunk)
        }
        return String(decoding: data, as: UTF8.self)
    }
}

@Suite("Unreadable for a named cause: HDF5 and file-system causes × every reader (issue 12 kind 3, fc-02)", .serialized)
struct UnreadableCauseTests {
    @Test("Every command names the real cause and the way out, exit 2; a good file is never called corrupt")
    func causesTimesCommands() throws {
        let folder = try CauseFolder()
        defer { folder.release() }
        let dir = folder.dir
        // The commands themselves work here, as the unprivileged user, on the good file.
        let fine = try runUnprivileged("mlres-surgery", ["verify", folder.good])
        #expect(fine.status == 0, "\(fine.stderr)")
        for cause in causes(dir) {
            for (tool, template) in commands {
                let out = dir + "/out.h5", run = dir + "/run"
                let args = template.map { $0 == "FILE" ? cause.file : $0 == "OUT" ? out : $0 == "RUN" ? run : $0 }
                let r = try runUnprivileged(tool, args)
                let what = "\(cause.name) × \(tool) \(template[0])"
                #expect(r.status == 2, "\(what): exit \(r.status), \(r.stderr)")
                #expect(r.stderr.hasPrefix("error: ") && r.stderr.hasSuffix("\n") && r.stderr.contains(cause.file),
                        "\(what): \(r.stderr)")
                let expected = cause.name == "directory" && tool == "mlres-train" ? ["is a folder"] : cause.says
                for phrase in expected {
                    #expect(r.stderr.contains(phrase), "\(what) names the cause (\(phrase)): \(r.stderr)")
                }
                if cause.goodFile {
                    #expect(!r.stderr.contains("corrupt") && !r.stderr.contains("truncated"), "\(what): \(r.stderr)")
                }
                #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: run + "/last.h5"))
            }
        }
    }

    @Test("Dataset files: a FIFO, a folder, a dangling link, a refused permission are named at once (score, train)")
    func datasetCauses() throws {
        let dir = try scratchFolder("dataset-causes")
        chmod(dir, 0o777)
        defer { chmod(dir + "/denied/t10k-images-idx3-ubyte", 0o644); try? FileManager.default.removeItem(atPath: dir) }
        let ckpt = dir + "/net.h5"
        #expect(try runTool("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--input-shape", "1,28,28", "-o", ckpt]).status == 0)
        let file = "t10k-images-idx3-ubyte"
        let cases: [(String, (String) throws -> Void, String)] = [
            ("fifo", { p in guard mkfifo(p, 0o644) == 0 else { throw SwapperError(description: "mkfifo") } }, "FIFO (named pipe)"),
            ("folder", { p in try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: false) }, "is a directory"),
            ("dangling", { p in try FileManager.default.createSymbolicLink(atPath: p, withDestinationPath: "nowhere") }, "symbolic link to 'nowhere'"),
            ("denied", { p in try FileManager.default.copyItem(atPath: fashion + "/" + file, toPath: p); chmod(p, 0) }, "permission denied"),
        ]
        for (name, make, phrase) in cases {
            let data = dir + "/" + name
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: false)
            for f in try FileManager.default.contentsOfDirectory(atPath: fashion) where f != file {
                try FileManager.default.copyItem(atPath: fashion + "/" + f, toPath: data + "/" + f)
            }
            try make(data + "/" + file)
            for args in [["score", ckpt, "--dataset", "fashion-mnist", "--data-dir", data, "--threads", "1"]] {
                let r = try runUnprivileged("mlres-eval", args, seconds: 30)
                #expect(r.status == 2, "\(name): exit \(r.status): \(r.stderr)")
                #expect(r.stderr.contains(data + "/" + file) && r.stderr.contains(phrase), "\(name): \(r.stderr)")
                #expect(!r.stderr.contains("missing dataset file"), "\(name): \(r.stderr)")
            }
            let t = try runUnprivileged("mlres-train", ["--dataset", "fashion-mnist", "--data-dir", data, "--epochs", "1",
                                                        "--batch-size", "10", "--out", dir + "/run-\(name)", "--threads", "1"], seconds: 30)
            #expect(t.status == 2 && t.stderr.contains(phrase), "train, \(name): exit \(t.status): \(t.stderr)")
        }
    }

    @Test("The server: a model that cannot be loaded is reported with its cause, the others are served")
    func serverLoad() throws {
        let folder = try CauseFolder()
        defer { folder.release() }
        // A models folder of links to every cause (NAME.h5 → the cause's file) plus a good model.
        let models = folder.dir + "/models"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: false)
        chmod(models, 0o777)
        let all = causes(folder.dir).filter { $0.name != "missing" && $0.name != "device" }
        for c in all {
            switch c.name {
            case "dangling-link": try FileManager.default.createSymbolicLink(atPath: models + "/dangling-link.h5", withDestinationPath: "nowhere.h5")
            case "link-loop": try FileManager.default.createSymbolicLink(atPath: models + "/link-loop.h5", withDestinationPath: "link-loop.h5")
            case "directory": try FileManager.default.createDirectory(atPath: models + "/directory.h5", withIntermediateDirectories: false)
            case "fifo": guard mkfifo(models + "/fifo.h5", 0o644) == 0 else { throw SwapperError(description: "mkfifo") }
            case "socket": try CauseFolder.bindSocket(models + "/socket.h5")
            default:
                // Same file (a hard link keeps the lock holder's file and the permissions).
                guard link(c.file, models + "/\(c.name).h5") == 0 else { throw SwapperError(description: "link \(c.file)") }
            }
        }
        try FileManager.default.copyItem(atPath: folder.good, toPath: models + "/good.h5")
        let exe = builtExecutable("mlres-eval").path
        let serveArgs = ["serve", "--models", models, "--port", "0", "--threads", "1"]
        let (cmd, argv) = geteuid() == 0
            ? ("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", exe] + serveArgs) : (exe, serveArgs)
        let errPath = folder.dir + "/serve.err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cmd)
        p.arguments = argv
        let out = Pipe()
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try p.run()
        let line = out.fileHandleForReading.availableDataOrLine()
        p.terminate()
        p.waitUntilExit()
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(line.contains("listening on") && line.contains("with 1 model(s): good"), "\(line)\n\(err)")
        for c in all {
            let report = err.split(separator: "\n").first { $0.contains("not serving \(c.name):") }.map(String.init)
            #expect(report != nil, "\(c.name) is reported: \(err)")
            guard let report else { continue }
            for phrase in c.says where !phrase.contains("nowhere.h5") && !(c.name == "directory") {
                #expect(report.contains(phrase), "server, \(c.name): \(report)")
            }
            if c.name == "directory" { #expect(report.contains("is a directory"), "\(report)") }
            if c.name == "dangling-link" { #expect(report.contains("symbolic link to 'nowhere.h5'"), "\(report)") }
            if c.goodFile { #expect(!report.contains("corrupt") && !report.contains("truncated"), "server, \(c.name): \(report)") }
        }
    }
}
