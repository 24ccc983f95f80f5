// bf16 compute (Precision.bf16) against the float64 reference, fp32/bf16 checkpoint
// interchange, determinism, and the refusal on a CPU without the AVX512_BF16 instructions.
//
// bf16 runs only where oneDNN dispatches avx512_core_bf16. On any other CPU every test below
// asserts the refusal instead (UnsupportedPrecision naming the missing ISA): mlres never runs
// bf16 through emulation, so there is nothing else to check there.
//
// Tolerance derivation. bf16 keeps 8 significant bits (7 stored + the implicit one), so one
// rounding to bf16 has relative error at most u = 2⁻⁸ ≈ 3.9e-3 (round to nearest). Products of
// two bf16 numbers are exact in fp32 and oneDNN accumulates in fp32 (u₃₂ = 2⁻²⁴, negligible), so
// the only errors are the roundings of the data a kernel reads or writes in bf16. To first order
// the relative errors of k successive roundings add: |ŷ − y| ≤ k·u·max|y| (errors of independent
// roundings mostly cancel, so this worst-case sum is a safe bound). Counting along the tiny
// network's longest path: the input (1), the stem's weights (1) and output (1); per block the
// BN1 output, conv1 weights, conv1 output, BN2 output, conv2 weights and the block output (6,
// three blocks: 18); Y_L is converted to fp32 exactly for the fp32 head. k = 21 for the forward,
// tolerance 21·u ≈ 0.082 relative to the largest reference value. The backward pass re-reads the
// same rounded activations and rounds every data gradient it writes once more (per block
// dY, da2, dz1, da1, dF: 5 more, 15 for three blocks, plus the head's dY_L), so gradients get
// k = 21 + 16 = 37, ≈ 0.145.
import Foundation
import Testing
import MLResModel
import MLResTestSupport
@testable import MLResEngine

/// Unit roundoff of bf16: 2⁻⁸.
private let bf16U = 1.0 / 256
private let forwardTolerance = 21 * bf16U
private let gradientTolerance = 37 * bf16U
private let bf16Available = CPUISA.effective.includes(.avx512CoreBF16)

private let batch = 4
private let labels = [0, 2, 1, 2]
private func input() -> [Float] { randomInput(count: batch * 2 * 6 * 6, seed: 42) }
private func inputA() -> Array64 { Array64([batch, 2, 6, 6], input().map(Double.init)) }

/// A bf16 executor, or nil after checking that this CPU refuses bf16 with a message that names
/// the missing ISA and the one oneDNN dispatches.
private func bf16Executor(_ net: Network, batch n: Int = batch) throws -> NetworkExecutor? {
    guard bf16Available else {
        do {
            _ = try NetworkExecutor(network: net, batchSize: n, threads: 1, precision: .bf16)
            Issue.record("bf16 executor created on a CPU without avx512_core_bf16 (\(CPUISA.effective))")
        } catch let e as UnsupportedPrecision {
            #expect(e.description.contains("AVX512_BF16") && e.description.contains("avx512_core_bf16"))
            #expect(e.description.contains(CPUISA.effective.description))
        }
        return nil
    }
    return try NetworkExecutor(network: net, batchSize: n, threads: 1, precision: .bf16)
}

@Test func bf16RoundingMatchesDefinition() {
    // Round to nearest even on the 16 dropped bits; bf16 → f32 is exact.
    #expect(Float(1).bf16Bits == 0x3F80)
    #expect(Float(bf16Bits: 0x3F80) == 1)
    // The spacing of bf16 numbers in [1, 2) is 2⁻⁷; halfway cases round to the even neighbour.
    #expect(Float(1 + 1.0 / 128).bf16Bits == 0x3F81)              // representable
    #expect(Float(1 + 1.0 / 256).bf16Bits == 0x3F80)              // halfway: to even (down)
    #expect(Float(1 + 3.0 / 256).bf16Bits == 0x3F82)              // halfway: to even (up)
    #expect(Float(1 + 1.0 / 256 + 1.0 / 4096).bf16Bits == 0x3F81) // above halfway: up
    #expect(Float(-2.5).bf16Bits == 0xC020)
    #expect(Float.nan.bf16Bits & 0x7FC0 == 0x7FC0)
    for x in [Float(0.1), 3.14159, -1e-3, 12345.678] {
        let r = Float(bf16Bits: x.bf16Bits)
        #expect(abs(Double(r - x)) <= bf16U * abs(Double(x)))     // |fl(x) − x| ≤ u·|x|
        #expect(r != x)
    }
}

@Test func precisionNamesAndISAChecks() throws {
    #expect(Precision(rawValue: "bf16") == .bf16 && Precision(rawValue: "fp32") == .fp32)
    try Precision.fp32.checkSupported()
    #expect(CPUISA.avx512CoreBF16.includes(.avx512Core) && CPUISA.avx512Core.includes(.avx2))
    #expect(!CPUISA.avx2.includes(.avx512CoreBF16))
    #expect(CPUISA.avx2.description == "avx2" && CPUISA.avx512CoreBF16.description == "avx512_core_bf16")
    if bf16Available { try Precision.bf16.checkSupported() } else {
        #expect(throws: UnsupportedPrecision.self) { try Precision.bf16.checkSupported() }
    }
}

@Test func bf16ForwardMatchesFloat64Reference() throws {
    let net = tinyNetwork()
    guard let ex = try bf16Executor(net) else { return }
    #expect(ex.precision == .bf16)
    let z = try ex.forward(input(), count: batch)
    let e = relError(z.map(Double.init), Ref.evalLogits(net, inputA()).v)
    #expect(e < forwardTolerance, "bf16 eval logits: relative error \(e)")
    #expect(e > 0, "bf16 logits equal fp32-exact ones: bf16 kernels did not run")
}

@Test func bf16GradientsMatchFloat64Reference() throws {
    let net = tinyNetwork()
    guard let ex = try bf16Executor(net) else { return }
    let (loss, _) = try ex.computeGradients(input: input(), labels: labels)
    let ref = Ref.trainForwardBackward(net, inputA(), labels)
    #expect(abs(loss - ref.loss) < forwardTolerance * max(1, abs(ref.loss)))
    for path in net.trainablePaths {
        let e = relError(try ex.gradient(at: path), ref.grads[path]!)
        #expect(e < gradientTolerance, "\(path): relative error \(e)")
    }
}

@Test func bf16TrainingStepMatchesFloat64Step() throws {
    // One SGD step (μ = 0.9 on zero buffers, wd = 2e-4): w₁ = w₀ − lr·(∇ + wd·w₀). The master
    // weights are fp32, so the step's error is lr times the gradient's (tolerance above).
    let net = tinyNetwork()
    guard let ex = try bf16Executor(net) else { return }
    let lr: Float = 0.1
    _ = try ex.trainStep(input: input(), labels: labels, lr: lr)
    let after = try ex.exportNetwork()
    let ref = Ref.trainForwardBackward(net, inputA(), labels)
    for p in net.trainablePaths {
        let w0 = net.tensor(at: p)!.data.map(Double.init)
        let step = w0.indices.map { Double(lr) * (ref.grads[p]!.v[$0] + 2e-4 * w0[$0]) }
        let got = zip(w0, after.tensor(at: p)!.data).map { $0 - Double($1) }
        #expect(relError(got, step) < gradientTolerance, "\(p) step")
    }
}

@Test func bf16KeepsFP32MasterWeightsAndCheckpointsInterchange() throws {
    let net = tinyNetwork()
    guard let ex = try bf16Executor(net) else { return }
    // Export without a step returns the fp32 parameters bit for bit (no bf16 round trip).
    #expect(try ex.exportNetwork() == net)
    // A step with lr = 0 changes running statistics only, never weights.
    _ = try ex.trainStep(input: input(), labels: labels, lr: 0)
    let zeroStep = try ex.exportNetwork()
    for p in net.trainablePaths { #expect(zeroStep.tensor(at: p) == net.tensor(at: p), "\(p)") }
    // bf16-trained parameters load into an fp32 executor and back, unchanged.
    _ = try ex.trainStep(input: input(), labels: labels, lr: 0.1)
    let trained = try ex.exportNetwork()
    let fp32 = try NetworkExecutor(network: trained, batchSize: batch, threads: 1)
    #expect(try fp32.exportNetwork() == trained)
    let zf = try fp32.forward(input(), count: batch)
    #expect(relError(zf.map(Double.init), Ref.evalLogits(trained, inputA()).v) < 1e-5)
    try ex.load(try fp32.exportNetwork())
    #expect(try ex.exportNetwork() == trained)
    let zb = try ex.forward(input(), count: batch)
    #expect(relError(zb.map(Double.init), zf.map(Double.init)) < forwardTolerance)
}

@Test func bf16TrainingIsDeterministic() throws {
    // Two executors from the same state (parameters and momentum) on the same batches end
    // bit-identical: what exact resume within bf16 rests on.
    let net = tinyNetwork()
    guard let a = try bf16Executor(net), let b = try bf16Executor(net) else { return }
    var state = OptimizerState(momentum: 0.9, weightDecay: 2e-4)
    for (i, p) in net.trainablePaths.enumerated() {
        state.buffers[p] = randomTensor(net.tensor(at: p)!.shape, seed: UInt64(300 + i), scale: 0.01)
    }
    try a.importOptimizerState(state); try b.importOptimizerState(state)
    for step in 0..<3 {
        let x = randomInput(count: batch * 2 * 6 * 6, seed: UInt64(50 + step))
        let ra = try a.trainStep(input: x, labels: labels, lr: 0.05)
        let rb = try b.trainStep(input: x, labels: labels, lr: 0.05)
        #expect(ra.loss == rb.loss)
    }
    #expect(try a.exportNetwork() == b.exportNetwork())
    #expect(try a.exportOptimizerState().buffers == b.exportOptimizerState().buffers)
}

@Test func bf16BlockedLayoutAndHooksMatchReference() throws {
    // Widths that are multiples of 16 (the blocked layout) with the 16 → 32 zero-pad shortcut,
    // the analysis path (hooks, lesion) and the fused inference path in bf16.
    let net = Network.initialized(Architecture(blocks: [1, 2], widths: [16, 32], inputShape: [3, 4, 4], numClasses: 3),
                                  seed: 5, h: 0.5)
    let n = 2
    let x = randomInput(count: n * 3 * 4 * 4, seed: 8)
    let xa = Array64([n, 3, 4, 4], x.map(Double.init))
    guard let ex = try bf16Executor(net, batch: n) else { return }
    let ref = Ref.evalLogits(net, xa).v
    #expect(relError(try ex.forward(x, count: n).map(Double.init), ref) < forwardTolerance)
    var seen: [BlockActivation] = []
    let z = try ex.forward(x, count: n) { seen.append($0) }
    #expect(relError(z.map(Double.init), ref) < forwardTolerance)
    #expect(seen.count == 3)
    let (_, _) = try ex.computeGradients(input: x, labels: [2, 0])
    let g = Ref.trainForwardBackward(net, xa, [2, 0])
    for path in net.trainablePaths {
        let e = relError(try ex.gradient(at: path), g.grads[path]!)
        #expect(e < gradientTolerance, "\(path): relative error \(e)")
    }
}
