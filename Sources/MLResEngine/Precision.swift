import CDNNL
import Foundation

/// The number format of the engine's convolution and batch-norm data.
///
/// - `fp32`: IEEE single precision everywhere.
/// - `bf16`: bfloat16 (8-bit exponent, 8-bit significand incl. the implicit bit) activations and
///   weight copies in the convolutions and batch norms, through oneDNN's bf16 primitives, with fp32
///   accumulation; fp32 master weights, gradients, momentum and SGD update; the loss and the head
///   (global pool, fc) in fp32. Checkpoints are fp32 in both precisions.
///
/// bf16 runs only where oneDNN has native bf16 kernels (``CPUISA/avx512CoreBF16``: the
/// AVX512_BF16 instructions): elsewhere ``checkSupported()`` throws rather than letting oneDNN
/// emulate bf16 slowly (on AVX-512 without AVX512_BF16) or fail (on AVX2).
public enum Precision: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case fp32, bf16

    public var description: String { rawValue }

    /// The oneDNN data type of activations in this precision.
    var dataType: dnnl_data_type_t { self == .bf16 ? dnnl_bf16 : dnnl_f32 }
    /// Bytes per activation element.
    var elementBytes: Int { self == .bf16 ? 2 : 4 }

    /// The ISA this precision needs oneDNN to dispatch.
    public var requiredISA: CPUISA? { self == .bf16 ? .avx512CoreBF16 : nil }

    /// Throws ``UnsupportedPrecision`` (naming the missing ISA) when oneDNN cannot run this
    /// precision with native instructions in this process (CPU, or `ONEDNN_MAX_CPU_ISA` cap).
    public func checkSupported() throws {
        guard let need = requiredISA else { return }
        let have = CPUISA.effective
        if !have.includes(need) {
            throw UnsupportedPrecision(precision: self, required: need, effective: have)
        }
    }
}

/// A precision this CPU (or the ISA cap of `ONEDNN_MAX_CPU_ISA`) cannot run natively.
/// CLIs report it as a refused operation (exit 2).
public struct UnsupportedPrecision: Error, CustomStringConvertible {
    public let precision: Precision
    public let required: CPUISA
    public let effective: CPUISA
    public var description: String {
        "--precision \(precision) needs the AVX512_BF16 instructions (oneDNN ISA \(required)); "
            + "oneDNN dispatches \(effective) on this CPU\(capNote), and mlres does not emulate bf16 "
            + "(it would be slower than fp32). Use --precision fp32."
    }
    private var capNote: String {
        let env = ProcessInfo.processInfo.environment
        guard let cap = env["ONEDNN_MAX_CPU_ISA"] ?? env["DNNL_MAX_CPU_ISA"] else { return "" }
        return " (capped by ONEDNN_MAX_CPU_ISA/DNNL_MAX_CPU_ISA=\(cap))"
    }
}
