import ArgumentParser
import MLResCLI
import Foundation
import MLResHDF5
import MLResModel
import MLResTraining

/// `mlres-train init`: a freshly initialised network (He-normal convs, BN 1/0 with running
/// statistics 0/1, fc as PyTorch's default, every h = 1) written as a format v1 checkpoint
/// whose lineage starts with one "init" event. The same seed gives the same tensors.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a freshly initialised network checkpoint.")

    @Option(help: "Blocks per stage, e.g. 2-2-2 (ResNet-14) or 5-5-5 (ResNet-32).")
    var blocks: String = "2-2-2"
    @Option(help: "Stage widths, e.g. 16,32,64 (ResNet) or 32,64,128 (Wide ResNet).")
    var widths: String = "16,32,64"
    @Option(help: "Number of classes.")
    var classes: Int = 10
    @Option(help: "Input shape C,H,W.")
    var inputShape: String = "3,32,32"
    @Option(help: "Random seed of the initialisation.")
    var seed: UInt64 = 0
    @Option(help: "Step size h of every block.")
    var h: Double = 1
    @Option(name: [.short, .customLong("output")], help: "Checkpoint file to write.")
    var output: String
    @Flag(help: "Replace the output file if it exists (atomically).")
    var force = false
    @Flag(help: "Compress tensors with shuffle+deflate.")
    var compress = false

    func run() throws {
        let arch = try architecture(blocks: blocks, widths: widths, inputShape: inputShape, classes: classes)
        guard h.isFinite && h >= 0 else { throw ValidationError("--h must be a finite number >= 0 (got \(h))") }
        if !force && FileManager.default.fileExists(atPath: output) {
            throw cliFailure("\(output): already exists (pass --force to replace it)")
        }
        let ckpt = Checkpoint(network: Network.initialized(arch, seed: seed, h: h),
                              lineage: [LineageEvent.initialization(arch, seed: seed, h: h, compress: compress)])
        do {
            try CheckpointIO.write(ckpt, to: output, options: .init(compress: compress, overwrite: force))
        } catch let e as CheckpointError {
            throw cliFailure("\(e)")
        }
        print("wrote \(output): \(arch.blocks.map(String.init).joined(separator: "-")) blocks, widths " +
              "\(arch.widths.map(String.init).joined(separator: ",")), \(arch.parameterCount) parameters")
    }
}
