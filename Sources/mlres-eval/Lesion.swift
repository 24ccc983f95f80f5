import ArgumentParser
import MLResCLI
import Foundation
import MLResAnalysis
import MLResData
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
        One row per lesion with the test error and its change from the intact network. \
        --recalibrate-bn N (issue 17) also scores every network (the intact one too) after \
        re-estimating its BN running statistics from N training batches of the same --dataset \
        and --data-dir (as `mlres-train recalibrate`: the training augmentation, the order of \
        --recalibrate-seed, batches of --recalibrate-batch-size), beside the plain number; its \
        Δ is against the recalibrated intact network.
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

    @Option(name: .customLong("recalibrate-bn"), help: ArgumentHelp("Also score each network after re-estimating its BN statistics from N training batches.", valueName: "N"))
    var recalibrateBN: Int?

    @Option(name: .customLong("recalibrate-batch-size"), help: ArgumentHelp("Images per recalibration batch (default: the checkpoint's training batch size, else the dataset's default).", valueName: "B"))
    var recalibrateBatchSize: Int?

    @Option(name: .customLong("recalibrate-seed"), help: ArgumentHelp("Seed of the recalibration batches (default 0).", valueName: "S"))
    var recalibrateSeed: UInt64 = 0

    @Option(name: .customLong("train-subset"), help: ArgumentHelp("Recalibrate from the first N training images only.", valueName: "N"))
    var trainSubset: Int?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if seeds <= 0 { throw ValidationError("--seeds must be positive (got \(seeds))") }
        if let n = recalibrateBN, n < 1 { throw ValidationError("--recalibrate-bn must be at least 1 (got \(n))") }
        if let b = recalibrateBatchSize, b < 1 { throw ValidationError("--recalibrate-batch-size must be at least 1 (got \(b))") }
        if let n = trainSubset, n < 1 { throw ValidationError("--train-subset must be positive (got \(n))") }
        if recalibrateBN == nil && (recalibrateBatchSize != nil || trainSubset != nil || recalibrateSeed != 0) {
            throw ValidationError("--recalibrate-batch-size, --recalibrate-seed and --train-subset need --recalibrate-bn N")
        }
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
        // BN recalibration: the training split of the same dataset, the checkpoint's own
        // augmentation settings when its training config records them.
        var recalibration: (settings: RecalibrationSettings, train: Dataset)?
        if let n = recalibrateBN {
            let sel = DatasetSelection(kind: data.kind, dataDirectory: data.dataDir, labels: labels, trainSubset: trainSubset)
            let train = try checked { try sel.load(.train) }
            let settings = RecalibrationSettings.forCheckpoint(c, dataset: data.kind, batches: n, batchSize: recalibrateBatchSize,
                                                               seed: recalibrateSeed)
            try checked {
                do { try settings.validate(trainingImages: train.count); try Recalibration.fits(c.network, train) }
                catch let e as AnalysisError { throw AnalysisError("\(checkpoint): \(e.description) (--dataset \(data.kind.rawValue))") }
            }
            recalibration = (settings, train)
        }
        let recalibrate: ((Network) throws -> Network)? = recalibration.map { r in
            { try Recalibration.recalibrated($0, train: r.train, settings: r.settings, threads: data.threads) }
        }
        func fmt(_ x: Double?) -> String { x.map { String(format: "%7.2f%%", 100 * $0) } ?? "      —" }
        if !json {
            print("\(checkpoint)  \(c.network.blocksDescription)  \(ds.count) images  lesion \(lesionMode.rawValue)")
        }
        var printedIntact = false
        let (intact, rows, intactR) = try checked {
            try LesionStudy.run(c, evaluator: evaluator, mode: lesionMode, seeds: seeds, ks: ks, name: checkpoint,
                                recalibrate: recalibrate) { row in
                guard !json else { return }
                if !printedIntact { printedIntact = true; print(String(repeating: "-", count: 60)) }
                let detail = row.orders.isEmpty ? zip(row.removed, row.actions).map { "\($0) \($1)" }.joined(separator: ", ")
                    : row.orders.sorted { $0.key < $1.key }.map { "stage \($0.key): \($0.value.map(String.init).joined(separator: ","))" }.joined(separator: "; ")
                let recal = recalibrate == nil ? "" : "  recalibrated \(fmt(row.errorRecalibrated))  Δ \(fmt(row.deltaErrorRecalibrated))"
                print("\(row.label.padding(toLength: 22, withPad: " ", startingAt: 0)) error \(fmt(row.error))  Δ \(fmt(row.deltaError))\(recal)  \(row.blocksAfter ?? "")  \(detail)\(row.note.map { "  (\($0))" } ?? "")")
            }
        }
        let report = LesionReport(checkpoint: checkpoint, sha256: sha, dataset: data.kind.rawValue, images: ds.count,
                                  mode: lesionMode, blocks: c.network.blocksDescription, intactError: intact.error,
                                  intactLoss: intact.meanLoss, rows: rows,
                                  recalibration: recalibration?.settings.lineageArgs(dataset: data.kind.rawValue),
                                  intactRecalibrated: intactR)
        if json { print(try checked { try analysisJSON(report) }) }
        else {
            print("intact: error \(percent(intact.error)), loss \(String(format: "%.4f", intact.meanLoss))")
            if let intactR, let s = recalibration?.settings {
                print("intact, BN recalibrated (\(s.batches) batches of \(s.batchSize), seed \(s.seed)): error \(percent(intactR.error)), loss \(String(format: "%.4f", intactR.meanLoss))")
            }
        }
    }
}

extension LesionMode: ExpressibleByArgument {}
