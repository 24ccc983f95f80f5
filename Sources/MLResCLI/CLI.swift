import ArgumentParser
import Foundation
import MLResData
import MLResHDF5
import MLResModel

// What mlres-train, mlres-surgery and mlres-eval share as command-line tools: the exit-status
// contract, the error line, the integer-list flag parser, and the closed flag choices.

/// The exit-status contract of the three tools (docs/surgery.md, "Exit status"):
///
/// - 0: success;
/// - 1: only `mlres-surgery diff`, when the networks differ;
/// - 2: a checkpoint or dataset cannot be read (a failed `verify` included), an output cannot
///   be written, or the operation is refused;
/// - 64: a malformed command line (ArgumentParser's usage error, EX_USAGE).
public enum CLIExit {
    /// `diff`: the networks differ.
    public static let networksDiffer = ExitCode(1)
    /// Unreadable input, unwritable output, refused operation.
    public static let refused = ExitCode(2)
    /// Malformed command line (what ArgumentParser exits with for a `ValidationError`).
    public static let usage = ExitCode(64)
}

/// Prints `error: <message>` and one newline to standard error and returns ``CLIExit/refused``
/// (exit 2), to be thrown.
public func cliFailure(_ message: String) -> ExitCode {
    var text = message
    while text.hasSuffix("\n") { text.removeLast() }
    FileHandle.standardError.write(Data("error: \(text)\n".utf8))
    return CLIExit.refused
}

/// Reads a checkpoint through the one read path (``CheckpointIO/load(path:)``, or
/// ``CheckpointIO/verify(path:)`` with `verify`): the checkpoint and the SHA-256 of the very
/// bytes read. Every failure (its cause named by the reader) becomes `error: <file>: <reason>`
/// and exit 2. The one place the three tools turn a checkpoint error into the CLI contract.
public func loadCheckpointOrRefuse(_ path: String, verify: Bool = false) throws -> LoadedCheckpoint {
    do {
        return try verify ? CheckpointIO.verify(path: path) : CheckpointIO.load(path: path)
    } catch let e as CheckpointError {
        throw cliFailure(e.description)
    } catch {
        throw cliFailure("\(path): \(error)")
    }
}

/// Runs `body`, turning any error but an `ExitCode` into `error: <error>` and exit 2.
public func refusingErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ExitCode { throw e } catch { throw cliFailure("\(error)") }
}

/// Parses a list flag such as `2-2-2`, `16,32,64` or `60,110` into positive integers (spaces
/// around items allowed). `allowEmpty`: the empty string is the empty list (`--interpolate-at ""`).
/// - Throws: `ValidationError` (exit 64) naming the flag and the bad item.
public func integerList(_ text: String, separator: Character = ",", flag: String,
                        allowEmpty: Bool = false) throws -> [Int] {
    if allowEmpty && text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    return try text.split(separator: separator, omittingEmptySubsequences: false).map { part in
        let p = part.trimmingCharacters(in: .whitespaces)
        guard let v = Int(p), v > 0 else {
            throw ValidationError("\(flag) \(text): '\(p)' is not a positive whole number (expected a list like 1\(separator)2\(separator)4)")
        }
        return v
    }
}

extension DatasetKind: ExpressibleByArgument {
    /// The `--dataset` spellings (also `fashion_mnist`, `cifar-10`, ..., any case).
    public init?(argument: String) { self.init(flag: argument) }
}
extension LabelSet: ExpressibleByArgument {}
extension Surgery.FirstBlockPolicy: ExpressibleByArgument {}
extension Surgery.StepPolicy: ExpressibleByArgument {
    /// The raw values, and "paper" for `halve` (the paper's rule, as issue 17 names it).
    public init?(argument: String) {
        self.init(rawValue: argument == "paper" ? Surgery.StepPolicy.halve.rawValue : argument)
    }
    public static var allValueStrings: [String] { ["paper"] + allCases.map(\.rawValue) }
}
