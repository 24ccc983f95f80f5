import MLResData
import MLResModel

extension LineageEvent {
    /// The "init" event that starts the lineage of a freshly initialised network
    /// (`mlres-train init`, and a training run without `--resume`): its architecture, seed and h.
    /// `compress` is recorded when the file was written by `mlres-train init`.
    public static func initialization(_ arch: Architecture, seed: UInt64, h: Double = 1,
                                      compress: Bool? = nil) -> LineageEvent {
        var args: [String: JSONValue] = [
            "blocks": .array(arch.blocks.map { .int($0) }), "widths": .array(arch.widths.map { .int($0) }),
            "classes": .int(arch.numClasses), "input_shape": .array(arch.inputShape.map { .int($0) }),
            "seed": .int(Int(truncatingIfNeeded: seed)), "h": .double(h),
        ]
        if let compress { args["compress"] = .bool(compress) }
        return LineageEvent(op: "init", args: args)
    }
}
