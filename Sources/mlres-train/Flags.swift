import ArgumentParser

/// Parses a flag value such as "2-2-2" or "16,32,64" into positive integers, or fails with a
/// message naming the flag.
func positiveIntegers(_ text: String, separator: Character, flag: String) throws -> [Int] {
    let parts = text.split(separator: separator, omittingEmptySubsequences: false)
    let values = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 > 0 }) else {
        throw ValidationError("\(flag): expected positive integers separated by '\(separator)', got '\(text)'")
    }
    return values
}
