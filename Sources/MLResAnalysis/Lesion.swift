import Foundation
import MLResModel

/// Lesion studies (the paper's Sec. 4.2, after Veit et al.): damage a trained network in
/// memory and measure the test error. Every edit is made by the same ``Surgery`` function that
/// `mlres-surgery` uses, so a row equals scoring the file that `mlres-surgery` would write.
public enum LesionMode: String, CaseIterable, Codable, Sendable {
    /// Remove each block in turn (`mlres-surgery remove --block S.B`): a block that keeps the
    /// shape is deleted, one that changes it keeps only its shortcut (h = 0).
    case single
    /// Permute the movable blocks of every stage with seed s (`mlres-surgery shuffle --stage i
    /// --seed s`, stage after stage), for s = 0..<seeds.
    case shuffle
    /// Remove k random movable blocks, for each k and s = 0..<seeds.
    case dropK = "drop-k"
}

/// One lesion and its effect.
public struct LesionRow: Codable, Equatable, Sendable {
    public var mode: LesionMode
    /// Short description, e.g. "remove 1.3", "shuffle seed 2", "drop 2 seed 0".
    public var label: String
    /// Removed blocks (input numbering), for single and drop-k.
    public var removed: [String]
    /// What removal did per removed block: "deleted" or "h=0".
    public var actions: [String]
    /// Shuffle: new order of every permuted stage, keyed by stage ("0": [1, 0]).
    public var orders: [String: [Int]]
    public var seed: Int?
    public var k: Int?
    /// Blocks per stage after the edit.
    public var blocksAfter: String?
    /// nil when the edit was refused (see `note`).
    public var error: Double?
    public var meanLoss: Double?
    /// error − intact error (and the same for the loss).
    public var deltaError: Double?
    public var deltaLoss: Double?
    /// Why a lesion could not be made (e.g. it would empty a stage).
    public var note: String?
    /// With BN recalibration (`--recalibrate-bn N`, issue 17): the lesioned network's error and
    /// loss after its running statistics were re-estimated, and their change from the
    /// recalibrated intact network (nil without recalibration or for a refused edit).
    public var errorRecalibrated: Double?
    public var meanLossRecalibrated: Double?
    public var deltaErrorRecalibrated: Double?
    public var deltaLossRecalibrated: Double?

    enum CodingKeys: String, CodingKey {
        case mode, label, removed, actions, orders, seed, k, blocksAfter = "blocks_after", error
        case meanLoss = "mean_loss", deltaError = "delta_error", deltaLoss = "delta_loss", note
        case errorRecalibrated = "error_recalibrated", meanLossRecalibrated = "mean_loss_recalibrated"
        case deltaErrorRecalibrated = "delta_error_recalibrated", deltaLossRecalibrated = "delta_loss_recalibrated"
    }

    public init(mode: LesionMode, label: String, removed: [String] = [], actions: [String] = [],
                orders: [String: [Int]] = [:], seed: Int? = nil, k: Int? = nil, blocksAfter: String? = nil,
                error: Double? = nil, meanLoss: Double? = nil, deltaError: Double? = nil,
                deltaLoss: Double? = nil, note: String? = nil) {
        self.mode = mode; self.label = label; self.removed = removed; self.actions = actions
        self.orders = orders; self.seed = seed; self.k = k; self.blocksAfter = blocksAfter
        self.error = error; self.meanLoss = meanLoss; self.deltaError = deltaError
        self.deltaLoss = deltaLoss; self.note = note
    }

    public func encode(to encoder: Encoder) throws {
        // Write every key (null where absent) so the schema does not depend on the row.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mode, forKey: .mode); try c.encode(label, forKey: .label)
        try c.encode(removed, forKey: .removed); try c.encode(actions, forKey: .actions)
        try c.encode(orders, forKey: .orders); try c.encode(seed, forKey: .seed); try c.encode(k, forKey: .k)
        try c.encode(blocksAfter, forKey: .blocksAfter); try c.encode(error, forKey: .error)
        try c.encode(meanLoss, forKey: .meanLoss); try c.encode(deltaError, forKey: .deltaError)
        try c.encode(deltaLoss, forKey: .deltaLoss); try c.encode(note, forKey: .note)
        try c.encode(errorRecalibrated, forKey: .errorRecalibrated)
        try c.encode(meanLossRecalibrated, forKey: .meanLossRecalibrated)
        try c.encode(deltaErrorRecalibrated, forKey: .deltaErrorRecalibrated)
        try c.encode(deltaLossRecalibrated, forKey: .deltaLossRecalibrated)
    }
}

/// `mlres-eval lesion --json`.
public struct LesionReport: Codable, Sendable {
    public var checkpoint: String
    public var sha256: String
    public var dataset: String
    public var images: Int
    public var mode: LesionMode
    public var blocks: String
    public var intactError: Double
    public var intactLoss: Double
    public var rows: [LesionRow]
    /// BN recalibration of every scored network (issue 17): its lineage-style arguments
    /// (batches, batch size, seed, ...), and the recalibrated intact network's error and loss;
    /// nil without recalibration.
    public var recalibration: [String: JSONValue]?
    public var intactErrorRecalibrated: Double?
    public var intactLossRecalibrated: Double?
    enum CodingKeys: String, CodingKey {
        case checkpoint, sha256, dataset, images, mode, blocks
        case intactError = "intact_error", intactLoss = "intact_loss", rows
        case recalibration, intactErrorRecalibrated = "intact_error_recalibrated"
        case intactLossRecalibrated = "intact_loss_recalibrated"
    }

    public init(checkpoint: String, sha256: String, dataset: String, images: Int, mode: LesionMode,
                blocks: String, intactError: Double, intactLoss: Double, rows: [LesionRow],
                recalibration: [String: JSONValue]? = nil, intactRecalibrated: Evaluation? = nil) {
        self.checkpoint = checkpoint; self.sha256 = sha256; self.dataset = dataset; self.images = images
        self.mode = mode; self.blocks = blocks; self.intactError = intactError; self.intactLoss = intactLoss
        self.rows = rows
        self.recalibration = recalibration
        intactErrorRecalibrated = intactRecalibrated?.error; intactLossRecalibrated = intactRecalibrated?.meanLoss
    }
}

/// One planned lesion: its row (without scores) and the edited checkpoint, or why the edit
/// was refused.
public struct LesionEdit: Sendable {
    public var row: LesionRow
    public var result: Result<Checkpoint, SurgeryError>
}

public enum LesionStudy {
    /// Blocks that keep the shape (the ones removal deletes and shuffle moves).
    public static func movableBlocks(_ network: Network) -> [BlockID] {
        network.stages.enumerated().flatMap { s, stage in
            stage.blocks.indices.filter { !stage.blocks[$0].changesShape }.map { BlockID(stage: s, block: $0) }
        }
    }

    /// The `k` blocks that drop-k removes for `seed`: the movable blocks in a SplitMix64(seed)
    /// Fisher–Yates order, taken from the front, passing over a block whose removal would leave
    /// its stage empty. For one seed the k-set contains the (k−1)-set. nil when fewer than k
    /// blocks can go.
    public static func dropSelection(_ network: Network, k: Int, seed: UInt64) -> [BlockID]? {
        var order = movableBlocks(network)
        var rng = SplitMix64(seed: seed)
        rng.shuffle(&order)
        var left = network.stageBlocks
        var chosen: [BlockID] = []
        for id in order where chosen.count < k {
            // A stage keeps any shape-changing block, so only all-movable stages can empty.
            let pinned = network.stages[id.stage].blocks.contains { $0.changesShape }
            if !pinned && left[id.stage] == 1 { continue }
            chosen.append(id); left[id.stage] -= 1
        }
        return chosen.count == k ? chosen.sorted() : nil
    }

    /// The edits of one study, in row order. Every edit goes through ``Surgery``.
    public static func edits(_ ckpt: Checkpoint, mode: LesionMode, seeds: Int = 5, ks: [Int] = [1, 2, 4]) -> [LesionEdit] {
        let net = ckpt.network
        func blank(_ label: String) -> LesionRow {
            LesionRow(mode: mode, label: label, removed: [], actions: [], orders: [:])
        }
        func removal(_ row: LesionRow, _ ids: [BlockID]) -> LesionEdit {
            var row = row
            row.removed = ids.map(\.description)
            do {
                let (out, plan) = try Surgery.remove(ckpt, blocks: ids)
                row.actions = ids.map { id in plan.actions.first { $0.block == id.description }?.action.rawValue ?? "?" }
                row.blocksAfter = out.network.blocksDescription
                return LesionEdit(row: row, result: .success(out))
            } catch let e as SurgeryError {
                row.note = e.description
                return LesionEdit(row: row, result: .failure(e))
            } catch {
                row.note = "\(error)"
                return LesionEdit(row: row, result: .failure(.emptySelection("\(error)")))
            }
        }
        switch mode {
        case .single:
            return net.stages.enumerated().flatMap { s, stage in
                stage.blocks.indices.map { b in
                    let id = BlockID(stage: s, block: b)
                    return removal(blank("remove \(id)"), [id])
                }
            }
        case .dropK:
            var out: [LesionEdit] = []
            for k in ks {
                for seed in 0 ..< seeds {
                    var row = blank("drop \(k) seed \(seed)")
                    row.k = k; row.seed = seed
                    if let ids = dropSelection(net, k: k, seed: UInt64(seed)) {
                        out.append(removal(row, ids))
                    } else {
                        row.note = "cannot remove \(k) movable blocks without emptying a stage (\(movableBlocks(net).count) movable)"
                        out.append(LesionEdit(row: row, result: .failure(.emptySelection("\(k) blocks"))))
                    }
                }
            }
            return out
        case .shuffle:
            var out: [LesionEdit] = []
            for seed in 0 ..< seeds {
                var row = blank("shuffle seed \(seed)")
                row.seed = seed
                var c = ckpt
                do {
                    for (s, stage) in net.stages.enumerated()
                    where stage.blocks.filter({ !$0.changesShape }).count >= 2 {
                        let (next, plan) = try Surgery.shuffle(c, stage: s, .seed(UInt64(seed)))
                        row.orders[String(s)] = plan.order
                        c = next
                    }
                    row.blocksAfter = c.network.blocksDescription
                    if row.orders.isEmpty { row.note = "no stage has two blocks that can move" }
                    out.append(LesionEdit(row: row, result: .success(c)))
                } catch let e as SurgeryError {
                    row.note = e.description
                    out.append(LesionEdit(row: row, result: .failure(e)))
                } catch {
                    row.note = "\(error)"
                    out.append(LesionEdit(row: row, result: .failure(.emptySelection("\(error)"))))
                }
            }
            return out
        }
    }

    /// Scores the intact network and every edit of the study.
    ///
    /// - Parameter recalibrate: BN recalibration (issue 17, e.g. ``Recalibration/recalibrated(_:train:settings:threads:)``):
    ///   when given, the intact network and every lesioned one are also scored after it, and
    ///   the rows carry those numbers beside the plain ones (``LesionRow/errorRecalibrated``,
    ///   deltas against the recalibrated intact network).
    /// - Returns: the intact network's evaluation, and with `recalibrate` the recalibrated
    ///   intact one's, and one row per edit.
    public static func run(_ ckpt: Checkpoint, evaluator: Evaluator, mode: LesionMode, seeds: Int = 5,
                           ks: [Int] = [1, 2, 4], name: String = "network",
                           recalibrate: ((Network) throws -> Network)? = nil,
                           progress: ((LesionRow) -> Void)? = nil)
        throws -> (intact: Evaluation, rows: [LesionRow], intactRecalibrated: Evaluation?) {
        guard seeds > 0 else { throw AnalysisError("--seeds must be positive (got \(seeds))") }
        if let bad = ks.first(where: { $0 <= 0 }) { throw AnalysisError("--k: \(bad) is not a positive number of blocks") }
        let intact = try evaluator.evaluate(ckpt.network, name: name)
        let intactR = try recalibrate.map { try evaluator.evaluate(try $0(ckpt.network), name: name + " (BN recalibrated)") }
        var rows: [LesionRow] = []
        for edit in edits(ckpt, mode: mode, seeds: seeds, ks: ks) {
            var row = edit.row
            if case .success(let edited) = edit.result {
                let ev = try evaluator.evaluate(edited.network, name: "\(name) (\(row.label))")
                row.error = ev.error; row.meanLoss = ev.meanLoss
                row.deltaError = ev.error - intact.error; row.deltaLoss = ev.meanLoss - intact.meanLoss
                if let recalibrate, let intactR {
                    let r = try evaluator.evaluate(try recalibrate(edited.network), name: "\(name) (\(row.label), BN recalibrated)")
                    row.errorRecalibrated = r.error; row.meanLossRecalibrated = r.meanLoss
                    row.deltaErrorRecalibrated = r.error - intactR.error
                    row.deltaLossRecalibrated = r.meanLoss - intactR.meanLoss
                }
            }
            progress?(row)
            rows.append(row)
        }
        return (intact, rows, intactR)
    }
}
