import Foundation

/// The two JSON text forms mlres writes, configured once: `compact` (one line, sorted keys, what
/// checkpoints store in `/lineage` and `/training/config`) and `pretty` (indented, sorted keys,
/// what every `--json` prints; NaN and ±∞ become the strings "nan", "inf", "-inf").
public enum JSONText {
    /// One line with sorted keys, slashes unescaped.
    public static func compact<T: Encodable>(_ value: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(value), as: UTF8.self)
    }

    /// Indented with sorted keys, slashes unescaped, non-finite numbers as strings.
    public static func pretty<T: Encodable>(_ value: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf",
                                                                  negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try enc.encode(value), as: UTF8.self)
    }
}
