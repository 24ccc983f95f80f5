import ArgumentParser

@main
struct MLResTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlres-train",
        abstract: "Multi-level training of residual networks (Chang et al., ICLR 2018).",
        subcommands: [Init.self, Bench.self])
}
