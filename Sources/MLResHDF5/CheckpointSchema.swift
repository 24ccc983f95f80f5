import MLResModel

/// What format v1 requires, derived from the `/model` attributes alone: the tensors with their
/// shapes, the block attributes, and the sanity bounds a reader applies before it allocates.
/// Writer and reader share it, so that a file we write is a file we accept.
enum CheckpointSchema {
    static let format = "mlres.checkpoint"
    static let formatVersion = 1

    /// Bounds on the architecture numbers (a corrupt attribute must not drive an allocation).
    static let maxStages = 64
    static let maxBlocksPerStage = 10_000
    static let maxWidth = 1 << 16
    static let maxInputDim = 1 << 16
    static let maxClasses = 1 << 22

    /// One tensor the architecture requires (a row of MLResModel's one tensor table).
    typealias TensorSpec = MLResModel.TensorSpec

    /// Every model tensor of `arch`, in the canonical order of ``Network/namedTensors``.
    static func tensors(_ arch: Architecture) -> [TensorSpec] { arch.tensorTable }

    /// Checks the architecture numbers: positive, bounded, consistent; nil when fine.
    static func architectureProblem(_ arch: Architecture) -> String? {
        if let e = arch.validationError() { return e }
        if arch.blocks.count > maxStages { return "\(arch.blocks.count) stages, more than \(maxStages)" }
        if let b = arch.blocks.first(where: { $0 > maxBlocksPerStage }) {
            return "\(b) blocks in a stage, more than \(maxBlocksPerStage)"
        }
        if let w = arch.widths.first(where: { $0 > maxWidth }) { return "width \(w) is larger than \(maxWidth)" }
        if let d = arch.inputShape.first(where: { $0 > maxInputDim }) {
            return "input dimension \(d) is larger than \(maxInputDim)"
        }
        if arch.numClasses > maxClasses { return "\(arch.numClasses) classes, more than \(maxClasses)" }
        return nil
    }

    static func shapeText(_ s: [Int]) -> String { Tensor.describe(s) }

    /// The first reason `checkpoint` cannot be written as a valid format v1 file, named by the
    /// HDF5 path it would have; nil when it is fine. The same rules the reader enforces.
    static func problem(in ckpt: Checkpoint) -> String? {
        let net = ckpt.network
        let arch = net.architectureValue
        if let p = architectureProblem(arch) { return "/model: \(p)" }
        if net.inputMean.count != arch.inputShape[0] {
            return "/model: attribute input_mean has \(net.inputMean.count) values, expected \(arch.inputShape[0])"
        }
        if net.inputStd.count != arch.inputShape[0] {
            return "/model: attribute input_std has \(net.inputStd.count) values, expected \(arch.inputShape[0])"
        }
        if let names = net.classNames, names.count != arch.numClasses {
            return "/model: attribute class_names has \(names.count) values, expected \(arch.numClasses)"
        }
        for (s, stage) in net.stages.enumerated() {
            for (b, block) in stage.blocks.enumerated() {
                let p = "/model/stages/\(s)/blocks/\(b)"
                if let e = blockAttributeProblem(arch, s, b, h: block.h, stride: block.stride,
                                                 cin: block.inChannels, cout: block.outChannels) {
                    return "\(p): \(e)"
                }
            }
        }
        let expected = tensors(arch)
        let actual = net.namedTensors
        guard expected.count == actual.count else { return "/model: tensor list does not match the architecture" }
        for (e, a) in zip(expected, actual) {
            if e.path != a.path || e.shape != a.tensor.shape {
                return "/\(a.path) has shape \(shapeText(a.tensor.shape)), expected \(shapeText(e.shape))"
            }
        }
        if let opt = ckpt.optimizer {
            let trainable = expected.filter(\.trainable)
            let known = Dictionary(uniqueKeysWithValues: trainable.map { ($0.path, $0.shape) })
            for key in opt.buffers.keys.sorted() where known[key] == nil {
                return "/optimizer/momentum/\(key) does not belong to a trainable tensor"
            }
            if !opt.buffers.isEmpty {
                for t in trainable {
                    guard let buf = opt.buffers[t.path] else {
                        return "/optimizer/momentum/\(t.path) is missing (momentum buffers must cover every trainable tensor or none)"
                    }
                    if buf.shape != t.shape {
                        return "/optimizer/momentum/\(t.path) has shape \(shapeText(buf.shape)), expected \(shapeText(t.shape))"
                    }
                }
            }
        }
        if let p = meaningProblem(in: ckpt) { return p }
        if let tr = ckpt.training {
            let lengths = Set(tr.history.values.map(\.count))
            if lengths.count > 1 { return "/training/history: columns have different lengths \(lengths.sorted())" }
            for c in TrainingState.historyColumns where tr.history[c] == nil {
                return "/training/history/\(c) is missing"
            }
            if let bad = tr.history.keys.first(where: { $0.isEmpty || $0.contains("/") || $0 == "." }) {
                return "/training/history: column name \"\(bad)\" is not a valid dataset name"
            }
        }
        return nil
    }

    /// The block attribute rules: h finite and >= 0; stride and channels as the architecture
    /// implies (block 0 of stage 0: stride 1, Cin = Cout = W0; block 0 of later stages:
    /// stride 2, Cin = W_{s-1}; other blocks stride 1, Cin = Cout = W_s).
    static func blockAttributeProblem(_ arch: Architecture, _ s: Int, _ b: Int,
                                      h: Double, stride: Int, cin: Int, cout: Int) -> String? {
        if !(h.isFinite && h >= 0) { return "attribute h = \(h), expected a finite number >= 0" }
        let (ecin, ecout, estride) = arch.blockShape(stage: s, block: b)
        if stride != estride {
            return "attribute stride = \(stride), expected \(estride)" +
                (estride == 2 ? " (block 0 of a later stage downsamples)" : "")
        }
        if cin != ecin { return "attribute in_channels = \(cin), expected \(ecin)" }
        if cout != ecout { return "attribute out_channels = \(cout), expected \(ecout)" }
        return nil
    }
}
