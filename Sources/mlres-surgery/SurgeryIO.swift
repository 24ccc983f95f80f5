import ArgumentParser
import MLResCLI
import Foundation
import MLResHDF5
import MLResModel

// Shared plumbing of the file-to-file surgery subcommands (interpolate, remove, shuffle, set-h)
// and of diff: reading, naming the output, refusing to clobber, dry runs, JSON, exit codes.
//
// Exit codes: 0 success (diff: the networks are equal), 1 diff found differences,
// 2 a checkpoint could not be read or written or the operation was refused,
// 64 a malformed command line (ArgumentParser's usage error).

/// Options every file-to-file operation takes.
struct SurgeryOutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")],
            help: ArgumentHelp("Output checkpoint (default: beside the input, named after the result).",
                               valueName: "OUT"))
    var output: String?

    @Flag(help: "Replace OUT if it already exists (the input itself can never be the output).")
    var force = false

    @Flag(name: .customLong("dry-run"), help: "Print the plan and write nothing.")
    var dryRun = false

    @Flag(help: "Print machine-readable JSON instead of text.")
    var json = false
}

/// Prints `error: <file>: <message>` to standard error and returns the exit code to throw.
func surgeryFailure(_ file: String, _ message: String) -> ExitCode {
    cliFailure("\(file): \(message)")
}

/// Reads a checkpoint (and the SHA-256 of the very bytes read), turning every failure into
/// `error: <file>: <message>` and exit 2.
func readCheckpoint(_ path: String) throws -> LoadedCheckpoint {
    // CheckpointIO names every cause (no such file, a dangling link, a folder, a FIFO, a
    // permission refused, a lock, ...) from the one open of the file.
    do {
        return try CheckpointIO.load(path: path)
    } catch let e as CheckpointError {
        throw surgeryFailure(e.file, e.message)
    } catch {
        throw surgeryFailure(path, "\(error)")
    }
}

/// The canonical form of a path, to tell whether two names denote the same file.
func canonicalPath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
}

/// The input's name without its `.h5`/`.hdf5` extension and without a trailing
/// `.<blocks>` component equal to the network's depth (so `ckpt.2-2-2.h5` → `ckpt`).
func outputBase(for input: String, blocks: String) -> String {
    var base = input
    for ext in [".h5", ".hdf5"] where base.lowercased().hasSuffix(ext) {
        base = String(base.dropLast(ext.count)); break
    }
    if base.hasSuffix("." + blocks) { base = String(base.dropLast(blocks.count + 1)) }
    return base
}

/// A step size written for file names and messages ("0.5", "1").
func hText(_ h: Double) -> String {
    h == h.rounded() && abs(h) < 1e15 ? String(Int(h)) : "\(h)"
}

/// The JSON document printed by `--json`.
struct SurgeryEnvelope<P: Encodable>: Encodable {
    var input: String
    var inputSHA256: String
    var output: String
    var dryRun: Bool
    var written: Bool
    var plan: P
    enum CodingKeys: String, CodingKey {
        case input, inputSHA256 = "input_sha256", output, dryRun = "dry_run", written, plan
    }
}

/// Pretty JSON with sorted keys, as every `--json` prints it.
func jsonString<T: Encodable>(_ value: T) -> String {
    (try? JSONText.pretty(value)) ?? "{}"
}

/// Runs one file-to-file operation: read the input, apply `operation` (given the input and its
/// SHA-256), choose OUT, then print the plan (dry run) or write OUT atomically and print the plan.
/// The input is never written; an existing OUT is refused without `--force`; a refused
/// operation writes nothing.
func runSurgery<P: SurgeryPlan>(input: String, options: SurgeryOutputOptions,
                                defaultOutput: (_ base: String, _ result: Checkpoint) -> String,
                                operation: (Checkpoint, String) throws -> (Checkpoint, P)) throws {
    if let out = options.output { try checkOutput(out, input: input, options: options) }
    // The input's digest (for the lineage) is the one of the bytes that were parsed.
    let loaded = try readCheckpoint(input)
    let checkpoint = loaded.checkpoint, sha = loaded.sha256

    let result: Checkpoint, plan: P
    do {
        (result, plan) = try operation(checkpoint, sha)
    } catch let e as SurgeryError {
        throw surgeryFailure(input, e.description)
    }
    let out = options.output
        ?? defaultOutput(outputBase(for: input, blocks: checkpoint.network.blocksDescription), result)
    try checkOutput(out, input: input, options: options)

    if !options.dryRun {
        do {
            try CheckpointIO.write(result, to: out, options: CheckpointWriteOptions(overwrite: options.force))
        } catch let e as CheckpointError {
            throw surgeryFailure(e.file, e.message)
        } catch {
            throw surgeryFailure(out, "cannot write: \(error)")
        }
    }
    if options.json {
        print(jsonString(SurgeryEnvelope(input: input, inputSHA256: sha, output: out,
                                         dryRun: options.dryRun, written: !options.dryRun, plan: plan)))
    } else {
        print(plan.text)
        print(options.dryRun ? "dry run: would write \(out) (nothing written)" : "wrote \(out)")
    }
}

/// Refuses an OUT that is the input, or that exists without `--force` (a dry run only checks
/// the first).
private func checkOutput(_ out: String, input: String, options: SurgeryOutputOptions) throws {
    if canonicalPath(out) == canonicalPath(input) {
        throw surgeryFailure(out, "the output would replace the input; the input is never modified (choose another -o)")
    }
    if !options.dryRun && !options.force && FileManager.default.fileExists(atPath: out) {
        throw surgeryFailure(out, "already exists (use --force to replace it)")
    }
}

/// Parses "1.3,2.0" into block ids, naming the flag on error.
func parseBlockList(_ text: String, flag: String) throws -> [BlockID] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
    }
    return try items.map { item in
        guard let id = BlockID(item) else {
            throw ValidationError("\(flag): '\(item)' is not a block id STAGE.BLOCK such as 1.3")
        }
        return id
    }
}

/// Parses "0,3,1,2" into non-negative integers, naming the flag on error.
func parseIntList(_ text: String, flag: String) throws -> [Int] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
    }
    return try items.map { item in
        guard let v = Int(item), v >= 0 else {
            throw ValidationError("\(flag): '\(item)' is not a non-negative integer (expected a list like 0,1,2)")
        }
        return v
    }
}
