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

/// A memory descriptor of f32 (or `type`) data with logical dims (PyTorch order) and a format tag.
func makeMD(_ dims: [Int], _ tag: dnnl_format_tag_t, _ type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map(Int64.init)
    try check(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, type, tag),
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
    /// The data as f32 (only for f32 memories).
    var floats: UnsafeMutablePointer<Float> { buffer.ptr.assumingMemoryBound(to: Float.self) }
    /// The data as raw bfloat16 bit patterns (only for bf16 memories).
    var bf16: UnsafeMutablePointer<UInt16> { buffer.ptr.assumingMemoryBound(to: UInt16.self) }
    /// Bytes the descriptor spans (including any blocking padding).
    let bytes: Int
    /// f32 elements the descriptor spans (f32 memories).
    var count: Int { bytes / 4 }
    /// True for bfloat16 data.
    var isBF16: Bool { md.data_type == dnnl_bf16 }

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

    convenience init(dims: [Int], tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32,
                     buffer: RawBuffer? = nil) throws {
        try self.init(try makeMD(dims, tag, type), buffer: buffer)
    }

    /// Element `i` (in storage order) as a Float, for f32 or bf16 data.
    @inline(__always) func value(at i: Int) -> Float {
        isBF16 ? Float(bf16Bits: bf16[i]) : floats[i]
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

    /// True when oneDNN fell back to its slow reference kernel.
    var isReference: Bool { implementation.hasPrefix("ref") }

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

/// The instruction set oneDNN dispatches its JIT kernels for: the CPU's, capped by
/// `ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA` (oneDNN's `dnnl_get_effective_cpu_isa`).
/// oneDNN's ISA values are nested bit sets (each level includes the bits of the ones it extends).
public struct CPUISA: Sendable, Equatable, CustomStringConvertible {
    public let rawValue: UInt32

    /// What oneDNN dispatches in this process.
    public static var effective: CPUISA { CPUISA(rawValue: dnnl_get_effective_cpu_isa().rawValue) }

    public static let avx2 = CPUISA(rawValue: dnnl_cpu_isa_avx2.rawValue)
    public static let avx512Core = CPUISA(rawValue: dnnl_cpu_isa_avx512_core.rawValue)
    public static let avx512CoreBF16 = CPUISA(rawValue: dnnl_cpu_isa_avx512_core_bf16.rawValue)

    /// True when every instruction of `other` is available.
    public func includes(_ other: CPUISA) -> Bool { rawValue & other.rawValue == other.rawValue }

    /// oneDNN's name of the ISA (as `ONEDNN_MAX_CPU_ISA` spells it, lower case).
    public var description: String {
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx512_mic_4ops, "avx512_mic_4ops"), (dnnl_cpu_isa_avx512_mic, "avx512_mic"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
            (dnnl_cpu_isa_sse41, "sse41")]
        if let n = names.first(where: { $0.0.rawValue == rawValue }) { return n.1 }
        if let n = names.first(where: { includes(CPUISA(rawValue: $0.0.rawValue)) }) { return n.1 }
        return rawValue == 0 ? "all" : String(format: "isa 0x%x", rawValue)
    }

    /// Channels per block of the activation layout oneDNN's JIT convolution and batch-norm
    /// kernels take for this ISA: 16 (`nChw16c`, AVX-512), 8 (`nChw8c`, AVX2), 0 (none: NHWC).
    /// oneDNN 2.6 on AVX2 has only reference kernels for `nChw16c`, and on AVX-512 prefers 16.
    var activationBlock: Int {
        if includes(.avx512Core) { return 16 }
        if includes(.avx2) { return 8 }
        return 0
    }
}

extension Float {
    /// The float a bfloat16 bit pattern stands for (bf16 is the upper half of an f32).
    @inline(__always) init(bf16Bits b: UInt16) { self = Float(bitPattern: UInt32(b) << 16) }

    /// This float rounded to bfloat16, round-to-nearest-even (oneDNN's conversion; NaN stays NaN).
    @inline(__always) var bf16Bits: UInt16 {
        let u = bitPattern
        if isNaN { return UInt16(u >> 16) | 0x40 }
        return UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }
}
