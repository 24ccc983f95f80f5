import ArgumentParser
import MLResModel

struct Shuffle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Permute the blocks of one stage (by seed or by an explicit order).",
        discussion: """
        --seed N shuffles the blocks that keep the shape with SplitMix64 Fisher–Yates (the same seed \
        gives the same order on every machine); a shape-changing block 0 stays in place. \
        --order lists, for each new position, the old block placed there (new block k = old \
        block order[k]); it must be a permutation of the stage's blocks and must not move a \
        shape-changing block. Each block keeps its own h and momentum.

        Default OUT: e.g. ckpt.shuffle-1-seed7.h5 or ckpt.shuffle-1-0_3_1_2.h5.
        Exit status: 0 written (or planned), 2 unreadable input or refused, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Input checkpoint (never modified).", valueName: "CKPT"))
    var input: String

    @Option(help: "Stage whose blocks are permuted.")
    var stage: Int

    @Option(help: "Random permutation with this seed.")
    var seed: UInt64?

    @Option(help: ArgumentHelp("Explicit order: new block k is old block order[k], e.g. 0,3,1,2.",
                               valueName: "I,J,..."))
    var order: String?

    @OptionGroup var options: SurgeryOutputOptions

    func validate() throws {
        if (seed == nil) == (order == nil) { throw ValidationError("give exactly one of --seed N or --order I,J,...") }
        if stage < 0 { throw ValidationError("--stage: must be ≥ 0 (got \(stage))") }
    }

    func run() throws {
        let permutation: Surgery.Permutation
        let tag: String
        if let order {
            let o = try parseIntList(order, flag: "--order")
            permutation = .order(o)
            tag = o.map(String.init).joined(separator: "_")
        } else {
            permutation = .seed(seed!)
            tag = "seed\(seed!)"
        }
        try runSurgery(input: input, options: options,
                       defaultOutput: { base, _ in "\(base).shuffle-\(stage)-\(tag).h5" }) { ckpt, sha in
            try Surgery.shuffle(ckpt, stage: stage, permutation, parentSHA256: sha)
        }
    }
}
