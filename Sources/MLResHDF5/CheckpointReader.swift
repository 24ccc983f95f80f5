import CHDF5
import Foundation
import MLResModel

/// The validating reader of format v1. Pass 1 checks the structure against the `/model`
/// attributes — every group, attribute, tensor dtype and shape — without reading any tensor
/// data; only then pass 2 reads the tensors (Fletcher32 verified by HDF5 on every chunk).
/// The first problem found is thrown as an ``H5Problem`` naming its HDF5 path.
/// Callers hold the HDF5 lock.
struct CheckpointReader {
    let file: hid_t
    let fileSize: Int
    /// `verify` mode: also require the Fletcher32 filter on every tensor dataset.
    let strict: Bool

    /// Opens `path` read-only and reads it. Empty, non-HDF5, truncated files fail here with a
    /// message saying so; anything HDF5 says is folded into the message, never printed.
    static func read(path: String, strict: Bool) throws -> Checkpoint {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw H5Problem("cannot open: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw H5Problem("is a directory, not a checkpoint file") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw H5Problem("is not a regular file") }
        let size = Int(st.st_size)
        if size == 0 { throw H5Problem("is empty (0 bytes), not an HDF5 file") }
        let isH5 = H5Fis_hdf5(path)
        if isH5 == 0 { throw H5Problem("is not an HDF5 file (no HDF5 signature found, \(size) bytes)") }
        if isH5 < 0 { throw H5Problem("cannot be read as HDF5 (\(H5.reason()))") }
        let fapl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_FILE_ACCESS()), "cannot open"))
        try H5.check(status: H5Pset_fclose_degree(fapl.id, H5F_CLOSE_STRONG), "cannot open")
        let fid = H5Fopen(path, mlres_H5F_ACC_RDONLY(), fapl.id)
        if fid < 0 { throw H5Problem("cannot be opened as HDF5, the file is truncated or corrupt (\(H5.reason()))") }
        defer { _ = H5Fclose(fid) }
        return try CheckpointReader(file: fid, fileSize: size, strict: strict).readAll()
    }

    // MARK: - Objects

    enum Kind { case missing, group, dataset, other, link(String) }

    /// What `path` names, checking each component exists as a hard link (soft and external
    /// links are refused: a checkpoint must not point outside itself).
    func kind(_ path: String) throws -> Kind {
        var prefix = ""
        for comp in path.split(separator: "/") {
            prefix += "/" + comp
            let e = H5Lexists(file, prefix, mlres_H5P_DEFAULT())
            if e < 0 { throw H5Problem("\(prefix): cannot look it up (\(H5.reason()))") }
            if e == 0 { return .missing }
            let hard = mlres_link_is_hard(file, prefix)
            if hard < 0 { throw H5Problem("\(prefix): cannot look it up (\(H5.reason()))") }
            if hard == 0 { return .link(prefix) }
        }
        let o = H5Oopen(file, path.isEmpty ? "/" : path, mlres_H5P_DEFAULT())
        if o < 0 { throw H5Problem("\(path): cannot open (\(H5.reason()))") }
        defer { _ = H5Oclose(o) }
        switch H5Iget_type(o) {
        case H5I_GROUP: return .group
        case H5I_DATASET: return .dataset
        default: return .other
        }
    }

    private func refuse(_ k: Kind, _ path: String, expected: String) -> H5Problem {
        switch k {
        case .missing: return H5Problem("\(path) is missing")
        case .group: return H5Problem("\(path) is a group, expected \(expected)")
        case .dataset: return H5Problem("\(path) is a dataset, expected \(expected)")
        case .other: return H5Problem("\(path) is not a group or dataset, expected \(expected)")
        case .link(let p): return H5Problem("\(p) is a soft or external link; format v1 allows hard links only")
        }
    }

    func openGroup(_ path: String) throws -> H5Object {
        if path != "/" {
            let k = try kind(path)
            guard case .group = k else { throw refuse(k, path, expected: "a group") }
        }
        return H5Object.group(try H5.check(H5Gopen2(file, path, mlres_H5P_DEFAULT()), "\(path): cannot open"))
    }

    func openDataset(_ path: String) throws -> H5Value {
        let k = try kind(path)
        guard case .dataset = k else { throw refuse(k, path, expected: "a dataset") }
        let d = H5Object.dataset(try H5.check(H5Dopen2(file, path, mlres_H5P_DEFAULT()), "\(path): cannot open"))
        return try H5Value(label: path, object: d, isAttribute: false)
    }

    /// Names of the links in a group (bounded count and length).
    func childNames(_ g: H5Object, _ path: String) throws -> [String] {
        var info = H5G_info_t()
        try H5.check(status: H5Gget_info(g.id, &info), "\(path): cannot list")
        guard info.nlinks <= 100_000 else { throw H5Problem("\(path) has \(info.nlinks) members, too many") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let len = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, mlres_H5P_DEFAULT())
            guard len >= 0, len < 4096 else { throw H5Problem("\(path): cannot list its members (\(H5.reason()))") }
            var buf = [CChar](repeating: 0, count: len + 1)
            let got = H5Lget_name_by_idx(g.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, len + 1, mlres_H5P_DEFAULT())
            guard got >= 0 else { throw H5Problem("\(path): cannot list its members (\(H5.reason()))") }
            names.append(String(cString: buf))
        }
        return names
    }

    // MARK: - Attributes

    func attribute(_ obj: H5Object, _ path: String, _ name: String) throws -> H5Value? {
        let e = H5Aexists(obj.id, name)
        if e < 0 { throw H5Problem("\(path): cannot look up attribute \(name) (\(H5.reason()))") }
        if e == 0 { return nil }
        let a = H5Object.attribute(try H5.check(H5Aopen(obj.id, name, mlres_H5P_DEFAULT()),
                                                "\(path): cannot open attribute \(name)"))
        return try H5Value(label: "\(path): attribute \(name)", object: a, isAttribute: true)
    }

    func required(_ obj: H5Object, _ path: String, _ name: String) throws -> H5Value {
        guard let v = try attribute(obj, path, name) else { throw H5Problem("\(path): attribute \(name) is missing") }
        return v
    }

    func string(_ obj: H5Object, _ path: String, _ name: String) throws -> String {
        let v = try required(obj, path, name)
        let s = try v.strings(maxCount: 1)
        guard s.count == 1 else { throw H5Problem("\(v.label) has \(s.count) values, expected one string") }
        return s[0]
    }

    func int(_ obj: H5Object, _ path: String, _ name: String) throws -> Int {
        let v = try required(obj, path, name)
        let x = try v.ints(maxCount: 1)
        guard x.count == 1 else { throw H5Problem("\(v.label) has \(x.count) values, expected one integer") }
        return Int(x[0])
    }

    func double(_ obj: H5Object, _ path: String, _ name: String) throws -> Double {
        let v = try required(obj, path, name)
        let x = try v.doubles(maxCount: 1)
        guard x.count == 1 else { throw H5Problem("\(v.label) has \(x.count) values, expected one number") }
        return x[0]
    }

    /// A 1-D attribute whose length must be exactly `count` (checked before reading).
    func exactly(_ count: Int, _ v: H5Value) throws -> H5Value {
        let n = try v.requireVector(maxCount: Int(Int32.max))
        guard n == count else { throw H5Problem("\(v.label) has \(n) values, expected \(count)") }
        return v
    }

    // MARK: - Tensors

    /// Opens a tensor and checks dtype float32 and the exact shape, without reading data.
    func checkTensor(_ path: String, _ shape: [Int]) throws -> H5Value {
        let v = try openDataset(path)
        guard v.cls == H5T_FLOAT, v.size == 4 else { throw H5Problem("\(path) has dtype \(v.typeName), expected float32") }
        guard v.dims == shape else {
            throw H5Problem("\(path) has shape \(v.shapeText), expected \(CheckpointSchema.shapeText(shape))")
        }
        if strict {
            let dcpl = H5Object.plist(try H5.check(H5Dget_create_plist(v.object.id), "\(path): cannot read its filters"))
            let n = H5Pget_nfilters(dcpl.id)
            let ids = n > 0 ? (0..<UInt32(n)).map { mlres_filter_id(dcpl.id, $0) } : []
            if H5Pget_layout(dcpl.id) != H5D_CHUNKED || !ids.contains(mlres_H5Z_FILTER_FLETCHER32()) {
                throw H5Problem("\(path) is not protected by the Fletcher32 checksum filter (format v1 requires it on every tensor)")
            }
        }
        return v
    }

    func readTensor(_ path: String, _ shape: [Int]) throws -> Tensor {
        let v = try checkTensor(path, shape)
        let data = try v.floats(maxCount: Tensor.count(of: shape))
        return Tensor(shape: shape, data: data)
    }

    // MARK: - The whole file

    struct BlockAttributes { var h: Double; var stride: Int; var cin: Int; var cout: Int; var origin: String }

    func readAll() throws -> Checkpoint {
        // Root: is this our format at all?
        let root = try openGroup("/")
        let format = try string(root, "/", "format")
        guard format == CheckpointSchema.format else {
            throw H5Problem("/: attribute format = \"\(format)\", expected \"\(CheckpointSchema.format)\"")
        }
        let version = try int(root, "/", "format_version")
        guard version == CheckpointSchema.formatVersion else {
            throw H5Problem("/: attribute format_version = \(version), this reader supports version \(CheckpointSchema.formatVersion)")
        }
        let createdBy = try string(root, "/", "created_by")
        let createdAt = try string(root, "/", "created_at")

        // /model attributes define every expected shape.
        let model = try openGroup("/model")
        let architecture = try string(model, "/model", "architecture")
        guard architecture == Network.architecture else {
            throw H5Problem("/model: attribute architecture = \"\(architecture)\", expected \"\(Network.architecture)\"")
        }
        let shortcut = try string(model, "/model", "shortcut")
        guard shortcut == Network.shortcut else {
            throw H5Problem("/model: attribute shortcut = \"\(shortcut)\", expected \"\(Network.shortcut)\"")
        }
        let inputShape = try exactly(3, try required(model, "/model", "input_shape")).ints(maxCount: 3).map { Int($0) }
        let numClasses = try int(model, "/model", "num_classes")
        let widthsValue = try required(model, "/model", "stage_widths")
        let widths = try widthsValue.ints(maxCount: CheckpointSchema.maxStages).map { Int($0) }
        let blocks = try exactly(widths.count, try required(model, "/model", "stage_blocks"))
            .ints(maxCount: CheckpointSchema.maxStages).map { Int($0) }
        let arch = Architecture(blocks: blocks, widths: widths, inputShape: inputShape, numClasses: numClasses)
        if let p = CheckpointSchema.architectureProblem(arch) { throw H5Problem("/model: \(p)") }
        let bnEpsilon = try double(model, "/model", "bn_epsilon")
        guard bnEpsilon.isFinite && bnEpsilon > 0 else {
            throw H5Problem("/model: attribute bn_epsilon = \(bnEpsilon), expected a finite number > 0")
        }
        let bnMomentum = try double(model, "/model", "bn_momentum")
        guard bnMomentum.isFinite else { throw H5Problem("/model: attribute bn_momentum = \(bnMomentum), expected a finite number") }
        let c = inputShape[0]
        let inputMean = try exactly(c, try required(model, "/model", "input_mean")).floats(maxCount: c)
        let inputStd = try exactly(c, try required(model, "/model", "input_std")).floats(maxCount: c)
        var classNames: [String]?
        if let v = try attribute(model, "/model", "class_names") {
            classNames = try exactly(numClasses, v).strings(maxCount: numClasses)
        }

        // Stage and block groups: numbered 0..n-1 without gaps, as the attributes say.
        let stagesGroup = try openGroup("/model/stages")
        try checkNumbering(stagesGroup, "/model/stages", count: widths.count, what: "stage",
                           attribute: "/model: attribute stage_widths has \(widths.count) entries")
        var blockAttrs: [[BlockAttributes]] = []
        for s in 0..<widths.count {
            let bp = "/model/stages/\(s)/blocks"
            _ = try openGroup("/model/stages/\(s)")
            let bg = try openGroup(bp)
            try checkNumbering(bg, bp, count: blocks[s], what: "block",
                               attribute: "/model: attribute stage_blocks[\(s)] = \(blocks[s])")
            var list: [BlockAttributes] = []
            for b in 0..<blocks[s] {
                let p = "\(bp)/\(b)"
                let g = try openGroup(p)
                let a = BlockAttributes(h: try double(g, p, "h"), stride: try int(g, p, "stride"),
                                        cin: try int(g, p, "in_channels"), cout: try int(g, p, "out_channels"),
                                        origin: try string(g, p, "origin"))
                if let e = CheckpointSchema.blockAttributeProblem(arch, s, b, h: a.h, stride: a.stride,
                                                                  cin: a.cin, cout: a.cout) {
                    throw H5Problem("\(p): \(e)")
                }
                list.append(a)
            }
            blockAttrs.append(list)
        }

        // Every tensor: exists, float32, exact shape — still no data read.
        let specs = CheckpointSchema.tensors(arch)
        for spec in specs { _ = try checkTensor("/" + spec.path, spec.shape) }

        // Optimizer structure.
        var optimizer: OptimizerState?
        var momentumSpecs: [CheckpointSchema.TensorSpec] = []
        let optKind = try kind("/optimizer")
        switch optKind {
        case .missing: break
        case .group:
            let g = try openGroup("/optimizer")
            let kindName = try string(g, "/optimizer", "kind")
            let momentum = try double(g, "/optimizer", "momentum")
            let wd = try double(g, "/optimizer", "weight_decay")
            let nesterov = try int(g, "/optimizer", "nesterov")
            guard nesterov == 0 || nesterov == 1 else {
                throw H5Problem("/optimizer: attribute nesterov = \(nesterov), expected 0 or 1")
            }
            optimizer = OptimizerState(kind: kindName, momentum: momentum, weightDecay: wd, nesterov: nesterov == 1)
            let mk = try kind("/optimizer/momentum")
            if case .group = mk {
                let trainable = specs.filter(\.trainable)
                var present: [CheckpointSchema.TensorSpec] = [], missing: [String] = []
                for t in trainable {
                    let p = "/optimizer/momentum/" + t.path
                    if case .missing = try kind(p) { missing.append(p) } else { present.append(t) }
                }
                if !present.isEmpty, let first = missing.first {
                    throw H5Problem("\(first) is missing (momentum buffers must cover every trainable tensor or none)")
                }
                for t in present { _ = try checkTensor("/optimizer/momentum/" + t.path, t.shape) }
                momentumSpecs = present
            } else if case .missing = mk {
            } else {
                throw refuse(mk, "/optimizer/momentum", expected: "a group")
            }
        default:
            throw refuse(optKind, "/optimizer", expected: "a group")
        }

        // Bound the total payload by what the file can hold (deflate cannot beat ~1032:1).
        let payload = (specs + momentumSpecs).reduce(0) { $0 + 4 * Tensor.count(of: $1.shape) }
        let limit = 1100 * fileSize + (1 << 20)
        if payload > limit {
            throw H5Problem("/model: the attributes imply \(payload) bytes of tensors, impossible in a file of \(fileSize) bytes")
        }

        let training = try readTraining()
        let lineage = try readLineage()

        // Pass 2: the data, in canonical order; running variances must be >= 0.
        var tensors: [String: Tensor] = [:]
        for spec in specs {
            let t = try readTensor("/" + spec.path, spec.shape)
            if spec.path.hasSuffix("/running_var"), let i = t.data.firstIndex(where: { !($0 >= 0) }) {
                throw H5Problem("/\(spec.path)[\(i)] = \(t.data[i]), expected a variance >= 0")
            }
            tensors[spec.path] = t
        }
        if optimizer != nil {
            for spec in momentumSpecs {
                optimizer!.buffers[spec.path] = try readTensor("/optimizer/momentum/" + spec.path, spec.shape)
            }
        }

        func bn(_ p: String) -> BatchNorm {
            BatchNorm(weight: tensors["\(p)/weight"]!, bias: tensors["\(p)/bias"]!,
                      runningMean: tensors["\(p)/running_mean"]!, runningVar: tensors["\(p)/running_var"]!)
        }
        var stages: [Stage] = []
        for s in 0..<widths.count {
            var list: [ResidualBlock] = []
            for b in 0..<blocks[s] {
                let p = "model/stages/\(s)/blocks/\(b)"
                let a = blockAttrs[s][b]
                list.append(ResidualBlock(h: a.h, stride: a.stride, inChannels: a.cin, outChannels: a.cout,
                                          origin: a.origin, bn1: bn("\(p)/bn1"), conv1: tensors["\(p)/conv1/weight"]!,
                                          bn2: bn("\(p)/bn2"), conv2: tensors["\(p)/conv2/weight"]!))
            }
            stages.append(Stage(width: widths[s], blocks: list))
        }
        let net = Network(inputShape: inputShape, numClasses: numClasses, stem: tensors["model/stem/conv/weight"]!,
                          stages: stages, headBN: bn("model/head/bn"), fcWeight: tensors["model/head/fc/weight"]!,
                          fcBias: tensors["model/head/fc/bias"]!, bnEpsilon: bnEpsilon, bnMomentum: bnMomentum,
                          inputMean: inputMean, inputStd: inputStd, classNames: classNames)
        return Checkpoint(network: net, optimizer: optimizer, training: training, lineage: lineage,
                          createdBy: createdBy, createdAt: createdAt)
    }

    /// Checks that the numeric members of a group are exactly 0..count-1 (non-numeric
    /// members are unknown extras and ignored).
    private func checkNumbering(_ g: H5Object, _ path: String, count: Int, what: String, attribute: String) throws {
        var numbers: [Int] = []
        for name in try childNames(g, path) where !name.isEmpty && name.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let k = Int(name), String(k) == name else {
                throw H5Problem("\(path)/\(name): \(what) numbers are written without leading zeros")
            }
            numbers.append(k)
        }
        numbers.sort()
        if numbers == Array(0..<count) { return }
        let shown = numbers.prefix(12).map(String.init).joined(separator: ",") + (numbers.count > 12 ? ",..." : "")
        if numbers == Array(0..<numbers.count) {
            throw H5Problem("\(path) holds \(numbers.count) \(what)s (\(shown)), but \(attribute)")
        }
        let have = Set(numbers)
        let top = max(count, (numbers.last ?? -1) + 1)
        let gap = (0..<top).first { !have.contains($0) } ?? count
        throw H5Problem("\(path)/\(gap) is missing (\(what)s present: \(shown); \(attribute))")
    }

    private func readTraining() throws -> TrainingState? {
        let k = try kind("/training")
        if case .missing = k { return nil }
        guard case .group = k else { throw refuse(k, "/training", expected: "a group") }
        let g = try openGroup("/training")
        let p = "/training"
        var tr = TrainingState(epoch: try int(g, p, "epoch"), globalStep: try int(g, p, "global_step"),
                               cycle: try int(g, p, "cycle"), stepInCycle: try int(g, p, "step_in_cycle"),
                               cycleSteps: try int(g, p, "cycle_steps"))
        let rng = try required(g, p, "rng_state")
        if rng.cls == H5T_STRING {
            let s = try rng.strings(maxCount: 1).first ?? ""
            let parts = s.split(whereSeparator: { !$0.isNumber })
            let values = parts.compactMap { UInt64($0) }
            guard values.count == parts.count else { throw H5Problem("\(rng.label) is not a list of unsigned integers") }
            tr.rngState = values
        } else {
            tr.rngState = try rng.uint64s(maxCount: 1 << 16)
        }
        tr.config = try string(g, p, "config")

        let hp = "/training/history"
        let hg = try openGroup(hp)
        var history: [String: [Double]] = [:]
        var length: (String, Int)?
        let maxEntries = min(10_000_000, 1100 * fileSize / 8 + 1024)
        for name in try childNames(hg, hp).sorted() {
            let path = "\(hp)/\(name)"
            let standard = TrainingState.historyColumns.contains(name)
            guard case .dataset = try kind(path) else {
                if standard { throw H5Problem("\(path) is not a dataset") }
                continue
            }
            let v = try openDataset(path)
            let numeric = v.cls == H5T_INTEGER || v.cls == H5T_FLOAT
            guard numeric, let d = v.dims, d.count == 1 else {
                if standard { throw H5Problem("\(path) has type \(v.typeName) and shape \(v.shapeText), expected a 1-D numeric array") }
                continue
            }
            if let (first, n) = length, n != d[0] {
                throw H5Problem("\(path) has \(d[0]) entries, but \(hp)/\(first) has \(n)")
            }
            length = length ?? (name, d[0])
            history[name] = try v.numbers(maxCount: maxEntries)
        }
        for c in TrainingState.historyColumns where history[c] == nil { throw H5Problem("\(hp)/\(c) is missing") }
        tr.history = history
        return tr
    }

    private func readLineage() throws -> [LineageEvent] {
        let v = try openDataset("/lineage")
        guard v.cls == H5T_STRING else { throw H5Problem("/lineage has type \(v.typeName), expected strings") }
        let lines = try v.strings(maxCount: max(fileSize, 16))
        return try lines.enumerated().map { i, line in
            guard let e = LineageEvent.parse(line) else {
                throw H5Problem("/lineage[\(i)] is not a JSON object with an \"op\": \(line.prefix(60))")
            }
            return e
        }
    }
}
