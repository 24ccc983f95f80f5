import Testing
@testable import MLResModel
import Foundation

/// The paper's Table 5 (trainable parameters, 3x32x32 input), as in checkpoint-v1.md.
let table5: [(Architecture.Named, Int, Int)] = [
    (.resnet14, 172_506, 178_356), (.resnet32, 464_154, 470_004),
    (.resnet50, 755_802, 761_652), (.resnet122, 1_922_394, 1_928_244),
    (.wresnet14, 685_994, 697_604), (.wresnet32, 1_849_898, 1_861_508),
    (.wresnet50, 3_013_802, 3_025_412), (.wresnet122, 7_669_418, 7_681_028),
]

@Test("All 16 parameter counts of Table 5, from shapes and from an initialised network",
      arguments: table5)
func parameterCounts(named: Architecture.Named, ten: Int, hundred: Int) {
    for (classes, expected) in [(10, ten), (100, hundred)] {
        let arch = Architecture(named, numClasses: classes)
        #expect(arch.parameterCount == expected, "\(named) \(classes) classes")
        let net = Network.initialized(arch, seed: 1)
        #expect(net.parameterCount == expected)
        // Independent count: sum of the trainable tensors' element counts.
        let summed = net.namedTensors.filter(\.trainable).reduce(0) { $0 + $1.tensor.count }
        #expect(summed == expected)
    }
}

@Test func initIsDeterministicAndShaped() {
    let arch = Architecture(blocks: [2, 2, 2])
    let a = Network.initialized(arch, seed: 7), b = Network.initialized(arch, seed: 7)
    let c = Network.initialized(arch, seed: 8)
    #expect(a == b)
    #expect(a.stem != c.stem)
    #expect(a.stages[1].blocks[0].stride == 2 && a.stages[1].blocks[0].inChannels == 16)
    #expect(a.stages[0].blocks[0].stride == 1 && !a.stages[0].blocks[0].changesShape)
    #expect(a.stages[2].blocks[1].conv1.shape == [64, 64, 3, 3])
    // He-normal: sample std of a large conv close to sqrt(2/fan_in).
    let w = a.stages[2].blocks[1].conv1.data.map(Double.init)
    let mean = w.reduce(0, +) / Double(w.count)
    let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count)).squareRoot()
    #expect(abs(std - (2.0 / 576).squareRoot()) < 0.003)
}

@Test func tensorPathsRoundTrip() {
    var net = Network.initialized(Architecture(blocks: [1, 2]  , widths: [4, 8]), seed: 3)
    let named = net.namedTensors
    #expect(named.count == 1 + 3 * 10 + 4 + 2)
    for nt in named {
        #expect(net.tensor(at: nt.path) == nt.tensor)
        var t = nt.tensor
        t.data = t.data.map { $0 + 1 }
        let ok = net.setTensor(at: nt.path, t)
        #expect(ok)
        #expect(net.tensor(at: nt.path) == t)
    }
    let bad1 = net.setTensor(at: "model/stages/5/blocks/0/conv1/weight", Tensor(shape: [1]))
    let bad2 = net.setTensor(at: "model/head/bn/bogus", Tensor(shape: [1]))
    #expect(!bad1 && !bad2)
}

@Test func lineageRoundTrip() {
    let e = LineageEvent(op: "interpolate", args: ["stages": .array([.int(0), .int(1)]), "h_policy": .string("halve")],
                         at: "2026-11-29T00:00:00Z", parentSHA256: "ab")
    let back = LineageEvent.parse(e.jsonText)
    #expect(back == e)
    #expect(LineageEvent.parse("not json") == nil)
}
