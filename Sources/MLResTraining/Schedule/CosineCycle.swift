import Foundation

/// The cyclic (cosine) learning rate of the paper, within one cycle:
///
///     η(t) = η_min + ½ (η_max − η_min) (1 + cos(π · t / T))
///
/// with `t` (T_cur) the optimizer step within the current cycle, counted from 0, and `T` the
/// cycle's length in steps. It starts at η_max (t = 0), is (η_max + η_min)/2 half way, and would
/// reach η_min at t = T, which is already the first step of the next cycle, where it restarts at
/// η_max. Defaults are the paper's: η_max 0.5, η_min 0.001.
public struct CosineCycle: Sendable, Equatable, Codable {
    public var lrMax: Double
    public var lrMin: Double

    public init(lrMax: Double = 0.5, lrMin: Double = 0.001) {
        self.lrMax = lrMax; self.lrMin = lrMin
    }

    /// Learning rate at step `t` of a cycle of `T` steps (`0 <= t <= T`, `T > 0`).
    public func lr(step t: Int, of T: Int) -> Double {
        precondition(T > 0 && t >= 0 && t <= T, "cosine cycle step \(t) of \(T)")
        return lrMin + 0.5 * (lrMax - lrMin) * (1 + cos(Double.pi * Double(t) / Double(T)))
    }
}
