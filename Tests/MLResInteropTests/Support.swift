import Foundation
import MLResHDF5
import MLResModel

// Helpers of the interop tests: running the built tools and the Python side (onnx, onnxruntime,
// safetensors, numpy — installed by scripts/setup.sh), checkpoints with non-trivial BN statistics,
// random test sets in the official file formats.

/// The package root (fixtures/ and scripts/ are below it).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// What a process printed and returned.
struct Run {
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

/// Runs `executable args…` to completion, output captured through files.
func run(_ executable: String, _ args: [String]) throws -> Run {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("mlres-interop-\(UUID().uuidString).out")
    let err = tmp.appendingPathComponent("mlres-interop-\(UUID().uuidString).err")
    FileManager.default.createFile(atPath: out.path, contents: nil)
    FileManager.default.createFile(atPath: err.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    try p.run()
    p.waitUntilExit()
    return Run(status: p.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
               stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// The folder of the built executables: $MLRES_BIN_DIR, else the nearest folder above the test
/// binary holding mlres-surgery, else .build/debug.
func binDirectory() -> String {
    if let dir = ProcessInfo.processInfo.environment["MLRES_BIN_DIR"] { return dir }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("mlres-surgery").path) { return dir.path }
        dir = dir.deletingLastPathComponent()
    }
    return packageRoot + "/.build/debug"
}

func surgery(_ args: String...) throws -> Run { try run(binDirectory() + "/mlres-surgery", args) }
func eval(_ args: String...) throws -> Run { try run(binDirectory() + "/mlres-eval", args) }

/// Runs scripts/<script> with python3 ($MLRES_PYTHON, else the python3 on PATH, which is where
/// scripts/setup.sh installs onnx, onnxruntime and safetensors).
func python(_ script: String, _ args: [String]) throws -> Run {
    if let py = ProcessInfo.processInfo.environment["MLRES_PYTHON"] {
        return try run(py, [packageRoot + "/scripts/" + script] + args)
    }
    return try run("/usr/bin/env", ["python3", packageRoot + "/scripts/" + script] + args)
}

/// A fresh temporary folder.
func scratchFolder() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-interop-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func listing(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

/// A network as training leaves one: seeded weights, BN weights/biases and running statistics
/// away from their fresh values, the given step sizes, a non-trivial input standardisation.
func trainedLikeNetwork(_ arch: Architecture, h: [[Double]], seed: UInt64) -> Network {
    var net = Network.initialized(arch, seed: seed)
    var rng = SplitMix64(seed: seed &+ 7)
    func perturb(_ bn: inout BatchNorm) {
        for i in 0..<bn.channels {
            bn.weight.data[i] = Float(rng.nextUniform(0.5, 1.5))
            bn.bias.data[i] = Float(rng.nextNormal() * 0.2)
            bn.runningMean.data[i] = Float(rng.nextNormal() * 0.3)
            bn.runningVar.data[i] = Float(rng.nextUniform(0.3, 2.0))
        }
    }
    for s in net.stages.indices {
        for b in net.stages[s].blocks.indices {
            perturb(&net.stages[s].blocks[b].bn1)
            perturb(&net.stages[s].blocks[b].bn2)
            net.stages[s].blocks[b].h = h[s][b]
        }
    }
    perturb(&net.headBN)
    let c = arch.inputShape[0]
    net.inputMean = (0..<c).map { _ in Float(rng.nextUniform(0.2, 0.6)) }
    net.inputStd = (0..<c).map { _ in Float(rng.nextUniform(0.2, 0.4)) }
    return net
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
