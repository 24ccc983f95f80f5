import Foundation
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A reply read off the wire.
struct HTTPReply {
    var status: Int
    var headers: [String: String]   // lower-cased names
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    /// The body as a JSON object (Foundation's parser, independent of the server's).
    var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])) as? [String: Any] ?? [:]
    }
    var error: String? { object["error"] as? String }
    var field: String? { object["field"] as? String }
}

struct ClientError: Error, CustomStringConvertible { var description: String }

/// A tiny blocking HTTP/1.1 client over a POSIX socket (one request per connection), run on a
/// thread of its own so it never blocks the pools the server shares (see ``offPool``).
/// Raw on purpose: it can send paths with `..`, broken JSON and lying Content-Length headers.
enum RawHTTP {
    static func request(port: Int, _ method: String, _ path: String, body: [UInt8]? = nil,
                        headers: [String: String] = [:], declaredLength: Int? = nil,
                        chunked: Bool = false, timeout: Double = 30) async throws -> HTTPReply {
        try await offPool {
            try send(port: port, method, path, body: body, headers: headers,
                     declaredLength: declaredLength, chunked: chunked, timeout: timeout)
        }
    }

    static func json(port: Int, _ method: String, _ path: String, _ text: String) async throws -> HTTPReply {
        try await request(port: port, method, path, body: Array(text.utf8),
                          headers: ["Content-Type": "application/json"])
    }

    /// True when a TCP connection to the port is accepted.
    static func canConnect(port: Int) -> Bool {
        guard let fd = try? connect(port: port, timeout: 2) else { return false }
        close(fd)
        return true
    }

    private static func connect(port: Int, timeout: Double) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket() failed") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 { close(fd); throw ClientError(description: "connect to port \(port) failed (errno \(errno))") }
        return fd
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    private static func send(port: Int, _ method: String, _ path: String, body: [UInt8]?,
                             headers: [String: String], declaredLength: Int?, chunked: Bool,
                             timeout: Double) throws -> HTTPReply {
        let fd = try connect(port: port, timeout: timeout)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if chunked { head += "Transfer-Encoding: chunked\r\n" }
        else if let n = declaredLength ?? body?.count { head += "Content-Length: \(n)\r\n" }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body {
            if chunked {
                var i = 0
                while i < body.count {
                    let n = min(65536, body.count - i)
                    out += Array((String(n, radix: 16) + "\r\n").utf8) + body[i ..< i + n] + Array("\r\n".utf8)
                    i += n
                }
                out += Array("0\r\n\r\n".utf8)
            } else {
                out += body
            }
        }
        _ = writeAll(fd, out)   // the server may answer (413) and close before reading it all
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { data += buf[0 ..< n]; continue }
            if n == 0 || data.count > 0 { break }
            throw ClientError(description: "no reply from port \(port) (errno \(errno))")
        }
        return try parse(data)
    }

    static func parse(_ data: [UInt8]) throws -> HTTPReply {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = (0 ..< max(0, data.count - 3)).first(where: { Array(data[$0 ..< $0 + 4]) == sep }) else {
            throw ClientError(description: "incomplete HTTP reply: \(String(decoding: data, as: UTF8.self))")
        }
        let lines = String(decoding: data[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw ClientError(description: "bad status line \(lines[0])")
        }
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            guard let c = l.firstIndex(of: ":") else { continue }
            headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(data[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoded = [UInt8](), i = 0
            while i < body.count {
                guard let le = (i ..< body.count - 1).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                      let n = Int(String(decoding: body[i ..< le], as: UTF8.self), radix: 16) else { break }
                if n == 0 { break }
                decoded += body[(le + 2) ..< min(body.count, le + 2 + n)]
                i = le + 2 + n + 2
            }
            body = decoded
        } else if let cl = headers["content-length"].flatMap({ Int($0) }), cl < body.count {
            body = Array(body[..<cl])
        }
        return HTTPReply(status: status, headers: headers, body: body)
    }
}

/// A server running in this process on an ephemeral loopback port.
final class TestServer: @unchecked Sendable {
    let server: InferenceServer
    let port: Int
    let task: Task<Void, any Error>
    let directory: String

    static func start(directory: String, loader: @escaping ModelLoader,
                      configure: (inout ServerConfiguration) -> Void = { _ in },
                      evaluator: Evaluator? = nil, dataDirectory: String? = nil) async throws -> TestServer {
        var config = ServerConfiguration(modelsDirectory: directory, host: "127.0.0.1", port: 0,
                                         batching: .init(maxBatch: 8, maxQueueDelay: .milliseconds(2), maxQueue: 64),
                                         maxBodyBytes: 1 << 20, threads: 1, dataDirectory: dataDirectory)
        configure(&config)
        let server = try InferenceServer(configuration: config, loader: loader, evaluator: evaluator)
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let task = Task {
            defer { cont.finish() }
            try await server.run { port in cont.yield(port) }
        }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else {
            try await task.value
            throw ClientError(description: "server stopped before listening")
        }
        return TestServer(server: server, port: port, task: task, directory: directory)
    }

    private init(server: InferenceServer, port: Int, task: Task<Void, any Error>, directory: String) {
        self.server = server; self.port = port; self.task = task; self.directory = directory
    }

    func get(_ path: String) async throws -> HTTPReply { try await RawHTTP.request(port: port, "GET", path) }
    func post(_ path: String, _ json: String) async throws -> HTTPReply {
        try await RawHTTP.json(port: port, "POST", path, json)
    }

    /// Graceful shutdown, and waits for `run` to return.
    func stop() async throws {
        await server.shutdown()
        try await task.value
    }

    /// The value of one sample line of /metrics (sum over label sets matching all `labels`).
    func metric(_ name: String, _ labels: [String: String] = [:]) async throws -> Double {
        let text = try await get("/metrics").text
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            let head = line.split(separator: " ")[0]
            if labels.allSatisfy({ head.contains("\($0.key)=\"\($0.value)\"") }) {
                total += Double(line.split(separator: " ").last!) ?? .nan
            }
        }
        return total
    }
}

/// Runs blocking work (socket and process I/O) on a thread of its own: Swift's cooperative pool
/// and Dispatch's global pool both have one thread per core (2 here), and the in-process
/// servers of the other tests need them.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread.detachNewThread { cont.resume(with: Result { try body() }) }
    }
}

/// A fresh temporary folder, removed by `cleanup`.
func temporaryFolder(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "mlres-server-\(tag)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func cleanup(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// The tiny architecture of most server tests.
let tinyArchitecture = Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [3, 6, 6], numClasses: 5)

/// Test models are text files "seed=N" (quick to write and to corrupt): this loader builds
/// `Network.initialized(tinyArchitecture, seed: N)` served by the production engine backend
/// (``EngineBackend``; tests compare its answers with the float64 reference, ``expectedLogits``),
/// records every path it reads, and throws on anything else, as a reader does on a corrupt file.
final class SeedLoader: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: [String] = []
    var delay: Double = 0
    var readPaths: [String] { lock.withLock { paths } }

    static func network(seed: UInt64) -> Network {
        var net = Network.initialized(tinyArchitecture, seed: seed)
        net.inputMean = [0.5, 0.4, 0.3]
        net.inputStd = [0.25, 0.2, 0.3]
        return net
    }

    var loader: ModelLoader {
        { [self] path, options in
            lock.withLock { paths.append(path) }
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            let words = text.split(whereSeparator: \.isWhitespace)
            guard let first = words.first, first.hasPrefix("seed="), let seed = UInt64(first.dropFirst(5)) else {
                throw ClientError(description: "\(path): not a checkpoint (test format 'seed=N [side=S]')")
            }
            var net = SeedLoader.network(seed: seed)
            if words.count > 1, words[1].hasPrefix("side="), let side = Int(words[1].dropFirst(5)) {
                var arch = tinyArchitecture
                arch.inputShape = [3, side, side]
                let mean = net.inputMean, std = net.inputStd
                net = Network.initialized(arch, seed: seed)
                net.inputMean = mean; net.inputStd = std
            }
            var backend: any InferenceBackend = try EngineBackend(network: net, threads: options.threads,
                                                                  maxBatch: options.maxBatch)
            if delay > 0 { backend = SlowBackend(inner: backend, delay: delay) }
            return LoadedModel(network: net, backend: backend, backendName: "onednn")
        }
    }
}

/// Writes a "seed=N" test model atomically (temp file in the folder, then rename).
func writeSeedModel(_ directory: String, _ name: String, seed: UInt64, side: Int? = nil) throws {
    let tmp = directory + "/\(name).h5.tmp-\(UUID().uuidString.prefix(6))"
    try ("seed=\(seed)" + (side.map { " side=\($0)" } ?? "") + "\n").write(toFile: tmp, atomically: false, encoding: .utf8)
    guard rename(tmp, directory + "/\(name).h5") == 0 else { throw ClientError(description: "rename failed") }
}

/// A backend that sleeps before each call (to make batching and queueing observable).
struct SlowBackend: InferenceBackend {
    let inner: any InferenceBackend
    let delay: Double
    var inputShape: [Int] { inner.inputShape }
    var numClasses: Int { inner.numClasses }
    func infer(_ input: [Float], count: Int) throws -> [Float] {
        Thread.sleep(forTimeInterval: delay)
        return try inner.infer(input, count: count)
    }
}

/// `{"inputs":[{"name":"input","shape":[...],"datatype":...,"data":[...]}]}`.
func inferBody(shape: [Int], datatype: String = "FP32", data: [String], id: String? = nil) -> String {
    let idPart = id.map { "\"id\":\"\($0)\"," } ?? ""
    return "{\(idPart)\"inputs\":[{\"name\":\"input\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],"
        + "\"datatype\":\"\(datatype)\",\"data\":[\(data.joined(separator: ","))]}]}"
}

/// Deterministic pixels in [0, 1] for `count` tiny images.
func testPixels(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0 ..< count * 3 * 6 * 6).map { _ in Float(rng.nextUnit()) }
}

/// Logits of `count` images of pixels in [0, 1] on `net`, standardised as the server does, from
/// the shared float64 reference (``Ref/logits(_:pixels:count:)``).
func expectedLogits(_ net: Network, pixels: [Float], count: Int) throws -> [Float] {
    Ref.logits(net, pixels: pixels, count: count).map(Float.init)
}

/// Floats from a JSON array of numbers.
func floats(_ any: Any?) -> [Float] { (any as? [Any])?.compactMap { ($0 as? NSNumber)?.floatValue } ?? [] }

/// The "logits" and "class" outputs of an infer reply.
func outputs(_ reply: HTTPReply) -> (logits: [Float], classes: [Int], logitsShape: [Int]) {
    let outs = reply.object["outputs"] as? [[String: Any]] ?? []
    let l = outs.first { $0["name"] as? String == "logits" }
    let c = outs.first { $0["name"] as? String == "class" }
    return (floats(l?["data"]), (c?["data"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [],
            (l?["shape"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [])
}

/// Sends `count` single-image (3x6x6) inference requests to `model` at once; image i is
/// `testPixels(count: 1, seed: seedBase + i)`. Returns the replies by request index.
func concurrentSingleImageInfers(_ s: TestServer, model: String, count: Int,
                                 seedBase: UInt64) async throws -> [Int: HTTPReply] {
    try await withThrowingTaskGroup(of: (Int, HTTPReply).self) { group in
        for i in 0..<count {
            group.addTask {
                let px = testPixels(count: 1, seed: seedBase + UInt64(i))
                return (i, try await s.post("/v2/models/\(model)/infer",
                                            inferBody(shape: [1, 3, 6, 6], data: px.map { "\($0)" })))
            }
        }
        var out: [Int: HTTPReply] = [:]
        for try await (i, r) in group { out[i] = r }
        return out
    }
}
