import Foundation
import Testing
import MLResAnalysis
import MLResHDF5
import MLResModel
import MLResTestSupport
@testable import MLResData
@testable import MLResTraining

// `mlres-train recalibrate` (the built executable) on the committed Fashion-MNIST fixture (30
// training images): the file it writes equals the library's recalibration of the same batches,
// carries one `recalibrate` lineage event, and every bad input is refused with the CLI contract's
// exit status (2 refused/unreadable, 64 malformed flags) and no file left behind.

@Suite("mlres-train recalibrate", .serialized)
struct RecalibrateCLITests {
    let fixture = Fixtures.dir("fashion-mnist")

    /// A trained-looking checkpoint: a 1-2 net (widths 4,8) with random BN statistics and the
    /// fixture's input standardisation.
    func checkpoint(in dir: String, inputShape: [Int] = [1, 28, 28]) throws -> (String, Checkpoint) {
        let net = networkWithBNStatistics(Architecture(blocks: [1, 2], widths: [4, 8], inputShape: inputShape, numClasses: 10),
                                          seed: 3, inputMean: Array(repeating: 0.3, count: inputShape[0]),
                                          inputStd: Array(repeating: 0.35, count: inputShape[0]))
        let ck = Checkpoint(network: net, lineage: [LineageEvent.initialization(net.architectureValue, seed: 3)])
        let path = dir + "/net.h5"
        try CheckpointIO.write(ck, to: path)
        return (path, ck)
    }

    @Test("writes the library's recalibration of the same batches, bit for bit, with a recalibrate lineage event")
    func writesRecalibratedFile() throws {
        let dir = try scratchFolder("recal")
        let (input, ck) = try checkpoint(in: dir)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        let run = try runTool("mlres-train", ["recalibrate", input, "--dataset", "fashion-mnist", "--data-dir", fixture,
                                              "--batches", "3", "--batch-size", "8", "--seed", "5", "--threads", "1",
                                              "-o", dir + "/out.h5", "--json"])
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before, "the input is never modified")
        let out = try CheckpointIO.read(path: dir + "/out.h5")
        let train = try DatasetSelection(kind: .fashionMNIST, dataDirectory: fixture).load(.train)
        let settings = RecalibrationSettings(batches: 3, batchSize: 8, seed: 5,
                                             augmentation: Augmentation(padding: 4, flip: false))
        let expected = try Recalibration.recalibrated(ck.network, train: train, settings: settings, threads: 1)
        #expect(out.network == expected)
        #expect(out.network != ck.network)
        let event = try #require(out.lineage.last)
        #expect(out.lineage.count == 2 && event.kind == .recalibrate)
        #expect(event.args["batches"] == .int(3) && event.args["batch_size"] == .int(8) && event.args["seed"] == .int(5))
        #expect(event.args["dataset"] == .string("fashion-mnist") && event.args["padding"] == .int(4) && event.args["flip"] == .bool(false))
        #expect(event.parentSHA256 == (try FileDigest.sha256(fileAt: input)))
        #expect((run.object["output"] as? String) == dir + "/out.h5")
        // Another seed draws other batches: other statistics.
        let other = try runTool("mlres-train", ["recalibrate", input, "--dataset", "fashion-mnist", "--data-dir", fixture,
                                                "--batches", "3", "--batch-size", "8", "--seed", "6", "--threads", "1",
                                                "-o", dir + "/other.h5"])
        #expect(other.status == 0 && other.stdout.contains("wrote \(dir)/other.h5"), "stderr: \(other.stderr)")
        #expect(try CheckpointIO.read(path: dir + "/other.h5").network != out.network)
    }

    @Test("refusals: exit 2 (unreadable, unfit, existing or same OUT, too large a batch) or 64 (bad flags); no file left")
    func refusals() throws {
        let dir = try scratchFolder("recal")
        let (input, _) = try checkpoint(in: dir)
        let base = ["--dataset", "fashion-mnist", "--data-dir", fixture, "--batches", "1", "--batch-size", "8", "--threads", "1"]
        func run(_ args: [String]) throws -> ToolRun { try runTool("mlres-train", ["recalibrate"] + args) }
        let out = dir + "/out.h5"

        var r = try run([dir + "/missing.h5"] + base + ["-o", out])
        #expect(r.status == 2 && r.stderr.contains("missing.h5: no such file"), "\(r.stderr)")
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: dir + "/junk.h5"))
        r = try run([dir + "/junk.h5"] + base + ["-o", out])
        #expect(r.status == 2 && r.stderr.hasPrefix("error: ") && r.stderr.contains("junk.h5"), "\(r.stderr)")
        r = try run([input] + base + ["-o", input])
        #expect(r.status == 2 && r.stderr.contains("would replace the input"), "\(r.stderr)")
        r = try run([input, "--dataset", "fashion-mnist", "--data-dir", fixture, "--batch-size", "100", "-o", out])
        #expect(r.status == 2 && r.stderr.contains("--batch-size 100 is larger than the 30 training images"), "\(r.stderr)")
        r = try run([input, "--dataset", "fashion-mnist", "--data-dir", dir + "/nowhere", "-o", out])
        #expect(r.status == 2 && r.stderr.contains("nowhere"), "\(r.stderr)")
        // A network for 3x32x32 inputs against 1x28x28 Fashion-MNIST.
        let sub = dir + "/rgb"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        let (rgb, _) = try checkpoint(in: sub, inputShape: [3, 32, 32])
        r = try run([rgb] + base + ["-o", out])
        #expect(r.status == 2 && r.stderr.contains("inputs but the training images"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out), "a refused recalibration leaves no file")

        for bad in [["--batches", "0"], ["--batch-size", "0"], ["--batches", "two"], ["--pad", "-1"], ["--dataset", "mnist"]] {
            r = try run([input, "--dataset", "fashion-mnist", "--data-dir", fixture, "-o", out] + bad)
            #expect(r.status == 64, "\(bad): status \(r.status), \(r.stderr)")
        }
        r = try run([input, "--dataset", "fashion-mnist", "--data-dir", fixture])
        #expect(r.status == 64 && r.stderr.contains("--output"), "missing -o: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))

        // An existing OUT needs --force.
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out))
        r = try run([input] + base + ["-o", out])
        #expect(r.status == 2 && r.stderr.contains("already exists"), "\(r.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep")
        r = try run([input] + base + ["-o", out, "--force"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try CheckpointIO.read(path: out).lineage.last?.kind == .recalibrate)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty)
    }
}
