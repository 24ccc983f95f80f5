import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

/// Runs the built executables (mlres-train init, mlres-surgery inspect/verify) as a user would.
@Suite struct CheckpointCLITests {
    struct Result { var status: Int32; var out: String; var err: String }

    /// Runs a built executable to completion (the shared launcher, MLResTestSupport).
    static func run(_ exe: String, _ args: [String]) throws -> Result {
        let r = try runTool(exe, args)
        return Result(status: r.status, out: r.stdout, err: r.stderr)
    }

    static func tempDir() -> String { try! scratchFolder() }

    @Test func initInspectVerify() throws {
        let dir = Self.tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let ckpt = dir + "/ckpt.h5"
        let r = try Self.run("mlres-train", ["init", "--blocks", "2-2-2", "--widths", "16,32,64", "--classes", "10",
                                             "--input-shape", "3,32,32", "--seed", "0", "-o", ckpt])
        #expect(r.status == 0, "\(r.err)")
        let j = try Self.run("mlres-surgery", ["inspect", ckpt, "--json"])
        #expect(j.status == 0, "\(j.err)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        #expect(obj["parameters"] as? Int == 172_506)             // ResNet-14, Table 5 of the paper
        #expect(obj["stage_blocks"] as? [Int] == [2, 2, 2])
        #expect(obj["widths"] as? [Int] == [16, 32, 64])
        #expect(obj["input_shape"] as? [Int] == [3, 32, 32])
        #expect(obj["num_classes"] as? Int == 10)
        #expect(obj["h"] as? [[Double]] == [[1, 1], [1, 1], [1, 1]])
        #expect(obj["t"] as? [[Double]] == [[1, 2], [1, 2], [1, 2]])
        #expect(obj["tensors"] as? Int == 1 + 6 * 10 + 6)
        #expect(obj["sha256"] as? String == (try FileDigest.sha256(fileAt: ckpt)))
        #expect(obj["optimizer"] as? Bool == false && obj["training"] as? Bool == false)
        let lineage = try #require(obj["lineage"] as? [[String: Any]])
        #expect(lineage.count == 1 && lineage[0]["op"] as? String == "init")
        let args = try #require(lineage[0]["args"] as? [String: Any])
        #expect(args["blocks"] as? [Int] == [2, 2, 2] && args["seed"] as? Int == 0)

        let text = try Self.run("mlres-surgery", ["inspect", ckpt])
        #expect(text.status == 0)
        #expect(text.out.contains("parameters 172506"))
        #expect(text.out.contains("block 1.0  h 1  t 1  stride 2  16->32  origin init"))
        #expect(text.out.contains(try FileDigest.sha256(fileAt: ckpt)))

        let v = try Self.run("mlres-surgery", ["verify", ckpt])
        #expect(v.status == 0, "\(v.err)")
        #expect(v.out.hasPrefix("ok: \(ckpt): format v1, blocks 2-2-2, 172506 parameters, 67 tensors"))
    }

    @Test func sameSeedSameTensorsAndForce() throws {
        let dir = Self.tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = ["--blocks", "1-2", "--widths", "4,8", "--classes", "3", "--input-shape", "1,8,8"]
        for (name, seed) in [("a", "5"), ("b", "5"), ("c", "6")] {
            let r = try Self.run("mlres-train", ["init"] + small + ["--seed", seed, "-o", "\(dir)/\(name).h5"])
            #expect(r.status == 0, "\(r.err)")
        }
        let a = try CheckpointIO.read(path: dir + "/a.h5"), b = try CheckpointIO.read(path: dir + "/b.h5")
        let c = try CheckpointIO.read(path: dir + "/c.h5")
        #expect(a.network == b.network)
        #expect(a.network.namedTensors.map { $0.tensor.data.map(\.bitPattern) } == b.network.namedTensors.map { $0.tensor.data.map(\.bitPattern) })
        #expect(a.network != c.network)
        // An existing output is refused without --force, and left as it was.
        let before = try FileDigest.sha256(fileAt: dir + "/a.h5")
        let r = try Self.run("mlres-train", ["init"] + small + ["--seed", "6", "-o", dir + "/a.h5"])
        #expect(r.status == 2)   // a refused operation
        #expect(r.err == "error: \(dir)/a.h5: already exists (pass --force to replace it)\n")
        #expect(try FileDigest.sha256(fileAt: dir + "/a.h5") == before)
        let f = try Self.run("mlres-train", ["init"] + small + ["--seed", "6", "--force", "--compress", "-o", dir + "/a.h5"])
        #expect(f.status == 0, "\(f.err)")
        #expect(try CheckpointIO.read(path: dir + "/a.h5").network == c.network)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.h5", "b.h5", "c.h5"])
        let bad = try Self.run("mlres-train", ["init", "--blocks", "2-x", "-o", dir + "/d.h5"])
        #expect(bad.status != 0 && bad.err.contains("--blocks"))
    }

    @Test func corruptFilesGiveErrorsNamingTheProblem() throws {
        let dir = Self.tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let ckpt = dir + "/ckpt.h5"
        #expect(try Self.run("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--classes", "3",
                                             "--input-shape", "1,8,8", "-o", ckpt]).status == 0)
        // Flip one bit inside the fc weight data: Fletcher32 must catch it.
        let net = try CheckpointIO.read(path: ckpt).network
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ckpt)))
        let needle = net.fcWeight.data.withUnsafeBytes { [UInt8]($0) }
        let at = try #require((0...(bytes.count - needle.count)).first { bytes[$0] == needle[0] && Array(bytes[$0..<($0 + needle.count)]) == needle })
        bytes[at + 3] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/flipped.h5"))
        let v = try Self.run("mlres-surgery", ["verify", dir + "/flipped.h5"])
        #expect(v.status == 2)   // a failed verify: unreadable checkpoint (one contract, docs/surgery.md)
        #expect(v.err.hasPrefix("error: \(dir)/flipped.h5: /model/head/fc/weight: cannot read data"), "\(v.err)")
        #expect(v.out.isEmpty)
        let i = try Self.run("mlres-surgery", ["inspect", dir + "/flipped.h5", "--json"])
        #expect(i.status == 2 && i.out.isEmpty)

        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: dir + "/text.h5"))
        let t = try Self.run("mlres-surgery", ["inspect", dir + "/text.h5"])
        #expect(t.status == 2)
        #expect(t.err == "error: \(dir)/text.h5: is not an HDF5 file (no HDF5 signature found, 8 bytes)\n")
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: dir + "/half.h5"))
        let h = try Self.run("mlres-surgery", ["verify", dir + "/half.h5"])
        #expect(h.status == 2 && h.err.contains("truncated"), "\(h.err)")
        #expect(!h.err.contains("HDF5-DIAG"))        // HDF5's own stack is never printed raw
        let m = try Self.run("mlres-surgery", ["verify", dir + "/missing.h5"])
        #expect(m.status == 2 && m.err == "error: \(dir)/missing.h5: no such file\n")
    }

    /// A writer killed in the middle of writing leaves the old file intact and readable, and
    /// nothing half-written under the final name (only its NAME.tmp-* file).
    @Test func killedWriterLeavesOldFileIntact() throws {
        let dir = Self.tempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let ckpt = dir + "/ckpt.h5"
        #expect(try Self.run("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--classes", "3",
                                             "--input-shape", "1,8,8", "-o", ckpt]).status == 0)
        let before = try FileDigest.sha256(fileAt: ckpt)
        let small = try Data(contentsOf: URL(fileURLWithPath: ckpt))
        let old = try CheckpointIO.read(path: ckpt)
        var killedMidWrite = false
        for _ in 0..<3 where !killedMidWrite {
            // ~30 MB of tensors, compressed: the write takes long enough to be interrupted.
            let p = try startTool("mlres-train", ["init", "--blocks", "20-20-20", "--widths", "32,64,128", "--compress",
                                                  "--force", "-o", ckpt],
                                  stdout: FileHandle.nullDevice, stderr: FileHandle.nullDevice)
            let deadline = Date().addingTimeInterval(60)
            var tmp: String?
            while p.isRunning && Date() < deadline {
                tmp = try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("ckpt.h5.tmp-") }
                if tmp != nil { break }
                usleep(1000)
            }
            if let tmp, p.isRunning {
                usleep(20_000)                                // let it write a little
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                // Mid-write only if the half file is still the temp (the rename had not happened).
                if p.terminationReason == .uncaughtSignal && FileManager.default.fileExists(atPath: dir + "/" + tmp) {
                    killedMidWrite = true
                    try? FileManager.default.removeItem(atPath: dir + "/" + tmp)
                }
            } else {
                p.waitUntilExit()
            }
            if !killedMidWrite {
                // The write finished before the kill: put the small file's own bytes back, try again.
                try small.write(to: URL(fileURLWithPath: ckpt))
            }
            #expect(try FileDigest.sha256(fileAt: ckpt) == before || !killedMidWrite)
        }
        try #require(killedMidWrite, "could not catch the writer in the middle of writing")
        #expect(try FileDigest.sha256(fileAt: ckpt) == before)
        let after = try CheckpointIO.read(path: ckpt)
        #expect(after.network == old.network)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["ckpt.h5"])
    }
}
