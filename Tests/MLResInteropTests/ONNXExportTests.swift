import Foundation
import Testing
import MLResHDF5
import MLResInterop
import MLResModel
import MLResTestSupport

/// ONNX export checked by the ONNX tools themselves: onnx.checker (full check) accepts every
/// export, and ONNX Runtime's logits on random and real (Fashion-MNIST) images equal
/// `mlres-eval score --save-logits` to 1e-4 relative to the largest |logit|.
struct ExportCase: Sendable, CustomStringConvertible {
    var name: String
    var blocks: [Int]
    var widths: [Int]
    var input: [Int]
    var h: [[Double]]
    /// Stage to shuffle, and the order (new k = old order[k]).
    var shuffle: (stage: Int, order: [Int])?
    var description: String { name }

    static let all: [ExportCase] = [
        ExportCase(name: "2-2-2 16-wide 3ch, h 1/0.5/0/1/0.25/1", blocks: [2, 2, 2], widths: [16, 32, 64], input: [3, 32, 32],
                   h: [[1, 0.5], [0, 1], [0.25, 1]]),
        ExportCase(name: "2-2-2 32-wide 1ch, h with two zeros", blocks: [2, 2, 2], widths: [32, 64, 128], input: [1, 28, 28],
                   h: [[1, 0], [0.5, 1], [1, 0]]),
        ExportCase(name: "5-5-5 16-wide 1ch, shuffled stage 1", blocks: [5, 5, 5], widths: [16, 32, 64], input: [1, 28, 28],
                   h: [[1, 0.5, 0, 0.25, 1], [1, 0.2, 0.4, 0, 0.8], [0.5, 0.5, 1, 0, 0.1]], shuffle: (1, [0, 3, 1, 4, 2])),
        ExportCase(name: "5-5-5 32-wide 3ch, shuffled stage 2", blocks: [5, 5, 5], widths: [32, 64, 128], input: [3, 32, 32],
                   h: [[0.2, 0.2, 0.2, 0.2, 0.2], [1, 0, 1, 0, 1], [0.3, 0.6, 0.9, 0, 0.1]], shuffle: (2, [0, 4, 3, 2, 1])),
    ]
}

@Suite struct ONNXExportTests {
    /// Export → checker → ORT vs mlres on `dataset` in `dataDir` (first `n` images).
    func check(_ onnx: String, _ ckpt: String, dataset: String, dataDir: String, n: Int, in dir: String) throws {
        let logits = dir + "/mlres-\(dataset)-\(n).npy"
        let score = try eval("score", ckpt, "--dataset", dataset, "--data-dir", dataDir, "--test-subset", "\(n)",
                             "--save-logits", logits, "--threads", "1")
        try #require(score.status == 0, "\(score.stderr)")
        let r = try python("onnx_check.py", [onnx, "--dataset", dataset, "--data-dir", dataDir, "--n", "\(n)", "--expect", logits])
        try #require(r.status == 0, "onnx_check: \(r.stdout) \(r.stderr)")
        let j = r.json
        #expect(j["checker"] as? String == "ok")
        #expect(r.number("ir_version") == 8 && r.number("opset") == 17)
        #expect(j["inputs"] as? [String] == ["input"] && j["outputs"] as? [String] == ["logits", "class"])
        #expect(j["batch_dim"] as? String == "N" && j["class_dtype"] as? String == "int64")
        #expect(j["class_is_argmax"] as? Bool == true)
        #expect(r.number("images") == Double(n))
        #expect(r.number("rel_diff") <= 1e-4, "ORT vs mlres on \(dataset): \(r.stdout)")
        #expect(r.number("max_abs_logit") > 0.1, "degenerate logits: \(r.stdout)")
        #expect(r.number("class_agree") == Double(n), "\(r.stdout)")
    }

    @Test("ONNX export passes onnx.checker and ONNX Runtime equals mlres-eval score (random and real images)",
          arguments: ExportCase.all)
    func exportMatchesOnnxRuntime(_ c: ExportCase) throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arch = Architecture(blocks: c.blocks, widths: c.widths, inputShape: c.input, numClasses: 10)
        var ckpt = Checkpoint(network: trainedLikeNetwork(arch, h: c.h, seed: UInt64(c.blocks.reduce(0, +) * 100 + c.widths[0] + c.input[0])),
                              lineage: [LineageEvent(op: "init")])
        if let sh = c.shuffle { ckpt = try Surgery.shuffle(ckpt, stage: sh.stage, .order(sh.order)).0 }
        let path = dir + "/ckpt.h5"
        try CheckpointIO.write(ckpt, to: path)

        let onnx = dir + "/model.onnx"
        let ex = try surgery("export", path, "--format", "onnx", "-o", onnx)
        try #require(ex.status == 0, "\(ex.stderr)")
        #expect(ex.stdout.contains("wrote \(onnx)"))

        let random = dir + "/random"
        try FileManager.default.createDirectory(atPath: random, withIntermediateDirectories: true)
        if c.input[0] == 3 {
            try writeRandomTestSet("cifar10", n: 40, seed: 5, to: random)
            try check(onnx, path, dataset: "cifar10", dataDir: random, n: 40, in: dir)
        } else {
            try writeRandomTestSet("fashion-mnist", n: 40, seed: 5, to: random)
            try check(onnx, path, dataset: "fashion-mnist", dataDir: random, n: 40, in: dir)
            try check(onnx, path, dataset: "fashion-mnist", dataDir: realFashionMNIST, n: 300, in: dir)
        }
    }

    @Test("The graph: standardisation first, BN2 folded into conv1, h into conv2, Slice+Pad shortcut, logits and class")
    func graphStructure() throws {
        let arch = Architecture(blocks: [1, 2], widths: [4, 8], inputShape: [3, 8, 8], numClasses: 5)
        let net = trainedLikeNetwork(arch, h: [[0.5], [0, 2]], seed: 1)
        let m = try ONNXExport.modelProto(Checkpoint(network: net), sourceSHA256: "abc")
        let ops = m.graph.node.map(\.opType)
        #expect(Array(ops.prefix(3)) == ["Sub", "Div", "Conv"])
        #expect(ops.filter { $0 == "BatchNormalization" }.count == 3 + 1)   // bn1 of 3 blocks + head
        #expect(ops.filter { $0 == "Conv" }.count == 1 + 2 * 3)
        #expect(ops.filter { $0 == "Slice" }.count == 1 && ops.filter { $0 == "Pad" }.count == 1)
        #expect(Array(ops.suffix(2)) == ["Gemm", "ArgMax"])
        #expect(m.graph.output.map(\.name) == ["logits", "class"])
        // conv2 of block 1.1 is h = 2 times the checkpoint's; the zero-pad splits 4 channels 2 + 2.
        let init_ = Dictionary(uniqueKeysWithValues: m.graph.initializer.map { ($0.name, $0) })
        let w2 = try #require(init_["stages.1.blocks.1.conv2.weight*h"])
        let first = w2.rawData.withUnsafeBytes { $0.loadUnaligned(as: Float.self) }
        #expect(first == 2 * net.stages[1].blocks[1].conv2.data[0])
        let pads = try #require(init_["stages.1.blocks.0.shortcut.pads"])
        #expect(pads.int64Data == [0, 2, 0, 0, 0, 2, 0, 0])
        // bn2 folded: bias = β − γ·μ/√(σ²+ε) for output channel 0 of block 0.0.
        let bn2 = net.stages[0].blocks[0].bn2
        let b = try #require(init_["stages.0.blocks.0.conv1.bias+bn2"])
        let s = Double(bn2.weight.data[0]) / (Double(bn2.runningVar.data[0]) + 1e-5).squareRoot()
        let expected = Float(Double(bn2.bias.data[0]) - s * Double(bn2.runningMean.data[0]))
        #expect(b.rawData.withUnsafeBytes { $0.loadUnaligned(as: Float.self) } == expected)
        #expect(m.metadataProps.contains { $0.key == "h" && $0.value == "[[0.5],[0,2]]" })
    }

    @Test("export refuses non-finite weights, unreadable input and an existing output, writing nothing; bad flags exit 64")
    func exportRefusals() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var net = trainedLikeNetwork(Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [1, 8, 8], numClasses: 3),
                                     h: [[1], [1]], seed: 2)
        net.stages[1].blocks[0].conv1.data[5] = .nan
        // The checkpoint reader and writer refuse such a file; the exporters refuse it themselves too.
        let bad = Checkpoint(network: net)
        #expect(throws: (any Error).self) { try ONNXExport.model(bad, sourceSHA256: "") }
        #expect(throws: (any Error).self) { try StateDict.encode(bad, sourceSHA256: "") }
        do { _ = try ONNXExport.model(bad, sourceSHA256: "") } catch {
            #expect("\(error)".contains("stages.1.blocks.0.conv1.weight[5] = nan"), "\(error)")
        }
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: dir + "/nan.h5"))
        for format in ["onnx", "safetensors"] {
            let r = try surgery("export", dir + "/nan.h5", "--format", format, "-o", dir + "/out." + format)
            #expect(r.status == 2)
            #expect(r.stderr.contains("nan.h5"), "\(r.stderr)")
        }
        #expect(listing(dir) == ["nan.h5"])
        let bad64 = try surgery("export", dir + "/nan.h5", "--format", "tflite", "-o", dir + "/x")
        #expect(bad64.status == 64)
        let missing = try surgery("export", dir + "/none.h5", "--format", "onnx", "-o", dir + "/x.onnx")
        #expect(missing.status == 2 && missing.stderr.contains("none.h5"))

        net.stages[1].blocks[0].conv1.data[5] = 0
        try CheckpointIO.write(Checkpoint(network: net), to: dir + "/ok.h5")
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir + "/taken.onnx"))
        let exists = try surgery("export", dir + "/ok.h5", "--format", "onnx", "-o", dir + "/taken.onnx")
        #expect(exists.status == 2 && exists.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: dir + "/taken.onnx", encoding: .utf8) == "keep")
        #expect(listing(dir) == ["nan.h5", "ok.h5", "taken.onnx"])
    }
}
