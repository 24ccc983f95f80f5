/// The paper's network as data: a stem conv, a list of stages of pre-activation residual
/// blocks, each a forward-Euler step with its own step size h, and a classifier head.
///
///     Y_{j+1} = P(Y_j) + h_j · F(Y_j)
///     F(Y)    = conv2(relu(bn2(conv1(relu(bn1(Y))))))
///
/// P is the identity, or for a block that changes shape (stride 2, Cin ≠ Cout) the
/// parameter-free shortcut: subsample `Y[:, :, ::2, ::2]` and zero-pad the channels from Cin
/// to Cout (see ``ResidualBlock/shortcutChannelOffset``).
/// Stem: 3x3 conv, stride 1, pad 1, no bias, no BN. Head: relu(bn(Y)) → global average
/// pool → fully connected. No conv has a bias.

/// Batch-norm parameters and running statistics of one layer (`[channels]` each).
public struct BatchNorm: Sendable, Equatable {
    public var weight: Tensor
    public var bias: Tensor
    public var runningMean: Tensor
    public var runningVar: Tensor

    /// PyTorch's fresh BN: weight 1, bias 0, running mean 0, running variance 1.
    public init(channels: Int) {
        weight = Tensor(shape: [channels], repeating: 1)
        bias = Tensor(shape: [channels], repeating: 0)
        runningMean = Tensor(shape: [channels], repeating: 0)
        runningVar = Tensor(shape: [channels], repeating: 1)
    }

    public init(weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor) {
        self.weight = weight; self.bias = bias
        self.runningMean = runningMean; self.runningVar = runningVar
    }

    public var channels: Int { weight.count }
}

/// One pre-activation residual block: a forward-Euler step `Y + h·F(Y)`.
public struct ResidualBlock: Sendable, Equatable {
    /// Step size h of this block (the paper's h; 1 in a fresh net, halved by interpolation).
    public var h: Double
    /// 1, or 2 in the first block of every stage after the first.
    public var stride: Int
    public var inChannels: Int
    public var outChannels: Int
    /// Where the parameters came from: "init", or e.g. "copy:stages/0/blocks/1".
    public var origin: String
    public var bn1: BatchNorm          // [Cin]
    public var conv1: Tensor           // [Cout, Cin, 3, 3], stride `stride`
    public var bn2: BatchNorm          // [Cout]
    public var conv2: Tensor           // [Cout, Cout, 3, 3]

    public init(h: Double, stride: Int, inChannels: Int, outChannels: Int, origin: String,
                bn1: BatchNorm, conv1: Tensor, bn2: BatchNorm, conv2: Tensor) {
        self.h = h; self.stride = stride
        self.inChannels = inChannels; self.outChannels = outChannels
        self.origin = origin
        self.bn1 = bn1; self.conv1 = conv1; self.bn2 = bn2; self.conv2 = conv2
    }

    /// A block whose parameters are all zero-initialised placeholders of the right shapes.
    public init(h: Double, stride: Int, inChannels: Int, outChannels: Int, origin: String = "init") {
        self.init(h: h, stride: stride, inChannels: inChannels, outChannels: outChannels,
                  origin: origin,
                  bn1: BatchNorm(channels: inChannels),
                  conv1: Tensor(shape: BlockTensor.conv1.shape(inChannels: inChannels, outChannels: outChannels)),
                  bn2: BatchNorm(channels: outChannels),
                  conv2: Tensor(shape: BlockTensor.conv2.shape(inChannels: inChannels, outChannels: outChannels)))
    }

    /// True when the block changes the feature shape (stride 2 or Cin ≠ Cout): its shortcut
    /// is the parameter-free subsample + zero-pad, and it cannot be deleted or moved.
    public var changesShape: Bool { stride != 1 || inChannels != outChannels }

    /// Channel at which the shortcut places the Cin input channels inside the Cout output,
    /// by ``Network/shortcutPlacement``: `(Cout − Cin) / 2` zero channels before the input
    /// and the rest after (the classic CIFAR ResNet "option A").
    public var shortcutChannelOffset: Int {
        Network.shortcutPlacement.channelOffset(inChannels: inChannels, outChannels: outChannels)
    }
}

/// Where the parameter-free zero-pad shortcut of a block that widens from Cin to Cout channels
/// puts the Cin input channels among the Cout output channels (the rest are zero).
/// Two readers that pad differently compute different logits from the same file.
public enum ShortcutPlacement: String, CaseIterable, Sendable, Codable {
    /// `(Cout − Cin) / 2` zero channels before the input and the rest after (classic CIFAR
    /// ResNet "option A", mlres since format v1: the rule for files that do not say).
    case splitEven = "split-even"

    /// Index of the first output channel holding input channel 0.
    public func channelOffset(inChannels cin: Int, outChannels cout: Int) -> Int {
        switch self {
        case .splitEven: (cout - cin) / 2
        }
    }
}

/// A stage: a run of blocks at one width (the first may downsample).
public struct Stage: Sendable, Equatable {
    public var width: Int
    public var blocks: [ResidualBlock]
    public init(width: Int, blocks: [ResidualBlock]) { self.width = width; self.blocks = blocks }

    /// Σh of the stage: the length of the time interval the stage integrates over.
    public var totalTime: Double { blocks.reduce(0) { $0 + $1.h } }
}

/// The whole network: architecture attributes, parameters and BN statistics.
public struct Network: Sendable, Equatable {
    /// Input C, H, W.
    public var inputShape: [Int]
    public var numClasses: Int
    /// Stem conv `[W0, C, 3, 3]`.
    public var stem: Tensor
    public var stages: [Stage]
    /// Head BN over `[W_last]`.
    public var headBN: BatchNorm
    /// Classifier `[K, W_last]` and `[K]`.
    public var fcWeight: Tensor
    public var fcBias: Tensor
    public var bnEpsilon: Double
    /// PyTorch convention: running = (1 − m)·running + m·batch.
    public var bnMomentum: Double
    /// Per-channel standardisation applied to inputs scaled to [0, 1].
    public var inputMean: [Float]
    public var inputStd: [Float]
    public var classNames: [String]?

    public init(inputShape: [Int], numClasses: Int, stem: Tensor, stages: [Stage],
                headBN: BatchNorm, fcWeight: Tensor, fcBias: Tensor,
                bnEpsilon: Double = 1e-5, bnMomentum: Double = 0.1,
                inputMean: [Float]? = nil, inputStd: [Float]? = nil, classNames: [String]? = nil) {
        self.inputShape = inputShape; self.numClasses = numClasses
        self.stem = stem; self.stages = stages; self.headBN = headBN
        self.fcWeight = fcWeight; self.fcBias = fcBias
        self.bnEpsilon = bnEpsilon; self.bnMomentum = bnMomentum
        let c = inputShape.first ?? 0
        self.inputMean = inputMean ?? [Float](repeating: 0, count: c)
        self.inputStd = inputStd ?? [Float](repeating: 1, count: c)
        self.classNames = classNames
    }

    /// Always "preact-resnet": the only architecture of format v1.
    public static let architecture = "preact-resnet"
    /// Always "zero-pad": the parameter-free shortcut of format v1.
    public static let shortcut = "zero-pad"
    /// Where the zero-pad shortcut puts the input channels: the only placement mlres computes
    /// (a checkpoint records it so that a reader padding elsewhere can refuse the file).
    public static let shortcutPlacement = ShortcutPlacement.splitEven

    public var stageWidths: [Int] { stages.map(\.width) }
    public var stageBlocks: [Int] { stages.map(\.blocks.count) }
    public var totalBlocks: Int { stages.reduce(0) { $0 + $1.blocks.count } }
    /// Step sizes per stage, per block.
    public var stepSizes: [[Double]] { stages.map { $0.blocks.map(\.h) } }
    /// "2-2-2" style description of the depth.
    public var blocksDescription: String { stageBlocks.map(String.init).joined(separator: "-") }

    /// The block at `id`, or nil when the id does not exist.
    public func block(_ id: BlockID) -> ResidualBlock? {
        guard stages.indices.contains(id.stage), stages[id.stage].blocks.indices.contains(id.block)
        else { return nil }
        return stages[id.stage].blocks[id.block]
    }
}

/// A block address `S.B` (stage, block), both counted from 0.
public struct BlockID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var stage: Int
    public var block: Int
    public init(stage: Int, block: Int) { self.stage = stage; self.block = block }

    /// Parses "S.B", e.g. "1.3".
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let s = Int(parts[0]), let b = Int(parts[1]), s >= 0, b >= 0
        else { return nil }
        self.init(stage: s, block: b)
    }

    public var description: String { "\(stage).\(block)" }
    /// HDF5 group path below /model, e.g. "stages/1/blocks/3".
    public var path: String { "stages/\(stage)/blocks/\(block)" }
    public static func < (a: BlockID, b: BlockID) -> Bool {
        (a.stage, a.block) < (b.stage, b.block)
    }
}
