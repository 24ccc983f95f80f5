/// The one tensor table of the paper's network: which tensors an architecture has, in what
/// order, under which checkpoint path, with what shape, and whether SGD trains them.
///
/// Everything else derives from it: ``Network/namedTensors`` (and so the checkpoint writer),
/// the checkpoint schema the reader checks (``Architecture/tensorTable``), the parameter count
/// of Table 5 (``Architecture/parameterCount``, ``Network/parameterCount``), the engine's
/// parameter order and ``Network/initialized(_:seed:h:)``.
///
/// Canonical order: stem, stages by number, blocks by number (bn1, conv1, bn2, conv2), head
/// (bn, fc weight, fc bias). Paths are PyTorch `state_dict` names with `/` and no leading
/// slash, e.g. "model/stages/0/blocks/1/bn1/running_var".

/// One of the four tensors of a batch-norm layer, by its PyTorch name; all `[channels]`.
public enum BatchNormTensor: String, CaseIterable, Sendable {
    case weight, bias, runningMean = "running_mean", runningVar = "running_var"
    /// γ and β are trained; running statistics are not (and are not counted as parameters).
    public var trainable: Bool { self == .weight || self == .bias }
}

/// One tensor of a residual block, by its local name ("bn1/weight", "conv1/weight", …).
public enum BlockTensor: Hashable, Sendable, CustomStringConvertible {
    case bn1(BatchNormTensor), conv1, bn2(BatchNormTensor), conv2

    /// The ten tensors of a block in canonical order.
    public static let allCases: [BlockTensor] =
        BatchNormTensor.allCases.map { .bn1($0) } + [.conv1] + BatchNormTensor.allCases.map { .bn2($0) } + [.conv2]

    /// Local name below the block's group, e.g. "bn2/running_mean".
    public var name: String {
        switch self {
        case .bn1(let t): "bn1/\(t.rawValue)"
        case .conv1: "conv1/weight"
        case .bn2(let t): "bn2/\(t.rawValue)"
        case .conv2: "conv2/weight"
        }
    }
    public var description: String { name }

    /// Parses a local name such as "conv1/weight"; nil for anything else.
    public init?(name: String) {
        guard let t = BlockTensor.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }

    public var trainable: Bool {
        switch self {
        case .bn1(let t), .bn2(let t): t.trainable
        case .conv1, .conv2: true
        }
    }

    /// PyTorch shape in a block from `cin` to `cout` channels: bn1 `[Cin]`, conv1
    /// `[Cout, Cin, 3, 3]`, bn2 `[Cout]`, conv2 `[Cout, Cout, 3, 3]`.
    public func shape(inChannels cin: Int, outChannels cout: Int) -> [Int] {
        switch self {
        case .bn1: [cin]
        case .conv1: [cout, cin, 3, 3]
        case .bn2: [cout]
        case .conv2: [cout, cout, 3, 3]
        }
    }
}

/// Where a tensor sits in the network.
public enum TensorSlot: Hashable, Sendable, CustomStringConvertible {
    /// Stem conv `[W0, C, 3, 3]`.
    case stemConv
    case block(BlockID, BlockTensor)
    /// Head BN `[W_last]`.
    case headBN(BatchNormTensor)
    /// Classifier `[K, W_last]` and `[K]`.
    case fcWeight, fcBias

    /// The tensors of a network with `blocksPerStage[s]` blocks in stage s, canonical order.
    public static func all(blocksPerStage: [Int]) -> [TensorSlot] {
        var out: [TensorSlot] = [.stemConv]
        for (s, n) in blocksPerStage.enumerated() {
            for b in 0..<max(n, 0) {
                for t in BlockTensor.allCases { out.append(.block(BlockID(stage: s, block: b), t)) }
            }
        }
        out += BatchNormTensor.allCases.map { .headBN($0) }
        out += [.fcWeight, .fcBias]
        return out
    }

    /// Checkpoint path without the leading slash.
    public var path: String {
        switch self {
        case .stemConv: "model/stem/conv/weight"
        case .block(let id, let t): "model/\(id.path)/\(t.name)"
        case .headBN(let t): "model/head/bn/\(t.rawValue)"
        case .fcWeight: "model/head/fc/weight"
        case .fcBias: "model/head/fc/bias"
        }
    }
    public var description: String { path }

    /// Parses a checkpoint path (no leading slash); nil when it names no tensor of format v1.
    public init?(path: String) {
        let p = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch p.count {
        case 4 where p == ["model", "stem", "conv", "weight"]: self = .stemConv
        case 4 where p == ["model", "head", "fc", "weight"]: self = .fcWeight
        case 4 where p == ["model", "head", "fc", "bias"]: self = .fcBias
        case 4 where p[0] == "model" && p[1] == "head" && p[2] == "bn":
            guard let t = BatchNormTensor(rawValue: p[3]) else { return nil }
            self = .headBN(t)
        case 7 where p[0] == "model" && p[1] == "stages" && p[3] == "blocks":
            guard let s = Int(p[2]), let b = Int(p[4]), s >= 0, b >= 0,
                  String(s) == p[2], String(b) == p[4],
                  let t = BlockTensor(name: "\(p[5])/\(p[6])") else { return nil }
            self = .block(BlockID(stage: s, block: b), t)
        default: return nil
        }
    }

    public var trainable: Bool {
        switch self {
        case .stemConv, .fcWeight, .fcBias: true
        case .block(_, let t): t.trainable
        case .headBN(let t): t.trainable
        }
    }
}

/// One row of the table: a tensor an architecture requires.
public struct TensorSpec: Sendable, Equatable {
    public var slot: TensorSlot
    /// PyTorch shape (OIHW for convs, `[out, in]` for the classifier).
    public var shape: [Int]
    public init(slot: TensorSlot, shape: [Int]) { self.slot = slot; self.shape = shape }
    public var path: String { slot.path }
    public var trainable: Bool { slot.trainable }
    /// Number of elements.
    public var count: Int { Tensor.count(of: shape) }
}

extension Architecture {
    /// The shape `slot` has in this architecture. The architecture must be valid
    /// (``validationError()`` nil) and the slot's block must exist.
    public func shape(of slot: TensorSlot) -> [Int] {
        let last = widths[widths.count - 1]
        switch slot {
        case .stemConv: return [widths[0], inputShape[0], 3, 3]
        case .block(let id, let t):
            let (cin, cout, _) = blockShape(stage: id.stage, block: id.block)
            return t.shape(inChannels: cin, outChannels: cout)
        case .headBN: return [last]
        case .fcWeight: return [numClasses, last]
        case .fcBias: return [numClasses]
        }
    }

    /// Every tensor of the architecture, canonical order (the checkpoint schema of format v1).
    public var tensorTable: [TensorSpec] {
        TensorSlot.all(blocksPerStage: blocks).map { TensorSpec(slot: $0, shape: shape(of: $0)) }
    }

    /// Trainable parameter count, computed from the shapes alone (Table 5 of the paper):
    /// the element count of every trainable row of ``tensorTable``.
    public var parameterCount: Int {
        tensorTable.reduce(0) { $0 + ($1.trainable ? $1.count : 0) }
    }
}

/// A tensor of a network with its path.
public struct NamedTensor: Sendable {
    public var path: String
    public var tensor: Tensor
    /// False for BN running statistics (not trained, not counted as parameters).
    public var trainable: Bool
}

extension BatchNorm {
    public subscript(_ t: BatchNormTensor) -> Tensor {
        get {
            switch t {
            case .weight: weight
            case .bias: bias
            case .runningMean: runningMean
            case .runningVar: runningVar
            }
        }
        set {
            switch t {
            case .weight: weight = newValue
            case .bias: bias = newValue
            case .runningMean: runningMean = newValue
            case .runningVar: runningVar = newValue
            }
        }
    }
}

extension ResidualBlock {
    public subscript(_ t: BlockTensor) -> Tensor {
        get {
            switch t {
            case .bn1(let f): bn1[f]
            case .conv1: conv1
            case .bn2(let f): bn2[f]
            case .conv2: conv2
            }
        }
        set {
            switch t {
            case .bn1(let f): bn1[f] = newValue
            case .conv1: conv1 = newValue
            case .bn2(let f): bn2[f] = newValue
            case .conv2: conv2 = newValue
            }
        }
    }

    /// (local name, tensor, trainable) in canonical order, e.g. ("bn1/weight", …, true).
    public var localTensors: [(name: String, tensor: Tensor, trainable: Bool)] {
        BlockTensor.allCases.map { ($0.name, self[$0], $0.trainable) }
    }

    /// Replaces the tensor at a local name such as "conv1/weight"; false if the name is unknown.
    @discardableResult
    public mutating func setTensor(_ name: String, _ t: Tensor) -> Bool {
        guard let slot = BlockTensor(name: name) else { return false }
        self[slot] = t
        return true
    }
}

extension Network {
    /// The slots of this network's tensors, canonical order.
    public var tensorSlots: [TensorSlot] { TensorSlot.all(blocksPerStage: stageBlocks) }

    /// True when `slot` exists in this network (its block exists).
    public func has(_ slot: TensorSlot) -> Bool {
        if case .block(let id, _) = slot { return block(id) != nil }
        return true
    }

    /// The tensor in `slot`; the slot's block must exist (see ``has(_:)``).
    public subscript(_ slot: TensorSlot) -> Tensor {
        get {
            switch slot {
            case .stemConv: stem
            case .block(let id, let t): stages[id.stage].blocks[id.block][t]
            case .headBN(let t): headBN[t]
            case .fcWeight: fcWeight
            case .fcBias: fcBias
            }
        }
        set {
            switch slot {
            case .stemConv: stem = newValue
            case .block(let id, let t): stages[id.stage].blocks[id.block][t] = newValue
            case .headBN(let t): headBN[t] = newValue
            case .fcWeight: fcWeight = newValue
            case .fcBias: fcBias = newValue
            }
        }
    }

    /// All tensors with their paths, canonical order.
    public var namedTensors: [NamedTensor] {
        tensorSlots.map { NamedTensor(path: $0.path, tensor: self[$0], trainable: $0.trainable) }
    }

    /// Paths of the trainable tensors (the ones SGD updates and momentum buffers follow).
    public var trainablePaths: [String] { tensorSlots.filter(\.trainable).map(\.path) }

    /// Trainable parameters (running statistics excluded), as the paper's Table 5 counts them:
    /// the element count of every trainable tensor of the table.
    public var parameterCount: Int {
        tensorSlots.reduce(0) { $0 + ($1.trainable ? self[$1].count : 0) }
    }

    /// The tensor at `path`, or nil.
    public func tensor(at path: String) -> Tensor? {
        guard let slot = TensorSlot(path: path), has(slot) else { return nil }
        return self[slot]
    }

    /// Replaces the tensor at `path` (shape is not checked here); false if the path is unknown.
    @discardableResult
    public mutating func setTensor(at path: String, _ t: Tensor) -> Bool {
        guard let slot = TensorSlot(path: path), has(slot) else { return false }
        self[slot] = t
        return true
    }
}
