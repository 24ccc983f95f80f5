import Foundation
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

@Suite("Dynamic batching, queue limit, graceful shutdown")
struct BatchingTests {
    @Test("concurrent single-image requests run in fewer executions than requests")
    func batches() async throws {
        let dir = temporaryFolder("batch")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 5)
        let seeds = SeedLoader()
        seeds.delay = 0.2   // while one batch runs, the next requests queue up together
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) {
            $0.batching = BatchingOptions(maxBatch: 16, maxQueueDelay: .milliseconds(20), maxQueue: 64)
        }
        let net = SeedLoader.network(seed: 5)
        let requests = 24
        let replies = try await concurrentSingleImageInfers(s, model: "tiny", count: requests, seedBase: 100)
        // Every request got its own image's logits back (results were split correctly).
        for i in 0..<requests {
            let r = replies[i]!
            #expect(r.status == 200, "\(r.text)")
            let expected = try expectedLogits(net, pixels: testPixels(count: 1, seed: UInt64(100 + i)), count: 1)
            expectClose(outputs(r).logits, expected, tolerance: 1e-5, "request \(i)")
        }
        let inferences = try await s.metric("mlres_inferences_total", ["model": "tiny"])
        let executions = try await s.metric("mlres_executions_total", ["model": "tiny"])
        #expect(inferences == Double(requests))
        #expect(executions < Double(requests), "executions \(executions) for \(requests) requests")
        #expect(executions >= 2)   // 24 images with --max-batch 16 need at least two
        #expect(try await s.metric("mlres_batch_size_images_count", ["model": "tiny"]) == executions)
        try await s.stop()
    }

    @Test("a full queue answers 429 at once; the queued requests still succeed")
    func queueFull() async throws {
        let dir = temporaryFolder("full")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 5)
        let seeds = SeedLoader()
        seeds.delay = 0.6
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) {
            $0.batching = BatchingOptions(maxBatch: 2, maxQueueDelay: .milliseconds(1), maxQueue: 2)
        }
        let body = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 1).map { "\($0)" })
        let clock = ContinuousClock()
        let results = try await withThrowingTaskGroup(of: (Int, Duration).self) { group in
            for _ in 0..<12 {
                group.addTask {
                    let t0 = clock.now
                    let r = try await s.post("/v2/models/tiny/infer", body)
                    return (r.status, t0.duration(to: clock.now))
                }
            }
            var out: [(Int, Duration)] = []
            for try await x in group { out.append(x) }
            return out
        }
        let rejected = results.filter { $0.0 == 429 }
        let served = results.filter { $0.0 == 200 }
        #expect(rejected.count + served.count == 12)
        #expect(rejected.count >= 1)
        #expect(served.count >= 2)
        // Refused at once: faster than any served request (each batch takes at least 600 ms).
        let fastestServed = served.map(\.1).min() ?? .seconds(0.6)
        #expect(fastestServed >= .milliseconds(600))
        for r in rejected { #expect(r.1 < fastestServed, "429 took \(r.1)") }
        #expect(try await s.metric("mlres_queue_rejections_total", ["model": "tiny"]) == Double(rejected.count))
        let r429 = try await s.post("/v2/models/tiny/infer", body)  // queue empty again: served
        #expect(r429.status == 200)
        try await s.stop()
    }

    @Test("graceful shutdown finishes the requests in flight, then stops listening")
    func gracefulShutdown() async throws {
        let dir = temporaryFolder("drain")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "tiny", seed: 5)
        let seeds = SeedLoader()
        seeds.delay = 0.2
        // A long batching window keeps the five requests queued inside the server.
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) {
            $0.batching = BatchingOptions(maxBatch: 8, maxQueueDelay: .seconds(5), maxQueue: 64)
        }
        let body = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 1).map { "\($0)" })
        let inflight = (0..<5).map { _ in Task { try await s.post("/v2/models/tiny/infer", body) } }
        let batcher = try #require(s.server.repository.status("tiny")?.batcher)
        for _ in 0..<500 where batcher.queueDepth < 5 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(batcher.queueDepth == 5)
        #expect(batcher.stats.executions == 0)
        try await s.stop()                                // returns only when everything is done
        for t in inflight {
            let r = try await t.value
            #expect(r.status == 200, "\(r.text)")
        }
        #expect(s.server.repository.status("tiny")!.batcher!.stats.inferences == 5)
        #expect(!RawHTTP.canConnect(port: s.port))
    }
}
