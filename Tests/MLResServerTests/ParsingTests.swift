import Foundation
import MLResModel
@testable import MLResServer
import Testing

@Suite("JSON parser and infer request checks")
struct ParsingTests {
    @Test("parses JSON values, with Python's NaN/Infinity tokens as numbers")
    func parsesValues() throws {
        let v = try JSONParser.parse(Array(#" {"a": [1, -2.5e3, true, null, "x\u00e9\n\ud83d\ude00"], "b": {}, "n": [NaN, -Infinity, Infinity]} "#.utf8))
        guard case .object(let o) = v, case .array(let a)? = o["a"], case .array(let n)? = o["n"] else {
            Issue.record("not parsed as expected: \(v)"); return
        }
        #expect(a[0] == .int(1))
        #expect(a[1] == .double(-2500))
        #expect(a[2] == .bool(true))
        #expect(a[3] == .null)
        #expect(a[4] == .string("xé\n😀"))
        #expect(o["b"] == .object([:]))
        if case .double(let d) = n[0] { #expect(d.isNaN) } else { Issue.record("NaN not a double") }
        #expect(n[1] == .double(-.infinity))
        #expect(n[2] == .double(.infinity))
    }

    @Test("numbers: integers exactly, long integers and fractions through strtod")
    func numbers() throws {
        let v = try JSONParser.parse(Array("[0, -0, 255, 123456789012345678, 12345678901234567890, 0.5, -1.25e-3, 1E2]".utf8))
        #expect(v == .array([.int(0), .int(0), .int(255), .int(123456789012345678), .double(12345678901234567890),
                             .double(0.5), .double(-0.00125), .double(100)]))
        for bad in ["-", "-a", "1e", "1e+", "+1", ".5"] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { try JSONParser.parse(Array(bad.utf8)) }
        }
    }

    @Test("rejects malformed JSON naming the byte offset",
          arguments: [("{\"a\":1,}", 7), ("[1 2]", 3), ("{\"a\" 1}", 5), ("", 0), ("[01]", 1),
                      ("\"abc", 4), ("[1]x", 3), ("{\"a\":tru}", 5), ("[1.]", 3)])
    func rejectsMalformed(text: String, offset: Int) {
        do {
            _ = try JSONParser.parse(Array(text.utf8))
            Issue.record("accepted \(text)")
        } catch let e as JSONSyntaxError {
            #expect(e.offset == offset, "\(text): \(e)")
            #expect(e.description.hasPrefix("malformed JSON at byte"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test("deep nesting is refused, not a stack overflow")
    func deepNesting() {
        let text = String(repeating: "[", count: 100_000)
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    func decode(_ text: String) throws -> InferRequest {
        try InferRequest.decode(JSONParser.parse(Array(text.utf8)), inputShape: [3, 2, 2], maxImages: 10)
    }

    @Test("decodes FP32 and UINT8, flat or nested data")
    func decodes() throws {
        let flat = (0..<12).map { String(Double($0) / 12) }
        let r = try decode(inferBody(shape: [1, 3, 2, 2], data: flat, id: "req-1"))
        #expect(r.count == 1 && r.pixels.count == 12 && r.id == "req-1")
        #expect(abs(r.pixels[6] - 0.5) < 1e-7)
        let nested = "[[[[0,255],[51,102]],[[0,0],[0,0]],[[1,2],[3,4]]]]"
        let u = try decode(#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":\#(nested)}]}"#)
        #expect(u.pixels[1] == 1 && abs(u.pixels[2] - 0.2) < 1e-7 && u.datatype == "UINT8")
    }

    @Test("each bad request names its field",
          arguments: [
            ("[1]", nil as String?, "JSON object"),
            (#"{"x":1}"#, "inputs", "missing"),
            (#"{"inputs":{}}"#, "inputs", "array"),
            (#"{"inputs":[]}"#, "inputs", "exactly one input"),
            (#"{"inputs":[{"name":"img","shape":[1,3,2,2],"datatype":"FP32","data":[]}]}"#, "inputs[0].name", "unknown input"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2],"datatype":"FP32","data":[]}]}"#, "inputs[0].shape", "3 dimensions"),
            (#"{"inputs":[{"name":"input","shape":[1,3,4,4],"datatype":"FP32","data":[]}]}"#, "inputs[0].shape", "does not match"),
            (#"{"inputs":[{"name":"input","shape":[0,3,2,2],"datatype":"FP32","data":[]}]}"#, "inputs[0].shape", "at least 1"),
            (#"{"inputs":[{"name":"input","shape":[11,3,2,2],"datatype":"FP32","data":[]}]}"#, "inputs[0].shape", "queue limit"),
            (#"{"inputs":[{"name":"input","shape":[1.5,3,2,2],"datatype":"FP32","data":[]}]}"#, "inputs[0].shape", "integers"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP16","data":[]}]}"#, "inputs[0].datatype", "unsupported datatype"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2]}]}"#, "inputs[0].data", "has 2 values"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13]}]}"#, "inputs[0].data", "more than"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,NaN,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "NaN at index 3"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,1e300,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not a finite float32"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[1,2,3,256,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "outside UINT8"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[1,2,3,0.5,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not an integer"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,"3",4,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not a number"),
          ])
    func badRequests(text: String, field: String?, message: String) {
        do {
            _ = try decode(text)
            Issue.record("accepted \(text)")
        } catch let f as HTTPFailure {
            #expect(f.status == 400)
            #expect(f.field == field, "\(f)")
            #expect(f.message.contains(message), "\(f.message)")
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test("model names: plain stems only",
          arguments: [("resnet14", true), ("w-resnet_50.v2", true), ("a/b", false), ("..", false),
                      ("a..b", false), (".tmp-x", false), ("", false), ("sp ace", false), ("x%2F", false)])
    func names(name: String, ok: Bool) {
        #expect((ModelRepository.nameProblem(name) == nil) == ok)
    }

    @Test("routes: raw and percent-encoded separators in a name are a bad name, not a 404")
    func routes() {
        #expect(Route.parse("/v2/models/m/infer") == .infer("m"))
        #expect(Route.parse("/v2/models/m") == .modelMetadata("m"))
        #expect(Route.parse("/v2/models/m/") == .modelMetadata("m"))
        #expect(Route.parse("/v2/repository/models/m/load") == .load("m"))
        #expect(Route.parse("/v2/models/a/b/infer") == .badName("a/b", template: "/v2/models/{name}/infer"))
        #expect(Route.parse("/v2/models/a%2Fb/infer") == .badName("a/b", template: "/v2/models/{name}/infer"))
        #expect(Route.parse("/v2/models/../infer") == .badName("..", template: "/v2/models/{name}/infer"))
        #expect(Route.parse("/v2/models/%2E%2E/ready") == .badName("..", template: "/v2/models/{name}/ready"))
        #expect(Route.parse("/v2/repository/models/../../etc/passwd/load") != .load("passwd"))
        #expect(Route.parse("/nothing") == .unknown)
        #expect(Route.parse("/v2/models/%zz") == nil)
    }
}
