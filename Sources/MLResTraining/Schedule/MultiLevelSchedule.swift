import Foundation

/// The multi-level training schedule: `totalEpochs` split into cycles at `boundaries`
/// (the epochs given to `--interpolate-at` or `--restart-at`), each cycle with its own cosine
/// learning-rate cycle. With `--interpolate-at 60,110` and 160 epochs:
///
///     epochs [0, 60)    cycle 0   (e.g. 2-2-2, h = 1)
///     epochs [60, 110)  cycle 1   (4-4-4, h = 0.5)   ← interpolate after 60 epochs
///     epochs [110, 160) cycle 2   (8-8-8, h = 0.25)  ← interpolate after 110 epochs
///
/// Epochs and steps are 0-based counters: "after 60 epochs" means once epochs 0...59 are done.
/// One optimizer step is one batch; a cycle of `E` epochs has `E · stepsPerEpoch` steps.
public struct MultiLevelSchedule: Sendable, Equatable {
    public let totalEpochs: Int
    public let stepsPerEpoch: Int
    /// Epoch counts at which a new cycle starts, strictly increasing, each in 1 ..< totalEpochs.
    public let boundaries: [Int]
    public let cosine: CosineCycle

    /// Where a global step falls.
    public struct Position: Sendable, Equatable {
        public var globalStep: Int
        public var epoch: Int
        public var stepInEpoch: Int
        public var cycle: Int
        public var stepInCycle: Int
        /// Length of the current cycle in steps.
        public var cycleSteps: Int
        public var lr: Double
    }

    /// Validates the arguments; `flag` names the option in error messages.
    public init(totalEpochs: Int, stepsPerEpoch: Int, boundaries: [Int],
                cosine: CosineCycle = CosineCycle(), flag: String = "--interpolate-at") throws {
        guard totalEpochs > 0 else { throw ScheduleError("--epochs must be positive, got \(totalEpochs)") }
        guard stepsPerEpoch > 0 else { throw ScheduleError("steps per epoch must be positive, got \(stepsPerEpoch)") }
        for (i, b) in boundaries.enumerated() {
            guard b > 0 && b < totalEpochs else {
                throw ScheduleError("\(flag) \(b): each epoch must be between 1 and \(totalEpochs - 1) (--epochs \(totalEpochs))")
            }
            guard i == 0 || b > boundaries[i - 1] else {
                throw ScheduleError("\(flag) must be strictly increasing, got \(boundaries.map(String.init).joined(separator: ","))")
            }
        }
        guard cosine.lrMax >= cosine.lrMin, cosine.lrMin >= 0 else {
            throw ScheduleError("learning rates need 0 <= lr_min <= lr_max, got lr_min \(cosine.lrMin), lr_max \(cosine.lrMax)")
        }
        self.totalEpochs = totalEpochs; self.stepsPerEpoch = stepsPerEpoch
        self.boundaries = boundaries; self.cosine = cosine
    }

    /// Number of cycles (boundaries + 1).
    public var cycleCount: Int { boundaries.count + 1 }
    /// First epoch of each cycle.
    public var cycleStartEpochs: [Int] { [0] + boundaries }
    /// Epoch count at the end of each cycle (where `cycle-K.h5` is written; all but the last are
    /// where the network is interpolated or the learning rate restarts).
    public var cycleEndEpochs: [Int] { boundaries + [totalEpochs] }
    /// Epochs in each cycle.
    public var cycleEpochs: [Int] { zip(cycleStartEpochs, cycleEndEpochs).map { $1 - $0 } }
    /// Total optimizer steps.
    public var totalSteps: Int { totalEpochs * stepsPerEpoch }

    /// The cycle that epoch `e` (0-based) belongs to.
    public func cycle(ofEpoch e: Int) -> Int {
        precondition(e >= 0 && e < totalEpochs, "epoch \(e) outside 0..<\(totalEpochs)")
        return boundaries.firstIndex(where: { e < $0 }) ?? boundaries.count
    }

    /// True when a cycle ends once `completedEpochs` epochs are done (60, 110 and 160 above).
    public func endsCycle(afterEpochs completedEpochs: Int) -> Bool {
        cycleEndEpochs.contains(completedEpochs)
    }

    /// True when, once `completedEpochs` are done, the next epoch starts a new cycle
    /// (interpolate or restart here: 60 and 110 above, not 160).
    public func isBoundary(afterEpochs completedEpochs: Int) -> Bool {
        boundaries.contains(completedEpochs)
    }

    /// Everything about global step `s` (0-based, `s < totalSteps`).
    public func position(ofStep s: Int) -> Position {
        precondition(s >= 0 && s < totalSteps, "step \(s) outside 0..<\(totalSteps)")
        let epoch = s / stepsPerEpoch
        let cycle = cycle(ofEpoch: epoch)
        let start = cycleStartEpochs[cycle] * stepsPerEpoch
        let length = cycleEpochs[cycle] * stepsPerEpoch
        let t = s - start
        return Position(globalStep: s, epoch: epoch, stepInEpoch: s - epoch * stepsPerEpoch, cycle: cycle,
                        stepInCycle: t, cycleSteps: length, lr: cosine.lr(step: t, of: length))
    }

    /// Learning rate at global step `s`.
    public func lr(atStep s: Int) -> Double { position(ofStep: s).lr }

    /// The same run with a new cycle starting after `completedEpochs` epochs (e.g. resuming a
    /// checkpoint whose network was changed by `mlres-surgery`: the learning rate restarts at
    /// η_max there). Boundaries after that point are kept; `totalEpochs` may be changed
    /// (`--epochs` on resume). Returns `self` unchanged when the point is already a boundary.
    public func withNewCycle(afterEpochs completedEpochs: Int, totalEpochs newTotal: Int? = nil) throws -> MultiLevelSchedule {
        let total = newTotal ?? totalEpochs
        guard completedEpochs > 0 else { return try MultiLevelSchedule(totalEpochs: total, stepsPerEpoch: stepsPerEpoch,
                                                                        boundaries: boundaries.filter { $0 < total }, cosine: cosine) }
        guard completedEpochs < total else {
            throw ScheduleError("nothing left to train: \(completedEpochs) epochs done of \(total) (give a larger --epochs)")
        }
        let b = Array(Set(boundaries.filter { $0 < total } + [completedEpochs])).sorted()
        return try MultiLevelSchedule(totalEpochs: total, stepsPerEpoch: stepsPerEpoch, boundaries: b, cosine: cosine)
    }

    /// Parses a flag value such as `"60,110"` (spaces allowed, empty means no boundaries).
    public static func parseEpochs(_ text: String, flag: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if parts == [""] { return [] }
        return try parts.map { p in
            guard let v = Int(p) else { throw ScheduleError("\(flag) \(text): \"\(p)\" is not a whole number of epochs") }
            return v
        }
    }
}

/// A bad schedule request, with the message to print.
public struct ScheduleError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

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

    /// The saving `1 - ratio` for a schedule whose every boundary interpolates.
    public static func theoreticalSaving(_ schedule: MultiLevelSchedule, initialBlocks: Int) -> Double {
        1 - multiLevelRatio(blocks: doublingBlocks(initial: initialBlocks, cycles: schedule.cycleCount),
                            epochs: schedule.cycleEpochs)
    }
}
