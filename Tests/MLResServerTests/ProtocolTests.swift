import Foundation
import MLResModel
@testable import MLResServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A backend whose logits are `value` for image 0, class 1 and 0 elsewhere (an overflow stand-in).
private struct NonFiniteBackend: InferenceBackend {
    let inputShape = [3, 6, 6]
    let numClasses = 5
    let value: Float
    func infer(_ input: [Float], count: Int) throws -> [Float] {
        var z = [Float](repeating: 0, count: count * numClasses)
        z[1] = value
        return z
    }
}

/// Opens a connection, sends `bytes`, and returns what arrives until the server closes it and
/// how long that took (nil: still open after `wait` seconds).
private func sendAndWaitForClose(port: Int, _ bytes: [UInt8], wait: Double) throws -> (reply: String, seconds: Double?) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(wait), tv_usec: Int((wait - Double(Int(wait))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw ClientError(description: "connect failed") }
    let start = Date()
    if !bytes.isEmpty { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { data += buf[0 ..< n]; continue }
        let text = String(decoding: data, as: UTF8.self)
        return (text, n == 0 ? Date().timeIntervalSince(start) : nil)
    }
}

@Suite("Inference protocol details over HTTP (in-process server)")
struct ProtocolTests {
    @Test("a non-finite logit is a 500 naming image and class, never a null in an FP32 tensor", arguments: [Float.nan, .infinity, -.infinity])
    func nonFiniteLogits(_ value: Float) async throws {
        let dir = temporaryFolder("nonfinite")
        defer { cleanup(dir) }
        try "x".write(toFile: dir + "/m.h5", atomically: true, encoding: .utf8)
        let net = SeedLoader.network(seed: 1)
        let s = try await TestServer.start(directory: dir, loader: { _, _ in
            LoadedModel(network: net, backend: NonFiniteBackend(value: value), backendName: "test")
        })
        let body = inferBody(shape: [2, 3, 6, 6], data: testPixels(count: 2, seed: 1).map { "\($0)" })
        for outputs in ["", #","outputs":[{"name":"logits","parameters":{"binary_data":true}}]"#,
                        #","outputs":[{"name":"class"}]"#] {
            let r = try await s.post("/v2/models/m/infer", String(body.dropLast()) + outputs + "}")
            #expect(r.status == 500, "\(r.text)")
            #expect(r.error?.contains("non-finite logit") == true && r.error?.contains("image 0, class 1") == true, "\(r.text)")
            #expect(!r.text.contains("null"))
        }
        try await s.stop()
    }

    @Test("deadlines: a stalled body is 408 within the deadline, a partial head too, an idle keep-alive is closed")
    func deadlines() async throws {
        let dir = temporaryFolder("deadline")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 1)
        let s = try await TestServer.start(directory: dir, loader: SeedLoader().loader) {
            $0.requestTimeout = .milliseconds(800)
            $0.idleTimeout = .milliseconds(1500)
        }
        let port = s.port
        let stalled = try await offPool {
            try sendAndWaitForClose(port: port, Array("POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"in".utf8), wait: 10)
        }
        #expect(stalled.reply.hasPrefix("HTTP/1.1 408"), "\(stalled.reply)")
        #expect(stalled.reply.contains("did not arrive within 0.8 s"), "\(stalled.reply)")
        #expect((stalled.seconds ?? 99) >= 0.7 && (stalled.seconds ?? 99) < 4, "\(String(describing: stalled.seconds))")
        let head = try await offPool { try sendAndWaitForClose(port: port, Array("GET /v2/health/li".utf8), wait: 10) }
        #expect(head.reply.hasPrefix("HTTP/1.1 408") && head.reply.contains("request head"), "\(head.reply)")
        // A trickling body (a byte at a time, each within the deadline) is still cut at the deadline.
        let trickle = try await offPool { () throws -> (String, Double?) in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let start = Date()
            let head = Array("POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".utf8)
            _ = head.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var reply = [UInt8]()
            var flags = fcntl(fd, F_GETFL); flags |= O_NONBLOCK; _ = fcntl(fd, F_SETFL, flags)
            var buf = [UInt8](repeating: 0, count: 4096)
            while Date().timeIntervalSince(start) < 8 {
                _ = [UInt8(ascii: " ")].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { reply += buf[0 ..< n] }
                if n == 0 { return (String(decoding: reply, as: UTF8.self), Date().timeIntervalSince(start)) }
                Thread.sleep(forTimeInterval: 0.1)
            }
            return (String(decoding: reply, as: UTF8.self), nil)
        }
        #expect(trickle.0.hasPrefix("HTTP/1.1 408"), "\(trickle.0)")
        #expect((trickle.1 ?? 99) < 4, "a trickling body held the connection \(String(describing: trickle.1)) s")
        let idle = try await offPool { try sendAndWaitForClose(port: port, [], wait: 10) }
        #expect(idle.reply.isEmpty, "\(idle.reply)")
        #expect((idle.seconds ?? 99) >= 1.3 && (idle.seconds ?? 99) < 5, "idle connection closed after \(String(describing: idle.seconds)) s")
        // The server still serves, and counted the timeouts.
        #expect(try await s.get("/v2/health/live").status == 200)
        #expect(try await s.metric("mlres_http_requests_total", ["status": "408"]) >= 2)
        try await s.stop()
    }

    @Test("a model reloaded while a versioned request waited: 404 naming both versions")
    func versionChangedWhileQueued() async throws {
        let dir = temporaryFolder("vchange")
        defer { cleanup(dir) }
        try "x".write(toFile: dir + "/m.h5", atomically: true, encoding: .utf8)
        let gate = Gate()
        let s = try await TestServer.start(directory: dir, loader: { _, _ in
            LoadedModel(network: SeedLoader.network(seed: 1), backend: GatedBackend(gate: gate), backendName: "test")
        })
        let body = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 2).map { "\($0)" })
        // The first request holds the batcher (inside the backend, version 1); the second waits
        // in the queue while a reload installs version 2.
        async let first = s.post("/v2/models/m/versions/1/infer", body)
        #expect(try await offPool { gate.entered.wait(timeout: .now() + 60) == .success })
        async let second = s.post("/v2/models/m/versions/1/infer", body)
        var depth = 0
        for _ in 0..<600 where depth != 1 {
            let st = try await s.get("/v2/models/m/stats")
            depth = ((st.object["model_stats"] as? [[String: Any]])?.first?["queue_depth"] as? Int) ?? 0
            if depth != 1 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(depth == 1)
        #expect(try await s.post("/v2/repository/models/m/load", "").status == 200)
        gate.release.signal()
        let (a, b) = try await (first, second)
        #expect(a.status == 200 && a.object["model_version"] as? String == "1", "\(a.text)")
        #expect(b.status == 404 && b.error?.contains("version '1' was replaced by version '2'") == true, "\(b.text)")
        #expect(try await s.post("/v2/models/m/versions/2/infer", body).status == 200)
        try await s.stop()
    }
}

/// Lets a test hold the first backend call until it says so.
private final class Gate: @unchecked Sendable {
    let entered = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var used = false
    /// True exactly once: for the call that must wait.
    func first() -> Bool { lock.withLock { defer { used = true }; return !used } }
}

/// Zero logits; the first call waits for the gate.
private struct GatedBackend: InferenceBackend {
    let gate: Gate
    let inputShape = [3, 6, 6]
    let numClasses = 5
    func infer(_ input: [Float], count: Int) throws -> [Float] {
        if gate.first() {
            gate.entered.signal()
            gate.release.wait()
        }
        return [Float](repeating: 0, count: count * numClasses)
    }
}
