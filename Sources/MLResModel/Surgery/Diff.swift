import Foundation

/// Diff: compare two checkpoints' networks.
///
/// Structure is compared by content, not by number: in each stage, blocks with bit-identical
/// parameters and BN statistics (h and origin aside) are the same block, and the two block
/// sequences are aligned by their longest common subsequence. Aligned blocks are "same" (same
/// index) or "renumbered" (index shifted by an insertion or deletion before them); a block found
/// on both sides but outside the alignment "moved"; unaligned blocks at the same index with the
/// same shape "modified"; the rest "removed" (only in A) or "added" (only in B; when its
/// parameters equal a block of A it is reported as a copy of that block). So removing block 1.1
/// and diffing reports exactly "1.1 removed", and an interpolation reports the inserted copies.
///
/// Tensors are compared by path: for each path present in both with the same shape, the max
/// |b − a| and the relative L2 difference ‖b − a‖₂ / ‖a‖₂ (0 when both are zero, inf when
/// only a is zero).
///
/// The two are *equal* when the models agree: same attributes, same blocks at the same places,
/// same h, every tensor bit for bit. Origins, optimizer state, training state and lineage are
/// reported but do not count.
extension Surgery {
    /// Compares `a` with `b` (A is the reference, B the other).
    public static func diff(_ a: Checkpoint, _ b: Checkpoint) -> DiffReport {
        let na = a.network, nb = b.network
        var attrs: [DiffReport.AttributeChange] = []
        func attr(_ name: String, _ x: String, _ y: String) { if x != y { attrs.append(.init(name: name, a: x, b: y)) } }
        func list<T>(_ v: [T]) -> String { "[" + v.map { "\($0)" }.joined(separator: ",") + "]" }
        attr("input_shape", list(na.inputShape), list(nb.inputShape))
        attr("num_classes", "\(na.numClasses)", "\(nb.numClasses)")
        attr("stage_widths", list(na.stageWidths), list(nb.stageWidths))
        attr("stage_blocks", list(na.stageBlocks), list(nb.stageBlocks))
        attr("bn_epsilon", "\(na.bnEpsilon)", "\(nb.bnEpsilon)")
        attr("bn_momentum", "\(na.bnMomentum)", "\(nb.bnMomentum)")
        attr("input_mean", list(na.inputMean), list(nb.inputMean))
        attr("input_std", list(na.inputStd), list(nb.inputStd))
        attr("class_names", na.classNames.map(list) ?? "none", nb.classNames.map(list) ?? "none")

        var stages: [DiffReport.StageDiff] = []
        for s in 0..<max(na.stages.count, nb.stages.count) {
            let ba = s < na.stages.count ? na.stages[s].blocks : []
            let bb = s < nb.stages.count ? nb.stages[s].blocks : []
            stages.append(.init(stage: s, blocksA: ba.count, blocksB: bb.count,
                                entries: alignStage(s, ba, bb)))
        }

        var tensors: [DiffReport.TensorDiff] = []
        var onlyA: [String] = [], onlyB: [String] = [], shapeMismatch: [String] = []
        let tb = Dictionary(nb.namedTensors.map { ($0.path, $0.tensor) }, uniquingKeysWith: { x, _ in x })
        var seenA = Set<String>()
        for t in na.namedTensors {
            seenA.insert(t.path)
            guard let other = tb[t.path] else { onlyA.append(t.path); continue }
            guard other.shape == t.tensor.shape else { shapeMismatch.append(t.path); continue }
            let (maxAbs, rel) = compare(t.tensor, other)
            tensors.append(.init(path: t.path, shape: t.tensor.shape, maxAbs: maxAbs, relL2: rel))
        }
        for t in nb.namedTensors where !seenA.contains(t.path) { onlyB.append(t.path) }

        var optimizer = "absent in both"
        switch (a.optimizer, b.optimizer) {
        case (nil, nil): break
        case (let x?, nil): optimizer = "only A has optimizer state (\(x.buffers.count) buffers)"
        case (nil, let y?): optimizer = "only B has optimizer state (\(y.buffers.count) buffers)"
        case (let x?, let y?):
            let common = Set(x.buffers.keys).intersection(y.buffers.keys)
            let differing = common.filter { x.buffers[$0] != y.buffers[$0] }.count
            optimizer = "A \(x.buffers.count) buffers, B \(y.buffers.count), \(common.count) at the same path"
                + " of which \(differing) differ"
        }

        let structureEqual = na.stages.count == nb.stages.count
            && stages.allSatisfy { $0.entries.allSatisfy { $0.kind == .same } }
        let hEqual = stages.allSatisfy { $0.entries.allSatisfy { $0.hA == nil || $0.hB == nil || $0.hA == $0.hB } }
        let tensorsEqual = onlyA.isEmpty && onlyB.isEmpty && shapeMismatch.isEmpty
            && tensors.allSatisfy { $0.maxAbs == 0 }
        return DiffReport(equal: attrs.isEmpty && structureEqual && hEqual && tensorsEqual,
                          attributes: attrs, stages: stages, tensors: tensors,
                          onlyInA: onlyA, onlyInB: onlyB, shapeMismatch: shapeMismatch,
                          optimizer: optimizer, lineageA: a.lineage.count, lineageB: b.lineage.count)
    }

    /// True when two blocks carry the same parameters and statistics (h and origin ignored).
    static func sameParameters(_ x: ResidualBlock, _ y: ResidualBlock) -> Bool {
        x.stride == y.stride && x.inChannels == y.inChannels && x.outChannels == y.outChannels
            && x.conv1 == y.conv1 && x.conv2 == y.conv2 && x.bn1 == y.bn1 && x.bn2 == y.bn2
    }

    /// Aligns the blocks of one stage (see the type comment of the diff).
    static func alignStage(_ s: Int, _ a: [ResidualBlock], _ b: [ResidualBlock]) -> [DiffReport.BlockEntry] {
        // Content classes shared by both sides.
        var reps: [ResidualBlock] = []
        func classOf(_ x: ResidualBlock) -> Int {
            if let k = reps.firstIndex(where: { sameParameters($0, x) }) { return k }
            reps.append(x); return reps.count - 1
        }
        let ca = a.map(classOf), cb = b.map(classOf)
        let n = a.count, m = b.count
        // lcs[i][j] = LCS length of ca[i...] and cb[j...].
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = ca[i] == cb[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var pairs: [(Int, Int)] = []
        var i = 0, j = 0
        while i < n && j < m {
            if ca[i] == cb[j] {
                // Prefer not to anchor on a B block that says it is a copy of something else,
                // when skipping it loses nothing (so inserted copies show up as "added").
                let isCopy = b[j].origin.hasPrefix("copy:") && b[j].origin != a[i].origin
                if isCopy && lcs[i][j + 1] == lcs[i][j] { j += 1; continue }
                pairs.append((i, j)); i += 1; j += 1
            } else if lcs[i + 1][j] >= lcs[i][j + 1] { i += 1 } else { j += 1 }
        }
        var entries: [DiffReport.BlockEntry] = []
        func entry(_ kind: DiffReport.BlockEntry.Kind, _ i: Int?, _ j: Int?, copyOf: Int? = nil) {
            entries.append(.init(kind: kind, a: i.map { "\(s).\($0)" }, b: j.map { "\(s).\($0)" },
                                 hA: i.map { a[$0].h }, hB: j.map { b[$0].h },
                                 originA: i.map { a[$0].origin }, originB: j.map { b[$0].origin },
                                 copyOf: copyOf.map { "\(s).\($0)" }))
        }
        for (i, j) in pairs { entry(i == j ? .same : .renumbered, i, j) }
        var leftA = Set(0..<n).subtracting(pairs.map(\.0))
        var leftB = Set(0..<m).subtracting(pairs.map(\.1))
        for j in leftB.sorted() {
            if let i = leftA.sorted().first(where: { ca[$0] == cb[j] }) {
                entry(.moved, i, j); leftA.remove(i); leftB.remove(j)
            }
        }
        for j in leftB.sorted() where leftA.contains(j) {
            if a[j].conv1.shape == b[j].conv1.shape && a[j].stride == b[j].stride {
                entry(.modified, j, j); leftA.remove(j); leftB.remove(j)
            }
        }
        for i in leftA.sorted() { entry(.removed, i, nil) }
        for j in leftB.sorted() { entry(.added, nil, j, copyOf: ca.firstIndex(of: cb[j])) }
        func key(_ e: DiffReport.BlockEntry) -> (Int, Int) {
            (BlockID(e.b ?? e.a!)!.block, e.b == nil ? 0 : 1)
        }
        return entries.sorted { key($0) < key($1) }
    }

    /// Max |y − x| and ‖y − x‖₂ / ‖x‖₂, in double precision.
    static func compare(_ x: Tensor, _ y: Tensor) -> (Double, Double) {
        var maxAbs = 0.0, num = 0.0, den = 0.0
        x.data.withUnsafeBufferPointer { px in
            y.data.withUnsafeBufferPointer { py in
                for k in 0..<px.count {
                    let a = Double(px[k]), d = Double(py[k]) - a
                    let ad = abs(d)
                    if ad > maxAbs || ad.isNaN { maxAbs = ad.isNaN ? .nan : max(maxAbs, ad) }
                    num += d * d; den += a * a
                }
            }
        }
        let rel = den > 0 ? num.squareRoot() / den.squareRoot() : (num == 0 ? 0 : .infinity)
        return (maxAbs, rel)
    }
}

/// The result of ``Surgery/diff(_:_:)``.
public struct DiffReport: SurgeryPlan, Equatable {
    public let op = SurgeryPlanKind.diff

    public struct AttributeChange: Codable, Equatable, Sendable {
        public var name: String, a: String, b: String
    }

    /// One block of the structural alignment of a stage.
    public struct BlockEntry: Codable, Equatable, Sendable {
        /// How a block of A relates to a block of B (see the type comment of the diff).
        public enum Kind: String, Codable, Sendable {
            case same, renumbered, moved, modified, removed, added
        }
        public var kind: Kind
        /// Block ids "S.B" in A and in B (nil on the side where the block does not exist).
        public var a: String?
        public var b: String?
        public var hA: Double?
        public var hB: Double?
        public var originA: String?
        public var originB: String?
        /// For "added": the block of A whose parameters it equals, if any.
        public var copyOf: String?
        enum CodingKeys: String, CodingKey {
            case kind, a, b, hA = "h_a", hB = "h_b", originA = "origin_a", originB = "origin_b", copyOf = "copy_of"
        }
    }

    public struct StageDiff: Codable, Equatable, Sendable {
        public var stage: Int
        public var blocksA: Int
        public var blocksB: Int
        public var entries: [BlockEntry]
        enum CodingKeys: String, CodingKey { case stage, blocksA = "blocks_a", blocksB = "blocks_b", entries }
    }

    public struct TensorDiff: Codable, Equatable, Sendable {
        public var path: String
        public var shape: [Int]
        /// max |b − a|.
        public var maxAbs: Double
        /// ‖b − a‖₂ / ‖a‖₂.
        public var relL2: Double
        enum CodingKeys: String, CodingKey { case path, shape, maxAbs = "max_abs", relL2 = "rel_l2" }
    }

    public var equal: Bool
    public var attributes: [AttributeChange]
    public var stages: [StageDiff]
    /// Every tensor present in both with the same path and shape.
    public var tensors: [TensorDiff]
    public var onlyInA: [String]
    public var onlyInB: [String]
    public var shapeMismatch: [String]
    public var optimizer: String
    public var lineageA: Int
    public var lineageB: Int

    /// Blocks whose h differs between A and B (aligned blocks only).
    public var hChanges: [BlockEntry]
    /// Entries of the given kind, over all stages.
    public func entries(_ kind: BlockEntry.Kind) -> [BlockEntry] { stages.flatMap(\.entries).filter { $0.kind == kind } }

    public init(equal: Bool, attributes: [AttributeChange], stages: [StageDiff], tensors: [TensorDiff],
                onlyInA: [String], onlyInB: [String], shapeMismatch: [String], optimizer: String,
                lineageA: Int, lineageB: Int) {
        self.equal = equal; self.attributes = attributes; self.stages = stages; self.tensors = tensors
        self.onlyInA = onlyInA; self.onlyInB = onlyInB; self.shapeMismatch = shapeMismatch
        self.optimizer = optimizer; self.lineageA = lineageA; self.lineageB = lineageB
        hChanges = stages.flatMap(\.entries).filter { $0.hA != nil && $0.hB != nil && $0.hA != $0.hB }
    }

    enum CodingKeys: String, CodingKey {
        case op, equal, attributes, stages, hChanges = "h_changes", tensors
        case onlyInA = "only_in_a", onlyInB = "only_in_b", shapeMismatch = "shape_mismatch"
        case optimizer, lineageA = "lineage_events_a", lineageB = "lineage_events_b"
    }

    public var text: String {
        var lines = [equal ? "equal: the two networks are identical (attributes, blocks, h, every tensor)"
                           : "different"]
        for at in attributes { lines.append("attribute \(at.name): \(at.a) → \(at.b)") }
        for st in stages {
            let changes = st.entries.filter { $0.kind != .same }
            if changes.isEmpty && st.blocksA == st.blocksB { continue }
            lines.append("stage \(st.stage): \(st.blocksA) → \(st.blocksB) blocks")
            for e in changes {
                switch e.kind {
                case .removed: lines.append("  removed  \(e.a!) (h \(formatH(e.hA!)), origin \(e.originA!))")
                case .added:
                    lines.append("  added    \(e.b!) (h \(formatH(e.hB!)), origin \(e.originB!))"
                                 + (e.copyOf.map { ", parameters equal A's \($0)" } ?? ""))
                case .moved: lines.append("  moved    \(e.a!) → \(e.b!)")
                case .renumbered: lines.append("  renumbered \(e.a!) → \(e.b!)")
                case .modified, .same: lines.append("  modified \(e.a!) (parameters differ)")
                }
            }
        }
        for e in hChanges {
            lines.append("h of block \(e.a!)" + (e.a == e.b ? "" : " (B's \(e.b!))") + ": \(formatH(e.hA!)) → \(formatH(e.hB!))")
        }
        let differing = tensors.filter { $0.maxAbs != 0 || $0.maxAbs.isNaN }
        lines.append("tensors: \(tensors.count) compared at the same path and shape, \(differing.count) differ"
                     + (onlyInA.isEmpty ? "" : ", \(onlyInA.count) only in A")
                     + (onlyInB.isEmpty ? "" : ", \(onlyInB.count) only in B")
                     + (shapeMismatch.isEmpty ? "" : ", \(shapeMismatch.count) with different shapes"))
        for t in differing {
            lines.append("  \(t.path) \(Tensor.describe(t.shape)): max|Δ| \(String(format: "%.3g", t.maxAbs)),"
                         + " rel L2 \(String(format: "%.3g", t.relL2))")
        }
        for p in shapeMismatch { lines.append("  \(p): shapes differ") }
        lines.append("optimizer: \(optimizer); lineage: A \(lineageA) events, B \(lineageB)")
        return lines.joined(separator: "\n")
    }
}
