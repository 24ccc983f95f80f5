import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

@Suite struct RoundTripTests {
    @Test("write -> read is bit-exact for every tensor and attribute", arguments: [false, true])
    func roundTrip(compress: Bool) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let ckpt = sampleCheckpoint()
        let path = dir.file("ckpt.h5")
        try CheckpointIO.write(ckpt, to: path, options: .init(compress: compress))
        let back = try CheckpointIO.read(path: path)
        #expect(back == ckpt)                      // every attribute, history, lineage, strings
        #expect(sameTensorBits(back, ckpt))        // and the bits (−0.0, subnormal, h)
        #expect(back.training?.rngState == [1, UInt64.max, 0x1234_5678_9abc_def0])
        #expect(back.network.classNames == ["cat", "dög", "🚀 rocket"])
        #expect(back.lineage.map(\.op) == ["init", "interpolate"])
        #expect(back.lineage[1].parentSHA256 == String(repeating: "ab", count: 32))
        #expect(dir.contents == ["ckpt.h5"])       // no temporary file left behind
    }

    @Test func minimalCheckpointWithoutOptionalParts() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let ckpt = sampleCheckpoint(full: false)
        #expect(ckpt.optimizer == nil && ckpt.training == nil && ckpt.lineage.isEmpty)
        try CheckpointIO.write(ckpt, to: dir.file("a.h5"))
        let back = try CheckpointIO.read(path: dir.file("a.h5"))
        #expect(back == ckpt)
        #expect(sameTensorBits(back, ckpt))
    }

    @Test func compressionShrinksAndStillVerifies() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        // A fresh network has many constant BN vectors: deflate must make the file smaller.
        let ckpt = Checkpoint(network: Network.initialized(Architecture(blocks: [2, 2, 2]), seed: 3))
        try CheckpointIO.write(ckpt, to: dir.file("plain.h5"))
        try CheckpointIO.write(ckpt, to: dir.file("small.h5"), options: .init(compress: true))
        let plain = try FileManager.default.attributesOfItem(atPath: dir.file("plain.h5"))[.size] as! Int
        let small = try FileManager.default.attributesOfItem(atPath: dir.file("small.h5"))[.size] as! Int
        #expect(small < plain)
        let v = try CheckpointIO.verify(path: dir.file("small.h5"))
        #expect(v.tensorCount == ckpt.network.namedTensors.count)
        #expect(sameTensorBits(v.checkpoint, ckpt))
    }

    @Test func writerFillsCreatedFieldsAndKeepsInitDeterministic() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let arch = Architecture(blocks: [1, 1], widths: [4, 8], inputShape: [1, 8, 8], numClasses: 3)
        try CheckpointIO.write(Checkpoint(network: Network.initialized(arch, seed: 5)), to: dir.file("a.h5"))
        try CheckpointIO.write(Checkpoint(network: Network.initialized(arch, seed: 5)), to: dir.file("b.h5"))
        let a = try CheckpointIO.read(path: dir.file("a.h5")), b = try CheckpointIO.read(path: dir.file("b.h5"))
        #expect(a.createdBy == MLRes.tool)
        #expect(a.createdAt?.hasSuffix("Z") == true)
        #expect(sameTensorBits(a, b))
    }

    @Test func overwriteOptionAndExistingFiles() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.file("c.h5")
        let first = sampleCheckpoint(seed: 1), second = sampleCheckpoint(seed: 2)
        try CheckpointIO.write(first, to: path, options: .init(overwrite: false))
        let refused = checkpointErrorMessage { try CheckpointIO.write(second, to: path, options: .init(overwrite: false)) }
        #expect(refused == "already exists (not overwriting it)")
        #expect(try CheckpointIO.read(path: path) == first)
        try CheckpointIO.write(second, to: path)   // overwrite: true replaces atomically
        #expect(try CheckpointIO.read(path: path) == second)
        #expect(dir.contents == ["c.h5"])
        let missingDir = checkpointErrorMessage { try CheckpointIO.write(first, to: dir.file("no/such/x.h5")) }
        #expect(missingDir?.contains("cannot create") == true)
        #expect(checkpointErrorMessage { try CheckpointIO.write(first, to: dir.path) } == "is a directory")
    }

    @Test func writerRefusesInvalidCheckpointsAndLeavesNothing() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        var bad = sampleCheckpoint()
        bad.network.stages[1].blocks[0].conv1 = Tensor(shape: [8, 8, 3, 3])
        var msg = checkpointErrorMessage { try CheckpointIO.write(bad, to: dir.file("x.h5")) }
        #expect(msg == "refusing to write an invalid checkpoint: /model/stages/1/blocks/0/conv1/weight has shape [8,8,3,3], expected [8,4,3,3]")
        bad = sampleCheckpoint()
        bad.network.stages[0].blocks[1].h = -.infinity
        msg = checkpointErrorMessage { try CheckpointIO.write(bad, to: dir.file("x.h5")) }
        #expect(msg?.hasSuffix("/model/stages/0/blocks/1: attribute h = -inf, expected a finite number >= 0") == true)
        bad = sampleCheckpoint()
        bad.optimizer!.buffers.removeValue(forKey: "model/head/fc/bias")
        msg = checkpointErrorMessage { try CheckpointIO.write(bad, to: dir.file("x.h5")) }
        #expect(msg?.contains("/optimizer/momentum/model/head/fc/bias is missing") == true)
        #expect(dir.contents.isEmpty)
    }

    @Test("concurrent readers and writers share the global HDF5 lock")
    func concurrentUse() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let ckpt = sampleCheckpoint()
        try CheckpointIO.write(ckpt, to: dir.file("shared.h5"))
        let failures = ManagedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do {
                try CheckpointIO.write(ckpt, to: dir.file("w\(i).h5"))
                let a = try CheckpointIO.read(path: dir.file("shared.h5"))
                let b = try CheckpointIO.read(path: dir.file("w\(i).h5"))
                if !(sameTensorBits(a, ckpt) && sameTensorBits(b, ckpt)) { failures.add() }
                // An error on a worker thread must come back as an error, not be printed.
                if (try? CheckpointIO.read(path: dir.file("missing\(i).h5"))) != nil { failures.add() }
            } catch { failures.add() }
        }
        #expect(failures.value == 0)
    }
}

final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
