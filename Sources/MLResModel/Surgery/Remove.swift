/// Removal (lesion): drop Euler steps from the discretised flow.
///
/// Block j computes Y_{j+1} = P(Y_j) + h_j·F_j(Y_j). Removing it changes that block's output by
/// exactly h_j·F_j(Y_j) (the paper's Eq. 8): when the step is small, the rest of the network
/// sees almost the same features. A block that keeps the shape (P = identity) is deleted and the
/// later blocks of its stage renumbered. A block that changes shape (stride 2 or Cin ≠ Cout)
/// cannot disappear, since the shapes before and after it differ; instead its step is switched
/// off with h = 0, which leaves exactly the shortcut P(Y_j) (subsample + zero-pad).
extension Surgery {
    /// Removes `blocks` from `checkpoint` (ids refer to the input's numbering).
    ///
    /// - Throws: ``SurgeryError`` for an empty list, an unknown or repeated block, or a stage
    ///   that would end up with no blocks.
    public static func remove(_ checkpoint: Checkpoint, blocks ids: [BlockID],
                              parentSHA256: String? = nil) throws -> (Checkpoint, RemovalPlan) {
        let net = checkpoint.network
        if ids.isEmpty { throw SurgeryError.emptySelection("the list of blocks to remove") }
        try validateBlockIDs(ids, in: net)
        let chosen = Set(ids)
        for s in net.stages.indices {
            let left = net.stages[s].blocks.indices.filter { b in
                !chosen.contains(BlockID(stage: s, block: b)) || net.stages[s].blocks[b].changesShape
            }
            if left.isEmpty { throw SurgeryError.stageWouldBeEmpty(stage: s) }
        }

        var out = checkpoint
        var actions: [RemovalPlan.Action] = []
        for s in net.stages.indices where ids.contains(where: { $0.stage == s }) {
            var sources: [BlockSource] = []
            for (b, block) in net.stages[s].blocks.enumerated() {
                let id = BlockID(stage: s, block: b)
                guard chosen.contains(id) else { sources.append(.old(b, h: nil, origin: nil)); continue }
                if block.changesShape {
                    actions.append(.init(block: id.description, action: .zeroed, hBefore: block.h,
                                         newIndex: sources.count))
                    sources.append(.old(b, h: 0, origin: nil))
                } else {
                    actions.append(.init(block: id.description, action: .deleted, hBefore: block.h, newIndex: nil))
                }
            }
            out.rebuildStage(s, from: sources)
        }
        actions.sort { BlockID($0.block)! < BlockID($1.block)! }
        let plan = RemovalPlan(actions: actions, blocksBefore: net.stageBlocks, blocksAfter: out.network.stageBlocks)
        out.appendEvent(.remove, [
            "blocks": .array(ids.sorted().map { .string($0.description) }),
            "deleted": .array(actions.filter { $0.action == .deleted }.map { .string($0.block) }),
            "zeroed": .array(actions.filter { $0.action == .zeroed }.map { .string($0.block) }),
        ], parentSHA256: parentSHA256)
        return (out, plan)
    }
}

/// What ``Surgery/remove(_:blocks:parentSHA256:)`` did.
public struct RemovalPlan: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.remove

    public struct Action: Codable, Equatable, Sendable {
        /// Block id in the input ("S.B").
        public var block: String
        /// What happened to a removed block.
        public enum Kind: String, Codable, Sendable {
            /// A shape-keeping block: deleted, later blocks renumbered.
            case deleted
            /// A shape-changing block kept with its residual branch switched off (h = 0):
            /// exactly the shortcut P(Y).
            case zeroed = "h=0"
        }
        public var action: Kind
        public var hBefore: Double
        /// Index of the block in its stage after the operation (nil when deleted).
        public var newIndex: Int?
        enum CodingKeys: String, CodingKey { case block, action, hBefore = "h_before", newIndex = "new_index" }
    }

    public var actions: [Action]
    public var blocksBefore: [Int]
    public var blocksAfter: [Int]

    enum CodingKeys: String, CodingKey {
        case op, actions, blocksBefore = "blocks_before", blocksAfter = "blocks_after"
    }

    public var text: String {
        func d(_ b: [Int]) -> String { b.map(String.init).joined(separator: "-") }
        var lines = ["remove: \(d(blocksBefore)) → \(d(blocksAfter))"]
        for a in actions {
            if a.action == .deleted {
                lines.append("  block \(a.block) (h \(formatH(a.hBefore))): deleted, later blocks of stage \(a.block.split(separator: ".")[0]) renumbered")
            } else {
                lines.append("  block \(a.block) (h \(formatH(a.hBefore))): changes shape, kept with h = 0 (output = shortcut P(Y) only)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
