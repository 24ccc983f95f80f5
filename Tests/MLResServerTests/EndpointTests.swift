import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

@Suite("Endpoints of a running server")
struct EndpointTests {
    @Test("health, server metadata, model metadata, ready, infer (FP32 and UINT8), stats, index, metrics")
    func everyEndpoint() async throws {
        let dir = temporaryFolder("endpoints")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 7)
        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader)

        let live = try await s.get("/v2/health/live")
        #expect(live.status == 200 && live.object["live"] as? Bool == true)
        let ready = try await s.get("/v2/health/ready")
        #expect(ready.status == 200 && ready.object["ready"] as? Bool == true)
        let server = try await s.get("/v2")
        #expect(server.object["name"] as? String == "mlres")

        // Metadata: input shape, classes, blocks, h, sha256 of the file.
        let meta = try await s.get("/v2/models/tiny")
        #expect(meta.status == 200)
        #expect(meta.headers["content-type"] == "application/json")
        let o = meta.object
        #expect((o["input_shape"] as? [Int]) == [3, 6, 6])
        #expect(o["classes"] as? Int == 5)
        #expect((o["blocks"] as? [Int]) == [1, 1])
        #expect((o["h"] as? [[Double]]) == [[1.0], [1.0]])
        let fileSHA = try FileDigest.sha256(fileAt: dir + "/tiny.h5")
        #expect(o["sha256"] as? String == fileSHA)
        let inputs = o["inputs"] as? [[String: Any]]
        #expect(inputs?.first?["name"] as? String == "input")
        #expect((inputs?.first?["shape"] as? [Int]) == [-1, 3, 6, 6])

        let mready = try await s.get("/v2/models/tiny/ready")
        #expect(mready.status == 200 && mready.object["ready"] as? Bool == true)

        // FP32 inference of 3 images: logits equal a direct forward pass, classes are the argmax.
        let net = SeedLoader.network(seed: 7)
        let pixels = testPixels(count: 3, seed: 1)
        let reply = try await s.post("/v2/models/tiny/infer",
                                     inferBody(shape: [3, 3, 6, 6], data: pixels.map { "\($0)" }, id: "abc"))
        #expect(reply.status == 200, "\(reply.text)")
        #expect(reply.object["model_name"] as? String == "tiny")
        #expect(reply.object["id"] as? String == "abc")
        let (logits, classes, shape) = outputs(reply)
        #expect(shape == [3, 5])
        let expected = try expectedLogits(net, pixels: pixels, count: 3)
        #expect(logits.count == 15)
        expectClose(logits, expected, tolerance: 1e-5)
        for n in 0..<3 {
            let row = Array(expected[n * 5 ..< n * 5 + 5])
            #expect(classes[n] == row.indices.max { row[$0] < row[$1] })
        }

        // UINT8 input is scaled by 1/255 before standardisation.
        let bytes = (0 ..< 108).map { ($0 * 37) % 256 }
        let u = try await s.post("/v2/models/tiny/infer",
                                 inferBody(shape: [1, 3, 6, 6], datatype: "UINT8", data: bytes.map(String.init)))
        #expect(u.status == 200, "\(u.text)")
        let uExpected = try expectedLogits(net, pixels: bytes.map { Float($0) / 255 }, count: 1)
        expectClose(outputs(u).logits, uExpected, tolerance: 1e-5)

        let stats = try await s.get("/v2/models/tiny/stats")
        let st = (stats.object["model_stats"] as? [[String: Any]])?.first
        #expect(st?["inference_count"] as? Int == 4)
        #expect(st?["request_count"] as? Int == 2)
        #expect((st?["execution_count"] as? Int ?? 0) >= 1)

        let index = try await s.post("/v2/repository/index", "{}")
        let entries = (try? JSONSerialization.jsonObject(with: Data(index.body))) as? [[String: Any]]
        #expect(entries?.count == 1 && entries?.first?["state"] as? String == "READY")

        let metrics = try await s.get("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(try await s.metric("mlres_inferences_total", ["model": "tiny"]) == 4)
        #expect(try await s.metric("mlres_models_loaded") == 1)
        #expect(try await s.metric("mlres_http_requests_total",
                                   ["endpoint": "/v2/models/{name}/infer", "status": "200"]) == 2)
        #expect(try await s.metric("mlres_compute_seconds_count", ["model": "tiny"]) >= 1)
        #expect(try await s.metric("mlres_queue_seconds_count", ["model": "tiny"]) == 2)
        try await s.stop()
    }

    @Test("the numpy fixture network served end to end gives the fixture's logits")
    func fixtureThroughHTTP() async throws {
        let f = try ReferenceFixture.load()
        let dir = temporaryFolder("fixture")
        defer { cleanup(dir) }
        try "fixture".write(toFile: dir + "/fix.h5", atomically: true, encoding: .utf8)
        let net = f.network
        let s = try await TestServer.start(directory: dir, loader: { _, o in
            LoadedModel(network: net, backend: try EngineBackend(network: net, threads: o.threads, maxBatch: o.maxBatch),
                        backendName: "onednn")
        })
        let r = try await s.post("/v2/models/fix/infer",
                                 inferBody(shape: [f.count] + net.inputShape, datatype: "UINT8", data: f.uint8.map(String.init)))
        #expect(r.status == 200, "\(r.text)")
        let got = outputs(r).logits
        #expect(got.count == f.logits.count)
        expectClose(got, f.logits, tolerance: 1e-4)
        try await s.stop()
    }
}
