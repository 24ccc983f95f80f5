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

    /// Trainable parameter count, computed from the shapes alone (Table 5 of the paper).
    public var parameterCount: Int {
        var n = widths[0] * inputShape[0] * 9
        for s in blocks.indices {
            for b in 0..<blocks[s] {
                let (cin, cout, _) = blockShape(stage: s, block: b)
                n += 2 * cin + cout * cin * 9 + 2 * cout + cout * cout * 9
            }
        }
        let last = widths[widths.count - 1]
        n += 2 * last + last * numClasses + numClasses
        return n
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
        func heNormal(_ shape: [Int]) -> Tensor {
            let fanIn = shape[1] * shape[2] * shape[3]
            let std = (2.0 / Double(fanIn)).squareRoot()
            var t = Tensor(shape: shape)
            for i in t.data.indices { t.data[i] = Float(rng.nextNormal() * std) }
            return t
        }
        let c = arch.inputShape[0]
        let stem = heNormal([arch.widths[0], c, 3, 3])
        var stages: [Stage] = []
        for s in arch.blocks.indices {
            var blocks: [ResidualBlock] = []
            for b in 0..<arch.blocks[s] {
                let (cin, cout, stride) = arch.blockShape(stage: s, block: b)
                blocks.append(ResidualBlock(
                    h: h, stride: stride, inChannels: cin, outChannels: cout, origin: "init",
                    bn1: BatchNorm(channels: cin), conv1: heNormal([cout, cin, 3, 3]),
                    bn2: BatchNorm(channels: cout), conv2: heNormal([cout, cout, 3, 3])))
            }
            stages.append(Stage(width: arch.widths[s], blocks: blocks))
        }
        let last = arch.widths[arch.widths.count - 1]
        let bound = 1.0 / Double(last).squareRoot()
        var fcW = Tensor(shape: [arch.numClasses, last])
        for i in fcW.data.indices { fcW.data[i] = Float(rng.nextUniform(-bound, bound)) }
        var fcB = Tensor(shape: [arch.numClasses])
        for i in fcB.data.indices { fcB.data[i] = Float(rng.nextUniform(-bound, bound)) }
        return Network(inputShape: arch.inputShape, numClasses: arch.numClasses, stem: stem,
                       stages: stages, headBN: BatchNorm(channels: last),
                       fcWeight: fcW, fcBias: fcB)
    }
}
