import CHDF5
import Crypto
import Foundation
import MLResModel

/// The validating reader of format v1 / v1.1 (docs/checkpoint-format.md, "How we read").
///
/// It works on a ``FileImage`` (the file's bytes, read once) opened with HDF5's in-memory
/// driver. Pass 1 checks the structure against the `/model` attributes — every group,
/// attribute, tensor dtype and shape, and every dataset's storage against the allow-list
/// (``checkStorage(_:_:)``) — without reading any dataset's data; only then pass 2 reads the
/// datasets, HDF5 verifying each chunk's Fletcher32 sum and the reader each v1.1 digest and
/// every value's meaning. The first problem found is thrown as an ``H5Problem`` naming its
/// HDF5 path. Callers hold the HDF5 lock.
struct CheckpointReader {
    let file: hid_t
    let image: FileImage
    /// `verify` mode: also require the Fletcher32 filter on every tensor dataset.
    let strict: Bool
    /// The file's global heap collections, checked by ``GlobalHeapCheck``.
    let heaps: GlobalHeapCheck.Heaps
    /// What was found while reading (shared by the copies of this value).
    let tally = Tally()

    final class Tally {
        /// The root says format 1.1: every tensor and string digest must be present.
        var requireDigests = false
        /// Digests present and matched (tensors and string sets).
        var digestsChecked = 0
        var tensorCount = 0
        var tensorBytes = 0
    }

    struct Result {
        var checkpoint: Checkpoint
        /// Superblock version >= 2: the file's structure carries checksums.
        var metadataChecksummed: Bool
        /// Format 1.1 digests present (and all of them matched).
        var protected: Bool
        var digestsChecked: Int
        var tensorCount: Int
        var tensorBytes: Int
    }

    /// Parses `image` (already checked by ``FileImage/load(path:)``).
    static func read(_ image: FileImage, strict: Bool) throws -> Result {
        var heaps: GlobalHeapCheck.Heaps = [:]
        if let p = image.bytes.withUnsafeBytes({ GlobalHeapCheck.problem(in: $0, heaps: &heaps) }) {
            throw H5Problem("is corrupt: \(p)")
        }
        let fid = try image.openHDF5()
        defer { _ = H5Fclose(fid) }
        let reader = CheckpointReader(file: fid, image: image, strict: strict, heaps: heaps)
        let ckpt = try reader.readAll()
        let t = reader.tally
        return Result(checkpoint: ckpt, metadataChecksummed: image.superblockVersion >= 2,
                      protected: t.requireDigests, digestsChecked: t.digestsChecked,
                      tensorCount: t.tensorCount, tensorBytes: t.tensorBytes)
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

    func refuse(_ k: Kind, _ path: String, expected: String) -> H5Problem {
        switch k {
        case .missing: return H5Problem("\(path) is missing")
        case .group: return H5Problem("\(path) is a group, expected \(expected)")
        case .dataset: return H5Problem("\(path) is a dataset, expected \(expected)")
        case .other: return H5Problem("\(path) is not a group or dataset, expected \(expected)")
        case .link(let p):
            return H5Problem("\(p) is a soft or external link; format v1 allows hard links only (a checkpoint must not point outside itself)")
        }
    }

    func openGroup(_ path: String) throws -> H5Object {
        if path != "/" {
            let k = try kind(path)
            guard case .group = k else { throw refuse(k, path, expected: "a group") }
        }
        return H5Object.group(try H5.check(H5Gopen2(file, path, mlres_H5P_DEFAULT()), "\(path): cannot open"))
    }

    /// Opens a dataset and checks its storage against the allow-list before anything else.
    func openDataset(_ path: String) throws -> H5Value {
        let k = try kind(path)
        guard case .dataset = k else { throw refuse(k, path, expected: "a dataset") }
        let d = H5Object.dataset(try H5.check(H5Dopen2(file, path, mlres_H5P_DEFAULT()), "\(path): cannot open"))
        let v = try H5Value(label: path, object: d, isAttribute: false)
        try checkStorage(v, path)
        return v
    }

    private final class NameBox { var names: [String] = []; var totalLength = 0; var tooLong = false }

    /// Names of the links in a group, listed once in storage order (linear in the member
    /// count; HDF5's by-index name lookup is not), bounded in count and length.
    func childNames(_ g: H5Object, _ path: String) throws -> [String] {
        var info = H5G_info_t()
        try H5.check(status: H5Gget_info(g.id, &info), "\(path): cannot list")
        guard info.nlinks <= 100_000 else { throw H5Problem("\(path) has \(info.nlinks) members, too many") }
        let box = NameBox()
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        let st = mlres_iterate_links(g.id, { name, _, ctx in
            guard let name, let ctx else { return -1 }
            let box = Unmanaged<NameBox>.fromOpaque(ctx).takeUnretainedValue()
            let s = String(cString: name)
            box.totalLength += s.utf8.count
            if s.utf8.count >= 4096 || box.totalLength > 64 << 20 { box.tooLong = true; return 1 }
            box.names.append(s)
            return 0
        }, ctx)
        return try withExtendedLifetime(box) {
            if box.tooLong { throw H5Problem("\(path): its member names are too long") }
            guard st >= 0 else { throw H5Problem("\(path): cannot list its members (\(H5.reason()))") }
            return box.names
        }
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

    // MARK: - Storage allow-list

    /// Format v1 stores every dataset's bytes in the file itself, contiguous or chunked, with
    /// only the filters the format names. Checked before any data byte is read; each refusal
    /// names the path and the feature, and says how to write the file instead.
    @discardableResult
    func checkStorage(_ v: H5Value, _ path: String) throws -> (chunked: Bool, filters: [Int32]) {
        let dcpl = H5Object.plist(try H5.check(H5Dget_create_plist(v.object.id), "\(path): cannot read its storage layout"))
        let layout = H5Pget_layout(dcpl.id)
        switch layout {
        case H5D_VIRTUAL:
            throw H5Problem("\(path) is a virtual dataset (its values would be taken from other datasets or files); "
                + "format v1 stores every dataset's bytes in the file: write it as an ordinary dataset")
        case H5D_COMPACT:
            throw H5Problem("\(path) uses compact storage; format v1 stores datasets contiguous or chunked "
                + "(h5py's default)")
        case H5D_CONTIGUOUS, H5D_CHUNKED: break
        default:
            throw H5Problem("\(path) has an unknown storage layout (\(H5.reason()))")
        }
        let external = H5Pget_external_count(dcpl.id)
        if external != 0 {
            throw H5Problem("\(path) keeps its bytes in an external file (HDF5 external storage); format v1 stores "
                + "every dataset's bytes in the checkpoint itself: write it without external=")
        }
        let nFilters = H5Pget_nfilters(dcpl.id)
        guard nFilters >= 0, nFilters <= 16 else { throw H5Problem("\(path): unreadable filter list (\(H5.reason()))") }
        var filters: [Int32] = []
        for i in 0..<UInt32(nFilters) {
            let id = mlres_filter_id(dcpl.id, i)
            guard [mlres_H5Z_FILTER_SHUFFLE(), mlres_H5Z_FILTER_DEFLATE(), mlres_H5Z_FILTER_FLETCHER32()].contains(id) else {
                throw H5Problem("\(path) uses HDF5 filter \(id) (\(Self.filterName(id))); format v1 allows only shuffle, "
                    + "deflate (gzip) and fletcher32: write it with compression=\"gzip\" or none")
            }
            filters.append(id)
        }
        let result = (layout == H5D_CHUNKED, filters)
        let bytes = v.count * max(v.size, 1)
        if bytes == 0 { return result }
        if layout == H5D_CONTIGUOUS {
            let offset = H5Dget_offset(v.object.id)     // absolute (user block included)
            guard offset != mlres_HADDR_UNDEF() else {
                throw H5Problem("\(path) was never written (no storage allocated; HDF5 would return fill values)")
            }
            guard offset < hsize_t(image.size), Int(offset) + bytes <= image.size else {
                throw H5Problem("\(path): its data lies outside the file (the file is truncated)")
            }
            return result
        }
        try checkChunks(v, path, dcpl)
        return result
    }

    /// Every chunk of a chunked dataset exists, lies inside the file, and was stored with
    /// every filter applied (filter mask 0: a chunk that skipped Fletcher32 would pass any
    /// bytes). O(chunks · log chunks).
    private func checkChunks(_ v: H5Value, _ path: String, _ dcpl: H5Object) throws {
        guard let dims = v.dims, !dims.isEmpty else { return }
        var chunk = [hsize_t](repeating: 0, count: dims.count)
        let rank = H5Pget_chunk(dcpl.id, Int32(dims.count), &chunk)
        guard rank == Int32(dims.count), chunk.allSatisfy({ $0 > 0 }) else {
            throw H5Problem("\(path): unreadable chunk layout (\(H5.reason()))")
        }
        let grid = zip(dims, chunk).map { (d, c) in (d + Int(c) - 1) / Int(c) }
        let total = grid.reduce(1, *)
        guard total <= max(v.count, 1) else { throw H5Problem("\(path) has more chunks than values") }
        var index = [Int](repeating: 0, count: dims.count)
        for _ in 0..<total {
            var offset = zip(index, chunk).map { hsize_t($0) * $1 }
            var mask: UInt32 = 0, addr: haddr_t = 0, size: hsize_t = 0
            let st = H5Dget_chunk_info_by_coord(v.object.id, &offset, &mask, &addr, &size)
            let at = "[" + offset.map { String($0) }.joined(separator: ",") + "]"
            guard st >= 0 else { throw H5Problem("\(path): cannot read the record of its chunk at \(at) (\(H5.reason()))") }
            if addr == mlres_HADDR_UNDEF() || size == 0 {
                throw H5Problem("\(path): its chunk at \(at) was never written (HDF5 would return fill values)")
            }
            if mask != 0 {
                throw H5Problem("\(path): its chunk at \(at) was stored with filters skipped (filter mask 0x\(String(mask, radix: 16))), so its checksum is not applied")
            }
            guard addr < haddr_t(image.size), size <= hsize_t(image.size),
                  image.baseAddress + Int(addr) + Int(size) <= image.size else {
                throw H5Problem("\(path): its chunk at \(at) lies outside the file (the file is truncated)")
            }
            for k in (0..<index.count).reversed() {
                index[k] += 1
                if index[k] < grid[k] { break }
                index[k] = 0
            }
        }
    }

    static func filterName(_ id: Int32) -> String {
        switch id {
        case 4: return "szip"
        case 5: return "nbit"
        case 6: return "scale-offset"
        case 32000: return "lzf"
        case 32001: return "blosc"
        case 32004: return "lz4"
        case 32008: return "bitshuffle"
        case 32015: return "zstd"
        default: return "a filter mlres does not read"
        }
    }

    // MARK: - Tensors

    /// Opens a tensor and checks storage, dtype float32 and the exact shape, without reading data.
    func checkTensor(_ path: String, _ shape: [Int]) throws -> H5Value {
        let k = try kind(path)
        guard case .dataset = k else { throw refuse(k, path, expected: "a dataset") }
        let d = H5Object.dataset(try H5.check(H5Dopen2(file, path, mlres_H5P_DEFAULT()), "\(path): cannot open"))
        let v = try H5Value(label: path, object: d, isAttribute: false)
        let storage = try checkStorage(v, path)
        if strict && !(storage.chunked && storage.filters.contains(mlres_H5Z_FILTER_FLETCHER32())) {
            throw H5Problem("\(path) is not protected by the Fletcher32 checksum filter (format v1 requires it on every tensor)")
        }
        guard v.cls == H5T_FLOAT, v.size == 4 else { throw H5Problem("\(path) has dtype \(v.typeName), expected float32") }
        guard v.dims == shape else {
            throw H5Problem("\(path) has shape \(v.shapeText), expected \(CheckpointSchema.shapeText(shape))")
        }
        return v
    }

    /// Reads a checked tensor: its v1.1 digest (when present; required in 1.1 files), then
    /// every value finite (and variances >= 0), the first offender named by path and index.
    func readTensor(_ v: H5Value, _ path: String, _ shape: [Int]) throws -> Tensor {
        let data = try v.floats(maxCount: Tensor.count(of: shape))
        // The value rule first: a NaN named by its index says more than a digest mismatch.
        if let p = CheckpointSchema.valueProblem(path: path, data) { throw H5Problem(p) }
        try checkDigest(v, path) { ContentDigest.tensor(path: path, data, shape: shape) }
        tally.tensorCount += 1; tally.tensorBytes += 4 * data.count
        return Tensor(shape: shape, data: data)
    }

    /// Compares the dataset's `sha256` attribute with `digest()`; a missing attribute is an
    /// error only in a format 1.1 file.
    func checkDigest(_ v: H5Value, _ path: String, _ digest: () -> String) throws {
        guard let stored = try digestAttribute(v.object, path, ContentDigest.tensorAttribute) else {
            if tally.requireDigests {
                throw H5Problem("\(path) has no attribute \(ContentDigest.tensorAttribute) (format 1.1 requires one on every dataset)")
            }
            return
        }
        guard stored == digest() else {
            throw H5Problem("\(path): its values do not match its \(ContentDigest.tensorAttribute) attribute "
                + "(the stored bytes changed after they were written)")
        }
        tally.digestsChecked += 1
    }

    /// Compares an object's `strings_sha256` attribute with the digest of its strings.
    func checkStrings(_ obj: H5Object, _ path: String, _ strings: ContentDigest.Strings) throws {
        guard let stored = try digestAttribute(obj, path, ContentDigest.stringsAttribute) else {
            if tally.requireDigests {
                throw H5Problem("\(path): attribute \(ContentDigest.stringsAttribute) is missing (format 1.1 requires it)")
            }
            return
        }
        guard stored == strings.hex else {
            throw H5Problem("\(path): its strings (\(strings.names.joined(separator: ", "))) do not match attribute "
                + "\(ContentDigest.stringsAttribute): the global heap holding them is corrupt")
        }
        tally.digestsChecked += 1
    }

    private func digestAttribute(_ obj: H5Object, _ path: String, _ name: String) throws -> String? {
        guard let v = try attribute(obj, path, name) else { return nil }
        let s = try v.strings(maxCount: 1)
        guard s.count == 1, s[0].utf8.count == 64, s[0].utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw H5Problem("\(v.label) is not 64 lowercase hexadecimal digits")
        }
        return s[0]
    }

    // MARK: - The whole file

    struct BlockAttributes { var h: Double; var stride: Int; var cin: Int; var cout: Int; var origin: String }

    /// The `/model` attributes: everything every expected shape is derived from.
    struct ModelHeader {
        var arch: Architecture
        var bnEpsilon: Double, bnMomentum: Double
        var inputMean: [Float], inputStd: [Float]
        var classNames: [String]?
    }

    /// Datasets checked in pass 1, read in pass 2.
    struct Plan {
        var specs: [CheckpointSchema.TensorSpec]
        var model: [H5Value]
        var momentumSpecs: [CheckpointSchema.TensorSpec] = []
        var momentum: [H5Value] = []
        var optimizer: OptimizerState?
        var training: TrainingState?
        var history: [(name: String, value: H5Value)] = []
        var lineage: H5Value?
        var lineageCount = 0
    }

    func readAll() throws -> Checkpoint {
        let (createdBy, createdAt) = try readRoot()
        let header = try readModelHeader()
        let blockAttrs = try readBlockAttributes(header.arch)
        // Pass 1: every dataset's structure and storage, no data read.
        var plan = Plan(specs: CheckpointSchema.tensors(header.arch), model: [])
        plan.model = try plan.specs.map { try checkTensor("/" + $0.path, $0.shape) }
        try checkOptimizer(&plan)
        try checkPayload(plan)
        try checkTraining(&plan)
        try checkLineage(&plan)
        // Pass 2: the data.
        let tensors = try readModelTensors(plan)
        for (spec, v) in zip(plan.momentumSpecs, plan.momentum) {
            plan.optimizer!.buffers[spec.path] = try readTensor(v, "/optimizer/momentum/" + spec.path, spec.shape)
        }
        if plan.training != nil { plan.training!.history = try readHistory(plan.history) }
        let lineage = try readLineage(plan)
        let net = assemble(header, blockAttrs, tensors)
        return Checkpoint(network: net, optimizer: plan.optimizer, training: plan.training, lineage: lineage,
                          createdBy: createdBy, createdAt: createdAt)
    }

    /// Root attributes: is this our format at all, which revision, who wrote it.
    private func readRoot() throws -> (createdBy: String, createdAt: String) {
        let root = try openGroup("/")
        let format = try string(root, "/", "format")
        guard format == CheckpointSchema.format else {
            throw H5Problem("/: attribute format = \"\(format)\", expected \"\(CheckpointSchema.format)\"")
        }
        let version = try int(root, "/", "format_version")
        guard version == CheckpointSchema.formatVersion else {
            throw H5Problem("/: attribute format_version = \(version), this reader supports version \(CheckpointSchema.formatVersion)")
        }
        if try attribute(root, "/", CheckpointSchema.minorVersionAttribute) != nil {
            let minor = try int(root, "/", CheckpointSchema.minorVersionAttribute)
            guard minor >= 0 else {
                throw H5Problem("/: attribute \(CheckpointSchema.minorVersionAttribute) = \(minor), expected a number >= 0")
            }
            // 1.1 adds the digests; a later revision (readable by 1.x readers) keeps them.
            tally.requireDigests = minor >= 1
        }
        let createdBy = try string(root, "/", "created_by")
        let createdAt = try string(root, "/", "created_at")
        var s = ContentDigest.Strings()
        s.add("format", [format]); s.add("created_by", [createdBy]); s.add("created_at", [createdAt])
        try checkStrings(root, "/", s)
        return (createdBy, createdAt)
    }

    private func readModelHeader() throws -> ModelHeader {
        let model = try openGroup("/model")
        let architecture = try string(model, "/model", "architecture")
        guard architecture == Network.architecture else {
            throw H5Problem("/model: attribute architecture = \"\(architecture)\", expected \"\(Network.architecture)\"")
        }
        let shortcut = try string(model, "/model", "shortcut")
        guard shortcut == Network.shortcut else {
            throw H5Problem("/model: attribute shortcut = \"\(shortcut)\", expected \"\(Network.shortcut)\"")
        }
        var padding: String?
        if try attribute(model, "/model", "shortcut_padding") != nil {
            let p = try string(model, "/model", "shortcut_padding")
            guard p == CheckpointSchema.shortcutPadding else {
                throw H5Problem("/model: attribute shortcut_padding = \"\(p)\", mlres computes only \"\(CheckpointSchema.shortcutPadding)\" "
                    + "((out - in)/2 zero channels before the input channels, the rest after)")
            }
            padding = p
        }
        let inputShape = try exactly(3, try required(model, "/model", "input_shape")).ints(maxCount: 3).map { Int($0) }
        let numClasses = try int(model, "/model", "num_classes")
        let widths = try required(model, "/model", "stage_widths").ints(maxCount: CheckpointSchema.maxStages).map { Int($0) }
        let blocks = try exactly(widths.count, try required(model, "/model", "stage_blocks"))
            .ints(maxCount: CheckpointSchema.maxStages).map { Int($0) }
        let arch = Architecture(blocks: blocks, widths: widths, inputShape: inputShape, numClasses: numClasses)
        if let p = CheckpointSchema.architectureProblem(arch) { throw H5Problem("/model: \(p)") }
        let c = inputShape[0]
        var header = ModelHeader(
            arch: arch, bnEpsilon: try double(model, "/model", "bn_epsilon"),
            bnMomentum: try double(model, "/model", "bn_momentum"),
            inputMean: try exactly(c, try required(model, "/model", "input_mean")).floats(maxCount: c),
            inputStd: try exactly(c, try required(model, "/model", "input_std")).floats(maxCount: c))
        if let p = CheckpointSchema.modelNumbersProblem(bnEpsilon: header.bnEpsilon, bnMomentum: header.bnMomentum,
                                                         inputMean: header.inputMean, inputStd: header.inputStd) {
            throw H5Problem("/model: \(p)")
        }
        if let v = try attribute(model, "/model", "class_names") {
            header.classNames = try exactly(numClasses, v).strings(maxCount: numClasses)
        }
        var s = ContentDigest.Strings()
        s.add("architecture", [architecture]); s.add("shortcut", [shortcut])
        if let padding { s.add("shortcut_padding", [padding]) }
        if let names = header.classNames { s.add("class_names", names) }
        try checkStrings(model, "/model", s)
        return header
    }

    /// Stage and block groups, numbered 0..n-1 without gaps as the attributes say, and each
    /// block's attributes.
    private func readBlockAttributes(_ arch: Architecture) throws -> [[BlockAttributes]] {
        let stagesGroup = try openGroup("/model/stages")
        try checkNumbering(stagesGroup, "/model/stages", count: arch.widths.count, what: "stage",
                           attribute: "/model: attribute stage_widths has \(arch.widths.count) entries")
        var all: [[BlockAttributes]] = []
        for s in 0..<arch.widths.count {
            let bp = "/model/stages/\(s)/blocks"
            _ = try openGroup("/model/stages/\(s)")
            let bg = try openGroup(bp)
            try checkNumbering(bg, bp, count: arch.blocks[s], what: "block",
                               attribute: "/model: attribute stage_blocks[\(s)] = \(arch.blocks[s])")
            var list: [BlockAttributes] = []
            for b in 0..<arch.blocks[s] {
                let p = "\(bp)/\(b)"
                let g = try openGroup(p)
                let a = BlockAttributes(h: try double(g, p, "h"), stride: try int(g, p, "stride"),
                                        cin: try int(g, p, "in_channels"), cout: try int(g, p, "out_channels"),
                                        origin: try string(g, p, "origin"))
                if let e = CheckpointSchema.blockAttributeProblem(arch, s, b, h: a.h, stride: a.stride,
                                                                  cin: a.cin, cout: a.cout) {
                    throw H5Problem("\(p): \(e)")
                }
                var sd = ContentDigest.Strings()
                sd.add("origin", [a.origin])
                try checkStrings(g, p, sd)
                list.append(a)
            }
            all.append(list)
        }
        return all
    }

    /// The optional `/optimizer` group: attributes and which momentum buffers exist.
    private func checkOptimizer(_ plan: inout Plan) throws {
        let optKind = try kind("/optimizer")
        switch optKind {
        case .missing: return
        case .group: break
        default: throw refuse(optKind, "/optimizer", expected: "a group")
        }
        let g = try openGroup("/optimizer")
        let kindName = try string(g, "/optimizer", "kind")
        let momentum = try double(g, "/optimizer", "momentum")
        let wd = try double(g, "/optimizer", "weight_decay")
        let nesterov = try int(g, "/optimizer", "nesterov")
        guard nesterov == 0 || nesterov == 1 else {
            throw H5Problem("/optimizer: attribute nesterov = \(nesterov), expected 0 or 1")
        }
        if let p = CheckpointSchema.optimizerNumbersProblem(momentum: momentum, weightDecay: wd) {
            throw H5Problem("/optimizer: \(p)")
        }
        var sd = ContentDigest.Strings()
        sd.add("kind", [kindName])
        try checkStrings(g, "/optimizer", sd)
        plan.optimizer = OptimizerState(kind: kindName, momentum: momentum, weightDecay: wd, nesterov: nesterov == 1)
        let mk = try kind("/optimizer/momentum")
        switch mk {
        case .missing: return
        case .group: break
        default: throw refuse(mk, "/optimizer/momentum", expected: "a group")
        }
        var present: [CheckpointSchema.TensorSpec] = [], missing: [String] = []
        for t in plan.specs where t.trainable {
            let p = "/optimizer/momentum/" + t.path
            if case .missing = try kind(p) { missing.append(p) } else { present.append(t) }
        }
        if !present.isEmpty, let first = missing.first {
            throw H5Problem("\(first) is missing (momentum buffers must cover every trainable tensor or none)")
        }
        plan.momentum = try present.map { try checkTensor("/optimizer/momentum/" + $0.path, $0.shape) }
        plan.momentumSpecs = present
    }

    /// Bounds the total payload by what the file can hold (deflate cannot beat ~1032:1).
    private func checkPayload(_ plan: Plan) throws {
        let payload = (plan.specs + plan.momentumSpecs).reduce(0) { $0 + 4 * Tensor.count(of: $1.shape) }
        let limit = 1100 * image.size + (1 << 20)
        if payload > limit {
            throw H5Problem("/model: the attributes imply \(payload) bytes of tensors, impossible in a file of \(image.size) bytes")
        }
    }

    private func readModelTensors(_ plan: Plan) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        // The small running variances first (each must be >= 0), then the rest in order.
        for (spec, v) in zip(plan.specs, plan.model) where spec.path.hasSuffix("/running_var") {
            tensors[spec.path] = try readTensor(v, "/" + spec.path, spec.shape)
        }
        for (spec, v) in zip(plan.specs, plan.model) where tensors[spec.path] == nil {
            tensors[spec.path] = try readTensor(v, "/" + spec.path, spec.shape)
        }
        return tensors
    }

    private func assemble(_ m: ModelHeader, _ blockAttrs: [[BlockAttributes]], _ tensors: [String: Tensor]) -> Network {
        func bn(_ p: String) -> BatchNorm {
            BatchNorm(weight: tensors["\(p)/weight"]!, bias: tensors["\(p)/bias"]!,
                      runningMean: tensors["\(p)/running_mean"]!, runningVar: tensors["\(p)/running_var"]!)
        }
        var stages: [Stage] = []
        for s in 0..<m.arch.widths.count {
            var list: [ResidualBlock] = []
            for b in 0..<m.arch.blocks[s] {
                let p = "model/stages/\(s)/blocks/\(b)"
                let a = blockAttrs[s][b]
                list.append(ResidualBlock(h: a.h, stride: a.stride, inChannels: a.cin, outChannels: a.cout,
                                          origin: a.origin, bn1: bn("\(p)/bn1"), conv1: tensors["\(p)/conv1/weight"]!,
                                          bn2: bn("\(p)/bn2"), conv2: tensors["\(p)/conv2/weight"]!))
            }
            stages.append(Stage(width: m.arch.widths[s], blocks: list))
        }
        return Network(inputShape: m.arch.inputShape, numClasses: m.arch.numClasses, stem: tensors["model/stem/conv/weight"]!,
                       stages: stages, headBN: bn("model/head/bn"), fcWeight: tensors["model/head/fc/weight"]!,
                       fcBias: tensors["model/head/fc/bias"]!, bnEpsilon: m.bnEpsilon, bnMomentum: m.bnMomentum,
                       inputMean: m.inputMean, inputStd: m.inputStd, classNames: m.classNames)
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

    /// The optional `/training` group: attributes now, history columns checked (read later).
    private func checkTraining(_ plan: inout Plan) throws {
        let k = try kind("/training")
        if case .missing = k { return }
        guard case .group = k else { throw refuse(k, "/training", expected: "a group") }
        let g = try openGroup("/training")
        let p = "/training"
        var tr = TrainingState(epoch: try int(g, p, "epoch"), globalStep: try int(g, p, "global_step"),
                               cycle: try int(g, p, "cycle"), stepInCycle: try int(g, p, "step_in_cycle"),
                               cycleSteps: try int(g, p, "cycle_steps"))
        var sd = ContentDigest.Strings()
        let rng = try required(g, p, "rng_state")
        if rng.cls == H5T_STRING {
            let s = try rng.strings(maxCount: 1).first ?? ""
            let parts = s.split(whereSeparator: { !$0.isNumber })
            let values = parts.compactMap { UInt64($0) }
            guard values.count == parts.count else { throw H5Problem("\(rng.label) is not a list of unsigned integers") }
            tr.rngState = values
            sd.add("rng_state", [s])
        } else {
            tr.rngState = try rng.uint64s(maxCount: 1 << 16)
        }
        tr.config = try string(g, p, "config")
        sd.add("config", [tr.config])
        try checkStrings(g, p, sd)
        plan.training = tr

        let hp = "/training/history"
        let hg = try openGroup(hp)
        var length: (String, Int)?
        var present = Set<String>()
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
            plan.history.append((name, v))
            present.insert(name)
        }
        for c in TrainingState.historyColumns where !present.contains(c) { throw H5Problem("\(hp)/\(c) is missing") }
    }

    private func readHistory(_ columns: [(name: String, value: H5Value)]) throws -> [String: [Double]] {
        let maxEntries = min(10_000_000, 1100 * image.size / 8 + 1024)
        var history: [String: [Double]] = [:]
        for (name, v) in columns {
            let path = "/training/history/\(name)"
            if v.cls == H5T_INTEGER {
                let ints = try v.ints(maxCount: maxEntries)
                try checkDigest(v, path) {
                    ints.withUnsafeBytes { ContentDigest.tensor(path: path, dtype: "int64", shape: [ints.count], bytes: $0) }
                }
                history[name] = ints.map { Double($0) }
            } else {
                let values = try v.doubles(maxCount: maxEntries)
                try checkDigest(v, path) {
                    values.withUnsafeBytes { ContentDigest.tensor(path: path, dtype: "float64", shape: [values.count], bytes: $0) }
                }
                history[name] = values
            }
        }
        return history
    }

    /// Reads the raw heap references of a contiguous variable-length string dataset straight
    /// from the file's bytes and checks them before HDF5 follows them (raw data has no
    /// checksum). References hold addresses relative to the base address (user block).
    private func checkStringReferences(_ v: H5Value, count: Int) throws {
        let dcpl = H5Object.plist(try H5.check(H5Dget_create_plist(v.object.id), "\(v.label): cannot read its layout"))
        guard H5Pget_layout(dcpl.id) == H5D_CONTIGUOUS else {
            throw H5Problem("\(v.label) must be stored contiguously (format v1 writes it so; h5py's default)")
        }
        let offset = H5Dget_offset(v.object.id)
        guard offset != hsize_t.max, offset < hsize_t(image.size), Int(offset) + 16 * count <= image.size else {
            throw H5Problem("\(v.label): its data lies outside the file")
        }
        let refs = Array(image.bytes[Int(offset)..<(Int(offset) + 16 * count)])
        if let (i, m) = GlobalHeapCheck.referenceProblem(refs, count: count, heaps: heaps, baseAddress: image.baseAddress) {
            throw H5Problem("\(v.label)[\(i)] is corrupt: its stored string \(m)")
        }
    }

    private func checkLineage(_ plan: inout Plan) throws {
        let v = try openDataset("/lineage")
        guard v.cls == H5T_STRING else { throw H5Problem("/lineage has type \(v.typeName), expected strings") }
        let n = try v.requireVector(maxCount: max(image.size / 16, 1))
        if n > 0 && H5Tis_variable_str(v.type.id) > 0 { try checkStringReferences(v, count: n) }
        plan.lineage = v
        plan.lineageCount = n
    }

    private func readLineage(_ plan: Plan) throws -> [LineageEvent] {
        guard let v = plan.lineage else { return [] }
        let lines = try v.strings(maxCount: plan.lineageCount)
        var sd = ContentDigest.Strings()
        sd.add("lineage", lines)
        try checkStrings(v.object, "/lineage", sd)
        return try lines.enumerated().map { i, line in
            guard let e = LineageEvent.parse(line) else {
                throw H5Problem("/lineage[\(i)] is not a JSON object with an \"op\": \(line.prefix(60))")
            }
            return e
        }
    }
}
