import ArgumentParser

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Score checkpoints on a test set.")
    func run() throws { throw ValidationError("score: not built yet") }
}
