/// The shape of a network before it has parameters: blocks per stage, widths, input, classes.
///
/// `ResNet-14` is `Architecture(blocks: [2,2,2], widths: [16,32,64])`, `WResNet-50` is
/// `Architecture(blocks: [8,8,8], widths: [32,64,128])`, and so on: depth = 6·n + 2.
public struct Architecture: Sendable, Equatable {
    public var blocks: [Int]
    public var widths: [Int]
    /// C, H, W.
    public var inputShape: [Int]
    public var numClasses: Int

    public init(blocks: [Int], widths: [Int] = [16, 32, 64], inputShape: [Int] = [3, 32, 32],
                numClasses: Int = 10) {
        self.blocks = blocks; self.widths = widths
        self.inputShape = inputShape; self.numClasses = numClasses
    }

    /// The paper's names: ResNet-14/32/50/122 and WResNet-14/32/50/122.
    public enum Named: String, CaseIterable, Sendable {
        case resnet14, resnet32, resnet50, resnet122
        case wresnet14, wresnet32, wresnet50, wresnet122

        public var blocksPerStage: Int {
            switch self {
            case .resnet14, .wresnet14: 2
            case .resnet32, .wresnet32: 5
            case .resnet50, .wresnet50: 8
            case .resnet122, .wresnet122: 20
            }
        }
        public var widths: [Int] {
            rawValue.hasPrefix("w") ? [32, 64, 128] : [16, 32, 64]
        }
    }

    public init(_ named: Named, inputShape: [Int] = [3, 32, 32], numClasses: Int = 10) {
        self.init(blocks: Array(repeating: named.blocksPerStage, count: 3), widths: named.widths,
                  inputShape: inputShape, numClasses: numClasses)
    }

    /// Checks the numbers make a network; returns a message naming the first problem.
    public func validationError() -> String? {
        if blocks.isEmpty { return "at least one stage is needed" }
        if blocks.count != widths.count {
            return "\(blocks.count) stages of blocks but \(widths.count) widths"
        }
        if let b = blocks.first(where: { $0 < 1 }) { return "a stage needs at least 1 block (got \(b))" }
        if let w = widths.first(where: { $0 < 1 }) { return "a width must be positive (got \(w))" }
        if inputShape.count != 3 || inputShape.contains(where: { $0 < 1 }) {
            return "input shape must be three positive numbers C,H,W (got \(inputShape))"
        }
        if numClasses < 1 { return "the number of classes must be positive (got \(numClasses))" }
        return nil
    }

    /// (inChannels, outChannels, stride) of block `b` of stage `s`: block 0 of stage 0 keeps
    /// W0; block 0 of every later stage has stride 2 and widens.
    public func blockShape(stage s: Int, block b: Int) -> (inChannels: Int, outChannels: Int, stride: Int) {
        let cout = widths[s]
        if b > 0 { return (cout, cout, 1) }
        if s == 0 { return (widths[0], cout, 1) }
        return (widths[s - 1], cout, 2)
    }
}

extension Network {
    /// The architecture of this network (its blocks, widths, input and classes).
    public var architectureValue: Architecture {
        Architecture(blocks: stageBlocks, widths: stageWidths, inputShape: inputShape,
                     numClasses: numClasses)
    }

    /// A freshly initialised network, as `mlres-train init` writes it:
    /// He-normal convs (fan-in, gain √2), BN weight 1 / bias 0 / running 0 and 1,
    /// the classifier as PyTorch's `nn.Linear` default (U(−1/√fan_in, 1/√fan_in) for weight and
    /// bias), every h = `h`. The same seed gives the same tensors, bit for bit.
    public static func initialized(_ arch: Architecture, seed: UInt64, h: Double = 1) -> Network {
        var rng = SplitMix64(seed: seed)
        // Walk the tensor table in its canonical order (stem, conv1/conv2 of every block, fc
        // weight, fc bias: the order of the random draws), filling each slot by its init rule.
        var net = Network(zeros: arch, h: h)
        for spec in arch.tensorTable {
            var t = net[spec.slot]
            switch spec.slot {
            case .stemConv, .block(_, .conv1), .block(_, .conv2):
                let fanIn = spec.shape[1] * spec.shape[2] * spec.shape[3]
                let std = (2.0 / Double(fanIn)).squareRoot()
                for i in t.data.indices { t.data[i] = Float(rng.nextNormal() * std) }
            case .fcWeight, .fcBias:
                let bound = 1.0 / Double(arch.widths[arch.widths.count - 1]).squareRoot()
                for i in t.data.indices { t.data[i] = Float(rng.nextUniform(-bound, bound)) }
            case .block, .headBN:
                continue   // fresh BN: weight 1, bias 0, running 0 and 1
            }
            net[spec.slot] = t
        }
        return net
    }

    /// A network of `arch` with every conv and the classifier zero, fresh BN layers and every
    /// h = `h`: the tensor table's shapes, before any initialisation.
    public init(zeros arch: Architecture, h: Double = 1) {
        let stages = arch.blocks.indices.map { s in
            Stage(width: arch.widths[s], blocks: (0..<arch.blocks[s]).map { b in
                let (cin, cout, stride) = arch.blockShape(stage: s, block: b)
                return ResidualBlock(h: h, stride: stride, inChannels: cin, outChannels: cout)
            })
        }
        let last = arch.widths[arch.widths.count - 1]
        self.init(inputShape: arch.inputShape, numClasses: arch.numClasses,
                  stem: Tensor(shape: arch.shape(of: .stemConv)), stages: stages,
                  headBN: BatchNorm(channels: last),
                  fcWeight: Tensor(shape: arch.shape(of: .fcWeight)),
                  fcBias: Tensor(shape: arch.shape(of: .fcBias)))
    }
}
