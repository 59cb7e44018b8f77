import Config
import EventLoop
import Proxy

/// The admin HTTP endpoint's routes: `GET /metrics`, `/healthz`, `/readyz`, `/config` and
/// `POST /reload`. Pure request → response over what the supervisor knows; the views are
/// `Encodable` values (encoded by `JSON`), so a field is a property, not a dictionary key.
struct AdminEndpoint {
    unowned let supervisor: Supervisor

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        switch Self.access(path: request.path, authorization: request.authorization, peer: request.peer,
                           token: supervisor.config.adminToken) {
        case .allowed: break
        case .unauthorized(let why): return HTTPResponse(status: 401, text: why + "\n")
        case .forbidden(let why): return HTTPResponse(status: 403, text: why + "\n")
        }
        switch (request.method, request.path) {
        case (.get, "/metrics"), (.head, "/metrics"):
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: supervisor.metrics.exposition())
        case (.get, "/healthz"), (.head, "/healthz"):
            return HTTPResponse(status: 200, text: "ok\n")
        case (.get, "/readyz"), (.head, "/readyz"):
            if supervisor.isStopping { return HTTPResponse(status: 503, text: "shutting down\n") }
            if let all = supervisor.clusterShards {
                // A cluster: every shard that serves slots needs a confirmed, reachable master
                // (not a node added without slots yet).
                let shards = all.filter { !$0.slots.isEmpty }
                let missing = shards.filter { shard in
                    !(shard.topology.master.map { supervisor.metrics.isUp($0.description, role: "master") } ?? false)
                }
                if shards.isEmpty { return HTTPResponse(status: 503, text: "no slot layout from the cluster yet\n") }
                guard missing.isEmpty else {
                    let lines = missing.map { "shard \(TopologyView.slotText($0.slots)): no reachable master (\($0.layoutMaster) in the layout)\n" }
                    return HTTPResponse(status: 503, text: lines.joined() + supervisor.downReasons.map { "\($0)\n" }.joined())
                }
                return HTTPResponse(status: 200, text: "ok: \(shards.count) shard(s), each master reachable\n")
            }
            guard let master = supervisor.confirmedMaster else {
                let reasons = supervisor.downReasons
                return HTTPResponse(status: 503, text: "no node confirmed as master\n" + reasons.map { "\($0)\n" }.joined())
            }
            let up = supervisor.metrics.isUp(master.description, role: "master")
            return up ? HTTPResponse(status: 200, text: "ok: master \(master) reachable\n")
                      : HTTPResponse(status: 503, text: "master \(master) unreachable\n")
        case (.get, "/config"), (.head, "/config"):
            return Self.json(supervisor.configView())
        case (.post, "/reload"):
            let outcome = supervisor.reload(trigger: "POST /reload")
            let view = ReloadOutcome(result: outcome.result.label, message: outcome.message, generation: supervisor.generation)
            return Self.json(view, status: outcome.result == .invalid ? 400 : 200)
        case (_, "/metrics"), (_, "/healthz"), (_, "/readyz"), (_, "/config"), (_, "/reload"):
            return HTTPResponse(status: 405, text: "method not allowed\n")
        default:
            return HTTPResponse(status: 404, text: "not found; try /metrics, /healthz, /readyz, /config, POST /reload\n")
        }
    }

    enum Access: Equatable {
        case allowed
        case unauthorized(String)
        case forbidden(String)
    }

    /// Who may use what. The probes and metrics (`/healthz`, `/readyz`, `/metrics`) answer anyone
    /// who reaches the port: in Kubernetes the kubelet and Prometheus, on the Pod IP. `/config`
    /// (the whole topology) and `/reload` need the bearer token of `admin.token_file` when there
    /// is one; without one they answer loopback peers only (a shell in the Pod, the app's own
    /// container).
    static func access(path: String, authorization: String?, peer: String, token: String?) -> Access {
        guard path == "/config" || path == "/reload" else { return .allowed }
        if let token {
            let presented = authorization.flatMap { $0.hasPrefix("Bearer ") ? Array($0.utf8.dropFirst(7)) : nil }
            guard let presented, Secret.equal(presented, Array(token.utf8)) else {
                return .unauthorized("\(path) needs the bearer token of admin.token_file (Authorization: Bearer …)")
            }
            return .allowed
        }
        guard isLoopback(peer) else {
            return .forbidden("\(path) answers loopback peers only; set admin.token_file to allow a bearer token from elsewhere")
        }
        return .allowed
    }

    static func isLoopback(_ peer: String) -> Bool {
        peer.hasPrefix("127.") || peer == "::1" || peer.hasPrefix("::ffff:127.")
    }


    static func json<View: Encodable>(_ view: View, status: Int = 200) -> HTTPResponse {
        do {
            return HTTPResponse(status: status, contentType: "application/json", body: try JSON.encode(view))
        } catch {
            return HTTPResponse(status: 500, text: "cannot encode the view: \(error)\n")
        }
    }
}

/// `GET /config`: the active config (secrets redacted), its generation, the last reload and the
/// topology the health checks see.
struct ConfigView: Encodable {
    var generation: Int
    var config: [String: RedactedValue]
    var configFile: String?
    var lastReload: ReloadView
    var restartOnlyKeys: [String]
    var topology: TopologyView

    enum CodingKeys: String, CodingKey {
        case generation, config, topology
        case configFile = "config_file", lastReload = "last_reload", restartOnlyKeys = "restart_only_keys"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(generation, forKey: .generation)
        try container.encode(config, forKey: .config)
        try container.encode(configFile, forKey: .configFile)  // null when started from flags
        try container.encode(lastReload, forKey: .lastReload)
        try container.encode(restartOnlyKeys, forKey: .restartOnlyKeys)
        try container.encode(topology, forKey: .topology)
    }
}

struct ReloadView: Encodable {
    var trigger: String
    var result: String
    var message: String
    /// ISO 8601, UTC.
    var at: String
}

/// `POST /reload`'s answer.
struct ReloadOutcome: Encodable {
    var result: String
    var message: String
    var generation: Int
}

/// What the health checks see, in `/config`.
struct TopologyView: Encodable {
    struct Replica: Encodable {
        var address: String
        var eligible: Bool
        var up: Bool
        var weight: Int
        var lagMilliseconds: Int?
        var reason: String?

        enum CodingKeys: String, CodingKey {
            case address, eligible, up, weight, reason
            case lagMilliseconds = "lag_ms"
        }
    }

    struct Node: Encodable {
        var address: String
        var up: Bool
        var role: String
        var busy: Bool
        var consecutiveFailures: Int
        var lastError: String

        enum CodingKeys: String, CodingKey {
            case address, up, role, busy
            case consecutiveFailures = "consecutive_failures", lastError = "last_error"
        }
    }

    /// discovery: cluster — each shard: its slots, its confirmed master, its replicas.
    struct Shard: Encodable {
        var slots: String
        var master: String
        var replicas: [Replica]
    }

    var master: String
    /// nil until the first check has answered.
    var replicas: [Replica]?
    var sentinelMaster: String?
    var nodes: [Node]?
    var shards: [Shard]?

    enum CodingKeys: String, CodingKey {
        case master, replicas, nodes, shards
        case sentinelMaster = "sentinel_master"
    }
}

extension RedactedValue: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .int(let number): try container.encode(number)
        case .list(let items): try container.encode(items)
        case .object(let members): try container.encode(members)
        }
    }
}

extension TopologyView {
    /// `0-5460,5462` for the ranges.
    static func slotText(_ ranges: [ClosedRange<Int>]) -> String {
        ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
            .joined(separator: ",")
    }
}
