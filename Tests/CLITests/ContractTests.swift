import Foundation
import Testing
import MLResHDF5
import MLResModel
import MLResTestSupport

// Families of faults over the three tools (issue 11 item 8, issue 12 kinds 1 and 4): every
// command that reads a checkpoint refuses an unreadable one the same way (exit 2, one
// `error: ...` line ending in a newline, no output file); a CIFAR-100 coarse network trained by
// mlres-train is scored, lesioned and analysed by mlres-eval with the label set it records.

private let fashion = packageRoot.appendingPathComponent("fixtures/datasets/fashion-mnist").path
private let cifar100 = packageRoot.appendingPathComponent("fixtures/datasets/cifar100").path

/// The bad files of the family: (name, how to make it from a good checkpoint's bytes).
private let badFiles: [(String, ([UInt8]) -> [UInt8]?)] = [
    ("truncated-5000", { Array($0.prefix(5000)) }),
    ("truncated-half", { Array($0.prefix($0.count / 2)) }),
    ("text", { _ in Array("not hdf5 at all".utf8) }),
    ("empty", { _ in [] }),
    ("missing", { _ in nil }),
]

/// Every command that reads a checkpoint, with FILE standing for it.
private let readers: [(tool: String, args: [String])] = [
    ("mlres-surgery", ["inspect", "FILE"]),
    ("mlres-surgery", ["verify", "FILE"]),
    ("mlres-surgery", ["set-h", "FILE", "--h", "0.5", "-o", "OUT"]),
    ("mlres-surgery", ["interpolate", "FILE", "-o", "OUT"]),
    ("mlres-surgery", ["remove", "FILE", "--block", "0.0", "-o", "OUT"]),
    ("mlres-surgery", ["shuffle", "FILE", "--stage", "0", "--seed", "1", "-o", "OUT"]),
    ("mlres-surgery", ["diff", "GOOD", "FILE"]),
    ("mlres-eval", ["score", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-eval", ["norms", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-eval", ["lesion", "FILE", "--mode", "single", "--dataset", "fashion-mnist", "--data-dir", fashion, "--threads", "1"]),
    ("mlres-train", ["--resume", "FILE", "--dataset", "fashion-mnist", "--data-dir", fashion, "--out", "RUN", "--threads", "1"]),
]

@Suite("One CLI contract over every tool", .serialized)
struct ContractTests {
    @Test("Unreadable checkpoints: exit 2, one error line naming the file, ending in a newline, nothing written",
          arguments: badFiles.map(\.0))
    func unreadableCheckpoint(kind: String) throws {
        let dir = try scratchFolder(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/good.h5"
        let made = try runTool("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--input-shape", "1,28,28", "-o", good])
        #expect(made.status == 0, "\(made.stderr)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        let file = dir + "/\(kind).h5"
        if let b = badFiles.first(where: { $0.0 == kind })!.1(bytes) { try Data(b).write(to: URL(fileURLWithPath: file)) }
        for (tool, template) in readers {
            let args = template.map { $0 == "FILE" ? file : $0 == "GOOD" ? good : $0 == "OUT" ? dir + "/out.h5" : $0 == "RUN" ? dir + "/run" : $0 }
            let r = try runTool(tool, args)
            #expect(r.status == 2, "\(tool) \(template.first!) on \(kind): exit \(r.status), \(r.stderr)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.hasSuffix("\n"), "\(tool) \(template.first!): \(r.stderr)")
            #expect(r.stderr.contains(file), "\(tool) \(template.first!) names the file: \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out.h5"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/run/last.h5"))
        }
    }

    @Test("diff: 0 equal, 1 different; malformed command lines exit 64 in every tool")
    func diffAndUsage() throws {
        let dir = try scratchFolder(); defer { try? FileManager.default.removeItem(atPath: dir) }
        for seed in ["1", "2"] {
            #expect(try runTool("mlres-train", ["init", "--blocks", "1-1", "--widths", "4,8", "--seed", seed, "-o", dir + "/s\(seed).h5"]).status == 0)
        }
        #expect(try runTool("mlres-surgery", ["diff", dir + "/s1.h5", dir + "/s1.h5"]).status == 0)
        #expect(try runTool("mlres-surgery", ["diff", dir + "/s1.h5", dir + "/s2.h5"]).status == 1)
        for (tool, args) in [("mlres-surgery", ["set-h", dir + "/s1.h5", "--h", "abc"]),
                             ("mlres-eval", ["score", dir + "/s1.h5", "--dataset", "imagenet"]),
                             ("mlres-eval", ["lesion", dir + "/s1.h5", "--dataset", "cifar10", "--mode", "everything"]),
                             ("mlres-eval", ["score", dir + "/s1.h5", "--dataset", "cifar10", "--labels", "coarse"]),
                             ("mlres-eval", ["lesion", dir + "/s1.h5", "--dataset", "cifar10", "--mode", "drop-k", "--k", "1,x"]),
                             ("mlres-train", ["bench", "--mode", "fast"]),
                             ("mlres-train", ["--dataset", "fashion-mnist", "--labels", "both"])] {
            let r = try runTool(tool, args)
            #expect(r.status == 64, "\(tool) \(args): \(r.stderr)")
            #expect(r.stderr.hasSuffix("\n"))
        }
    }

    @Test("CIFAR-100 coarse: trained with --labels coarse, scored/lesioned/analysed with the recorded label set")
    func coarseLabelsEverywhere() throws {
        let dir = try scratchFolder(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = try runTool("mlres-train", ["--dataset", "cifar100", "--data-dir", cifar100, "--labels", "coarse",
                                            "--blocks", "1-1", "--widths", "4,8", "--epochs", "1", "--batch-size", "10",
                                            "--threads", "1", "--out", dir + "/run"])
        #expect(t.status == 0, "\(t.stderr)")
        let ckpt = dir + "/run/last.h5"
        #expect(try CheckpointIO.read(path: ckpt).network.numClasses == 20)
        let common = ["--dataset", "cifar100", "--data-dir", cifar100, "--threads", "1"]
        // Default: the recorded label set; explicit --labels coarse: the same numbers.
        let s = try runTool("mlres-eval", ["score", ckpt, "--json"] + common)
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.object["labels"] as? String == "coarse" && (s.object["class_names"] as? [String])?.count == 20)
        let e = try runTool("mlres-eval", ["score", ckpt, "--json", "--labels", "coarse"] + common)
        let r0 = (s.object["results"] as? [[String: Any]])?.first, r1 = (e.object["results"] as? [[String: Any]])?.first
        #expect(r0?["correct"] as? Int != nil && r0?["correct"] as? Int == r1?["correct"] as? Int)
        #expect(r0?["mean_loss"] as? Double == r1?["mean_loss"] as? Double)
        for sub in [["norms"], ["lesion", "--mode", "single"]] {
            let r = try runTool("mlres-eval", sub + [ckpt] + common)
            #expect(r.status == 0, "\(sub): \(r.stderr)")
        }
        // BN recalibration reads the training split with the recorded (coarse) label set too.
        let rc = try runTool("mlres-train", ["recalibrate", ckpt, "--batches", "1", "--batch-size", "10", "-o", dir + "/recal.h5"] + common)
        #expect(rc.status == 0, "recalibrate: \(rc.stderr)")
        #expect(try CheckpointIO.read(path: dir + "/recal.h5").lineage.last?.op == "recalibrate")
        // --labels fine on a 20-class network: refused, saying which label set fits.
        let f = try runTool("mlres-eval", ["score", ckpt, "--labels", "fine"] + common)
        #expect(f.status == 2 && f.stderr.contains("pass --labels coarse") && f.stderr.hasSuffix("\n"), "\(f.stderr)")
    }
}
