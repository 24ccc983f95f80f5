import ArgumentParser
import MLResCLI
import Foundation
import MLResInterop
import MLResModel

/// `mlres-surgery export CKPT --format onnx|safetensors [-o OUT]` (docs/interop.md).
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint's network to ONNX (inference graph) or safetensors (PyTorch state_dict).",
        discussion: """
        onnx: the eval-mode inference graph (opset 17, IR 8): input "input" [N,C,H,W] float32 pixels in \
        [0,1], standardised inside the graph with the checkpoint's input_mean/input_std; outputs "logits" \
        [N,K] and "class" [N] (int64), like the server. BN2 is folded into conv1 and h into conv2; \
        h = 0 blocks keep their (zero) branch; the shortcut subsamples [:, :, ::2, ::2] and zero-pads \
        the channels, (Cout-Cin)/2 before the input channels.
        safetensors: every tensor under the state_dict names of scripts/mlres_torch.py (plus BN \
        num_batches_tracked = 0), the architecture, every h, the standardisation and the lineage \
        in __metadata__. `mlres-surgery import` reads it back.

        Default OUT: beside CKPT, e.g. ckpt.onnx or ckpt.safetensors. Nothing is written on refusal \
        (non-finite weights, existing OUT without --force); OUT is published atomically.
        Exit status: 0 written, 2 unreadable checkpoint or refused, 64 bad flags.
        """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case onnx, safetensors
    }

    @Argument(help: ArgumentHelp("Checkpoint to export (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: "Output format: onnx or safetensors.")
    var format: Format

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Output file.", valueName: "OUT"))
    var output: String?

    @Flag(help: "Replace OUT if it already exists.")
    var force = false

    func run() throws {
        let out = output ?? outputBase(for: input, blocks: "") + "." + format.rawValue
        if canonicalPath(out) == canonicalPath(input) {
            throw surgeryFailure(out, "the output would replace the input; the input is never modified (choose another -o)")
        }
        if !force && FileManager.default.fileExists(atPath: out) {
            throw surgeryFailure(out, "already exists (use --force to replace it)")
        }
        // The digest of exactly the bytes that were parsed.
        let loaded = try loadCheckpointOrRefuse(input)
        let checkpoint = loaded.checkpoint, sha = loaded.sha256
        let bytes: [UInt8]
        do {
            switch format {
            case .onnx: bytes = try ONNXExport.model(checkpoint, sourceSHA256: sha)
            case .safetensors: bytes = try StateDict.encode(checkpoint, sourceSHA256: sha)
            }
        } catch {
            throw surgeryFailure(input, "\(error)")
        }
        do { try AtomicFile.write(bytes, to: out, overwrite: force) }
        catch let e as InteropError { throw surgeryFailure(e.file, e.message) }
        let net = checkpoint.network
        print("exported \(input) (\(net.blocksDescription), widths \(net.stageWidths.map(String.init).joined(separator: ",")), \(net.parameterCount) parameters, sha256 \(sha.prefix(12))…) as \(format.rawValue)")
        print("wrote \(out) (\(bytes.count) bytes)")
    }
}
