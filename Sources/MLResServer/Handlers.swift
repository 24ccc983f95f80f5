import Foundation
import Hummingbird
import MLResModel
import NIOCore

/// Hummingbird's entry point: every request goes through ``InferenceServer/handle(_:)``.
struct ServerResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let server: InferenceServer

    func respond(to request: Request, context: Context) async throws -> Response {
        let (endpoint, response) = await server.handle(request)
        server.metrics.request(method: ServerMetrics.methodLabel(request.method.rawValue), endpoint: endpoint,
                               status: Int(response.status.code))
        return response
    }
}

extension ServerMetrics {
    /// Known methods only as label values: clients must not be able to mint label sets.
    static func methodLabel(_ method: String) -> String {
        ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"].contains(method) ? method : "other"
    }
}

/// The Open Inference Protocol extensions this server implements, as `GET /v2` lists them.
let implementedExtensions = ["binary_tensor_data", "classification", "model_configuration", "model_repository"]

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
                "extensions": .array(implementedExtensions.map { .string($0) }),
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
        case .model(let name, let version, let action):
            return try await model(name, version: version, action, request)
        case .index:
            return Self.json(200, repositoryIndex())
        case .load(let name):
            return await load(name)
        case .unload(let name):
            guard repository.status(name)?.info != nil else {
                throw HTTPFailure(404, "model '\(name)' is not loaded", field: "name")
            }
            await repository.unload(name)
            return Self.json(200, .object(["name": .string(name), "loaded": .bool(false)]))
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

    private func model(_ name: String, version: String?, _ action: ModelAction, _ request: Request) async throws -> Response {
        switch action {
        case .metadata:
            return Self.json(200, Self.metadata(try loaded(name, version: version).0))
        case .config:
            return Self.json(200, Self.config(try loaded(name, version: version).0, batching: configuration.batching))
        case .ready:
            // Clients read the status code: 200 only when this model (and version) serves.
            guard let s = repository.status(name) else {
                throw HTTPFailure(404, "model '\(name)' is not loaded", field: "name")
            }
            if let version, let v = s.info?.version, version != String(v) {
                return Self.json(404, .object(["name": .string(name), "ready": .bool(false),
                                               "error": .string("model '\(name)' has no version '\(version)'; the loaded version is '\(v)'")]))
            }
            var o: [String: JSONValue] = ["name": .string(name), "ready": .bool(s.ready)]
            if let v = s.info?.version { o["version"] = .string(String(v)) }
            if let e = s.lastError { o["last_error"] = .string(e) }
            return Self.json(s.ready ? 200 : 503, .object(o))
        case .stats:
            let (info, batcher) = try loaded(name, version: version)
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
        case .infer:
            return try await infer(name, version: version, request)
        }
    }

    private func load(_ name: String) async -> Response {
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
        } catch {
            return Self.failure(HTTPFailure(500, "internal error: \(error)"))
        }
    }

    /// The loaded model `name` (and, with `version`, only when that version is the loaded one).
    private func loaded(_ name: String, version: String?) throws -> (ModelInfo, DynamicBatcher) {
        guard let s = repository.status(name), let info = s.info, let b = s.batcher else {
            var message = "model '\(name)' is not loaded"
            if let e = repository.status(name)?.lastError { message += " (last load error: \(e))" }
            throw HTTPFailure(404, message, field: "name")
        }
        if let version, version != String(info.version) {
            throw HTTPFailure(404, "model '\(name)' has no version '\(version)'; the loaded version is '\(info.version)'",
                              field: "version")
        }
        return (info, b)
    }

    /// Model metadata (OIP `$metadata_model_response`) plus mlres's own fields.
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

    /// `GET /v2/models/NAME/config` in the shape of Triton's model configuration (the JSON form
    /// of its `ModelConfig` protobuf): dims exclude the batch dimension, which `max_batch_size`
    /// bounds (the most images one request may carry: `--max-queue`); `class` is one INT64 per
    /// image, `dims: [1]` reshaped to a scalar, as Triton writes a per-image scalar.
    static func config(_ info: ModelInfo, batching: BatchingOptions) -> JSONValue {
        let net = info.network
        let ints: ([Int]) -> JSONValue = { .array($0.map { .int($0) }) }
        return .object([
            "name": .string(info.name),
            "platform": .string("mlres-\(Network.architecture)"),
            "backend": .string(info.backendName),
            "version_policy": .object(["latest": .object(["num_versions": .int(1)])]),
            "max_batch_size": .int(batching.maxQueue),
            "input": .array([.object([
                "name": .string("input"), "data_type": .string("TYPE_FP32"), "format": .string("FORMAT_NCHW"),
                "dims": ints(net.inputShape),
            ])]),
            "output": .array([
                .object(["name": .string("logits"), "data_type": .string("TYPE_FP32"), "dims": ints([net.numClasses]),
                         "label_filename": .string("")]),
                .object(["name": .string("class"), "data_type": .string("TYPE_INT64"), "dims": ints([1]),
                         "reshape": .object(["shape": ints([])])]),
            ]),
            "dynamic_batching": .object([
                "preferred_batch_size": ints([batching.maxBatch]),
                "max_queue_delay_microseconds": .int(Int(DynamicBatcher.nanoseconds(batching.maxQueueDelay) / 1000)),
            ]),
            "instance_group": .array([.object(["count": .int(1), "kind": .string("KIND_CPU")])]),
        ])
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

    private func parseJSON(_ bytes: ArraySlice<UInt8>, binaryFollows: Bool = false) throws -> JSONValue {
        do {
            return try JSONParser.parse(bytes)
        } catch let e as JSONSyntaxError {
            var message = e.description
            if !binaryFollows && e.message == "unexpected text after the JSON value" {
                message += " (binary tensor data after the JSON needs the Inference-Header-Content-Length header giving the JSON's length)"
            }
            throw HTTPFailure(400, message)
        }
    }

    private func infer(_ name: String, version: String?, _ request: Request) async throws -> Response {
        let (info, batcher) = try loaded(name, version: version)
        let body = try await RequestBody.read(request, limit: configuration.maxBodyBytes)
        let (header, binary) = try RequestBody.split(body, headerLength: request.headers[RequestBody.headerLengthField])
        let json = try parseJSON(header, binaryFollows: binary != nil)
        let req = try InferRequest.decode(json, binary: binary, inputShape: info.network.inputShape,
                                          numClasses: info.network.numClasses, maxImages: configuration.batching.maxQueue)
        let result: BatchResult
        do {
            result = try await batcher.submit(pixels: req.pixels, count: req.count, shape: info.network.inputShape,
                                              version: version.map { _ in info.version })
        } catch let e as BatchError {
            switch e {
            case .queueFull: throw HTTPFailure(429, "\(e); retry later")
            case .stopped: throw HTTPFailure(503, e.description)
            case .shapeChanged: throw HTTPFailure(409, e.description, field: "inputs[0].shape")
            case .versionChanged: throw HTTPFailure(404, e.description, field: "version")
            case .backend: throw HTTPFailure(500, e.description)
            }
        }
        let reply = try InferResponse.encode(
            modelName: name, modelVersion: result.modelVersion, id: req.id, count: req.count, logits: result.logits,
            numClasses: result.numClasses, classNames: result.classNames, outputs: req.outputs)
        var headers = HTTPFields()
        if let n = reply.headerLength {
            headers[.contentType] = "application/octet-stream"
            headers[RequestBody.headerLengthField] = String(n)
        } else {
            headers[.contentType] = "application/json"
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.bytes)))
    }

    static let noEvaluator = HTTPFailure(
        501, "evaluations are not available: this server was started without an evaluator")

    private func createEvaluation(_ request: Request) async throws -> Response {
        guard let jobs else { throw Self.noEvaluator }
        guard case .object(let o) = try parseJSON(try await RequestBody.read(request, limit: configuration.maxBodyBytes)[...]) else {
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
        var labels: String?
        if let l = o["labels"], l != .null {
            guard case .string(let s) = l, s == "fine" || s == "coarse" else {
                throw HTTPFailure(400, "must be \"fine\" or \"coarse\" (CIFAR-100's label sets)", field: "labels")
            }
            labels = s
        }
        var lesion: JSONValue?
        if let l = o["lesion"], l != .null {
            guard case .object = l else { throw HTTPFailure(400, "must be an object", field: "lesion") }
            lesion = l
        }
        // BN recalibration (issue 17): whole numbers in range, else 400 naming the field.
        func wholeNumber(_ field: String, _ range: ClosedRange<Int>, _ what: String) throws -> Int? {
            guard let v = o[field], v != .null else { return nil }
            guard case .int(let n) = v, range.contains(n) else {
                throw HTTPFailure(400, "must be \(what), a whole number from \(range.lowerBound) to \(range.upperBound)", field: field)
            }
            return n
        }
        let recalibrateBN = try wholeNumber("recalibrate_bn", 1 ... AnalysisEvaluation.maxRecalibrationBatches, "a number of training batches")
        let recalibrateBatchSize = try wholeNumber("recalibrate_batch_size", 1 ... 100_000, "images per recalibration batch")
        let recalibrateSeed = try wholeNumber("recalibrate_seed", 0 ... Int.max, "the seed of the recalibration batches")
        if recalibrateBN == nil, let extra = ["recalibrate_batch_size", "recalibrate_seed"].first(where: { o[$0] != nil && o[$0] != .null }) {
            throw HTTPFailure(400, "needs recalibrate_bn", field: extra)
        }
        guard let dataDir = configuration.dataDirectory else {
            throw HTTPFailure(409, "this server was started without --data-dir, so it has no datasets")
        }
        let (info, _) = try loaded(name, version: nil)
        let job = await jobs.submit(EvaluationRequest(model: name, checkpointPath: info.path, sha256: info.sha256,
                                                      dataset: dataset, dataDir: dataDir, lesion: lesion,
                                                      labels: labels, recalibrateBN: recalibrateBN,
                                                      recalibrateBatchSize: recalibrateBatchSize, recalibrateSeed: recalibrateSeed))
        var r = Self.json(202, job.json)
        r.headers[.location] = "/v1/evaluations/\(job.id)"
        return r
    }
}
