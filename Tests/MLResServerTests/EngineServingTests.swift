import Foundation
import MLResAnalysis
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import MLResData
import Testing

/// fixtures/datasets (one folder per dataset, the layout `--data-dir` expects).
private let datasetsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures/datasets").path

/// Writes `network` as a real HDF5 checkpoint NAME.h5 in `directory`.
private func writeCheckpoint(_ network: Network, _ directory: String, _ name: String) throws {
    try CheckpointIO.write(Checkpoint(network: network), to: directory + "/\(name).h5")
}

@Suite("oneDNN engine backend and MLResAnalysis evaluations over HTTP")
struct EngineServingTests {
    @Test("bucket sizes: ascending, end at max-batch, at most 2·log2+2 plans, padding under a third")
    func buckets() {
        #expect(EngineBackend.bucketSizes(maxBatch: 64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64])
        #expect(EngineBackend.bucketSizes(maxBatch: 1) == [1])
        #expect(EngineBackend.bucketSizes(maxBatch: 10) == [1, 2, 3, 4, 6, 8, 10])
        for m in [1, 5, 7, 64, 100, 1000] {
            let b = EngineBackend.bucketSizes(maxBatch: m)
            #expect(b.last == m && b == b.sorted() && Set(b).count == b.count)
            #expect(Double(b.count) <= 2 * log2(Double(m)) + 2)
            for n in 1...m {
                let size = b.first { $0 >= n }!
                #expect(size - n < max(1, (size + 2) / 3), "batch \(n) pads to \(size)")
            }
        }
    }

    @Test("engine backend: padded buckets and split calls give each image its own logits")
    func paddingIsInvisible() throws {
        let f = try ReferenceFixture.load()
        let backend = try EngineBackend(network: f.network, threads: 1, maxBatch: 4)
        #expect(backend.buckets == [1, 2, 3, 4])
        let imageSize = f.network.inputShape.reduce(1, *), k = f.network.numClasses
        #expect(f.count == 2)
        // Every image's reference logits (the fixture's two, the float64 reference for the rest).
        var rng = SplitMix64(seed: 9)
        let extra = (0 ..< 7 * imageSize).map { _ in Float(rng.nextUnit() * 4 - 2) }
        let x = f.standardised + extra
        let total = f.count + 7
        let want = f.logits + Ref.evalLogits(f.network, Array64([7] + f.network.inputShape, extra.map(Double.init))).v.map(Float.init)
        // 9 images: chunks of 4, 4 and 1; then 5 images (bucket 6 of max-batch 8 pads one).
        let all = try backend.infer(x, count: total)
        #expect(all.count == total * k)
        expectClose(all, want, tolerance: 1e-4)
        let wide = try EngineBackend(network: f.network, threads: 1, maxBatch: 8)
        let five = try wide.infer(Array(x[0 ..< 5 * imageSize]), count: 5)
        #expect(wide.plannedSizes == [6])
        #expect(five.count == 5 * k)
        expectClose(five, want[0 ..< 5 * k], tolerance: 1e-4)
        expectClose(all[0 ..< 2 * k], f.logits, tolerance: 1e-4)
        #expect(Set(backend.plannedSizes) == [1, 4])
        #expect(throws: (any Error).self) { try backend.infer([0, 1], count: 1) }
    }

    @Test("served by the engine over HTTP: logits match the numpy fixture and the float64 reference to 1e-4")
    func engineMatchesReference() async throws {
        let dir = temporaryFolder("engine")
        defer { cleanup(dir) }
        let f = try ReferenceFixture.load()
        try writeCheckpoint(f.network, dir, "fx")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine)
        let meta = try await s.get("/v2/models/fx")
        #expect(meta.object["backend"] as? String == "onednn", "\(meta.text)")
        let shape = [f.count] + f.network.inputShape
        let r = try await s.post("/v2/models/fx/infer",
                                 inferBody(shape: shape, datatype: "UINT8", data: f.uint8.map(String.init)))
        #expect(r.status == 200, "\(r.text)")
        let got = outputs(r)
        let reference = Ref.evalLogits(f.network, Array64([f.count] + f.network.inputShape, f.standardised.map(Double.init))).v.map(Float.init)
        #expect(got.logits.count == f.logits.count && got.logitsShape == [f.count, f.network.numClasses])
        for (a, b) in zip(got.logits, f.logits) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b)), "fixture: \(a) vs \(b)") }
        for (a, b) in zip(got.logits, reference) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b)), "reference: \(a) vs \(b)") }
        try await s.stop()
    }

    @Test("concurrent requests to the engine backend are batched (fewer executions than requests)")
    func engineBatches() async throws {
        let dir = temporaryFolder("engine-batch")
        defer { cleanup(dir) }
        let net = SeedLoader.network(seed: 5)
        try writeCheckpoint(net, dir, "tiny")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine) {
            $0.batching = BatchingOptions(maxBatch: 16, maxQueueDelay: .milliseconds(100), maxQueue: 64)
        }
        let requests = 24
        let replies = try await concurrentSingleImageInfers(s, model: "tiny", count: requests, seedBase: 300)
        for i in 0..<requests {
            let r = replies[i]!
            #expect(r.status == 200, "\(r.text)")
            let expected = try expectedLogits(net, pixels: testPixels(count: 1, seed: UInt64(300 + i)), count: 1)
            let got = outputs(r).logits
            #expect(got.count == expected.count)
            expectClose(got, expected, tolerance: 1e-4, "request \(i)")
        }
        let inferences = try await s.metric("mlres_inferences_total", ["model": "tiny"])
        let executions = try await s.metric("mlres_executions_total", ["model": "tiny"])
        #expect(inferences == Double(requests))
        #expect(executions < Double(requests), "executions \(executions) for \(requests) requests")
        #expect(executions >= 2)
        try await s.stop()
    }

    func waitDone(_ s: TestServer, _ id: String) async throws -> HTTPReply {
        for _ in 0..<1500 {
            let r = try await s.get("/v1/evaluations/\(id)")
            if let st = r.object["status"] as? String, st == "succeeded" || st == "failed" { return r }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClientError(description: "job \(id) did not finish")
    }

    @Test("evaluation jobs give the numbers of the MLResAnalysis scorer and lesion study called directly")
    func evaluationMatchesScorer() async throws {
        let dir = temporaryFolder("eval-real")
        defer { cleanup(dir) }
        var net = Network.initialized(Architecture(blocks: [2, 1], widths: [4, 8], inputShape: [1, 28, 28],
                                                   numClasses: 10), seed: 11)
        net.inputMean = [0.3]; net.inputStd = [0.35]
        try writeCheckpoint(net, dir, "fm")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine,
                                           evaluator: AnalysisEvaluation.evaluator(threads: 1),
                                           dataDirectory: datasetsFolder)

        // Direct: the scorer `mlres-eval score` uses, on the same files.
        let ds = try DatasetSelection(kind: .fashionMNIST, dataDirectory: datasetsFolder + "/fashion-mnist").load(.test)
        let scorer = try MLResAnalysis.Evaluator(dataset: ds, batchSize: AnalysisEvaluation.batchSize, threads: 1)
        let direct = try scorer.evaluate(net)
        let lesion = try LesionStudy.run(Checkpoint(network: net), evaluator: scorer, mode: .single)

        let created = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist"}"#)
        #expect(created.status == 202, "\(created.text)")
        let done = try await waitDone(s, try #require(created.object["id"] as? String))
        #expect(done.object["status"] as? String == "succeeded", "\(done.text)")
        let doc = try #require(done.object["result"] as? [String: Any])
        #expect(doc["dataset"] as? String == "fashion-mnist" && doc["images"] as? Int == ds.count)
        #expect(doc["class_names"] as? [String] == ds.classNames)
        let result = try #require((doc["results"] as? [[String: Any]])?.first)
        #expect(result["sha256"] as? String == (try FileDigest.sha256(fileAt: dir + "/fm.h5")))
        #expect(result["images"] as? Int == direct.count && result["correct"] as? Int == direct.correct)
        #expect(abs((result["error"] as? Double ?? -1) - direct.error) <= 1e-12)
        #expect(abs((result["mean_loss"] as? Double ?? -1) - direct.meanLoss) <= 1e-9 * max(1, direct.meanLoss))
        #expect(result["confusion"] as? [[Int]] == direct.confusion)
        #expect(result["blocks"] as? String == net.blocksDescription)

        let lesioned = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist","lesion":{"mode":"single"}}"#)
        let ldone = try await waitDone(s, try #require(lesioned.object["id"] as? String))
        #expect(ldone.object["status"] as? String == "succeeded", "\(ldone.text)")
        let report = try #require(ldone.object["result"] as? [String: Any])
        #expect(abs((report["intact_error"] as? Double ?? -1) - lesion.intact.error) <= 1e-12, "\(report.keys.sorted())")
        let rows = report["rows"] as? [[String: Any]] ?? []
        #expect(rows.count == lesion.rows.count && rows.count == 3)
        for (got, want) in zip(rows, lesion.rows) {
            #expect(got["label"] as? String == want.label)
            #expect(abs((got["error"] as? Double ?? -1) - (want.error ?? -2)) <= 1e-12)
        }

        // Failures are reported on the job, naming the problem.
        for (body, needle) in [(#"{"model":"fm","dataset":"mnist"}"#, "unknown"),
                               (#"{"model":"fm","dataset":"cifar10"}"#, "inputs"),
                               (#"{"model":"fm","dataset":"fashion-mnist","lesion":{"mode":"half"}}"#, "lesion.mode"),
                               (#"{"model":"fm","dataset":"fashion-mnist","lesion":{"mode":"drop-k","k":[0]}}"#, "lesion.k")] {
            let r = try await s.post("/v1/evaluations", body)
            #expect(r.status == 202, "\(r.text)")
            let d = try await waitDone(s, try #require(r.object["id"] as? String))
            #expect(d.object["status"] as? String == "failed")
            #expect((d.object["error"] as? String)?.contains(needle) == true, "\(body): \(d.text)")
        }
        // The file was replaced after loading: the job refuses to score other bytes.
        net.inputStd = [0.5]
        try writeCheckpoint(net, dir, "fm")
        let stale = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist"}"#)
        let sd = try await waitDone(s, try #require(stale.object["id"] as? String))
        #expect((sd.object["error"] as? String)?.contains("changed since") == true, "\(sd.text)")
        try await s.stop()
    }
}

extension EngineServingTests {
    @Test("evaluations take labels like the CLI evaluators: a 20-class CIFAR-100 network scores on the coarse labels")
    func evaluationLabels() async throws {
        let dir = temporaryFolder("eval-labels")
        defer { cleanup(dir) }
        let net = Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [3, 32, 32], numClasses: 20), seed: 5)
        try writeCheckpoint(net, dir, "coarse20")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine,
                                           evaluator: AnalysisEvaluation.evaluator(threads: 1),
                                           dataDirectory: datasetsFolder)
        let ds = try DatasetSelection(kind: .cifar100, dataDirectory: datasetsFolder + "/cifar100", coarseLabels: true).load(.test)
        let direct = try MLResAnalysis.Evaluator(dataset: ds, batchSize: AnalysisEvaluation.batchSize, threads: 1).evaluate(net)
        for body in [#"{"model":"coarse20","dataset":"cifar100"}"#, #"{"model":"coarse20","dataset":"cifar100","labels":"coarse"}"#] {
            let r = try await s.post("/v1/evaluations", body)
            #expect(r.status == 202, "\(r.text)")
            let done = try await waitDone(s, try #require(r.object["id"] as? String))
            #expect(done.object["status"] as? String == "succeeded", "\(body): \(done.text)")
            let result = ((done.object["result"] as? [String: Any])?["results"] as? [[String: Any]])?.first
            #expect(result?["correct"] as? Int == direct.correct && result?["confusion"] as? [[Int]] == direct.confusion, "\(body)")
        }
        let fine = try await s.post("/v1/evaluations", #"{"model":"coarse20","dataset":"cifar100","labels":"fine"}"#)
        let fd = try await waitDone(s, try #require(fine.object["id"] as? String))
        #expect(fd.object["status"] as? String == "failed" && (fd.object["error"] as? String)?.contains("100") == true, "\(fd.text)")
        let wrongSet = try await s.post("/v1/evaluations", #"{"model":"coarse20","dataset":"cifar10","labels":"coarse"}"#)
        let wd = try await waitDone(s, try #require(wrongSet.object["id"] as? String))
        #expect((wd.object["error"] as? String)?.contains("applies to cifar100 only") == true, "\(wd.text)")
        let bad = try await s.post("/v1/evaluations", #"{"model":"coarse20","dataset":"cifar100","labels":"medium"}"#)
        #expect(bad.status == 400 && bad.field == "labels", "\(bad.text)")
        try await s.stop()
    }
}

@Suite("mlres-eval serve process: engine by default, passive OpenMP waiting")
struct EngineProcessTests {
    /// Starts `mlres-eval serve ARGS` with `OMP_WAIT_POLICY` set to `waitPolicy` (nil: removed).
    static func launch(_ args: [String], waitPolicy: String?) throws -> (Process, Int) {
        let (p, port, _) = try ProcessTests.launchBlocking(args, environment: ["OMP_WAIT_POLICY": waitPolicy])
        return (p, port)
    }

    /// `OMP_WAIT_POLICY` in the running process's environment (/proc/PID/environ).
    static func waitPolicy(of pid: Int32) throws -> String? {
        let raw = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))
        return raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            .first { $0.hasPrefix("OMP_WAIT_POLICY=") }.map { String($0.dropFirst("OMP_WAIT_POLICY=".count)) }
    }

    @Test("serves with the engine (logits match the reference), re-executed with OMP_WAIT_POLICY=passive; an explicit policy is kept; --backend is gone")
    func defaults() async throws {
        guard RepositoryTests.hdf5Available else { return }
        let dir = temporaryFolder("proc-engine")
        defer { cleanup(dir) }
        let net = SeedLoader.network(seed: 4)
        try writeCheckpoint(net, dir, "m")
        let px = testPixels(count: 3, seed: 21)
        let expected = try expectedLogits(net, pixels: px, count: 3)
        for (policy, wantPolicy) in [(nil, "passive"), ("active", "active")] as [(String?, String)] {
            let args = ["--models", dir, "--port", "0", "--threads", "1"]
            let (p, port) = try await offPool { try Self.launch(args, waitPolicy: policy) }
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
            #expect(try Self.waitPolicy(of: p.processIdentifier) == wantPolicy)
            let meta = try await RawHTTP.request(port: port, "GET", "/v2/models/m")
            #expect(meta.object["backend"] as? String == "onednn", "\(meta.text)")
            let r = try await RawHTTP.json(port: port, "POST", "/v2/models/m/infer",
                                           inferBody(shape: [3, 3, 6, 6], data: px.map { "\($0)" }))
            #expect(r.status == 200, "\(r.text)")
            let got = outputs(r).logits
            #expect(got.count == expected.count)
            expectClose(got, expected, tolerance: 1e-4)
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        let bad = Process()
        bad.executableURL = builtExecutable("mlres-eval")
        bad.arguments = ["serve", "--models", dir, "--backend", "reference"]
        let err = Pipe()
        bad.standardError = err
        bad.standardOutput = FileHandle.nullDevice
        try bad.run()
        bad.waitUntilExit()
        #expect(bad.terminationStatus != 0)
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("--backend"), "\(message)")
    }
}

extension EngineServingTests {
    @Test("evaluations with recalibrate_bn: the numbers of LesionStudy and scoring with Recalibration called directly; bad fields 400")
    func evaluationRecalibration() async throws {
        let dir = temporaryFolder("eval-recal")
        defer { cleanup(dir) }
        let net = networkWithBNStatistics(Architecture(blocks: [2, 1], widths: [4, 8], inputShape: [1, 28, 28], numClasses: 10),
                                          seed: 11, inputMean: [0.3], inputStd: [0.35])
        try writeCheckpoint(net, dir, "fm")
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine,
                                           evaluator: AnalysisEvaluation.evaluator(threads: 1),
                                           dataDirectory: datasetsFolder)
        // Direct: 2 batches of 8 of the fixture's 30 training images, seed 3, Fashion-MNIST augmentation.
        let folder = datasetsFolder + "/fashion-mnist"
        let ds = try DatasetSelection(kind: .fashionMNIST, dataDirectory: folder).load(.test)
        let train = try DatasetSelection(kind: .fashionMNIST, dataDirectory: folder).load(.train)
        let settings = RecalibrationSettings(batches: 2, batchSize: 8, seed: 3, augmentation: Augmentation(padding: 4, flip: false))
        let scorer = try MLResAnalysis.Evaluator(dataset: ds, batchSize: AnalysisEvaluation.batchSize, threads: 1)
        let recal = { (n: Network) in try Recalibration.recalibrated(n, train: train, settings: settings, threads: 1) }
        let lesion = try LesionStudy.run(Checkpoint(network: net), evaluator: scorer, mode: .single, recalibrate: recal)
        let plainRecal = try scorer.evaluate(try recal(net))

        let body = #"{"model":"fm","dataset":"fashion-mnist","lesion":{"mode":"single"},"recalibrate_bn":2,"recalibrate_batch_size":8,"recalibrate_seed":3}"#
        let created = try await s.post("/v1/evaluations", body)
        #expect(created.status == 202 && created.object["recalibrate_bn"] as? Int == 2, "\(created.text)")
        let done = try await waitDone(s, try #require(created.object["id"] as? String))
        #expect(done.object["status"] as? String == "succeeded", "\(done.text)")
        let report = try #require(done.object["result"] as? [String: Any])
        let intactR = try #require(lesion.intactRecalibrated)
        #expect(abs((report["intact_error_recalibrated"] as? Double ?? -1) - intactR.error) <= 1e-12)
        #expect((report["recalibration"] as? [String: Any])?["batch_size"] as? Int == 8)
        let rows = report["rows"] as? [[String: Any]] ?? []
        #expect(rows.count == 3 && rows.count == lesion.rows.count)
        for (got, want) in zip(rows, lesion.rows) {
            #expect(abs((got["error"] as? Double ?? -1) - (want.error ?? -2)) <= 1e-12)
            #expect(abs((got["error_recalibrated"] as? Double ?? -1) - (want.errorRecalibrated ?? -2)) <= 1e-12)
            #expect(abs((got["delta_error_recalibrated"] as? Double ?? -9) - (want.deltaErrorRecalibrated ?? -8)) <= 1e-12)
        }

        // A plain score gets the recalibrated network's result beside the plain one.
        let plain = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist","recalibrate_bn":2,"recalibrate_batch_size":8,"recalibrate_seed":3}"#)
        let pdone = try await waitDone(s, try #require(plain.object["id"] as? String))
        let doc = try #require(pdone.object["result"] as? [String: Any], "\(pdone.text)")
        let r = try #require((doc["recalibrated_results"] as? [[String: Any]])?.first)
        #expect(r["correct"] as? Int == plainRecal.correct)
        #expect(abs((r["mean_loss"] as? Double ?? -1) - plainRecal.meanLoss) <= 1e-9 * max(1, plainRecal.meanLoss))

        // Bad fields: 400 naming the field; a batch larger than the training set fails the job.
        for (bad, field) in [(#""recalibrate_bn":0"#, "recalibrate_bn"), (#""recalibrate_bn":"2""#, "recalibrate_bn"),
                             (#""recalibrate_bn":2,"recalibrate_batch_size":0"#, "recalibrate_batch_size"),
                             (#""recalibrate_seed":1"#, "recalibrate_seed")] {
            let r = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist","# + bad + "}")
            #expect(r.status == 400 && r.text.contains(field), "\(bad): \(r.status) \(r.text)")
        }
        let big = try await s.post("/v1/evaluations", #"{"model":"fm","dataset":"fashion-mnist","recalibrate_bn":1}"#)
        let bd = try await waitDone(s, try #require(big.object["id"] as? String))
        #expect(bd.object["status"] as? String == "failed")
        #expect((bd.object["error"] as? String)?.contains("larger than the 30 training images") == true, "\(bd.text)")
        try await s.stop()
    }
}
