import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

/// The repository root, found from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// SHA-256 of a tensor's float32 little-endian bytes (what the Python side hashes).
func tensorSHA(_ t: Tensor) -> String {
    t.data.withUnsafeBytes { FileDigest.sha256(Data($0)) }
}

/// A Python interpreter with numpy + h5py: $MLRES_PYTHON, the peers venv, python3, or a venv
/// made on the spot with pip. `.unreachable` only when pip cannot reach its registry.
enum PythonH5py {
    case ready(String), unreachable(String), failed(String)

    static let state: PythonH5py = find()

    static var skipReason: String? { if case .unreachable(let m) = state { return m }; return nil }

    static func run(_ exe: String, _ args: [String], timeout: TimeInterval = 600) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe; p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func find() -> PythonH5py {
        var candidates = ["/root/peers-venv/bin/python", "/usr/bin/python3", "/usr/local/bin/python3"]
        if let env = ProcessInfo.processInfo.environment["MLRES_PYTHON"] { candidates.insert(env, at: 0) }
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) {
            if run(c, ["-c", "import h5py, numpy"]).0 == 0 { return .ready(c) }
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            return .failed("no python3 found to install h5py into")
        }
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-h5py-venv").path
        let py = venv + "/bin/python"
        if FileManager.default.isExecutableFile(atPath: py), run(py, ["-c", "import h5py, numpy"]).0 == 0 { return .ready(py) }
        let (vrc, vout) = run("/usr/bin/python3", ["-m", "venv", venv])
        if vrc != 0 { return .failed("python3 -m venv failed: \(vout.suffix(400))") }
        let (rc, out) = run(py, ["-m", "pip", "install", "--quiet", "h5py", "numpy"])
        if rc == 0 && run(py, ["-c", "import h5py, numpy"]).0 == 0 { return .ready(py) }
        let network = ["NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
                       "No matching distribution", "Could not find a version", "ConnectTimeout", "ProxyError",
                       "Failed to establish a new connection"]
        if network.contains(where: { out.contains($0) }) {
            return .unreachable("h5py interop skipped: pip cannot reach its registry to install h5py")
        }
        return .failed("pip install h5py failed: \(out.suffix(600))")
    }
}

@Suite struct H5pyInteropTests {
    struct Described: Decodable { var shape: [Int]; var sha256: String; var sum: Double }
    struct Fixture: Decodable {
        struct Arch: Decodable { var stage_blocks: [Int]; var stage_widths: [Int]; var input_shape: [Int]; var num_classes: Int; var parameters: Int }
        struct Opt: Decodable { var kind: String; var momentum: Double; var weight_decay: Double; var nesterov: Bool }
        struct Train: Decodable {
            var epoch: Int; var global_step: Int; var cycle: Int; var step_in_cycle: Int; var cycle_steps: Int
            var rng_state: [String]; var config: String; var history: [String: [Double]]
        }
        var architecture: Arch; var h: [[Double]]; var origins: [String]; var class_names: [String]
        var input_mean: [Float]; var input_std: [Float]
        var tensors: [String: Described]; var momentum: [String: Described]
        var optimizer: Opt; var training: Train; var lineage: [String]
    }

    func expectMatches(_ t: Tensor?, _ d: Described, _ path: String) {
        guard let t else { Issue.record("\(path) not read"); return }
        #expect(t.shape == d.shape, "\(path)")
        #expect(tensorSHA(t) == d.sha256, "\(path) bytes differ")
        let sum = t.data.reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - d.sum) <= 1e-9 * max(1, abs(d.sum)), "\(path) sum \(sum) vs \(d.sum)")
    }

    @Test("reads the checkpoint written by h5py (scripts/make_h5py_fixture.py) exactly")
    func readsH5pyFixture() throws {
        let dir = repoRoot + "/fixtures/h5py"
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/resnet-1-1.json")))
        let v = try CheckpointIO.verify(path: dir + "/resnet-1-1.h5")
        let c = v.checkpoint, net = c.network
        #expect(!v.metadataChecksummed)       // h5py's default layout: superblock v0
        #expect(net.stageBlocks == fx.architecture.stage_blocks)
        #expect(net.stageWidths == fx.architecture.stage_widths)
        #expect(net.inputShape == fx.architecture.input_shape)
        #expect(net.numClasses == fx.architecture.num_classes)
        #expect(net.parameterCount == fx.architecture.parameters)
        #expect(net.stepSizes == fx.h)
        #expect(net.stages.flatMap { $0.blocks.map(\.origin) } == fx.origins)
        #expect(net.classNames == fx.class_names)
        #expect(net.inputMean == fx.input_mean && net.inputStd == fx.input_std)
        #expect(net.namedTensors.count == fx.tensors.count)
        for nt in net.namedTensors {
            guard let d = fx.tensors[nt.path] else { Issue.record("\(nt.path) not documented"); continue }
            expectMatches(nt.tensor, d, nt.path)
        }
        let opt = try #require(c.optimizer)
        #expect(opt.kind == fx.optimizer.kind && opt.momentum == fx.optimizer.momentum)
        #expect(opt.weightDecay == fx.optimizer.weight_decay && opt.nesterov == fx.optimizer.nesterov)
        #expect(opt.buffers.count == fx.momentum.count)
        for (p, d) in fx.momentum { expectMatches(opt.buffers[p], d, "momentum " + p) }
        let tr = try #require(c.training)
        let counters: [Int] = [tr.epoch, tr.globalStep, tr.cycle, tr.stepInCycle, tr.cycleSteps]
        let documented: [Int] = [fx.training.epoch, fx.training.global_step, fx.training.cycle,
                                 fx.training.step_in_cycle, fx.training.cycle_steps]
        #expect(counters == documented)
        #expect(tr.rngState == fx.training.rng_state.compactMap { UInt64($0) })
        #expect(tr.config == fx.training.config)
        #expect(tr.history == fx.training.history)
        #expect(c.lineage.map(\.jsonText) == fx.lineage)   // sorted-key JSON on both sides
        #expect(c.lineage.map(\.op) == ["init", "train"])
    }

    static let readerScript = #"""
import hashlib, json, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
def s(x): return x.decode() if isinstance(x, bytes) else str(x)
out = {"root": {k: (int(v) if isinstance(v, np.integer) else s(v)) for k, v in f.attrs.items()}, "tensors": {}, "filters": {}}
def visit(name, obj):
    if isinstance(obj, h5py.Dataset) and obj.dtype == np.float32:
        a = np.ascontiguousarray(obj[...], dtype="<f4")
        out["tensors"][name] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                                "sum": float(a.astype(np.float64).sum())}
        out["filters"][name] = bool(obj.fletcher32) and obj.chunks is not None
f.visititems(visit)
m = f["model"]
out["model"] = {"stage_blocks": m.attrs["stage_blocks"].tolist(), "stage_widths": m.attrs["stage_widths"].tolist(),
                "input_shape": m.attrs["input_shape"].tolist(), "num_classes": int(m.attrs["num_classes"]),
                "class_names": [s(x) for x in m.attrs["class_names"]], "input_mean": m.attrs["input_mean"].tolist(),
                "architecture": s(m.attrs["architecture"]), "input_mean_dtype": str(m.attrs["input_mean"].dtype)}
out["h"] = [[float(m[f"stages/{i}/blocks/{j}"].attrs["h"]) for j in range(int(n))] for i, n in enumerate(m.attrs["stage_blocks"])]
out["h_dtype"] = str(m["stages/0/blocks/0"].attrs["h"].dtype)
out["lineage"] = [json.loads(s(x)) for x in f["lineage"][...]]
t = f["training"]
out["history_epoch"] = t["history/epoch"][...].tolist()
out["history_lr"] = t["history/lr"][...].tolist()
out["rng_state"] = [str(x) for x in t.attrs["rng_state"].tolist()]
out["nesterov"] = int(f["optimizer"].attrs["nesterov"])
print(json.dumps(out))
"""#

    @Test("h5py reads a checkpoint we wrote, bit for bit", .enabled(if: PythonH5py.skipReason == nil, Comment(rawValue: PythonH5py.skipReason ?? "")))
    func h5pyReadsOurs() throws {
        let python: String
        switch PythonH5py.state {
        case .ready(let p): python = p
        case .failed(let why): Issue.record(Comment(rawValue: why)); return
        case .unreachable: return
        }
        let dir = TempDir(); defer { dir.cleanup() }
        let ckpt = sampleCheckpoint()
        for compress in [false, true] {
            let path = dir.file("ours-\(compress).h5")
            try CheckpointIO.write(ckpt, to: path, options: .init(compress: compress))
            try Self.readerScript.write(toFile: dir.file("read.py"), atomically: true, encoding: .utf8)
            let (rc, out) = PythonH5py.run(python, [dir.file("read.py"), path])
            try #require(rc == 0, "python failed: \(out)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            let root = json["root"] as! [String: Any]
            #expect(root["format"] as? String == "mlres.checkpoint")
            #expect(root["format_version"] as? Int == 1)
            let tensors = json["tensors"] as! [String: [String: Any]]
            let filters = json["filters"] as! [String: Bool]
            var expected: [(String, Tensor)] = ckpt.network.namedTensors.map { ($0.path, $0.tensor) }
            for (p, t) in ckpt.optimizer!.buffers { expected.append(("optimizer/momentum/" + p, t)) }
            #expect(tensors.count == expected.count)
            for (p, t) in expected {
                let d = try #require(tensors[p], "\(p) not seen by h5py")
                #expect(d["shape"] as? [Int] == t.shape, "\(p)")
                #expect(d["sha256"] as? String == tensorSHA(t), "\(p) bytes differ in h5py")
                #expect(filters[p] == true, "\(p) lacks Fletcher32/chunking as seen by h5py")
            }
            let model = json["model"] as! [String: Any]
            #expect(model["stage_blocks"] as? [Int] == ckpt.network.stageBlocks)
            #expect(model["stage_widths"] as? [Int] == ckpt.network.stageWidths)
            #expect(model["input_shape"] as? [Int] == ckpt.network.inputShape)
            #expect(model["class_names"] as? [String] == ckpt.network.classNames)
            #expect(model["input_mean_dtype"] as? String == "float32")
            #expect(model["architecture"] as? String == "preact-resnet")
            #expect(json["h"] as? [[Double]] == ckpt.network.stepSizes)
            #expect(json["h_dtype"] as? String == "float64")
            let lineage = json["lineage"] as! [[String: Any]]
            #expect(lineage.map { $0["op"] as? String } == ["init", "interpolate"])
            #expect(json["history_epoch"] as? [Int] == [1, 2, 3])        // stored as int64
            #expect(json["history_lr"] as? [Double] == ckpt.training!.history["lr"])
            #expect(json["rng_state"] as? [String] == ckpt.training!.rngState.map { String($0) })
            #expect(json["nesterov"] as? Int == 1)
        }
    }
}
