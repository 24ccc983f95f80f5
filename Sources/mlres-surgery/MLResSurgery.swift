import ArgumentParser

@main
struct MLResSurgery: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlres-surgery",
        abstract: "Inspect and operate on saved checkpoints (interpolate, coarsen, remove, shuffle, set-h, diff, verify, export, import).",
        subcommands: [Inspect.self, Interpolate.self, Coarsen.self, Remove.self, Shuffle.self, SetH.self, Diff.self, Verify.self,
                      Export.self, Import.self])
}
