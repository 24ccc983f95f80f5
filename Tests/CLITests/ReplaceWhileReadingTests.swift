import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// Issue 12 kind 2 (field case fc-19): a file opened several times. Every command that reads a
// checkpoint (or a safetensors file) runs again and again while a writer replaces its input
// atomically (rename over the path, as the trainer publishes last.h5), alternating between two
// valid files A and B whose results differ. Each run must see A or B wholly: exit as it does on
// A or B alone, print exactly what it prints for A or for B (so a reported sha256 always sits
// next to the results computed from those bytes), and write exactly the output it writes for A
// or for B (so a lineage's parent digest is the one of the parent the output came from). Never
// "corrupt", never a mixture. The server's load/reload/poll are the same family in
// MLResServerTests (ReplaceWhileServingTests).

private let fashion = packageRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path

/// How a run's outcome is reduced to a comparable fingerprint.
private enum Outcome: Sendable {
    /// Exit status and the whole standard output.
    case stdout
    /// Exit status and standard output as JSON, without the keys that hold timings.
    case json
    /// `case json`, plus the content of the checkpoint written to OUT.
    case jsonAndOutputCheckpoint
    /// Exit status, standard output and the checkpoint written to OUT.
    case stdoutAndOutputCheckpoint
    /// Exit status and the bytes written to OUT (a deterministic format: ONNX).
    case outputBytes
    /// The checkpoint RUN/last.h5 a training run wrote.
    case runCheckpoint
}

/// Which pair of files is swapped under the consumer.
private enum Pair: Sendable { case checkpoints, safetensors }

/// One consumer of the family. In `args`: FILE the swapped file, OUT an output file, RUN a fresh
/// run folder, GOOD a stable copy of A.
private struct Consumer: Sendable, CustomStringConvertible {
    var name: String
    var tool: String
    var args: [String]
    var outcome: Outcome
    var pair: Pair = .checkpoints
    /// The fingerprint holds the sha256 of the file read (checked against `sha256sum`).
    var reportsSHA256 = true
    var description: String { name }
}

private let consumers: [Consumer] = [
    Consumer(name: "inspect", tool: "mlres-surgery", args: ["inspect", "FILE", "--json"], outcome: .json),
    Consumer(name: "verify", tool: "mlres-surgery", args: ["verify", "FILE"], outcome: .stdout),
    Consumer(name: "score", tool: "mlres-eval",
             args: ["score", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1", "--json"],
             outcome: .json),
    Consumer(name: "norms", tool: "mlres-eval",
             args: ["norms", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1", "--json"],
             outcome: .json),
    Consumer(name: "lesion", tool: "mlres-eval",
             args: ["lesion", "FILE", "--mode", "single", "--dataset", "fashion-mnist", "--data-dir", fashion,
                    "--threads", "1", "--json"], outcome: .json),
    Consumer(name: "interpolate", tool: "mlres-surgery", args: ["interpolate", "FILE", "-o", "OUT", "--force", "--json"],
             outcome: .jsonAndOutputCheckpoint),
    Consumer(name: "remove", tool: "mlres-surgery", args: ["remove", "FILE", "--block", "0.1", "-o", "OUT", "--force", "--json"],
             outcome: .jsonAndOutputCheckpoint),
    Consumer(name: "diff", tool: "mlres-surgery", args: ["diff", "GOOD", "FILE", "--json"], outcome: .stdout,
             reportsSHA256: false),
    Consumer(name: "export-onnx", tool: "mlres-surgery", args: ["export", "FILE", "--format", "onnx", "-o", "OUT", "--force"],
             outcome: .outputBytes),
    Consumer(name: "import-safetensors", tool: "mlres-surgery", args: ["import", "FILE", "-o", "OUT", "--force"],
             outcome: .stdoutAndOutputCheckpoint, pair: .safetensors),
    Consumer(name: "train-resume", tool: "mlres-train",
             args: ["--resume", "FILE", "--out", "RUN", "--epochs", "2", "--dataset", "fashion-mnist", "--data-dir", fashion,
                    "--threads", "1"], outcome: .runCheckpoint, reportsSHA256: false),
]

/// The two files of each pair, made once per test process.
private final class Files: @unchecked Sendable {
    let dir: String
    /// A: a 2-1 network trained one epoch (seed 3); B: a 2-2 network trained one epoch (seed 4).
    let a: [UInt8], b: [UInt8]
    /// A and B exported as safetensors.
    let aST: [UInt8], bST: [UInt8]

    static let shared = Result(catching: { try Files() })

    private init() throws {
        let dir = try scratchFolder("replace-pairs")
        self.dir = dir
        func train(_ blocks: String, seed: String) throws -> [UInt8] {
            let run = dir + "/run-\(seed)"
            let r = try runTool("mlres-train", ["--dataset", "fashion-mnist", "--data-dir", fashion, "--out", run,
                                                "--epochs", "1", "--batch-size", "10", "--blocks", blocks, "--widths", "4,8",
                                                "--seed", seed, "--threads", "1"])
            guard r.status == 0 else { throw SwapperError(description: "training the pair failed: \(r.stderr)") }
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: run + "/last.h5")))
        }
        let a = try train("2-1", seed: "3"), b = try train("2-2", seed: "4")
        self.a = a; self.b = b
        func export(_ bytes: [UInt8], _ tag: String) throws -> [UInt8] {
            let src = dir + "/\(tag).h5", out = dir + "/\(tag).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: src))
            let r = try runTool("mlres-surgery", ["export", src, "--format", "safetensors", "-o", out])
            guard r.status == 0 else { throw SwapperError(description: "export failed: \(r.stderr)") }
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        }
        aST = try export(a, "a")
        bST = try export(b, "b")
    }
}

/// Keys whose values are measurements of time, not results.
private let timingKeys: Set<String> = ["images_per_s", "seconds"]

private func withoutTimings(_ v: Any) -> Any {
    if let d = v as? [String: Any] {
        return d.filter { !timingKeys.contains($0.key) }.mapValues(withoutTimings)
    }
    if let a = v as? [Any] { return a.map(withoutTimings) }
    return v
}

private func canonicalJSON(_ text: String) -> String? {
    guard let v = try? JSONSerialization.jsonObject(with: Data(text.utf8)),
          let d = try? JSONSerialization.data(withJSONObject: withoutTimings(v), options: [.sortedKeys]) else { return nil }
    return String(decoding: d, as: UTF8.self)
}

/// A written checkpoint's content: every tensor's bytes, the optimizer state and the lineage
/// (operation, arguments, parent digest; not the time stamps), as one SHA-256.
private func checkpointFingerprint(_ path: String) -> String {
    guard let c = try? CheckpointIO.read(path: path) else { return "unreadable output \(path)" }
    var bytes = [UInt8]()
    for t in c.network.namedTensors {
        bytes += Array(t.path.utf8)
        t.tensor.data.withUnsafeBytes { bytes += $0 }
    }
    for t in c.optimizer?.buffers.sorted(by: { $0.key < $1.key }) ?? [] {
        bytes += Array(t.key.utf8)
        t.value.data.withUnsafeBytes { bytes += $0 }
    }
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    for var e in c.lineage {
        e.at = ""
        bytes += (try? enc.encode(e)).map { [UInt8]($0) } ?? []
    }
    let parents = c.lineage.compactMap(\.parentSHA256).joined(separator: ",")
    return "parents [\(parents)] content \(FileDigest.sha256(Data(bytes)))"
}

/// The 64-hex-digit runs in `bytes` (the source digest an exported file records).
private func hexRuns(_ bytes: [UInt8]) -> [String] {
    var runs: [String] = [], current: [UInt8] = []
    for b in bytes + [0] {
        if (b >= 48 && b <= 57) || (b >= 97 && b <= 102) { current.append(b); continue }
        if current.count == 64 { runs.append(String(decoding: current, as: UTF8.self)) }
        current = []
    }
    return runs
}

private func fingerprint(_ c: Consumer, _ r: ToolRun, out: String, run: String) -> String {
    let head = "exit \(r.status)"
    switch c.outcome {
    case .stdout: return "\(head)\n\(r.stdout)"
    case .json: return "\(head)\n\(canonicalJSON(r.stdout) ?? "not JSON: \(r.stdout)")"
    case .jsonAndOutputCheckpoint:
        return "\(head)\n\(canonicalJSON(r.stdout) ?? "not JSON: \(r.stdout)")\n\(checkpointFingerprint(out))"
    case .stdoutAndOutputCheckpoint: return "\(head)\n\(r.stdout)\n\(checkpointFingerprint(out))"
    case .outputBytes:
        let bytes = (try? Data(contentsOf: URL(fileURLWithPath: out))).map { [UInt8]($0) } ?? []
        return "\(head)\nsource \(hexRuns(bytes).joined(separator: ","))\n\(FileDigest.sha256(Data(bytes)))"
    case .runCheckpoint: return "\(head)\n\(checkpointFingerprint(run + "/last.h5"))"
    }
}

@Suite("Reading while the file is replaced atomically (issue 12 kind 2, fc-19)", .serialized)
struct ReplaceWhileReadingTests {
    @Test("Every reader sees the old file or the new one wholly, and reports the digest of the bytes it used",
          arguments: consumers.map(\.name))
    func readerSeesOneFile(_ name: String) throws {
        let c = consumers.first { $0.name == name }!
        let files = try Files.shared.get()
        let dir = try scratchFolder("replace-\(c.name)"); defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = c.pair == .checkpoints ? (files.a, files.b) : (files.aST, files.bST)
        let live = dir + (c.pair == .checkpoints ? "/live.h5" : "/live.safetensors")
        let good = dir + "/good.h5", out = dir + "/out" + (c.outcome == .outputBytes ? ".onnx" : ".h5")
        try Data(files.a).write(to: URL(fileURLWithPath: good))
        var runs = 0
        func runOnce() throws -> (ToolRun, String) {
            runs += 1
            let run = dir + "/run-\(runs)"
            let args = c.args.map { $0 == "FILE" ? live : $0 == "OUT" ? out : $0 == "RUN" ? run : $0 == "GOOD" ? good : $0 }
            let r = try runTool(c.tool, args)
            defer { try? FileManager.default.removeItem(atPath: run) }
            return (r, fingerprint(c, r, out: out, run: run))
        }

        // What the consumer does with A alone and with B alone (at the same path).
        var truth: [String: String] = [:]
        for (tag, bytes) in [("A", a), ("B", b)] {
            if let p = AtomicSwapper.replace(live, via: live + ".next", with: bytes) { Issue.record("\(p)"); return }
            let (r, f) = try runOnce()
            #expect(r.status == (c.name == "diff" && tag == "B" ? 1 : 0), "\(c.name) on \(tag): exit \(r.status): \(r.stderr)")
            if c.reportsSHA256 {
                let sha = try sha256sum(live)
                #expect(f.contains(sha), "\(c.name) on \(tag) reports the file's sha256 \(sha):\n\(f.prefix(600))")
            }
            truth[f] = tag
        }
        #expect(truth.count == 2, "\(c.name): A and B must give different outcomes")

        // The same while a writer replaces the path by rename every millisecond.
        let swapper = AtomicSwapper(path: live, versions: [a, b])
        swapper.start()
        let start = Date()
        var seen: [String: Int] = [:]
        var wrong: [String] = []
        var replaced = 0
        while true {
            let elapsed = Date().timeIntervalSince(start)
            // Stop on what was seen, not on the clock alone: each run is a whole tool launch, which
            // on a loaded 2-core CI machine can take seconds, and A or B is a coin flip per run.
            if elapsed > 120 || (elapsed > 2 && seen.count == 2 && runs >= 8) { break }
            let (r, f) = try runOnce()
            if let tag = truth[f] { seen[tag, default: 0] += 1 } else {
                wrong.append("exit \(r.status), stderr: \(r.stderr.prefix(300)), outcome: \(f.prefix(300))")
            }
        }
        replaced = try swapper.stop()
        #expect(wrong.isEmpty, "\(c.name): \(wrong.count) runs saw neither A nor B wholly: \(wrong.prefix(3))")
        #expect(seen["A", default: 0] > 0 && seen["B", default: 0] > 0,
                "\(c.name): the race was not exercised (outcomes \(seen), \(replaced) replacements)")
        #expect(replaced > runs, "\(c.name): \(replaced) replacements for \(runs) runs")
    }
}
