import ArgumentParser
import MLResEngine
import MLResModel

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

/// The architecture named by the `--blocks`, `--widths`, `--input-shape` and `--classes` flags,
/// validated (an error names the flag or the problem).
func architecture(blocks: String, widths: String, inputShape: String, classes: Int) throws -> Architecture {
    let arch = Architecture(blocks: try positiveIntegers(blocks, separator: "-", flag: "--blocks"),
                            widths: try positiveIntegers(widths, separator: ",", flag: "--widths"),
                            inputShape: try positiveIntegers(inputShape, separator: ",", flag: "--input-shape"),
                            numClasses: classes)
    if let e = arch.validationError() { throw ValidationError(e) }
    return arch
}

extension Precision: ExpressibleByArgument {}
