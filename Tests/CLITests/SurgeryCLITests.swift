import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// End-to-end tests of the built `mlres-surgery` (and `mlres-train init`) executables on real
// checkpoint files. They need the HDF5 reader/writer and the built products (`swift build`
// before `swift test`, which `swift test` does by itself).

private func surgery(_ args: String...) throws -> ToolRun { try runTool("mlres-surgery", args) }

private func listing(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

/// A small checkpoint (blocks per stage `blocks`, widths 4-8-16, 3x8x8 input) with momentum
/// buffers, written with the library writer.
private func writeFixture(_ path: String, blocks: [Int] = [2, 2, 2]) throws -> Checkpoint {
    let net = Network.initialized(Architecture(blocks: blocks, widths: [4, 8, 16], inputShape: [3, 8, 8]), seed: 3)
    var rng = SplitMix64(seed: 99)
    var buffers: [String: Tensor] = [:]
    for t in net.namedTensors where t.trainable {
        var m = Tensor(shape: t.tensor.shape)
        for k in m.data.indices { m.data[k] = Float(rng.nextUniform(-1, 1)) }
        buffers[t.path] = m
    }
    let ckpt = Checkpoint(network: net, optimizer: OptimizerState(buffers: buffers),
                          lineage: [LineageEvent(op: "init")])
    try CheckpointIO.write(ckpt, to: path)
    return try CheckpointIO.read(path: path)
}

@Test("CLI: mlres-train init → interpolate twice: 4-4-4 then 8-8-8 (ResNet-50 count), lineage, input untouched")
func cliInterpolateFromInit() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let ckpt = dir + "/ckpt.h5"
    let initRun = try runTool("mlres-train", ["init", "--blocks", "2-2-2", "--widths", "16,32,64", "--classes", "10",
                                          "--input-shape", "3,32,32", "--seed", "0", "-o", ckpt])
    #expect(initRun.status == 0, "\(initRun.stderr)")
    let sha0 = try FileDigest.sha256(fileAt: ckpt)

    let r1 = try surgery("interpolate", ckpt)
    #expect(r1.status == 0, "\(r1.stderr)")
    #expect(r1.stdout.contains("1→1'") && r1.stdout.contains("Appendix B"))
    let out1 = dir + "/ckpt.4-4-4.h5"
    let c1 = try CheckpointIO.read(path: out1)
    #expect(try FileDigest.sha256(fileAt: ckpt) == sha0)   // input never modified
    let (expected, _) = try Surgery.interpolate(try CheckpointIO.read(path: ckpt))
    #expect(c1.network == expected.network)
    #expect(c1.network.stepSizes.allSatisfy { $0 == [0.5, 0.5, 0.5, 0.5] })
    #expect(c1.lineage.last?.op == "interpolate" && c1.lineage.last?.parentSHA256 == sha0)

    let r2 = try surgery("interpolate", out1)
    #expect(r2.status == 0, "\(r2.stderr)")
    let c2 = try CheckpointIO.read(path: dir + "/ckpt.8-8-8.h5")
    #expect(c2.network.parameterCount == 755_802)
    #expect(c2.lineage.map(\.op).suffix(2) == ["interpolate", "interpolate"])
    #expect(c2.lineage.last?.parentSHA256 == (try FileDigest.sha256(fileAt: out1)))
}

@Test("CLI: existing OUT needs --force; --dry-run and --json write nothing; OUT = input refused")
func cliOutputRules() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    _ = try writeFixture(a)
    let before = listing(dir)

    let dry = try surgery("interpolate", a, "--dry-run", "--json")
    #expect(dry.status == 0, "\(dry.stderr)")
    let obj = try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any]
    #expect(obj?["dry_run"] as? Bool == true && obj?["output"] as? String == dir + "/a.4-4-4.h5")
    #expect((obj?["plan"] as? [String: Any])?["blocks_after"] as? [Int] == [4, 4, 4])
    #expect(listing(dir) == before)

    let out = dir + "/b.h5"
    #expect(try surgery("set-h", a, "--h", "0.5", "-o", out).status == 0)
    let shaB = try FileDigest.sha256(fileAt: out)
    let again = try surgery("set-h", a, "--h", "0.25", "-o", out)
    #expect(again.status == 2)
    #expect(again.stderr.hasPrefix("error: \(out): ") && again.stderr.contains("--force"))
    #expect(try FileDigest.sha256(fileAt: out) == shaB)
    #expect(try surgery("set-h", a, "--h", "0.25", "-o", out, "--force").status == 0)
    #expect(try CheckpointIO.read(path: out).network.stepSizes.allSatisfy { $0.allSatisfy { $0 == 0.25 } })

    let shaA = try FileDigest.sha256(fileAt: a)
    let same = try surgery("set-h", a, "--h", "2", "-o", a, "--force")
    #expect(same.status == 2 && same.stderr.contains("input"))
    #expect(try FileDigest.sha256(fileAt: a) == shaA)
}

@Test("CLI: every refused operation exits non-zero with error: <file>: … and leaves no file")
func cliRefusalsLeaveNothing() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    _ = try writeFixture(a)
    let before = listing(dir)
    let cases: [[String]] = [
        ["remove", a, "--block", "0.7"],
        ["remove", a, "--block", "1.1,1.1"],
        ["remove", a, "--block", "0.0,0.1"],
        ["shuffle", a, "--stage", "1", "--order", "1,0"],
        ["shuffle", a, "--stage", "1", "--order", "0,0"],
        ["shuffle", a, "--stage", "5", "--seed", "1"],
        ["set-h", a, "--h=-1"],
        ["set-h", a, "--h", "nan"],
        ["set-h", a, "--h", "1", "--block", "9.0"],
        ["interpolate", a, "--stages", "0,3"],
        ["interpolate", a, "--first-block", "self"],
    ]
    for args in cases {
        let r = try runTool("mlres-surgery", args)
        #expect(r.status == 2, "\(args): status \(r.status) \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: \(a): "), "\(args): \(r.stderr)")
        #expect(listing(dir) == before, "\(args) left \(listing(dir))")
    }
    let bad = try surgery("remove", a, "--block", "x")
    #expect(bad.status == 64 && bad.stderr.contains("--block"))
    let missing = try surgery("interpolate", dir + "/nope.h5")
    #expect(missing.status == 2 && missing.stderr.hasPrefix("error: \(dir)/nope.h5: "))
    #expect(listing(dir) == before)
}

@Test("CLI: remove then diff reports exactly the removed block; diff exit codes 0/1/2")
func cliRemoveDiff() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    let ca = try writeFixture(a, blocks: [3, 3, 3])
    let r = try surgery("remove", a, "--block", "1.1,2.0")
    #expect(r.status == 0, "\(r.stderr)")
    let b = dir + "/a.remove-1.1_2.0.h5"
    let cb = try CheckpointIO.read(path: b)
    #expect(cb.network.stageBlocks == [3, 2, 3] && cb.network.stages[2].blocks[0].h == 0)
    #expect(cb.optimizer?.buffers[blockPathCLI(1, 1)] == ca.optimizer?.buffers[blockPathCLI(1, 2)])

    let d = try surgery("diff", a, b, "--json")
    #expect(d.status == 1)
    let report = (try JSONSerialization.jsonObject(with: Data(d.stdout.utf8)) as? [String: Any])?["report"] as? [String: Any]
    let entries = (report?["stages"] as? [[String: Any]] ?? []).flatMap { $0["entries"] as? [[String: Any]] ?? [] }
    #expect(entries.filter { $0["kind"] as? String == "removed" }.compactMap { $0["a"] as? String } == ["1.1"])
    #expect(entries.filter { ["added", "moved", "modified"].contains($0["kind"] as? String) }.isEmpty)
    let hChanges = report?["h_changes"] as? [[String: Any]] ?? []
    #expect(hChanges.compactMap { $0["a"] as? String } == ["2.0"])
    let text = try surgery("diff", a, b)
    #expect(text.status == 1 && text.stdout.contains("removed  1.1"))

    #expect(try surgery("diff", a, a).status == 0)
    #expect(try surgery("diff", a, dir + "/missing.h5").status == 2)
}

@Test("CLI: shuffle with the same seed is reproducible and keeps block 0 of a downsampling stage")
func cliShuffleSeed() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let a = dir + "/a.h5"
    let ca = try writeFixture(a, blocks: [2, 5, 2])
    #expect(try surgery("shuffle", a, "--stage", "1", "--seed", "7").status == 0)
    #expect(try surgery("shuffle", a, "--stage", "1", "--seed", "7", "-o", dir + "/again.h5").status == 0)
    let x = try CheckpointIO.read(path: dir + "/a.shuffle-1-seed7.h5")
    let y = try CheckpointIO.read(path: dir + "/again.h5")
    #expect(x.network == y.network)
    #expect(x.network.stages[1].blocks[0] == ca.network.stages[1].blocks[0])
    let (expected, _) = try Surgery.shuffle(ca, stage: 1, .seed(7))
    #expect(x.network == expected.network && x.optimizer == expected.optimizer)
}

private func blockPathCLI(_ s: Int, _ b: Int) -> String { "model/stages/\(s)/blocks/\(b)/conv1/weight" }
