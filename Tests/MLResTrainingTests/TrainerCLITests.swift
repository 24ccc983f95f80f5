import Foundation
import Testing
import MLResHDF5
import MLResModel
@testable import MLResData
import MLResTestSupport
@testable import MLResTraining

// The built `mlres-train` executable: SIGTERM mid-run, progress without a terminal, JSON
// logging, and the exit status of refused runs. `swift test` builds the executable first;
// $MLRES_BIN_DIR overrides where it is looked for.

/// Starts `mlres-train args...` with stdout/stderr going to files in `dir` (not a terminal).
private func launch(_ args: [String], dir: String) throws -> Process {
    try startTool("mlres-train", args, stdout: dir + "/stdout.txt", stderr: dir + "/stderr.txt")
}

private func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

@Suite("mlres-train executable", .serialized)
struct TrainerCLITests {
    let fixture = Fixtures.dir("fashion-mnist")

    @Test("SIGTERM mid-run: finishes the step, writes last.h5, exits 0 saying how to resume; the resume finishes")
    func sigterm() throws {
        let logs = try TrainerFixture.scratch(), run = logs + "/run"
        #expect(FileManager.default.isExecutableFile(atPath: builtExecutable("mlres-train").path), "build mlres-train first")
        let p = try launch(["--dataset", "fashion-mnist", "--data-dir", fixture, "--blocks", "1-1", "--widths", "4,8",
                            "--batch", "8", "--epochs", "500", "--threads", "1", "--out", run], dir: logs)
        // Wait for the first epoch line of metrics.jsonl, then a little into the next epoch.
        let deadline = Date().addingTimeInterval(60)
        while !text(run + "/metrics.jsonl").contains("\"epoch\"") && Date() < deadline && p.isRunning {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(p.isRunning)
        Thread.sleep(forTimeInterval: 0.3)
        kill(p.processIdentifier, SIGTERM)
        // Bounded: a signal that never arrives fails the test instead of hanging the suite.
        if !waitForExit(p, seconds: 120) { Issue.record("no exit within 120 s of SIGTERM") }
        let out = text(logs + "/stdout.txt")
        #expect(p.terminationReason == .exit && p.terminationStatus == 0, "stderr: \(text(logs + "/stderr.txt"))")
        #expect(out.contains("SIGTERM: stopped after step"))
        #expect(out.contains("Resume with: mlres-train --resume \(run)/last.h5"))
        // Without a terminal: plain lines, no carriage-return bar.
        #expect(out.contains("epoch 1/500 1-1 cycle 0: train loss") && !out.contains("\r"))
        let ck = try CheckpointIO.read(path: run + "/last.h5")
        let ts = try #require(ck.training)
        #expect(ts.globalStep >= 3 && ts.epoch >= 1 && ts.globalStep < 1500)
        #expect(!FileManager.default.fileExists(atPath: run + "/cycle-0.h5"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)

        // Resume (one more epoch than done, JSON logging) and finish.
        let r = try launch(["--resume", run + "/last.h5", "--epochs", "\(ts.epoch + 1)", "--threads", "1",
                            "--log-format", "json"], dir: logs)
        r.waitUntilExit()
        #expect(r.terminationStatus == 0, "stderr: \(text(logs + "/stderr.txt"))")
        let lines = text(logs + "/stdout.txt").split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("{") && $0.hasSuffix("}") })
        #expect(lines.contains { $0.contains("\"type\":\"epoch\"") })
        let done = try CheckpointIO.read(path: run + "/last.h5")
        #expect(done.training?.epoch == ts.epoch + 1 && done.training?.globalStep == 3 * (ts.epoch + 1))
    }

    @Test("Refused runs exit 2 with the reason on stderr and write nothing")
    func refused() throws {
        let logs = try TrainerFixture.scratch(), run = logs + "/run"
        for (args, want) in [
            (["--dataset", "fashion-mnist", "--data-dir", logs + "/none", "--out", run], "missing dataset file"),
            (["--dataset", "fashion-mnist", "--data-dir", fixture, "--epochs", "3", "--interpolate-at", "3", "--out", run],
             "--interpolate-at 3"),
            (["--resume", logs + "/nothing.h5"], "no such file"),
        ] {
            let p = try launch(args, dir: logs)
            p.waitUntilExit()
            #expect(p.terminationStatus == 2, "\(args)")
            #expect(text(logs + "/stderr.txt").contains(want), "\(text(logs + "/stderr.txt"))")
            #expect(!FileManager.default.fileExists(atPath: run + "/last.h5"))
        }
        // Malformed command lines exit 64; a dataset name is one of the closed set, never a fallback.
        for (args, want) in [(["--dataset", "fashion-mnist", "--epochs", "abc"], "abc"),
                             (["--dataset", "mnist", "--out", run], "fashion-mnist"),
                             (["--dataset", "cifar100", "--labels", "medium", "--out", run], "coarse"),
                             (["--dataset", "fashion-mnist", "--blocks", "2-x", "--out", run], "--blocks 2-x: 'x'"),
                             (["--dataset", "fashion-mnist", "--first-block", "first", "--out", run], "auto")] {
            let p = try launch(args, dir: logs)
            p.waitUntilExit()
            #expect(p.terminationStatus == 64, "\(args)")
            let err = text(logs + "/stderr.txt")
            #expect(err.contains(want) && err.hasSuffix("\n"), "\(err)")
        }
        // --epochs 1 --interpolate-at 1: says what is allowed and why.
        let q = try launch(["--dataset", "fashion-mnist", "--data-dir", fixture, "--epochs", "1", "--interpolate-at", "1",
                            "--out", run], dir: logs)
        q.waitUntilExit()
        #expect(q.terminationStatus == 2)
        #expect(text(logs + "/stderr.txt").contains("needs --epochs 2 or more"), "\(text(logs + "/stderr.txt"))")
    }
}
