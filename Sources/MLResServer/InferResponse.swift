import MLResModel

/// The body of an inference reply in the Open Inference Protocol shape, with Triton's binary
/// tensor data and classification extensions.
///
/// `{"model_name", "model_version", "id"?, "outputs": [{"name", "shape", "datatype", "data"} or
/// {..., "parameters": {"binary_data_size": bytes}}]}`; the binary outputs' little-endian bytes
/// follow the JSON in the order of `outputs`, and `headerLength` (sent as
/// `Inference-Header-Content-Length`) is the JSON's length whenever any output is binary.
///
/// Non-finite logits are never written: JSON has no NaN or infinity (a `null` in an FP32 tensor
/// would read as a normal answer to some clients), so such a batch is refused with a 500 that
/// names the image and class (``encode(modelName:modelVersion:id:count:logits:numClasses:classNames:outputs:)``
/// throws). Parameters are checked finite when a model loads, so this needs an overflow.
struct InferResponse {
    var bytes: [UInt8]
    /// Length of the JSON header when binary data follows it, else nil.
    var headerLength: Int?

    static func encode(modelName: String, modelVersion: Int, id: String?, count: Int, logits: [Float],
                       numClasses k: Int, classNames: [String]?, outputs: [RequestedOutput]) throws -> InferResponse {
        if let i = logits.firstIndex(where: { !$0.isFinite }) {
            throw HTTPFailure(500, "the model produced a non-finite logit (\(logits[i])) for image \(i / k), class \(i % k); JSON has no NaN or infinity, so no tensor is sent")
        }
        var json = "{\"model_name\":" + JSONWriter.string(modelName)
        json += ",\"model_version\":\"\(modelVersion)\""
        if let id { json += ",\"id\":" + JSONWriter.string(id) }
        json += ",\"outputs\":["
        var binary: [UInt8] = []
        for (o, out) in outputs.enumerated() {
            if o > 0 { json += "," }
            json += "{\"name\":\"\(out.name.rawValue)\","
            let start = binary.count
            switch (out.name, out.classification) {
            case (.logits, let kTop?):
                let labels = topClasses(logits, count: count, numClasses: k, top: kTop, classNames: classNames)
                json += "\"shape\":[\(count),\(kTop)],\"datatype\":\"BYTES\""
                if out.binary {
                    for s in labels {
                        let u = Array(s.utf8)
                        appendLittleEndian(UInt32(u.count), to: &binary)
                        binary += u
                    }
                } else {
                    json += ",\"data\":[" + labels.map(JSONWriter.string).joined(separator: ",") + "]"
                }
            case (.logits, nil):
                json += "\"shape\":[\(count),\(k)],\"datatype\":\"FP32\""
                if out.binary {
                    binary.reserveCapacity(binary.count + 4 * logits.count)
                    for x in logits { appendLittleEndian(x.bitPattern, to: &binary) }
                } else {
                    json += ",\"data\":[" + logits.map { "\($0)" }.joined(separator: ",") + "]"
                }
            case (.class, _):
                let classes = argmax(logits, count: count, numClasses: k)
                json += "\"shape\":[\(count)],\"datatype\":\"INT64\""
                if out.binary {
                    for c in classes { appendLittleEndian(UInt64(c), to: &binary) }
                } else {
                    json += ",\"data\":[" + classes.map(String.init).joined(separator: ",") + "]"
                }
            }
            if out.binary { json += ",\"parameters\":{\"binary_data_size\":\(binary.count - start)}" }
            json += "}"
        }
        json += "]}"
        let anyBinary = outputs.contains { $0.binary }
        var bytes = Array(json.utf8)
        let headerLength = anyBinary ? bytes.count : nil
        bytes += binary
        return InferResponse(bytes: bytes, headerLength: headerLength)
    }

    /// Arg-max of each row of `logits` (`count` × `numClasses`), the lowest index on ties.
    static func argmax(_ logits: [Float], count: Int, numClasses k: Int) -> [Int] {
        (0..<count).map { n in
            var best = 0
            for j in 1..<max(k, 1) where logits[n * k + j] > logits[n * k + best] { best = j }
            return best
        }
    }

    /// Triton's classification extension: per image the `top` highest logits, highest first
    /// (lower index first on ties), as `"value:index"` or `"value:index:label"` with the
    /// checkpoint's class names; row-major `[count, top]`.
    static func topClasses(_ logits: [Float], count: Int, numClasses k: Int, top: Int, classNames: [String]?) -> [String] {
        let names = classNames?.count == k ? classNames : nil
        var out: [String] = []
        out.reserveCapacity(count * top)
        for n in 0..<count {
            let row = logits[n * k ..< (n + 1) * k]
            let order = row.indices.sorted { a, b in row[a] != row[b] ? row[a] > row[b] : a < b }
            for idx in order.prefix(top) {
                let j = idx - n * k
                out.append("\(row[idx]):\(j)" + (names.map { ":" + $0[j] } ?? ""))
            }
        }
        return out
    }

    private static func appendLittleEndian<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
}
