/// Coarsening (issue 17): the multigrid restriction, inverse of interpolation.
///
/// A stage with steps h_0..h_{n-1} (n even) is the forward-Euler discretisation of an ODE over
/// the interval Σh. Coarsening merges each pair of consecutive steps 2i, 2i+1 into one step of
/// size h_{2i} + h_{2i+1} with one residual function, so the stage integrates the same
/// interval with half as many steps (Σh unchanged). Interpolation with the paper's rule puts a
/// copy of old block i at 2i and 2i+1 with h_i/2 each, so `keep` (block 2i's parameters) undoes
/// it exactly when the steps are uniform; `average` takes the pair's mean, a restriction that
/// uses both halves once training has made them differ.
extension Surgery {
    /// Which parameters the merged block of a pair carries.
    public enum MergePolicy: String, CaseIterable, Sendable, Codable {
        /// Block 2i's parameters, BN statistics, momentum and origin (block 2i+1 dropped).
        case keep
        /// The element-wise mean of the pair's parameters, BN running statistics and momentum
        /// buffers. Where block 2i changes shape (block 0 of a downsampling stage) the two
        /// blocks have different shapes: block 2i's parameters are kept, as with `keep`.
        case average
    }

    /// Coarsens the chosen stages of `checkpoint`: blocks 2i and 2i+1 become one block with
    /// h = h_{2i} + h_{2i+1}.
    ///
    /// - Parameters:
    ///   - stages: stage numbers to coarsen, nil for all.
    ///   - merge: keep block 2i's parameters or average the pair (see ``MergePolicy``).
    ///   - resetOptimizer: drop the optimizer state instead of carrying the momentum buffers.
    ///   - parentSHA256: digest of the input file, recorded in the lineage event.
    /// - Returns: the coarsened checkpoint and its plan.
    /// - Throws: ``SurgeryError`` for an empty, unknown or repeated stage, a stage with an odd
    ///   number of blocks (``SurgeryError/oddBlockCount(stage:blocks:)``), or a pair whose
    ///   second block changes shape, which merging would remove
    ///   (``SurgeryError/wouldMergeAwayShapeChangingBlock(_:)``).
    public static func coarsen(_ checkpoint: Checkpoint, stages: [Int]? = nil, merge: MergePolicy = .keep,
                               resetOptimizer: Bool = false,
                               parentSHA256: String? = nil) throws -> (Checkpoint, CoarseningPlan) {
        let net = checkpoint.network
        let chosen = try chosenStages(stages, in: net)
        let seen = Set(chosen)
        for s in chosen {
            let blocks = net.stages[s].blocks
            guard blocks.count % 2 == 0 else { throw SurgeryError.oddBlockCount(stage: s, blocks: blocks.count) }
            if let b = stride(from: 1, to: blocks.count, by: 2).first(where: { blocks[$0].changesShape }) {
                throw SurgeryError.wouldMergeAwayShapeChangingBlock(BlockID(stage: s, block: b))
            }
        }

        var out = checkpoint
        var stagePlans: [CoarseningPlan.StagePlan] = []
        for s in net.stages.indices {
            let stage = net.stages[s]
            guard seen.contains(s) else {
                stagePlans.append(.init(stage: s, coarsened: false, totalTimeBefore: stage.totalTime,
                                        totalTimeAfter: stage.totalTime, pairs: []))
                continue
            }
            var sources: [BlockSource] = []
            var pairs: [CoarseningPlan.Pair] = []
            var averagedMomentum: [(new: Int, a: Int, b: Int)] = []
            for i in 0..<(stage.blocks.count / 2) {
                let (x, y) = (stage.blocks[2 * i], stage.blocks[2 * i + 1])
                let h = x.h + y.h
                let rule: CoarseningPlan.Pair.Rule
                if merge == .average && !x.changesShape {
                    var m = ResidualBlock(h: h, stride: x.stride, inChannels: x.inChannels, outChannels: x.outChannels,
                                          origin: "average:\(BlockID(stage: s, block: 2 * i).path)"
                                              + ",\(BlockID(stage: s, block: 2 * i + 1).path)")
                    for t in BlockTensor.allCases { m[t] = mean(x[t], y[t]) }
                    sources.append(.fresh(m))
                    averagedMomentum.append((i, 2 * i, 2 * i + 1))
                    rule = .averaged
                } else {
                    sources.append(.old(2 * i, h: h, origin: nil))
                    rule = merge == .keep ? .kept : .keptShapeChanging
                }
                pairs.append(.init(new: i, first: 2 * i, second: 2 * i + 1, rule: rule,
                                   hFirst: x.h, hSecond: y.h, hAfter: h))
            }
            let oldBuffers = out.optimizer?.buffers ?? [:]
            out.rebuildStage(s, from: sources)
            // An averaged block's momentum is the mean of the pair's buffers (rebuildStage left zeros).
            if var opt = out.optimizer, !opt.buffers.isEmpty {
                for (j, a, b) in averagedMomentum {
                    for t in BlockTensor.allCases where t.trainable {
                        let key = { (k: Int) in TensorSlot.block(BlockID(stage: s, block: k), t).path }
                        if let ma = oldBuffers[key(a)], let mb = oldBuffers[key(b)] { opt.buffers[key(j)] = mean(ma, mb) }
                    }
                }
                out.optimizer = opt
            }
            stagePlans.append(.init(stage: s, coarsened: true, totalTimeBefore: stage.totalTime,
                                    totalTimeAfter: out.network.stages[s].totalTime, pairs: pairs))
        }
        if resetOptimizer { out.optimizer = nil }

        let plan = CoarseningPlan(
            stages: stagePlans, merge: merge,
            optimizer: checkpoint.optimizer == nil ? .absent : (resetOptimizer ? .dropped : .remapped),
            blocksBefore: net.stageBlocks, blocksAfter: out.network.stageBlocks)
        out.appendEvent(.coarsen, [
            "stages": .array(chosen.map { .int($0) }),
            "merge": .string(merge.rawValue),
            "reset_optimizer": .bool(resetOptimizer),
            "blocks_before": .string(net.blocksDescription),
            "blocks_after": .string(out.network.blocksDescription),
        ], parentSHA256: parentSHA256)
        return (out, plan)
    }

    /// Element-wise (a + b) / 2 of two tensors of the same shape, rounded once to float32.
    static func mean(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "mean of tensors of shapes \(a.shape) and \(b.shape)")
        return Tensor(shape: a.shape, data: zip(a.data, b.data).map { Float((Double($0) + Double($1)) / 2) })
    }
}

/// What ``Surgery/coarsen(_:stages:merge:resetOptimizer:parentSHA256:)`` did.
public struct CoarseningPlan: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.coarsen

    /// One merged pair: old blocks `first` = 2i and `second` = 2i+1 became new block `new` = i.
    public struct Pair: Codable, Equatable, Sendable {
        public enum Rule: String, Codable, Sendable {
            /// `--merge keep`: block 2i's parameters.
            case kept
            /// `--merge average`: the pair's mean.
            case averaged
            /// `--merge average`, but block 2i changes shape, so its parameters are kept.
            case keptShapeChanging = "kept (shape-changing)"
        }
        public var new: Int
        public var first: Int
        public var second: Int
        public var rule: Rule
        public var hFirst: Double
        public var hSecond: Double
        /// h_first + h_second.
        public var hAfter: Double
        enum CodingKeys: String, CodingKey {
            case new, first, second, rule, hFirst = "h_first", hSecond = "h_second", hAfter = "h_after"
        }
    }

    public struct StagePlan: Codable, Equatable, Sendable {
        public var stage: Int
        public var coarsened: Bool
        public var totalTimeBefore: Double
        public var totalTimeAfter: Double
        public var pairs: [Pair]
        enum CodingKeys: String, CodingKey {
            case stage, coarsened, totalTimeBefore = "total_h_before", totalTimeAfter = "total_h_after", pairs
        }
    }

    public var stages: [StagePlan]
    public var merge: Surgery.MergePolicy
    public var optimizer: OptimizerHandling
    public var blocksBefore: [Int]
    public var blocksAfter: [Int]

    enum CodingKeys: String, CodingKey {
        case op, stages, merge, optimizer, blocksBefore = "blocks_before", blocksAfter = "blocks_after"
    }

    public var text: String {
        func d(_ b: [Int]) -> String { b.map(String.init).joined(separator: "-") }
        var lines = ["coarsen \(d(blocksBefore)) → \(d(blocksAfter)) (merge: \(merge.rawValue),"
                     + " optimizer: \(optimizer.rawValue))"]
        for st in stages {
            let sum = "Σh \(formatH(st.totalTimeBefore)) → \(formatH(st.totalTimeAfter))"
            guard st.coarsened else { lines.append("stage \(st.stage): unchanged, \(sum)"); continue }
            lines.append("stage \(st.stage): \(2 * st.pairs.count) → \(st.pairs.count) blocks, \(sum)")
            for p in st.pairs {
                let what = switch p.rule {
                case .kept: "parameters of old block \(st.stage).\(p.first)"
                case .averaged: "mean of old blocks \(st.stage).\(p.first) and \(st.stage).\(p.second)"
                case .keptShapeChanging: "parameters of old block \(st.stage).\(p.first) (it changes shape: nothing to average with)"
                }
                let arrow = "\(p.first)+\(p.second)→\(p.new)'".padding(toLength: 10, withPad: " ", startingAt: 0)
                lines.append("  \(arrow) h \(formatH(p.hFirst)) + \(formatH(p.hSecond)) = \(formatH(p.hAfter))  \(what)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
