import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

/// The cost of format 1.1's per-tensor digests on load (issue 13), run by
/// scripts/bench-digest.sh in a release build with MLRES_BENCH=1; skipped otherwise (debug
/// numbers mean nothing). WResNet-122 (blocks 20-20-20, widths 32,64,128, 10 classes,
/// 7,669,418 parameters), with and without momentum buffers. Alternating, same run: the full
/// `CheckpointIO.load` (which checks every digest), then the same digests alone (SHA-256,
/// swift-crypto) and, for the choice of algorithm, CRC32C (table-driven, slicing-by-8, the
/// fastest portable Swift form) over the same bytes.
@Suite struct DigestBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["MLRES_BENCH"] == "1"

    @Test(.enabled(if: DigestBenchmark.enabled)) func digestCostOnLoadOfWResNet122() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let arch = Architecture(blocks: [20, 20, 20], widths: [32, 64, 128], inputShape: [3, 32, 32], numClasses: 10)
        let net = Network.initialized(arch, seed: 1)
        #expect(net.parameterCount == 7_669_418)
        var buffers: [String: Tensor] = [:]
        for nt in net.namedTensors where nt.trainable { buffers[nt.path] = nt.tensor }
        let cases = [("model only", Checkpoint(network: net)),
                     ("model + momentum", Checkpoint(network: net, optimizer: OptimizerState(buffers: buffers)))]
        for (name, ckpt) in cases {
            let path = dir.file("w122.h5")
            try CheckpointIO.write(ckpt, to: path)
            var load: [Double] = [], sha: [Double] = [], crc: [Double] = []
            var sink = 0
            for _ in 0..<7 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let loaded = try CheckpointIO.load(path: path)
                let t1 = DispatchTime.now().uptimeNanoseconds
                var tensors = loaded.checkpoint.network.namedTensors.map { ("/" + $0.path, $0.tensor) }
                for (k, v) in loaded.checkpoint.optimizer?.buffers ?? [:] { tensors.append(("/optimizer/momentum/" + k, v)) }
                for (p, t) in tensors { sink &+= ContentDigest.tensor(path: p, t.data, shape: t.shape).utf8.count }
                let t2 = DispatchTime.now().uptimeNanoseconds
                for (_, t) in tensors { sink &+= Int(t.data.withUnsafeBytes { CRC32C.checksum($0) } & 1) }
                let t3 = DispatchTime.now().uptimeNanoseconds
                load.append(Double(t1 - t0) / 1e6); sha.append(Double(t2 - t1) / 1e6); crc.append(Double(t3 - t2) / 1e6)
                #expect(loaded.digestsChecked >= tensors.count)
            }
            func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            print(String(format: "digest-bench %@: file %d bytes; load (digests included) median %.1f ms; "
                + "SHA-256 of all tensors %.1f ms (%.1f%% of load); CRC32C %.1f ms (%.1f%% of load) [sink %d]",
                name, size, median(load), median(sha), 100 * median(sha) / median(load),
                median(crc), 100 * median(crc) / median(load), sink))
        }
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8: only the benchmark's
/// point of comparison for the digest choice.
enum CRC32C {
    static let tables: [[UInt32]] = {
        var t = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[0][i] = c
        }
        for i in 0..<256 { for k in 1..<8 { t[k][i] = (t[k - 1][i] >> 8) ^ t[0][Int(t[k - 1][i] & 0xff)] } }
        return t
    }()

    static func checksum(_ b: UnsafeRawBufferPointer) -> UInt32 {
        let t = tables.flatMap { $0 }
        return t.withUnsafeBufferPointer { t in
            var c: UInt32 = 0xffff_ffff
            var i = 0
            let n = b.count
            while i + 8 <= n {
                let lo = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
                let x = c ^ lo
                c = t[7 * 256 + Int(x & 0xff)] ^ t[6 * 256 + Int((x >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((x >> 16) & 0xff)] ^ t[4 * 256 + Int(x >> 24)]
                    ^ t[3 * 256 + Int(b[i + 4])] ^ t[2 * 256 + Int(b[i + 5])]
                    ^ t[1 * 256 + Int(b[i + 6])] ^ t[Int(b[i + 7])]
                i += 8
            }
            while i < n { c = t[Int((c ^ UInt32(b[i])) & 0xff)] ^ (c >> 8); i += 1 }
            return ~c
        }
    }
}

@Test func crc32cKnownVector() {
    // RFC 3720 B.4: CRC32C("123456789") = 0xE3069283.
    let v = Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) }
    #expect(v == 0xE306_9283)
}
