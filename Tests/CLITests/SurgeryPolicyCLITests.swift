import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// The command line of issue 17's surgery: interpolate --h-policy preserve / --first-block
// identity, and coarsen (with its refusals), on files written by `mlres-train init`.

private func initCheckpoint(_ path: String, blocks: String) throws {
    let r = try runTool("mlres-train", ["init", "--blocks", blocks, "--widths", "4,8,16", "--classes", "10",
                                        "--input-shape", "3,8,8", "--seed", "5", "-o", path])
    #expect(r.status == 0, "\(r.stderr)")
}

@Test("CLI: interpolate --h-policy preserve --first-block identity, then coarsen back; plan and lineage")
func cliPreserveIdentityCoarsen() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let ckpt = dir + "/ckpt.h5"
    try initCheckpoint(ckpt, blocks: "2-3-2")

    let r = try runTool("mlres-surgery", ["interpolate", ckpt, "--h-policy", "preserve", "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let plan = r.object["plan"] as? [String: Any]
    #expect(plan?["h_policy"] as? String == "preserve" && plan?["op"] as? String == "interpolate")
    let up = try CheckpointIO.read(path: dir + "/ckpt.4-6-4.h5")
    let third: Double = 1.0 / 3
    let preserved: [Double] = [1, third, third, third, 0.5, 0.5]
    #expect(up.network.stepSizes[1] == preserved)
    #expect(up.lineage.last?.args["h_policy"] == .string("preserve"))

    let id = try runTool("mlres-surgery", ["interpolate", ckpt, "--first-block", "identity", "-o", dir + "/id.h5"])
    #expect(id.status == 0, "\(id.stderr)")
    #expect(id.stdout.contains("fresh identity block"))
    let c = try CheckpointIO.read(path: dir + "/id.h5")
    let identitySteps: [Double] = [1, 0.5, 0.5, 0.5]
    #expect(c.network.stepSizes[2] == identitySteps)
    #expect(c.network.stages[2].blocks[1].conv2.data.allSatisfy { $0 == 0 })
    #expect(c.lineage.last?.args["first_block"] == .string("identity"))

    // "paper" names the paper's rule (halve).
    let p = try runTool("mlres-surgery", ["interpolate", ckpt, "--h-policy", "paper", "-o", dir + "/paper.h5"])
    #expect(p.status == 0, "\(p.stderr)")
    let paper = try CheckpointIO.read(path: dir + "/paper.h5")
    #expect(paper.lineage.last?.args["h_policy"] == .string("halve"))

    // coarsen undoes the paper's interpolation of a fresh (uniform h) network.
    let back = try runTool("mlres-surgery", ["coarsen", dir + "/paper.h5", "-o", dir + "/back.h5"])
    #expect(back.status == 0, "\(back.stderr)")
    #expect(back.stdout.contains("coarsen 4-6-4 → 2-3-2"))
    let b = try CheckpointIO.read(path: dir + "/back.h5")
    #expect(b.network == (try CheckpointIO.read(path: ckpt)).network)
    #expect(b.lineage.map(\.op) == ["init", "interpolate", "coarsen"])
    #expect(b.lineage.last?.args["merge"] == .string("keep"))

    let avg = try runTool("mlres-surgery", ["coarsen", dir + "/ckpt.4-6-4.h5", "--merge", "average", "--stages", "0,1",
                                            "--json", "--dry-run"])
    #expect(avg.status == 0, "\(avg.stderr)")
    #expect((avg.object["plan"] as? [String: Any])?["merge"] as? String == "average")
    #expect(avg.object["written"] as? Bool == false)
}

@Test("CLI: coarsen refusals exit 2 and write nothing; bad choices exit 64")
func cliCoarsenRefusals() throws {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let ckpt = dir + "/ckpt.h5"
    try initCheckpoint(ckpt, blocks: "3-2-2")
    let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()

    let odd = try runTool("mlres-surgery", ["coarsen", ckpt])
    #expect(odd.status == 2)
    #expect(odd.stderr.contains("stage 0 has 3 blocks") && odd.stderr.hasSuffix("\n"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == before)

    let ok = try runTool("mlres-surgery", ["coarsen", ckpt, "--stages", "1,2", "--dry-run"])
    #expect(ok.status == 0, "\(ok.stderr)")
    #expect(ok.stdout.contains("3-2-2 → 3-1-1"))

    for args in [["coarsen", ckpt, "--merge", "median"], ["interpolate", ckpt, "--h-policy", "uniform"],
                 ["interpolate", ckpt, "--first-block", "zero"]] {
        let r = try runTool("mlres-surgery", args)
        #expect(r.status == 64, "\(args): \(r.stderr)")
    }
}
