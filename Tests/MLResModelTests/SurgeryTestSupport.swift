@testable import MLResModel

/// A checkpoint whose every tensor (BN statistics included) and every momentum buffer holds
/// distinct random values, so that a wrong copy or a wrong remapping cannot go unnoticed.
func surgeryFixture(_ blocks: [Int], widths: [Int] = [16, 32, 64], seed: UInt64 = 11,
                    momentum: Bool = true) -> Checkpoint {
    var net = Network.initialized(Architecture(blocks: blocks, widths: widths), seed: seed)
    var rng = SplitMix64(seed: seed &+ 1000)
    for t in net.namedTensors where !t.path.hasSuffix("conv/weight") && !t.path.contains("conv1") && !t.path.contains("conv2") {
        var x = t.tensor
        for k in x.data.indices {
            x.data[k] = t.path.hasSuffix("running_var") ? Float(rng.nextUniform(0.5, 2)) : Float(rng.nextUniform(-1, 1))
        }
        net.setTensor(at: t.path, x)
    }
    var opt: OptimizerState? = nil
    if momentum {
        var buffers: [String: Tensor] = [:]
        for t in net.namedTensors where t.trainable {
            var x = Tensor(shape: t.tensor.shape)
            for k in x.data.indices { x.data[k] = Float(rng.nextUniform(-1, 1)) }
            buffers[t.path] = x
        }
        opt = OptimizerState(buffers: buffers)
    }
    return Checkpoint(network: net, optimizer: opt, lineage: [LineageEvent(op: "init", at: "2026-01-01T00:00:00Z")])
}

/// Local tensor names of a block, in canonical order.
let blockTensorNames = ["bn1/weight", "bn1/bias", "bn1/running_mean", "bn1/running_var", "conv1/weight",
                        "bn2/weight", "bn2/bias", "bn2/running_mean", "bn2/running_var", "conv2/weight"]
let trainableBlockTensorNames = blockTensorNames.filter { !$0.contains("running") }

func blockPath(_ s: Int, _ b: Int, _ name: String) -> String { "model/stages/\(s)/blocks/\(b)/\(name)" }
