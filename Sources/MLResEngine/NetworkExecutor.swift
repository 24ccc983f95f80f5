import CDNNL
import Foundation
import MLResModel

/// The trainable tensors of one residual block inside the engine.
final class BlockParams {
    let bn1: BNState, conv1: Param, bn2: BNState, conv2: Param
    init(bn1: BNState, conv1: Param, bn2: BNState, conv2: Param) {
        self.bn1 = bn1; self.conv1 = conv1; self.bn2 = bn2; self.conv2 = conv2
    }
}

/// What a block sees and adds, in eval mode, for residual-norm and lesion analyses.
public struct BlockActivation {
    public let id: BlockID
    /// The block input Y_j, NCHW `[N, Cin, H, W]`.
    public let input: Tensor
    /// The scaled residual h·F(Y_j), NCHW `[N, Cout, H', W']`.
    public let residual: Tensor
}

/// Runs a ``Network`` on oneDNN: eval-mode inference, and training steps (forward with
/// batch-statistics BN, backward, SGD with momentum) at a fixed batch size.
///
/// The executor owns the parameters (in oneDNN's layouts) from `init` until ``exportNetwork()``;
/// primitives and activation memory are planned once per (batch size, mode) and reused.
/// Not thread-safe: one executor is driven from one thread (oneDNN parallelises inside).
///
/// SGD, PyTorch semantics, on every trainable tensor (conv and fc weights, BN weight and bias,
/// fc bias alike):  g ← ∇ + wd·w;  v ← μ·v + g;  w ← w − lr·v.
public final class NetworkExecutor {
    /// The architecture, step sizes and metadata (parameters are read back by ``exportNetwork()``).
    public private(set) var network: Network
    /// Training batch size.
    public let batchSize: Int
    /// Synchronised batch norm across data-parallel replicas (nil: per-batch statistics).
    public let replicaSum: ReplicaSum?
    /// SGD momentum μ (default 0.9) and weight decay (default 2e-4).
    public var momentum: Double = 0.9
    public var weightDecay: Double = 2e-4
    /// The number format of convolution and batch-norm data (``Precision``).
    public let precision: Precision

    let stem: Param
    let blockParams: [BlockParams]
    let headBN: BNState
    let fcWeight: Param
    let fcBias: Param
    let geometry: [BlockGeometry]
    /// Channels per block of the activations' blocked layout (`nChw16c` on AVX-512, `nChw8c`
    /// on AVX2: what oneDNN's JIT kernels of the dispatched ISA take), or 0 for NHWC (a width
    /// not a multiple of the block, no blocked kernels, or `MLRES_ENGINE_LAYOUT=nhwc`).
    let block: Int
    /// True when activations use a blocked layout.
    var blocked: Bool { block > 0 }
    /// Every trainable tensor, in ``Network/trainablePaths`` order.
    let params: [Param]
    private struct PlanKey: Hashable { let batch: Int; let mode: PlanMode }
    private var plans: [PlanKey: Plan] = [:]
    /// Bumped whenever parameters or BN statistics change, so plans re-prepare their weights.
    var version = 0

    /// - Parameters:
    ///   - network: the network to run; its parameters are copied in.
    ///   - batchSize: the training batch size (eval accepts any batch size).
    ///   - threads: oneDNN (OpenMP) threads; nil keeps the default, all cores.
    ///   - precision: fp32 (default) or bf16 compute; parameters stay fp32 either way.
    ///   - replicaSum: synchronised batch norm across the replicas of a data-parallel job
    ///     (see ``ReplicaSum``); nil: every batch norm uses this batch's statistics.
    /// - Throws: ``UnsupportedPrecision`` when this CPU has no native kernels for `precision`;
    ///   ``EngineError`` naming the tensor whose shape does not chain.
    public init(network: Network, batchSize: Int, threads: Int? = nil, precision: Precision = .fp32,
                replicaSum: ReplicaSum? = nil) throws {
        try precision.checkSupported()
        guard batchSize > 0 else { throw EngineError("batch size must be positive (got \(batchSize))") }
        self.precision = precision
        if let msg = network.architectureValue.validationError() { throw EngineError("network: \(msg)") }
        setEngineThreads(threads)
        self.replicaSum = replicaSum
        self.network = network
        self.batchSize = batchSize
        let c0 = network.inputShape[0]
        var h = network.inputShape[1], w = network.inputShape[2]
        let w0 = network.stem.shape.first ?? 0
        guard network.stem.shape == [w0, c0, 3, 3] else {
            throw EngineError("model/stem/conv/weight: shape \(Tensor.describe(network.stem.shape)) is not [W0,\(c0),3,3]")
        }
        // MLRES_ENGINE_LAYOUT=nhwc forces NHWC (for performance comparisons).
        let b = CPUISA.effective.activationBlock
        let blk = b > 0 && w0 % b == 0 && network.stages.allSatisfy { $0.blocks.allSatisfy { $0.outChannels % b == 0 } }
            && ProcessInfo.processInfo.environment["MLRES_ENGINE_LAYOUT"] != "nhwc" ? b : 0
        block = blk
        var layoutCache: [[Int]: dnnl_memory_desc_t] = [:]
        func convParam(_ path: String, _ t: Tensor, cin: Int, cout: Int, stride: Int, h: Int, w: Int) throws -> Param {
            guard t.shape == [cout, cin, 3, 3] else {
                throw EngineError("\(path): shape \(Tensor.describe(t.shape)), expected [\(cout),\(cin),3,3]")
            }
            let key = [cin, cout, stride, h, w]
            let md = try layoutCache[key] ?? Conv3x3.preferredWeightLayout(
                cin: cin, cout: cout, stride: stride, height: h, width: w, batch: batchSize, block: blk,
                type: precision.dataType)
            layoutCache[key] = md
            let p = try Param(path: path, shape: t.shape, md: md)
            try p.load(t)
            return p
        }
        stem = try convParam("model/stem/conv/weight", network.stem, cin: c0, cout: w0, stride: 1, h: h, w: w)
        var bps: [BlockParams] = [], geos: [BlockGeometry] = []
        var prevC = w0
        for (s, stage) in network.stages.enumerated() {
            for (b, blk) in stage.blocks.enumerated() {
                let pre = "model/stages/\(s)/blocks/\(b)"
                guard blk.inChannels == prevC, blk.stride == 1 || blk.stride == 2,
                      blk.outChannels >= blk.inChannels, blk.h.isFinite else {
                    throw EngineError("\(pre): block shape in=\(blk.inChannels) out=\(blk.outChannels) stride=\(blk.stride) h=\(blk.h) does not chain (previous width \(prevC))")
                }
                let oh = (h - 1) / blk.stride + 1, ow = (w - 1) / blk.stride + 1
                let bn1 = try BNState(prefix: pre + "/bn1", bn: blk.bn1)
                let c1 = try convParam(pre + "/conv1/weight", blk.conv1, cin: blk.inChannels, cout: blk.outChannels,
                                       stride: blk.stride, h: h, w: w)
                let bn2 = try BNState(prefix: pre + "/bn2", bn: blk.bn2)
                let c2 = try convParam(pre + "/conv2/weight", blk.conv2, cin: blk.outChannels, cout: blk.outChannels,
                                       stride: 1, h: oh, w: ow)
                bps.append(BlockParams(bn1: bn1, conv1: c1, bn2: bn2, conv2: c2))
                geos.append(BlockGeometry(id: BlockID(stage: s, block: b), h: Float(blk.h), stride: blk.stride,
                                          cin: blk.inChannels, cout: blk.outChannels, inH: h, inW: w,
                                          outH: oh, outW: ow, changesShape: blk.changesShape))
                h = oh; w = ow; prevC = blk.outChannels
            }
        }
        blockParams = bps; geometry = geos
        headBN = try BNState(prefix: "model/head/bn", bn: network.headBN)
        let k = network.numClasses
        guard network.fcWeight.shape == [k, prevC], network.fcBias.shape == [k] else {
            throw EngineError("model/head/fc: weight \(Tensor.describe(network.fcWeight.shape)) / bias \(Tensor.describe(network.fcBias.shape)), expected [\(k),\(prevC)] / [\(k)]")
        }
        fcWeight = try Param(path: "model/head/fc/weight", shape: [k, prevC])
        fcBias = try Param(path: "model/head/fc/bias", shape: [k])
        try fcWeight.load(network.fcWeight); try fcBias.load(network.fcBias)
        // The parameter order is the trainable rows of MLResModel's tensor table.
        let blockOf = Dictionary(uniqueKeysWithValues: zip(geos.map(\.id), bps))
        let (stemP, headP, fcW, fcB) = (stem, headBN, fcWeight, fcBias)
        params = network.tensorSlots.filter(\.trainable).map { slot -> Param in
            switch slot {
            case .stemConv: stemP
            case .block(let id, let t):
                switch t {
                case .bn1(let f): blockOf[id]!.bn1.param(f)!
                case .conv1: blockOf[id]!.conv1
                case .bn2(let f): blockOf[id]!.bn2.param(f)!
                case .conv2: blockOf[id]!.conv2
                }
            case .headBN(let f): headP.param(f)!
            case .fcWeight: fcW
            case .fcBias: fcB
            }
        }
    }

    func plan(batch: Int, mode: PlanMode) throws -> Plan {
        let key = PlanKey(batch: batch, mode: mode)
        let p = try plans[key] ?? Plan(engine: self, batch: batch, mode: mode)
        plans[key] = p
        p.prepare(version: version)
        return p
    }

    func loadInput(_ input: [Float], into plan: Plan) throws {
        let per = network.inputShape.reduce(1, *)
        guard input.count == plan.batch * per else {
            throw EngineError("input has \(input.count) values, batch \(plan.batch) × \(network.inputShape) needs \(plan.batch * per)")
        }
        input.withUnsafeBufferPointer { plan.input.floats.update(from: $0.baseAddress!, count: input.count) }
        plan.inputReorder?.run()
    }

    private func runHead(_ plan: Plan) {
        plan.headInReorder?.run()
        plan.head.forward()
        DNNLContext.shared.wait()
        plan.pooled.withUnsafeMutableBufferPointer { pooled in
            plan.pool.forward(plan.headOut.floats, into: pooled.baseAddress!)
            plan.logits.withUnsafeMutableBufferPointer { z in
                plan.fc.forward(p: pooled.baseAddress!, w: fcWeight.value.floats, b: fcBias.value.floats,
                                into: z.baseAddress!)
            }
        }
    }

    /// Eval-mode logits `[N·K]` (row-major N×K) for `count` NCHW images (running BN statistics).
    ///
    /// - Parameters:
    ///   - skipping: blocks to lesion: such a block outputs P(Y_j) instead of P(Y_j) + h·F(Y_j).
    ///   - observe: called after each block with its input Y_j and its residual h·F(Y_j)
    ///     (h·F is reported as computed, even for a skipped block).
    public func forward(_ input: [Float], count: Int, skipping: Set<BlockID> = [],
                        observe: ((BlockActivation) -> Void)? = nil) throws -> [Float] {
        guard count > 0 else { throw EngineError("batch must hold at least one image") }
        let analyze = observe != nil || !skipping.isEmpty
        let plan = try plan(batch: count, mode: analyze ? .analyze : .infer)
        try loadInput(input, into: plan)
        plan.stem.forward()
        for bp in plan.blocks {
            let skip = skipping.contains(bp.geo.id)
            if let observe {
                DNNLContext.shared.wait()
                let g = bp.geo
                let x = nchw(bp.x, n: count, ActLayout(channels: g.cin, height: g.inH, width: g.inW, block: block))
                bp.forward(skip: skip)
                DNNLContext.shared.wait()
                let f = nchw(bp.f!, n: count, ActLayout(channels: g.cout, height: g.outH, width: g.outW, block: block))
                observe(BlockActivation(id: g.id, input: x, residual: f))
            } else {
                bp.forward(skip: skip)
            }
        }
        runHead(plan)
        return plan.logits
    }

    /// Forward (training-mode BN, running statistics updated) and backward for one batch;
    /// leaves the gradients in place (see ``gradient(at:)``) without changing any weight.
    /// Returns the mean softmax cross-entropy and the number of correct arg-max predictions.
    public func computeGradients(input: [Float], labels: [Int]) throws -> (loss: Double, correct: Int) {
        guard labels.count == batchSize else {
            throw EngineError("\(labels.count) labels for a batch of \(batchSize)")
        }
        let k = network.numClasses
        if let bad = labels.first(where: { $0 < 0 || $0 >= k }) {
            throw EngineError("label \(bad) is outside 0..<\(k)")
        }
        let plan = try plan(batch: batchSize, mode: .train)
        defer { version += 1 }   // running statistics change
        try loadInput(input, into: plan)
        plan.stem.forward()
        for bp in plan.blocks { bp.forward() }
        runHead(plan)
        let result = plan.logits.withUnsafeBufferPointer { z in
            plan.dLogits.withUnsafeMutableBufferPointer { dz in
                SoftmaxCrossEntropy.evaluate(z: z.baseAddress!, labels: labels, classes: k, dz: dz.baseAddress!)
            }
        }
        // Head backward: fc, pool, BN+ReLU.
        plan.dLogits.withUnsafeBufferPointer { dz in
            plan.pooled.withUnsafeBufferPointer { p in
                plan.dPooled.withUnsafeMutableBufferPointer { dp in
                    plan.fc.backward(dz: dz.baseAddress!, p: p.baseAddress!, w: fcWeight.value.floats,
                                     dw: fcWeight.grad.floats, db: fcBias.grad.floats, dp: dp.baseAddress!)
                    plan.pool.backward(dp.baseAddress!, into: plan.dHead!.floats)
                }
            }
        }
        plan.head.backward()
        plan.dTopReorder?.run()
        for bp in plan.blocks.reversed() { bp.backward() }
        plan.stem.backward()
        DNNLContext.shared.wait()
        return result
    }

    /// One SGD step on a batch: ``computeGradients(input:labels:)`` then, for every trainable
    /// tensor, g ← ∇ + wd·w; v ← μ·v + g; w ← w − lr·v.
    public func trainStep(input: [Float], labels: [Int], lr: Float) throws -> (loss: Double, correct: Int) {
        let r = try computeGradients(input: input, labels: labels)
        applySGD(lr: lr)
        return r
    }

    /// The SGD-with-momentum update of every trainable tensor from the gradients in place
    /// (left by ``computeGradients(input:labels:)``): g ← ∇ + wd·w; v ← μ·v + g; w ← w − lr·v.
    public func applySGD(lr: Float) {
        for p in params { p.sgdStep(lr: lr, momentum: Float(momentum), weightDecay: Float(weightDecay)) }
        version += 1
    }

    /// The first gradient element that is NaN or ±∞ (checkpoint path of the tensor, index in
    /// the engine's layout, value), or nil when every gradient is finite. One pass over the
    /// gradient buffers; the trainer calls it before each update.
    public func firstNonFiniteGradient() -> (path: String, index: Int, value: Float)? {
        for p in params {
            let g = p.grad.floats
            for i in 0..<p.grad.count where !g[i].isFinite { return (p.path, i, g[i]) }
        }
        return nil
    }

    /// The gradient (of the mean loss) left by the last training step, by checkpoint path.
    public func gradient(at path: String) throws -> Tensor {
        guard let p = params.first(where: { $0.path == path }) else {
            throw EngineError("no trainable tensor at \(path)")
        }
        return try p.gradTensor()
    }

    /// The network with the current parameters and BN running statistics.
    public func exportNetwork() throws -> Network {
        var net = network
        for p in params { net.setTensor(at: p.path, try p.valueTensor()) }
        for (s, stage) in net.stages.enumerated() {
            for b in stage.blocks.indices {
                let bp = blockParams[net.stages[0..<s].reduce(0) { $0 + $1.blocks.count } + b]
                net.stages[s].blocks[b].bn1 = try bp.bn1.export()
                net.stages[s].blocks[b].bn2 = try bp.bn2.export()
            }
        }
        net.headBN = try headBN.export()
        return net
    }

    /// Replaces parameters and running statistics with those of `net` (same architecture).
    public func load(_ net: Network) throws {
        guard net.architectureValue == network.architectureValue, net.stepSizes == network.stepSizes else {
            throw EngineError("the network to load has another architecture or step sizes; build a new executor")
        }
        try stem.load(net.stem)
        var j = 0
        for stage in net.stages {
            for blk in stage.blocks {
                let bp = blockParams[j]
                try bp.bn1.load(blk.bn1); try bp.conv1.load(blk.conv1)
                try bp.bn2.load(blk.bn2); try bp.conv2.load(blk.conv2)
                j += 1
            }
        }
        try headBN.load(net.headBN)
        try fcWeight.load(net.fcWeight); try fcBias.load(net.fcBias)
        network = net
        version += 1
    }

    /// Momentum buffers keyed by trainable path, plus the hyper-parameters.
    public func exportOptimizerState() throws -> OptimizerState {
        var buffers: [String: Tensor] = [:]
        for p in params { buffers[p.path] = try p.momentumTensor() }
        return OptimizerState(kind: "sgd", momentum: momentum, weightDecay: weightDecay,
                              nesterov: false, buffers: buffers)
    }

    /// Restores momentum buffers (every trainable path must be present) and hyper-parameters.
    public func importOptimizerState(_ state: OptimizerState) throws {
        guard state.kind == "sgd", !state.nesterov else {
            throw EngineError("optimizer kind \(state.kind)\(state.nesterov ? " (nesterov)" : "") is not supported: plain SGD with momentum only")
        }
        for p in params {
            guard let t = state.buffers[p.path] else {
                throw EngineError("optimizer/momentum/\(p.path) is missing")
            }
            try p.loadMomentum(t)
        }
        momentum = state.momentum; weightDecay = state.weightDecay
    }

    /// oneDNN's implementation names for the training plan's convolutions (diagnostics).
    public func convolutionImplementations() throws -> [String] {
        let p = try plan(batch: batchSize, mode: .train)
        return [p.stem.implementation] + p.blocks.flatMap { [$0.conv1.implementation, $0.conv2.implementation] }
    }

    /// oneDNN's implementation names for the training plan's weight gradients, stem first
    /// (diagnostics; "ref:any" would be oneDNN's slow reference kernel).
    public func backwardWeightsImplementations() throws -> [String] {
        let p = try plan(batch: batchSize, mode: .train)
        return ([p.stem] + p.blocks.flatMap { [$0.conv1, $0.conv2] }).map { $0.backwardWeightsImplementation ?? "none" }
    }
}

/// An activation (NHWC or blocked, f32 or bf16) copied out as an f32 NCHW tensor.
func nchw(_ src: Mem, n: Int, _ l: ActLayout) -> Tensor {
    var out = [Float](repeating: 0, count: n * l.count)
    var k = 0
    for i in 0..<n { for c in 0..<l.channels { for h in 0..<l.height { for w in 0..<l.width {
        out[k] = src.value(at: l.index(i, c, h, w)); k += 1
    } } } }
    return Tensor(shape: [n, l.channels, l.height, l.width], data: out)
}
