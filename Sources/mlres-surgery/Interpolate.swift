import ArgumentParser
import MLResCLI
import MLResModel


struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Double the blocks of stages: old block i → new 2i, a copy of it at 2i+1, h halved.",
        discussion: """
        In each chosen stage with blocks 0..n-1, old block i becomes new block 2i and a new block \
        2i+1 is inserted after it with a copy of every parameter and BN statistic of old block i; \
        then every h of the stage is halved, so Σh of the stage is unchanged (the paper's Fig. 5: \
        the same ODE integrated with half the step).

        Appendix B: where block 0 changes shape (stride 2, Cin ≠ Cout), new block 1 is copied from \
        old block 1 instead (--first-block auto, the default). --first-block next copies old block 1 \
        into new block 1 in every stage; self always copies block 0 and is refused where block 0 \
        changes shape. A stage whose only block changes shape gets a fresh stride-1 block with \
        conv2 = 0 (an exact identity step; conv1 He-normal with SplitMix64 seed --identity-seed + \
        stage). Momentum buffers follow the blocks; --reset-optimizer drops the optimizer state.

        Default OUT: the input's name with the new depth, e.g. ckpt.h5 → ckpt.4-4-4.h5.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: ArgumentHelp("Stages to interpolate, e.g. 0,2 (default: all).", valueName: "S,S,..."))
    var stages: String?

    @Option(name: .customLong("first-block"), help: "Source of new block 1: auto, next or self.")
    var firstBlock: Surgery.FirstBlockPolicy = .auto

    @Option(name: .customLong("h-policy"), help: "halve (Σh unchanged) or keep the step sizes.")
    var hPolicy: Surgery.StepPolicy = .halve

    @Flag(name: .customLong("reset-optimizer"), help: "Drop the optimizer state instead of remapping momentum.")
    var resetOptimizer = false

    @Option(name: .customLong("identity-seed"),
            help: "Seed of a fresh identity block's conv1 (only for a stage whose only block changes shape).")
    var identitySeed: UInt64 = Surgery.defaultIdentitySeed

    @OptionGroup var options: SurgeryOutputOptions

    func run() throws {
        let stageList = try stages.map { try parseIntList($0, flag: "--stages") }
        try runSurgery(input: input, options: options,
                       defaultOutput: { base, result in "\(base).\(result.network.blocksDescription).h5" }) { ckpt, sha in
            try Surgery.interpolate(ckpt, stages: stageList, firstBlock: firstBlock, hPolicy: hPolicy,
                                    resetOptimizer: resetOptimizer, identitySeed: identitySeed,
                                    parentSHA256: sha)
        }
    }
}
