import ArgumentParser
import Foundation
import MLResHDF5
import MLResModel

/// `mlres-surgery verify CKPT`: full validation (``CheckpointIO/verify(path:)``): storage
/// allow-list, every chunk written and with every filter applied, Fletcher32 on every tensor,
/// every format 1.1 digest, every value meaningful. Exit 0, or `error: <file>: <problem>` and 2.
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
        let digests = report.contentProtected ? ", \(report.digestsChecked) SHA-256 digests matched (format 1.1)"
                                              : "; unprotected: no content digests (format 1.0 or another writer)"
        print("ok: \(checkpoint): format v1, blocks \(net.blocksDescription), "
              + "\(net.parameterCount) parameters, \(report.tensorCount) tensors (\(report.tensorBytes) bytes) read with "
              + "checksums verified, all finite\(digests); sha256 \(report.sha256)")
        if !report.metadataChecksummed {
            FileHandle.standardError.write(Data(("note: \(checkpoint): written in HDF5's oldest layout (h5py's default), whose " +
                "metadata has no checksums; rewrite it with mlres tools to protect its structure too\n").utf8))
        }
    }
}
