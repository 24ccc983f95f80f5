import ArgumentParser
import MLResCLI
import Foundation
import MLResEngine
import MLResModel

/// `mlres-train bench`: times training steps (forward, backward, SGD) or eval-mode inference of
/// a freshly initialised network on synthetic data, after warm-up, and reports the median.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time training steps or inference on synthetic data.",
        discussion: "Prints the median images/s over the timed steps; --json prints {\"images_per_s\": …, \"peak_rss_mb\": …}.")

    @Option(help: "Blocks per stage, e.g. 2-2-2 (ResNet-14) or 8-8-8 (ResNet-50).")
    var blocks: String = "2-2-2"
    @Option(help: "Stage widths, e.g. 16,32,64 (ResNet) or 32,64,128 (Wide ResNet).")
    var widths: String = "16,32,64"
    @Option(help: "Batch size.")
    var batch: Int = 100
    @Option(name: .customLong("input-shape"), help: "Input C,H,W.")
    var inputShape: String = "3,32,32"
    @Option(help: "Number of classes.")
    var classes: Int = 10
    @Option(help: "Timed steps (after warm-up).")
    var steps: Int = 20
    @Option(help: "Warm-up steps (not timed).")
    var warmup: Int = 3
    @Option(help: "Threads (default: all cores).")
    var threads: Int?
    @Option(help: "train (forward, backward, SGD) or infer (eval-mode forward).")
    var mode: BenchMode = .train
    @Option(help: "fp32 or bf16 (bf16 needs the AVX512_BF16 instructions; refused otherwise, exit 2).")
    var precision: Precision = .fp32
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let arch = try architecture(blocks: blocks, widths: widths, inputShape: inputShape, classes: classes)
        guard batch > 0 else { throw ValidationError("--batch must be positive (got \(batch))") }
        guard steps > 0, warmup >= 0 else { throw ValidationError("--steps must be positive and --warmup non-negative") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive (got \(threads))") }
        let net = Network.initialized(arch, seed: 1)
        let exec: NetworkExecutor
        do {
            exec = try NetworkExecutor(network: net, batchSize: batch, threads: threads, precision: precision)
        } catch let e as UnsupportedPrecision {
            throw cliFailure("bench: \(e)")
        }
        var rng = SplitMix64(seed: 2)
        let input = (0..<(batch * arch.inputShape.reduce(1, *))).map { _ in Float(rng.nextNormal()) }
        let labels = (0..<batch).map { _ in Int(rng.next() % UInt64(classes)) }
        let step: () throws -> Void = mode == .train
            ? { _ = try exec.trainStep(input: input, labels: labels, lr: 0.01) }
            : { _ = try exec.forward(input, count: batch) }
        for _ in 0..<warmup { try step() }
        var times: [Double] = []
        for _ in 0..<steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try step()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2]
            : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        let ips = Double(batch) / median
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let rss = Double(usage.ru_maxrss) / 1024
        let t = setEngineThreads(nil)
        func f(_ x: Double, _ d: Int) -> String { String(format: "%.\(d)f", x) }
        if json {
            print("{\"images_per_s\": \(f(ips, 1)), \"peak_rss_mb\": \(f(rss, 1)), \"median_step_s\": \(f(median, 6)), "
                + "\"threads\": \(t), \"precision\": \"\(precision)\", \"isa\": \"\(CPUISA.effective)\", \"mode\": \"\(mode.rawValue)\", \"blocks\": \"\(blocks)\", \"widths\": \"\(widths)\", \"batch\": \(batch)}")
        } else {
            print("\(mode.rawValue) \(precision) \(blocks) widths \(widths) batch \(batch), \(t) threads (\(CPUISA.effective)): \(f(ips, 1)) images/s "
                + "(median of \(steps) steps, \(f(median * 1000, 2)) ms), peak RSS \(f(rss, 0)) MB")
        }
    }
}

/// What `mlres-train bench` times.
enum BenchMode: String, CaseIterable, ExpressibleByArgument {
    /// Forward, backward and SGD (training mode).
    case train
    /// Eval-mode forward.
    case infer
}
