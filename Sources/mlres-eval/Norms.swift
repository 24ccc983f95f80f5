import ArgumentParser
import MLResCLI
import Foundation
import MLResAnalysis
import MLResModel

struct Norms: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Residual norms per block: ‖Y_j‖, ‖G(Y_j)‖ = ‖h_j·F(Y_j)‖, ‖F(Y_j)‖, time t_j, and γ.",
        discussion: """
        Averaged over the test set (L2 norm of each image's C·H·W values, then the mean). \
        t_j = Σ_{i<j} h_i over the whole network (t_stage: over the block's stage). \
        γ = mean ‖G‖ over all blocks. A block with h = 0 still has F: its ‖F‖ is reported and ‖G‖ = 0. \
        These are the paper's Figures 3, 4 and 7 (scripts/plot.py draws them).
        Exit status: 0 done, 2 unreadable or unfit checkpoint/dataset, 64 bad flags.
        """)

    @Argument(help: ArgumentHelp("Checkpoint to analyse.", valueName: "CKPT"))
    var checkpoint: String

    @OptionGroup var data: TestSetOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let (c, sha) = try loadCheckpoint(checkpoint)
        let labels = try data.labelSet(for: [(checkpoint, c)])
        let (ds, _) = try data.loadTestSet(labels: labels)
        let evaluator = try data.evaluator(ds)
        try data.checkFits(c.network, name: checkpoint, evaluator: evaluator, labels: labels)
        let (rows, gamma, ev) = try checked { try ResidualNorms.measure(c.network, evaluator: evaluator, name: checkpoint) }
        let report = NormsReport(checkpoint: checkpoint, sha256: sha, dataset: data.kind.rawValue, images: ev.count,
                                 blocks: c.network.blocksDescription, gamma: gamma, error: ev.error, rows: rows)
        if json { print(try checked { try analysisJSON(report) }); return }
        print("\(checkpoint)  \(report.blocks)  \(ev.count) images  error \(percent(ev.error))")
        print("block      h        t     ‖Y‖        ‖G‖        ‖F‖")
        for r in rows {
            print(String(format: "%-6@ %8.4f %8.4f %10.4f %10.4f %10.4f%@", r.block as NSString, r.h, r.t, r.yNorm,
                         r.gNorm, r.fNorm, (r.changesShape ? "  (changes shape)" : "") as NSString))
        }
        print(String(format: "γ = mean ‖G‖ = %.5f", gamma))
    }
}
