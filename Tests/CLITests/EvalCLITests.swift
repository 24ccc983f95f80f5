import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// End-to-end tests of the built `mlres-eval` (with `mlres-surgery` for the lesion
// equivalence) on the committed Fashion-MNIST fixture (12 test images, 1x28x28).

private let fashion = packageRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path

private func eval(_ args: String...) throws -> ToolRun { try runTool("mlres-eval", args) }

/// A 1x28x28 checkpoint, blocks 3-1-2, widths 4-6-8, step sizes `hs`, random BN statistics.
private func writeNet(_ path: String, hs: [[Double]] = [[0.5, 0.8, 0.6], [1.0], [0.7, 0.3]], seed: UInt64 = 3) throws {
    let net = networkWithBNStatistics(Architecture(blocks: hs.map(\.count), widths: [4, 6, 8], inputShape: [1, 28, 28]),
                                      seed: seed, hs: hs, inputMean: [0.3], inputStd: [0.35])
    try CheckpointIO.write(Checkpoint(network: net, lineage: [LineageEvent(op: "init"), LineageEvent(op: "train"),
                                                              LineageEvent(op: "train")]), to: path)
}

/// The first result of `mlres-eval score --json` for one checkpoint.
private func scoreResult(_ ckpt: String) throws -> [String: Any] {
    let r = try eval("score", ckpt, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json", "--batch", "5")
    #expect(r.status == 0, "\(r.stderr)")
    return (r.object["results"] as? [[String: Any]])?.first ?? [:]
}

/// Parses a little-endian float32 `.npy` (version 1.0), independently of the library's reader.
private func readNPY(_ path: String) -> (shape: [Int], values: [Float])? {
    guard let d = FileManager.default.contents(atPath: path), d.count > 10 else { return nil }
    let b = [UInt8](d)
    guard b[0] == 0x93, String(decoding: b[1..<6], as: UTF8.self) == "NUMPY", b[6] == 1 else { return nil }
    let hl = Int(b[8]) | Int(b[9]) << 8
    let header = String(decoding: b[10..<(10 + hl)], as: UTF8.self)
    guard header.contains("'<f4'"), let o = header.range(of: "'shape': ("),
          let c = header[o.upperBound...].firstIndex(of: ")") else { return nil }
    let shape = header[o.upperBound..<c].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    let body = Array(b[(10 + hl)...])
    guard body.count == 4 * shape.reduce(1, *) else { return nil }
    let values = (0..<(body.count / 4)).map { i in
        Float(bitPattern: UInt32(body[4*i]) | UInt32(body[4*i+1]) << 8 | UInt32(body[4*i+2]) << 16 | UInt32(body[4*i+3]) << 24)
    }
    return (shape, values)
}

@Test("CLI eval: score --json schema for two checkpoints (one with h = 0 blocks), sha256, lineage, confusion")
func cliScoreJSON() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5", z = dir + "/zero.h5"
    try writeNet(a)
    try writeNet(z, hs: [[0.5, 0, 0.6], [0], [0.7, 0.3]])
    let r = try eval("score", a, z, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json", "--threads", "1")
    #expect(r.status == 0, "\(r.stderr)")
    let doc = r.object
    #expect(doc["dataset"] as? String == "fashion-mnist" && doc["images"] as? Int == 12)
    #expect((doc["class_names"] as? [String])?.count == 10 && doc["batch"] as? Int == 100)
    let results = doc["results"] as? [[String: Any]] ?? []
    #expect(results.count == 2)
    for (res, path) in zip(results, [a, z]) {
        #expect(Set(res.keys) == ["checkpoint", "sha256", "blocks", "step_sizes", "parameters", "lineage", "images",
                                  "correct", "error", "mean_loss", "per_class_accuracy", "confusion",
                                  "images_per_s", "seconds"])
        #expect(res["checkpoint"] as? String == path)
        #expect(res["sha256"] as? String == (try FileDigest.sha256(fileAt: path)))
        #expect(res["blocks"] as? String == "3-1-2")
        let correct = res["correct"] as? Int ?? -1, err = res["error"] as? Double ?? -1
        #expect(abs(err - (1 - Double(correct) / 12)) < 1e-12)
        #expect((res["mean_loss"] as? Double ?? -1) > 0 && (res["images_per_s"] as? Double ?? 0) > 0)
        let conf = res["confusion"] as? [[Int]] ?? []
        #expect(conf.count == 10 && conf.allSatisfy { $0.count == 10 })
        #expect(conf.joined().reduce(0, +) == 12)
        #expect((0..<10).map { conf[$0][$0] }.reduce(0, +) == correct)
        let acc = res["per_class_accuracy"] as? [Any] ?? []
        #expect(acc.count == 10 && acc.allSatisfy { $0 is Double || $0 is NSNull })
        let lineage = res["lineage"] as? [String: Any] ?? [:]
        #expect(lineage["text"] as? String == "init → train ×2" && lineage["events"] as? Int == 3)
        #expect((lineage["counts"] as? [String: Int]) == ["init": 1, "train": 2])
    }
    #expect((results[1]["step_sizes"] as? [[Double]]) == [[0.5, 0, 0.6], [0], [0.7, 0.3]])

    let csv = try eval("score", a, z, "--dataset", "fashion-mnist", "--data-dir", fashion, "--csv")
    #expect(csv.status == 0)
    let lines = csv.stdout.split(separator: "\n")
    #expect(lines.count == 3 && lines[0].hasPrefix("checkpoint,sha256,blocks,images,correct,error"))
    #expect(lines[1].hasPrefix(a + ",") && lines[2].hasPrefix(z + ","))
}

@Test("CLI eval: --save-logits writes N×K float32 .npy in test order, agreeing with the scores")
func cliSaveLogits() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5", out = dir + "/logits.npy"
    try writeNet(a)
    let r = try eval("score", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--save-logits", out, "--json", "--batch", "5")
    #expect(r.status == 0, "\(r.stderr)")
    let res = (r.object["results"] as? [[String: Any]])?.first ?? [:]
    let npy = try #require(readNPY(out))
    #expect(npy.shape == [12, 10])
    // The fixture's test labels: (g*7 + 1) % 10 (scripts/make_dataset_fixtures.py).
    let labels = (0..<12).map { ($0 * 7 + 1) % 10 }
    var correct = 0, loss = 0.0
    for i in 0..<12 {
        let row = npy.values[(i * 10)..<((i + 1) * 10)].map(Double.init)
        let best = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }!
        if best == labels[i] { correct += 1 }
        let m = row.max()!
        loss += m + log(row.reduce(0) { $0 + exp($1 - m) }) - row[labels[i]]
    }
    #expect(res["correct"] as? Int == correct)
    #expect(abs((res["mean_loss"] as? Double ?? 0) - loss / 12) < 1e-9)
    // The same logits with another batch size (one batch of 12).
    let out2 = dir + "/logits12.npy"
    #expect(try eval("score", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--save-logits", out2, "--batch", "12").status == 0)
    let again = try #require(readNPY(out2))
    expectClose(again.values, npy.values, tolerance: 1e-5)
}

@Test("CLI eval: norms --json schema; h = 0 blocks report ‖F‖ > 0 and ‖G‖ = 0; γ is the mean ‖G‖")
func cliNorms() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let z = dir + "/zero.h5"
    try writeNet(z, hs: [[0.5, 0, 0.6], [0], [0.7, 0.3]])
    let r = try eval("norms", z, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json")
    #expect(r.status == 0, "\(r.stderr)")
    let doc = r.object
    #expect(Set(doc.keys) == ["checkpoint", "sha256", "dataset", "images", "blocks", "gamma", "error", "rows"])
    let rows = doc["rows"] as? [[String: Any]] ?? []
    #expect(rows.count == 6)
    for row in rows {
        #expect(Set(row.keys) == ["block", "stage", "index", "h", "t", "t_stage", "changes_shape", "y_norm", "g_norm", "f_norm"])
        #expect(row["changes_shape"] is Bool && row["block"] is String && row["stage"] is Int)
        let h = row["h"] as? Double ?? -1, g = row["g_norm"] as? Double ?? -1, f = row["f_norm"] as? Double ?? -1
        #expect(f > 0 && (row["y_norm"] as? Double ?? 0) > 0)
        #expect(abs(g - h * f) <= 1e-9 * max(1, f), "\(row)")
    }
    // t_j = Σ_{i<j} h_i, accumulated in floating point in block order.
    let hs: [Double] = [0.5, 0, 0.6, 0, 0.7, 0.3]
    var expectedT: [Double] = []
    var acc = 0.0
    for h in hs { expectedT.append(acc); acc += h }
    let ts: [Double] = rows.compactMap { $0["t"] as? Double }
    #expect(ts == expectedT)
    let gamma = doc["gamma"] as? Double ?? -1
    #expect(abs(gamma - rows.compactMap { $0["g_norm"] as? Double }.reduce(0, +) / 6) < 1e-12)
    let text = try eval("norms", z, "--dataset", "fashion-mnist", "--data-dir", fashion)
    #expect(text.status == 0 && text.stdout.contains("γ = mean ‖G‖"))
}

@Test("CLI eval: lesion rows equal scoring the files mlres-surgery writes (remove, shuffle)")
func cliLesionEqualsSurgeryFiles() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    try writeNet(a)
    let single = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single", "--json", "--batch", "5")
    #expect(single.status == 0, "\(single.stderr)")
    let doc = single.object
    #expect(Set(doc.keys) == ["checkpoint", "sha256", "dataset", "images", "mode", "blocks", "intact_error", "intact_loss", "rows"])
    let rows = doc["rows"] as? [[String: Any]] ?? []
    #expect(rows.count == 6)
    let intact = try scoreResult(a)
    #expect(doc["intact_error"] as? Double == intact["error"] as? Double)
    for row in rows {
        #expect(Set(row.keys) == ["mode", "label", "removed", "actions", "orders", "seed", "k", "blocks_after", "error",
                                  "mean_loss", "delta_error", "delta_loss", "note", "error_recalibrated",
                                  "mean_loss_recalibrated", "delta_error_recalibrated", "delta_loss_recalibrated"])
        #expect(row["error_recalibrated"] is NSNull, "no recalibration asked: null")
    }
    // Two removals (a deleted block and a shape-changing one set to h = 0) through the real tool.
    for block in ["0.1", "1.0"] {
        let out = dir + "/rm-\(block).h5"
        let s = try runTool("mlres-surgery", ["remove", a, "--block", block, "-o", out])
        #expect(s.status == 0, "\(s.stderr)")
        let scored = try scoreResult(out)
        let row = try #require(rows.first { $0["label"] as? String == "remove \(block)" })
        #expect(row["error"] as? Double == scored["error"] as? Double)
        #expect(row["mean_loss"] as? Double == scored["mean_loss"] as? Double)
        #expect(row["blocks_after"] as? String == scored["blocks"] as? String)
        #expect(row["actions"] as? [String] == [block == "1.0" ? "h=0" : "deleted"])
    }
    let shuffle = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "shuffle",
                           "--seeds", "2", "--json", "--batch", "5")
    #expect(shuffle.status == 0, "\(shuffle.stderr)")
    let srows = shuffle.object["rows"] as? [[String: Any]] ?? []
    #expect(srows.count == 2)
    let out = dir + "/sh.h5"
    #expect(try runTool("mlres-surgery", ["shuffle", a, "--stage", "0", "--seed", "1", "-o", out]).status == 0)
    let scored = try scoreResult(out)
    #expect(srows[1]["seed"] as? Int == 1)
    #expect(srows[1]["error"] as? Double == scored["error"] as? Double)
    #expect(srows[1]["mean_loss"] as? Double == scored["mean_loss"] as? Double)
    #expect((srows[1]["orders"] as? [String: [Int]])?.keys.sorted() == ["0"])

    let drop = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "drop-k",
                        "--seeds", "2", "--k", "1,2,9", "--json")
    #expect(drop.status == 0, "\(drop.stderr)")
    let drows = drop.object["rows"] as? [[String: Any]] ?? []
    #expect(drows.count == 6)
    #expect(drows.prefix(4).allSatisfy { ($0["removed"] as? [String])?.count == $0["k"] as? Int && $0["error"] is Double })
    #expect(drows.suffix(2).allSatisfy { $0["error"] is NSNull && $0["note"] is String })
}

@Test("CLI eval: lesion --recalibrate-bn rows equal scoring the files of mlres-surgery remove + mlres-train recalibrate")
func cliLesionRecalibrated() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    try writeNet(a)
    let recal = ["--batches", "2", "--batch-size", "8", "--seed", "4", "--threads", "1"]
    let r = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single", "--json",
                     "--batch", "5", "--threads", "1", "--recalibrate-bn", "2", "--recalibrate-batch-size", "8",
                     "--recalibrate-seed", "4")
    #expect(r.status == 0, "\(r.stderr)")
    let doc = r.object
    #expect(Set(doc.keys).isSuperset(of: ["recalibration", "intact_error_recalibrated", "intact_loss_recalibrated"]))
    let rows = doc["rows"] as? [[String: Any]] ?? []
    #expect(rows.count == 6)
    // The recalibrated intact network, through the tools.
    func recalibratedScore(_ input: String, _ name: String) throws -> [String: Any] {
        let out = dir + "/\(name).bn.h5"
        let t = try runTool("mlres-train", ["recalibrate", input, "--dataset", "fashion-mnist", "--data-dir", fashion, "-o", out] + recal)
        #expect(t.status == 0, "\(t.stderr)")
        let s = try runTool("mlres-eval", ["score", out, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json",
                                           "--batch", "5", "--threads", "1"])
        return (s.object["results"] as? [[String: Any]])?.first ?? [:]
    }
    let intactR = try recalibratedScore(a, "a")
    #expect(doc["intact_error_recalibrated"] as? Double == intactR["error"] as? Double)
    #expect(doc["intact_loss_recalibrated"] as? Double == intactR["mean_loss"] as? Double)
    for block in ["0.1", "1.0"] {
        let out = dir + "/rm-\(block).h5"
        #expect(try runTool("mlres-surgery", ["remove", a, "--block", block, "-o", out]).status == 0)
        let scored = try recalibratedScore(out, "rm-\(block)")
        let row = try #require(rows.first { $0["label"] as? String == "remove \(block)" })
        #expect(row["error_recalibrated"] as? Double == scored["error"] as? Double)
        #expect(row["mean_loss_recalibrated"] as? Double == scored["mean_loss"] as? Double)
        let d = (row["delta_error_recalibrated"] as? Double ?? -9) - ((scored["error"] as? Double ?? 0) - (intactR["error"] as? Double ?? 0))
        #expect(abs(d) < 1e-12)
    }
    // Text output: the recalibrated number beside the plain one.
    let text = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single",
                        "--recalibrate-bn", "1", "--recalibrate-batch-size", "8")
    #expect(text.status == 0 && text.stdout.contains("recalibrated") && text.stdout.contains("intact, BN recalibrated (1 batches of 8"),
            "\(text.stdout)\(text.stderr)")
    // Refusals: flags without --recalibrate-bn, a bad N (64); a batch larger than the training set (2).
    #expect(try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single",
                     "--recalibrate-seed", "3").status == 64)
    #expect(try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single",
                     "--recalibrate-bn", "0").status == 64)
    let big = try eval("lesion", a, "--dataset", "fashion-mnist", "--data-dir", fashion, "--mode", "single",
                       "--recalibrate-bn", "1", "--recalibrate-batch-size", "31")
    #expect(big.status == 2 && big.stderr.contains("larger than the 30 training images"), "\(big.stderr)")
}

@Test("CLI eval: bad inputs give error: messages and exit 2 or 64, no output file")
func cliEvalErrors() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let rgb = dir + "/rgb.h5"
    try CheckpointIO.write(Checkpoint(network: Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8]), seed: 1)), to: rgb)
    let mism = try eval("score", rgb, "--dataset", "fashion-mnist", "--data-dir", fashion, "--save-logits", dir + "/x.npy")
    #expect(mism.status == 2 && mism.stderr.hasPrefix("error: \(rgb): ") && mism.stderr.contains("[1,28,28]"))
    #expect(!FileManager.default.fileExists(atPath: dir + "/x.npy"))
    let missing = try eval("norms", dir + "/nope.h5", "--dataset", "fashion-mnist", "--data-dir", fashion)
    #expect(missing.status == 2 && missing.stderr.contains("nope.h5: no such file"))
    let junk = dir + "/junk.h5"
    try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: junk))
    let bad = try eval("score", junk, "--dataset", "fashion-mnist", "--data-dir", fashion)
    #expect(bad.status == 2 && bad.stderr.hasPrefix("error: \(junk)"))
    let noData = try eval("score", rgb, "--dataset", "cifar10", "--data-dir", dir)
    #expect(noData.status == 2 && noData.stderr.contains("test_batch.bin"))
    #expect(try eval("lesion", rgb, "--dataset", "fashion-mnist", "--mode", "nope").status == 64)
    #expect(try eval("lesion", rgb, "--dataset", "fashion-mnist", "--mode", "drop-k", "--k", "0").status == 64)
    #expect(try eval("score", rgb, rgb, "--dataset", "fashion-mnist", "--save-logits", dir + "/y.npy").status == 64)
    #expect(try eval("score", rgb, "--dataset", "mnist").status == 64)
}

/// True when `python3` can import matplotlib (scripts/requirements.txt).
private let hasMatplotlib: Bool = {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import matplotlib"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}()

private func isPNG(_ path: String) -> Bool {
    guard let d = FileManager.default.contents(atPath: path), d.count > 8 else { return false }
    return [UInt8](d.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
}

@Test("CLI eval: scripts/lesion-study.sh and plot.py turn the JSON outputs into PNGs; bad input exits 2",
      .enabled(if: hasMatplotlib, "python3 with matplotlib (scripts/requirements.txt)"))
func cliLesionStudyAndPlots() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5", z = dir + "/z.h5"
    try writeNet(a)
    try writeNet(z, hs: [[0.5, 0], [0], [0.7, 0.3]])
    let study = dir + "/study"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [packageRoot.appendingPathComponent("scripts/lesion-study.sh").path, a, "fashion-mnist", study,
                   "--data-dir", fashion]
    var env = ProcessInfo.processInfo.environment
    env["MLRES_EVAL"] = builtExecutable("mlres-eval").path
    env["SEEDS"] = "2"; env["KS"] = "1,2"
    p.environment = env
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    for f in ["lesion-single.json", "lesion-shuffle.json", "lesion-drop-k.json", "norms.json"] {
        #expect(FileManager.default.fileExists(atPath: study + "/" + f), "\(f)")
    }
    #expect(isPNG(study + "/lesion.png") && isPNG(study + "/norms.png"))

    let zn = dir + "/zn.json"
    let nr = try eval("norms", z, "--dataset", "fashion-mnist", "--data-dir", fashion, "--json")
    try Data(nr.stdout.utf8).write(to: URL(fileURLWithPath: zn))
    let metrics = dir + "/metrics.jsonl"
    let lines = (1...4).map { e in
        "{\"type\":\"epoch\",\"epoch\":\(e),\"lr\":0.1,\"train_loss\":\(1.0 / Double(e)),\"train_error\":0.5,\"test_loss\":1,"
            + "\"test_error\":0.6,\"blocks\":\(e < 3 ? 6 : 12),\"wall_seconds\":1}"
    }
    try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: metrics))
    let plot = packageRoot.appendingPathComponent("scripts/plot.py").path
    func py(_ args: [String]) throws -> Int32 {
        let q = Process()
        q.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        q.arguments = ["python3", plot] + args
        q.standardOutput = FileHandle.nullDevice
        q.standardError = FileHandle.nullDevice
        try q.run()
        q.waitUntilExit()
        return q.terminationStatus
    }
    #expect(try py(["gamma", study + "/norms.json", zn, "-o", dir + "/gamma.png"]) == 0)
    #expect(try py(["f-vs-t", study + "/norms.json", zn, "-o", dir + "/f.png"]) == 0)
    #expect(try py(["curves", metrics, "-o", dir + "/curves.png"]) == 0)
    #expect(isPNG(dir + "/gamma.png") && isPNG(dir + "/f.png") && isPNG(dir + "/curves.png"))
    // A lesion file given as norms, and a non-JSON file: exit 2, no PNG.
    #expect(try py(["norms", study + "/lesion-single.json", "-o", dir + "/bad.png"]) == 2)
    #expect(try py(["curves", a, "-o", dir + "/bad2.png"]) == 2)
    #expect(!FileManager.default.fileExists(atPath: dir + "/bad.png") && !FileManager.default.fileExists(atPath: dir + "/bad2.png"))
}

@Test("CLI eval: fashion-mnist defaults to the Debian package's folder (first 20 test images)",
      .enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
               "Debian package dataset-fashion-mnist"))
func cliScoreDefaultFashionMNIST() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    try writeNet(a)
    let r = try eval("score", a, "--dataset", "fashion-mnist", "--test-subset", "20", "--json")
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.object["data_dir"] as? String == "/usr/share/datasets/fashion-mnist")
    #expect(r.object["images"] as? Int == 20)
    let conf = (r.object["results"] as? [[String: Any]])?.first?["confusion"] as? [[Int]] ?? []
    #expect(conf.joined().reduce(0, +) == 20)
}
