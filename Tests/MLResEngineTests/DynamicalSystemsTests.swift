// The paper's dynamical-systems claims, checked on the real engine (oneDNN) rather than on a
// reference: the surgery functions edit the network, the engine runs it.
import Foundation
import Testing
import MLResModel
import MLResTestSupport
@testable import MLResEngine

/// A small network (widths multiple of 16: the engine's blocked-layout path) with BN statistics
/// and affine parameters that are not the identity, so F is a generic function.
private func dsNetwork(h: Double, seed: UInt64 = 5) -> Network {
    networkWithBNStatistics(Architecture(blocks: [3, 3], widths: [16, 32], inputShape: [3, 8, 8], numClasses: 4),
                            seed: seed, h: h)
}

private func input(count: Int, seed: UInt64 = 9) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<(count * 3 * 64)).map { _ in Float(rng.nextNormal()) }
}

/// Eq. 8: deleting block j changes the features right after it by exactly h_j·F(Y_j).
@Test func removingABlockChangesItsOutputByExactlyHF() throws {
    let net = dsNetwork(h: 0.5)
    let x = input(count: 4)
    var inputs: [BlockID: Tensor] = [:], residuals: [BlockID: Tensor] = [:]
    let ex = try NetworkExecutor(network: net, batchSize: 4, threads: 2)
    _ = try ex.forward(x, count: 4) { a in inputs[a.id] = a.input; residuals[a.id] = a.residual }
    let j = BlockID(stage: 0, block: 1)
    let (lesioned, _) = try Surgery.remove(Checkpoint(network: net), blocks: [j])
    var lesionedInputs: [BlockID: Tensor] = [:]
    let ex2 = try NetworkExecutor(network: lesioned.network, batchSize: 4, threads: 2)
    _ = try ex2.forward(x, count: 4) { a in lesionedInputs[a.id] = a.input }
    // Intact: the input of block 0.2 is Y_1 + h·F(Y_1). Lesioned: old block 0.2 is now 0.1 and sees Y_1.
    let intactNext = inputs[BlockID(stage: 0, block: 2)]!.data
    let lesionedNext = lesionedInputs[BlockID(stage: 0, block: 1)]!.data
    let hf = residuals[j]!.data
    var maxErr = 0.0, maxHF = 0.0
    for i in intactNext.indices {
        maxErr = max(maxErr, abs(Double(intactNext[i] - lesionedNext[i]) - Double(hf[i])))
        maxHF = max(maxHF, abs(Double(hf[i])))
    }
    #expect(maxHF > 0.05, "the residual must be non-trivial for the check to mean anything")
    #expect(maxErr < 1e-5 * max(1, maxHF), "difference minus h·F: \(maxErr)")
}

/// Interpolation of a net whose residuals are small barely moves the logits, and less as h shrinks.
@Test func interpolationMovesLogitsLessAsHShrinks() throws {
    let x = input(count: 8)
    var changes: [Double] = []
    for h in [0.2, 0.1, 0.05] {
        let net = dsNetwork(h: h)
        let (deeper, _) = try Surgery.interpolate(Checkpoint(network: net))
        #expect(deeper.network.stageBlocks == [6, 6])
        let z0 = try NetworkExecutor(network: net, batchSize: 8, threads: 2).forward(x, count: 8)
        let z1 = try NetworkExecutor(network: deeper.network, batchSize: 8, threads: 2).forward(x, count: 8)
        var num = 0.0, den = 0.0
        for i in z0.indices { num += Double(z1[i] - z0[i]) * Double(z1[i] - z0[i]); den += Double(z0[i]) * Double(z0[i]) }
        changes.append((num / den).squareRoot())
    }
    print("relative logit change after interpolation at h = 0.2, 0.1, 0.05:", changes)
    #expect(changes[0] < 0.5)
    #expect(changes[1] < changes[0] && changes[2] < changes[1], "\(changes)")
}
