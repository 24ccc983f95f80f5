import Foundation
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResServer
import Testing

// Issue 12 kind 2 (field case fc-19) for the server: its checkpoint is replaced atomically
// (rename over the path, as a trainer publishes last.h5) every fraction of a millisecond while
// the server loads it on request and by polling. Every load must succeed (never a 422 "corrupt"
// or "kept changing"), report the sha256 of one of the two files, and serve the network of the
// file whose digest it reports (metadata and logits checked against the float64 reference).

/// Two real checkpoints with different architectures and weights: A (blocks 1-1, seed 1) and B
/// (blocks 2-2, seed 7), and what each is.
private struct Pair {
    let a: [UInt8], b: [UInt8]
    /// sha256 (from coreutils) → network.
    let networks: [String: Network]
    let shaA: String, shaB: String

    init(_ dir: String) throws {
        let netA = SeedLoader.network(seed: 1)
        var archB = tinyArchitecture
        archB.blocks = [2, 2]
        var netB = Network.initialized(archB, seed: 7)
        netB.inputMean = netA.inputMean; netB.inputStd = netA.inputStd
        try CheckpointIO.write(Checkpoint(network: netA), to: dir + "/pair-a.h5")
        try CheckpointIO.write(Checkpoint(network: netB), to: dir + "/pair-b.h5")
        a = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/pair-a.h5")))
        b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/pair-b.h5")))
        shaA = try sha256sum(dir + "/pair-a.h5")
        shaB = try sha256sum(dir + "/pair-b.h5")
        networks = [shaA: netA, shaB: netB]
        try FileManager.default.removeItem(atPath: dir + "/pair-a.h5")
        try FileManager.default.removeItem(atPath: dir + "/pair-b.h5")
    }

    func tag(_ sha: String?) -> String? { sha == shaA ? "A" : sha == shaB ? "B" : nil }
}

private let pixels = testPixels(count: 2, seed: 99)

/// Checks one metadata reply and one infer reply made right after it: the digest is one of the
/// pair's, the blocks are that file's, and the logits are that file's network's. Returns the tag.
private func checkServed(_ pair: Pair, metadata: HTTPReply, infer: HTTPReply?) throws -> String? {
    #expect(metadata.status == 200, "\(metadata.text)")
    let sha = metadata.object["sha256"] as? String
    guard let tag = pair.tag(sha), let net = pair.networks[sha!] else {
        Issue.record("served sha256 \(sha ?? "none") is neither A's nor B's")
        return nil
    }
    let blocks = (metadata.object["blocks"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue }
    #expect(blocks == net.stageBlocks, "sha256 of \(tag) served with blocks \(String(describing: blocks))")
    if let infer {
        #expect(infer.status == 200, "\(infer.text)")
        let expected = try expectedLogits(net, pixels: pixels, count: 2)
        expectClose(outputs(infer).logits, expected, tolerance: 1e-4, "logits of the network whose digest (\(tag)) is reported")
    }
    return tag
}

private func inferTwo(_ s: TestServer) async throws -> HTTPReply {
    try await s.post("/v2/models/live/infer", inferBody(shape: [2, 3, 6, 6], data: pixels.map { "\($0)" }))
}

@Suite("Serving while the checkpoint is replaced atomically (issue 12 kind 2, fc-19)", .serialized)
struct ReplaceWhileServingTests {
    @Test("load/reload on request: always 200, the digest and the network of one whole file")
    func reloadWhileReplaced() async throws {
        let dir = temporaryFolder("replace-reload")
        defer { cleanup(dir) }
        let pair = try Pair(dir)
        let live = dir + "/live.h5"
        #expect(AtomicSwapper.replace(live, via: dir + "/next", with: pair.a) == nil)
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine)
        #expect(try checkServed(pair, metadata: try await s.get("/v2/models/live"), infer: try await inferTwo(s)) == "A")

        let swapper = AtomicSwapper(path: live, versions: [pair.a, pair.b])
        swapper.start()
        let start = Date()
        var seen: [String: Int] = [:], loads = 0
        while true {
            let t = Date().timeIntervalSince(start)
            if t > 10 || (t > 2 && seen.count == 2 && loads >= 10) { break }
            loads += 1
            let r = try await s.post("/v2/repository/models/live/load", "{}")
            #expect(r.status == 200, "reload \(loads) while the file is replaced: \(r.status) \(r.text)")
            guard r.status == 200 else { continue }
            // Nothing else reloads meanwhile: metadata and logits are those of this load.
            let tag = try checkServed(pair, metadata: try await s.get("/v2/models/live"), infer: try await inferTwo(s))
            #expect(pair.tag(r.object["sha256"] as? String) == tag, "the load reply's sha256 is the served one")
            if let tag { seen[tag, default: 0] += 1 }
        }
        let swaps = try swapper.stop()
        #expect(seen["A", default: 0] > 0 && seen["B", default: 0] > 0, "race not exercised: \(seen), \(swaps) replacements")
        let stats = try await s.get("/v2/models/live/stats")
        let failures = ((stats.object["model_stats"] as? [[String: Any]])?.first?["load_failures"] as? NSNumber)?.intValue
        #expect(failures == 0, "\(stats.text)")
        try await s.stop()
    }

    @Test("polling: every reload succeeds, serves one whole file, and settles on the last one")
    func pollWhileReplaced() async throws {
        let dir = temporaryFolder("replace-poll")
        defer { cleanup(dir) }
        let pair = try Pair(dir)
        let live = dir + "/live.h5"
        #expect(AtomicSwapper.replace(live, via: dir + "/next", with: pair.a) == nil)
        let s = try await TestServer.start(directory: dir, loader: ModelLoaders.engine) {
            $0.pollInterval = .milliseconds(20)
        }
        let swapper = AtomicSwapper(path: live, versions: [pair.a, pair.b])
        swapper.start()
        let start = Date()
        var seen: [String: Int] = [:], versions = Set<String>()
        while true {
            let t = Date().timeIntervalSince(start)
            if t > 10 || (t > 2 && seen.count == 2 && versions.count >= 4) { break }
            let m = try await s.get("/v2/models/live")
            if let v = m.object["version"] as? String { versions.insert(v) }
            // A poll may reload between the two requests: the metadata alone is checked here,
            // the logits against either network.
            if let tag = try checkServed(pair, metadata: m, infer: nil) { seen[tag, default: 0] += 1 }
            let r = try await inferTwo(s)
            #expect(r.status == 200, "\(r.text)")
            let got = outputs(r).logits
            let isA = try closeEnough(got, expectedLogits(pair.networks[pair.shaA]!, pixels: pixels, count: 2))
            let isB = try closeEnough(got, expectedLogits(pair.networks[pair.shaB]!, pixels: pixels, count: 2))
            #expect(isA || isB, "logits of neither network: \(got)")
        }
        let swaps = try swapper.stop()
        #expect(seen["A", default: 0] > 0 && seen["B", default: 0] > 0, "race not exercised: \(seen), \(swaps) replacements")
        #expect(versions.count >= 4, "the poll reloaded \(versions.count) versions")

        // After the last replacement the poll settles on the file now at the path (a load
        // that read an earlier file may still be finishing: settled = the same version twice,
        // 300 ms apart, serving the final file).
        let final = try sha256sum(live)
        var served: String?, settled = false
        var last = ""
        for _ in 0..<40 {
            let m = try await s.get("/v2/models/live").object
            served = m["sha256"] as? String
            let now = "\(m["version"] ?? "")"
            if served == final && now == last { settled = true; break }
            last = served == final ? now : ""
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(settled && served == final, "served \(served ?? "none"), the file now at the path \(final)")
        let before = try await s.get("/v2/models/live")
        let logits = try await inferTwo(s)
        let after = try await s.get("/v2/models/live")
        #expect(before.object["version"] as? String == after.object["version"] as? String)
        _ = try checkServed(pair, metadata: before, infer: logits)
        let stats = try await s.get("/v2/models/live/stats")
        let failures = ((stats.object["model_stats"] as? [[String: Any]])?.first?["load_failures"] as? NSNumber)?.intValue
        #expect(failures == 0, "no poll reload failed: \(stats.text)")
        try await s.stop()
    }
}

private func closeEnough(_ got: [Float], _ expected: [Float]) -> Bool {
    got.count == expected.count && zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) }
}
