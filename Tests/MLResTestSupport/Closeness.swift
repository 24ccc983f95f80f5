// The one closeness check of the tests: element counts first, so that an empty or short
// output can never pass (a `zip(got, expected)` loop stops at the shorter side).
import MLResModel
import Testing

/// The largest |got_i − expected_i| / max(floor, |expected_i|) over all elements, or nil when
/// the element counts differ or there is nothing to compare (so no caller can mistake an empty
/// or truncated output for a close one).
public func worstRelativeError<G: Collection, E: Collection>(_ got: G, _ expected: E, floor: Double = 1) -> Double?
    where G.Element: BinaryFloatingPoint, E.Element: BinaryFloatingPoint {
    guard got.count == expected.count, !expected.isEmpty else { return nil }
    var worst = 0.0
    for (a, b) in zip(got, expected) {
        let (a, b) = (Double(a), Double(b))
        let e = abs(a - b) / max(floor, abs(b))
        if !(e <= worst) { worst = e.isNaN ? .infinity : e }
    }
    return worst
}

/// Expects `got` to have exactly as many elements as `expected` (and at least one) and every
/// element within `tolerance`·max(`floor`, |expected_i|) of it. Records one issue naming the
/// count mismatch, or the worst element (index, both values).
public func expectClose<G: Collection, E: Collection>(_ got: G, _ expected: E, tolerance: Double, floor: Double = 1,
                                                      _ comment: @autoclosure () -> String = "",
                                                      sourceLocation: SourceLocation = #_sourceLocation)
    where G.Element: BinaryFloatingPoint, E.Element: BinaryFloatingPoint {
    let what = comment().isEmpty ? "" : comment() + ": "
    guard got.count == expected.count, !expected.isEmpty else {
        Issue.record("\(what)got \(got.count) values, expected \(expected.count)\(expected.isEmpty ? " (nothing to compare)" : "")",
                     sourceLocation: sourceLocation)
        return
    }
    var worst = 0.0, at = 0
    for (i, (a, b)) in zip(got, expected).enumerated() {
        let e = abs(Double(a) - Double(b)) / max(floor, abs(Double(b)))
        if !(e <= worst) { worst = e.isNaN ? .infinity : e; at = i }
    }
    if !(worst <= tolerance) {
        let a = Double(Array(got)[at]), b = Double(Array(expected)[at])
        Issue.record("\(what)element \(at) of \(got.count): \(a) vs \(b) (relative error \(worst) > \(tolerance))",
                     sourceLocation: sourceLocation)
    }
}

/// max |a − b| / max(max |b|, floor): an error relative to the size of the whole reference;
/// infinity when the counts differ or `b` is empty.
public func relError(_ a: [Double], _ b: [Double], floor: Double = 1e-6) -> Double {
    guard a.count == b.count, !b.isEmpty else { return .infinity }
    var d = 0.0, m = floor
    for i in a.indices {
        let e = abs(a[i] - b[i])
        if !(e <= d) { d = e.isNaN ? .infinity : e }
        m = max(m, abs(b[i]))
    }
    return d / m
}
public func relError(_ a: Tensor, _ b: Array64) -> Double { relError(a.data.map(Double.init), b.v) }
