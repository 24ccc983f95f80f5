import Foundation
import Testing
import MLResHDF5
import MLResInterop
import MLResModel
import MLResTestSupport

/// Both directions through files, with the built tools: export → import gives a checkpoint that
/// `mlres-surgery diff` finds equal; the exported safetensors file read by the safetensors package
/// and run through scripts/mlres_torch.py's float64 math equals mlres's logits; the PyTorch
/// fixtures (fixtures/interop, made by PyTorch with scripts/make_interop_fixtures.py) imported
/// from .safetensors and from .pt score like PyTorch, and PyTorch's forward of mlres's export of
/// an mlres-trained checkpoint equals mlres's logits.
@Suite struct InteropRoundTripTests {
    @Test("export --format safetensors → import: diff finds the networks equal; lineage records export and import with digests")
    func exportImportDiff() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arch = Architecture(blocks: [2, 3, 2], widths: [8, 16, 32], inputShape: [3, 32, 32], numClasses: 10)
        var net = trainedLikeNetwork(arch, h: [[1, 0], [0.5, 0.25, 1], [0, 2]], seed: 11)
        net.classNames = (0..<10).map { "class \($0)" }
        let ckpt = dir + "/a.h5"
        try CheckpointIO.write(Checkpoint(network: net, lineage: [LineageEvent(op: "init")]), to: ckpt)
        let shaA = try FileDigest.sha256(fileAt: ckpt)

        let st = dir + "/a.safetensors"
        let ex = try surgery("export", ckpt, "--format", "safetensors", "-o", st)
        try #require(ex.status == 0, "\(ex.stderr)")
        let shaS = try FileDigest.sha256(fileAt: st)
        let im = try surgery("import", st, "-o", dir + "/b.h5")
        try #require(im.status == 0, "\(im.stderr)")
        let diff = try surgery("diff", ckpt, dir + "/b.h5")
        #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        let b = try CheckpointIO.read(path: dir + "/b.h5")
        #expect(b.network == net)
        #expect(b.lineage.map(\.op) == ["init", "export", "import"])
        #expect(b.lineage[1].parentSHA256 == shaA && b.lineage[2].parentSHA256 == shaS)
        let verify = try surgery("verify", dir + "/b.h5")
        #expect(verify.status == 0, "\(verify.stderr)")

        // The reference reader and the float64 forward of scripts/mlres_torch.py agree with mlres.
        let data = dir + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeRandomTestSet("cifar10", n: 24, seed: 9, to: data)
        let score = try eval("score", ckpt, "--dataset", "cifar10", "--data-dir", data, "--save-logits", dir + "/mlres.npy", "--threads", "1")
        try #require(score.status == 0, "\(score.stderr)")
        let r = try python("safetensors_check.py", [st, "--dataset", "cifar10", "--data-dir", data, "--expect", dir + "/mlres.npy"])
        try #require(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.number("tensors") == Double(net.namedTensors.count + 2 * 7 + 1))
        #expect(r.number("rel_diff") <= 1e-4, "\(r.stdout)")
        #expect(r.number("class_agree") == 24, "\(r.stdout)")
    }

    @Test("import refuses an existing output and a missing file; writes nothing")
    func importRefusesOutputs() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let st = root + "/fixtures/interop/ref-net.safetensors"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir + "/taken.h5"))
        let r = try surgery("import", st, "-o", dir + "/taken.h5")
        #expect(r.status == 2 && r.stderr.contains("already exists"))
        let m = try surgery("import", dir + "/nope.safetensors", "-o", dir + "/x.h5")
        #expect(m.status == 2 && m.stderr.contains("no such file"))
        let usage = try surgery("import", st)
        #expect(usage.status == 64)
        let badFlag = try surgery("import", st, "-o", dir + "/y.h5", "--blocks", "2-x-2")
        #expect(badFlag.status == 64 && badFlag.stderr.contains("--blocks"))
        #expect(listing(dir) == ["taken.h5"])
    }
}

@Suite struct PyTorchFixtureTests {
    let fixtures = root + "/fixtures/interop"
    let cifar = root + "/fixtures/datasets/cifar10"

    /// Scores `ckpt` with mlres on the 20 CIFAR-10 fixture images and compares its logits with
    /// PyTorch's (`reference`, a fixture of scripts/make_interop_fixtures.py).
    func scoreEqualsTorch(_ ckpt: String, in dir: String, reference: String = "ref-logits.npy") throws {
        let logits = dir + "/mlres.npy"
        let score = try eval("score", ckpt, "--dataset", "cifar10", "--data-dir", cifar, "--save-logits", logits, "--threads", "1")
        try #require(score.status == 0, "\(score.stderr)")
        let r = try python("compare_logits.py", [fixtures + "/" + reference, logits])
        #expect(r.number("images") == 20, "\(r.stdout)")
        #expect(r.number("rel_diff") <= 1e-4, "mlres vs PyTorch: \(r.stdout)")
        #expect(r.number("class_agree") == 20, "\(r.stdout)")
        #expect(r.number("max_abs_logit") > 0.1)
    }

    @Test("from PyTorch: a state_dict saved by mlres_torch.save_mlres imports without flags and scores like PyTorch")
    func fromPyTorchSafetensors() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try surgery("import", fixtures + "/ref-net.safetensors", "-o", dir + "/net.h5")
        try #require(r.status == 0, "\(r.stderr)")
        let c = try CheckpointIO.read(path: dir + "/net.h5")
        #expect(c.network.stepSizes == [[1, 0.5], [0, 0.75], [1, 0.25]])
        #expect(c.lineage.last?.op == "import")
        #expect(c.lineage.last?.parentSHA256 == (try FileDigest.sha256(fileAt: fixtures + "/ref-net.safetensors")))
        try scoreEqualsTorch(dir + "/net.h5", in: dir)
    }

    @Test("from a .pt: pt_to_safetensors.py (no PyTorch) + import with architecture flags scores like PyTorch")
    func fromPt() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conv = try python("pt_to_safetensors.py", [fixtures + "/ref-net.pt", "-o", dir + "/net.safetensors"])
        try #require(conv.status == 0, "\(conv.stdout)\(conv.stderr)")
        // Without flags the file says nothing about the architecture: refused, naming the flags.
        let bare = try surgery("import", dir + "/net.safetensors", "-o", dir + "/bare.h5")
        #expect(bare.status == 2 && bare.stderr.contains("--blocks"))
        let r = try surgery("import", dir + "/net.safetensors", "-o", dir + "/net.h5",
                            "--blocks", "2-2-2", "--widths", "4,8,16", "--input-shape", "3,32,32",
                            "--h", "1,0.5,0,0.75,1,0.25",
                            "--input-mean", "0.4914,0.4822,0.4465", "--input-std", "0.247,0.243,0.261")
        try #require(r.status == 0, "\(r.stderr)")
        try scoreEqualsTorch(dir + "/net.h5", in: dir)
        // Wrong widths: the first misshapen tensor is named.
        let wrong = try surgery("import", dir + "/net.safetensors", "-o", dir + "/wrong.h5",
                                "--blocks", "2-2-2", "--widths", "4,8,32", "--input-shape", "3,32,32")
        #expect(wrong.status == 2 && wrong.stderr.contains("stages.2.blocks.0.conv1.weight: shape [16,8,3,3], expected [32,8,3,3]"),
                "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/wrong.h5"))
    }

    @Test("to PyTorch: mlres's export of an mlres-trained checkpoint is the file PyTorch ran, and PyTorch's logits equal mlres's")
    func toPyTorch() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // fixtures/interop/mlres-net.*: made by `scripts/make_interop_fixtures.py --mlres-bin DIR`,
        // where PyTorch ran scripts/mlres_torch.load_mlres on the export (float64 forward).
        let h5 = fixtures + "/mlres-net.h5", st = dir + "/net.safetensors"
        let ex = try surgery("export", h5, "--format", "safetensors", "-o", st)
        try #require(ex.status == 0, "\(ex.stderr)")
        let same = try python("safetensors_check.py", [st, "--dataset", "cifar10", "--data-dir", cifar, "--n", "1",
                                                       "--same-as", fixtures + "/mlres-net.safetensors"])
        try #require(same.status == 0, "\(same.stdout)\(same.stderr)")
        #expect(same.number("tensors") == 80 && same.number("tensors_differ") == 0, "\(same.stdout)")
        #expect(same.stdout.contains("\"metadata_differ\": []"), "\(same.stdout)")
        try scoreEqualsTorch(h5, in: dir, reference: "mlres-net.torch-logits.npy")
    }

    @Test("pt_to_safetensors.py refuses a pickle that names a global other than tensors and containers, running nothing")
    func hostilePickleRefused() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let marker = dir + "/pwned"
        let mk = try python("make_hostile_pt.py", [dir + "/evil.pt", marker])
        try #require(mk.status == 0, "\(mk.stderr)")
        let r = try python("pt_to_safetensors.py", [dir + "/evil.pt", "-o", dir + "/out.safetensors"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("posix.system") || r.stderr.contains("os.system"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the pickle's code ran")
        #expect(listing(dir) == ["evil.pt"])
    }
}
