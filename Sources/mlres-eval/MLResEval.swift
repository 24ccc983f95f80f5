import ArgumentParser

// The root is async because `serve` is; an async command must be reached through @main
// (calling `.main()` from top-level code silently runs the synchronous path).
@main
struct MLResEval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlres-eval",
        abstract: "Score checkpoints, analyse residual norms, run lesion studies, serve predictions.",
        subcommands: [Score.self, Norms.self, Lesion.self, Serve.self])
}
