import HTTPTypes
import Hummingbird
import MLResData
import MLResModel
import NIOCore

/// Reading a request body: the `--max-body-mb` limit, `Content-Encoding` and the split of a
/// binary-tensor request into its JSON header and its binary tensor data.
enum RequestBody {
    /// `Inference-Header-Content-Length` (Triton's binary tensor data extension): the length in
    /// bytes of the JSON header at the start of the (decompressed) body; binary tensor data follows.
    static let headerLengthField = HTTPField.Name("Inference-Header-Content-Length")!

    /// Reads the body, refusing more than `limit` bytes (413) before reading it when the length
    /// is declared and while reading otherwise, then decompresses a `Content-Encoding: gzip` or
    /// `deflate` body, again bounded by `limit` (413 for a body that inflates past it).
    static func read(_ request: Request, limit: Int) async throws -> [UInt8] {
        let tooLarge = HTTPFailure(413, "request body is larger than the limit of \(limit) bytes (--max-body-mb)")
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw tooLarge
        }
        let encoding = try ContentEncoding(header: request.headers[.contentEncoding])
        var buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch {
            throw HTTPFailure(400, "could not read the request body: \(error)")
        }
        let raw = buffer.readBytes(length: buffer.readableBytes) ?? []
        switch encoding {
        case .identity: return raw
        case .gzip, .deflate:
            do {
                return try Inflate.decompress(raw, limit: limit)
            } catch Inflate.Failure.tooLarge {
                throw HTTPFailure(413, "the \(encoding.rawValue) request body inflates to more than the limit of \(limit) bytes (--max-body-mb)")
            } catch let f as Inflate.Failure {
                let detail: String
                if case .corrupt(let d) = f { detail = d } else { detail = "the data ends before the end of the compressed stream" }
                throw HTTPFailure(400, "Content-Encoding \(encoding.rawValue): the body is not valid \(encoding.rawValue) data (\(detail))",
                                  field: "Content-Encoding")
            }
        }
    }

    /// Splits a body into the JSON header and the binary tensor data after it, by the
    /// `Inference-Header-Content-Length` header (the whole body is JSON without it).
    static func split(_ body: [UInt8], headerLength: String?) throws -> (json: ArraySlice<UInt8>, binary: ArraySlice<UInt8>?) {
        guard let text = headerLength else { return (body[...], nil) }
        let field = "Inference-Header-Content-Length"
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 0 else {
            throw HTTPFailure(400, "'\(text)' is not a byte count", field: field)
        }
        guard n <= body.count else {
            throw HTTPFailure(400, "the JSON header is said to be \(n) bytes but the body has only \(body.count) bytes",
                              field: field)
        }
        guard n > 0 else { throw HTTPFailure(400, "the JSON header cannot be empty", field: field) }
        return (body[..<n], body[n...])
    }
}

/// A request body's `Content-Encoding`.
enum ContentEncoding: String {
    case identity, gzip, deflate

    init(header: String?) throws {
        let value = (header ?? "identity").trimmingCharacters(in: .whitespaces).lowercased()
        guard let e = ContentEncoding(rawValue: value.isEmpty ? "identity" : value) else {
            throw HTTPFailure(415, "Content-Encoding '\(header ?? "")' is not supported; send gzip, deflate or an uncompressed body",
                              field: "Content-Encoding")
        }
        self = e
    }
}
