import Foundation
import MLResModel

/// A JSON syntax error with the byte offset where it was found.
public struct JSONSyntaxError: Error, CustomStringConvertible, Sendable {
    public var offset: Int
    public var message: String
    public var description: String { "malformed JSON at byte \(offset): \(message)" }
}

/// A small strict JSON parser into ``JSONValue``.
///
/// Strict RFC 8259 except that the bare tokens `NaN`, `Infinity` and `-Infinity` (which Python's
/// `json.dumps` writes) are read as numbers, so that a NaN in an input tensor is reported as a
/// NaN and not as unreadable JSON. Integers that fit in `Int` become `.int`, other numbers
/// `.double`. Nesting is limited to ``maxDepth`` so that hostile input cannot exhaust the stack.
public struct JSONParser {
    public static let maxDepth = 64
    private let bytes: [UInt8]   // input followed by one 0 byte (a sentinel for strtod)
    private let end: Int
    private var i = 0

    /// Parses one complete JSON document (surrounding whitespace allowed).
    public static func parse(_ data: some Collection<UInt8>) throws -> JSONValue {
        var p = JSONParser(data)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i != p.end { throw p.error("unexpected text after the JSON value") }
        return v
    }

    private init(_ data: some Collection<UInt8>) {
        var b = [UInt8](); b.reserveCapacity(data.count + 1)
        b.append(contentsOf: data); b.append(0)
        bytes = b; end = b.count - 1
    }

    private func error(_ message: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: i, message: message)
    }

    private mutating func skipSpace() {
        while i < end, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func literal(_ word: String, _ v: JSONValue) throws -> JSONValue {
        let w = Array(word.utf8)
        guard i + w.count <= end, Array(bytes[i ..< i + w.count]) == w else {
            throw error("unexpected character '\(printable(bytes[i]))'")
        }
        i += w.count
        return v
    }

    private func printable(_ b: UInt8) -> String {
        b >= 0x20 && b < 0x7F ? String(UnicodeScalar(b)) : String(format: "\\x%02X", b)
    }

    private mutating func value(depth: Int) throws -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw error("nesting deeper than \(JSONParser.maxDepth)") }
        guard i < end else { throw error("unexpected end of input") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "N"): return try literal("NaN", .double(.nan))
        case UInt8(ascii: "I"): return try literal("Infinity", .double(.infinity))
        case UInt8(ascii: "-") where i + 1 < end && bytes[i + 1] == UInt8(ascii: "I"):
            i += 1
            return try literal("Infinity", .double(-.infinity))
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character '\(printable(bytes[i]))'")
        }
    }

    private mutating func object(depth: Int) throws -> JSONValue {
        i += 1
        var o: [String: JSONValue] = [:]
        skipSpace()
        if i < end && bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
        while true {
            skipSpace()
            guard i < end, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a quoted object key") }
            let key = try string()
            skipSpace()
            guard i < end, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after object key") }
            i += 1
            skipSpace()
            o[key] = try value(depth: depth + 1)
            skipSpace()
            guard i < end else { throw error("unexpected end of input inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            throw error("expected ',' or '}' in an object")
        }
    }

    private mutating func array(depth: Int) throws -> JSONValue {
        i += 1
        var a: [JSONValue] = []
        skipSpace()
        if i < end && bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
        while true {
            skipSpace()
            a.append(try value(depth: depth + 1))
            skipSpace()
            guard i < end else { throw error("unexpected end of input inside an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            throw error("expected ',' or ']' in an array")
        }
    }

    /// Skips ASCII digits; returns how many.
    private mutating func skipDigits() -> Int {
        let s = i
        while i < end, bytes[i] &- 0x30 <= 9 { i += 1 }
        return i - s
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        // Integer part, accumulated on the way (the common case: pixel values).
        var value = 0
        let intStart = i
        while i < end {
            let d = bytes[i] &- 0x30
            if d > 9 { break }
            if i - intStart < 18 { value = value &* 10 &+ Int(d) }
            i += 1
        }
        let intDigits = i - intStart
        guard intDigits > 0 else { throw error("a number needs digits") }
        if intDigits > 1 && bytes[intStart] == UInt8(ascii: "0") {
            throw JSONSyntaxError(offset: start, message: "a number cannot have a leading zero")
        }
        var isInteger = true
        if i < end, bytes[i] == UInt8(ascii: ".") {
            i += 1; isInteger = false
            guard skipDigits() > 0 else { throw error("expected digits after '.'") }
        }
        if i < end, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1; isInteger = false
            if i < end, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard skipDigits() > 0 else { throw error("expected digits in the exponent") }
        }
        if isInteger && intDigits <= 18 { return .int(negative ? -value : value) }
        // 19 digits may still fit in Int (|Int.min| = 9223372036854775808): exact, not via Double.
        if isInteger && intDigits == 19, let v = Int(String(decoding: bytes[start ..< i], as: UTF8.self)) { return .int(v) }
        // The token is a valid JSON number; strtod stops at its end (the buffer is 0-terminated).
        let d = bytes.withUnsafeBufferPointer { buf -> Double in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { strtod($0 + start, nil) }
        }
        return .double(d)
    }

    private mutating func string() throws -> String {
        i += 1
        var out = [UInt8]()
        while true {
            guard i < end else { throw error("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw error("control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < end else { throw error("unterminated escape") }
            let e = bytes[i]; i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800 ..< 0xDC00).contains(scalar) {
                    guard i + 1 < end, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00 ..< 0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00 ..< 0xE000).contains(scalar) {
                    throw error("unpaired surrogate in \\u escape")
                }
                out.append(contentsOf: Array(String(Character(UnicodeScalar(scalar)!)).utf8))
            default: throw error("invalid escape '\\\(printable(e))'")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw error("string is not valid UTF-8")
        }
        return s
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= end else { throw error("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("bad hex digit in \\u escape")
            }
            v = v * 16 + d; i += 1
        }
        return v
    }
}

/// Appends JSON text for values the server writes by hand (the hot path of inference).
enum JSONWriter {
    /// `"text"` with JSON escapes.
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
