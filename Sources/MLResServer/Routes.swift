import Foundation

/// What a request asks of one model (`/v2/models/NAME[/versions/V]/ACTION`).
enum ModelAction: String, Equatable, CaseIterable {
    case metadata = "", ready, infer, stats, config
}

/// One HTTP endpoint, parsed from the raw path (query removed). The path is parsed here and
/// not by a router so that a model name with `/`, `..` or percent-encoded separators is
/// answered 400 instead of falling through to 404. Dispatch is in `Handlers.swift`.
///
/// Model paths follow the Open Inference Protocol (KServe v2): `/v2/models/NAME` and
/// `/v2/models/NAME/versions/V`, each optionally followed by `/ready`, `/infer`, `/stats` or
/// `/config` (Triton's model configuration extension).
enum Route: Equatable {
    case serverMetadata, live, ready, metrics
    /// `version` is the `V` of a `/versions/V/` path, nil without one.
    case model(String, version: String?, ModelAction)
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
        case .model(_, let version, let action):
            "/v2/models/{name}" + (version == nil ? "" : "/versions/{version}")
                + (action == .metadata ? "" : "/" + action.rawValue)
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
        case .model(_, _, .infer), .load, .unload, .createEvaluation: ["POST"]
        case .index: ["GET", "POST"]
        case .badName, .unknown: ["GET", "POST"]
        default: ["GET"]
        }
    }

    /// Parses a raw request path (query already removed); nil for broken percent-encoding.
    static func parse(_ rawPath: String) -> Route? {
        var parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "" { parts.removeFirst() }
        if parts.count > 1 && parts.last == "" { parts.removeLast() }
        var segs: [String] = []
        for p in parts {
            guard let d = p.removingPercentEncoding else { return nil }
            segs.append(d)
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
            return modelRoute(Array(segs[2...]))
        }
        if segs.count >= 4 && segs[0] == "v2" && segs[1] == "repository" && segs[2] == "models" {
            let rest = Array(segs[3...])
            let template = "/v2/repository/models/{name}"
            switch rest.last {
            case "load"? where rest.count >= 2:
                return named(rest.dropLast().joined(separator: "/"), template: template + "/load") { .load($0) }
            case "unload"? where rest.count >= 2:
                return named(rest.dropLast().joined(separator: "/"), template: template + "/unload") { .unload($0) }
            default:
                return rest.count == 1 ? .unknown : .badName(rest.joined(separator: "/"), template: template)
            }
        }
        return .unknown
    }

    /// `rest` = the segments after `/v2/models/`.
    private static func modelRoute(_ rest: [String]) -> Route {
        let template = "/v2/models/{name}"
        let action = rest.count >= 2 ? ModelAction(rawValue: rest[rest.count - 1]).flatMap { $0 == .metadata ? nil : $0 } : nil
        let body = action == nil ? rest : Array(rest.dropLast())
        let suffix = action.map { "/" + $0.rawValue } ?? ""
        // NAME/versions/V[/ACTION]
        if body.count == 3 && body[1] == "versions" {
            return named(body[0], template: template + "/versions/{version}" + suffix) {
                .model($0, version: body[2], action ?? .metadata)
            }
        }
        let name = body.joined(separator: "/")
        if body.count == 1 { return named(name, template: template + suffix) { .model($0, version: nil, action ?? .metadata) } }
        return .badName(name, template: template + suffix)
    }

    private static func named(_ name: String, template: String, _ make: (String) -> Route) -> Route {
        ModelRepository.nameProblem(name) == nil ? make(name) : .badName(name, template: template)
    }
}
