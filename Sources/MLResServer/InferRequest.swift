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

/// The outputs every served model has: `logits` (FP32 `[N, K]`) and `class` (INT64 `[N]`, the
/// arg-max of each row, lowest index on ties).
public enum OutputName: String, CaseIterable, Sendable {
    case logits, `class`
}

/// One entry of the request's `outputs`: which output, as JSON or binary, raw or classified.
public struct RequestedOutput: Equatable, Sendable {
    public var name: OutputName
    /// Binary tensor data extension: `parameters.binary_data` (else the request's
    /// `binary_data_output`, else false).
    public var binary: Bool
    /// Classification extension: `parameters.classification` = k, the top-k classes of each
    /// image as BYTES `[N, k]` of `"value:index[:label]"` instead of the raw tensor.
    public var classification: Int?
}

/// A checked inference request in the Open Inference Protocol (KServe v2) shape:
/// `{"id"?: str, "inputs": [{"name": "input", "shape": [N,C,H,W], "datatype": "FP32"|"UINT8",
/// "data"?: [...], "parameters"?: {"binary_data_size": bytes}}], "outputs"?: [...],
/// "parameters"?: {"binary_data_output": bool}}`.
///
/// - `data` is row-major, either flat or nested exactly as `shape` (dimension by dimension).
/// - Binary tensor data (Triton's `binary_tensor_data` extension): instead of `data`, the input
///   says `parameters.binary_data_size` and its little-endian bytes follow the JSON header in the
///   body (`Inference-Header-Content-Length`). The size must equal N·C·H·W times the element
///   size (1 for UINT8, 4 for FP32) and the bytes after the header must all be claimed.
/// - FP32 values are pixels scaled to [0, 1] and must be finite; UINT8 values (0...255) are
///   divided by 255. The model's `input_mean`/`input_std` are applied later, by the batcher.
/// - `outputs` (optional) selects and orders the outputs; a name other than `logits`/`class`
///   is an error. Without it both come back, in binary when `binary_data_output` is true.
public struct InferRequest: Sendable {
    public var id: String?
    /// N×C×H×W values scaled to [0, 1].
    public var pixels: [Float]
    public var count: Int
    public var datatype: String
    /// The outputs to return, in order.
    public var outputs: [RequestedOutput]

    /// Checks `body` against a model with input `[C, H, W]` and `numClasses` logits.
    /// - Parameters:
    ///   - binary: the bytes after the JSON header, nil when the request has no
    ///     `Inference-Header-Content-Length`.
    ///   - maxImages: bounds N.
    /// - Throws: ``HTTPFailure`` 400 naming the field.
    public static func decode(_ body: JSONValue, binary: ArraySlice<UInt8>?, inputShape: [Int],
                              numClasses: Int, maxImages: Int) throws -> InferRequest {
        guard case .object(let top) = body else {
            throw HTTPFailure(400, "the request body must be a JSON object")
        }
        var id: String?
        if let v = top["id"] {
            guard case .string(let s) = v else { throw HTTPFailure(400, "must be a string", field: "id") }
            id = s
        }
        var binaryOutput = false
        if let p = top["parameters"], p != .null {
            guard case .object(let params) = p else { throw HTTPFailure(400, "must be an object", field: "parameters") }
            if let b = params["binary_data_output"] {
                guard case .bool(let flag) = b else {
                    throw HTTPFailure(400, "must be true or false", field: "parameters.binary_data_output")
                }
                binaryOutput = flag
            }
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
        let input = try InputTensor(inputs[0], field: "inputs[0]", inputShape: inputShape, maxImages: maxImages)
        let pixels: [Float]
        if let size = input.binaryDataSize {
            guard let binary else {
                throw HTTPFailure(400, "binary_data_size is set but the request has no Inference-Header-Content-Length header saying where the JSON ends",
                                  field: "inputs[0].parameters.binary_data_size")
            }
            guard binary.count >= size else {
                throw HTTPFailure(400, "binary_data_size is \(size) bytes but only \(binary.count) bytes follow the JSON header (Inference-Header-Content-Length)",
                                  field: "inputs[0].parameters.binary_data_size")
            }
            guard binary.count == size else {
                throw HTTPFailure(400, "\(binary.count - size) bytes after the JSON header are not claimed by any input's binary_data_size",
                                  field: "Inference-Header-Content-Length")
            }
            pixels = try input.decodeBinary(binary)
        } else {
            if let binary, !binary.isEmpty {
                throw HTTPFailure(400, "\(binary.count) bytes follow the JSON header but no input has parameters.binary_data_size",
                                  field: "Inference-Header-Content-Length")
            }
            pixels = try input.decodeJSON()
        }
        let outputs = try requestedOutputs(top["outputs"], binaryDefault: binaryOutput, numClasses: numClasses)
        return InferRequest(id: id, pixels: pixels, count: input.shape[0], datatype: input.datatype, outputs: outputs)
    }

    /// The request's `outputs`, or both outputs when it has none.
    static func requestedOutputs(_ value: JSONValue?, binaryDefault: Bool, numClasses: Int) throws -> [RequestedOutput] {
        guard let value, value != .null else {
            return OutputName.allCases.map { RequestedOutput(name: $0, binary: binaryDefault, classification: nil) }
        }
        guard case .array(let items) = value, !items.isEmpty else {
            throw HTTPFailure(400, "must be a non-empty array of {\"name\": ...} (or left out for every output)", field: "outputs")
        }
        var result: [RequestedOutput] = []
        for (i, item) in items.enumerated() {
            let f = "outputs[\(i)]"
            guard case .object(let o) = item else { throw HTTPFailure(400, "must be an object", field: f) }
            guard case .string(let n)? = o["name"] else { throw HTTPFailure(400, "missing or not a string", field: "\(f).name") }
            guard let name = OutputName(rawValue: n) else {
                throw HTTPFailure(400, "unknown output '\(n)'; the model's outputs are \"logits\" and \"class\"", field: "\(f).name")
            }
            if result.contains(where: { $0.name == name }) {
                throw HTTPFailure(400, "output '\(n)' is requested twice", field: "\(f).name")
            }
            var out = RequestedOutput(name: name, binary: binaryDefault, classification: nil)
            if let p = o["parameters"], p != .null {
                guard case .object(let params) = p else { throw HTTPFailure(400, "must be an object", field: "\(f).parameters") }
                if let b = params["binary_data"] {
                    guard case .bool(let flag) = b else {
                        throw HTTPFailure(400, "must be true or false", field: "\(f).parameters.binary_data")
                    }
                    out.binary = flag
                }
                if let c = params["classification"], c != .null {
                    guard case .int(let k) = c, k >= 1 else {
                        throw HTTPFailure(400, "must be a positive integer (how many top classes)", field: "\(f).parameters.classification")
                    }
                    guard name == .logits else {
                        throw HTTPFailure(400, "classification applies to \"logits\" only", field: "\(f).parameters.classification")
                    }
                    guard k <= numClasses else {
                        throw HTTPFailure(400, "\(k) classes asked, the model has \(numClasses)", field: "\(f).parameters.classification")
                    }
                    out.classification = k
                }
            }
            result.append(out)
        }
        return result
    }
}

/// The checked description of `inputs[0]` (everything but its values).
struct InputTensor {
    var field: String
    var shape: [Int]
    var datatype: String
    var data: JSONValue?
    var binaryDataSize: Int?
    var count: Int { shape.reduce(1, *) }

    init(_ value: JSONValue, field f: String, inputShape: [Int], maxImages: Int) throws {
        field = f
        guard case .object(let t) = value else { throw HTTPFailure(400, "must be an object", field: f) }
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
            guard case .int(let d) = v else { throw HTTPFailure(400, "must hold integers only", field: "\(f).shape") }
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
        self.shape = shape
        guard case .string(let datatype)? = t["datatype"] else {
            throw HTTPFailure(400, "missing or not a string (\"FP32\" or \"UINT8\")", field: "\(f).datatype")
        }
        guard datatype == "FP32" || datatype == "UINT8" else {
            throw HTTPFailure(400, "unsupported datatype '\(datatype)'; use \"FP32\" or \"UINT8\"", field: "\(f).datatype")
        }
        self.datatype = datatype
        if let p = t["parameters"], p != .null {
            guard case .object(let params) = p else { throw HTTPFailure(400, "must be an object", field: "\(f).parameters") }
            if let s = params["binary_data_size"] {
                let sf = "\(f).parameters.binary_data_size"
                guard case .int(let size) = s, size >= 0 else { throw HTTPFailure(400, "must be a byte count", field: sf) }
                let elementSize = datatype == "FP32" ? 4 : 1
                let needed = shape.reduce(1, *) * elementSize
                guard size == needed else {
                    throw HTTPFailure(400, "binary_data_size is \(size) bytes but shape \(Tensor.describe(shape)) of \(datatype) needs \(needed) (\(shape.reduce(1, *)) x \(elementSize) bytes)",
                                      field: sf)
                }
                binaryDataSize = size
            }
        }
        data = t["data"]
        if binaryDataSize != nil, data != nil {
            throw HTTPFailure(400, "an input sent as binary data (binary_data_size) cannot also have \"data\"", field: "\(f).data")
        }
        if binaryDataSize == nil, data == nil {
            throw HTTPFailure(400, "missing (or send the tensor as binary data with parameters.binary_data_size)", field: "\(f).data")
        }
    }

    /// The little-endian binary tensor, scaled to [0, 1]; `bytes.count` was checked.
    func decodeBinary(_ bytes: ArraySlice<UInt8>) throws -> [Float] {
        let n = count
        if datatype == "UINT8" {
            return [Float](unsafeUninitializedCapacity: n) { out, initialized in
                bytes.withUnsafeBufferPointer { b in for i in 0..<n { out[i] = Float(b[i]) / 255 } }
                initialized = n
            }
        }
        var bad: Int?
        let values = [Float](unsafeUninitializedCapacity: n) { out, initialized in
            bytes.withUnsafeBytes { raw in
                for i in 0..<n {
                    let x = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    if !x.isFinite && bad == nil { bad = i }
                    out[i] = x
                }
            }
            initialized = n
        }
        if let i = bad {
            throw HTTPFailure(400, "\(values[i]) at index \(i) of the binary data; FP32 input must be finite", field: "\(field).data")
        }
        return values
    }

    /// `data` as JSON numbers, flat or nested exactly as `shape`.
    func decodeJSON() throws -> [Float] {
        guard let data, case .array(let top) = data else {
            throw HTTPFailure(400, "must be an array of numbers", field: "\(field).data")
        }
        // The nesting seen along the first elements: [count] for flat data.
        var dims = [top.count]
        var probe = top.first
        while case .array(let a)? = probe { dims.append(a.count); probe = a.first }
        let nested = dims.count > 1
        if nested && dims != shape {
            throw HTTPFailure(400, "data is nested as \(Tensor.describe(dims)) but shape is \(Tensor.describe(shape))",
                              field: "\(field).data")
        }
        let expected = count
        if !nested && top.count != expected {
            throw HTTPFailure(400, "has \(top.count) values, shape \(Tensor.describe(shape)) needs \(expected)",
                              field: "\(field).data")
        }
        var pixels: [Float] = []
        pixels.reserveCapacity(expected)
        let isUInt8 = datatype == "UINT8"
        let f = "\(field).data"
        func number(_ v: JSONValue) throws {
            switch v {
            case .int(let i):
                if isUInt8 {
                    guard (0...255).contains(i) else {
                        throw HTTPFailure(400, "value \(i) at index \(pixels.count) is outside UINT8 0...255", field: f)
                    }
                    pixels.append(Float(i) / 255)
                } else {
                    pixels.append(Float(i))
                }
            case .double(let d):
                if isUInt8 {
                    throw HTTPFailure(400, "value \(d) at index \(pixels.count) is not an integer (datatype UINT8)", field: f)
                }
                if d.isNaN { throw HTTPFailure(400, "NaN at index \(pixels.count); FP32 input must be finite", field: f) }
                let x = Float(d)
                guard x.isFinite else {
                    throw HTTPFailure(400, "value \(d) at index \(pixels.count) is not a finite float32", field: f)
                }
                pixels.append(x)
            case .array:
                throw HTTPFailure(400, "element at index \(pixels.count) is an array; data is either flat or nested as shape \(Tensor.describe(shape))", field: f)
            default:
                throw HTTPFailure(400, "element at index \(pixels.count) is not a number", field: f)
            }
        }
        // Walks nested data checking every array's length against its dimension.
        func walk(_ a: [JSONValue], depth: Int, path: String) throws {
            guard a.count == shape[depth] else {
                throw HTTPFailure(400, "data\(path) has \(a.count) elements but shape \(Tensor.describe(shape)) needs \(shape[depth]) in dimension \(depth) (the nesting is ragged)",
                                  field: f)
            }
            if depth == shape.count - 1 {
                for v in a { try number(v) }
                return
            }
            for (i, v) in a.enumerated() {
                guard case .array(let inner) = v else {
                    throw HTTPFailure(400, "data\(path)[\(i)] is not an array but shape \(Tensor.describe(shape)) nests \(shape.count) levels (the nesting is ragged)",
                                      field: f)
                }
                try walk(inner, depth: depth + 1, path: path + "[\(i)]")
            }
        }
        if nested { try walk(top, depth: 0, path: "") } else { for v in top { try number(v) } }
        return pixels
    }
}
