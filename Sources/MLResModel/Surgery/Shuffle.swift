/// Shuffle: reorder the Euler steps of a stage.
///
/// If the residual functions F_j of a stage vary slowly with j (the paper's observation that
/// a trained ResNet approximates a smooth flow), reordering the steps changes the result only a
/// little, the way the order of small steps of a slowly varying vector field matters only at
/// second order. A block that changes shape stays in place: the blocks around it have different
/// shapes.
extension Surgery {
    /// How to permute a stage: a seed (SplitMix64 Fisher–Yates over the movable blocks) or an
    /// explicit order (`order[newIndex] = oldIndex`).
    public enum Permutation: Sendable, Equatable {
        case seed(UInt64)
        case order([Int])
    }

    /// Permutes the blocks of `stage`. With `.seed`, only blocks that keep the shape move (a
    /// shape-changing block 0 stays at 0); with `.order`, new block k is old block `order[k]`.
    ///
    /// - Throws: ``SurgeryError`` for an unknown stage, an order that is not a permutation of
    ///   the stage's blocks, or one that moves a shape-changing block.
    public static func shuffle(_ checkpoint: Checkpoint, stage s: Int, _ permutation: Permutation,
                               parentSHA256: String? = nil) throws -> (Checkpoint, ShufflePlan) {
        let net = checkpoint.network
        guard net.stages.indices.contains(s) else { throw SurgeryError.unknownStage(s, stages: net.stages.count) }
        let blocks = net.stages[s].blocks
        let n = blocks.count
        var order: [Int]
        var args: [String: JSONValue] = ["stage": .int(s)]
        switch permutation {
        case .order(let o):
            guard o.count == n, Set(o) == Set(0..<n) else {
                throw SurgeryError.notAPermutation(stage: s, order: o, blocks: n)
            }
            for (k, i) in o.enumerated() where blocks[i].changesShape && k != i {
                throw SurgeryError.movesShapeChangingBlock(BlockID(stage: s, block: i), to: k)
            }
            order = o
        case .seed(let seed):
            var rng = SplitMix64(seed: seed)
            let movable = (0..<n).filter { !blocks[$0].changesShape }
            var shuffled = movable
            rng.shuffle(&shuffled)
            order = Array(0..<n)
            for (slot, i) in zip(movable, shuffled) { order[slot] = i }
            args["seed"] = seedJSON(seed)
        }
        args["order"] = .array(order.map { .int($0) })

        var out = checkpoint
        out.rebuildStage(s, from: order.map { .old($0, h: nil, origin: nil) })
        let pinned = (0..<n).filter { blocks[$0].changesShape }
        let plan = ShufflePlan(stage: s, order: order, pinned: pinned,
                               hAfter: out.network.stages[s].blocks.map(\.h))
        out.appendEvent(.shuffle, args, parentSHA256: parentSHA256)
        return (out, plan)
    }
}

/// What ``Surgery/shuffle(_:stage:_:parentSHA256:)`` did.
public struct ShufflePlan: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.shuffle
    public var stage: Int
    /// `order[newIndex] = oldIndex`.
    public var order: [Int]
    /// Shape-changing blocks that stayed in place.
    public var pinned: [Int]
    /// Step sizes in the new order (each block keeps its own h).
    public var hAfter: [Double]

    enum CodingKeys: String, CodingKey { case op, stage, order, pinned, hAfter = "h_after" }

    public var text: String {
        var lines = ["shuffle stage \(stage): new order \(order.map(String.init).joined(separator: ","))"
                     + (pinned.isEmpty ? "" : " (block\(pinned.count == 1 ? "" : "s") "
                        + pinned.map { "\(stage).\($0)" }.joined(separator: ", ")
                        + (pinned.count == 1 ? " changes shape and stays" : " change shape and stay") + " in place)")]
        if order == Array(order.indices) { lines.append("  the permutation is the identity: no block moves") }
        for (k, i) in order.enumerated() {
            lines.append("  \(i)→\(k)'  h \(formatH(hAfter[k]))" + (i == k ? "  (unmoved)" : ""))
        }
        return lines.joined(separator: "\n")
    }
}
