import ArgumentParser
import MLResModel

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove blocks (lesion): delete shape-keeping blocks, set h = 0 on shape-changing ones.",
        discussion: """
        Block j computes Y + h·F(Y); removing it changes its output by exactly h·F(Y) (Eq. 8). \
        A block that keeps the shape is deleted and the later blocks of its stage renumbered \
        (their momentum buffers follow). A block that changes shape (stride 2 or Cin ≠ Cout) cannot \
        disappear, so its residual branch is switched off with h = 0, which leaves exactly the \
        shortcut. Block ids are STAGE.BLOCK in the input's numbering. Unknown or repeated ids, and \
        removals that would leave a stage with no blocks, are refused.

        Default OUT: e.g. ckpt.remove-1.3_2.0.h5.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: ArgumentHelp("Blocks to remove, e.g. 1.3 or 0.1,2.4.", valueName: "S.B[,S.B...]"))
    var block: String

    @OptionGroup var options: SurgeryOutputOptions

    func run() throws {
        let ids = try parseBlockList(block, flag: "--block")
        try runSurgery(input: input, options: options,
                       defaultOutput: { base, _ in
                           "\(base).remove-" + ids.sorted().map(\.description).joined(separator: "_") + ".h5"
                       }) { ckpt, sha in
            try Surgery.remove(ckpt, blocks: ids, parentSHA256: sha)
        }
    }
}
