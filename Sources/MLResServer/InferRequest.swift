import MLResModel

/// A request problem that becomes an HTTP error with a JSON body naming what is wrong.
public struct HTTPFailure: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var message: String
    /// The request field at fault, e.g. "inputs[0].shape", when there is one.
    public var field: String?
    public init(_ status: Int, _ message: String, field: String? = nil) {
        self.status = status; self.message = message; self.field = field
    }
    public var description: String { field.map { "\($0): \(message)" } ?? message }

    /// `{"error": ..., "field": ...}`.
    var json: String {
        var s = "{\"error\":" + JSONWriter.string(message)
        if let f = field { s += ",\"field\":" + JSONWriter.string(f) }
        return s + "}"
    }
}

/// A checked inference request in the Open Inference Protocol (KServe v2) shape:
/// `{"id"?: str, "inputs": [{"name": "input", "shape": [N,C,H,W], "datatype": "FP32"|"UINT8",
/// "data": [...]}]}`. `data` is row-major and may be flat or nested.
///
/// FP32 values are pixels scaled to [0, 1] and must be finite; UINT8 values are integers
/// 0...255 and are divided by 255. The model's `input_mean`/`input_std` are applied later, by the
/// batcher, with the model version that runs the batch.
public struct InferRequest: Sendable {
    public var id: String?
    /// N×C×H×W values scaled to [0, 1].
    public var pixels: [Float]
    public var count: Int
    public var datatype: String

    /// Checks `body` against a model with input `[C, H, W]`; `maxImages` bounds N.
    public static func decode(_ body: JSONValue, inputShape: [Int], maxImages: Int) throws -> InferRequest {
        guard case .object(let top) = body else {
            throw HTTPFailure(400, "the request body must be a JSON object")
        }
        var id: String?
        if let v = top["id"] {
            guard case .string(let s) = v else { throw HTTPFailure(400, "must be a string", field: "id") }
            id = s
        }
        guard let inputsValue = top["inputs"] else {
            throw HTTPFailure(400, "missing: the request needs \"inputs\"", field: "inputs")
        }
        guard case .array(let inputs) = inputsValue else {
            throw HTTPFailure(400, "must be an array of input tensors", field: "inputs")
        }
        guard inputs.count == 1 else {
            throw HTTPFailure(400, "the model has exactly one input (\"input\"), the request has \(inputs.count)",
                              field: "inputs")
        }
        let f = "inputs[0]"
        guard case .object(let t) = inputs[0] else { throw HTTPFailure(400, "must be an object", field: f) }

        guard case .string(let name)? = t["name"] else {
            throw HTTPFailure(400, "missing or not a string", field: "\(f).name")
        }
        guard name == "input" else {
            throw HTTPFailure(400, "unknown input '\(name)'; the model's input is named \"input\"", field: "\(f).name")
        }

        guard case .array(let shapeValues)? = t["shape"] else {
            throw HTTPFailure(400, "missing or not an array of integers", field: "\(f).shape")
        }
        var shape: [Int] = []
        for v in shapeValues {
            guard case .int(let d) = v else {
                throw HTTPFailure(400, "must hold integers only", field: "\(f).shape")
            }
            shape.append(d)
        }
        let expected = "[N,\(inputShape.map(String.init).joined(separator: ","))]"
        guard shape.count == 4 else {
            throw HTTPFailure(400, "shape \(Tensor.describe(shape)) has \(shape.count) dimensions, the model takes \(expected)",
                              field: "\(f).shape")
        }
        guard Array(shape[1...]) == inputShape else {
            throw HTTPFailure(400, "shape \(Tensor.describe(shape)) does not match the model's input \(expected)",
                              field: "\(f).shape")
        }
        let n = shape[0]
        guard n >= 1 else { throw HTTPFailure(400, "batch size N must be at least 1 (got \(n))", field: "\(f).shape") }
        guard n <= maxImages else {
            throw HTTPFailure(400, "batch of \(n) images exceeds the server's queue limit (\(maxImages) images)",
                              field: "\(f).shape")
        }

        guard case .string(let datatype)? = t["datatype"] else {
            throw HTTPFailure(400, "missing or not a string (\"FP32\" or \"UINT8\")", field: "\(f).datatype")
        }
        guard datatype == "FP32" || datatype == "UINT8" else {
            throw HTTPFailure(400, "unsupported datatype '\(datatype)'; use \"FP32\" or \"UINT8\"", field: "\(f).datatype")
        }

        guard let dataValue = t["data"] else { throw HTTPFailure(400, "missing", field: "\(f).data") }
        let expectedCount = n * inputShape.reduce(1, *)
        var pixels: [Float] = []
        pixels.reserveCapacity(expectedCount)
        let isUInt8 = datatype == "UINT8"
        // Flattens nested arrays in row-major order, checking each value.
        func append(_ v: JSONValue, depth: Int) throws {
            switch v {
            case .array(let a):
                guard depth < 5 else { throw HTTPFailure(400, "nested deeper than the shape", field: "\(f).data") }
                for e in a { try append(e, depth: depth + 1) }
            case .int(let i):
                if isUInt8 {
                    guard (0...255).contains(i) else {
                        throw HTTPFailure(400, "value \(i) at index \(pixels.count) is outside UINT8 0...255",
                                          field: "\(f).data")
                    }
                    pixels.append(Float(i) / 255)
                } else {
                    pixels.append(Float(i))
                }
            case .double(let d):
                if isUInt8 {
                    throw HTTPFailure(400, "value \(d) at index \(pixels.count) is not an integer (datatype UINT8)",
                                      field: "\(f).data")
                }
                if d.isNaN {
                    throw HTTPFailure(400, "NaN at index \(pixels.count); FP32 input must be finite", field: "\(f).data")
                }
                let x = Float(d)
                guard x.isFinite else {
                    throw HTTPFailure(400, "value \(d) at index \(pixels.count) is not a finite float32",
                                      field: "\(f).data")
                }
                pixels.append(x)
            default:
                throw HTTPFailure(400, "element at index \(pixels.count) is not a number", field: "\(f).data")
            }
            if pixels.count > expectedCount {
                throw HTTPFailure(400, "has more than the \(expectedCount) values shape \(Tensor.describe(shape)) needs",
                                  field: "\(f).data")
            }
        }
        guard case .array = dataValue else {
            throw HTTPFailure(400, "must be an array of numbers", field: "\(f).data")
        }
        try append(dataValue, depth: 0)
        guard pixels.count == expectedCount else {
            throw HTTPFailure(400, "has \(pixels.count) values, shape \(Tensor.describe(shape)) needs \(expectedCount)",
                              field: "\(f).data")
        }
        return InferRequest(id: id, pixels: pixels, count: n, datatype: datatype)
    }
}
