import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// The issue 17 measurement scripts: scripts/jumps.sh on a real checkpoint (its table is the scores
// of the files the tools write, policy by policy), and the argument checks of jumps.sh and
// scripts/reproduce.sh --policies/--recalibrate-bn (which refuse before building or training).

private let fashion = packageRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path

/// Runs `bash scripts/NAME args` with MLRES_BIN set to the built tools' folder.
private func script(_ name: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let dir = try scratchFolder("script-out")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [packageRoot.appendingPathComponent("scripts/" + name).path] + args
    var env = ProcessInfo.processInfo.environment
    env["MLRES_BIN"] = builtExecutable("mlres-train").deletingLastPathComponent().path
    p.environment = env
    for f in ["out", "err"] { FileManager.default.createFile(atPath: dir + "/" + f, contents: nil) }
    p.standardOutput = FileHandle(forWritingAtPath: dir + "/out")
    p.standardError = FileHandle(forWritingAtPath: dir + "/err")
    try p.run()
    p.waitUntilExit()
    return (p.terminationStatus, (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")
}

private func scoreError(_ ckpt: String) throws -> Double? {
    let r = try runTool("mlres-eval", ["score", ckpt, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json", "--threads", "1"])
    return (r.object["results"] as? [[String: Any]])?.first?["error"] as? Double
}

@Test("scripts/jumps.sh: per policy, the errors of the files mlres-surgery interpolate (+ mlres-train recalibrate) writes")
func jumpsScript() throws {
    let dir = try scratchFolder("jumps")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let run = dir + "/run"
    try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
    let net = networkWithBNStatistics(Architecture(blocks: [2, 2], widths: [4, 8], inputShape: [1, 28, 28]),
                                      seed: 5, inputMean: [0.3], inputStd: [0.35])
    let ck = run + "/cycle-0.h5"
    try CheckpointIO.write(Checkpoint(network: net), to: ck)
    let out = dir + "/jumps"
    let r = try script("jumps.sh", [ck, "--dataset", "fashion-mnist", "--data-dir", fashion, "--batches", "1",
                                    "--batch-size", "8", "--threads", "1", "--policies", "paper,preserve", "--out", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("| paper |") && r.stdout.contains("| preserve |"), "\(r.stdout)")
    let data = try Data(contentsOf: URL(fileURLWithPath: out + "/jumps.json"))
    let doc = try #require((try JSONSerialization.jsonObject(with: data)) as? [[String: Any]])
    let entry = try #require(doc.first)
    #expect(entry["error_before"] as? Double == (try scoreError(ck)))
    #expect(entry["blocks"] as? String == "2-2")
    let rows = entry["policies"] as? [[String: Any]] ?? []
    #expect(rows.map { $0["policy"] as? String } == ["paper", "preserve"])
    // Independently: the surgery files, scored; the preserve file keeps Σh (old block 1 → 3 copies of h/3).
    for (row, policy) in zip(rows, ["paper", "preserve"]) {
        let f = dir + "/\(policy).h5"
        #expect(try runTool("mlres-surgery", ["interpolate", ck, "--h-policy", policy, "-o", f]).status == 0)
        #expect(row["error_after"] as? Double == (try scoreError(f)), "\(policy)")
        let b = dir + "/\(policy).bn.h5"
        let t = try runTool("mlres-train", ["recalibrate", f, "--dataset", "fashion-mnist", "--data-dir", fashion,
                                            "--batches", "1", "--batch-size", "8", "--threads", "1", "-o", b])
        #expect(t.status == 0, "\(t.stderr)")
        #expect(row["error_after_recalibrated"] as? Double == (try scoreError(b)), "\(policy) recalibrated")
    }
    let kept = try CheckpointIO.read(path: out + "/run-cycle-0/preserve.h5").network.stepSizes
    #expect(kept[1].count == 4 && kept[1][0] == 1 && abs(kept[1].reduce(0, +) - 2) < 1e-12)
}

@Test("scripts/coarsen.sh: keep/average coarsening ± recalibration, scored; drop-k beside it")
func coarsenScript() throws {
    let dir = try scratchFolder("coarsen")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let net = networkWithBNStatistics(Architecture(blocks: [2, 2], widths: [4, 8], inputShape: [1, 28, 28]),
                                      seed: 6, inputMean: [0.3], inputStd: [0.35])
    let ck = dir + "/final.h5"
    try CheckpointIO.write(Checkpoint(network: net), to: ck)
    let out = dir + "/out"
    let r = try script("coarsen.sh", [ck, "--dataset", "fashion-mnist", "--data-dir", fashion, "--batches", "1",
                                      "--batch-size", "8", "--threads", "1", "--levels", "1", "--seeds", "1", "--out", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("| keep-1 | 1-1 |") && r.stdout.contains("| average-1 | 1-1 |"), "\(r.stdout)")
    // keep-1 is exactly `mlres-surgery coarsen --merge keep` (stage 1: block 0 changes shape, so the pair keeps its parameters).
    let f = dir + "/keep.h5"
    #expect(try runTool("mlres-surgery", ["coarsen", ck, "--merge", "keep", "-o", f]).status == 0)
    #expect(try CheckpointIO.read(path: out + "/keep-1.h5").network == (try CheckpointIO.read(path: f).network))
    let keepScore = try Data(contentsOf: URL(fileURLWithPath: out + "/keep-1.score.json"))
    let doc = try JSONSerialization.jsonObject(with: keepScore) as? [String: Any]
    #expect((doc?["results"] as? [[String: Any]])?.first?["error"] as? Double == (try scoreError(f)))
    #expect(FileManager.default.fileExists(atPath: out + "/drop-k.json"))
}

@Test("scripts/jumps.sh, coarsen.sh and reproduce.sh refuse bad arguments with exit 64 before any work")
func policyScriptArguments() throws {
    for (name, args, needle) in [
        ("jumps.sh", ["--dataset", "fashion-mnist"], "at least one checkpoint"),
        ("jumps.sh", ["x.h5"], "--dataset is required"),
        ("jumps.sh", ["x.h5", "--dataset", "fashion-mnist", "--policies", "paper,halfway"], "unknown policy 'halfway'"),
        ("jumps.sh", ["x.h5", "--dataset", "fashion-mnist", "--frobnicate"], "unknown option"),
        ("coarsen.sh", ["--dataset", "fashion-mnist"], "give the checkpoint"),
        ("coarsen.sh", ["a.h5", "b.h5", "--dataset", "fashion-mnist"], "one FINAL_CKPT only"),
        ("coarsen.sh", ["a.h5", "--dataset", "fashion-mnist", "--levels", "0"], "positive integers"),
        ("reproduce.sh", ["--policies", "paper,halfway"], "unknown policy 'halfway'"),
        ("reproduce.sh", ["--recalibrate-bn", "0"], "--recalibrate-bn must be a positive integer"),
        ("reproduce.sh", ["--recalibrate-bn", "x1"], "--recalibrate-bn must be a positive integer"),
    ] {
        let r = try script(name, args)
        #expect(r.status == 64 && r.stderr.contains(needle), "\(name) \(args): \(r.status) \(r.stderr)")
    }
}
