import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

/// Broken files must give a CheckpointError naming the problem — never a crash, a hang, or a
/// giant allocation.
@Suite struct CorruptionTests {
    func write(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test func emptyMissingDirectoryAndNonHDF5Files() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        try write([], dir.file("empty.h5"))
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("empty.h5")) }
                == "is empty (0 bytes), not an HDF5 file")
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("none.h5")) }
                == "no such file")
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.path) }
                == "is a directory, not a checkpoint file")
        try write(Array("{\"this\": \"is json\"}\n".utf8), dir.file("text.h5"))
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("text.h5")) }
                == "is not an HDF5 file (no HDF5 signature found, 20 bytes)")
        // The signature alone, then garbage.
        var sig: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        try write(sig, dir.file("sig.h5"))
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("sig.h5")) } != nil)
        var rng = SplitMix64(seed: 9)
        for _ in 0..<4000 { sig.append(UInt8(truncatingIfNeeded: rng.next())) }
        try write(sig, dir.file("garbage.h5"))
        let m = checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("garbage.h5")) }
        #expect(m?.hasPrefix("cannot be opened as HDF5") == true || m?.hasPrefix("is not an HDF5 file") == true)
    }

    @Test("truncated files are refused", arguments: [false, true])
    func truncated(compress: Bool) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let good = dir.file("good.h5")
        try CheckpointIO.write(sampleCheckpoint(), to: good, options: .init(compress: compress))
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var cuts = [1, 8, 48, 100, 512, 2048, bytes.count / 4, bytes.count / 2, bytes.count * 3 / 4, bytes.count - 100, bytes.count - 1]
        cuts = cuts.filter { $0 < bytes.count }
        for n in cuts {
            let p = dir.file("cut\(n).h5")
            try write(Array(bytes.prefix(n)), p)
            let m = checkpointErrorMessage { _ = try CheckpointIO.read(path: p) }
            #expect(m != nil, "a file cut to \(n) of \(bytes.count) bytes was accepted")
        }
        let m = checkpointErrorMessage { _ = try CheckpointIO.read(path: dir.file("cut\(bytes.count / 2).h5")) }
        #expect(m?.contains("truncated") == true, "message: \(m ?? "none")")
    }

    /// Random mutations of a valid file: each read either fails with a CheckpointError, or (the
    /// bytes hit were unused, or a string in the unchecksummed global heap) succeeds with every
    /// tensor and h bit-identical — Fletcher32 guards the data, the v2 object headers' checksums
    /// guard the structure. Each read must finish in under 2 s.
    @Test("random byte mutations never crash, hang or return wrong tensors", arguments: [false, true])
    func randomMutations(compress: Bool) throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let good = dir.file("good.h5")
        let ckpt = sampleCheckpoint(blocks: [1, 1], widths: [4, 8], input: [1, 8, 8], classes: 3)
        try CheckpointIO.write(ckpt, to: good, options: .init(compress: compress))
        // MLRES_FUZZ_FILE: mutate another valid checkpoint instead (exploration, e.g. h5py-written).
        if let other = ProcessInfo.processInfo.environment["MLRES_FUZZ_FILE"] {
            try FileManager.default.removeItem(atPath: good)
            try FileManager.default.copyItem(atPath: other, toPath: good)
        }
        let original = try CheckpointIO.read(path: good)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var rng = SplitMix64(seed: compress ? 20261130 : 20261129)
        var errors = 0, accepted = 0, slowest = 0.0
        let path = dir.file("mutant.h5")
        // MLRES_FUZZ_COUNT raises the count for a longer local run (default 220).
        let total = Int(ProcessInfo.processInfo.environment["MLRES_FUZZ_COUNT"] ?? "") ?? 220
        for i in 0..<total {
            var m = bytes
            let at = rng.nextInt(below: m.count)
            switch i % 4 {
            case 0: m[at] ^= UInt8(1 << rng.nextInt(below: 8))                  // one bit
            case 1: m[at] = UInt8(truncatingIfNeeded: rng.next())               // one byte
            case 2: for j in at..<min(at + 8, m.count) { m[j] = UInt8(truncatingIfNeeded: rng.next()) }  // a word
            default: m[at] ^= 0xff; m[rng.nextInt(below: m.count)] ^= 0x80       // two places
            }
            try write(m, path)
            if ProcessInfo.processInfo.environment["MLRES_FUZZ_TRACE"] != nil { try write(m, "/tmp/fuzz-last.h5"); FileHandle.standardError.write(Data("mutation \(i) at \(at)\n".utf8)) }
            let start = Date()
            do {
                let c = try CheckpointIO.read(path: path)
                accepted += 1
                #expect(sameTensorBits(c, original), "mutation \(i) at byte \(at) was accepted with different tensors")
            } catch let e as CheckpointError {
                errors += 1
                #expect(!e.message.isEmpty)
            } catch {
                Issue.record("mutation \(i): unexpected error \(error)")
            }
            let dt = Date().timeIntervalSince(start)
            slowest = max(slowest, dt)
            // A hang guard, not a speed test: the time includes waiting for the process-wide HDF5
            // lock behind other tests' reads in the parallel pass (the slowest read is printed).
            #expect(dt < 30, "mutation \(i) at byte \(at) took \(dt) s")
        }
        print("mutations (compress: \(compress)): \(errors) refused, \(accepted) accepted with identical tensors, slowest read \(String(format: "%.3f", slowest)) s, file \(bytes.count) bytes")
        #expect(errors + accepted == total)
        #expect(errors > total / 2)
    }

    @Test func flippedTensorByteIsCaughtByFletcher32() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.file("ckpt.h5")
        var ckpt = sampleCheckpoint(full: false)
        // A recognisable float pattern in the fc weight, to find its bytes in the file.
        let w = ckpt.network.fcWeight
        ckpt.network.fcWeight = Tensor(shape: w.shape, data: (0..<w.count).map { Float($0) + 0.123456 })
        try CheckpointIO.write(ckpt, to: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let needle = ckpt.network.fcWeight.data.withUnsafeBytes { [UInt8]($0.prefix(16)) }
        let at = try #require((0...(bytes.count - 16)).first { Array(bytes[$0..<($0 + 16)]) == needle })
        bytes[at + 5] ^= 0x01
        try write(bytes, path)
        let m = checkpointErrorMessage { _ = try CheckpointIO.read(path: path) }
        #expect(m?.hasPrefix("/model/head/fc/weight: cannot read data") == true, "\(m ?? "accepted")")
        #expect(m?.lowercased().contains("fletcher32") == true, "\(m ?? "accepted")")
    }
}
