// The engine against PyTorch: fixtures/torch/tiny.{json,bin}, written by
// scripts/make_torch_fixtures.py (PyTorch, float64) from a checkpoint stored in the fixture.
import Foundation
import Testing
import MLResModel
import MLResTestSupport
import MLResHDF5
@testable import MLResEngine

private struct Fixture {
    struct Entry: Decodable { let offset: Int; let shape: [Int] }
    struct Meta: Decodable {
        let input_shape: [Int], stage_widths: [Int], stage_blocks: [Int], h: [Double]
        let num_classes: Int, batch: Int, bn_epsilon: Double, bn_momentum: Double
        let lr: Double, momentum: Double, weight_decay: Double
        let labels: [Int], train_loss: Double, sgd_losses: [Double], trainable: [String]
        let tensors: [String: Entry], float_count: Int
    }
    let meta: Meta
    let floats: [Float]

    init() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../fixtures/torch").standardized
        let m = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: dir.appendingPathComponent("tiny.json")))
        let bin = try Data(contentsOf: dir.appendingPathComponent("tiny.bin"))
        let count = m.float_count
        precondition(bin.count == count * 4, "tiny.bin has \(bin.count) bytes, tiny.json says \(count) floats")
        meta = m
        floats = bin.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    func tensor(_ name: String) -> Tensor {
        let e = meta.tensors[name]!
        let n = e.shape.reduce(1, *)
        return Tensor(shape: e.shape, data: Array(floats[e.offset..<(e.offset + n)]))
    }

    /// The fixture's network, with the parameters under `prefix` ("param/" or "sgd2/param/").
    func network(prefix: String = "param/") -> Network {
        let arch = Architecture(blocks: meta.stage_blocks, widths: meta.stage_widths,
                                inputShape: meta.input_shape, numClasses: meta.num_classes)
        var net = Network.initialized(arch, seed: 0)
        net.bnEpsilon = meta.bn_epsilon; net.bnMomentum = meta.bn_momentum
        var k = 0
        for s in net.stages.indices {
            for b in net.stages[s].blocks.indices { net.stages[s].blocks[b].h = meta.h[k]; k += 1 }
        }
        for nt in net.namedTensors { precondition(net.setTensor(at: nt.path, tensor(prefix + nt.path))) }
        return net
    }
}

private func rel(_ a: Tensor, _ b: Tensor) -> Double {
    relError(a.data.map(Double.init), b.data.map(Double.init))
}

@Test func evalLogitsMatchPyTorch() throws {
    let fx = try Fixture()
    let ex = try NetworkExecutor(network: fx.network(), batchSize: fx.meta.batch, threads: 2)
    let z = try ex.forward(fx.tensor("input").data, count: fx.meta.batch)
    #expect(rel(Tensor(shape: [fx.meta.batch, fx.meta.num_classes], data: z), fx.tensor("eval/logits")) < 1e-4)
}

@Test func trainStepGradientsMatchPyTorch() throws {
    let fx = try Fixture()
    let net = fx.network()
    #expect(net.trainablePaths == fx.meta.trainable)
    let ex = try NetworkExecutor(network: net, batchSize: fx.meta.batch, threads: 2)
    let (loss, _) = try ex.computeGradients(input: fx.tensor("input").data, labels: fx.meta.labels)
    #expect(abs(loss - fx.meta.train_loss) < 1e-5 * fx.meta.train_loss)
    for p in net.trainablePaths {
        let e = rel(try ex.gradient(at: p), fx.tensor("train/grad/" + p))
        #expect(e < 1e-4, "\(p): relative error \(e)")
    }
    let after = try ex.exportNetwork()
    for nt in after.namedTensors where !nt.trainable {
        let e = rel(nt.tensor, fx.tensor("train/running/" + nt.path))
        #expect(e < 1e-5, "\(nt.path): relative error \(e)")
    }
}

@Test func twoSGDStepsMatchPyTorch() throws {
    let fx = try Fixture()
    let ex = try NetworkExecutor(network: fx.network(), batchSize: fx.meta.batch, threads: 2)
    ex.momentum = fx.meta.momentum; ex.weightDecay = fx.meta.weight_decay
    for expected in fx.meta.sgd_losses {
        let (loss, _) = try ex.trainStep(input: fx.tensor("input").data, labels: fx.meta.labels, lr: Float(fx.meta.lr))
        #expect(abs(loss - expected) < 1e-5 * expected)
    }
    let after = try ex.exportNetwork()
    let opt = try ex.exportOptimizerState()
    for nt in after.namedTensors {
        let e = rel(nt.tensor, fx.tensor("sgd2/param/" + nt.path))
        #expect(e < 1e-5, "\(nt.path): relative error \(e)")
        if nt.trainable {
            let m = rel(opt.buffers[nt.path]!, fx.tensor("sgd2/momentum/" + nt.path))
            #expect(m < 1e-4, "momentum \(nt.path): relative error \(m)")
        }
    }
}

/// The same network as written by h5py (fixtures/torch/tiny.h5, by scripts/make_torch_fixtures.py):
/// our validating reader accepts it, its tensors are the fixture's, and the engine's eval logits
/// from the file match PyTorch's to 1e-4 relative.
@Test func h5pyCheckpointScoresLikePyTorch() throws {
    let fx = try Fixture()
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../fixtures/torch/tiny.h5").standardized.path
    let ckpt = try CheckpointIO.read(path: path)
    let expected = fx.network()
    #expect(ckpt.network.stepSizes == expected.stepSizes)
    #expect(ckpt.network.architectureValue == expected.architectureValue)
    for nt in expected.namedTensors {
        #expect(ckpt.network.tensor(at: nt.path) == nt.tensor, "\(nt.path) differs from the fixture")
    }
    let ex = try NetworkExecutor(network: ckpt.network, batchSize: fx.meta.batch, threads: 2)
    let z = try ex.forward(fx.tensor("input").data, count: fx.meta.batch)
    let e = rel(Tensor(shape: [fx.meta.batch, fx.meta.num_classes], data: z), fx.tensor("eval/logits"))
    #expect(e < 1e-4, "relative error \(e)")
}
