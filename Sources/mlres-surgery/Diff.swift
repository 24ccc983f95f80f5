import ArgumentParser
import MLResCLI
import Foundation
import MLResModel

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two checkpoints: structure, h, and every tensor.",
        discussion: """
        Structure is matched by content: blocks with identical parameters are the same block, so a \
        removed, added (e.g. an interpolation copy), moved or renumbered block is reported as such. \
        h changes are listed per aligned block. For every tensor at the same path with the same \
        shape, the max |B − A| and the relative L2 difference ‖B − A‖ / ‖A‖ are reported. The \
        networks are equal when attributes, blocks, h and every tensor agree bit for bit; origins, \
        optimizer state and lineage are shown but do not count.

        Exit status: 0 equal, 1 different, 2 a checkpoint could not be read, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Reference checkpoint.", valueName: "A"))
    var a: String

    @Argument(help: ArgumentHelp("Checkpoint compared with A.", valueName: "B"))
    var b: String

    @Flag(help: "Print machine-readable JSON instead of text.")
    var json = false

    func run() throws {
        let ca = try loadCheckpointOrRefuse(a).checkpoint
        let cb = try loadCheckpointOrRefuse(b).checkpoint
        let report = Surgery.diff(ca, cb)
        if json {
            struct Envelope: Encodable { var a: String; var b: String; var report: DiffReport }
            print(jsonString(Envelope(a: a, b: b, report: report)))
        } else {
            print("A: \(a)\nB: \(b)")
            print(report.text)
        }
        if !report.equal { throw CLIExit.networksDiffer }
    }
}
