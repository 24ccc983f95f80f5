// The one builder of test networks whose batch norms are not the identity.
import MLResModel

extension Network {
    /// This network with every batch norm (bn1, bn2 of each block and the head's) set to
    /// random, non-trivial values drawn from `SplitMix64(seed: seed)`, tensor by tensor in the
    /// order of ``Network/namedTensors``: γ ∈ [0.5, 1.5), β ∈ [−0.3, 0.3), running mean
    /// ∈ [−0.3, 0.3), running variance ∈ [0.5, 2). With them, F(Y) is a generic function (a
    /// freshly initialised BN is the identity in eval mode), so a wrong mean, variance, γ or β
    /// anywhere shows up in the logits.
    public func withRandomBatchNorm(seed: UInt64) -> Network {
        var net = self
        var rng = SplitMix64(seed: seed)
        for nt in namedTensors where nt.path.contains("/bn") {
            let (lo, hi): (Double, Double)
            switch nt.path.split(separator: "/").last {
            case "weight": (lo, hi) = (0.5, 1.5)
            case "running_var": (lo, hi) = (0.5, 2)
            default: (lo, hi) = (-0.3, 0.3)   // bias, running_mean
            }
            var t = nt.tensor
            for i in t.data.indices { t.data[i] = Float(rng.nextUniform(lo, hi)) }
            precondition(net.setTensor(at: nt.path, t), "no tensor at \(nt.path)")
        }
        return net
    }
}

/// A He-initialised network of `architecture` (`seed`) with random non-trivial batch norms
/// (``Network/withRandomBatchNorm(seed:)`` with `seed + 1000`), every step size `h`, or per
/// block `hs[stage][block]` when given (its shape must match the architecture's blocks), and
/// the input standardisation `inputMean`/`inputStd` when given.
public func networkWithBNStatistics(_ architecture: Architecture, seed: UInt64, h: Double = 1,
                                    hs: [[Double]]? = nil,
                                    inputMean: [Float]? = nil, inputStd: [Float]? = nil) -> Network {
    var net = Network.initialized(architecture, seed: seed, h: h).withRandomBatchNorm(seed: seed &+ 1000)
    if let hs {
        precondition(hs.map(\.count) == architecture.blocks, "hs \(hs) does not match blocks \(architecture.blocks)")
        for s in net.stages.indices { for b in net.stages[s].blocks.indices { net.stages[s].blocks[b].h = hs[s][b] } }
    }
    if let inputMean { net.inputMean = inputMean }
    if let inputStd { net.inputStd = inputStd }
    return net
}
