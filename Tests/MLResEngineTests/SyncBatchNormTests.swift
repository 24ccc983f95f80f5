import Foundation
import Testing
import MLResModel
@testable import MLResEngine
import MLResTestSupport

// Synchronised batch norm (DataParallel.swift) against the engine's own batch norm: replicas
// that see identical batches have the global batch statistics of one replica, so every
// gradient and running statistic must equal the single-process ones.

@Suite("Synchronised batch norm")
struct SyncBatchNormTests {
    func gradients(_ e: NetworkExecutor) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for p in e.network.trainablePaths { out[p] = try e.gradient(at: p) }
        return out
    }

    @Test("1 replica, and 2 replicas holding the same batch, give the plain engine's gradients and running statistics",
          arguments: [1, 2])
    func identicalReplicas(replicas: Int) throws {
        do {
            let net = tinyNetwork(), widths = [3, 6]
            let n = 5
            let x = randomInput(count: n * 72, seed: 11)
            let labels = [0, 2, 1, 1, 0]
            let plain = try NetworkExecutor(network: net, batchSize: n, threads: 1)
            let k = Double(replicas)
            let synced = try NetworkExecutor(network: net, batchSize: n, threads: 1,
                                             replicaSum: ReplicaSum(replicas: replicas) { v in for i in v.indices { v[i] *= k } })
            let a = try plain.computeGradients(input: x, labels: labels)
            let b = try synced.computeGradients(input: x, labels: labels)
            #expect(abs(a.loss - b.loss) <= 1e-6 * abs(a.loss) && a.correct == b.correct)
            let ga = try gradients(plain), gb = try gradients(synced)
            for p in net.trainablePaths {
                let e = relError(gb[p]!.data.map(Double.init), ga[p]!.data.map(Double.init))
                #expect(e < 1e-5, "\(widths) \(p): relative error \(e)")
            }
            // Running means agree; running variances too for one replica (with two, the
            // unbiasing factor is 2M/(2M-1) instead of M/(M-1): twice the samples).
            let ra = plain.runningStatistics(), rb = synced.runningStatistics()
            if replicas == 1 { #expect(relError(rb, ra) < 1e-6) }
            // Layout: per batch norm (blocks' bn1, bn2, then the head) C means then C variances.
            let channels = net.stages.flatMap { $0.blocks.flatMap { [$0.inChannels, $0.outChannels] } } + [net.headBN.channels]
            var means: [Int] = [], off = 0
            for c in channels { means += Array(off ..< off + c); off += 2 * c }
            #expect(off == ra.count)
            #expect(relError(means.map { rb[$0] }, means.map { ra[$0] }) < 1e-6)
        }
    }
}
