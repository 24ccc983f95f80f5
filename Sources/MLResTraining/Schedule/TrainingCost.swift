/// The paper's Table 2 theory: training cost is proportional to the number of residual blocks
/// times the epochs trained with them (the stem and head are ignored).
public enum TrainingCost {
    /// Cost of a multi-level run relative to training the last cycle's network for all the
    /// epochs: `Σ_k blocks_k · epochs_k / (blocks_last · Σ_k epochs_k)`.
    ///
    /// Three equal cycles that double the depth give (1 + 2 + 4) / (3 · 4) = 7/12 ≈ 0.583, the
    /// paper's "42% saved"; 2-2-2 → 4-4-4 → 8-8-8 at 60/110 of 160 epochs gives
    /// (6·60 + 12·50 + 24·50) / (24·160) = 0.5625 (43.75% saved).
    public static func multiLevelRatio(blocks: [Int], epochs: [Int]) -> Double {
        precondition(!blocks.isEmpty && blocks.count == epochs.count)
        let total = epochs.reduce(0, +)
        let cost = zip(blocks, epochs).reduce(0) { $0 + $1.0 * $1.1 }
        return Double(cost) / Double(blocks.last! * total)
    }

    /// Blocks per cycle when the network starts with `initialBlocks` and every boundary
    /// interpolates (doubling the blocks of every stage).
    public static func doublingBlocks(initial initialBlocks: Int, cycles: Int) -> [Int] {
        (0 ..< cycles).map { initialBlocks << $0 }
    }
}
