import CDNNL
import Foundation

/// An error from oneDNN or from planning the engine, naming the call that failed.
public struct EngineError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

@inline(__always)
func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
    if status != dnnl_success {
        throw EngineError("oneDNN \(what()) failed (status \(status.rawValue))")
    }
}

/// The process-wide oneDNN CPU engine and its in-order stream.
final class DNNLContext: @unchecked Sendable {
    let engine: dnnl_engine_t
    let stream: dnnl_stream_t

    static let shared: DNNLContext = {
        do { return try DNNLContext() } catch { fatalError("\(error)") }
    }()

    private init() throws {
        var e: dnnl_engine_t?
        try check(dnnl_engine_create(&e, dnnl_cpu, 0), "engine_create")
        var s: dnnl_stream_t?
        try check(dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue), "stream_create")
        engine = e!; stream = s!
    }

    func wait() { _ = dnnl_stream_wait(stream) }
}

/// Sets the number of threads of the one pool (OpenMP, used by oneDNN). `nil` keeps the
/// runtime's default (all cores). Returns the count in effect.
@discardableResult
public func setEngineThreads(_ n: Int?) -> Int {
    if let n, n > 0 { _ = mlres_omp_set_num_threads(Int32(n)) }
    return Int(mlres_omp_get_max_threads())
}

/// A memory descriptor of f32 data with logical dims (PyTorch order) and a format tag.
func makeMD(_ dims: [Int], _ tag: dnnl_format_tag_t) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map(Int64.init)
    try check(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag),
              "memory_desc_init_by_tag \(dims)")
    return md
}

func mdEqual(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
    var a = a, b = b
    return dnnl_memory_desc_equal(&a, &b) != 0
}

func mdBytes(_ md: dnnl_memory_desc_t) -> Int {
    var m = md
    return Int(dnnl_memory_desc_get_size(&m))
}

/// A 64-byte aligned, zero-filled block of raw memory that views may share.
final class RawBuffer {
    let ptr: UnsafeMutableRawPointer
    let bytes: Int
    init(bytes: Int) {
        self.bytes = max(bytes, 64)
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, 64, self.bytes) == 0, "out of memory (\(bytes) bytes)")
        ptr = p!
        memset(ptr, 0, self.bytes)
    }
    deinit { free(ptr) }
}

/// A oneDNN memory object: a descriptor viewing (the start of) a raw buffer.
final class Mem {
    let md: dnnl_memory_desc_t
    let handle: dnnl_memory_t
    let buffer: RawBuffer
    var floats: UnsafeMutablePointer<Float> { buffer.ptr.assumingMemoryBound(to: Float.self) }
    /// Bytes the descriptor spans (including any blocking padding).
    let bytes: Int
    var count: Int { bytes / 4 }

    init(_ md: dnnl_memory_desc_t, buffer: RawBuffer? = nil) throws {
        self.md = md
        let need = mdBytes(md)
        bytes = need
        let buf = buffer ?? RawBuffer(bytes: need)
        precondition(buf.bytes >= need, "buffer of \(buf.bytes) bytes is too small for \(need)")
        self.buffer = buf
        var m = md
        var h: dnnl_memory_t?
        try check(dnnl_memory_create(&h, &m, DNNLContext.shared.engine, buf.ptr), "memory_create")
        handle = h!
    }
    deinit { dnnl_memory_destroy(handle) }

    convenience init(dims: [Int], tag: dnnl_format_tag_t, buffer: RawBuffer? = nil) throws {
        try self.init(try makeMD(dims, tag), buffer: buffer)
    }

    func zero() { memset(buffer.ptr, 0, bytes) }
}

/// A created primitive with its arguments bound once; `run()` executes it on the stream.
final class BoundPrimitive {
    let primitive: dnnl_primitive_t
    var args: [dnnl_exec_arg_t]
    private var keep: [Mem]

    init(_ pd: PrimitiveDesc, _ bindings: [(Int32, Mem)]) throws {
        var p: dnnl_primitive_t?
        try check(dnnl_primitive_create(&p, pd.pd), "primitive_create \(pd.name)")
        primitive = p!
        args = bindings.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1.handle) }
        keep = bindings.map(\.1)
    }
    deinit { dnnl_primitive_destroy(primitive) }

    func run() {
        let s = args.withUnsafeBufferPointer {
            dnnl_primitive_execute(primitive, DNNLContext.shared.stream, Int32($0.count), $0.baseAddress)
        }
        precondition(s == dnnl_success, "oneDNN primitive execution failed (status \(s.rawValue))")
    }
}

/// A primitive descriptor; `md(dnnl_query_weights_md)` etc. return the layouts oneDNN chose.
final class PrimitiveDesc {
    let pd: dnnl_primitive_desc_t
    let name: String
    init(_ pd: dnnl_primitive_desc_t, name: String) { self.pd = pd; self.name = name }
    deinit { dnnl_primitive_desc_destroy(pd) }

    /// Creates a descriptor from an op descriptor (a dnnl_*_desc_t value).
    static func create<D>(_ desc: inout D, attr: dnnl_primitive_attr_t? = nil,
                          hint: PrimitiveDesc? = nil, name: String) throws -> PrimitiveDesc {
        var pd: dnnl_primitive_desc_t?
        let st = withUnsafePointer(to: &desc) { p in
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer(p), attr, DNNLContext.shared.engine, hint?.pd)
        }
        try check(st, "primitive_desc_create \(name)")
        return PrimitiveDesc(pd!, name: name)
    }

    func md(_ what: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, index).pointee
    }

    /// The implementation oneDNN picked (e.g. "jit:avx512_core"), for diagnostics.
    var implementation: String {
        var s: UnsafePointer<CChar>?
        _ = withUnsafeMutablePointer(to: &s) { p in
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, UnsafeMutableRawPointer(p))
        }
        return s.map { String(cString: $0) } ?? "?"
    }
}

/// A reorder between two memories of the same logical shape (layout conversion).
func makeReorder(from src: Mem, to dst: Mem) throws -> BoundPrimitive {
    var pd: dnnl_primitive_desc_t?
    var s = src.md, d = dst.md
    let e = DNNLContext.shared.engine
    try check(dnnl_reorder_primitive_desc_create(&pd, &s, e, &d, e, nil), "reorder_primitive_desc_create")
    return try BoundPrimitive(PrimitiveDesc(pd!, name: "reorder"),
                              [(Int32(MLRES_ARG_FROM), src), (Int32(MLRES_ARG_TO), dst)])
}

/// Copies `src` into `dst` through a one-off reorder (load/save paths only).
func reorderOnce(from src: Mem, to dst: Mem) throws {
    try makeReorder(from: src, to: dst).run()
    DNNLContext.shared.wait()
}
