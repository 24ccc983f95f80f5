import ArgumentParser
import MLResCLI
import Foundation
import MLResAnalysis
import MLResModel

struct Lesion: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lesion study in memory: remove single blocks, shuffle stages, or drop k random blocks.",
        discussion: """
        Every edit is the one mlres-surgery makes (same library functions), applied in memory: \
        --mode single removes each block in turn (a shape-changing block keeps only its shortcut, h = 0); \
        --mode shuffle permutes the movable blocks of every stage with seeds 0..N-1 \
        (as `mlres-surgery shuffle --stage S --seed s` stage after stage); \
        --mode drop-k removes k random movable blocks for each k and seed 0..N-1 (never emptying a stage). \
        One row per lesion with the test error and its change from the intact network.
        Exit status: 0 done, 2 unreadable or unfit checkpoint/dataset, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Checkpoint to lesion (never modified).", valueName: "CKPT"))
    var checkpoint: String

    @OptionGroup var data: TestSetOptions

    @Option(help: "single, shuffle or drop-k.")
    var mode: LesionMode

    @Option(help: "Seeds per shuffle / per k (0..N-1).")
    var seeds: Int = 5

    @Option(help: ArgumentHelp("Numbers of blocks to drop (drop-k).", valueName: "K,K,..."))
    var k: String = "1,2,4"

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if seeds <= 0 { throw ValidationError("--seeds must be positive (got \(seeds))") }
        _ = try ks()
    }

    func ks() throws -> [Int] { try integerList(k, flag: "--k") }

    func run() throws {
        let lesionMode = mode
        let (c, sha) = try loadCheckpoint(checkpoint)
        let labels = try data.labelSet(for: [(checkpoint, c)])
        let (ds, _) = try data.loadTestSet(labels: labels)
        let evaluator = try data.evaluator(ds)
        try data.checkFits(c.network, name: checkpoint, evaluator: evaluator, labels: labels)
        let ks = try ks()
        func fmt(_ x: Double?) -> String { x.map { String(format: "%7.2f%%", 100 * $0) } ?? "      —" }
        if !json {
            print("\(checkpoint)  \(c.network.blocksDescription)  \(ds.count) images  lesion \(lesionMode.rawValue)")
        }
        var printedIntact = false
        let (intact, rows) = try checked {
            try LesionStudy.run(c, evaluator: evaluator, mode: lesionMode, seeds: seeds, ks: ks, name: checkpoint) { row in
                guard !json else { return }
                if !printedIntact { printedIntact = true; print(String(repeating: "-", count: 60)) }
                let detail = row.orders.isEmpty ? zip(row.removed, row.actions).map { "\($0) \($1)" }.joined(separator: ", ")
                    : row.orders.sorted { $0.key < $1.key }.map { "stage \($0.key): \($0.value.map(String.init).joined(separator: ","))" }.joined(separator: "; ")
                print("\(row.label.padding(toLength: 22, withPad: " ", startingAt: 0)) error \(fmt(row.error))  Δ \(fmt(row.deltaError))  \(row.blocksAfter ?? "")  \(detail)\(row.note.map { "  (\($0))" } ?? "")")
            }
        }
        let report = LesionReport(checkpoint: checkpoint, sha256: sha, dataset: data.kind.rawValue, images: ds.count,
                                  mode: lesionMode, blocks: c.network.blocksDescription, intactError: intact.error,
                                  intactLoss: intact.meanLoss, rows: rows)
        if json { print(try checked { try analysisJSON(report) }) }
        else { print("intact: error \(percent(intact.error)), loss \(String(format: "%.4f", intact.meanLoss))") }
    }
}

extension LesionMode: ExpressibleByArgument {}
