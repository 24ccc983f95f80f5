/// The learning-rate cycles of a run in optimizer steps (the one schedule type of mlres): the
/// run's `epochs` split into cycles at the `boundaries` epochs (`--interpolate-at` and
/// `--restart-at`), plus any cycle started by a resume after surgery (`extraStarts`, global steps,
/// which may fall mid-epoch). Within each cycle the rate follows the ``CosineCycle`` from η_max at
/// its first step down towards η_min. With `--interpolate-at 60,110` and 160 epochs:
///
///     epochs [0, 60)    cycle 0   (e.g. 2-2-2, h = 1)
///     epochs [60, 110)  cycle 1   (4-4-4, h = 0.5)   ← interpolate after 60 epochs
///     epochs [110, 160) cycle 2   (8-8-8, h = 0.25)  ← interpolate after 110 epochs
///
/// Epochs and steps are 0-based counters: "after 60 epochs" means once epochs 0...59 are done.
/// One optimizer step is one batch.
public struct CyclePlan: Sendable, Equatable {
    public let totalSteps: Int
    public let stepsPerEpoch: Int
    /// First global step of every cycle: sorted, unique, `starts[0] == 0`, all `< totalSteps`.
    public private(set) var starts: [Int]
    public let cosine: CosineCycle

    /// Where a step falls.
    public struct Position: Sendable, Equatable {
        public var cycle: Int
        public var stepInCycle: Int
        public var cycleSteps: Int
        public var lr: Double
    }

    /// - Parameters:
    ///   - epochs: the run's length (> 0).
    ///   - boundaries: epochs after which a new cycle starts (see ``checkBoundaries(_:epochs:flag:)``).
    ///   - extraStarts: global steps where a resume after surgery starts a new cycle.
    /// - Throws: ``ScheduleError`` naming the problem.
    public init(epochs: Int, stepsPerEpoch: Int, boundaries: [Int], cosine: CosineCycle = CosineCycle(),
                extraStarts: [Int] = []) throws {
        guard epochs > 0 else { throw ScheduleError("--epochs must be positive, got \(epochs)") }
        guard stepsPerEpoch > 0 else { throw ScheduleError("steps per epoch must be positive, got \(stepsPerEpoch)") }
        try Self.checkBoundaries(boundaries, epochs: epochs, flag: "cycle boundary")
        guard cosine.lrMax >= cosine.lrMin, cosine.lrMin >= 0 else {
            throw ScheduleError("learning rates need 0 <= lr_min <= lr_max, got lr_min \(cosine.lrMin), lr_max \(cosine.lrMax)")
        }
        self.stepsPerEpoch = stepsPerEpoch
        totalSteps = epochs * stepsPerEpoch
        let fromEpochs = ([0] + boundaries).map { $0 * stepsPerEpoch }
        starts = Array(Set(fromEpochs + extraStarts.filter { $0 > 0 && $0 < epochs * stepsPerEpoch })).sorted()
        self.cosine = cosine
    }

    /// The same plan with new cycles starting at the global steps `extra` (a resume after
    /// surgery, or a finished cycle extended by `--epochs`).
    public func adding(starts extra: [Int]) -> CyclePlan {
        var p = self
        p.starts = Array(Set(starts + extra.filter { $0 > 0 && $0 < totalSteps })).sorted()
        return p
    }

    /// Checks a list of cycle boundaries (`flag` names it in messages): strictly increasing, each
    /// after an epoch of the run and before its last one (1 ... epochs − 1): a boundary ends one
    /// cycle and starts the next, so it needs an epoch on each side.
    public static func checkBoundaries(_ boundaries: [Int], epochs: Int, flag: String) throws {
        for (i, b) in boundaries.enumerated() {
            guard b > 0 && b < epochs else {
                if epochs < 2 {
                    throw ScheduleError("\(flag) \(b): --epochs \(epochs) has no place for it; a new cycle starts after one epoch and before another, so it needs --epochs 2 or more (then \(flag) takes 1 ... epochs−1)")
                }
                throw ScheduleError("\(flag) \(b): a new cycle can start only after epoch 1 ... \(epochs - 1) of --epochs \(epochs) (it ends one cycle and needs an epoch left for the next)")
            }
            guard i == 0 || b > boundaries[i - 1] else {
                throw ScheduleError("\(flag) must be strictly increasing, got \(boundaries.map(String.init).joined(separator: ","))")
            }
        }
    }

    /// Cycle, step in cycle, cycle length and learning rate of global step `s` (`0 <= s < totalSteps`).
    public func position(ofStep s: Int) -> Position {
        precondition(s >= 0 && s < totalSteps, "step \(s) outside 0..<\(totalSteps)")
        let k = (starts.lastIndex(where: { $0 <= s }))!
        let end = k + 1 < starts.count ? starts[k + 1] : totalSteps
        let len = end - starts[k]
        return Position(cycle: k, stepInCycle: s - starts[k], cycleSteps: len,
                        lr: cosine.lr(step: s - starts[k], of: len))
    }

    /// True when `completed` steps finish a cycle (the next step starts another, or the run ends).
    public func endsCycle(afterSteps completed: Int) -> Bool {
        completed == totalSteps || (completed > 0 && starts.contains(completed))
    }
}

/// A bad schedule request, with the message to print.
public struct ScheduleError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

