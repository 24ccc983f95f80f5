import ArgumentParser
import Foundation
import MLResHDF5
import MLResModel

/// `mlres-surgery verify CKPT`: full validation, every tensor read (Fletcher32 checked on every
/// chunk), every value finite, BN variances >= 0. Exit 0, or `error: <file>: <problem>`.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a checkpoint completely: schema, checksums, finite values.")

    @Argument(help: "Checkpoint file (.h5).")
    var checkpoint: String

    func run() throws {
        let report: CheckpointVerification
        do { report = try CheckpointIO.verify(path: checkpoint) } catch let e as CheckpointError {
            throw failWithCheckpointError(e)
        }
        let net = report.checkpoint.network
        print("ok: \(checkpoint): format v1, blocks \(net.blocksDescription), \(net.parameterCount) parameters, " +
              "\(report.tensorCount) tensors (\(report.tensorBytes) bytes) read with checksums verified, all finite")
    }
}
