import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport

// Helpers of the interop tests on top of MLResTestSupport: the Python side (onnx, onnxruntime,
// safetensors, numpy — installed by scripts/setup.sh) and random test sets in the official formats.

/// The package root as a path.
let root = packageRoot.path

/// What a Python check script printed and returned.
struct ScriptRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The last line of stdout parsed as a JSON object (the check scripts print one).
    var json: [String: Any] {
        let last = stdout.split(separator: "\n").last.map(String.init) ?? ""
        return ((try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any]) ?? [:]
    }
    func number(_ key: String) -> Double { (json[key] as? NSNumber)?.doubleValue ?? .nan }
}

func surgery(_ args: String...) throws -> ToolRun { try runTool("mlres-surgery", args) }
func eval(_ args: String...) throws -> ToolRun { try runTool("mlres-eval", args) }

/// Runs scripts/<script> with python3 ($MLRES_PYTHON, else the python3 on PATH, where
/// scripts/setup.sh installs onnx, onnxruntime and safetensors), output through files.
func python(_ script: String, _ args: [String]) throws -> ScriptRun {
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("mlres-py-\(UUID().uuidString).out")
    let err = tmp.appendingPathComponent("mlres-py-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
    let p = Process()
    let script = root + "/scripts/" + script
    if let py = ProcessInfo.processInfo.environment["MLRES_PYTHON"] {
        p.executableURL = URL(fileURLWithPath: py); p.arguments = [script] + args
    } else {
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env"); p.arguments = ["python3", script] + args
    }
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    try p.run()
    p.waitUntilExit()
    return ScriptRun(status: p.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

func listing(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

/// A network as training leaves one (MLResTestSupport's builder: He weights, non-trivial BN),
/// with the given step sizes and a non-trivial input standardisation.
func trainedLikeNetwork(_ arch: Architecture, h: [[Double]], seed: UInt64) -> Network {
    var rng = SplitMix64(seed: seed &+ 7)
    let c = arch.inputShape[0]
    return networkWithBNStatistics(arch, seed: seed, hs: h,
                                   inputMean: (0..<c).map { _ in Float(rng.nextUniform(0.2, 0.6)) },
                                   inputStd: (0..<c).map { _ in Float(rng.nextUniform(0.2, 0.4)) })
}

/// Writes `n` random test images with labels in the official format of `dataset`
/// ("cifar10": test_batch.bin, 3×32×32; "fashion-mnist": t10k-*-idx*-ubyte, 1×28×28).
func writeRandomTestSet(_ dataset: String, n: Int, seed: UInt64, to dir: String) throws {
    var rng = SplitMix64(seed: seed)
    if dataset == "cifar10" {
        var bytes = [UInt8]()
        for _ in 0..<n {
            bytes.append(UInt8(rng.nextInt(below: 10)))
            for _ in 0..<3072 { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/test_batch.bin"))
    } else {
        func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        var images = [0, 0, 8, 3] + be(n) + be(28) + be(28)
        for _ in 0..<(n * 784) { images.append(UInt8(truncatingIfNeeded: rng.next())) }
        var labels = [0, 0, 8, 1] + be(n)
        for _ in 0..<n { labels.append(UInt8(rng.nextInt(below: 10))) }
        try Data(images).write(to: URL(fileURLWithPath: dir + "/t10k-images-idx3-ubyte"))
        try Data(labels).write(to: URL(fileURLWithPath: dir + "/t10k-labels-idx1-ubyte"))
    }
}

/// Debian's dataset-fashion-mnist (installed by scripts/setup.sh): the real images.
let realFashionMNIST = "/usr/share/datasets/fashion-mnist"
