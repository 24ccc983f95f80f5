import Foundation
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

/// The fixture written by Fixtures/make_reference_fixture.py (numpy, float64).
struct ReferenceFixture {
    var network: Network
    var count: Int
    var uint8: [Int]
    var logits: [Float]

    static func load() throws -> ReferenceFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/reference_forward.json")
        let o = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let ints = { (k: String) in (o[k] as! [Any]).map { ($0 as! NSNumber).intValue } }
        let arch = Architecture(blocks: ints("blocks"), widths: ints("widths"), inputShape: ints("input_shape"),
                                numClasses: (o["num_classes"] as! NSNumber).intValue)
        var net = Network.initialized(arch, seed: 1)
        for (path, value) in o["tensors"] as! [String: [String: Any]] {
            let shape = (value["shape"] as! [Any]).map { ($0 as! NSNumber).intValue }
            let t = Tensor(shape: shape, data: floats(value["data"]))
            #expect(net.tensor(at: path)?.shape == shape, "fixture tensor \(path)")
            let replaced = net.setTensor(at: path, t)
            #expect(replaced, "fixture path \(path)")
        }
        let hs = (o["h"] as! [[Any]]).map { $0.map { ($0 as! NSNumber).doubleValue } }
        for s in hs.indices { for b in hs[s].indices { net.stages[s].blocks[b].h = hs[s][b] } }
        net.inputMean = floats(o["input_mean"])
        net.inputStd = floats(o["input_std"])
        return ReferenceFixture(network: net, count: (o["count"] as! NSNumber).intValue,
                                uint8: ints("uint8"), logits: floats(o["logits"]))
    }

    /// The images standardised: uint8/255, minus mean, over std.
    var standardised: [Float] {
        let c = network.inputShape[0], plane = network.inputShape[1] * network.inputShape[2]
        return uint8.enumerated().map { i, v in
            let ch = (i / plane) % c
            return (Float(v) / 255 - network.inputMean[ch]) / network.inputStd[ch]
        }
    }
}

@Suite("The numpy fixture")
struct NumpyFixtureTests {
    @Test("the shared float64 reference matches the independent numpy forward pass (zero-pad shortcut, eval BN, h)")
    func referenceMatchesNumpy() throws {
        let f = try ReferenceFixture.load()
        // The fixture exercises a stride-2, channel-widening block on an odd spatial size.
        #expect(f.network.stages[1].blocks[0].stride == 2)
        #expect(f.network.stages[1].blocks[0].shortcutChannelOffset == 1)
        let got = Ref.evalLogits(f.network, Array64([f.count] + f.network.inputShape, f.standardised.map(Double.init))).v
        expectClose(got, f.logits.map(Double.init), tolerance: 1e-4)
    }
}
