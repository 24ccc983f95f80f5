import ArgumentParser
import Foundation
import MLResHDF5
import MLResInterop
import MLResModel

/// `mlres-surgery import FILE.safetensors -o CKPT.h5` (docs/interop.md).
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Make a checkpoint from a safetensors state_dict (PyTorch names of scripts/mlres_torch.py).",
        discussion: """
        The file is validated before any byte is trusted (bounded header, offsets contiguous and in \
        range, byte ranges matching dtype × shape, unique names). The architecture comes from its \
        __metadata__ (as `mlres-surgery export --format safetensors` writes it) or, when it has \
        none, from --blocks, --widths and --input-shape (h = 1 unless --h; classes from \
        head.fc.bias). Every expected tensor must be present, float32, of the expected shape and \
        finite; an unexpected or missing name is an error naming it (BN num_batches_tracked \
        counters are accepted and dropped). The lineage records the import and the file's sha256. \
        A PyTorch .pt becomes such a file with scripts/pt_to_safetensors.py.

        Nothing is written on refusal; CKPT is published atomically.
        Exit status: 0 written, 2 unreadable or refused file, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("safetensors file.", valueName: "FILE"))
    var input: String

    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("Checkpoint to write.", valueName: "CKPT"))
    var output: String

    @Flag(help: "Replace CKPT if it already exists.")
    var force = false

    @Option(help: ArgumentHelp("Blocks per stage when the file has no metadata, e.g. 2-2-2.", valueName: "N-N-N"))
    var blocks: String?

    @Option(help: ArgumentHelp("Stage widths when the file has no metadata, e.g. 16,32,64.", valueName: "W,W,W"))
    var widths: String?

    @Option(name: .customLong("input-shape"), help: ArgumentHelp("Input C,H,W when the file has no metadata.", valueName: "C,H,W"))
    var inputShape: String?

    @Option(help: "Number of classes (default: the length of head.fc.bias).")
    var classes: Int?

    @Option(name: .customLong("h"), help: ArgumentHelp("Step size of every block, or one per block in order, when the file has no metadata (default 1).", valueName: "H[,H...]"))
    var h: String?

    @Option(name: .customLong("input-mean"), help: ArgumentHelp("Per-channel mean of the standardisation (default 0).", valueName: "M,M,M"))
    var inputMean: String?

    @Option(name: .customLong("input-std"), help: ArgumentHelp("Per-channel std of the standardisation (default 1).", valueName: "S,S,S"))
    var inputStd: String?

    func validate() throws {
        if let classes, classes < 1 { throw ValidationError("--classes \(classes): expected a positive number") }
    }

    func flags() throws -> StateDict.ArchitectureFlags {
        func ints(_ text: String?, _ sep: Character, _ flag: String) throws -> [Int]? {
            guard let text else { return nil }
            let parts = text.split(separator: sep, omittingEmptySubsequences: false)
            return try parts.map {
                guard let v = Int($0.trimmingCharacters(in: .whitespaces)), v > 0 else {
                    throw ValidationError("\(flag) \(text): '\($0)' is not a positive integer")
                }
                return v
            }
        }
        func floats(_ text: String?, _ flag: String) throws -> [Float]? {
            guard let text else { return nil }
            return try text.split(separator: ",", omittingEmptySubsequences: false).map {
                guard let v = Float($0.trimmingCharacters(in: .whitespaces)), v.isFinite else {
                    throw ValidationError("\(flag) \(text): '\($0)' is not a finite number")
                }
                return v
            }
        }
        let hs = try h.map { text in
            try text.split(separator: ",", omittingEmptySubsequences: false).map { part -> Double in
                guard let v = Double(part.trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0 else {
                    throw ValidationError("--h \(text): '\(part)' is not a finite number >= 0")
                }
                return v
            }
        }
        let shape = try ints(inputShape, ",", "--input-shape")
        if let shape, shape.count != 3 { throw ValidationError("--input-shape \(inputShape!): expected three numbers C,H,W") }
        return StateDict.ArchitectureFlags(blocks: try ints(blocks, "-", "--blocks"), widths: try ints(widths, ",", "--widths"),
                                           inputShape: shape, classes: classes, h: hs,
                                           inputMean: try floats(inputMean, "--input-mean"),
                                           inputStd: try floats(inputStd, "--input-std"))
    }

    func run() throws {
        let archFlags = try flags()
        if canonicalPath(output) == canonicalPath(input) {
            throw surgeryFailure(output, "the output would replace the input (choose another -o)")
        }
        if !force && FileManager.default.fileExists(atPath: output) {
            throw surgeryFailure(output, "already exists (use --force to replace it)")
        }
        // One open, one read: the cause named if it cannot be read (a FIFO is refused at once).
        let bytes: [UInt8]
        do { bytes = try InputFile(path: input).readAll() }
        catch let f as InputFile.Failure { throw surgeryFailure(input, f.reason) }
        // The digest of exactly the bytes that are parsed.
        let sha = FileDigest.sha256(Data(bytes))
        let checkpoint: Checkpoint
        do {
            let file = try Safetensors.parse(bytes)
            checkpoint = try StateDict.decode(file, fileName: input, sha256: sha, flags: archFlags)
        } catch let e as Safetensors.FormatError {
            throw surgeryFailure(input, "not a valid safetensors file: \(e.message)")
        } catch {
            throw surgeryFailure(input, "\(error)")
        }
        do {
            try CheckpointIO.write(checkpoint, to: output, options: CheckpointWriteOptions(overwrite: force))
        } catch let e as CheckpointError {
            throw surgeryFailure(e.file, e.message)
        } catch {
            throw surgeryFailure(output, "cannot write: \(error)")
        }
        let net = checkpoint.network
        print("imported \(input) (sha256 \(sha.prefix(12))…): \(net.blocksDescription), widths \(net.stageWidths.map(String.init).joined(separator: ",")), input \(net.inputShape.map(String.init).joined(separator: ",")), \(net.numClasses) classes, \(net.parameterCount) parameters")
        print("wrote \(output)")
    }
}
