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
    }

    /// What happens to the step sizes of an interpolated stage.
    public enum StepPolicy: String, CaseIterable, Sendable, Codable {
        /// Both halves of old block i get h_i / 2: Σh of the stage is unchanged (the paper).
        case halve
        /// Both halves keep h_i: the stage's time interval doubles.
        case keep
    }

    /// Default seed of the He-normal conv1 of a fresh identity block: stage s uses
    /// `SplitMix64(seed: defaultIdentitySeed + s)`, i.e. seed s.
    public static let defaultIdentitySeed: UInt64 = 0

    /// Interpolates the chosen stages of `checkpoint`.
    ///
    /// - Parameters:
    ///   - stages: stage numbers to interpolate, nil for all.
    ///   - firstBlock: which old block new block 1 copies (see ``FirstBlockPolicy``).
    ///   - hPolicy: halve (Σh unchanged) or keep the step sizes.
    ///   - resetOptimizer: drop the optimizer state instead of remapping its momentum buffers.
    ///   - identitySeed: seed of the conv1 of a fresh identity block (used only for a stage whose
    ///     only block changes shape): stage s draws He-normal weights from
    ///     `SplitMix64(seed: identitySeed + s)`.
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
        let chosen = stages ?? Array(net.stages.indices)
        if chosen.isEmpty { throw SurgeryError.emptySelection("the list of stages") }
        var seen = Set<Int>()
        for s in chosen {
            guard net.stages.indices.contains(s) else { throw SurgeryError.unknownStage(s, stages: net.stages.count) }
            guard seen.insert(s).inserted else { throw SurgeryError.duplicateStage(s) }
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
            let n = stage.blocks.count
            guard seen.contains(s) else {
                stagePlans.append(.init(stage: s, width: stage.width, interpolated: false, rule: "unchanged",
                                        totalTimeBefore: stage.totalTime, totalTimeAfter: stage.totalTime,
                                        blocks: stage.blocks.indices.map {
                                            .init(new: $0, kind: "kept", source: $0, hBefore: stage.blocks[$0].h,
                                                  hAfter: stage.blocks[$0].h, origin: stage.blocks[$0].origin)
                                        }))
                continue
            }
            let b0Changes = stage.blocks[0].changesShape
            var sources: [BlockSource] = []
            var rows: [InterpolationPlan.BlockPlan] = []
            var rule = "every block copied into the slot after it"
            for i in 0..<n {
                let old = stage.blocks[i]
                let hNew = hPolicy == .halve ? old.h / 2 : old.h
                sources.append(.old(i, h: hNew, origin: nil))
                rows.append(.init(new: 2 * i, kind: "kept", source: i, hBefore: old.h, hAfter: hNew, origin: old.origin))

                // The block inserted after old block i.
                var src = i
                if i == 0 {
                    let wantNext = firstBlock == .next || (firstBlock == .auto && b0Changes)
                    if wantNext && n > 1 {
                        src = 1
                        rule = b0Changes
                            ? "Appendix B: block 0 changes shape, so new block 1 is a copy of old block 1"
                            : "first block next: new block 1 is a copy of old block 1"
                    } else if b0Changes {
                        // Only block of the stage and it changes shape: nothing of the right shape
                        // to copy. A fresh block with conv2 = 0 has F ≡ 0: an exact identity step.
                        let seed = identitySeed &+ UInt64(s)
                        let fresh = identityBlock(width: stage.width, h: hNew, seed: seed)
                        sources.append(.fresh(fresh))
                        rows.append(.init(new: 1, kind: "identity", source: nil, hBefore: old.h, hAfter: hNew,
                                          origin: fresh.origin))
                        rule = "the stage's only block changes shape: new block 1 is a fresh identity block"
                            + " (conv2 = 0 so F ≡ 0; conv1 He-normal, SplitMix64 seed \(seed); BN fresh)"
                        continue
                    }
                }
                let origin = "copy:" + BlockID(stage: s, block: src).path
                sources.append(.old(src, h: hNew, origin: origin))
                rows.append(.init(new: 2 * i + 1, kind: "copy", source: src, hBefore: old.h, hAfter: hNew, origin: origin))
            }
            out.rebuildStage(s, from: sources)
            stagePlans.append(.init(stage: s, width: stage.width, interpolated: true, rule: rule,
                                    totalTimeBefore: stage.totalTime,
                                    totalTimeAfter: out.network.stages[s].totalTime, blocks: rows))
        }
        if resetOptimizer { out.optimizer = nil }

        let plan = InterpolationPlan(
            stages: stagePlans, firstBlock: firstBlock, hPolicy: hPolicy,
            optimizer: checkpoint.optimizer == nil ? "absent" : (resetOptimizer ? "dropped" : "momentum remapped"),
            blocksBefore: net.stageBlocks, blocksAfter: out.network.stageBlocks,
            parameterCountBefore: net.parameterCount, parameterCountAfter: out.network.parameterCount)
        out.appendEvent("interpolate", [
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
    public var op: String { "interpolate" }

    /// One new block: where it came from and its step size.
    public struct BlockPlan: Codable, Equatable, Sendable {
        /// Index in the new stage.
        public var new: Int
        /// "kept" (old block moved to 2i), "copy" (parameters copied from `source`),
        /// or "identity" (fresh block with F ≡ 0).
        public var kind: String
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
    /// "absent", "dropped" or "momentum remapped".
    public var optimizer: String
    public var blocksBefore: [Int]
    public var blocksAfter: [Int]
    public var parameterCountBefore: Int
    public var parameterCountAfter: Int

    enum CodingKeys: String, CodingKey {
        case op, stages, firstBlock = "first_block", hPolicy = "h_policy", optimizer
        case blocksBefore = "blocks_before", blocksAfter = "blocks_after"
        case parameterCountBefore = "parameters_before", parameterCountAfter = "parameters_after"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(op, forKey: .op)
        try c.encode(stages, forKey: .stages)
        try c.encode(firstBlock, forKey: .firstBlock)
        try c.encode(hPolicy, forKey: .hPolicy)
        try c.encode(optimizer, forKey: .optimizer)
        try c.encode(blocksBefore, forKey: .blocksBefore)
        try c.encode(blocksAfter, forKey: .blocksAfter)
        try c.encode(parameterCountBefore, forKey: .parameterCountBefore)
        try c.encode(parameterCountAfter, forKey: .parameterCountAfter)
    }

    public var text: String {
        func d(_ b: [Int]) -> String { b.map(String.init).joined(separator: "-") }
        var lines = ["interpolate \(d(blocksBefore)) → \(d(blocksAfter)) (first block: \(firstBlock.rawValue),"
                     + " h: \(hPolicy.rawValue), optimizer: \(optimizer));"
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
                case "kept": what = "old block \(st.stage).\(from)"
                case "copy": what = "copy of old block \(st.stage).\(from)"
                default: what = "fresh identity block (conv2 = 0)"
                }
                let arrow = "\(from)→\(b.new)'".padding(toLength: 8, withPad: " ", startingAt: 0)
                lines.append("  \(arrow) h \(formatH(b.hBefore)) → \(formatH(b.hAfter))  \(what)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
