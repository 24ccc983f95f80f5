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

    func decode(_ text: String, binary: [UInt8]? = nil) throws -> InferRequest {
        try InferRequest.decode(JSONParser.parse(Array(text.utf8)), binary: binary?[...], inputShape: [3, 2, 2],
                                numClasses: 5, maxImages: 10)
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
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13]}]}"#, "inputs[0].data", "has 13 values"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[[[[0,0,0],[0,0,0]],[[0,0,0],[0,0,0]]]]}]}"#, "inputs[0].data", "data is nested as [1,2,2,3] but shape is [1,3,2,2]"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[[[[0,0],[0,0]],[[0,0],[0,0]],[[0,0],[0]]]]}]}"#, "inputs[0].data", "data[0][2][1] has 1 elements"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[[[[0,0],[0,0]],[[0,0],[0,0]],[[0,0],5]]]}]}"#, "inputs[0].data", "data[0][2][1] is not an array"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,[11]]}]}"#, "inputs[0].data", "is an array"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11]}],"outputs":[{"name":"potato"}]}"#, "outputs[0].name", "unknown output 'potato'"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11]}],"outputs":[{"name":"logits","parameters":{"classification":6}}]}"#, "outputs[0].parameters.classification", "the model has 5"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11]}],"outputs":[{"name":"class","parameters":{"classification":2}}]}"#, "outputs[0].parameters.classification", "logits\" only"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11]}],"outputs":[{"name":"class","parameters":{"binary_data":1}}]}"#, "outputs[0].parameters.binary_data", "true or false"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","parameters":{"binary_data_size":12}}]}"#, "inputs[0].parameters.binary_data_size", "no Inference-Header-Content-Length"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#, "inputs[0].parameters.binary_data_size", "needs 48"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,NaN,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "NaN at index 3"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,3,1e300,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not a finite float32"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[1,2,3,256,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "outside UINT8"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[1,2,3,0.5,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not an integer"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","data":[1,2,"3",4,5,6,7,8,9,10,11,12]}]}"#, "inputs[0].data", "not a number"),
          ])
    func badRequests(text: String, field: String?, message: String) {
        checkFailure(text, binary: nil, field: field, message: message)
    }

    @Test("binary tensor data: sizes checked against the shape before a byte is read",
          arguments: [
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","parameters":{"binary_data_size":12}}]}"#, 11, "inputs[0].parameters.binary_data_size", "only 11 bytes follow"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","parameters":{"binary_data_size":12}}]}"#, 13, "Inference-Header-Content-Length", "1 bytes after the JSON header are not claimed"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11]}]}"#, 4, "Inference-Header-Content-Length", "no input has parameters.binary_data_size"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","data":[0,1,2,3,4,5,6,7,8,9,10,11],"parameters":{"binary_data_size":12}}]}"#, 12, "inputs[0].data", "cannot also have"),
            (#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","parameters":{"binary_data_size":-1}}]}"#, 0, "inputs[0].parameters.binary_data_size", "byte count"),
          ])
    func badBinary(text: String, bytes: Int, field: String, message: String) {
        checkFailure(text, binary: [UInt8](repeating: 7, count: bytes), field: field, message: message)
    }

    @Test("binary tensor data decodes UINT8 and little-endian FP32; outputs default and selected")
    func binaryDecodes() throws {
        let u = try decode(#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"UINT8","parameters":{"binary_data_size":12}}],"parameters":{"binary_data_output":true}}"#,
                           binary: (0..<12).map { UInt8($0 * 20) })
        #expect(u.pixels == (0..<12).map { Float($0 * 20) / 255 })
        #expect(u.outputs == [RequestedOutput(name: .logits, binary: true, classification: nil),
                              RequestedOutput(name: .class, binary: true, classification: nil)])
        let values: [Float] = (0..<12).map { Float($0) / 11 }
        var bytes: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        let f = try decode(#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":48}}],"outputs":[{"name":"logits","parameters":{"classification":2,"binary_data":false}}]}"#,
                           binary: bytes)
        #expect(f.pixels == values)
        #expect(f.outputs == [RequestedOutput(name: .logits, binary: false, classification: 2)])
        var nan = bytes
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { for i in 0..<4 { nan[20 + i] = $0[i] } }
        checkFailure(#"{"inputs":[{"name":"input","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":48}}]}"#,
                     binary: nan, field: "inputs[0].data", message: "at index 5 of the binary data")
    }

    @Test("classification strings: value:index:label, highest first, lower index on ties")
    func classification() {
        let logits: [Float] = [0.5, 2, -1, 2, 0.25,   -3, -2, -1, 0, 1]
        let top = InferResponse.topClasses(logits, count: 2, numClasses: 5, top: 3, classNames: ["a", "b", "c", "d", "e"])
        #expect(top == ["2.0:1:b", "2.0:3:d", "0.5:0:a", "1.0:4:e", "0.0:3:d", "-1.0:2:c"])
        #expect(InferResponse.topClasses(logits, count: 1, numClasses: 5, top: 1, classNames: nil) == ["2.0:1"])
        #expect(InferResponse.argmax(logits, count: 2, numClasses: 5) == [1, 4])
    }

    func checkFailure(_ text: String, binary: [UInt8]?, field: String?, message: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try decode(text, binary: binary)
            Issue.record("accepted \(text)", sourceLocation: sourceLocation)
        } catch let f as HTTPFailure {
            #expect(f.status == 400, sourceLocation: sourceLocation)
            #expect(f.field == field, "\(f)", sourceLocation: sourceLocation)
            #expect(f.message.contains(message), "\(f.message)", sourceLocation: sourceLocation)
        } catch { Issue.record("unexpected \(error)", sourceLocation: sourceLocation) }
    }

    @Test("model names: plain stems only",
          arguments: [("resnet14", true), ("w-resnet_50.v2", true), ("a/b", false), ("..", false),
                      ("a..b", false), (".tmp-x", false), ("", false), ("sp ace", false), ("x%2F", false)])
    func names(name: String, ok: Bool) {
        #expect((ModelRepository.nameProblem(name) == nil) == ok)
    }

    @Test("routes: raw and percent-encoded separators in a name are a bad name, not a 404")
    func routes() {
        #expect(Route.parse("/v2/models/m/infer") == .model("m", version: nil, .infer))
        #expect(Route.parse("/v2/models/m") == .model("m", version: nil, .metadata))
        #expect(Route.parse("/v2/models/m/") == .model("m", version: nil, .metadata))
        #expect(Route.parse("/v2/models/m/config") == .model("m", version: nil, .config))
        #expect(Route.parse("/v2/models/m/versions/3") == .model("m", version: "3", .metadata))
        #expect(Route.parse("/v2/models/m/versions/3/infer") == .model("m", version: "3", .infer))
        #expect(Route.parse("/v2/models/m/versions/3/ready")?.template == "/v2/models/{name}/versions/{version}/ready")
        #expect(Route.parse("/v2/models/m/versions/3/config") == .model("m", version: "3", .config))
        #expect(Route.parse("/v2/models/../versions/1/infer") == .badName("..", template: "/v2/models/{name}/versions/{version}/infer"))
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
