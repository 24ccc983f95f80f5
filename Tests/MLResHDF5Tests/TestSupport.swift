import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

/// A fresh temporary folder, removed by the caller with `cleanup()`.
struct TempDir {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("mlres-hdf5-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
    var contents: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

/// A small checkpoint that exercises every part of the format: non-trivial tensors (with a
/// negative zero and a subnormal, so that "bit-exact" means bits), distinct h, origins,
/// class names in UTF-8, optimizer with every momentum buffer, training state with history,
/// and a two-event lineage.
func sampleCheckpoint(blocks: [Int] = [2, 1], widths: [Int] = [4, 8], input: [Int] = [2, 6, 6],
                      classes: Int = 3, seed: UInt64 = 11, full: Bool = true) -> Checkpoint {
    let arch = Architecture(blocks: blocks, widths: widths, inputShape: input, numClasses: classes)
    var net = Network.initialized(arch, seed: seed)
    var rng = SplitMix64(seed: seed &+ 1000)
    for nt in net.namedTensors where !nt.path.hasSuffix("conv1/weight") && !nt.path.hasSuffix("conv2/weight") {
        var t = nt.tensor
        for i in t.data.indices {
            t.data[i] = nt.path.hasSuffix("running_var") ? Float(rng.nextUniform(0.1, 2)) : Float(rng.nextUniform(-1, 1))
        }
        net.setTensor(at: nt.path, t)
    }
    net.stem.data[0] = -0.0
    net.stem.data[1] = Float.leastNonzeroMagnitude
    for s in net.stages.indices {
        for b in net.stages[s].blocks.indices {
            net.stages[s].blocks[b].h = 1.0 / Double(1 << (s + b)) + 1e-9 * Double(b)
            if b > 0 { net.stages[s].blocks[b].origin = "copy:stages/\(s)/blocks/\(b - 1)" }
        }
    }
    net.inputMean = (0..<input[0]).map { Float($0) * 0.1 + 0.4 }
    net.inputStd = (0..<input[0]).map { Float($0) * 0.01 + 0.25 }
    guard full else {
        return Checkpoint(network: net, lineage: [], createdBy: "test", createdAt: "2026-01-01T00:00:00Z")
    }
    net.classNames = (0..<classes).map { ["cat", "dög", "🚀 rocket"][$0 % 3] + ($0 >= 3 ? "\($0)" : "") }
    var buffers: [String: Tensor] = [:]
    for nt in net.namedTensors where nt.trainable {
        var t = nt.tensor
        for i in t.data.indices { t.data[i] = Float(rng.nextNormal() * 0.01) }
        buffers[nt.path] = t
    }
    let opt = OptimizerState(kind: "sgd", momentum: 0.9, weightDecay: 5e-4, nesterov: true, buffers: buffers)
    let history: [String: [Double]] = [
        "epoch": [1, 2, 3], "global_step": [10, 20, 30], "lr": [0.1, 0.05, 0.0123456789],
        "train_loss": [2.3, 1.9, 1.7], "train_error": [0.9, 0.7, 0.6], "test_loss": [2.2, 2.0, 1.8],
        "test_error": [0.85, 0.72, 0.66], "wall_seconds": [1.5, 3.25, 4.125], "blocks": [3, 3, 6],
    ]
    let training = TrainingState(epoch: 3, globalStep: 30, cycle: 1, stepInCycle: 5, cycleSteps: 20,
                                 rngState: [1, UInt64.max, 0x1234_5678_9abc_def0],
                                 config: #"{"batch_size":128,"dataset":"cifar10","lr_max":0.1}"#,
                                 history: history)
    let lineage = [
        LineageEvent(op: "init", args: ["blocks": .array(blocks.map { .int($0) }), "seed": .int(Int(seed))],
                     at: "2026-01-01T00:00:00Z", tool: "mlres 0.1.0"),
        LineageEvent(op: "interpolate", args: ["stage": .int(0), "note": .string("ünïcode ✓")],
                     at: "2026-01-02T00:00:00Z", tool: "mlres 0.1.0", parentSHA256: String(repeating: "ab", count: 32)),
    ]
    return Checkpoint(network: net, optimizer: opt, training: training, lineage: lineage,
                      createdBy: "mlres-test 0.1.0", createdAt: "2026-01-03T04:05:06Z")
}

func bits(_ t: Tensor) -> [UInt32] { t.data.map(\.bitPattern) }

/// Every tensor, momentum buffer and h of `b` has the same bits as in `a`.
func sameTensorBits(_ a: Checkpoint, _ b: Checkpoint) -> Bool {
    let ta = a.network.namedTensors, tb = b.network.namedTensors
    guard ta.count == tb.count else { return false }
    for (x, y) in zip(ta, tb) where x.path != y.path || x.tensor.shape != y.tensor.shape || bits(x.tensor) != bits(y.tensor) {
        return false
    }
    let ha = a.network.stepSizes.flatMap { $0 }.map(\.bitPattern)
    let hb = b.network.stepSizes.flatMap { $0 }.map(\.bitPattern)
    guard ha == hb else { return false }
    let ba = a.optimizer?.buffers ?? [:], bb = b.optimizer?.buffers ?? [:]
    guard ba.keys.sorted() == bb.keys.sorted() else { return false }
    return ba.allSatisfy { k, v in bits(v) == bits(bb[k]!) && v.shape == bb[k]!.shape }
}

/// The message of the CheckpointError `body` throws (nil if it throws nothing).
func checkpointErrorMessage(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch let e as CheckpointError { return e.message } catch {
        return "unexpected error type \(type(of: error)): \(error)"
    }
}
