import Foundation

/// Model surgery: pure operations on a ``Checkpoint`` value (no file I/O, no kernels).
///
/// Every operation takes a checkpoint and returns a new checkpoint plus a plan that says what
/// was done, in a form a person can read (``SurgeryPlan/text``) and a program can parse (JSON
/// through `Encodable`). The input value is never changed. Each operation appends one
/// ``LineageEvent`` (op, arguments, and the parent file's SHA-256 handed in by the caller).
///
/// The dynamical-systems reading (docs/surgery.md): a stage is the forward-Euler
/// discretisation `Y_{j+1} = P(Y_j) + h_j·F_j(Y_j)` of an ODE over a time interval of length
/// Σh. Interpolation halves the step, removal drops one step, shuffling reorders steps.
public enum Surgery {}

/// The kinds of surgery plan, by the name their JSON `op` field carries.
public enum SurgeryPlanKind: String, CaseIterable, Sendable, Codable {
    case interpolate, remove, shuffle
    case setH = "set-h"
    case coarsen, diff

    /// The lineage event the operation appends (nil for `diff`, which writes no file).
    public var lineageOp: LineageOp? {
        switch self {
        case .interpolate: .interpolate
        case .remove: .remove
        case .shuffle: .shuffle
        case .setH: .setH
        case .coarsen: .coarsen
        case .diff: nil
        }
    }
}

/// What an operation did with the optimizer's momentum buffers.
public enum OptimizerHandling: String, Sendable, Codable {
    /// The input had no optimizer state.
    case absent
    /// `resetOptimizer`: the state was dropped.
    case dropped
    /// Every buffer followed its block's parameters (new blocks: copies or zeros).
    case remapped = "momentum remapped"
}

/// A surgery plan: what an operation did (or, in a dry run, would do).
public protocol SurgeryPlan: Encodable, Sendable {
    /// The operation (JSON `op`, e.g. "interpolate", "set-h").
    var op: SurgeryPlanKind { get }
    /// Multi-line human-readable description.
    var text: String { get }
}

extension SurgeryPlan {
    /// The plan as pretty-printed JSON with sorted keys.
    public var jsonText: String {
        (try? JSONText.pretty(self)) ?? "{}"
    }
}

/// Why a surgery operation was refused. The message names the block, stage or value at fault.
public enum SurgeryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A block id that does not exist in the network.
    case unknownBlock(BlockID, stageBlocks: [Int])
    /// A stage number that does not exist.
    case unknownStage(Int, stages: Int)
    /// The same block named twice.
    case duplicateBlock(BlockID)
    /// The same stage named twice.
    case duplicateStage(Int)
    /// Removing these blocks would leave a stage without blocks.
    case stageWouldBeEmpty(stage: Int)
    /// An `order` that is not a permutation of 0..<n.
    case notAPermutation(stage: Int, order: [Int], blocks: Int)
    /// An `order` that moves a shape-changing block (its shortcut subsamples/widens, so the
    /// blocks before and after it have different shapes and it must stay where it is).
    case movesShapeChangingBlock(BlockID, to: Int)
    /// A step size that is negative, infinite or NaN.
    case invalidStepSize(Double)
    /// `firstBlock: .self` asked to copy a shape-changing block 0 into a shape-keeping slot.
    case cannotCopyShapeChangingBlock(BlockID)
    /// An empty list where at least one item is needed.
    case emptySelection(String)
    /// A block after the first of its stage that changes shape (format v1 never has one;
    /// interpolation cannot copy it into a shape-keeping slot).
    case shapeChangeInsideStage(BlockID)
    /// Coarsening merges blocks in pairs: a stage with an odd number of blocks cannot be coarsened.
    case oddBlockCount(stage: Int, blocks: Int)
    /// Coarsening would merge this shape-changing block (block 2i+1 of a pair) away.
    case wouldMergeAwayShapeChangingBlock(BlockID)

    public var description: String {
        switch self {
        case .unknownBlock(let id, let sb):
            return "unknown block \(id): the network has blocks \(sb.map(String.init).joined(separator: "-")) per stage"
                + " (block ids are STAGE.BLOCK counted from 0)"
        case .unknownStage(let s, let n):
            return "unknown stage \(s): the network has \(n) stage\(n == 1 ? "" : "s") (0..\(n - 1))"
        case .duplicateBlock(let id):
            return "block \(id) is named more than once"
        case .duplicateStage(let s):
            return "stage \(s) is named more than once"
        case .stageWouldBeEmpty(let s):
            return "removing these blocks would leave stage \(s) with no blocks (a stage needs at least one)"
        case .notAPermutation(let s, let order, let n):
            return "order \(order.map(String.init).joined(separator: ",")) for stage \(s) is not a permutation of 0..\(n - 1)"
                + " (each of the stage's \(n) blocks must appear exactly once)"
        case .movesShapeChangingBlock(let id, let to):
            return "the order moves block \(id) to position \(to), but block \(id) changes shape"
                + " (stride 2 or Cin ≠ Cout) and must stay in place: the blocks around it have different shapes"
        case .invalidStepSize(let h):
            return "step size h must be finite and ≥ 0 (got \(h))"
        case .cannotCopyShapeChangingBlock(let id):
            return "--first-block self: block \(id) changes shape (stride 2 or Cin ≠ Cout), so the new"
                + " block \(id.stage).1 cannot be a copy of it; use auto, next or identity"
        case .emptySelection(let what):
            return "\(what) must not be empty"
        case .shapeChangeInsideStage(let id):
            return "block \(id) changes shape (stride 2 or Cin ≠ Cout) but is not the first block of its"
                + " stage, so a copy of it cannot follow it; only block 0 of a stage may change shape"
        case .oddBlockCount(let s, let n):
            return "stage \(s) has \(n) blocks, an odd number: coarsening merges blocks 2i and 2i+1 in pairs,"
                + " so every coarsened stage needs an even number of blocks (choose other stages with --stages)"
        case .wouldMergeAwayShapeChangingBlock(let id):
            return "block \(id) changes shape (stride 2 or Cin ≠ Cout) and would be merged away into block"
                + " \(id.stage).\(id.block - 1): only the first block of a pair may change shape"
        }
    }
}

/// Where a block of a rebuilt stage comes from.
enum BlockSource {
    /// Old block at this index of the same stage, parameters and momentum copied;
    /// `h` and `origin` replace the old values when given.
    case old(Int, h: Double?, origin: String?)
    /// A new block (its momentum buffers, if the stage has any, start at zero).
    case fresh(ResidualBlock)
}

extension Checkpoint {
    /// Replaces the blocks of stage `s` by `sources`, and carries the optimizer's momentum
    /// buffers of each block along with its parameters ("model/stages/S/blocks/B/..." keys).
    mutating func rebuildStage(_ s: Int, from sources: [BlockSource]) {
        let old = network.stages[s].blocks
        var blocks: [ResidualBlock] = []
        blocks.reserveCapacity(sources.count)
        for src in sources {
            switch src {
            case .old(let i, let h, let origin):
                var b = old[i]
                if let h { b.h = h }
                if let origin { b.origin = origin }
                blocks.append(b)
            case .fresh(let b):
                blocks.append(b)
            }
        }
        network.stages[s].blocks = blocks

        guard var opt = optimizer else { return }
        let stagePrefix = "model/stages/\(s)/blocks/"
        var moved: [Int: [String: Tensor]] = [:]   // old block index -> local name -> buffer
        for key in opt.buffers.keys where key.hasPrefix(stagePrefix) {
            let rest = key.dropFirst(stagePrefix.count)
            guard let slash = rest.firstIndex(of: "/"), let b = Int(rest[..<slash]) else { continue }
            moved[b, default: [:]][String(rest[rest.index(after: slash)...])] = opt.buffers.removeValue(forKey: key)
        }
        guard !moved.isEmpty else { optimizer = opt; return }
        for (j, src) in sources.enumerated() {
            switch src {
            case .old(let i, _, _):
                for (name, t) in moved[i] ?? [:] { opt.buffers["\(stagePrefix)\(j)/\(name)"] = t }
            case .fresh(let b):
                for (name, t, trainable) in b.localTensors where trainable {
                    opt.buffers["\(stagePrefix)\(j)/\(name)"] = Tensor(shape: t.shape)
                }
            }
        }
        optimizer = opt
    }

    /// Appends a surgery lineage event. The result is a new file's content, so the root
    /// `created_by`/`created_at` are cleared for the writer to fill in.
    mutating func appendEvent(_ op: LineageOp, _ args: [String: JSONValue], parentSHA256: String?) {
        lineage.append(LineageEvent(op, args: args, parentSHA256: parentSHA256))
        createdBy = nil
        createdAt = nil
    }
}

/// A seed as a JSON value: an integer when it fits in Int, else its decimal text.
func seedJSON(_ seed: UInt64) -> JSONValue {
    seed <= UInt64(Int.max) ? .int(Int(seed)) : .string(String(seed))
}

/// Formats a step size for plans: shortest round-trip text ("1", "0.5", "0.125").
func formatH(_ h: Double) -> String {
    if h == h.rounded(), abs(h) < 1e15 { return String(Int(h)) }
    return "\(h)"
}

/// The stages an operation on whole stages (interpolate, coarsen) works on: `stages`, or every
/// stage when nil, in the given order.
/// - Throws: ``SurgeryError`` for an empty list, an unknown stage or one named twice.
func chosenStages(_ stages: [Int]?, in net: Network) throws -> [Int] {
    let chosen = stages ?? Array(net.stages.indices)
    if chosen.isEmpty { throw SurgeryError.emptySelection("the list of stages") }
    var seen = Set<Int>()
    for s in chosen {
        guard net.stages.indices.contains(s) else { throw SurgeryError.unknownStage(s, stages: net.stages.count) }
        guard seen.insert(s).inserted else { throw SurgeryError.duplicateStage(s) }
    }
    return chosen
}

/// Validates a list of block ids against a network: every id exists, none repeats.
func validateBlockIDs(_ ids: [BlockID], in net: Network) throws {
    var seen = Set<BlockID>()
    for id in ids {
        guard net.block(id) != nil else { throw SurgeryError.unknownBlock(id, stageBlocks: net.stageBlocks) }
        guard seen.insert(id).inserted else { throw SurgeryError.duplicateBlock(id) }
    }
}
