import Foundation
import MLResEngine
import MLResModel

/// The dynamical-systems view of one block j, averaged over the test set (the paper's Figs 3,
/// 4 and 7): the block integrates Y_{j+1} = P(Y_j) + h_j·F(Y_j) over the time step h_j starting
/// at time t_j = Σ_{i<j} h_i.
public struct BlockNorms: Codable, Equatable, Sendable {
    /// "S.B".
    public var block: String
    public var stage: Int
    /// Index of the block in the whole network (0-based).
    public var index: Int
    public var h: Double
    /// t_j = Σ_{i<j} h_i over all earlier blocks of the network.
    public var t: Double
    /// The same sum over the earlier blocks of this stage only (each stage is its own ODE).
    public var tStage: Double
    public var changesShape: Bool
    /// Mean over images of the L2 norm of the block input ‖Y_j‖ (all C·H·W values of one image).
    public var yNorm: Double
    /// Mean ‖G(Y_j)‖ = ‖h_j·F(Y_j)‖: what the block adds to its input.
    public var gNorm: Double
    /// Mean ‖F(Y_j)‖: the residual function itself (defined even when h_j = 0).
    public var fNorm: Double

    enum CodingKeys: String, CodingKey {
        case block, stage, index, h, t, tStage = "t_stage", changesShape = "changes_shape"
        case yNorm = "y_norm", gNorm = "g_norm", fNorm = "f_norm"
    }

    public init(block: String, stage: Int, index: Int, h: Double, t: Double, tStage: Double,
                changesShape: Bool, yNorm: Double, gNorm: Double, fNorm: Double) {
        self.block = block; self.stage = stage; self.index = index; self.h = h; self.t = t
        self.tStage = tStage; self.changesShape = changesShape
        self.yNorm = yNorm; self.gNorm = gNorm; self.fNorm = fNorm
    }
}

/// `mlres-eval norms --json`.
public struct NormsReport: Codable, Sendable {
    public var checkpoint: String
    public var sha256: String
    public var dataset: String
    public var images: Int
    public var blocks: String
    /// γ = mean of ‖G(Y_j)‖ over all blocks j.
    public var gamma: Double
    /// Eval error of the (unchanged) network on the same images, a by-product of the pass.
    public var error: Double
    public var rows: [BlockNorms]
    enum CodingKeys: String, CodingKey { case checkpoint, sha256, dataset, images, blocks, gamma, error, rows }

    public init(checkpoint: String, sha256: String, dataset: String, images: Int, blocks: String,
                gamma: Double, error: Double, rows: [BlockNorms]) {
        self.checkpoint = checkpoint; self.sha256 = sha256; self.dataset = dataset; self.images = images
        self.blocks = blocks; self.gamma = gamma; self.error = error; self.rows = rows
    }
}

/// Residual-norm analysis.
public enum ResidualNorms {
    /// Measures ‖Y_j‖, ‖h_j·F(Y_j)‖ and ‖F(Y_j)‖ for every block, averaged over the evaluator's
    /// test set, in one eval-mode pass.
    ///
    /// The engine reports each block's residual as h·F. For a block with h ≠ 0,
    /// ‖F‖ = ‖h·F‖ / |h|. For a block with h = 0 that would lose F, so the pass runs a copy of
    /// the network in which such blocks have h = 1 *and* are skipped: a skipped block outputs
    /// exactly P(Y_j), as h = 0 does, so every Y is unchanged, while the observer sees F itself.
    public static func measure(_ network: Network, evaluator: Evaluator, name: String = "network")
        throws -> (rows: [BlockNorms], gamma: Double, evaluation: Evaluation) {
        var probe = network
        var skip: Set<BlockID> = []
        var meta: [BlockID: (index: Int, h: Double, t: Double, tStage: Double, shape: Bool)] = [:]
        var order: [BlockID] = []
        var t = 0.0
        for (s, stage) in network.stages.enumerated() {
            var ts = 0.0
            for (b, blk) in stage.blocks.enumerated() {
                let id = BlockID(stage: s, block: b)
                meta[id] = (order.count, blk.h, t, ts, blk.changesShape)
                order.append(id)
                if blk.h == 0 { probe.stages[s].blocks[b].h = 1; skip.insert(id) }
                t += blk.h; ts += blk.h
            }
        }
        var ySum = [Double](repeating: 0, count: order.count)
        var rSum = [Double](repeating: 0, count: order.count)
        let ev = try evaluator.evaluate(probe, name: name, skipping: skip) { _, act in
            guard let j = meta[act.id]?.index else { return }
            ySum[j] += perImageNormSum(act.input)
            rSum[j] += perImageNormSum(act.residual)
        }
        let n = Double(ev.count)
        var rows: [BlockNorms] = []
        for id in order {
            let m = meta[id]!
            let y = ySum[m.index] / n, r = rSum[m.index] / n
            let f = m.h == 0 ? r : r / abs(m.h)
            let g = m.h == 0 ? 0 : r
            rows.append(BlockNorms(block: id.description, stage: id.stage, index: m.index, h: m.h, t: m.t,
                                   tStage: m.tStage, changesShape: m.shape, yNorm: y, gNorm: g, fNorm: f))
        }
        let gamma = rows.isEmpty ? 0 : rows.map(\.gNorm).reduce(0, +) / Double(rows.count)
        return (rows, gamma, ev)
    }

    /// Σ over the images of a `[N, ...]` tensor of each image's L2 norm (float64 accumulation).
    static func perImageNormSum(_ x: Tensor) -> Double {
        let n = x.shape[0]
        guard n > 0 else { return 0 }
        let per = x.count / n
        var total = 0.0
        x.data.withUnsafeBufferPointer { p in
            for i in 0 ..< n {
                var s = 0.0
                let base = p.baseAddress! + i * per
                for k in 0 ..< per { let v = Double(base[k]); s += v * v }
                total += s.squareRoot()
            }
        }
        return total
    }
}
