import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

/// The repository root (Tests/MLResServerTests/ is two levels below it).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// A Fashion-MNIST-shaped checkpoint with class names, and the logits `mlres-eval score
/// --save-logits` computes for the 12 test images of fixtures/datasets/fashion-mnist: the
/// reference every served logit is compared with (written once per test process).
private struct ScoredCheckpoint: Sendable {
    var folder: String
    var checkpoint: String { folder + "/fm.h5" }
    var logits: String { folder + "/score-logits.npy" }
    static let images = repositoryRoot.appendingPathComponent("fixtures/datasets/fashion-mnist/t10k-images-idx3-ubyte").path

    static let shared: Result<ScoredCheckpoint, ClientError> = {
        let folder = temporaryFolder("triton-ref")
        var net = Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [1, 28, 28], numClasses: 10),
                                      seed: 21)
        net.inputMean = [0.29]; net.inputStd = [0.35]
        net.classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        let s = ScoredCheckpoint(folder: folder)
        do { try CheckpointIO.write(Checkpoint(network: net), to: s.checkpoint) } catch {
            return .failure(ClientError(description: "writing the checkpoint: \(error)"))
        }
        let p = Process()
        p.executableURL = builtExecutable("mlres-eval")
        p.arguments = ["score", s.checkpoint, "--dataset", "fashion-mnist", "--data-dir",
                       repositoryRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path,
                       "--save-logits", s.logits, "--threads", "1"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { return .failure(ClientError(description: "mlres-eval score: \(error)")) }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0, FileManager.default.fileExists(atPath: s.logits) else {
            return .failure(ClientError(description: "mlres-eval score --save-logits failed (\(p.terminationStatus)): \(text)"))
        }
        return .success(s)
    }()
}

/// Runs `python3 Tests/python/tritonclient_cases.py CASE ...`; returns (exit status, output).
private func runPythonCase(_ name: String, port: Int, deadline: Double, pid: Int32, reference: ScoredCheckpoint) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", repositoryRoot.appendingPathComponent("Tests/python/tritonclient_cases.py").path, name,
                   "--url", "127.0.0.1:\(port)", "--model", "fm", "--logits", reference.logits,
                   "--images", ScoredCheckpoint.images, "--deadline", String(deadline), "--pid", String(pid)]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, text)
}

/// Every behaviour of the Triton-facing protocol, checked with Triton's own Python client
/// (`tritonclient[http]`, installed by scripts/setup.sh) against a real `mlres-eval serve`
/// process: one server per case, so cases cannot disturb each other; one case at a time, so the
/// servers and Python clients do not starve the timing-sensitive tests running beside them.
@Suite("tritonclient against mlres-eval serve", .serialized)
struct TritonClientTests {
    static let deadline = 2.0

    static let cases = [
        "health", "metadata", "config",
        "json-in-json-out", "json-in-binary-out", "binary-in-json-out", "binary-in-binary-out",
        "default-outputs", "classification", "output-selection", "versions", "compression", "readiness",
        // Hostile requests: each answered with a clear 4xx, the server keeps serving.
        "truncated-binary", "header-length-too-large", "binary-size-mismatch", "gzip-bomb", "nested-mismatch",
        "stalled-upload", "sigterm-stalled",
    ]

    @Test("the case list matches the script's", .timeLimit(.minutes(2)))
    func caseListMatches() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot.appendingPathComponent("Tests/python/tritonclient_cases.py").path, "list"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "tritonclient is not importable (scripts/setup.sh installs it): \(text)")
        #expect(Set(text.split(separator: "\n").map(String.init)) == Set(Self.cases), "\(text)")
    }

    @Test("tritonclient case", .timeLimit(.minutes(3)), arguments: cases)
    func tritonCase(_ name: String) async throws {
        let reference = try await offPool { try ScoredCheckpoint.shared.get() }
        let dir = temporaryFolder("triton-\(name)")
        defer { cleanup(dir) }
        try FileManager.default.copyItem(atPath: reference.checkpoint, toPath: dir + "/fm.h5")
        try "not a checkpoint".write(toFile: dir + "/broken.h5", atomically: true, encoding: .utf8)
        let (server, port, _) = try await ProcessTests().launch([
            "--models", dir, "--port", "0", "--threads", "1", "--max-batch", "16", "--max-queue", "64",
            "--max-body-mb", "4", "--request-timeout-s", String(Self.deadline),
        ])
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let (status, output) = try await offPool {
            try runPythonCase(name, port: port, deadline: Self.deadline, pid: server.processIdentifier, reference: reference)
        }
        #expect(status == 0, "\(output)")
        if name == "sigterm-stalled" {
            // SIGTERM with a stalled upload: the process exits 0 within seconds.
            #expect(try await ProcessTests().waitExit(server, seconds: 5) == 0)
        } else {
            kill(server.processIdentifier, SIGTERM)
            #expect(try await ProcessTests().waitExit(server, seconds: 20) == 0)
        }
    }
}
