import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time training steps or inference on synthetic data.")
    func run() throws { throw ValidationError("bench: not built yet") }
}
