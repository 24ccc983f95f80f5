import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

@Suite("mlres-eval serve as a process")
struct ProcessTests {
    /// Starts `mlres-eval serve`; returns the process, its bound port, and its stdout pipe.
    func launch(_ args: [String]) async throws -> (Process, Int, Pipe) {
        try await offPool { try Self.launchBlocking(args) }
    }

    /// Starts `mlres-eval serve ARGS` (with `environment` changes, a nil value removing a
    /// variable) and waits for its "listening on" line; stderr is discarded.
    static func launchBlocking(_ args: [String], environment: [String: String?] = [:]) throws -> (Process, Int, Pipe) {
        let out = Pipe()
        let p = try startTool("mlres-eval", ["serve"] + args, stdout: out, stderr: FileHandle.nullDevice,
                              environment: environment)
        // Read the "listening on http://127.0.0.1:PORT" line.
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let r = text.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                let port = Int(text[r].split(separator: ":").last!)!
                return (p, port, out)
            }
        }
        p.terminate()
        throw ClientError(description: "serve did not report its port; stdout: \(text)")
    }

    func waitExit(_ p: Process, seconds: Double) async throws -> Int32 {
        for _ in 0 ..< Int(seconds * 20) {
            if !p.isRunning { return p.terminationStatus }
            try await Task.sleep(for: .milliseconds(50))
        }
        p.interrupt(); kill(p.processIdentifier, SIGKILL)
        throw ClientError(description: "serve did not exit within \(seconds) s of SIGTERM")
    }

    @Test("SIGTERM: stop accepting, exit 0")
    func sigterm() async throws {
        let dir = temporaryFolder("sigterm")
        defer { cleanup(dir) }
        var requests: [Task<HTTPReply, any Error>] = []
        let haveModel = RepositoryTests.hdf5Available
        if haveModel {
            // A real checkpoint, so that requests can be in flight when the signal arrives.
            try CheckpointIO.write(Checkpoint(network: SeedLoader.network(seed: 3)), to: dir + "/m.h5")
        }
        // A long batching window keeps the requests queued inside the server when SIGTERM comes.
        let (p, port, _) = try await launch(["--models", dir, "--port", "0", "--threads", "1",
                                             "--max-queue-delay-ms", "5000"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        #expect(try await RawHTTP.request(port: port, "GET", "/v2/health/ready").status == 200)
        if haveModel {
            let body = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 1).map { "\($0)" })
            requests = (0..<4).map { _ in Task { try await RawHTTP.json(port: port, "POST", "/v2/models/m/infer", body) } }
            var queued = 0
            for _ in 0..<200 where queued < 4 {
                let stats = try await RawHTTP.request(port: port, "GET", "/v2/models/m/stats")
                queued = ((stats.object["model_stats"] as? [[String: Any]])?.first?["queue_depth"] as? Int) ?? 0
                if queued < 4 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(queued == 4, "requests did not reach the queue before SIGTERM")
        }
        kill(p.processIdentifier, SIGTERM)
        #expect(try await waitExit(p, seconds: 20) == 0)
        #expect(p.terminationReason == .exit)
        for t in requests { #expect(try await t.value.status == 200) }
        #expect(!RawHTTP.canConnect(port: port))
    }

    @Test("a port in use: exit non-zero with the reason")
    func portInUse() async throws {
        let dir = temporaryFolder("busy")
        defer { cleanup(dir) }
        let (p, port, _) = try await launch(["--models", dir, "--port", "0"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGTERM) } }
        let second = try await offPool { try runTool("mlres-eval", ["serve", "--models", dir, "--port", String(port)]) }
        let text = second.stderr
        #expect(second.status == 2)   // a refused operation (the one CLI contract)
        #expect(text.contains("cannot serve on 127.0.0.1:\(port)") && text.contains("in use"), "\(text)")
        kill(p.processIdentifier, SIGTERM)
        #expect(try await waitExit(p, seconds: 20) == 0)
    }

    @Test("bad flags exit non-zero naming the flag")
    func badFlags() async throws {
        for (args, flag) in [(["--models", "/nonexistent-mlres-dir"], "--models"),
                             (["--models", "/tmp", "--max-batch", "0"], "--max-batch"),
                             (["--models", "/tmp", "--max-queue", "2", "--max-batch", "4"], "--max-queue"),
                             (["--models", "/tmp", "--poll-seconds", "-1"], "--poll-seconds")] {
            let p = try await offPool { try runTool("mlres-eval", ["serve"] + args) }
            let text = p.stderr
            #expect(p.status != 0, "\(args)")
            #expect(text.contains(flag), "\(args): \(text)")
        }
    }
}
