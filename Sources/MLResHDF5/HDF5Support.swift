import CHDF5
import Foundation

// The thin layer over the HDF5 C library: one process-wide lock, error-stack capture, owned
// identifiers, and typed attribute/dataset access. Nothing outside MLResHDF5 sees an hid_t.

/// Every HDF5 call of the process runs while holding this lock: Debian's serial HDF5 build is
/// not thread-safe. Recursive, so that helpers may nest.
let hdf5Lock = NSRecursiveLock()

/// A problem found while reading or writing; `message` already names the HDF5 path.
struct H5Problem: Error, CustomStringConvertible {
    var message: String
    /// The cause may go away by itself (a lock held by another program): try again later.
    var retryable = false
    init(_ message: String, retryable: Bool = false) { self.message = message; self.retryable = retryable }
    var description: String { message }
}

enum H5 {
    /// Runs `body` holding the HDF5 lock, with HDF5's automatic error printing switched off on
    /// the calling thread (H5Eset_auto2 is per thread) and an empty error stack.
    static func locked<T>(_ body: () throws -> T) rethrows -> T {
        hdf5Lock.lock()
        defer {
            _ = H5Eclear2(mlres_H5E_DEFAULT())
            hdf5Lock.unlock()
        }
        _ = H5Eset_auto2(mlres_H5E_DEFAULT(), nil, nil)
        _ = H5Eclear2(mlres_H5E_DEFAULT())
        return try body()
    }

    private final class StackBox { var lines: [String] = [] }

    /// HDF5's error stack of this thread, from the API call down to the innermost cause, read
    /// with H5Ewalk2 and then cleared. Never printed raw: callers fold it into a message.
    static func errorStack() -> [String] {
        let box = StackBox()
        let ctx = Unmanaged.passUnretained(box).toOpaque()
        _ = H5Ewalk2(mlres_H5E_DEFAULT(), H5E_WALK_DOWNWARD, { _, err, data in
            guard let err, let data else { return 0 }
            let box = Unmanaged<StackBox>.fromOpaque(data).takeUnretainedValue()
            let fn = err.pointee.func_name.map { String(cString: $0) } ?? "?"
            let desc = err.pointee.desc.map { String(cString: $0) } ?? ""
            box.lines.append("\(fn)(): \(desc)")
            return 0
        }, ctx)
        _ = H5Eclear2(mlres_H5E_DEFAULT())
        return withExtendedLifetime(box) { box.lines }
    }

    /// The error stack in one short phrase: the failing API call and the innermost cause.
    /// When the stack shows a cause a user can act on (a format feature newer than this HDF5
    /// reads), that cause comes first.
    static func reason() -> String {
        let s = errorStack()
        guard let first = s.first else { return "HDF5 gave no detail" }
        let short = s.count == 1 ? "HDF5: \(first)" : "HDF5: \(first) <- \(s[s.count - 1])"
        if let newer = newerFormat(s) { return "\(newer); \(short)" }
        return short
    }

    /// Throws `what` plus HDF5's reason when `id` is negative (a failed open/create).
    @discardableResult
    static func check(_ id: hid_t, _ what: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw H5Problem("\(what()) (\(reason()))") }
        return id
    }

    /// Throws when a status code is negative.
    static func check(status: herr_t, _ what: @autoclosure () -> String) throws {
        if status < 0 { throw H5Problem("\(what()) (\(reason()))") }
    }

    /// HDF5 1.10 meets an object stored in a format version it does not know ("bad version
    /// number for datatype message", "bad object header version number", ...) when the file was
    /// written by a newer HDF5 asked for its newest format (h5py bundling HDF5 >= 1.12 with
    /// libver="latest"). With checksummed metadata (object header v2) a corrupt version byte
    /// fails its checksum first, so an unknown version with a good checksum is a newer writer.
    static func newerFormat(_ stack: [String]) -> String? {
        let text = stack.joined(separator: " ").lowercased()
        guard text.contains("version") && (text.contains("bad") || text.contains("unsupported")
                                           || text.contains("unknown") || text.contains("invalid")) else { return nil }
        guard !text.contains("checksum") else { return nil }
        return "the file stores an object in an HDF5 format version newer than HDF5 1.10 (this build) reads "
            + "(written by a newer HDF5 with its newest format, e.g. h5py with libver=\"latest\"); write it with "
            + "HDF5 1.10's format (h5py: libver=(\"earliest\", \"v110\"))"
    }
}

/// An HDF5 identifier that is closed when the value goes away.
final class H5Object {
    let id: hid_t
    private let closer: (hid_t) -> herr_t
    init(_ id: hid_t, _ closer: @escaping (hid_t) -> herr_t) { self.id = id; self.closer = closer }
    deinit { _ = closer(id) }

    static func group(_ id: hid_t) -> H5Object { H5Object(id, H5Gclose) }
    static func dataset(_ id: hid_t) -> H5Object { H5Object(id, H5Dclose) }
    static func attribute(_ id: hid_t) -> H5Object { H5Object(id, H5Aclose) }
    static func space(_ id: hid_t) -> H5Object { H5Object(id, H5Sclose) }
    static func type(_ id: hid_t) -> H5Object { H5Object(id, H5Tclose) }
    static func plist(_ id: hid_t) -> H5Object { H5Object(id, H5Pclose) }
}

/// Variable-length string type with the given character set (UTF-8 for everything we write).
func makeVarStringType(cset: H5T_cset_t = H5T_CSET_UTF8) throws -> H5Object {
    let t = try H5.check(H5Tcopy(mlres_H5T_C_S1()), "cannot create a string type")
    let obj = H5Object.type(t)
    try H5.check(status: H5Tset_size(t, mlres_H5T_VARIABLE()), "cannot create a string type")
    try H5.check(status: H5Tset_cset(t, cset), "cannot create a string type")
    return obj
}

/// A short name of an HDF5 datatype for messages: float32, int64, uint8, string, ...
func describeType(_ cls: H5T_class_t, size: Int, signed: Bool) -> String {
    switch cls {
    case H5T_FLOAT: return "float\(size * 8)"
    case H5T_INTEGER: return (signed ? "int" : "uint") + "\(size * 8)"
    case H5T_STRING: return "string"
    case H5T_COMPOUND: return "compound"
    case H5T_ARRAY: return "array"
    case H5T_VLEN: return "vlen"
    case H5T_ENUM: return "enum"
    case H5T_OPAQUE: return "opaque"
    case H5T_REFERENCE: return "reference"
    case H5T_BITFIELD: return "bitfield"
    default: return "unknown"
    }
}

// MARK: - Reading values (attributes and datasets alike)

/// An open attribute or dataset with its type and shape, ready for a typed, bounded read.
struct H5Value {
    /// How messages name it: "/model: attribute stage_widths" or "/lineage".
    let label: String
    let object: H5Object
    let isAttribute: Bool
    let type: H5Object
    let space: H5Object
    let cls: H5T_class_t
    let size: Int
    let signed: Bool
    /// Dimensions; [] for a scalar (one element); nil for a null dataspace (no elements).
    let dims: [Int]?

    init(label: String, object: H5Object, isAttribute: Bool) throws {
        self.label = label; self.object = object; self.isAttribute = isAttribute
        let t = isAttribute ? H5Aget_type(object.id) : H5Dget_type(object.id)
        type = H5Object.type(try H5.check(t, "\(label): cannot read its datatype"))
        let s = isAttribute ? H5Aget_space(object.id) : H5Dget_space(object.id)
        space = H5Object.space(try H5.check(s, "\(label): cannot read its dataspace"))
        cls = H5Tget_class(type.id)
        size = H5Tget_size(type.id)
        signed = cls == H5T_INTEGER ? H5Tget_sign(type.id) != H5T_SGN_NONE : true
        switch H5Sget_simple_extent_type(space.id) {
        case H5S_SCALAR: dims = []
        case H5S_NULL: dims = nil
        case H5S_SIMPLE:
            let rank = Int(H5Sget_simple_extent_ndims(space.id))
            guard rank >= 0 && rank <= 32 else { throw H5Problem("\(label): unreadable dataspace (\(H5.reason()))") }
            var d = [hsize_t](repeating: 0, count: max(rank, 1))
            guard H5Sget_simple_extent_dims(space.id, &d, nil) >= 0 else {
                throw H5Problem("\(label): unreadable dataspace (\(H5.reason()))")
            }
            if d.prefix(rank).contains(where: { $0 > hsize_t(Int32.max) }) {
                throw H5Problem("\(label) has an absurd dimension \(d.prefix(rank).map { String($0) })")
            }
            dims = d.prefix(rank).map { Int($0) }
        default:
            throw H5Problem("\(label): unreadable dataspace")
        }
    }

    var typeName: String { describeType(cls, size: size, signed: signed) }
    var count: Int { dims.map { $0.reduce(1, *) } ?? 0 }
    var shapeText: String { dims.map { $0.isEmpty ? "scalar" : "[" + $0.map(String.init).joined(separator: ",") + "]" } ?? "empty" }

    /// Scalar or 1-D, with at most `maxCount` elements; returns the element count.
    func requireVector(maxCount: Int) throws -> Int {
        if let d = dims, d.count > 1 { throw H5Problem("\(label) has shape \(shapeText), expected a 1-D array") }
        if count > maxCount { throw H5Problem("\(label) has \(count) values, more than the \(maxCount) allowed") }
        return count
    }

    private func read(_ memType: hid_t, _ buf: UnsafeMutableRawPointer) -> herr_t {
        isAttribute ? H5Aread(object.id, memType, buf)
                    : H5Dread(object.id, memType, mlres_H5S_ALL(), mlres_H5S_ALL(), mlres_H5P_DEFAULT(), buf)
    }

    func ints(maxCount: Int) throws -> [Int64] {
        guard cls == H5T_INTEGER else { throw H5Problem("\(label) has type \(typeName), expected int64") }
        let n = try requireVector(maxCount: maxCount)
        if n == 0 { return [] }
        var out = [Int64](repeating: 0, count: n)
        let st = out.withUnsafeMutableBytes { read(mlres_H5T_NATIVE_INT64(), $0.baseAddress!) }
        try H5.check(status: st, "\(label): cannot read")
        return out
    }

    /// Unsigned 64-bit integers; a signed source is reinterpreted bit for bit.
    func uint64s(maxCount: Int) throws -> [UInt64] {
        guard cls == H5T_INTEGER else { throw H5Problem("\(label) has type \(typeName), expected uint64") }
        let n = try requireVector(maxCount: maxCount)
        if n == 0 { return [] }
        var out = [UInt64](repeating: 0, count: n)
        let mem = signed ? mlres_H5T_NATIVE_INT64() : mlres_H5T_NATIVE_UINT64()
        let st = out.withUnsafeMutableBytes { read(mem, $0.baseAddress!) }
        try H5.check(status: st, "\(label): cannot read")
        return out
    }

    func doubles(maxCount: Int) throws -> [Double] {
        guard cls == H5T_FLOAT else { throw H5Problem("\(label) has type \(typeName), expected float64") }
        let n = try requireVector(maxCount: maxCount)
        if n == 0 { return [] }
        var out = [Double](repeating: 0, count: n)
        let st = out.withUnsafeMutableBytes { read(mlres_H5T_NATIVE_DOUBLE(), $0.baseAddress!) }
        try H5.check(status: st, "\(label): cannot read")
        return out
    }

    /// Numbers of any integer or float type, as Double (for history columns).
    func numbers(maxCount: Int) throws -> [Double] {
        if cls == H5T_INTEGER { return try ints(maxCount: maxCount).map { Double($0) } }
        guard cls == H5T_FLOAT else { throw H5Problem("\(label) has type \(typeName), expected numbers") }
        return try doubles(maxCount: maxCount)
    }

    /// float32 values, read into a buffer of exactly `count` elements (the caller checked
    /// the shape against the architecture before calling).
    func floats(maxCount: Int) throws -> [Float] {
        guard cls == H5T_FLOAT else { throw H5Problem("\(label) has type \(typeName), expected float32") }
        let n = count
        if n > maxCount { throw H5Problem("\(label) has \(n) values, more than the \(maxCount) allowed") }
        if n == 0 { return [] }
        var out = [Float](repeating: 0, count: n)
        let st = out.withUnsafeMutableBytes { read(mlres_H5T_NATIVE_FLOAT(), $0.baseAddress!) }
        try H5.check(status: st, "\(label): cannot read data")
        return out
    }

    /// Strings, variable-length or fixed-length, ASCII or UTF-8.
    func strings(maxCount: Int) throws -> [String] {
        guard cls == H5T_STRING else { throw H5Problem("\(label) has type \(typeName), expected string") }
        let n = try requireVector(maxCount: maxCount)
        if n == 0 { return [] }
        let isVar = H5Tis_variable_str(type.id)
        if isVar < 0 { throw H5Problem("\(label): unreadable string type (\(H5.reason()))") }
        if isVar > 0 {
            let mem = try makeVarStringType(cset: H5Tget_cset(type.id))
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
            let st = ptrs.withUnsafeMutableBytes { read(mem.id, $0.baseAddress!) }
            defer { for p in ptrs where p != nil { H5free_memory(p) } }
            try H5.check(status: st, "\(label): cannot read")
            return ptrs.map { $0.map { String(cString: $0) } ?? "" }
        }
        // Fixed-length: n strings of `size` bytes each, NUL- or space-padded.
        guard size > 0, size <= 1 << 20, n * size <= 1 << 26 else {
            throw H5Problem("\(label): fixed-length strings of \(size) bytes are too large")
        }
        let mem = H5Object.type(try H5.check(H5Tcopy(type.id), "\(label): cannot read"))
        var bytes = [UInt8](repeating: 0, count: n * size)
        let st = bytes.withUnsafeMutableBytes { read(mem.id, $0.baseAddress!) }
        try H5.check(status: st, "\(label): cannot read")
        return (0..<n).map { i in
            var chunk = bytes[(i * size)..<((i + 1) * size)]
            while let last = chunk.last, last == 0 || last == 32 { chunk = chunk.dropLast() }
            return String(decoding: chunk, as: UTF8.self)
        }
    }
}

// MARK: - Writing values

/// Creates an attribute `name` on `obj`: scalar when `dims` is nil, else 1-D (an empty array
/// gets a null dataspace, HDF5's way of saying "no elements").
func writeAttribute(on obj: hid_t, label: String, name: String, fileType: hid_t, memType: hid_t,
                    count: Int?, _ buf: UnsafeRawPointer?) throws {
    let spaceID: hid_t
    if let n = count {
        if n == 0 { spaceID = H5Screate(H5S_NULL) }
        else { var d = [hsize_t(n)]; spaceID = H5Screate_simple(1, &d, nil) }
    } else {
        spaceID = H5Screate(H5S_SCALAR)
    }
    let space = H5Object.space(try H5.check(spaceID, "cannot write \(label): attribute \(name)"))
    let a = H5Object.attribute(try H5.check(
        H5Acreate2(obj, name, fileType, space.id, mlres_H5P_DEFAULT(), mlres_H5P_DEFAULT()),
        "cannot write \(label): attribute \(name)"))
    if count != 0, let buf {
        try H5.check(status: H5Awrite(a.id, memType, buf), "cannot write \(label): attribute \(name)")
    }
}

/// Typed attribute writers for one object.
struct AttributeWriter {
    let obj: hid_t
    let label: String

    func string(_ name: String, _ value: String) throws { try strings(name, [value], scalar: true) }

    func strings(_ name: String, _ values: [String], scalar: Bool = false) throws {
        let t = try makeVarStringType()
        let ptrs: [UnsafeMutablePointer<CChar>?] = values.map { strdup($0) }
        defer { for p in ptrs { free(p) } }
        try ptrs.withUnsafeBytes {
            try writeAttribute(on: obj, label: label, name: name, fileType: t.id, memType: t.id,
                               count: scalar ? nil : values.count, $0.baseAddress)
        }
    }

    /// An ASCII string of fixed length, stored inside the object header itself (which the
    /// newest layout checksums), unlike variable-length strings (global heap, no checksum).
    func fixedString(_ name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let t = H5Object.type(try H5.check(H5Tcopy(mlres_H5T_C_S1()), "cannot write \(label): attribute \(name)"))
        try H5.check(status: H5Tset_size(t.id, max(bytes.count, 1)), "cannot write \(label): attribute \(name)")
        try H5.check(status: H5Tset_strpad(t.id, H5T_STR_NULLPAD), "cannot write \(label): attribute \(name)")
        try bytes.withUnsafeBytes {
            try writeAttribute(on: obj, label: label, name: name, fileType: t.id, memType: t.id, count: nil, $0.baseAddress)
        }
    }

    /// Strings written as variable-length attributes, and their digest (format 1.1) in the
    /// same object header.
    func strings(_ list: [(name: String, values: [String], scalar: Bool)]) throws {
        var digest = ContentDigest.Strings()
        for (name, values, scalar) in list {
            try strings(name, values, scalar: scalar)
            digest.add(name, values)
        }
        try fixedString(ContentDigest.stringsAttribute, digest.hex)
    }

    func int(_ name: String, _ value: Int) throws {
        var v = Int64(value)
        try writeAttribute(on: obj, label: label, name: name, fileType: mlres_H5T_STD_I64LE(),
                           memType: mlres_H5T_NATIVE_INT64(), count: nil, &v)
    }

    func ints(_ name: String, _ values: [Int]) throws {
        let v = values.map { Int64($0) }
        try v.withUnsafeBytes {
            try writeAttribute(on: obj, label: label, name: name, fileType: mlres_H5T_STD_I64LE(),
                               memType: mlres_H5T_NATIVE_INT64(), count: v.count, $0.baseAddress)
        }
    }

    func uint64s(_ name: String, _ values: [UInt64]) throws {
        try values.withUnsafeBytes {
            try writeAttribute(on: obj, label: label, name: name, fileType: mlres_H5T_STD_U64LE(),
                               memType: mlres_H5T_NATIVE_UINT64(), count: values.count, $0.baseAddress)
        }
    }

    func double(_ name: String, _ value: Double) throws {
        var v = value
        try writeAttribute(on: obj, label: label, name: name, fileType: mlres_H5T_IEEE_F64LE(),
                           memType: mlres_H5T_NATIVE_DOUBLE(), count: nil, &v)
    }

    func floats(_ name: String, _ values: [Float]) throws {
        try values.withUnsafeBytes {
            try writeAttribute(on: obj, label: label, name: name, fileType: mlres_H5T_IEEE_F32LE(),
                               memType: mlres_H5T_NATIVE_FLOAT(), count: values.count, $0.baseAddress)
        }
    }
}
