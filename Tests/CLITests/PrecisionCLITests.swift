// `--precision bf16` on a CPU without the AVX512_BF16 instructions: refused (exit 2) with a
// message naming the ISA. The CPU without bf16 is simulated by capping oneDNN's dispatch with
// its environment variable ONEDNN_MAX_CPU_ISA=AVX2 (a real AVX2-only CPU gives the same answer).
import Foundation
import MLResTestSupport
import Testing

private struct EnvRun {
    var status: Int32, stdout: String, stderr: String
    var object: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]) ?? [:] }
}

/// Runs a built tool with extra environment variables (stdout/stderr through files).
private func runTool(_ tool: String, _ args: [String], environment: [String: String?]) throws -> EnvRun {
    let dir = try scratchFolder()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let p = try startTool(tool, args, stdout: dir + "/out", stderr: dir + "/err", environment: environment)
    p.waitUntilExit()
    return EnvRun(status: p.terminationStatus,
                   stdout: (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "")
}

@Test func benchRefusesBF16WithoutTheISA() throws {
    let r = try runTool("mlres-train", ["bench", "--precision", "bf16", "--blocks", "1-1-1", "--widths", "16,32,64",
                                        "--batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1"],
                        environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
    #expect(r.status == 2, "exit \(r.status), stderr: \(r.stderr)")
    #expect(r.stderr.contains("AVX512_BF16") && r.stderr.contains("avx512_core_bf16"), "\(r.stderr)")
    #expect(r.stderr.contains("dispatches avx2"), "\(r.stderr)")
    #expect(r.stdout.isEmpty)
    // The same command in fp32 under the same cap runs (AVX2 kernels) and reports it.
    let f = try runTool("mlres-train", ["bench", "--precision", "fp32", "--blocks", "1-1-1", "--widths", "16,32,64",
                                        "--batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1", "--json"],
                        environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
    #expect(f.status == 0, "exit \(f.status), stderr: \(f.stderr)")
    #expect(f.object["precision"] as? String == "fp32" && f.object["isa"] as? String == "avx2", "\(f.stdout)")
    // A precision that does not exist is a malformed command line.
    let bad = try runTool("mlres-train", ["bench", "--precision", "fp16"], environment: [:])
    #expect(bad.status == 64, "exit \(bad.status)")
}
