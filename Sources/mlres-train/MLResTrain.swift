import ArgumentParser

@main
struct MLResTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlres-train",
        abstract: "Multi-level training of residual networks (Chang et al., ICLR 2018).",
        discussion: "Without a subcommand, `mlres-train --dataset ...` runs `train`.",
        subcommands: [Train.self, Init.self, Recalibrate.self, Bench.self],
        defaultSubcommand: Train.self)
}
