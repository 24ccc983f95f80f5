/// Interpolation (the paper's Fig. 5 and Appendix B): double the number of blocks of a stage
/// by inserting a copy after every block and halving every step size.
///
/// A stage with steps h_0..h_{n-1} is the forward-Euler discretisation of an ODE over the time
/// interval Σh. Old block i becomes new block 2i; new block 2i+1 gets a copy of every parameter
/// and BN statistic of old block i; each of the two takes half of old block i's step, so the
/// stage integrates the same interval with twice as many steps of half the size (Σh unchanged).
/// When the residual functions vary slowly from block to block, the new network computes almost
/// the same function as the old one, and training continues from there.
extension Surgery {
    /// Which block new block 1 of a stage is copied from.
    public enum FirstBlockPolicy: String, CaseIterable, Sendable, Codable {
        /// Appendix B: where block 0 changes shape (stride 2 or Cin ≠ Cout), copy old block 1
        /// (the first block of the stage's own shape); otherwise copy old block 0.
        case auto
        /// Copy old block 1 into new block 1 in every stage that has an old block 1.
        case next
        /// Always copy old block 0 (raw value "self"); refused where block 0 changes shape.
        case own = "self"
        /// Beyond the paper (issue 17): where block 0 changes shape, new block 1 is a fresh
        /// exact identity step (conv2 = 0, so F ≡ 0) and block 0 keeps its h; elsewhere as auto.
        /// Every old block's function then keeps its total step: the new network equals the
        /// old one to second order in h.
        case identity
    }

    /// What happens to the step sizes of an interpolated stage.
    public enum StepPolicy: String, CaseIterable, Sendable, Codable {
        /// The paper's rule: every new block gets half the step of the old block it came from
        /// (with Appendix B, `P + h·F0 + h·F1` becomes `P + h/2·F0 + 3h/2·F1`: a first-order
        /// change of the function). On the command line also accepted as "paper".
        case halve
        /// Both halves keep h_i: the stage's time interval doubles.
        case keep
        /// Beyond the paper (issue 17): the c copies of old block i take h_i / c each, so every
        /// old block's function keeps its total step and Σh of the stage is unchanged (steps may
        /// be non-uniform: with Appendix B block 0 keeps h0, old block 1's three copies take
        /// h1/3). The new network equals the old one to second order in h.
        case preserve
    }

    /// Default seed of the He-normal conv1 of a fresh identity block: stage s uses
    /// `SplitMix64(seed: defaultIdentitySeed + s)`, i.e. seed s.
    public static let defaultIdentitySeed: UInt64 = 0

    /// Interpolates the chosen stages of `checkpoint` (the paper's Fig. 5 and Appendix B, and
    /// the function-preserving variants of issue 17). `mlres-surgery interpolate` and the
    /// trainer's `--interpolate-at` both call this function.
    ///
    /// Each old block i of a chosen stage becomes new block 2i and is followed by a copy (new
    /// block 2i+1); new block 1 follows `firstBlock`. A fresh identity block (conv2 = 0) is
    /// inserted where `firstBlock` is `.identity` and block 0 changes shape, or where the
    /// stage's only block changes shape (nothing of the right shape to copy); it gets half of
    /// block 0's step (all of it under `.keep`). Step sizes follow `hPolicy`; under
    /// `firstBlock: .identity` a shape-changing block 0 keeps its h whatever the policy.
    ///
    /// - Parameters:
    ///   - stages: stage numbers to interpolate, nil for all.
    ///   - firstBlock: which old block new block 1 copies (see ``FirstBlockPolicy``).
    ///   - hPolicy: halve (the paper), keep, or preserve each old block's total step.
    ///   - resetOptimizer: drop the optimizer state instead of remapping its momentum buffers.
    ///   - identitySeed: seed of the conv1 of a fresh identity block: stage s draws He-normal
    ///     weights from `SplitMix64(seed: identitySeed + s)`.
    ///   - parentSHA256: digest of the input file, recorded in the lineage event.
    /// - Returns: the interpolated checkpoint and its plan.
    /// - Throws: ``SurgeryError`` for an unknown or repeated stage, `firstBlock: .own` on a
    ///   stage whose block 0 changes shape, or a shape-changing block after block 0.
    public static func interpolate(_ checkpoint: Checkpoint, stages: [Int]? = nil,
                                   firstBlock: FirstBlockPolicy = .auto,
                                   hPolicy: StepPolicy = .halve, resetOptimizer: Bool = false,
                                   identitySeed: UInt64 = defaultIdentitySeed,
                                   parentSHA256: String? = nil) throws -> (Checkpoint, InterpolationPlan) {
        let net = checkpoint.network
        let chosen = try chosenStages(stages, in: net)
        let seen = Set(chosen)
        for s in chosen {
            if let b = net.stages[s].blocks.indices.dropFirst().first(where: { net.stages[s].blocks[$0].changesShape }) {
                throw SurgeryError.shapeChangeInsideStage(BlockID(stage: s, block: b))
            }
            if firstBlock == .own, net.stages[s].blocks[0].changesShape {
                throw SurgeryError.cannotCopyShapeChangingBlock(BlockID(stage: s, block: 0))
            }
        }

        var out = checkpoint
        var stagePlans: [InterpolationPlan.StagePlan] = []
        for s in net.stages.indices {
            let stage = net.stages[s]
            guard seen.contains(s) else {
                stagePlans.append(.init(stage: s, width: stage.width, interpolated: false, rule: "unchanged",
                                        totalTimeBefore: stage.totalTime, totalTimeAfter: stage.totalTime,
                                        blocks: stage.blocks.indices.map {
                                            .init(new: $0, kind: .kept, source: $0, hBefore: stage.blocks[$0].h,
                                                  hAfter: stage.blocks[$0].h, origin: stage.blocks[$0].origin)
                                        }))
                continue
            }
            let (layout, rule) = interpolationLayout(stage, firstBlock: firstBlock)
            // How many new blocks carry each old block's parameters (for `.preserve`).
            var copies = [Int](repeating: 0, count: stage.blocks.count)
            for slot in layout { if case .old(let i, _) = slot.content { copies[i] += 1 } }
            let keepsBlock0 = firstBlock == .identity && stage.blocks[0].changesShape

            var sources: [BlockSource] = []
            var rows: [InterpolationPlan.BlockPlan] = []
            for (k, slot) in layout.enumerated() {
                let stepOwner = stage.blocks[slot.stepOf]
                switch slot.content {
                case .old(let i, let kind):
                    let hNew: Double = switch hPolicy {
                    case _ where keepsBlock0 && i == 0: stepOwner.h
                    case .halve: stepOwner.h / 2
                    case .keep: stepOwner.h
                    case .preserve: stepOwner.h / Double(copies[i])
                    }
                    let origin = kind == .kept ? nil : "copy:" + BlockID(stage: s, block: i).path
                    sources.append(.old(i, h: hNew, origin: origin))
                    rows.append(.init(new: k, kind: kind, source: i, hBefore: stepOwner.h, hAfter: hNew,
                                      origin: origin ?? stage.blocks[i].origin))
                case .identity:
                    let hNew = hPolicy == .keep ? stepOwner.h : stepOwner.h / 2
                    let fresh = identityBlock(width: stage.width, h: hNew, seed: identitySeed &+ UInt64(s))
                    sources.append(.fresh(fresh))
                    rows.append(.init(new: k, kind: .identity, source: nil, hBefore: stepOwner.h, hAfter: hNew,
                                      origin: fresh.origin))
                }
            }
            out.rebuildStage(s, from: sources)
            stagePlans.append(.init(stage: s, width: stage.width, interpolated: true,
                                    rule: rule(identitySeed &+ UInt64(s)),
                                    totalTimeBefore: stage.totalTime,
                                    totalTimeAfter: out.network.stages[s].totalTime, blocks: rows))
        }
        if resetOptimizer { out.optimizer = nil }

        let plan = InterpolationPlan(
            stages: stagePlans, firstBlock: firstBlock, hPolicy: hPolicy,
            optimizer: checkpoint.optimizer == nil ? .absent : (resetOptimizer ? .dropped : .remapped),
            blocksBefore: net.stageBlocks, blocksAfter: out.network.stageBlocks,
            parameterCountBefore: net.parameterCount, parameterCountAfter: out.network.parameterCount)
        out.appendEvent(.interpolate, [
            "stages": .array(chosen.map { .int($0) }),
            "first_block": .string(firstBlock.rawValue),
            "h_policy": .string(hPolicy.rawValue),
            "reset_optimizer": .bool(resetOptimizer),
            "identity_seed": seedJSON(identitySeed),
            "blocks_before": .string(net.blocksDescription),
            "blocks_after": .string(out.network.blocksDescription),
        ], parentSHA256: parentSHA256)
        return (out, plan)
    }

    /// One block of an interpolated stage, before step sizes are assigned.
    struct InterpolationSlot {
        enum Content { case old(Int, InterpolationPlan.BlockPlan.Kind), identity }
        var content: Content
        /// The old block whose time step this block shares.
        var stepOf: Int
    }

    /// The new blocks of an interpolated stage and the rule that chose new block 1
    /// (a text taking the identity block's seed).
    static func interpolationLayout(_ stage: Stage, firstBlock: FirstBlockPolicy)
        -> ([InterpolationSlot], (UInt64) -> String) {
        let n = stage.blocks.count
        let b0Changes = stage.blocks[0].changesShape
        var layout: [InterpolationSlot] = []
        var rule: (UInt64) -> String = { _ in "every block copied into the slot after it" }
        for i in 0..<n {
            layout.append(.init(content: .old(i, .kept), stepOf: i))
            if i == 0 {
                if firstBlock == .identity && b0Changes {
                    layout.append(.init(content: .identity, stepOf: 0))
                    rule = { seed in "first block identity: block 0 changes shape, so new block 1 is a fresh"
                        + " identity step (conv2 = 0 so F ≡ 0; conv1 He-normal, SplitMix64 seed \(seed); BN fresh)"
                        + " and block 0 keeps its h" }
                    continue
                }
                let wantNext = firstBlock == .next || ((firstBlock == .auto || firstBlock == .identity) && b0Changes)
                if wantNext && n > 1 {
                    layout.append(.init(content: .old(1, .copy), stepOf: 1))
                    rule = { _ in b0Changes
                        ? "Appendix B: block 0 changes shape, so new block 1 is a copy of old block 1"
                        : "first block next: new block 1 is a copy of old block 1" }
                    continue
                } else if b0Changes {
                    // Only block of the stage and it changes shape: nothing of the right shape
                    // to copy. A fresh block with conv2 = 0 has F ≡ 0: an exact identity step.
                    layout.append(.init(content: .identity, stepOf: 0))
                    rule = { seed in "the stage's only block changes shape: new block 1 is a fresh identity block"
                        + " (conv2 = 0 so F ≡ 0; conv1 He-normal, SplitMix64 seed \(seed); BN fresh)" }
                    continue
                }
            }
            layout.append(.init(content: .old(i, .copy), stepOf: i))
        }
        return (layout, rule)
    }

    /// A stride-1 block of `width` channels whose residual branch is exactly zero (conv2 = 0),
    /// so `Y + h·F(Y) = Y` whatever h; conv1 is He-normal (fan-in, gain √2) so that gradients
    /// reach conv2 once training resumes; both BNs are fresh (weight 1, bias 0, stats 0 and 1).
    public static func identityBlock(width: Int, h: Double, seed: UInt64) -> ResidualBlock {
        var rng = SplitMix64(seed: seed)
        var conv1 = Tensor(shape: [width, width, 3, 3])
        let std = (2.0 / Double(width * 9)).squareRoot()
        for k in conv1.data.indices { conv1.data[k] = Float(rng.nextNormal() * std) }
        return ResidualBlock(h: h, stride: 1, inChannels: width, outChannels: width,
                             origin: "identity:seed=\(seed)",
                             bn1: BatchNorm(channels: width), conv1: conv1,
                             bn2: BatchNorm(channels: width), conv2: Tensor(shape: [width, width, 3, 3]))
    }
}

/// What ``Surgery/interpolate(_:stages:firstBlock:hPolicy:resetOptimizer:identitySeed:parentSHA256:)`` did.
public struct InterpolationPlan: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.interpolate

    /// One new block: where it came from and its step size.
    public struct BlockPlan: Codable, Equatable, Sendable {
        /// Index in the new stage.
        public var new: Int
        /// Where a new block's parameters come from.
        public enum Kind: String, Codable, Sendable {
            /// The old block itself, moved to 2i.
            case kept
            /// A copy of every parameter and BN statistic of old block `source`.
            case copy
            /// A fresh block with conv2 = 0 (F ≡ 0: an exact identity step).
            case identity
        }
        public var kind: Kind
        /// Old block index whose parameters the new block carries (nil for "identity").
        public var source: Int?
        /// Step size of the old block whose time step this block shares, and the new step size.
        public var hBefore: Double
        public var hAfter: Double
        public var origin: String
    }

    public struct StagePlan: Codable, Equatable, Sendable {
        public var stage: Int
        public var width: Int
        public var interpolated: Bool
        /// How new block 1 was chosen (Appendix B, identity block, or the plain rule).
        public var rule: String
        public var totalTimeBefore: Double
        public var totalTimeAfter: Double
        public var blocks: [BlockPlan]
    }

    public var stages: [StagePlan]
    public var firstBlock: Surgery.FirstBlockPolicy
    public var hPolicy: Surgery.StepPolicy
    public var optimizer: OptimizerHandling
    public var blocksBefore: [Int]
    public var blocksAfter: [Int]
    public var parameterCountBefore: Int
    public var parameterCountAfter: Int

    enum CodingKeys: String, CodingKey {
        case op, stages, firstBlock = "first_block", hPolicy = "h_policy", optimizer
        case blocksBefore = "blocks_before", blocksAfter = "blocks_after"
        case parameterCountBefore = "parameters_before", parameterCountAfter = "parameters_after"
    }

    public var text: String {
        func d(_ b: [Int]) -> String { b.map(String.init).joined(separator: "-") }
        var lines = ["interpolate \(d(blocksBefore)) → \(d(blocksAfter)) (first block: \(firstBlock.rawValue),"
                     + " h: \(hPolicy.rawValue), optimizer: \(optimizer.rawValue));"
                     + " parameters \(parameterCountBefore) → \(parameterCountAfter)"]
        for st in stages {
            let sum = "Σh \(formatH(st.totalTimeBefore)) → \(formatH(st.totalTimeAfter))"
            guard st.interpolated else {
                lines.append("stage \(st.stage) (width \(st.width)): unchanged, \(st.blocks.count) blocks, \(sum)")
                continue
            }
            lines.append("stage \(st.stage) (width \(st.width)): \(st.blocks.count / 2) → \(st.blocks.count) blocks, \(sum)")
            lines.append("  \(st.rule)")
            for b in st.blocks {
                let from = b.source.map(String.init) ?? "new"
                let what: String
                switch b.kind {
                case .kept: what = "old block \(st.stage).\(from)"
                case .copy: what = "copy of old block \(st.stage).\(from)"
                case .identity: what = "fresh identity block (conv2 = 0)"
                }
                let arrow = "\(from)→\(b.new)'".padding(toLength: 8, withPad: " ", startingAt: 0)
                lines.append("  \(arrow) h \(formatH(b.hBefore)) → \(formatH(b.hAfter))  \(what)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
