import Foundation
import MLResModel
@testable import MLResServer
import Testing

@Suite("Bad input over HTTP: a JSON error naming the problem, and the server keeps serving")
struct BadInputTests {
    @Test func badRequests() async throws {
        let dir = temporaryFolder("bad")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 1)
        // A file outside the models folder that a request must never reach.
        let outside = temporaryFolder("outside")
        defer { cleanup(outside) }
        try writeSeedModel(outside, "secret", seed: 2)
        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) { $0.maxBodyBytes = 64 * 1024 }
        let good = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 3).map { "\($0)" })

        func check(_ r: HTTPReply, _ status: Int, _ message: String, field: String? = nil,
                   sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == status, "\(r.text)", sourceLocation: sourceLocation)
            #expect(r.headers["content-type"] == "application/json", sourceLocation: sourceLocation)
            #expect(r.error?.contains(message) == true, "\(r.text)", sourceLocation: sourceLocation)
            if let field { #expect(r.field == field, "\(r.text)", sourceLocation: sourceLocation) }
        }

        check(try await s.post("/v2/models/tiny/infer", #"{"inputs": [}"#), 400, "malformed JSON at byte")
        check(try await s.post("/v2/models/tiny/infer", inferBody(shape: [1, 3, 5, 6], data: [])), 400,
              "does not match the model's input [N,3,6,6]", field: "inputs[0].shape")
        check(try await s.post("/v2/models/tiny/infer", inferBody(shape: [1, 3, 6, 6], datatype: "INT32", data: ["1"])),
              400, "unsupported datatype 'INT32'", field: "inputs[0].datatype")
        check(try await s.post("/v2/models/tiny/infer", inferBody(shape: [1, 3, 6, 6], data: ["0.5", "0.25"])),
              400, "has 2 values, shape [1,3,6,6] needs 108", field: "inputs[0].data")
        var withNaN = testPixels(count: 1, seed: 3).map { "\($0)" }
        withNaN[40] = "NaN"
        check(try await s.post("/v2/models/tiny/infer", inferBody(shape: [1, 3, 6, 6], data: withNaN)),
              400, "NaN at index 40", field: "inputs[0].data")
        check(try await s.post("/v2/models/nosuch/infer", good), 404, "model 'nosuch' is not loaded")
        check(try await s.get("/v2/models/nosuch"), 404, "not loaded")

        // Body limit: declared too large (refused before reading), and streamed without a length.
        let big = [UInt8](repeating: UInt8(ascii: " "), count: 200 * 1024)
        check(try await RawHTTP.request(port: s.port, "POST", "/v2/models/tiny/infer", body: Array(big.prefix(1000)),
                                        declaredLength: big.count), 413, "larger than the limit of 65536 bytes")
        check(try await RawHTTP.request(port: s.port, "POST", "/v2/models/tiny/infer", body: big, chunked: true),
              413, "larger than the limit")

        // Names that try to leave the folder or hold separators.
        for path in ["/v2/models/a/b/infer", "/v2/models/a%2Fb/infer", "/v2/models/../infer",
                     "/v2/models/%2E%2E/ready", "/v2/repository/models/../\(outside.split(separator: "/").last!)/secret/load",
                     "/v2/repository/models/..%2Fsecret/load", "/v2/models/.tmp-x"] {
            let method = path.hasSuffix("load") || path.hasSuffix("infer") ? "POST" : "GET"
            let r = try await RawHTTP.request(port: s.port, method, path, body: Array(good.utf8))
            check(r, 400, "bad model name", field: "name")
        }
        #expect(seeds.readPaths.allSatisfy { $0.hasPrefix(s.server.repository.directory + "/") })
        #expect(!seeds.readPaths.contains { $0.contains("secret") })

        // Wrong method, unknown path.
        let wrong = try await s.get("/v2/models/tiny/infer")
        check(wrong, 405, "GET is not allowed")
        #expect(wrong.headers["allow"] == "POST")
        check(try await s.get("/v3/whatever"), 404, "no endpoint")

        // Still serving, and every failure was counted by status.
        let ok = try await s.post("/v2/models/tiny/infer", good)
        #expect(ok.status == 200)
        #expect(try await s.get("/v2/health/live").status == 200)
        #expect(try await s.metric("mlres_http_requests_total", ["status": "400"]) >= 11)
        #expect(try await s.metric("mlres_http_requests_total", ["status": "413"]) == 2)
        try await s.stop()
    }
}
