import ArgumentParser
import MLResEngine
import MLResCLI
import MLResModel

/// The architecture named by the `--blocks`, `--widths`, `--input-shape` and `--classes` flags,
/// validated (an error names the flag or the problem).
func architecture(blocks: String, widths: String, inputShape: String, classes: Int) throws -> Architecture {
    let arch = Architecture(blocks: try integerList(blocks, separator: "-", flag: "--blocks"),
                            widths: try integerList(widths, separator: ",", flag: "--widths"),
                            inputShape: try integerList(inputShape, separator: ",", flag: "--input-shape"),
                            numClasses: classes)
    if let e = arch.validationError() { throw ValidationError(e) }
    return arch
}

extension Precision: ExpressibleByArgument {}
