import ArgumentParser
import MLResModel

struct SetH: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-h",
        abstract: "Set the step size h of every block, or of one block.",
        discussion: """
        Block j computes Y + h_j·F_j(Y): h scales the block's step, h = 0 leaves only the shortcut, \
        and Σh of a stage is the time interval it integrates over. h must be finite and ≥ 0.

        Default OUT: e.g. ckpt.h-0.5.h5, or ckpt.h-0-at-1.3.h5 with --block.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(name: .customLong("h"), help: "New step size (finite, ≥ 0).")
    var h: Double

    @Option(help: ArgumentHelp("Only this block (default: every block).", valueName: "S.B"))
    var block: String?

    @OptionGroup var options: SurgeryOutputOptions

    func run() throws {
        let id = try block.map { text -> BlockID in
            guard let id = BlockID(text) else { throw ValidationError("--block: '\(text)' is not a block id STAGE.BLOCK such as 1.3") }
            return id
        }
        try runSurgery(input: input, options: options,
                       defaultOutput: { base, _ in
                           "\(base).h-\(hText(h))" + (id.map { "-at-\($0)" } ?? "") + ".h5"
                       }) { ckpt, sha in
            try Surgery.setH(ckpt, h: h, block: id, parentSHA256: sha)
        }
    }
}
