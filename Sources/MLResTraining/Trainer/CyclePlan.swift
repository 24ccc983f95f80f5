/// The learning-rate cycles of a run in optimizer steps: the ``MultiLevelSchedule``'s cycles
/// (boundaries at `--interpolate-at` and `--restart-at` epochs), plus any cycle started by a
/// resume after surgery (which may fall mid-epoch). Within each cycle the rate follows the
/// ``CosineCycle`` from η_max at its first step down towards η_min.
public struct CyclePlan: Sendable, Equatable {
    public let totalSteps: Int
    /// First global step of every cycle: sorted, unique, `starts[0] == 0`, all `< totalSteps`.
    public let starts: [Int]
    public let cosine: CosineCycle

    /// Where a step falls.
    public struct Position: Sendable, Equatable {
        public var cycle: Int
        public var stepInCycle: Int
        public var cycleSteps: Int
        public var lr: Double
    }

    public init(schedule: MultiLevelSchedule, extraStarts: [Int] = []) {
        totalSteps = schedule.totalSteps
        let fromEpochs = schedule.cycleStartEpochs.map { $0 * schedule.stepsPerEpoch }
        starts = Array(Set(fromEpochs + extraStarts.filter { $0 > 0 && $0 < schedule.totalSteps })).sorted()
        cosine = schedule.cosine
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
