import Foundation
import Testing
import MLResModel
import MLResData
@testable import MLResTraining

// The single-process parts of data-parallel training: each replica's slice of a batch, and
// the cross-rank weight comparison.

@Test("Loader replicas: the parts of N replicas, concatenated, are the one-process batch, for every N and step")
func loaderReplicaSlices() throws {
    let whole = try fixtureLoader(seed: 5, batch: 12, dropLast: true)
    var reference: [Batch] = []
    for _ in 0 ..< 7 { reference.append(whole.next()) }   // 3 batches per epoch: crosses two epochs
    for n in [2, 3, 4] {
        let parts = try (0 ..< n).map { r in
            try TrainingLoader(dataset: whole.dataset, batchSize: 12, augmentation: whole.augmentation,
                               standardizer: whole.standardizer, seed: 5, dropLast: true, prefetch: r % 2 == 0,
                               replica: r, replicas: n)
        }
        for step in 0 ..< 7 {
            let slices = parts.map { $0.next() }
            #expect(slices.allSatisfy { $0.count == 12 / n })
            #expect(slices.flatMap(\.images) == reference[step].images, "N=\(n) step \(step)")
            #expect(slices.flatMap(\.labels) == reference[step].labels)
        }
        #expect(parts.allSatisfy { $0.state == whole.state })
    }
    #expect(message { try TrainingLoader(dataset: whole.dataset, batchSize: 12, augmentation: .none,
                                         standardizer: whole.standardizer, seed: 5, replica: 2, replicas: 2) }
        .contains("replica 2 of 2 does not exist"))
}

@Test("Cross-rank check: fingerprints differ exactly where one tensor differs, and name it")
func divergenceNamesTensor() throws {
    let net = Network.initialized(Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [1, 8, 8], numClasses: 3), seed: 1)
    var other = net
    var t = other.stages[1].blocks[0].conv1
    t.data[5] = t.data[5].nextUp
    other.stages[1].blocks[0].conv1 = t
    let a = tensorFingerprints(net), b = tensorFingerprints(other)
    #expect(a.map(\.path) == net.namedTensors.map(\.path))
    let lo = zip(a, b).map { min($0.value, $1.value) }, hi = zip(a, b).map { max($0.value, $1.value) }
    #expect(firstDivergence(paths: a.map(\.path), minimum: lo, maximum: hi) == "model/stages/1/blocks/0/conv1/weight")
    #expect(firstDivergence(paths: a.map(\.path), minimum: a.map(\.value), maximum: a.map(\.value)) == nil)
    #expect(networkDigest(net) != networkDigest(other) && networkDigest(net) == networkDigest(net))
}
