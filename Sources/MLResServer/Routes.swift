import Foundation
import Hummingbird
import MLResModel
import NIOCore

/// One HTTP endpoint; the raw path is parsed here, not by a router, so that a model name with
/// `/`, `..` or percent-encoded separators is answered 400 instead of falling through to 404.
enum Route: Equatable {
    case serverMetadata, live, ready, metrics
    case modelMetadata(String), modelReady(String), infer(String), stats(String)
    case index, load(String), unload(String)
    case createEvaluation, evaluation(String)
    /// A model path whose name is not valid.
    case badName(String, template: String)
    case unknown

    /// The endpoint label of metrics: the path template, never the raw path.
    var template: String {
        switch self {
        case .serverMetadata: "/v2"
        case .live: "/v2/health/live"
        case .ready: "/v2/health/ready"
        case .metrics: "/metrics"
        case .modelMetadata: "/v2/models/{name}"
        case .modelReady: "/v2/models/{name}/ready"
        case .infer: "/v2/models/{name}/infer"
        case .stats: "/v2/models/{name}/stats"
        case .index: "/v2/repository/index"
        case .load: "/v2/repository/models/{name}/load"
        case .unload: "/v2/repository/models/{name}/unload"
        case .createEvaluation: "/v1/evaluations"
        case .evaluation: "/v1/evaluations/{id}"
        case .badName(_, let t): t
        case .unknown: "other"
        }
    }

    /// Methods the endpoint answers.
    var methods: [String] {
        switch self {
        case .infer, .load, .unload, .createEvaluation: ["POST"]
        case .index: ["GET", "POST"]
        case .badName, .unknown: ["GET", "POST"]
        default: ["GET"]
        }
    }

    /// Parses a raw request path (query already removed).
    static func parse(_ rawPath: String) -> Route? {
        var parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "" { parts.removeFirst() }
        if parts.count > 1 && parts.last == "" { parts.removeLast() }
        var segs: [String] = []
        for p in parts {
            guard let d = p.removingPercentEncoding else { return nil }
            segs.append(d)
        }
        func model(_ prefix: Int, actions: [String: (String) -> Route], plain: ((String) -> Route)?,
                   template: String) -> Route {
            let rest = Array(segs[prefix...])
            if rest.count == 1, let plain { return named(rest[0], plain, template: template) }
            if rest.count >= 2, let make = actions[rest.last!] {
                return named(rest.dropLast().joined(separator: "/"), make,
                             template: template + "/" + rest.last!)
            }
            return plain == nil && rest.count == 1 ? .unknown
                : .badName(rest.joined(separator: "/"), template: template)
        }
        func named(_ name: String, _ make: (String) -> Route, template: String) -> Route {
            ModelRepository.nameProblem(name) == nil ? make(name) : .badName(name, template: template)
        }
        switch segs.count {
        case 1 where segs == ["v2"]: return .serverMetadata
        case 1 where segs == ["metrics"]: return .metrics
        case 3 where segs == ["v2", "health", "live"]: return .live
        case 3 where segs == ["v2", "health", "ready"]: return .ready
        case 3 where segs == ["v2", "repository", "index"]: return .index
        case 2 where segs == ["v1", "evaluations"]: return .createEvaluation
        case 3 where segs[0] == "v1" && segs[1] == "evaluations": return .evaluation(segs[2])
        default: break
        }
        if segs.count >= 3 && segs[0] == "v2" && segs[1] == "models" {
            return model(2, actions: ["ready": Route.modelReady, "infer": Route.infer, "stats": Route.stats],
                         plain: Route.modelMetadata, template: "/v2/models/{name}")
        }
        if segs.count >= 4 && segs[0] == "v2" && segs[1] == "repository" && segs[2] == "models" {
            return model(3, actions: ["load": Route.load, "unload": Route.unload], plain: nil,
                         template: "/v2/repository/models/{name}")
        }
        return .unknown
    }
}

/// Hummingbird's entry point: every request goes through ``InferenceServer/handle(_:)``.
struct ServerResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let server: InferenceServer

    func respond(to request: Request, context: Context) async throws -> Response {
        let (endpoint, response) = await server.handle(request)
        // Known methods only as label values: clients must not be able to mint label sets.
        let method = request.method.rawValue
        let label = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"].contains(method) ? method : "other"
        server.metrics.request(method: label, endpoint: endpoint, status: Int(response.status.code))
        return response
    }
}

extension InferenceServer {
    static func json(_ status: Int, _ text: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ status: Int, _ value: JSONValue) -> Response { json(status, value.jsonText) }

    static func failure(_ f: HTTPFailure) -> Response { json(f.status, f.json) }

    /// Answers one request; returns the endpoint label and the response. Never throws: every
    /// problem becomes a JSON error.
    func handle(_ request: Request) async -> (String, Response) {
        guard let route = Route.parse(request.uri.path) else {
            return ("other", Self.failure(HTTPFailure(400, "the path has invalid percent-encoding")))
        }
        let method = request.method.rawValue
        if !route.methods.contains(method) {
            var r = Self.failure(HTTPFailure(405, "\(method) is not allowed on \(route.template); use \(route.methods.joined(separator: " or "))"))
            r.headers[.allow] = route.methods.joined(separator: ", ")
            return (route.template, r)
        }
        do {
            return (route.template, try await dispatch(route, request))
        } catch let f as HTTPFailure {
            return (route.template, Self.failure(f))
        } catch {
            return (route.template, Self.failure(HTTPFailure(500, "internal error: \(error)")))
        }
    }

    private func dispatch(_ route: Route, _ request: Request) async throws -> Response {
        switch route {
        case .serverMetadata:
            return Self.json(200, .object([
                "name": .string("mlres"), "version": .string(MLRes.version),
                "extensions": .array(["model_repository", "statistics", "metrics"].map { .string($0) }),
            ]))
        case .live:
            return Self.json(200, #"{"live":true}"#)
        case .ready:
            return isReady ? Self.json(200, #"{"ready":true}"#) : Self.json(503, #"{"ready":false}"#)
        case .metrics:
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers,
                            body: .init(byteBuffer: ByteBuffer(string: metrics.text())))
        case .modelMetadata(let name):
            let (info, _) = try loaded(name)
            return Self.json(200, Self.metadata(info))
        case .modelReady(let name):
            guard let s = repository.status(name) else {
                throw HTTPFailure(404, "model '\(name)' is not loaded", field: "name")
            }
            var o: [String: JSONValue] = ["name": .string(name), "ready": .bool(s.ready)]
            if let v = s.info?.version { o["version"] = .string(String(v)) }
            if let e = s.lastError { o["last_error"] = .string(e) }
            return Self.json(s.ready ? 200 : 503, .object(o))
        case .stats(let name):
            let (info, batcher) = try loaded(name)
            let st = batcher.stats
            return Self.json(200, .object(["model_stats": .array([.object([
                "name": .string(name), "version": .string(String(info.version)),
                "inference_count": .int(st.inferences), "execution_count": .int(st.executions),
                "request_count": .int(st.requests), "failed_request_count": .int(st.failedRequests),
                "rejected_request_count": .int(st.rejectedRequests),
                "queue_ns": .int(Int(st.queueNanoseconds)), "compute_ns": .int(Int(st.computeNanoseconds)),
                "queue_depth": .int(batcher.queueDepth),
                "load_failures": .int(repository.status(name)?.loadFailures ?? 0),
            ])])]))
        case .index:
            return Self.json(200, repositoryIndex())
        case .load(let name):
            do {
                let info = try await repository.load(name)
                return Self.json(200, .object([
                    "name": .string(name), "loaded": .bool(true), "version": .string(String(info.version)),
                    "sha256": .string(info.sha256),
                ]))
            } catch let e as RepositoryError {
                var o: [String: JSONValue] = ["error": .string(e.description), "name": .string(name)]
                let serving = repository.status(name)?.info
                o["serving_version"] = serving.map { .string(String($0.version)) } ?? .null
                switch e {
                case .badName: return Self.json(400, .object(o))
                case .notFound, .notLoaded: return Self.json(404, .object(o))
                case .loadFailed: return Self.json(422, .object(o))
                }
            }
        case .unload(let name):
            guard repository.status(name)?.info != nil else {
                throw HTTPFailure(404, "model '\(name)' is not loaded", field: "name")
            }
            await repository.unload(name)
            return Self.json(200, .object(["name": .string(name), "loaded": .bool(false)]))
        case .infer(let name):
            return try await infer(name, request)
        case .createEvaluation:
            return try await createEvaluation(request)
        case .evaluation(let id):
            guard let jobs else { throw Self.noEvaluator }
            guard let job = await jobs.job(id) else {
                throw HTTPFailure(404, "no evaluation job '\(id)'", field: "id")
            }
            return Self.json(200, job.json)
        case .badName(let name, _):
            let reason = ModelRepository.nameProblem(name) ?? "not a model name"
            throw HTTPFailure(400, "bad model name '\(name)': \(reason)", field: "name")
        case .unknown:
            throw HTTPFailure(404, "no endpoint \(request.uri.path)")
        }
    }

    private func loaded(_ name: String) throws -> (ModelInfo, DynamicBatcher) {
        guard let s = repository.status(name), let info = s.info, let b = s.batcher else {
            var message = "model '\(name)' is not loaded"
            if let e = repository.status(name)?.lastError { message += " (last load error: \(e))" }
            throw HTTPFailure(404, message, field: "name")
        }
        return (info, b)
    }

    static func metadata(_ info: ModelInfo) -> JSONValue {
        let net = info.network
        let ints: ([Int]) -> JSONValue = { .array($0.map { .int($0) }) }
        var o: [String: JSONValue] = [
            "name": .string(info.name),
            "versions": .array([.string(String(info.version))]),
            "platform": .string("mlres-\(Network.architecture)"),
            "inputs": .array([.object(["name": .string("input"), "datatype": .string("FP32"),
                                       "shape": ints([-1] + net.inputShape)])]),
            "outputs": .array([
                .object(["name": .string("logits"), "datatype": .string("FP32"), "shape": ints([-1, net.numClasses])]),
                .object(["name": .string("class"), "datatype": .string("INT64"), "shape": ints([-1])]),
            ]),
            "input_shape": ints(net.inputShape),
            "classes": .int(net.numClasses),
            "blocks": ints(net.stageBlocks),
            "widths": ints(net.stageWidths),
            "h": .array(net.stepSizes.map { .array($0.map { .double($0) }) }),
            "parameters": .int(net.parameterCount),
            "sha256": .string(info.sha256),
            "version": .string(String(info.version)),
            "backend": .string(info.backendName),
            "loaded_at": .string(EvaluationJob.iso(info.loadedAt)),
            "input_mean": .array(net.inputMean.map { .double(Double($0)) }),
            "input_std": .array(net.inputStd.map { .double(Double($0)) }),
        ]
        if let names = net.classNames { o["class_names"] = .array(names.map { .string($0) }) }
        return .object(o)
    }

    private func repositoryIndex() -> JSONValue {
        var byName: [String: JSONValue] = [:]
        for name in repository.checkpointNames() {
            byName[name] = .object(["name": .string(name), "state": .string("UNAVAILABLE"),
                                    "reason": .string("not loaded")])
        }
        for s in repository.allStatuses() {
            var o: [String: JSONValue] = ["name": .string(s.name),
                                          "state": .string(s.ready ? "READY" : "UNAVAILABLE")]
            if let v = s.info?.version { o["version"] = .string(String(v)) }
            if let e = s.lastError { o["reason"] = .string(e) }
            byName[s.name] = .object(o)
        }
        return .array(byName.keys.sorted().map { byName[$0]! })
    }

    /// Reads the body, refusing more than `--max-body-mb` (413) before reading it when the
    /// length is declared, and while reading otherwise.
    private func body(_ request: Request) async throws -> ByteBuffer {
        let limit = configuration.maxBodyBytes
        let tooLarge = HTTPFailure(413, "request body is larger than the limit of \(limit) bytes (--max-body-mb)")
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw tooLarge
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch {
            throw HTTPFailure(400, "could not read the request body: \(error)")
        }
    }

    private func parseJSON(_ buffer: ByteBuffer) throws -> JSONValue {
        do {
            return try JSONParser.parse(buffer.readableBytesView)
        } catch let e as JSONSyntaxError {
            throw HTTPFailure(400, e.description)
        }
    }

    private func infer(_ name: String, _ request: Request) async throws -> Response {
        let (info, batcher) = try loaded(name)
        let json = try parseJSON(try await body(request))
        let req = try InferRequest.decode(json, inputShape: info.network.inputShape,
                                          maxImages: configuration.batching.maxQueue)
        let result: BatchResult
        do {
            result = try await batcher.submit(pixels: req.pixels, count: req.count, shape: info.network.inputShape)
        } catch let e as BatchError {
            switch e {
            case .queueFull: throw HTTPFailure(429, "\(e); retry later")
            case .stopped: throw HTTPFailure(503, e.description)
            case .shapeChanged: throw HTTPFailure(409, e.description, field: "inputs[0].shape")
            case .backend: throw HTTPFailure(500, e.description)
            }
        }
        let k = result.numClasses
        var out = "{\"model_name\":" + JSONWriter.string(name)
        out += ",\"model_version\":\"\(result.modelVersion)\""
        if let id = req.id { out += ",\"id\":" + JSONWriter.string(id) }
        out += ",\"outputs\":[{\"name\":\"logits\",\"shape\":[\(req.count),\(k)],\"datatype\":\"FP32\",\"data\":["
        out += result.logits.map(JSONWriter.number).joined(separator: ",")
        out += "]},{\"name\":\"class\",\"shape\":[\(req.count)],\"datatype\":\"INT64\",\"data\":["
        var classes: [String] = []
        for n in 0..<req.count {
            var best = 0
            for j in 1..<max(k, 1) where result.logits[n * k + j] > result.logits[n * k + best] { best = j }
            classes.append(String(best))
        }
        out += classes.joined(separator: ",") + "]}]}"
        return Self.json(200, out)
    }

    static let noEvaluator = HTTPFailure(
        501, "evaluations are not available: this server was started without an evaluator")

    private func createEvaluation(_ request: Request) async throws -> Response {
        guard let jobs else { throw Self.noEvaluator }
        guard case .object(let o) = try parseJSON(try await body(request)) else {
            throw HTTPFailure(400, "the request body must be a JSON object")
        }
        guard case .string(let name)? = o["model"] else {
            throw HTTPFailure(400, "missing or not a string", field: "model")
        }
        if let p = ModelRepository.nameProblem(name) {
            throw HTTPFailure(400, "bad model name '\(name)': \(p)", field: "model")
        }
        guard case .string(let dataset)? = o["dataset"] else {
            throw HTTPFailure(400, "missing or not a string (e.g. \"cifar10\")", field: "dataset")
        }
        guard !dataset.isEmpty, !dataset.hasPrefix("."), dataset.unicodeScalars.allSatisfy({
            CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" || $0 == "."
        }), !dataset.contains("..") else {
            throw HTTPFailure(400, "a dataset name may only hold letters, digits, '-', '_' and '.'", field: "dataset")
        }
        var lesion: JSONValue?
        if let l = o["lesion"], l != .null {
            guard case .object = l else { throw HTTPFailure(400, "must be an object", field: "lesion") }
            lesion = l
        }
        guard let dataDir = configuration.dataDirectory else {
            throw HTTPFailure(409, "this server was started without --data-dir, so it has no datasets")
        }
        let (info, _) = try loaded(name)
        let job = await jobs.submit(EvaluationRequest(model: name, checkpointPath: info.path, sha256: info.sha256,
                                                      dataset: dataset, dataDir: dataDir, lesion: lesion))
        var r = Self.json(202, job.json)
        r.headers[.location] = "/v1/evaluations/\(job.id)"
        return r
    }
}
