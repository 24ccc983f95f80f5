import ArgumentParser

@main
struct MLResEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlres-eval",
        abstract: "Score checkpoints, analyse residual norms, run lesion studies, serve predictions.",
        subcommands: [Score.self, Norms.self, Lesion.self])
}
