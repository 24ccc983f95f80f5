import Foundation
import MLResHDF5
import MLResModel
@testable import MLResServer
import Testing

@Suite("Evaluation jobs")
struct EvaluationTests {
    func waitDone(_ s: TestServer, _ id: String) async throws -> HTTPReply {
        for _ in 0..<200 {
            let r = try await s.get("/v1/evaluations/\(id)")
            if let st = r.object["status"] as? String, st == "succeeded" || st == "failed" { return r }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClientError(description: "job \(id) did not finish")
    }

    @Test("jobs run the injected evaluator and report its result or its error")
    func jobs() async throws {
        let dir = temporaryFolder("eval"), data = temporaryFolder("data")
        defer { cleanup(dir); cleanup(data) }
        try writeSeedModel(dir, "m", seed: 1)
        let evaluator: Evaluator = { req in
            if req.dataset == "broken" { throw ClientError(description: "dataset broken is unreadable") }
            return .object(["model": .string(req.model), "dataset": .string(req.dataset),
                            "file": .string((req.checkpointPath as NSString).lastPathComponent),
                            "data_dir": .string(req.dataDir), "sha256": .string(req.sha256),
                            "lesion": req.lesion ?? .null, "error_rate": .double(0.25)])
        }
        let s = try await TestServer.start(directory: dir, loader: SeedLoader().loader, evaluator: evaluator,
                                           dataDirectory: data)
        let created = try await s.post("/v1/evaluations", #"{"model":"m","dataset":"cifar10","lesion":{"drop":["1.0"]}}"#)
        #expect(created.status == 202, "\(created.text)")
        let id = try #require(created.object["id"] as? String)
        #expect(created.headers["location"] == "/v1/evaluations/\(id)")
        let done = try await waitDone(s, id)
        #expect(done.object["status"] as? String == "succeeded")
        let result = done.object["result"] as? [String: Any]
        #expect(result?["model"] as? String == "m" && result?["dataset"] as? String == "cifar10")
        #expect(result?["file"] as? String == "m.h5" && result?["data_dir"] as? String == data)
        let fileSHA = try FileDigest.sha256(fileAt: dir + "/m.h5")
        #expect(result?["sha256"] as? String == fileSHA)
        #expect((result?["lesion"] as? [String: Any])?["drop"] as? [String] == ["1.0"])
        #expect(result?["error_rate"] as? Double == 0.25)

        let failing = try await s.post("/v1/evaluations", #"{"model":"m","dataset":"broken"}"#)
        let failed = try await waitDone(s, try #require(failing.object["id"] as? String))
        #expect(failed.object["status"] as? String == "failed")
        #expect((failed.object["error"] as? String)?.contains("unreadable") == true)

        #expect(try await s.post("/v1/evaluations", #"{"model":"nope","dataset":"cifar10"}"#).status == 404)
        let badModel = try await s.post("/v1/evaluations", #"{"model":"../m","dataset":"cifar10"}"#)
        #expect(badModel.status == 400 && badModel.field == "model")
        let badSet = try await s.post("/v1/evaluations", #"{"model":"m","dataset":"../../etc"}"#)
        #expect(badSet.status == 400 && badSet.field == "dataset")
        #expect(try await s.post("/v1/evaluations", #"{"model":"m"}"#).field == "dataset")
        #expect(try await s.post("/v1/evaluations", "{").status == 400)
        #expect(try await s.get("/v1/evaluations/eval-999").status == 404)
        try await s.stop()
    }

    @Test("without an evaluator: 501 with a clear message; without --data-dir: 409")
    func unavailable() async throws {
        let dir = temporaryFolder("noeval")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "m", seed: 1)
        let s = try await TestServer.start(directory: dir, loader: SeedLoader().loader)
        let r = try await s.post("/v1/evaluations", #"{"model":"m","dataset":"cifar10"}"#)
        #expect(r.status == 501 && r.error?.contains("without an evaluator") == true)
        #expect(try await s.get("/v1/evaluations/x").status == 501)
        try await s.stop()

        let s2 = try await TestServer.start(directory: dir, loader: SeedLoader().loader, evaluator: { _ in .null })
        let r2 = try await s2.post("/v1/evaluations", #"{"model":"m","dataset":"cifar10"}"#)
        #expect(r2.status == 409 && r2.error?.contains("--data-dir") == true)
        try await s2.stop()
    }
}
