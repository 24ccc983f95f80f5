/// Every tensor of a network by its checkpoint path (PyTorch `state_dict` names with `/`),
/// in one canonical order: stem, stages by number, blocks by number, head.
///
/// Paths have no leading slash, e.g. "model/stages/0/blocks/1/bn1/running_var".
public struct NamedTensor: Sendable {
    public var path: String
    public var tensor: Tensor
    /// False for BN running statistics (not trained, not counted as parameters).
    public var trainable: Bool
}

extension BatchNorm {
    static let names = ["weight", "bias", "running_mean", "running_var"]

    subscript(name: String) -> Tensor? {
        get {
            switch name {
            case "weight": weight
            case "bias": bias
            case "running_mean": runningMean
            case "running_var": runningVar
            default: nil
            }
        }
        set {
            guard let t = newValue else { return }
            switch name {
            case "weight": weight = t
            case "bias": bias = t
            case "running_mean": runningMean = t
            case "running_var": runningVar = t
            default: break
            }
        }
    }
}

extension ResidualBlock {
    /// (local name, tensor, trainable) in canonical order, e.g. ("bn1/weight", …, true).
    public var localTensors: [(name: String, tensor: Tensor, trainable: Bool)] {
        var out: [(String, Tensor, Bool)] = []
        for n in BatchNorm.names { out.append(("bn1/\(n)", bn1[n]!, !n.hasPrefix("running"))) }
        out.append(("conv1/weight", conv1, true))
        for n in BatchNorm.names { out.append(("bn2/\(n)", bn2[n]!, !n.hasPrefix("running"))) }
        out.append(("conv2/weight", conv2, true))
        return out
    }

    /// Replaces the tensor at a local name such as "conv1/weight"; false if the name is unknown.
    @discardableResult
    public mutating func setTensor(_ name: String, _ t: Tensor) -> Bool {
        let parts = name.split(separator: "/").map(String.init)
        guard parts.count == 2 else { return false }
        switch parts[0] {
        case "bn1": guard BatchNorm.names.contains(parts[1]) else { return false }; bn1[parts[1]] = t
        case "bn2": guard BatchNorm.names.contains(parts[1]) else { return false }; bn2[parts[1]] = t
        case "conv1": guard parts[1] == "weight" else { return false }; conv1 = t
        case "conv2": guard parts[1] == "weight" else { return false }; conv2 = t
        default: return false
        }
        return true
    }
}

extension Network {
    /// All tensors with their paths, canonical order.
    public var namedTensors: [NamedTensor] {
        var out: [NamedTensor] = [NamedTensor(path: "model/stem/conv/weight", tensor: stem, trainable: true)]
        for (s, stage) in stages.enumerated() {
            for (b, block) in stage.blocks.enumerated() {
                for (name, t, tr) in block.localTensors {
                    out.append(NamedTensor(path: "model/stages/\(s)/blocks/\(b)/\(name)", tensor: t, trainable: tr))
                }
            }
        }
        for n in BatchNorm.names {
            out.append(NamedTensor(path: "model/head/bn/\(n)", tensor: headBN[n]!, trainable: !n.hasPrefix("running")))
        }
        out.append(NamedTensor(path: "model/head/fc/weight", tensor: fcWeight, trainable: true))
        out.append(NamedTensor(path: "model/head/fc/bias", tensor: fcBias, trainable: true))
        return out
    }

    /// Paths of the trainable tensors (the ones SGD updates and momentum buffers follow).
    public var trainablePaths: [String] { namedTensors.filter(\.trainable).map(\.path) }

    /// The tensor at `path`, or nil.
    public func tensor(at path: String) -> Tensor? {
        namedTensors.first { $0.path == path }?.tensor
    }

    /// Replaces the tensor at `path` (shape is not checked here); false if the path is unknown.
    @discardableResult
    public mutating func setTensor(at path: String, _ t: Tensor) -> Bool {
        let p = path.split(separator: "/").map(String.init)
        guard p.first == "model", p.count >= 3 else { return false }
        switch p[1] {
        case "stem":
            guard p == ["model", "stem", "conv", "weight"] else { return false }
            stem = t
        case "head":
            if p.count == 4 && p[2] == "bn" && BatchNorm.names.contains(p[3]) { headBN[p[3]] = t }
            else if p == ["model", "head", "fc", "weight"] { fcWeight = t }
            else if p == ["model", "head", "fc", "bias"] { fcBias = t }
            else { return false }
        case "stages":
            guard p.count == 7, p[3] == "blocks", let s = Int(p[2]), let b = Int(p[4]),
                  stages.indices.contains(s), stages[s].blocks.indices.contains(b) else { return false }
            return stages[s].blocks[b].setTensor("\(p[5])/\(p[6])", t)
        default: return false
        }
        return true
    }
}
