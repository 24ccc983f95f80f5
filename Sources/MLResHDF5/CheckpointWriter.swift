import CHDF5
import Foundation
import MLResModel

/// Writes one checkpoint into a NEW HDF5 file (created with H5F_ACC_EXCL, so an existing file
/// is never opened for writing). Publishing it under its final name is ``CheckpointIO``'s job.
/// Callers hold the HDF5 lock.
struct CheckpointWriter {
    let file: hid_t
    let compress: Bool
    /// Link creation list that creates missing parent groups.
    let lcpl: H5Object
    /// Group creation list keeping links and attributes compact (see ``compactGroupList``).
    let gcpl: H5Object
    /// Groups created so far.
    private final class Created { var paths: Set<String> = ["/"] }
    private let created = Created()

    /// Links and attributes are kept in "compact" storage, inside the group's object header,
    /// which the newest format protects with a checksum. (HDF5's default moves more than 8
    /// links or attributes into a fractal heap whose blocks carry no checksum; a flipped bit
    /// there is trusted by the library, and HDF5 1.10 can crash on it.)
    static func compactGroupList(_ plistClass: hid_t, _ path: String) throws -> H5Object {
        let p = H5Object.plist(try H5.check(H5Pcreate(plistClass), "cannot create \(path)"))
        try H5.check(status: H5Pset_link_phase_change(p.id, 65_000, 64_000), "cannot create \(path)")
        try H5.check(status: H5Pset_attr_phase_change(p.id, 65_000, 64_000), "cannot create \(path)")
        return p
    }

    static func write(_ ckpt: Checkpoint, newFile path: String, compress: Bool) throws {
        let fapl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_FILE_ACCESS()), "cannot create \(path)"))
        try H5.check(status: mlres_set_latest_format(fapl.id), "cannot create \(path)")
        try H5.check(status: H5Pset_fclose_degree(fapl.id, H5F_CLOSE_STRONG), "cannot create \(path)")
        try H5.check(status: H5Pset_file_locking(fapl.id, true, true), "cannot create \(path)")
        let fcpl = try compactGroupList(mlres_H5P_FILE_CREATE(), path)
        let fid = try H5.check(H5Fcreate(path, mlres_H5F_ACC_EXCL(), fcpl.id, fapl.id),
                               "cannot create \(path)")
        do {
            let lcpl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_LINK_CREATE()), "cannot create \(path)"))
            try H5.check(status: H5Pset_create_intermediate_group(lcpl.id, 1), "cannot create \(path)")
            let gcpl = try compactGroupList(mlres_H5P_GROUP_CREATE(), path)
            try CheckpointWriter(file: fid, compress: compress, lcpl: lcpl, gcpl: gcpl).writeAll(ckpt)
        } catch {
            _ = H5Fclose(fid)
            throw error
        }
        // Closing flushes every buffer: a failure here means the file is not complete.
        try H5.check(status: H5Fclose(fid), "cannot finish writing \(path)")
    }

    /// Creates the group at `path` and any missing parents, all with the compact layout.
    @discardableResult
    private func group(_ path: String) throws -> H5Object? {
        let parts = path.split(separator: "/")
        var prefix = ""
        var last: H5Object?
        for (i, comp) in parts.enumerated() {
            prefix += "/" + comp
            if created.paths.contains(prefix) { continue }
            let g = H5Object.group(try H5.check(
                H5Gcreate2(file, prefix, mlres_H5P_DEFAULT(), gcpl.id, mlres_H5P_DEFAULT()),
                "cannot create group \(prefix)"))
            created.paths.insert(prefix)
            if i == parts.count - 1 { last = g }
        }
        return last
    }

    /// Creates the parent groups of a dataset path.
    private func parents(of path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if parent != "/" && !parent.isEmpty { try group(parent) }
    }

    private func writeAll(_ c: Checkpoint) throws {
        let root = H5Object.group(try H5.check(H5Gopen2(file, "/", mlres_H5P_DEFAULT()), "cannot open /"))
        let ra = AttributeWriter(obj: root.id, label: "/")
        try ra.int("format_version", CheckpointSchema.formatVersion)
        try ra.int(CheckpointSchema.minorVersionAttribute, CheckpointSchema.formatMinorVersion)
        try ra.strings([("format", [CheckpointSchema.format], true),
                        ("created_by", [c.createdBy ?? MLRes.tool], true),
                        ("created_at", [c.createdAt ?? LineageEvent.now()], true)])

        try writeModel(c.network)
        if let opt = c.optimizer { try writeOptimizer(opt, c.network) }
        if let tr = c.training { try writeTraining(tr) }
        try strings1D("/lineage", c.lineage.map(\.jsonText))
    }

    private func writeModel(_ net: Network) throws {
        let model = try group("/model")!
        let a = AttributeWriter(obj: model.id, label: "/model")
        try a.ints("input_shape", net.inputShape)
        try a.int("num_classes", net.numClasses)
        try a.ints("stage_widths", net.stageWidths)
        try a.ints("stage_blocks", net.stageBlocks)
        try a.double("bn_epsilon", net.bnEpsilon)
        try a.double("bn_momentum", net.bnMomentum)
        try a.floats("input_mean", net.inputMean)
        try a.floats("input_std", net.inputStd)
        var strings: [(name: String, values: [String], scalar: Bool)] = [
            ("architecture", [Network.architecture], true), ("shortcut", [Network.shortcut], true),
            ("shortcut_padding", [CheckpointSchema.shortcutPadding], true)]
        if let names = net.classNames { strings.append(("class_names", names, false)) }
        try a.strings(strings)

        // Block groups first (with their attributes), then every tensor in canonical order.
        for (s, stage) in net.stages.enumerated() {
            for (b, block) in stage.blocks.enumerated() {
                let p = "/model/stages/\(s)/blocks/\(b)"
                let g = try group(p)!
                let ba = AttributeWriter(obj: g.id, label: p)
                try ba.double("h", block.h)
                try ba.int("stride", block.stride)
                try ba.int("in_channels", block.inChannels)
                try ba.int("out_channels", block.outChannels)
                try ba.strings([("origin", [block.origin], true)])
            }
        }
        for nt in net.namedTensors { try tensor("/" + nt.path, nt.tensor) }
    }

    private func writeOptimizer(_ opt: OptimizerState, _ net: Network) throws {
        let g = try group("/optimizer")!
        let a = AttributeWriter(obj: g.id, label: "/optimizer")
        try a.strings([("kind", [opt.kind], true)])
        try a.double("momentum", opt.momentum)
        try a.double("weight_decay", opt.weightDecay)
        try a.int("nesterov", opt.nesterov ? 1 : 0)
        try group("/optimizer/momentum")
        for path in net.trainablePaths {
            if let buf = opt.buffers[path] { try tensor("/optimizer/momentum/" + path, buf) }
        }
    }

    /// History columns that hold counts; stored as int64 when every value is an exact integer.
    static let integerColumns: Set<String> = ["epoch", "global_step", "blocks"]

    private func writeTraining(_ tr: TrainingState) throws {
        let g = try group("/training")!
        let a = AttributeWriter(obj: g.id, label: "/training")
        try a.int("epoch", tr.epoch)
        try a.int("global_step", tr.globalStep)
        try a.int("cycle", tr.cycle)
        try a.int("step_in_cycle", tr.stepInCycle)
        try a.int("cycle_steps", tr.cycleSteps)
        try a.uint64s("rng_state", tr.rngState)
        try a.strings([("config", [tr.config], true)])
        try group("/training/history")
        for name in tr.history.keys.sorted() {
            let values = tr.history[name]!
            let exactInts = values.allSatisfy {
                abs($0) < 0x1p53 && Double(Int64($0)).bitPattern == $0.bitPattern
            }
            if Self.integerColumns.contains(name) && exactInts {
                let v = values.map { Int64($0) }
                try v.withUnsafeBytes {
                    try dataset1D("/training/history/\(name)", count: v.count, fileType: mlres_H5T_STD_I64LE(),
                                  memType: mlres_H5T_NATIVE_INT64(), dtype: "int64", $0)
                }
            } else {
                try values.withUnsafeBytes {
                    try dataset1D("/training/history/\(name)", count: values.count, fileType: mlres_H5T_IEEE_F64LE(),
                                  memType: mlres_H5T_NATIVE_DOUBLE(), dtype: "float64", $0)
                }
            }
        }
    }

    /// Chunk shape: the whole tensor when it is at most 1 Mi elements (4 MiB), else the
    /// leading dimensions are cut so that one chunk stays under that size.
    static func chunkShape(_ shape: [Int]) -> [hsize_t] {
        let limit = 1 << 20
        var chunk = shape.map { max($0, 1) }
        for i in chunk.indices {
            if chunk.reduce(1, *) <= limit { break }
            let rest = chunk[(i + 1)...].reduce(1, *)
            chunk[i] = max(1, limit / rest)
        }
        return chunk.map { hsize_t($0) }
    }

    /// Filters of every tensor: [shuffle, deflate,] Fletcher32 — the checksum is computed last,
    /// over the stored (possibly compressed) bytes, so corruption is caught before inflating.
    private func datasetCreationList(chunk: [hsize_t], label: String, compress: Bool) throws -> H5Object {
        let dcpl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_DATASET_CREATE()), "cannot write \(label)"))
        var c = chunk
        try H5.check(status: H5Pset_chunk(dcpl.id, Int32(c.count), &c), "cannot write \(label)")
        if compress {
            try H5.check(status: H5Pset_shuffle(dcpl.id), "cannot write \(label)")
            try H5.check(status: H5Pset_deflate(dcpl.id, 4), "cannot write \(label)")
        }
        try H5.check(status: H5Pset_fletcher32(dcpl.id), "cannot write \(label)")
        return dcpl
    }

    private func tensor(_ path: String, _ t: Tensor) throws {
        try parents(of: path)
        let dcpl = try datasetCreationList(chunk: Self.chunkShape(t.shape), label: path, compress: compress)
        var dims = t.shape.map { hsize_t($0) }
        let space = H5Object.space(try H5.check(H5Screate_simple(Int32(dims.count), &dims, nil), "cannot write \(path)"))
        let d = H5Object.dataset(try H5.check(
            H5Dcreate2(file, path, mlres_H5T_IEEE_F32LE(), space.id, lcpl.id, dcpl.id, mlres_H5P_DEFAULT()),
            "cannot write \(path)"))
        if t.count > 0 {
            let st = t.data.withUnsafeBytes {
                H5Dwrite(d.id, mlres_H5T_NATIVE_FLOAT(), mlres_H5S_ALL(), mlres_H5S_ALL(), mlres_H5P_DEFAULT(), $0.baseAddress)
            }
            try H5.check(status: st, "cannot write \(path)")
        }
        try AttributeWriter(obj: d.id, label: path)
            .fixedString(ContentDigest.tensorAttribute, ContentDigest.tensor(path: path, t.data, shape: t.shape))
    }

    /// A 1-D numeric dataset (history columns), chunked with Fletcher32 like the tensors.
    private func dataset1D(_ path: String, count: Int, fileType: hid_t, memType: hid_t, dtype: String,
                           _ values: UnsafeRawBufferPointer) throws {
        let dcpl = try datasetCreationList(chunk: [hsize_t(min(max(count, 1), 65536))], label: path, compress: false)
        var dims = [hsize_t(count)], maxDims = [mlres_H5S_UNLIMITED()]   // extensible: may be empty
        let space = H5Object.space(try H5.check(H5Screate_simple(1, &dims, &maxDims), "cannot write \(path)"))
        let d = H5Object.dataset(try H5.check(
            H5Dcreate2(file, path, fileType, space.id, lcpl.id, dcpl.id, mlres_H5P_DEFAULT()),
            "cannot write \(path)"))
        if count > 0, let buf = values.baseAddress {
            try H5.check(status: H5Dwrite(d.id, memType, mlres_H5S_ALL(), mlres_H5S_ALL(), mlres_H5P_DEFAULT(), buf),
                         "cannot write \(path)")
        }
        try AttributeWriter(obj: d.id, label: path)
            .fixedString(ContentDigest.tensorAttribute, ContentDigest.tensor(path: path, dtype: dtype, shape: [count], bytes: values))
    }

    /// A 1-D dataset of variable-length UTF-8 strings (possibly empty).
    private func strings1D(_ path: String, _ values: [String]) throws {
        let t = try makeVarStringType()
        // Contiguous: the reader checks the stored heap references itself before HDF5 follows
        // them (HDF5 allows no checksum filter on variable-length data).
        var dims = [hsize_t(values.count)]
        let space = H5Object.space(try H5.check(H5Screate_simple(1, &dims, nil), "cannot write \(path)"))
        let d = H5Object.dataset(try H5.check(
            H5Dcreate2(file, path, t.id, space.id, lcpl.id, mlres_H5P_DEFAULT(), mlres_H5P_DEFAULT()),
            "cannot write \(path)"))
        try AttributeWriter(obj: d.id, label: path).fixedString(ContentDigest.stringsAttribute, {
            var digest = ContentDigest.Strings(); digest.add("lineage", values); return digest.hex }())
        guard !values.isEmpty else { return }
        let ptrs: [UnsafeMutablePointer<CChar>?] = values.map { strdup($0) }
        defer { for p in ptrs { free(p) } }
        let st = ptrs.withUnsafeBytes {
            H5Dwrite(d.id, t.id, mlres_H5S_ALL(), mlres_H5S_ALL(), mlres_H5P_DEFAULT(), $0.baseAddress)
        }
        try H5.check(status: st, "cannot write \(path)")
    }
}
