import ArgumentParser

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a checkpoint.")
    func run() throws { throw ValidationError("inspect: not built yet") }
}
