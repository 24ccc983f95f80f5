import ArgumentParser

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a freshly initialised network checkpoint.")
    func run() throws { throw ValidationError("init: not built yet") }
}
