import Foundation

/// Everything one checkpoint file holds (format v1, see docs/checkpoint-format.md):
/// the network, optional optimizer and training state, and the lineage of operations.
public struct Checkpoint: Sendable, Equatable {
    public var network: Network
    public var optimizer: OptimizerState?
    public var training: TrainingState?
    /// One event per operation, oldest first.
    public var lineage: [LineageEvent]
    /// Root attributes; the writer fills them in when nil.
    public var createdBy: String?
    public var createdAt: String?

    public init(network: Network, optimizer: OptimizerState? = nil, training: TrainingState? = nil,
                lineage: [LineageEvent] = [], createdBy: String? = nil, createdAt: String? = nil) {
        self.network = network; self.optimizer = optimizer; self.training = training
        self.lineage = lineage; self.createdBy = createdBy; self.createdAt = createdAt
    }
}

/// The tool name and version every file and lineage event records.
public enum MLRes {
    public static let version = "0.1.0"
    public static let tool = "mlres \(version)"
}

/// SGD state: hyper-parameters and one momentum buffer per trainable tensor, keyed by the
/// tensor's path without the leading slash (e.g. "model/stages/0/blocks/1/conv1/weight").
public struct OptimizerState: Sendable, Equatable {
    public var kind: String
    public var momentum: Double
    public var weightDecay: Double
    public var nesterov: Bool
    public var buffers: [String: Tensor]

    public init(kind: String = "sgd", momentum: Double = 0.9, weightDecay: Double = 2e-4,
                nesterov: Bool = false, buffers: [String: Tensor] = [:]) {
        self.kind = kind; self.momentum = momentum; self.weightDecay = weightDecay
        self.nesterov = nesterov; self.buffers = buffers
    }
}

/// Where a training run stands, so that it can continue exactly.
public struct TrainingState: Sendable, Equatable {
    public var epoch: Int
    public var globalStep: Int
    public var cycle: Int
    public var stepInCycle: Int
    public var cycleSteps: Int
    public var rngState: [UInt64]
    /// JSON text of the whole run configuration.
    public var config: String
    /// Per-epoch curves: equal-length columns named as in ``TrainingState/historyColumns``.
    public var history: [String: [Double]]

    /// The columns of `/training/history`.
    public static let historyColumns = ["epoch", "global_step", "lr", "train_loss", "train_error",
                                        "test_loss", "test_error", "wall_seconds", "blocks"]

    public init(epoch: Int = 0, globalStep: Int = 0, cycle: Int = 0, stepInCycle: Int = 0,
                cycleSteps: Int = 0, rngState: [UInt64] = [], config: String = "{}",
                history: [String: [Double]] = [:]) {
        self.epoch = epoch; self.globalStep = globalStep; self.cycle = cycle
        self.stepInCycle = stepInCycle; self.cycleSteps = cycleSteps; self.rngState = rngState
        self.config = config
        var h = history
        for c in TrainingState.historyColumns where h[c] == nil { h[c] = [] }
        self.history = h
    }
}

/// A JSON value, for lineage arguments and configurations.
public enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null, bool(Bool), int(Int), double(Double), string(String)
    case array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Compact JSON text with sorted keys.
    public var jsonText: String {
        (try? JSONText.compact(self)) ?? "null"
    }
    public var description: String { jsonText }
}

/// The operations mlres records in a checkpoint's lineage, by their stored names.
///
/// A file may also hold events another tool wrote: ``LineageEvent/op`` keeps the stored text
/// as it is, and ``LineageEvent/kind`` is nil for a name this enum does not know.
public enum LineageOp: String, CaseIterable, Sendable, Codable {
    /// A freshly initialised network (`mlres-train init`, or a new training run).
    case initialize = "init"
    /// Training epochs (`mlres-train`).
    case train
    /// Surgery (`mlres-surgery`), see ``Surgery``.
    case interpolate, remove, shuffle
    case setH = "set-h"
    case coarsen
    /// Batch-norm running statistics re-estimated from training batches (issue 17).
    case recalibrate

    /// True for the operations that change the network's structure or step sizes, after which
    /// a resumed run starts a new cycle.
    public var changesNetwork: Bool {
        switch self {
        case .interpolate, .remove, .shuffle, .setH, .coarsen: true
        case .initialize, .train, .recalibrate: false
        }
    }
}

/// One lineage entry: `{"op", "args", "at", "tool", "parent_sha256"}`.
public struct LineageEvent: Sendable, Equatable, Codable {
    public var op: String
    public var args: [String: JSONValue]
    public var at: String
    public var tool: String
    public var parentSHA256: String?

    enum CodingKeys: String, CodingKey {
        case op, args, at, tool
        case parentSHA256 = "parent_sha256"
    }

    /// An event with a stored op name (as read from a file, possibly another tool's).
    public init(op: String, args: [String: JSONValue] = [:], at: String = LineageEvent.now(),
                tool: String = MLRes.tool, parentSHA256: String? = nil) {
        self.op = op; self.args = args; self.at = at; self.tool = tool
        self.parentSHA256 = parentSHA256
    }

    /// An event of one of mlres's own operations.
    public init(_ op: LineageOp, args: [String: JSONValue] = [:], at: String = LineageEvent.now(),
                tool: String = MLRes.tool, parentSHA256: String? = nil) {
        self.init(op: op.rawValue, args: args, at: at, tool: tool, parentSHA256: parentSHA256)
    }

    /// The operation, when it is one mlres knows (nil for another tool's event).
    public var kind: LineageOp? { LineageOp(rawValue: op) }

    /// The `init` event that starts the lineage of a freshly initialised network
    /// (``Network/initialized(_:seed:h:)`` with the same `arch`, `seed` and `h`), for
    /// `mlres-train init` and a training run without `--resume` alike: args `blocks`, `widths`,
    /// `classes`, `input_shape`, `seed`, `h`, and `compress` when the file was written by
    /// `mlres-train init`.
    public static func initialization(_ arch: Architecture, seed: UInt64, h: Double = 1,
                                      compress: Bool? = nil) -> LineageEvent {
        var args: [String: JSONValue] = [
            "blocks": .array(arch.blocks.map { .int($0) }), "widths": .array(arch.widths.map { .int($0) }),
            "classes": .int(arch.numClasses), "input_shape": .array(arch.inputShape.map { .int($0) }),
            "seed": .int(Int(truncatingIfNeeded: seed)), "h": .double(h),
        ]
        if let compress { args["compress"] = .bool(compress) }
        return LineageEvent(.initialize, args: args)
    }

    /// The event as one line of compact JSON (sorted keys), as stored in `/lineage`.
    public var jsonText: String {
        (try? JSONText.compact(self)) ?? ""
    }

    /// Parses one stored lineage line; nil when it is not a JSON object with at least "op".
    public static func parse(_ text: String) -> LineageEvent? {
        guard let data = text.data(using: .utf8),
              let v = try? JSONDecoder().decode(JSONValue.self, from: data),
              case .object(let o) = v, case .string(let op)? = o["op"] else { return nil }
        var args: [String: JSONValue] = [:]
        if case .object(let a)? = o["args"] { args = a }
        func str(_ k: String) -> String? { if case .string(let s)? = o[k] { return s }; return nil }
        return LineageEvent(op: op, args: args, at: str("at") ?? "", tool: str("tool") ?? "",
                            parentSHA256: str("parent_sha256"))
    }

    /// ISO-8601 UTC time, e.g. 2026-11-29T01:30:00Z.
    public static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date())
    }
}

extension Checkpoint {
    /// True when the last lineage event that changes the network came after the last "train"
    /// event: the file was edited by surgery since it was trained, so a resume starts a new cycle.
    public var editedSinceTraining: Bool {
        for e in lineage.reversed() {
            if e.kind == .train { return false }
            if e.kind?.changesNetwork == true { return true }
        }
        return false
    }
}
