import Foundation
import MLResTestSupport
import Testing

/// The CLI side of issue 13's hostile-file family: for mutants of every class made by
/// scripts/make_hostile_checkpoints.py, `mlres-surgery set-h` (a read + a write) never dies by
/// a signal or hangs, exits 2 with `error: FILE: ...` naming an HDF5 path when it refuses, and
/// leaves no output file (nor a temporary) behind after a refusal. The in-process family, a
/// few hundred mutants, is MLResHDF5Tests/HostileCheckpointTests.
@Suite struct HostileCheckpointCLITests {
    @Test func refusalsExitTwoAndLeaveNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mlres-hostile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = dir + "/src.h5"
        #expect(try runTool("mlres-train", ["init", "--blocks", "1-1-1", "--widths", "4,8,16", "-o", src]).status == 0)
        let script = packageRoot.appendingPathComponent("scripts/make_hostile_checkpoints.py").path
        let gen = Process()
        gen.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gen.arguments = ["python3", script, src, dir + "/m", "--per-class", "2", "--seed", "7", "--members", "500"]
        try gen.run(); gen.waitUntilExit()
        try #require(gen.terminationStatus == 0, "the generator failed (numpy and h5py come from scripts/setup.sh)")
        let manifest = try String(contentsOfFile: dir + "/m/manifest.jsonl", encoding: .utf8)
        var seen = 0
        for line in manifest.split(separator: "\n") {
            let e = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
            let file = dir + "/m/" + e["file"]!, out = dir + "/out-\(e["file"]!)"
            let r = try runTool("mlres-surgery", ["set-h", file, "--h", "0.5", "-o", out])
            seen += 1
            #expect(r.status == 0 || r.status == 2, "\(e["file"]!) (\(e["what"]!)): exit \(r.status) \(r.stderr)")
            if r.status == 2 {
                #expect(e["expect"] != "same", "\(e["what"]!): \(r.stderr)")
                #expect(r.stderr.hasPrefix("error: \(file): ") && r.stderr.hasSuffix("\n"), "\(r.stderr)")
                if e["class"] != "bytes" && e["class"] != "heapflip" {
                    #expect(r.stderr.dropFirst("error: \(file): ".count).contains("/"), "\(r.stderr)")
                }
                #expect(!FileManager.default.fileExists(atPath: out))
            } else {
                #expect(e["expect"] != "refuse", "\(e["file"]!) (\(e["what"]!)) was accepted")
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
            #expect(left.isEmpty, "temporaries left: \(left)")
        }
        #expect(seen >= 20)
    }
}
