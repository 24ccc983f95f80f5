import Foundation
import MLResModel
@testable import MLResServer
import PropertyBased
import Testing

// Property tests of the server's JSON parser (Sources/MLResServer/JSONParser.swift) with
// x-sheep/swift-property-based: random documents written by an independent writer below
// round-trip; nesting is never deeper than JSONParser.maxDepth; random and mutated bytes
// give a value or a JSONSyntaxError, never a crash or another error.

/// A random JSON value: containers up to `depth` levels, strings of arbitrary Unicode scalars
/// (quotes, backslashes, control characters, astral planes), any Int, finite doubles.
private func randomValue(_ rng: inout any SeededRandomNumberGenerator, depth: Int) -> JSONValue {
    let kinds = depth > 0 ? 8 : 6
    switch Int.random(in: 0 ..< kinds, using: &rng) {
    case 0: return .null
    case 1: return .bool(Bool.random(using: &rng))
    case 2:
        // Small ints, and ints at the edges of Int (19 digits).
        switch Int.random(in: 0 ..< 3, using: &rng) {
        case 0: return .int(Int.random(in: -1000 ... 1000, using: &rng))
        case 1: return .int(Int.random(in: Int.min ... Int.max, using: &rng))
        default: return .int(Bool.random(using: &rng) ? Int.max - Int.random(in: 0 ... 9, using: &rng)
                                                      : Int.min + Int.random(in: 0 ... 9, using: &rng))
        }
    case 3:
        var d: Double
        repeat { d = Double(bitPattern: UInt64.random(in: 0 ... .max, using: &rng)) } while !d.isFinite
        // Keep the double a double: an integral value written as "3.0" is read as .double.
        return .double(Bool.random(using: &rng) ? d : Double(Int.random(in: -99 ... 99, using: &rng)) / 8)
    case 4, 5: return .string(randomString(&rng))
    case 6: return .array((0 ..< Int.random(in: 0 ... 4, using: &rng)).map { _ in randomValue(&rng, depth: depth - 1) })
    default:
        var o: [String: JSONValue] = [:]
        for _ in 0 ..< Int.random(in: 0 ... 4, using: &rng) { o[randomString(&rng)] = randomValue(&rng, depth: depth - 1) }
        return .object(o)
    }
}

private func randomString(_ rng: inout any SeededRandomNumberGenerator) -> String {
    var s = String.UnicodeScalarView()
    for _ in 0 ..< Int.random(in: 0 ... 8, using: &rng) {
        let pools: [ClosedRange<UInt32>] = [0x00 ... 0x1F, 0x20 ... 0x7E, 0x80 ... 0x7FF, 0x800 ... 0xD7FF,
                                            0xE000 ... 0xFFFD, 0x10000 ... 0x10FFFF]
        let pool = pools[Int.random(in: 0 ..< pools.count, using: &rng)]
        s.append(Unicode.Scalar(UInt32.random(in: pool, using: &rng))!)
    }
    s.append(contentsOf: Bool.random(using: &rng) ? "\"\\/" .unicodeScalars : "".unicodeScalars)
    return String(s)
}

/// JSON text of `v` (RFC 8259), written independently of the server's writer. `escapeAll`
/// writes every non-ASCII scalar as \u escapes (astral ones as a surrogate pair); `space` puts
/// whitespace around every token.
private func write(_ v: JSONValue, escapeAll: Bool, space: String) -> String {
    func str(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "/": out += escapeAll ? "\\/" : "/"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || (escapeAll && u.value > 0x7E) {
                    for unit in String(u).utf16 { out += String(format: "\\u%04X", unit) }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
    switch v {
    case .null: return "null"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .double(let d): return "\(d)"   // shortest round-trip form, e.g. "1e-05", "0.125"
    case .string(let s): return str(s)
    case .array(let a): return "[" + space + a.map { write($0, escapeAll: escapeAll, space: space) }
        .joined(separator: space + "," + space) + space + "]"
    case .object(let o): return "{" + space + o.map { str($0.key) + space + ":" + space + write($0.value, escapeAll: escapeAll, space: space) }
        .joined(separator: space + "," + space) + space + "}"
    }
}

/// Levels of containers in `v` (a scalar is 0, `[]` is 1).
private func nesting(_ v: JSONValue) -> Int {
    switch v {
    case .array(let a): return 1 + (a.map(nesting).max() ?? 0)
    case .object(let o): return 1 + (o.values.map(nesting).max() ?? 0)
    default: return 0
    }
}

/// Parses `bytes`; any error other than JSONSyntaxError (or an offset outside the input) is an issue.
private func parseOrSyntaxError(_ bytes: [UInt8]) -> Result<JSONValue, JSONSyntaxError>? {
    do {
        return .success(try JSONParser.parse(bytes))
    } catch let e as JSONSyntaxError {
        #expect(e.offset >= 0 && e.offset <= bytes.count, "offset \(e.offset) outside \(bytes.count) bytes")
        return .failure(e)
    } catch {
        Issue.record("not a JSONSyntaxError: \(error)")
        return nil
    }
}

private let documents = Generator<JSONValue, Shrink.None<JSONValue>> { rng in randomValue(&rng, depth: 5) }

@Suite("JSON parser properties")
struct JSONParserPropertyTests {
    @Test("round trip: parse(write(v)) == v, with or without escapes and whitespace")
    func roundTrip() async {
        await propertyCheck(count: 400, input: documents, Gen.bool, Gen.element(of: ["", " ", "\n\t ", "\r\n"])) {
            v, escapeAll, space in
            let text = write(v, escapeAll: escapeAll, space: space ?? "")
            let got = try JSONParser.parse(Array(text.utf8))
            #expect(got == v, "\(text)")
            // Foundation's parser agrees on every document we write (except that it has no
            // .int/.double split): both accept it.
            #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil,
                    "Foundation rejects \(text)")
        }
    }

    @Test("nesting: n containers parse iff n <= maxDepth; the error names the limit; the parsed value is never deeper")
    func nestingLimit() async {
        let limit = JSONParser.maxDepth
        await propertyCheck(count: 200, input: Gen.int(in: 1 ... 3 * limit), Gen.bool.array(of: 3 * limit),
                            Gen.bool) { n, objects, scalarInside in
            var open = "", close = ""
            for k in 0 ..< n {
                open += objects[k] ? "{\"k\":" : "["
                close = (objects[k] ? "}" : "]") + close
            }
            // The innermost container holds a scalar, or (if it is an array) nothing.
            let inner = scalarInside || objects[n - 1] ? "0" : ""
            // A scalar inside n containers sits at depth n, which must be < maxDepth.
            let fits = inner.isEmpty ? n <= limit : n < limit
            switch parseOrSyntaxError(Array((open + inner + close).utf8)) {
            case .success(let v)?:
                #expect(fits, "\(n) levels accepted")
                #expect(nesting(v) == n && nesting(v) <= limit)
            case .failure(let e)?:
                #expect(!fits, "\(n) levels refused: \(e)")
                #expect(e.message.contains("nesting deeper than \(limit)"), "\(e)")
            case nil: break
            }
        }
        // Hostile depth: a megabyte of '[' is refused at the limit, not by exhausting the stack.
        let e = parseOrSyntaxError([UInt8](repeating: UInt8(ascii: "["), count: 1 << 20))
        if case .failure(let err)? = e { #expect(err.offset == limit) } else { Issue.record("accepted: \(String(describing: e))") }
    }

    @Test("random bytes: a value or a JSONSyntaxError, never a crash; accepted input re-parses to itself")
    func randomBytes() async {
        // Bytes biased toward JSON's own alphabet so that the parser gets past the first token.
        let alphabet = Array("{}[]\":,.-+eE0123456789tfnulrsaINy\\/u \n\u{00}\u{7F}".utf8)
            + [0xC3, 0xA9, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x98, 0x80, 0xFF]
        let bytes = Generator<[UInt8], Shrink.None<[UInt8]>> { rng in
            (0 ..< Int.random(in: 0 ... 48, using: &rng)).map { _ in
                Int.random(in: 0 ..< 4, using: &rng) == 0 ? UInt8.random(in: 0 ... 255, using: &rng)
                    : alphabet.randomElement(using: &rng)!
            }
        }
        await propertyCheck(count: 3000, input: bytes) { bytes in
            if case .success(let v)? = parseOrSyntaxError(bytes) {
                let again = write(v, escapeAll: false, space: "")
                if case .success(let w)? = parseOrSyntaxError(Array(again.utf8)) {
                    #expect(w == v || "\(w)" == "\(v)", "re-parse of \(again)")   // NaN != NaN
                }
            }
        }
    }

    @Test("mutated documents: flipped, inserted and deleted bytes give a value or a JSONSyntaxError")
    func mutatedDocuments() async {
        await propertyCheck(count: 1000, input: documents, Gen.bool, Gen.int(in: 0 ... Int.max).array(of: 1 ... 6)) {
            v, escapeAll, edits in
            var bytes = Array(write(v, escapeAll: escapeAll, space: "").utf8)
            for e in edits where !bytes.isEmpty {
                let at = e % bytes.count
                switch (e / bytes.count) % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: e >> 8)
                case 1: bytes.insert(UInt8(truncatingIfNeeded: e >> 16), at: at)
                default: bytes.remove(at: at)
                }
            }
            _ = parseOrSyntaxError(bytes)
        }
    }
}
