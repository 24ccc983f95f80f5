import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

@Suite("Model repository: load, reload, failed reload, temp files, polling")
struct RepositoryTests {
    func logits(_ s: TestServer, _ name: String) async throws -> (status: Int, logits: [Float], version: String?) {
        let r = try await s.post("/v2/models/\(name)/infer",
                                 inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 42).map { "\($0)" }))
        return (r.status, outputs(r).logits, r.object["model_version"] as? String)
    }

    @Test("explicit load, reload after an atomic replace, failed reload keeps the previous version")
    func reload() async throws {
        let dir = temporaryFolder("reload")
        defer { cleanup(dir) }
        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader)
        #expect(try await logits(s, "m").status == 404)

        // A file that appears later is served after an explicit load.
        try writeSeedModel(dir, "m", seed: 1)
        let load1 = try await s.post("/v2/repository/models/m/load", "")
        #expect(load1.status == 200 && load1.object["version"] as? String == "1")
        let v1 = try await logits(s, "m")
        #expect(v1.status == 200 && v1.version == "1")
        let sha1 = try await s.get("/v2/models/m").object["sha256"] as? String

        // Atomic replace with another network: the reload serves it.
        try writeSeedModel(dir, "m", seed: 2)
        let load2 = try await s.post("/v2/repository/models/m/load", "")
        #expect(load2.status == 200 && load2.object["version"] as? String == "2")
        let v2 = try await logits(s, "m")
        #expect(v2.version == "2")
        #expect(v2.logits != v1.logits)
        let expected2 = try expectedLogits(SeedLoader.network(seed: 2), pixels: testPixels(count: 1, seed: 42), count: 1)
        expectClose(v2.logits, expected2, tolerance: 1e-5)
        let sha2 = try await s.get("/v2/models/m").object["sha256"] as? String
        let fileSHA = try FileDigest.sha256(fileAt: dir + "/m.h5")
        #expect(sha2 != sha1 && sha2 == fileSHA)

        // A broken replacement: the reload fails with the reader's error, version 2 keeps serving.
        let tmp = dir + "/m.h5.tmp-broken"
        try "garbage".write(toFile: tmp, atomically: false, encoding: .utf8)
        #expect(rename(tmp, dir + "/m.h5") == 0)
        let bad = try await s.post("/v2/repository/models/m/load", "")
        #expect(bad.status == 422)
        #expect(bad.error?.contains("not a checkpoint") == true, "\(bad.text)")
        #expect(bad.object["serving_version"] as? String == "2")
        let still = try await logits(s, "m")
        #expect(still.status == 200 && still.version == "2" && still.logits == v2.logits)
        let ready = try await s.get("/v2/models/m/ready")
        #expect(ready.status == 200 && (ready.object["last_error"] as? String)?.contains("not a checkpoint") == true)
        #expect(try await s.metric("mlres_model_load_failures_total", ["model": "m"]) == 1)

        // Loading a name that has no file is a 404 and creates nothing.
        #expect(try await s.post("/v2/repository/models/ghost/load", "").status == 404)
        #expect(s.server.repository.status("ghost") == nil)
        #expect(!(try await s.get("/metrics").text.contains("ghost")))
        try await s.stop()
    }

    @Test("a reload to another input shape fails the requests already queued with 409, then serves the new shape")
    func reloadChangesShape() async throws {
        let dir = temporaryFolder("shape")
        defer { cleanup(dir) }
        try writeSeedModel(dir, "m", seed: 1)
        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) {
            // A long window holds the requests in the queue while the reload runs, even on a loaded machine.
            $0.batching = BatchingOptions(maxBatch: 8, maxQueueDelay: .seconds(5), maxQueue: 64)
        }
        let body = inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 1).map { "\($0)" })
        let queued = (0..<2).map { _ in Task { try await s.post("/v2/models/m/infer", body) } }
        let batcher = try #require(s.server.repository.status("m")?.batcher)
        for _ in 0..<500 where batcher.queueDepth < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(batcher.queueDepth == 2)
        try writeSeedModel(dir, "m", seed: 1, side: 8)
        #expect(try await s.post("/v2/repository/models/m/load", "").status == 200)
        for t in queued {
            let r = try await t.value
            #expect(r.status == 409 && r.field == "inputs[0].shape", "\(r.text)")
            #expect(r.error?.contains("reloaded with input shape [3,8,8]") == true, "\(r.text)")
        }
        let meta = try await s.get("/v2/models/m")
        #expect((meta.object["input_shape"] as? [Int]) == [3, 8, 8])
        let old = try await s.post("/v2/models/m/infer", body)
        #expect(old.status == 400 && old.field == "inputs[0].shape")
        try await s.stop()
    }

    @Test("only valid *.h5 names are read: never .tmp-* files, never outside the folder")
    func onlyValidFiles() async throws {
        let dir = temporaryFolder("files")
        let outside = temporaryFolder("outside")
        defer { cleanup(dir); cleanup(outside) }
        try writeSeedModel(dir, "good", seed: 1)
        try "seed=3".write(toFile: dir + "/good.h5.tmp-abc123", atomically: false, encoding: .utf8)
        try "seed=3".write(toFile: dir + "/.tmp-hidden.h5", atomically: false, encoding: .utf8)
        try "seed=3".write(toFile: dir + "/notes.txt", atomically: false, encoding: .utf8)
        try "garbage".write(toFile: dir + "/broken.h5", atomically: false, encoding: .utf8)
        try writeSeedModel(outside, "secret", seed: 4)
        #expect(symlink(outside + "/secret.h5", dir + "/link.h5") == 0)

        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader)
        let read = Set(seeds.readPaths.map { ($0 as NSString).lastPathComponent })
        #expect(read == ["good.h5", "broken.h5"], "read \(read)")
        #expect(try await s.get("/v2/models/good/ready").status == 200)
        let broken = try await s.get("/v2/models/broken/ready")
        #expect(broken.status == 503 && broken.object["ready"] as? Bool == false)
        let link = try await s.post("/v2/repository/models/link/load", "")
        #expect(link.status == 422 && link.error?.contains("outside the models folder") == true, "\(link.text)")
        #expect(try await s.post("/v2/repository/models/.tmp-hidden/load", "").status == 400)
        #expect(!seeds.readPaths.contains { p in
            let file = (p as NSString).lastPathComponent
            return file.contains("secret") || file.contains(".tmp-") || !p.hasPrefix(s.server.repository.directory + "/")
        })
        #expect(try await s.metric("mlres_models_loaded") == 1)
        try await s.stop()
    }

    @Test("--poll-seconds picks up new, replaced and removed files")
    func polling() async throws {
        let dir = temporaryFolder("poll")
        defer { cleanup(dir) }
        let seeds = SeedLoader()
        let s = try await TestServer.start(directory: dir, loader: seeds.loader) { $0.pollInterval = .milliseconds(100) }
        func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
            for _ in 0..<300 { if try await condition() { return }; try await Task.sleep(for: .milliseconds(50)) }
            Issue.record("timed out waiting for \(what)")
        }
        try writeSeedModel(dir, "p", seed: 1)
        try await waitFor("load") { try await logits(s, "p").version == "1" }
        try writeSeedModel(dir, "p", seed: 2)
        try await waitFor("reload") { try await logits(s, "p").version == "2" }
        // A broken replacement is tried once and the old version keeps serving.
        let tmp = dir + "/p.h5.tmp-x"
        try "garbage".write(toFile: tmp, atomically: false, encoding: .utf8)
        #expect(rename(tmp, dir + "/p.h5") == 0)
        try await waitFor("failed reload") { s.server.repository.status("p")?.lastError != nil }
        try await Task.sleep(for: .milliseconds(400))
        #expect(s.server.repository.status("p")?.loadFailures == 1)
        #expect(try await logits(s, "p").version == "2")
        try FileManager.default.removeItem(atPath: dir + "/p.h5")
        try await waitFor("unload") { try await logits(s, "p").status == 404 }
        try await s.stop()
    }

    /// True while CheckpointIO is still the placeholder (its error says "not implemented yet").
    static let hdf5Available: Bool = {
        let dir = temporaryFolder("probe")
        defer { cleanup(dir) }
        do {
            try CheckpointIO.write(Checkpoint(network: SeedLoader.network(seed: 1)), to: dir + "/probe.h5")
            return true
        } catch {
            return !"\(error)".contains("not implemented yet")
        }
    }()

    @Test("real checkpoints: reload after CheckpointIO.write atomically replaces the file",
          .enabled(if: hdf5Available, "skipped: CheckpointIO is still the placeholder (HDF5 writer not implemented yet)"))
    func hdf5Reload() async throws {
        let dir = temporaryFolder("hdf5")
        defer { cleanup(dir) }
        let net1 = SeedLoader.network(seed: 11), net2 = SeedLoader.network(seed: 12)
        try CheckpointIO.write(Checkpoint(network: net1), to: dir + "/real.h5")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine)
        let r1 = try await logits(s, "real")
        #expect(r1.status == 200 && r1.version == "1")
        expectClose(r1.logits, try expectedLogits(net1, pixels: testPixels(count: 1, seed: 42), count: 1), tolerance: 1e-4)
        try CheckpointIO.write(Checkpoint(network: net2), to: dir + "/real.h5")
        #expect(try await s.post("/v2/repository/models/real/load", "").status == 200)
        let r2 = try await logits(s, "real")
        #expect(r2.version == "2")
        expectClose(r2.logits, try expectedLogits(net2, pixels: testPixels(count: 1, seed: 42), count: 1), tolerance: 1e-4)
        // A truncated file fails validation; version 2 keeps serving.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/real.h5"))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: dir + "/real.h5.tmp-cut"))
        #expect(rename(dir + "/real.h5.tmp-cut", dir + "/real.h5") == 0)
        #expect(try await s.post("/v2/repository/models/real/load", "").status == 422)
        #expect(try await logits(s, "real").version == "2")
        try await s.stop()
    }
}

/// Issue 12, kind 1: a checkpoint whose parameters are not all finite is refused at load and at
/// reload (the checkpoint reader names the tensor and index), and the version already serving keeps
/// answering with finite logits; no reply ever carries a non-finite (null) value.
@Suite("Non-finite parameters are refused at load and reload")
struct NonFiniteParameterTests {
    /// Sets `path[index]` of an HDF5 checkpoint to `value` with h5py (an independent writer).
    static func poison(_ file: String, _ path: String, _ index: Int, _ value: String) throws {
        let script = """
        import h5py, numpy as np, sys
        with h5py.File(sys.argv[1], "r+") as f:
            d = f[sys.argv[2]]; a = d[...]; a.flat[int(sys.argv[3])] = float(sys.argv[4]); d[...] = a
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, file, path, String(index), value]
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ClientError(description: "h5py edit failed: \(text)") }
    }

    @Test("refused naming the tensor, previous version keeps serving",
          arguments: [("model/head/fc/bias", 0, "nan"), ("model/stem/conv/weight", 5, "inf"),
                      ("model/stages/1/blocks/0/bn1/running_var", 2, "-inf")])
    func refused(path: String, index: Int, value: String) async throws {
        let dir = temporaryFolder("nonfinite-params")
        defer { cleanup(dir) }
        let net = SeedLoader.network(seed: 3)
        try CheckpointIO.write(Checkpoint(network: net), to: dir + "/m.h5")
        try CheckpointIO.write(Checkpoint(network: net), to: dir + "/bad.h5.tmp-x")
        try await offPool { try Self.poison(dir + "/bad.h5.tmp-x", path, index, value) }
        #expect(rename(dir + "/bad.h5.tmp-x", dir + "/bad.h5") == 0)
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine)
        // First load: refused, the model is not ready, the error names the tensor.
        let ready = try await s.get("/v2/models/bad/ready")
        #expect(ready.status == 503, "\(ready.text)")
        let lastError = ready.object["last_error"] as? String ?? ""
        #expect(lastError.contains(path) && lastError.contains(String(index)), "\(ready.text)")
        // Reload of a serving model with a poisoned file: 422, version 1 keeps serving.
        try CheckpointIO.write(Checkpoint(network: net), to: dir + "/m.h5.tmp-y")
        try await offPool { try Self.poison(dir + "/m.h5.tmp-y", path, index, value) }
        #expect(rename(dir + "/m.h5.tmp-y", dir + "/m.h5") == 0)
        let reload = try await s.post("/v2/repository/models/m/load", "")
        #expect(reload.status == 422 && reload.error?.contains(path) == true, "\(reload.text)")
        let r = try await s.post("/v2/models/m/infer", inferBody(shape: [1, 3, 6, 6], data: testPixels(count: 1, seed: 4).map { "\($0)" }))
        #expect(r.status == 200 && r.object["model_version"] as? String == "1", "\(r.text)")
        #expect(!r.text.contains("null"))
        expectClose(outputs(r).logits, try expectedLogits(net, pixels: testPixels(count: 1, seed: 4), count: 1), tolerance: 1e-4)
        try await s.stop()
    }
}
