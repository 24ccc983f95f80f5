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
        changes shape; identity makes new block 1 a fresh exact identity step where block 0 changes \
        shape (conv2 = 0, so F ≡ 0) and lets block 0 keep its h (elsewhere it acts as auto). A stage \
        whose only block changes shape also gets such a fresh identity block (conv1 He-normal with \
        SplitMix64 seed --identity-seed + stage). Momentum buffers follow the blocks; \
        --reset-optimizer drops the optimizer state.

        --h-policy halve (also "paper", the default) halves every step; preserve gives the c copies \
        of old block i h_i/c each, so every old block keeps its total step and Σh is unchanged \
        (with Appendix B: block 0 keeps h0, old block 1's three copies take h1/3): the new network \
        equals the old one to second order in h, where the paper's rule changes it to first order. \
        keep leaves every h as it was (the stage's interval doubles). See docs/surgery.md.

        Default OUT: the input's name with the new depth, e.g. ckpt.h5 → ckpt.4-4-4.h5.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: ArgumentHelp("Stages to interpolate, e.g. 0,2 (default: all).", valueName: "S,S,..."))
    var stages: String?

    @Option(name: .customLong("first-block"), help: "Source of new block 1: auto, next, self or identity.")
    var firstBlock: Surgery.FirstBlockPolicy = .auto

    @Option(name: .customLong("h-policy"), help: "Step sizes: halve|paper (the paper), preserve (each old block's total step), keep.")
    var hPolicy: Surgery.StepPolicy = .halve

    @Flag(name: .customLong("reset-optimizer"), help: "Drop the optimizer state instead of remapping momentum.")
    var resetOptimizer = false

    @Option(name: .customLong("identity-seed"),
            help: "Seed of a fresh identity block's conv1 (stage s uses seed + s).")
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
