import ArgumentParser
import MLResCLI
import Foundation
import MLResHDF5
import MLResModel

/// `mlres-surgery inspect CKPT [--json]`: what a checkpoint holds, after full validation.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint: architecture, h per block, parameters, state, lineage, sha256.")

    @Argument(help: "Checkpoint file (.h5).")
    var checkpoint: String
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let loaded = try loadCheckpointOrRefuse(checkpoint)
        let summary = CheckpointSummary(loaded, file: checkpoint)
        print(json ? summary.json.jsonText : summary.text)
    }
}

/// The facts `inspect` prints, computed once for both output forms.
struct CheckpointSummary {
    let ckpt: Checkpoint
    let file: String
    /// SHA-256 of the bytes that were read.
    let sha256: String
    /// Format 1.1 content digests present and matched; false: "unprotected" (1.0, h5py).
    let contentProtected: Bool
    let metadataChecksummed: Bool
    var net: Network { ckpt.network }

    init(_ loaded: LoadedCheckpoint, file: String) {
        ckpt = loaded.checkpoint; self.file = file; sha256 = loaded.sha256
        contentProtected = loaded.contentProtected; metadataChecksummed = loaded.metadataChecksummed
    }

    /// One word for the integrity of the file's contents.
    var integrity: String {
        contentProtected ? "protected (format 1.1: every tensor and string has its SHA-256)"
                         : "unprotected (format 1.0 or another writer: no content digests; rewrite it with any mlres tool to add them)"
    }

    /// Cumulative time t = Σh along each stage, block by block.
    var cumulativeTime: [[Double]] {
        net.stepSizes.map { hs in
            var t = 0.0
            return hs.map { t += $0; return t }
        }
    }
    var tensorCount: Int { net.namedTensors.count }
    var tensorBytes: Int { net.namedTensors.reduce(0) { $0 + $1.tensor.byteCount } }
    var momentumBytes: Int { ckpt.optimizer?.buffers.values.reduce(0) { $0 + $1.byteCount } ?? 0 }

    var json: JSONValue {
        func ints(_ a: [Int]) -> JSONValue { .array(a.map { .int($0) }) }
        func nums(_ a: [[Double]]) -> JSONValue { .array(a.map { .array($0.map { .double($0) }) }) }
        var o: [String: JSONValue] = [
            "file": .string(file), "sha256": .string(sha256), "format_version": .int(1),
            "content_protected": .bool(contentProtected), "metadata_checksummed": .bool(metadataChecksummed),
            "created_by": .string(ckpt.createdBy ?? ""), "created_at": .string(ckpt.createdAt ?? ""),
            "architecture": .string(Network.architecture), "shortcut": .string(Network.shortcut),
            "input_shape": ints(net.inputShape), "num_classes": .int(net.numClasses),
            "widths": ints(net.stageWidths), "stage_blocks": ints(net.stageBlocks),
            "total_blocks": .int(net.totalBlocks),
            "h": nums(net.stepSizes), "t": nums(cumulativeTime),
            "stage_time": .array(net.stages.map { .double($0.totalTime) }),
            "origin": .array(net.stages.map { .array($0.blocks.map { .string($0.origin) }) }),
            "parameters": .int(net.parameterCount), "tensors": .int(tensorCount),
            "tensor_bytes": .int(tensorBytes),
            "bn_epsilon": .double(net.bnEpsilon), "bn_momentum": .double(net.bnMomentum),
            "input_mean": .array(net.inputMean.map { .double(Double($0)) }),
            "input_std": .array(net.inputStd.map { .double(Double($0)) }),
            "class_names": net.classNames.map { .array($0.map { .string($0) }) } ?? .null,
            "optimizer": .bool(ckpt.optimizer != nil), "training": .bool(ckpt.training != nil),
            "edited_since_training": .bool(ckpt.editedSinceTraining),
        ]
        if let opt = ckpt.optimizer {
            o["optimizer_state"] = .object([
                "kind": .string(opt.kind), "momentum": .double(opt.momentum),
                "weight_decay": .double(opt.weightDecay), "nesterov": .bool(opt.nesterov),
                "buffers": .int(opt.buffers.count), "buffer_bytes": .int(momentumBytes)])
        }
        if let tr = ckpt.training {
            o["training_state"] = .object([
                "epoch": .int(tr.epoch), "global_step": .int(tr.globalStep), "cycle": .int(tr.cycle),
                "step_in_cycle": .int(tr.stepInCycle), "cycle_steps": .int(tr.cycleSteps),
                "history_entries": .int(tr.history["epoch"]?.count ?? 0)])
        }
        o["lineage"] = .array(ckpt.lineage.map { e in
            (try? JSONDecoder().decode(JSONValue.self, from: Data(e.jsonText.utf8))) ?? .string(e.jsonText)
        })
        return .object(o)
    }

    var text: String {
        func fmt(_ x: Double) -> String { String(format: "%g", x) }
        var lines: [String] = []
        lines.append("checkpoint  \(file)")
        lines.append("sha256      \(sha256)")
        lines.append("integrity   \(integrity)")
        lines.append("created     \(ckpt.createdAt ?? "?") by \(ckpt.createdBy ?? "?")")
        lines.append("network     \(Network.architecture), \(Network.shortcut) shortcut, blocks \(net.blocksDescription), " +
                     "widths \(net.stageWidths.map(String.init).joined(separator: ",")), " +
                     "input \(net.inputShape.map(String.init).joined(separator: "x")), \(net.numClasses) classes")
        lines.append("parameters \(net.parameterCount) trainable; \(tensorCount) tensors, \(tensorBytes) bytes")
        let t = cumulativeTime
        for (s, stage) in net.stages.enumerated() {
            lines.append("stage \(s)     width \(stage.width), \(stage.blocks.count) blocks, t = Σh = \(fmt(stage.totalTime))")
            for (b, block) in stage.blocks.enumerated() {
                lines.append("  block \(s).\(b)  h \(fmt(block.h))  t \(fmt(t[s][b]))  stride \(block.stride)  " +
                             "\(block.inChannels)->\(block.outChannels)  origin \(block.origin)")
            }
        }
        if let opt = ckpt.optimizer {
            lines.append("optimizer   \(opt.kind), momentum \(fmt(opt.momentum)), weight decay \(fmt(opt.weightDecay))" +
                         "\(opt.nesterov ? ", nesterov" : ""), \(opt.buffers.count) momentum buffers")
        } else {
            lines.append("optimizer   none")
        }
        if let tr = ckpt.training {
            lines.append("training    epoch \(tr.epoch), step \(tr.globalStep), cycle \(tr.cycle) " +
                         "(\(tr.stepInCycle)/\(tr.cycleSteps)), \(tr.history["epoch"]?.count ?? 0) history entries")
        } else {
            lines.append("training    none")
        }
        lines.append("lineage     \(ckpt.lineage.count) events")
        for (i, e) in ckpt.lineage.enumerated() {
            let args = JSONValue.object(e.args).jsonText
            lines.append("  \(i). \(e.at)  \(e.op)  \(args)" + (e.parentSHA256.map { "  parent \($0.prefix(12))" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}
