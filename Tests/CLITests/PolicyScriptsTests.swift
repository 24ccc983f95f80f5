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

@Test("scripts/jumps_summary.py: mean ± sample std of each seed's jump, and refusal of seeds that disagree")
func jumpsSummaryScript() throws {
    let dir = try scratchFolder("jumps-summary")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // Three seeds' jumps.json as scripts/jumps.sh writes them (errors as fractions).
    let seeds: [(before: Double, after: Double, afterBN: Double)] = [(0.2135, 0.3454, 0.2421), (0.2010, 0.3302, 0.2290), (0.2200, 0.3105, 0.2305)]
    var dirs: [String] = []
    for (i, s) in seeds.enumerated() {
        let d = dir + "/seed\(i)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let doc: [[String: Any]] = [["checkpoint": "x", "blocks": "2-2-2", "error_before": s.before,
                                     "error_before_recalibrated": s.before, "batches": 50,
                                     "policies": [["policy": "paper", "error_after": s.after, "error_after_recalibrated": s.afterBN]]]]
        try JSONSerialization.data(withJSONObject: doc).write(to: URL(fileURLWithPath: d + "/jumps.json"))
        dirs.append(d)
    }
    let r = try runProgram("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("scripts/jumps_summary.py").path] + dirs, timeout: 60)
    #expect(r.status == 0, "\(r.stderr)")
    // Independent: mean and sample std (n - 1) of the jumps in points.
    func meanStd(_ xs: [Double]) -> String {
        let m = xs.reduce(0, +) / Double(xs.count)
        let sd = (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(xs.count - 1)).squareRoot()
        return String(format: "%+.2f ± %.2f", m, sd)
    }
    let jump = meanStd(seeds.map { 100 * ($0.after - $0.before) })
    let jumpBN = meanStd(seeds.map { 100 * ($0.afterBN - $0.before) })
    let worst = String(format: "%+.2f", seeds.map { 100 * ($0.afterBN - $0.before) }.max()!)
    #expect(r.stdout.contains("| paper |") && r.stdout.contains("| \(jump) |") && r.stdout.contains("| \(jumpBN) | \(worst) |"),
            "\(r.stdout) — expected \(jump), \(jumpBN), \(worst)")
    // The summary as JSON, drawn by plot.py jumps; a per-seed jumps.json is not a summary: exit 2, no PNG.
    let summary = dir + "/summary.json", png = dir + "/jumps.png", bad = dir + "/bad.png"
    let plot = packageRoot.appendingPathComponent("scripts/plot.py").path
    #expect(try runProgram("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("scripts/jumps_summary.py").path] + dirs
                            + ["--json", summary], timeout: 60).status == 0)
    #expect(try runProgram("/usr/bin/env", ["python3", plot, "jumps", summary, "-o", png], timeout: 120).status == 0)
    #expect((try? Data(contentsOf: URL(fileURLWithPath: png)).prefix(4)) == Data([0x89, 0x50, 0x4E, 0x47]))
    #expect(try runProgram("/usr/bin/env", ["python3", plot, "jumps", dirs[0] + "/jumps.json", "-o", bad], timeout: 120).status == 2)
    #expect(!FileManager.default.fileExists(atPath: bad))
    // A seed whose file holds other interpolations is refused, naming it.
    let odd = dir + "/odd"
    try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
    try Data("[]".utf8).write(to: URL(fileURLWithPath: odd + "/jumps.json"))
    let refused = try runProgram("/usr/bin/env", ["python3", packageRoot.appendingPathComponent("scripts/jumps_summary.py").path, dirs[0], odd], timeout: 60)
    #expect(refused.status == 2 && refused.stderr.contains(odd + "/jumps.json"), "\(refused.stderr)")
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
    // Error against inference speed of the coarsened networks (plot.py error-speed); a lesion file is refused.
    let plot = packageRoot.appendingPathComponent("scripts/plot.py").path, png = dir + "/es.png"
    let drawn = try runProgram("/usr/bin/env", ["python3", plot, "error-speed", out + "/keep-1.score.json", out + "/average-1.bn.score.json",
                                                    "-o", png], timeout: 120)
    #expect(drawn.status == 0, "\(drawn.stderr)")
    #expect((try? Data(contentsOf: URL(fileURLWithPath: png)).prefix(4)) == Data([0x89, 0x50, 0x4E, 0x47]))
    #expect(try runProgram("/usr/bin/env", ["python3", plot, "error-speed", out + "/drop-k.json", "-o", dir + "/bad.png"], timeout: 120).status == 2)
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
