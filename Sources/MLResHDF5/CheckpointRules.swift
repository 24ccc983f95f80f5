import MLResModel

/// The meaning rules of format v1 (docs/checkpoint-format.md, "What the numbers must agree
/// on"): not only how many numbers there are, but that they are usable. Applied by the reader
/// on every load and by the writer before it writes, each problem named by its HDF5 path.
extension CheckpointSchema {
    /// Root attribute naming the format revision; absent in 1.0 files. 1 = format 1.1 (every
    /// dataset and string set carries a digest). v1 readers ignore it and read the file.
    static let minorVersionAttribute = "format_minor_version"
    static let formatMinorVersion = 1

    /// Value of the `/model` attribute `shortcut_padding`: where the zero channels of the
    /// downsampling shortcut go. "split": ⌊(out − in)/2⌋ zero channels before the input
    /// channels and the rest after (``ResidualBlock/shortcutChannelOffset``); PyTorch:
    /// `F.pad(p, (0, 0, 0, 0, (out - in) // 2, out - in - (out - in) // 2))`. Files without the
    /// attribute (format 1.0) mean the same.
    static let shortcutPadding = "split"

    /// `/model` numbers: BN epsilon finite > 0, BN momentum in [0, 1] (PyTorch convention),
    /// input mean finite, input std finite > 0 (every input is divided by it).
    static func modelNumbersProblem(bnEpsilon: Double, bnMomentum: Double,
                                    inputMean: [Float], inputStd: [Float]) -> String? {
        if !(bnEpsilon.isFinite && bnEpsilon > 0) {
            return "attribute bn_epsilon = \(bnEpsilon), expected a finite number > 0"
        }
        if !(bnMomentum >= 0 && bnMomentum <= 1) {
            return "attribute bn_momentum = \(bnMomentum), expected a number in [0, 1]"
        }
        if let i = inputMean.firstIndex(where: { !$0.isFinite }) {
            return "attribute input_mean[\(i)] = \(inputMean[i]), expected a finite number"
        }
        if let i = inputStd.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            return "attribute input_std[\(i)] = \(inputStd[i]), expected a finite number > 0"
        }
        return nil
    }

    /// `/optimizer` hyper-parameters: finite.
    static func optimizerNumbersProblem(momentum: Double, weightDecay: Double) -> String? {
        if !momentum.isFinite { return "attribute momentum = \(momentum), expected a finite number" }
        if !weightDecay.isFinite { return "attribute weight_decay = \(weightDecay), expected a finite number" }
        return nil
    }

    /// Tensor values: every one finite; a running variance also >= 0. `path` with leading
    /// slash; the message names the flat (C-order) index.
    static func valueProblem(path: String, _ data: [Float]) -> String? {
        if path.hasSuffix("/running_var") {
            if let i = data.firstIndex(where: { !($0 >= 0) }) {
                return "\(path)[\(i)] = \(data[i]), expected a variance >= 0"
            }
        }
        if let i = data.firstIndex(where: { !$0.isFinite }) {
            return "\(path)[\(i)] = \(data[i]), expected a finite number"
        }
        return nil
    }

    /// Every meaning rule over a whole checkpoint (the writer's check): numbers and values.
    static func meaningProblem(in ckpt: Checkpoint) -> String? {
        let net = ckpt.network
        if let p = modelNumbersProblem(bnEpsilon: net.bnEpsilon, bnMomentum: net.bnMomentum,
                                       inputMean: net.inputMean, inputStd: net.inputStd) {
            return "/model: \(p)"
        }
        for nt in net.namedTensors {
            if let p = valueProblem(path: "/" + nt.path, nt.tensor.data) { return p }
        }
        if let opt = ckpt.optimizer {
            if let p = optimizerNumbersProblem(momentum: opt.momentum, weightDecay: opt.weightDecay) {
                return "/optimizer: \(p)"
            }
            for key in opt.buffers.keys.sorted() {
                if let p = valueProblem(path: "/optimizer/momentum/" + key, opt.buffers[key]!.data) { return p }
            }
        }
        return nil
    }
}
