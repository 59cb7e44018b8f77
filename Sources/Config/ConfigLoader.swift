import Foundation
import Yams

/// Reads and validates the YAML config. Every problem names its key and line; nothing is applied
/// until the whole file is valid.
public enum ConfigLoader {
    /// The keys a file may have, with what each one expects (for error messages).
    static let keys: [String: String] = [
        "listen": "host:port", "master": "host:port", "replicas": "a list of host:port",
        "read_policy": "master | prefer-replica | replica", "username": "a string",
        "password_file": "a file path", "backend_connections": "an integer 1...64",
        "pinned_pool_size": "an integer 0...1024", "connect_timeout": "a duration (250ms, 2s)",
        "reconnect_interval": "a duration (250ms, 2s)", "log_level": "debug | info | warning | error",
        "workers": "auto or an integer 1...64", "admin": "a mapping with `listen: host:port`",
        "shutdown_timeout": "a duration (10s)", "discovery": "static | role | sentinel",
        "sentinels": "a list of host:port (discovery: sentinel)", "master_name": "the name the sentinels monitor",
        "nodes": "a list of host:port (discovery: role)", "balance": "least-outstanding | round-robin",
        "health_interval": "a duration (500ms)", "health_failures": "an integer 1...100",
        "max_replica_lag": "a duration (1s; 0s: no limit)", "read_your_writes": "session | app | off | a duration (2s)",
        "failover_hold": "a duration (2s)", "command_timeout": "a duration (0s: off)",
        "stall_threshold": "a duration (50ms; 0s: never)",
        "sentinel_username": "a string (discovery: sentinel)", "sentinel_password_file": "a file path (discovery: sentinel)",
    ]

    /// Loads the file at `path`. `environment` supplies `REDIS_AMBASSADOR_PASSWORD`.
    public static func load(path: String,
                            environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigError) -> AmbassadorConfig
    {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: nil, line: nil, "cannot read \(path)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(String(decoding: data, as: UTF8.self), baseDirectory: base, environment: environment)
    }

    /// Parses YAML text. Relative `password_file` paths are relative to `baseDirectory`.
    public static func parse(_ text: String, baseDirectory: String = ".",
                             environment: [String: String] = [:]) throws(ConfigError) -> AmbassadorConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigError(key: nil, line: nil, "the file is empty: `listen` and `master` are required")
            }
            root = node
        } catch let error as ConfigError {
            throw error
        } catch let error as YamlError {
            throw ConfigError(key: nil, line: yamlLine(error), "not valid YAML: \(yamlMessage(error))")
        } catch {
            throw ConfigError(key: nil, line: nil, "not valid YAML: \(error)")
        }
        guard let mapping = root.mapping else {
            throw ConfigError(key: nil, line: line(root), "the top level must be a mapping of keys")
        }
        var values: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else {
                throw ConfigError(key: nil, line: line(keyNode), "keys must be strings")
            }
            guard keys[key] != nil else {
                let known = keys.keys.sorted().joined(separator: ", ")
                throw ConfigError(key: key, line: line(keyNode), "unknown key (known keys: \(known))")
            }
            values[key] = value
        }
        func required(_ key: String) throws(ConfigError) -> Node {
            guard let node = values[key] else { throw ConfigError(key: key, line: nil, "is required") }
            return node
        }
        let listen = try address("listen", try required("listen"))
        var discovery = Discovery.static
        if let node = values["discovery"] {
            switch try string("discovery", node) {
            case "static": discovery = .static
            case "role":
                let nodes = try distinctAddresses("nodes", values, for: node, discovery: "role", noun: "node")
                for key in ["master", "replicas"] where values[key] != nil {
                    throw ConfigError(key: key, line: line(values[key]!), "not used with discovery: role (the nodes' ROLE decides)")
                }
                discovery = .role(nodes: nodes)
            case "sentinel":
                // A sentinel listed twice would count twice toward the majority that decides the master.
                let sentinels = try distinctAddresses("sentinels", values, for: node, discovery: "sentinel", noun: "sentinel")
                guard let nameNode = values["master_name"] else {
                    throw ConfigError(key: "master_name", line: line(node), "discovery: sentinel needs `master_name`")
                }
                let name = try string("master_name", nameNode)
                guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                    throw ConfigError(key: "master_name", line: line(nameNode), "expected a name without spaces")
                }
                for key in ["master", "replicas", "nodes"] where values[key] != nil {
                    throw ConfigError(key: key, line: line(values[key]!), "not used with discovery: sentinel (the sentinels decide)")
                }
                discovery = .sentinel(sentinels: sentinels, masterName: name)
            case let other:
                throw ConfigError(key: "discovery", line: line(node), "expected static, role or sentinel, got '\(other)'")
            }
        }
        if case .role = discovery {} else if let node = values["nodes"] {
            throw ConfigError(key: "nodes", line: line(node), "only used with discovery: role")
        }
        if case .sentinel = discovery {} else {
            for key in ["sentinels", "master_name", "sentinel_username", "sentinel_password_file"] where values[key] != nil {
                throw ConfigError(key: key, line: line(values[key]!), "only used with discovery: sentinel")
            }
        }
        var config: AmbassadorConfig
        if case .sentinel(let sentinels, _) = discovery {
            // Until the sentinels answer, the first sentinel's address stands in as master: no
            // write goes anywhere before a check confirms a real one.
            config = AmbassadorConfig(listen: listen, master: sentinels[0])
            config.discovery = discovery
            return try finish(config, values, baseDirectory, environment)
        }
        if case .role(let nodes) = discovery {
            // Until the first ROLE answers, the first node stands in as master; it takes no write
            // before a check confirms it.
            config = AmbassadorConfig(listen: listen, master: nodes[0], replicas: Array(nodes.dropFirst()))
            config.discovery = discovery
            return try finish(config, values, baseDirectory, environment)
        }
        config = AmbassadorConfig(listen: listen, master: try address("master", try required("master")))
        // `replicas:` with nothing after it means none.
        if let node = values["replicas"], node.null == nil {
            guard let sequence = node.sequence else {
                throw ConfigError(key: "replicas", line: line(node), "expected a list of host:port")
            }
            config.replicas = try sequence.map { (item) throws(ConfigError) -> Address in
                // `- host:port`, or `- {address: host:port, weight: 2}`.
                guard let entry = item.mapping else { return try address("replicas", item) }
                var found: Address?
                var weight = 1
                for (keyNode, value) in entry {
                    switch keyNode.string {
                    case "address": found = try address("replicas.address", value)
                    case "weight": weight = try integer("replicas.weight", value, in: 1...1000)
                    default:
                        throw ConfigError(key: "replicas.\(keyNode.string ?? "?")", line: line(keyNode), "unknown key (known keys: address, weight)")
                    }
                }
                guard let found else { throw ConfigError(key: "replicas.address", line: line(item), "is required in a replica mapping") }
                if weight != 1 { config.replicaWeights[found] = weight }
                return found
            }
            if Set(config.replicas).count != config.replicas.count {
                throw ConfigError(key: "replicas", line: line(node), "lists the same replica twice")
            }
            if config.replicas.contains(config.master) {
                throw ConfigError(key: "replicas", line: line(node), "lists the master \(config.master)")
            }
        }
        return try finish(config, values, baseDirectory, environment)
    }

    private static func finish(_ partial: AmbassadorConfig, _ values: [String: Node], _ baseDirectory: String,
                               _ environment: [String: String]) throws(ConfigError) -> AmbassadorConfig {
        var config = partial
        if let node = values["read_policy"] {
            let text = try string("read_policy", node)
            guard let policy = ReadPolicy(rawValue: text) else {
                throw ConfigError(key: "read_policy", line: line(node),
                                  "expected master, prefer-replica or replica, got '\(text)'")
            }
            config.readPolicy = policy
        }
        if let node = values["username"] { config.username = try string("username", node) }
        if let login = try credential("password_file", "REDIS_AMBASSADOR_PASSWORD", values, baseDirectory, environment) {
            config.password = login.password
            config.passwordSource = login.source
            config.passwordFile = login.file
        }
        if case .sentinel = config.discovery {
            if let node = values["sentinel_username"] { config.sentinelUsername = try string("sentinel_username", node) }
            if let login = try credential("sentinel_password_file", "REDIS_AMBASSADOR_SENTINEL_PASSWORD", values, baseDirectory, environment) {
                config.sentinelPassword = login.password
                config.sentinelPasswordSource = login.source
                config.sentinelPasswordFile = login.file
            }
        }
        if let node = values["backend_connections"] {
            config.backendConnections = try integer("backend_connections", node, in: 1...64)
        }
        if let node = values["pinned_pool_size"] {
            config.pinnedPoolSize = try integer("pinned_pool_size", node, in: 0...1024)
        }
        if let node = values["connect_timeout"] { config.connectTimeout = try duration("connect_timeout", node) }
        if let node = values["reconnect_interval"] { config.reconnectInterval = try duration("reconnect_interval", node) }
        if let node = values["workers"] {
            let text = try string("workers", node)
            if text != "auto" {
                guard let count = Int(text), (1...64).contains(count) else {
                    throw ConfigError(key: "workers", line: line(node), "expected auto or an integer 1...64, got '\(text)'")
                }
                config.workers = count
            }
        }
        if let node = values["admin"], node.null == nil {
            guard let mapping = node.mapping else {
                throw ConfigError(key: "admin", line: line(node), "expected a mapping with `listen: host:port`")
            }
            for (keyNode, value) in mapping {
                guard keyNode.string == "listen" else {
                    throw ConfigError(key: "admin.\(keyNode.string ?? "?")", line: line(keyNode), "unknown key (known keys: listen)")
                }
                config.adminListen = try address("admin.listen", value)
            }
            guard config.adminListen != nil else {
                throw ConfigError(key: "admin.listen", line: line(node), "is required when `admin` is given")
            }
        }
        if let node = values["shutdown_timeout"] { config.shutdownTimeout = try duration("shutdown_timeout", node) }
        if let node = values["balance"] {
            let text = try string("balance", node)
            guard let balance = Balance(rawValue: text) else {
                throw ConfigError(key: "balance", line: line(node), "expected least-outstanding or round-robin, got '\(text)'")
            }
            config.balance = balance
        }
        if let node = values["health_interval"] {
            config.healthInterval = try duration("health_interval", node)
            guard config.healthInterval.seconds >= 0.01 else {
                throw ConfigError(key: "health_interval", line: line(node), "must be at least 10ms")
            }
        }
        if let node = values["health_failures"] { config.healthFailures = try integer("health_failures", node, in: 1...100) }
        if let node = values["max_replica_lag"] { config.maxReplicaLag = try duration("max_replica_lag", node) }
        if let node = values["read_your_writes"] {
            let text = try string("read_your_writes", node)
            if text == "off" || text == "false" {
                config.readYourWrites = .off
            } else if text == "session" || text == "offset" {
                config.readYourWrites = .session
            } else if text == "app" {
                config.readYourWrites = .app
            } else if let value = Duration(parsing: text) {
                config.readYourWrites = value.seconds == 0 ? .off : .duration(value)
            } else {
                throw ConfigError(key: "read_your_writes", line: line(node), "expected session, app, off or a duration (2s), got '\(text)'")
            }
        }
        if let node = values["failover_hold"] { config.failoverHold = try duration("failover_hold", node) }
        if let node = values["command_timeout"] { config.commandTimeout = try duration("command_timeout", node) }
        if let node = values["stall_threshold"] { config.stallThreshold = try duration("stall_threshold", node) }
        if let node = values["log_level"] {
            let level = try string("log_level", node)
            guard ["debug", "info", "warning", "error"].contains(level) else {
                throw ConfigError(key: "log_level", line: line(node), "expected debug, info, warning or error, got '\(level)'")
            }
            config.logLevel = level
        }
        return config
    }

    // MARK: typed values

    static func line(_ node: Node) -> Int? { node.mark.map { $0.line } }

    static func string(_ key: String, _ node: Node) throws(ConfigError) -> String {
        guard let scalar = node.scalar else {
            throw ConfigError(key: key, line: line(node), "expected \(keys[key] ?? "a value")")
        }
        return scalar.string
    }

    /// A password from the file `key` names, else from the environment variable `variable`; with
    /// where it came from (for `/config` and logs) and the file (watched for changes).
    static func credential(_ key: String, _ variable: String, _ values: [String: Node], _ baseDirectory: String,
                           _ environment: [String: String]) throws(ConfigError) -> (password: String, source: String, file: String?)? {
        if let node = values[key] {
            let (password, path) = try secret(key, node, baseDirectory: baseDirectory)
            return (password, "\(key) \(path)", path)
        }
        if let password = environment[variable], !password.isEmpty { return (password, "environment \(variable)", nil) }
        return nil
    }

    /// A secret read from the file `node` names (relative to the config's directory); a trailing
    /// newline (as `echo` or a Kubernetes Secret may leave) is not part of it.
    static func secret(_ key: String, _ node: Node, baseDirectory: String) throws(ConfigError) -> (String, path: String) {
        var path = try string(key, node)
        if !path.hasPrefix("/") { path = baseDirectory + "/" + path }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: key, line: line(node), "cannot read \(path)")
        }
        var secret = String(decoding: data, as: UTF8.self)
        while secret.hasSuffix("\n") || secret.hasSuffix("\r") { secret.removeLast() }
        return (secret, path)
    }

    /// The list of host:port under `key` that `discovery: <mode>` (at `modeNode`) needs: present,
    /// not empty, each address once.
    static func distinctAddresses(_ key: String, _ values: [String: Node], for modeNode: Node, discovery mode: String,
                                  noun: String) throws(ConfigError) -> [Address] {
        guard let list = values[key], let sequence = list.sequence, !sequence.isEmpty else {
            throw ConfigError(key: key, line: line(modeNode), "discovery: \(mode) needs `\(key)`, a list of host:port")
        }
        let addresses = try sequence.map { (item) throws(ConfigError) -> Address in try address(key, item) }
        if Set(addresses).count != addresses.count {
            throw ConfigError(key: key, line: line(list), "lists the same \(noun) twice")
        }
        return addresses
    }

    static func address(_ key: String, _ node: Node) throws(ConfigError) -> Address {
        let text = try string(key, node)
        guard let address = Address(parsing: text) else {
            throw ConfigError(key: key, line: line(node), "'\(text)' is not host:port")
        }
        return address
    }

    static func integer(_ key: String, _ node: Node, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try string(key, node)
        guard let value = Int(text), range.contains(value) else {
            throw ConfigError(key: key, line: line(node), "expected \(keys[key] ?? "an integer"), got '\(text)'")
        }
        return value
    }

    static func duration(_ key: String, _ node: Node) throws(ConfigError) -> Duration {
        let text = try string(key, node)
        guard let value = Duration(parsing: text) else {
            throw ConfigError(key: key, line: line(node), "expected a duration with a unit (250ms, 2s, 1m), got '\(text)'")
        }
        return value
    }

    static func yamlLine(_ error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        default:
            return nil
        }
    }

    static func yamlMessage(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        default:
            return "\(error)"
        }
    }
}
