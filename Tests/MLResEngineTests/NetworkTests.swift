// The engine (float32, oneDNN) against the float64 reference and finite differences on the
// tiny network; running statistics, SGD, optimizer state, eval logits, block hooks, lesions.
import Foundation
import Testing
import MLResModel
import MLResTestSupport
@testable import MLResEngine

private let batch = 4
private let labels = [0, 2, 1, 2]
private func input() -> [Float] { randomInput(count: batch * 2 * 6 * 6, seed: 42) }
private func inputA() -> Array64 { Array64([batch, 2, 6, 6], input().map(Double.init)) }

@Test func engineGradientsMatchFloat64Reference() throws {
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    let (loss, correct) = try ex.computeGradients(input: input(), labels: labels)
    let ref = Ref.trainForwardBackward(net, inputA(), labels)
    #expect(abs(loss - ref.loss) < 1e-5 * max(1, abs(ref.loss)))
    #expect((0...batch).contains(correct))
    #expect(ref.grads.count == net.trainablePaths.count)
    for path in net.trainablePaths {
        let g = try ex.gradient(at: path)
        let e = relError(g, ref.grads[path]!)
        #expect(e < 2e-4, "\(path): relative error \(e)")
    }
}

@Test func engineGradientsMatchFiniteDifferences() throws {
    // Central differences (step 1e-6, in float64) of the reference loss, a few coordinates of
    // every tensor, against the engine's float32 gradients.
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    _ = try ex.computeGradients(input: input(), labels: labels)
    let x = inputA()
    for path in net.trainablePaths {
        let t = net.tensor(at: path)!
        let g = try ex.gradient(at: path)
        let scale = g.data.map { abs(Double($0)) }.max()! + 1e-4
        for i in Set([0, t.count / 2, t.count - 1, (7 * t.count) / 9]) {
            let d = 1e-6
            let fd = (Ref.trainLoss(net, x, labels, perturb: (path, i, d))
                - Ref.trainLoss(net, x, labels, perturb: (path, i, -d))) / (2 * d)
            let err = abs(Double(g.data[i]) - fd) / scale
            #expect(err < 1e-3, "\(path)[\(i)]: engine \(g.data[i]) vs finite difference \(fd)")
        }
    }
}

@Test func evalLogitsMatchReference() throws {
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    let z = try ex.forward(input(), count: batch)
    let ref = Ref.evalLogits(net, inputA())
    #expect(relError(z.map(Double.init), ref.v) < 1e-5)
    // Another batch size gets its own plan; the first image alone gives the same row.
    let one = try ex.forward(Array(input()[0..<72]), count: 1)
    #expect(relError(one.map(Double.init), Array(ref.v[0..<3])) < 1e-5)
}

@Test func runningStatisticsFollowPyTorchConvention() throws {
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    _ = try ex.computeGradients(input: input(), labels: labels)
    let out = try ex.exportNetwork()
    let ref = Ref.trainForwardBackward(net, inputA(), labels)
    let m = net.bnMomentum
    func check(_ before: BatchNorm, _ after: BatchNorm, _ key: String) {
        let (mean, variance, count) = ref.stats[key]!
        let unbiased = Double(count) / Double(count - 1)
        let em = before.runningMean.data.indices.map { (1 - m) * Double(before.runningMean.data[$0]) + m * mean[$0] }
        let ev = before.runningVar.data.indices.map {
            (1 - m) * Double(before.runningVar.data[$0]) + m * variance[$0] * unbiased
        }
        #expect(relError(after.runningMean.data.map(Double.init), em) < 1e-5, "\(key) running_mean")
        #expect(relError(after.runningVar.data.map(Double.init), ev) < 1e-5, "\(key) running_var")
        #expect(after.weight == before.weight && after.bias == before.bias)
    }
    for (s, stage) in net.stages.enumerated() {
        for b in stage.blocks.indices {
            check(stage.blocks[b].bn1, out.stages[s].blocks[b].bn1, "model/stages/\(s)/blocks/\(b)/bn1")
            check(stage.blocks[b].bn2, out.stages[s].blocks[b].bn2, "model/stages/\(s)/blocks/\(b)/bn2")
        }
    }
    check(net.headBN, out.headBN, "model/head/bn")
    #expect(out.stem == net.stem && out.fcWeight == net.fcWeight)   // no step taken
}

@Test func sgdStepMatchesHandComputation() throws {
    let net = tinyNetwork()
    // Gradients of this batch at these weights.
    let a = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    _ = try a.computeGradients(input: input(), labels: labels)
    // A second executor with non-zero momentum buffers takes one step.
    let b = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    var state = OptimizerState(momentum: 0.9, weightDecay: 2e-4)
    for (i, p) in net.trainablePaths.enumerated() {
        state.buffers[p] = randomTensor(net.tensor(at: p)!.shape, seed: UInt64(100 + i), scale: 0.01)
    }
    try b.importOptimizerState(state)
    let lr: Float = 0.05
    _ = try b.trainStep(input: input(), labels: labels, lr: lr)
    let after = try b.exportNetwork()
    let opt = try b.exportOptimizerState()
    for p in net.trainablePaths {
        let w = net.tensor(at: p)!.data, g = try a.gradient(at: p).data, v0 = state.buffers[p]!.data
        let v1 = w.indices.map { Double(0.9 * v0[$0]) + Double(g[$0]) + 2e-4 * Double(w[$0]) }
        let w1 = w.indices.map { Double(w[$0]) - Double(lr) * v1[$0] }
        #expect(relError(opt.buffers[p]!.data.map(Double.init), v1) < 1e-5, "\(p) momentum")
        #expect(relError(after.tensor(at: p)!.data.map(Double.init), w1) < 1e-6, "\(p) weight")
    }
    #expect(opt.momentum == 0.9 && abs(opt.weightDecay - 2e-4) < 1e-12)
}

@Test func exportImportRoundTrip() throws {
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    #expect(try ex.exportNetwork() == net)
    let other = tinyNetwork(seed: 99)
    try ex.load(other)
    #expect(try ex.exportNetwork() == other)
    let z = try ex.forward(input(), count: batch)
    #expect(relError(z.map(Double.init), Ref.evalLogits(other, inputA()).v) < 1e-5)
    var wrong = OptimizerState()
    wrong.buffers = [:]
    #expect(throws: EngineError.self) { try ex.importOptimizerState(wrong) }
    #expect(throws: EngineError.self) { try ex.computeGradients(input: input(), labels: [0, 1, 2, 3]) }
    #expect(throws: EngineError.self) { try ex.forward([1, 2, 3], count: 1) }
}

@Test func blockHooksAndLesions() throws {
    let net = tinyNetwork()
    let ex = try NetworkExecutor(network: net, batchSize: batch, threads: 1)
    var seen: [BlockActivation] = []
    let z = try ex.forward(input(), count: batch) { seen.append($0) }
    #expect(seen.map(\.id.description) == ["0.0", "1.0", "1.1"])
    // Y_{j+1} = P(Y_j) + h·F(Y_j): the next block's input is the sum of what this one reports.
    for j in 0..<(seen.count - 1) {
        let blk = net.block(seen[j].id)!
        let x = Array64(seen[j].input)
        let p = blk.changesShape ? Ref.shortcut(x, cout: blk.outChannels, stride: blk.stride) : x
        #expect(relError(seen[j + 1].input, p + Array64(seen[j].residual)) < 1e-6)
    }
    #expect(relError(z.map(Double.init), Ref.evalLogits(net, inputA()).v) < 1e-5)
    // Lesion of block 1.1 = the network with h = 0 there.
    let lesioned = try ex.forward(input(), count: batch, skipping: [BlockID(stage: 1, block: 1)])
    var zeroH = net
    zeroH.stages[1].blocks[1].h = 0
    #expect(relError(lesioned.map(Double.init), Ref.evalLogits(zeroH, inputA()).v) < 1e-5)
    #expect(relError(lesioned.map(Double.init), z.map(Double.init)) > 1e-4)
}

@Test func blockedLayoutMatchesReference() throws {
    // Widths that are multiples of 16 run in oneDNN's blocked layout of the dispatched ISA
    // (nChw16c on AVX-512, nChw8c on AVX2; the tiny network above runs in NHWC): the 16 → 32
    // shortcut puts its input at channel 8, inside a 16-block or at the start of an 8-block.
    var net = networkWithBNStatistics(Architecture(blocks: [1, 2], widths: [16, 32], inputShape: [3, 4, 4], numClasses: 3),
                                      seed: 5, h: 0.5)
    net.stages[1].blocks[1].h = 0.75
    let n = 2, labels = [2, 0]
    let x = randomInput(count: n * 3 * 4 * 4, seed: 8)
    let xa = Array64([n, 3, 4, 4], x.map(Double.init))
    let ex = try NetworkExecutor(network: net, batchSize: n, threads: 1)
    #expect(ex.blocked && ex.block == CPUISA.effective.activationBlock)
    var seen: [BlockActivation] = []
    let z = try ex.forward(x, count: n) { seen.append($0) }
    #expect(relError(z.map(Double.init), Ref.evalLogits(net, xa).v) < 1e-5)
    #expect(relError(try ex.forward(x, count: n).map(Double.init), Ref.evalLogits(net, xa).v) < 1e-5)
    let s = Ref.shortcut(Array64(seen[1].input), cout: 32, stride: 2)
    #expect(relError(seen[2].input, s + Array64(seen[1].residual)) < 1e-6)
    try expectGradientsMatchReference(ex, net, x, xa, labels)
}

@Test func blockSizeFollowsTheDispatchedISA() throws {
    // oneDNN 2.6 has JIT convolution and batch-norm kernels for nChw16c only on AVX-512 and for
    // nChw8c on AVX2 (nChw16c there gets reference kernels, which the engine refuses): the block
    // is the ISA's. Widths 8 → 16 (shortcut offset 4, inside an 8-block) are blocked on AVX2 and
    // NHWC on AVX-512; both must match the reference.
    let isa = CPUISA.effective
    #expect(isa.activationBlock == (isa.includes(.avx512Core) ? 16 : isa.includes(.avx2) ? 8 : 0))
    let net = Network.initialized(Architecture(blocks: [1, 2], widths: [8, 16], inputShape: [3, 4, 4], numClasses: 3),
                                  seed: 11, h: 0.5)
    let n = 2, labels = [1, 2]
    let x = randomInput(count: n * 3 * 4 * 4, seed: 12)
    let xa = Array64([n, 3, 4, 4], x.map(Double.init))
    let ex = try NetworkExecutor(network: net, batchSize: n, threads: 1)
    #expect(ex.block == (isa.activationBlock == 8 ? 8 : 0))
    var seen: [BlockActivation] = []
    let z = try ex.forward(x, count: n) { seen.append($0) }
    #expect(relError(z.map(Double.init), Ref.evalLogits(net, xa).v) < 1e-5)
    #expect(relError(try ex.forward(x, count: n).map(Double.init), Ref.evalLogits(net, xa).v) < 1e-5)
    #expect(seen.count == 3)
    let s = Ref.shortcut(Array64(seen[1].input), cout: 16, stride: 2)
    #expect(relError(seen[2].input, s + Array64(seen[1].residual)) < 1e-6)
    try expectGradientsMatchReference(ex, net, x, xa, labels)
}

@Test("Few-channel inputs (Fashion-MNIST 1, CIFAR 3) in the blocked layout: no weight gradient runs oneDNN's reference kernel; gradients match float64",
      arguments: [1, 3])
func fewChannelStemGradientsAreJIT(channels: Int) throws {
    // oneDNN 2.6 on AVX2 has no JIT backward-weights kernel for a plain 1-channel source with a
    // blocked dy; the engine then computes the stem's gradient from plain NCHW copies with the
    // GEMM kernel. Before, the reference kernel took 76% of a Fashion-MNIST 2-2-2 training step.
    let net = networkWithBNStatistics(Architecture(blocks: [1, 1], widths: [16, 32], inputShape: [channels, 8, 8], numClasses: 3),
                                      seed: 13, h: 0.5)
    let n = 3, labels = [2, 0, 1]
    let x = randomInput(count: n * channels * 8 * 8, seed: 14)
    let xa = Array64([n, channels, 8, 8], x.map(Double.init))
    let ex = try NetworkExecutor(network: net, batchSize: n, threads: 1)
    let impls = try ex.backwardWeightsImplementations()
    #expect(impls.count == 5 && impls.allSatisfy { !$0.hasPrefix("ref") && $0 != "none" }, "\(impls)")
    #expect(try ex.convolutionImplementations().allSatisfy { !$0.hasPrefix("ref") })
    try expectGradientsMatchReference(ex, net, x, xa, labels)
}

/// One training step's loss and every gradient of the engine against the float64 reference.
private func expectGradientsMatchReference(_ ex: NetworkExecutor, _ net: Network, _ x: [Float], _ xa: Array64,
                                           _ labels: [Int]) throws {
    let (loss, _) = try ex.computeGradients(input: x, labels: labels)
    let ref = Ref.trainForwardBackward(net, xa, labels)
    #expect(abs(loss - ref.loss) < 1e-5 * ref.loss)
    for path in net.trainablePaths {
        let e = relError(try ex.gradient(at: path), ref.grads[path]!)
        #expect(e < 2e-4, "\(path): relative error \(e)")
    }
}
