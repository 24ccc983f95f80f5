import CDNNL
import Foundation
import MLResModel

/// One trainable tensor inside the engine: its value, gradient and SGD momentum buffer, all in
/// the layout the primitives use (blocked for conv weights, plain for vectors and the fc weight).
/// Conversions to and from the model's PyTorch layout happen only on load and export.
final class Param {
    let path: String
    /// PyTorch shape (OIHW for conv weights).
    let shape: [Int]
    let value: Mem
    let grad: Mem
    let momentum: Mem
    /// The plain (PyTorch-order) descriptor of this tensor.
    let plainMD: dnnl_memory_desc_t

    init(path: String, shape: [Int], md: dnnl_memory_desc_t) throws {
        self.path = path; self.shape = shape
        value = try Mem(md); grad = try Mem(md); momentum = try Mem(md)
        let tag: dnnl_format_tag_t = switch shape.count {
        case 1: dnnl_a
        case 2: dnnl_ab
        default: dnnl_abcd
        }
        plainMD = try makeMD(shape, tag)
    }

    /// A plain-layout parameter (vectors, the fc weight).
    convenience init(path: String, shape: [Int]) throws {
        let tag: dnnl_format_tag_t = shape.count == 1 ? dnnl_a : dnnl_ab
        try self.init(path: path, shape: shape, md: try makeMD(shape, tag))
    }

    private var isPlain: Bool { mdEqual(value.md, plainMD) }

    private func read(_ m: Mem) throws -> Tensor {
        if isPlain {
            return Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: m.floats, count: Tensor.count(of: shape))))
        }
        let plain = try Mem(plainMD)
        try reorderOnce(from: m, to: plain)
        return Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: plain.floats, count: plain.count)))
    }

    private func write(_ t: Tensor, to m: Mem) throws {
        guard t.shape == shape else {
            throw EngineError("\(path): tensor shape \(Tensor.describe(t.shape)) does not match the engine's \(Tensor.describe(shape))")
        }
        if isPlain {
            t.data.withUnsafeBufferPointer { m.floats.update(from: $0.baseAddress!, count: t.count) }
            return
        }
        let plain = try Mem(plainMD)
        t.data.withUnsafeBufferPointer { plain.floats.update(from: $0.baseAddress!, count: t.count) }
        m.zero()
        try reorderOnce(from: plain, to: m)
    }

    func load(_ t: Tensor) throws { try write(t, to: value) }
    func loadMomentum(_ t: Tensor) throws { try write(t, to: momentum) }
    func valueTensor() throws -> Tensor { try read(value) }
    func gradTensor() throws -> Tensor { try read(grad) }
    func momentumTensor() throws -> Tensor { try read(momentum) }

    /// Multiplies the gradient by `s` (the step size h of the block that owns it).
    func scaleGrad(_ s: Float) {
        if s == 1 { return }
        let g = grad.floats
        for i in 0..<grad.count { g[i] *= s }
    }

    /// SGD with momentum, PyTorch semantics:  g ← ∇ + wd·w;  v ← μ·v + g;  w ← w − lr·v.
    /// (Padding lanes of blocked layouts hold zeros in w, ∇ and v, and stay zero.)
    func sgdStep(lr: Float, momentum mu: Float, weightDecay wd: Float) {
        let w = value.floats, g = grad.floats, v = momentum.floats
        for i in 0..<value.count {
            let gi = g[i] + wd * w[i]
            let vi = mu * v[i] + gi
            v[i] = vi
            w[i] -= lr * vi
        }
    }
}

/// Batch-norm state: trainable scale γ and shift β plus running statistics (plain `[C]`).
final class BNState {
    let weight: Param
    let bias: Param
    let runningMean: Mem
    let runningVar: Mem
    let channels: Int

    init(prefix: String, bn: BatchNorm) throws {
        channels = bn.channels
        weight = try Param(path: prefix + "/weight", shape: [channels])
        bias = try Param(path: prefix + "/bias", shape: [channels])
        runningMean = try Mem(dims: [channels], tag: dnnl_a)
        runningVar = try Mem(dims: [channels], tag: dnnl_a)
        try load(bn)
    }

    func load(_ bn: BatchNorm) throws {
        try weight.load(bn.weight); try bias.load(bn.bias)
        for (m, t, name) in [(runningMean, bn.runningMean, "running_mean"), (runningVar, bn.runningVar, "running_var")] {
            guard t.shape == [channels] else {
                throw EngineError("\(weight.path.dropLast(7))/\(name): shape \(Tensor.describe(t.shape)), expected [\(channels)]")
            }
            t.data.withUnsafeBufferPointer { m.floats.update(from: $0.baseAddress!, count: channels) }
        }
    }

    /// The trainable parameter behind `t` (γ or β); nil for running statistics.
    func param(_ t: BatchNormTensor) -> Param? {
        switch t {
        case .weight: weight
        case .bias: bias
        case .runningMean, .runningVar: nil
        }
    }

    func export() throws -> BatchNorm {
        BatchNorm(weight: try weight.valueTensor(), bias: try bias.valueTensor(),
                  runningMean: Tensor(shape: [channels], data: Array(UnsafeBufferPointer(start: runningMean.floats, count: channels))),
                  runningVar: Tensor(shape: [channels], data: Array(UnsafeBufferPointer(start: runningVar.floats, count: channels))))
    }
}
