/// Set step sizes: change the h of the Euler steps without touching the residual functions.
///
/// With Y_{j+1} = P(Y_j) + h_j·F_j(Y_j), h_j scales the contribution of block j; h = 0 turns a
/// block into its shortcut, and Σh is the length of the time interval a stage integrates over.
extension Surgery {
    /// Sets h of every block, or of `block` only.
    ///
    /// - Throws: ``SurgeryError`` for a negative, infinite or NaN h or an unknown block.
    public static func setH(_ checkpoint: Checkpoint, h: Double, block: BlockID? = nil,
                            parentSHA256: String? = nil) throws -> (Checkpoint, SetHPlan) {
        guard h.isFinite, h >= 0 else { throw SurgeryError.invalidStepSize(h) }
        var out = checkpoint
        let net = checkpoint.network
        var changes: [SetHPlan.Change] = []
        let targets: [BlockID]
        if let block {
            guard net.block(block) != nil else { throw SurgeryError.unknownBlock(block, stageBlocks: net.stageBlocks) }
            targets = [block]
        } else {
            targets = net.stages.indices.flatMap { s in net.stages[s].blocks.indices.map { BlockID(stage: s, block: $0) } }
        }
        for id in targets {
            changes.append(.init(block: id.description, hBefore: net.stages[id.stage].blocks[id.block].h, hAfter: h))
            out.network.stages[id.stage].blocks[id.block].h = h
        }
        var args: [String: JSONValue] = ["h": .double(h)]
        if let block { args["block"] = .string(block.description) }
        out.appendEvent(.setH, args, parentSHA256: parentSHA256)
        let plan = SetHPlan(h: h, block: block?.description, changes: changes,
                            totalTimeBefore: net.stages.map(\.totalTime),
                            totalTimeAfter: out.network.stages.map(\.totalTime))
        return (out, plan)
    }
}

/// What ``Surgery/setH(_:h:block:parentSHA256:)`` did.
public struct SetHPlan: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.setH
    public struct Change: Codable, Equatable, Sendable {
        public var block: String
        public var hBefore: Double
        public var hAfter: Double
        enum CodingKeys: String, CodingKey { case block, hBefore = "h_before", hAfter = "h_after" }
    }
    public var h: Double
    /// The one block changed, or nil for all.
    public var block: String?
    public var changes: [Change]
    /// Σh per stage before and after.
    public var totalTimeBefore: [Double]
    public var totalTimeAfter: [Double]

    enum CodingKeys: String, CodingKey {
        case op, h, block, changes, totalTimeBefore = "stage_total_h_before", totalTimeAfter = "stage_total_h_after"
    }

    public var text: String {
        var lines = ["set-h \(formatH(h)) on " + (block.map { "block \($0)" } ?? "every block")]
        for c in changes { lines.append("  block \(c.block): h \(formatH(c.hBefore)) → \(formatH(c.hAfter))") }
        lines.append("  Σh per stage: " + zip(totalTimeBefore, totalTimeAfter)
            .map { "\(formatH($0)) → \(formatH($1))" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
