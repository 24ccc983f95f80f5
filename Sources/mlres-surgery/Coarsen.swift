import ArgumentParser
import MLResModel

extension Surgery.MergePolicy: ExpressibleByArgument {}

struct Coarsen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Halve the blocks of stages: old blocks 2i and 2i+1 → new block i, h summed (inverse of interpolate).",
        discussion: """
        The multigrid restriction: in each chosen stage, blocks 2i and 2i+1 become one block with \
        h = h_2i + h_2i+1, so the stage integrates the same interval Σh with half as many steps. \
        --merge keep (the default) keeps block 2i's parameters, BN statistics and momentum, so \
        coarsening an interpolation made with the paper's rule gives back the original network \
        (exactly, when its steps were uniform). --merge average takes the mean of the pair's \
        parameters, BN running statistics and momentum; where block 2i changes shape the two \
        have different shapes and block 2i's parameters are kept.

        Refused: a chosen stage with an odd number of blocks, and a pair whose second block \
        changes shape (it would be merged away). See docs/surgery.md.

        Default OUT: the input's name with the new depth, e.g. ckpt.4-4-4.h5 → ckpt.2-2-2.h5.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: ArgumentHelp("Stages to coarsen, e.g. 0,2 (default: all).", valueName: "S,S,..."))
    var stages: String?

    @Option(help: "Parameters of the merged block: keep (block 2i's) or average (the pair's mean).")
    var merge: Surgery.MergePolicy = .keep

    @Flag(name: .customLong("reset-optimizer"), help: "Drop the optimizer state instead of carrying momentum.")
    var resetOptimizer = false

    @OptionGroup var options: SurgeryOutputOptions

    func run() throws {
        let stageList = try stages.map { try parseIntList($0, flag: "--stages") }
        try runSurgery(input: input, options: options,
                       defaultOutput: { base, result in "\(base).\(result.network.blocksDescription).h5" }) { ckpt, sha in
            try Surgery.coarsen(ckpt, stages: stageList, merge: merge, resetOptimizer: resetOptimizer,
                                parentSHA256: sha)
        }
    }
}
