import Foundation
import Testing
import MLResTestSupport
import MLResHDF5
import MLResModel
import MLResTraining

// `mpirun -np 2 mlres-train ...` against one process, on a tiny network and a slice of
// Fashion-MNIST (the Debian package scripts/setup.sh installs).

/// 80 training images, batch 20: 4 steps per epoch; 2 epochs with an interpolation (1-1 → 2-2) after the first.
private let tiny = ["--dataset", "fashion-mnist", "--train-subset", "80", "--test-subset", "60", "--blocks", "1-1",
                    "--widths", "8,16", "--batch-size", "20", "--log-format", "json"]
private let twoEpochs = tiny + ["--epochs", "2", "--interpolate-at", "1", "--lr-max", "0.02"]

/// Runs mlres-train to completion (exit 0 expected) on `ranks` ranks (nil: alone).
@discardableResult
private func train(_ args: [String], ranks: Int?, logs: String) throws -> Job {
    let job = try launch("mlres-train", args, ranks: ranks, logs: logs)
    let status = job.wait(seconds: 600)
    #expect(status == 0, "mlres-train \(args) on \(ranks.map(String.init) ?? "1") ranks: status \(status)\n\(job.stderr)")
    return job
}

/// Every tensor of the network and every momentum buffer, by path.
private func tensors(_ path: String) throws -> [String: [Float]] {
    let ck = try CheckpointIO.read(path: path)
    var out: [String: [Float]] = [:]
    for nt in ck.network.namedTensors { out[nt.path] = nt.tensor.data }
    for (p, t) in ck.optimizer?.buffers ?? [:] { out["optimizer/momentum/" + p] = t.data }
    return out
}

/// ‖a − b‖ / ‖b‖ (b ≠ 0), in float64.
private func relative(_ a: [Float], _ b: [Float]) -> Double {
    var d = 0.0, n = 0.0
    for i in b.indices { let x = Double(a[i]) - Double(b[i]); d += x * x; n += Double(b[i]) * Double(b[i]) }
    return n == 0 ? (d == 0 ? 0 : .infinity) : (d / n).squareRoot()
}

/// "The same computation up to the order of float sums", for every tensor of the network:
/// the whole network (all tensors as one vector) to 1e-5 relative or within 5 times the
/// 2-thread noise below, and each tensor to 1e-5
/// relative or, if that is below float32's reach for it (zero-initialised biases whose value is
/// a few updates, whose gradients cancel almost entirely under the next batch norm), within 20
/// times how far the same single process moves it when oneDNN runs 2 threads instead of 1
/// (`floor` vs `floorReference`, default `b`).
private func expectSameStep(_ a: [String: [Float]], _ b: [String: [Float]], floor: [String: [Float]],
                            floorReference: [String: [Float]]? = nil, what: String) throws {
    var d = 0.0, n = 0.0, dNoise = 0.0
    for (path, ref) in b where path.hasPrefix("model/") {
        let x = try #require(a[path], "\(path) missing")
        let f = floor[path]!, fr = (floorReference ?? b)[path]!
        for i in ref.indices {
            let e = Double(x[i]) - Double(ref[i]), g = Double(f[i]) - Double(fr[i])
            d += e * e; n += Double(ref[i]) * Double(ref[i]); dNoise += g * g
        }
        let e = relative(x, ref), noise = relative(floor[path]!, (floorReference ?? b)[path]!)
        #expect(e <= max(1e-5, 20 * noise), "\(what): \(path) differs by \(e) (1 vs 2 threads: \(noise))")
    }
    let whole = (d / n).squareRoot(), wholeNoise = (dNoise / n).squareRoot()
    #expect(whole <= max(1e-5, 5 * wholeNoise), "\(what): the whole network differs by \(whole) (1 vs 2 threads: \(wholeNoise))")
}

/// The "rank r/N: weights sha256 X at step S" lines (each rank prints one at the end).
private func digests(_ text: String) -> [Int: String] {
    var out: [Int: String] = [:]
    for line in text.split(separator: "\n") where line.contains(": weights sha256 ") {
        let parts = line.split(separator: " ")
        if let r = Int(parts[1].split(separator: "/")[0]) { out[r] = String(parts[4]) }
    }
    return out
}

private func pids(childrenOf parent: Int32) -> [Int32: Int] {
    var out: [Int32: Int] = [:]   // pid → OMPI rank
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name),
              let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, Int32(fields[1]) == parent,
              let env = FileManager.default.contents(atPath: "/proc/\(name)/environ") else { continue }
        for entry in env.split(separator: 0) {
            let s = String(decoding: entry, as: UTF8.self)
            if s.hasPrefix("OMPI_COMM_WORLD_RANK="), let r = Int(s.dropFirst(21)) { out[pid] = r }
        }
    }
    return out
}

@Suite("Data-parallel training (mpirun -np 2)", .serialized)
struct DataParallelTrainingTests {
    @Test("--sync-bn: 2 ranks x 1 thread = 1 process over 8 steps with an interpolation (float-sum order aside); a 2-rank checkpoint resumes in 1 process on the same trajectory")
    func syncBatchNormMatchesOneProcess() throws {
        let dir = try scratchFolder()
        try train(twoEpochs + ["--threads", "1", "--sync-bn", "--out", dir + "/s2"], ranks: 2, logs: dir)
        try train(twoEpochs + ["--threads", "1", "--out", dir + "/p1"], ranks: nil, logs: dir)
        // The same single process with 2 threads: oneDNN then splits its sums differently; how
        // far that moves each tensor is the float-order noise floor.
        try train(twoEpochs + ["--threads", "2", "--out", dir + "/p2"], ranks: nil, logs: dir)
        try train(twoEpochs + ["--threads", "1", "--out", dir + "/n2"], ranks: 2, logs: dir)
        let s2 = try tensors(dir + "/s2/last.h5"), p1 = try tensors(dir + "/p1/last.h5"), p2 = try tensors(dir + "/p2/last.h5")
        let n2 = try tensors(dir + "/n2/last.h5")
        #expect(s2.keys.sorted() == p1.keys.sorted() && s2.keys.contains("model/stages/1/blocks/1/conv2/weight"))
        try expectSameStep(s2, p1, floor: p2, what: "2 ranks --sync-bn vs 1 process")
        // Per-rank statistics are another computation: far apart (the comparison can fail).
        var worstSync = 0.0, worstNoSync = 0.0
        for (path, ref) in p1 where path.hasPrefix("model/") {
            worstSync = max(worstSync, relative(s2[path]!, ref)); worstNoSync = max(worstNoSync, relative(n2[path]!, ref))
        }
        #expect(worstNoSync > 30 * worstSync, "no sync \(worstNoSync) vs sync \(worstSync)")
        // Rank count in the lineage and metrics.
        let ck = try CheckpointIO.read(path: dir + "/s2/last.h5")
        let trains = ck.lineage.filter { $0.op == "train" }
        #expect(trains.count == 2 && trains.allSatisfy { $0.args["ranks"] == .int(2) && $0.args["sync_bn"] == .bool(true) })
        let epochs = ((try? String(contentsOfFile: dir + "/s2/metrics.jsonl", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"type\":\"epoch\"") }
        #expect(epochs.count == 2 && epochs.allSatisfy { $0.contains("\"ranks\":2") && $0.contains("\"allreduce_bytes\"") })

        // Resume the 2-rank cycle-0.h5 (end of epoch 1, before the interpolation) in 1 process.
        try train(["--resume", dir + "/s2/cycle-0.h5", "--threads", "1", "--out", dir + "/r1"], ranks: nil, logs: dir)
        let r1 = try tensors(dir + "/r1/last.h5")
        try expectSameStep(r1, s2, floor: p2, floorReference: p1, what: "2-rank checkpoint resumed in 1 process vs 2 ranks")
        #expect(try CheckpointIO.read(path: dir + "/r1/last.h5").network.blocksDescription == "2-2")
    }

    @Test("--recalibrate-bn 2 with 2 ranks --sync-bn = 1 process (float-sum order aside): each rank recalibrates on its slice, global batch statistics; ranks agree")
    func recalibrationAcrossRanks() throws {
        let dir = try scratchFolder()
        let recal = twoEpochs + ["--recalibrate-bn", "2"]
        let job = try train(recal + ["--threads", "1", "--sync-bn", "--out", dir + "/s2"], ranks: 2, logs: dir)
        try train(recal + ["--threads", "1", "--out", dir + "/p1"], ranks: nil, logs: dir)
        try train(recal + ["--threads", "2", "--out", dir + "/p2"], ranks: nil, logs: dir)
        let s2 = try tensors(dir + "/s2/last.h5"), p1 = try tensors(dir + "/p1/last.h5"), p2 = try tensors(dir + "/p2/last.h5")
        try expectSameStep(s2, p1, floor: p2, what: "2 ranks --sync-bn --recalibrate-bn vs 1 process")
        let d = digests(job.stderr)
        #expect(d.count == 2 && d[0] == d[1], "\(job.stderr)")
        let ck = try CheckpointIO.read(path: dir + "/s2/last.h5")
        #expect(ck.lineage.map(\.op) == ["init", "train", "interpolate", "recalibrate", "train"])
        let jump = ((try? String(contentsOfFile: dir + "/s2/metrics.jsonl", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"type\":\"interpolate\"") }
        #expect(jump.count == 1 && jump.allSatisfy { $0.contains("\"test_error_recalibrated\"") && $0.contains("\"recalibrate_bn\":2") })
        // Recalibration changed the trajectory (the comparison above is not of two plain runs).
        try train(twoEpochs + ["--threads", "1", "--out", dir + "/plain"], ranks: nil, logs: dir)
        let plain = try tensors(dir + "/plain/last.h5")
        #expect(plain["model/stages/1/blocks/1/bn1/running_var"] != p1["model/stages/1/blocks/1/bn1/running_var"])
    }

    @Test("Without --sync-bn: the run trains, both ranks end with bit-identical weights, those rank 0 wrote")
    func ranksHoldIdenticalWeights() throws {
        let dir = try scratchFolder()
        let job = try train(twoEpochs + ["--threads", "1", "--out", dir + "/run"], ranks: 2, logs: dir)
        let d = digests(job.stderr)
        let ck = try CheckpointIO.read(path: dir + "/run/last.h5")
        #expect(d.count == 2 && d[0] == d[1], "\(job.stderr)")
        #expect(d[0] == networkDigest(ck.network))
        #expect(ck.training?.globalStep == 8 && ck.network.blocksDescription == "2-2")
        let losses = ck.training?.history["train_loss"] ?? []
        #expect(losses.count == 2 && losses.allSatisfy(\.isFinite))
        // Rank 0 alone wrote: one metrics line per epoch, not two.
        let lines = ((try? String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("\"type\":\"epoch\"") }
        #expect(lines.count == 2)
    }

    @Test("SIGTERM to mpirun mid-run: ranks agree on the step, rank 0 writes last.h5, the 2-rank resume ends bit-identical to an uninterrupted run")
    func sigtermResumesExactly() throws {
        let dir = try scratchFolder()
        // 200 epochs of 4 steps: long enough (several seconds even at 0.03 s an epoch) that the
        // SIGTERM Open MPI forwards 2 s late still finds the ranks training. 15 epochs were not:
        // a CI run finished all of them before the signal arrived.
        let args = tiny + ["--epochs", "200", "--lr-max", "0.1", "--threads", "1", "--sync-bn"]
        try train(args + ["--out", dir + "/ref"], ranks: 2, logs: dir)
        // Open MPI sends the ranks SIGTERM odls_base_sigkill_timeout seconds after mpirun gets
        // it, and SIGKILL as long again later.
        let job = try launch("mlres-train", args + ["--out", dir + "/run"], ranks: 2, logs: dir,
                             mca: ["odls_base_sigkill_timeout": "2"])
        let deadline = Date().addingTimeInterval(300)
        while job.process.isRunning && Date() < deadline
            && !(((try? String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)) ?? "").contains("\"epoch\"")) {
            Thread.sleep(forTimeInterval: 0.05)
        }
        try #require(job.process.isRunning, "the run ended before it could be interrupted: \(job.stderr)")
        kill(job.process.processIdentifier, SIGTERM)
        job.wait(seconds: 120)
        #expect(job.stdout.contains("SIGTERM: stopped after step"), "\(job.stdout)\n\(job.stderr)")
        let d = digests(job.stderr)
        #expect(d.count == 2 && d[0] == d[1], "both ranks finished cleanly: \(job.stderr)")
        #expect(!job.stderr.contains("exited on signal"))
        let stopped = try CheckpointIO.read(path: dir + "/run/last.h5")
        let step = try #require(stopped.training?.globalStep)
        print("mpirun SIGTERM: the ranks stopped after step \(step) of 800")
        #expect(step >= 4 && step < 800)
        #expect(d[0] == networkDigest(stopped.network))
        try train(["--resume", dir + "/run/last.h5", "--threads", "1", "--sync-bn"], ranks: 2, logs: dir)
        let a = try tensors(dir + "/run/last.h5"), b = try tensors(dir + "/ref/last.h5")
        #expect(a.keys.sorted() == b.keys.sorted())
        for (path, ref) in b { #expect(a[path] == ref, "\(path) differs after the resume (stopped at step \(step))") }
    }

    @Test("A rank killed mid-run ends the job non-zero; the last checkpoint written before stays valid")
    func killedRankLeavesCheckpoint() throws {
        let dir = try scratchFolder()
        let job = try launch("mlres-train", tiny + ["--epochs", "200", "--lr-max", "0.1", "--threads", "1", "--out", dir + "/run"], ranks: 2, logs: dir)
        let deadline = Date().addingTimeInterval(300)
        while job.process.isRunning && Date() < deadline && !FileManager.default.fileExists(atPath: dir + "/run/last.h5") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        Thread.sleep(forTimeInterval: 0.3)
        let ranks = pids(childrenOf: job.process.processIdentifier)
        let victim = try #require(ranks.first { $0.value == 1 }?.key, "rank 1 not found among \(ranks)")
        kill(victim, SIGKILL)
        let status = job.wait(seconds: 60)
        #expect(status != 0 && status != -1, "mpirun status \(status)")
        let ck = try CheckpointIO.read(path: dir + "/run/last.h5")
        let ts = try #require(ck.training)
        #expect(ts.epoch >= 1 && ts.globalStep == ts.epoch * 4 && ts.globalStep < 800)
        // It resumes (here in one process).
        try train(["--resume", dir + "/run/last.h5", "--epochs", "\(ts.epoch + 1)", "--threads", "1"], ranks: nil, logs: dir)
    }
}
