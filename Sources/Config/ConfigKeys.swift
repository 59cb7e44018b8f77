/// The config keys as one table: each row says how its key is read from the file, what it
/// expects, whether a reload applies it, how `/config` shows it (secrets redacted) and how two
/// configs differ in it. Loading (`ConfigLoader`), the reload diff (`changedKeys`,
/// `applyingLive`), the `/config` view (`redacted`) and the key list (`check-config --keys`, and
/// the test that `Config/ambassador.yaml` documents every key) all derive from it.
///
/// A new key: a field in `AmbassadorConfig`, a row here, its documentation in
/// `Config/ambassador.yaml`. Rows are in the reference file's order, which is the order the
/// reload log names changed keys in.
public struct ConfigKey: Sendable {
    /// The key as written in the file.
    public let name: String
    /// What the key takes, for errors and the key list.
    public let expects: String
    /// A reload leaves it as it was (logged as needing a restart).
    public let restartOnly: Bool
    /// Its value never appears in `/config` or a log: shown as where it came from.
    public let secret: Bool
    /// Reads the key into the config; called for every row, with the key's node or nil when the
    /// file does not have it (a default, or an environment variable, may apply). nil: the key is
    /// read with the topology (`ConfigLoader.topology`), which has to see several keys at once.
    let read: (@Sendable (inout AmbassadorConfig, YAMLNode?, ConfigLoader.Reading) throws(ConfigError) -> Void)?
    /// Whether two configs differ in this key.
    let differs: @Sendable (AmbassadorConfig, AmbassadorConfig) -> Bool
    /// Copies this key's value from the running config (for restart-only keys on reload).
    let keep: @Sendable (inout AmbassadorConfig, AmbassadorConfig) -> Void
    /// The key's entries in the `/config` view (none when it is not set).
    let show: @Sendable (AmbassadorConfig) -> [(String, RedactedValue)]
    /// The files this key's value was read from besides the config file (secrets): watched like
    /// it, so a rotated Secret is a reload.
    var files: @Sendable (AmbassadorConfig) -> [String] = { _ in [] }

    /// A row for a key held in one field of `AmbassadorConfig`.
    static func field<Value: Equatable & Sendable>(
        _ name: String, _ path: WritableKeyPath<AmbassadorConfig, Value> & Sendable, expects: String,
        restartOnly: Bool = false,
        parse: (@Sendable (YAMLNode, ConfigLoader.Reading) throws(ConfigError) -> Value)?,
        show: @escaping @Sendable (Value) -> RedactedValue?
    ) -> ConfigKey {
        var read: (@Sendable (inout AmbassadorConfig, YAMLNode?, ConfigLoader.Reading) throws(ConfigError) -> Void)?
        if let parse {
            read = { (config: inout AmbassadorConfig, node: YAMLNode?, reading: ConfigLoader.Reading) throws(ConfigError) -> Void in
                if let node { config[keyPath: path] = try parse(node, reading) }
            }
        }
        let differs: @Sendable (AmbassadorConfig, AmbassadorConfig) -> Bool = { $0[keyPath: path] != $1[keyPath: path] }
        let keep: @Sendable (inout AmbassadorConfig, AmbassadorConfig) -> Void = { $0[keyPath: path] = $1[keyPath: path] }
        let entries: @Sendable (AmbassadorConfig) -> [(String, RedactedValue)] = { config in
            guard let value = show(config[keyPath: path]) else { return [] }
            return [(name, value)]
        }
        return ConfigKey(name: name, expects: expects, restartOnly: restartOnly, secret: false,
                         read: read, differs: differs, keep: keep, show: entries)
    }

    static func duration(_ name: String, _ path: WritableKeyPath<AmbassadorConfig, Duration> & Sendable,
                         expects: String, atLeast minimum: Duration? = nil) -> ConfigKey {
        field(name, path, expects: expects, parse: { (node, _) throws(ConfigError) in
            let value = try ConfigLoader.duration(name, node)
            if let minimum, value < minimum {
                throw ConfigError(key: name, line: node.line, "must be at least \(minimum)")
            }
            return value
        }, show: { .string($0.description) })
    }

    static func integer(_ name: String, _ path: WritableKeyPath<AmbassadorConfig, Int> & Sendable,
                        in range: ClosedRange<Int>, restartOnly: Bool = false) -> ConfigKey {
        field(name, path, expects: "an integer \(range.lowerBound)...\(range.upperBound)", restartOnly: restartOnly,
              parse: { (node, _) throws(ConfigError) in try ConfigLoader.integer(name, node, in: range) },
              show: { .int($0) })
    }

    static func choice<Value: RawRepresentable & CaseIterable & Equatable & Sendable>(
        _ name: String, _ path: WritableKeyPath<AmbassadorConfig, Value> & Sendable
    ) -> ConfigKey where Value.RawValue == String {
        let names = Value.allCases.map(\.rawValue)
        return field(name, path, expects: names.joined(separator: " | "), parse: { (node, _) throws(ConfigError) in
            let text = try ConfigLoader.string(name, node)
            guard let value = Value(rawValue: text) else {
                throw ConfigError(key: name, line: node.line, "expected \(ConfigLoader.alternatives(names)), got '\(text)'")
            }
            return value
        }, show: { .string($0.rawValue) })
    }

    /// A key read with the topology (see `ConfigLoader.topology`).
    static func topology(_ name: String, expects: String,
                         differs: @escaping @Sendable (AmbassadorConfig, AmbassadorConfig) -> Bool,
                         show: @escaping @Sendable (AmbassadorConfig) -> [(String, RedactedValue)]) -> ConfigKey {
        ConfigKey(name: name, expects: expects, restartOnly: false, secret: false, read: nil,
                  differs: differs, keep: { _, _ in }, show: show)
    }

    /// A key whose value is a mapping of its own (absent or null: not set).
    static func mapping(
        _ name: String, expects: String, secret: Bool,
        read: @escaping @Sendable (inout AmbassadorConfig, [(key: YAMLNode, value: YAMLNode)], YAMLNode, ConfigLoader.Reading) throws(ConfigError) -> Void,
        differs: @escaping @Sendable (AmbassadorConfig, AmbassadorConfig) -> Bool,
        keep: @escaping @Sendable (inout AmbassadorConfig, AmbassadorConfig) -> Void,
        show: @escaping @Sendable (AmbassadorConfig) -> [(String, RedactedValue)],
        files: @escaping @Sendable (AmbassadorConfig) -> [String]
    ) -> ConfigKey {
        ConfigKey(name: name, expects: expects, restartOnly: false, secret: secret,
                  read: { (config: inout AmbassadorConfig, node: YAMLNode?, reading: ConfigLoader.Reading) throws(ConfigError) in
                      guard let node, !node.isNull else { return }
                      guard let pairs = node.mapping else {
                          throw ConfigError(key: name, line: node.line, "expected \(expects)")
                      }
                      try read(&config, pairs, node, reading)
                  },
                  differs: differs, keep: keep, show: show, files: files)
    }

    /// A password read from a file (or an environment variable), shown only as where it came from.
    static func credential(_ name: String, variable: String, shownAs label: String, onlySentinel: Bool,
                           _ password: WritableKeyPath<AmbassadorConfig, String?> & Sendable,
                           source: WritableKeyPath<AmbassadorConfig, String?> & Sendable,
                           file: WritableKeyPath<AmbassadorConfig, String?> & Sendable) -> ConfigKey {
        ConfigKey(
            name: name, expects: "a file path (else the environment's \(variable))", restartOnly: false, secret: true,
            read: { (config: inout AmbassadorConfig, node: YAMLNode?, reading: ConfigLoader.Reading) throws(ConfigError) in
                if onlySentinel, case .sentinel = config.discovery {} else if onlySentinel { return }
                if let node {
                    let (secret, path) = try ConfigLoader.secret(name, node, baseDirectory: reading.baseDirectory)
                    (config[keyPath: password], config[keyPath: source], config[keyPath: file]) = (secret, "\(name) \(path)", path)
                } else if let secret = reading.environment[variable], !secret.isEmpty {
                    (config[keyPath: password], config[keyPath: source], config[keyPath: file]) = (secret, "environment \(variable)", nil)
                }
            },
            differs: { $0[keyPath: password] != $1[keyPath: password] || $0[keyPath: source] != $1[keyPath: source] },
            keep: { $0[keyPath: password] = $1[keyPath: password]; $0[keyPath: source] = $1[keyPath: source]; $0[keyPath: file] = $1[keyPath: file] },
            show: { config in
                config[keyPath: password] == nil ? [] : [(label, .string("<redacted> (\(config[keyPath: source] ?? "set"))"))]
            },
            files: { config in config[keyPath: file].map { [$0] } ?? [] })
    }

    /// Every key, in the reference file's order.
    public static let all: [ConfigKey] = [
        topology("listen", expects: "host:port or unix:/path", differs: { $0.listen != $1.listen },
                 show: { [("listen", .string($0.listen.description))] }),
        field("listen_mode", \.listenMode, expects: "an octal file mode (0660; with listen: unix:/path)",
              parse: { (node, _) throws(ConfigError) in
                  let text = try ConfigLoader.string("listen_mode", node)
                  guard (3...4).contains(text.count), text.allSatisfy({ ("0"..."7").contains($0) }),
                        let mode = UInt32(text, radix: 8), mode <= 0o777 else {
                      throw ConfigError(key: "listen_mode", line: node.line, "expected an octal file mode such as 0660, got '\(text)'")
                  }
                  return mode
              }, show: { .string("0" + String($0, radix: 8)) }),
        tls("listen_tls", \.listenTLS, server: true, expects: "a mapping: {cert_file, key_file, ca_file (mTLS), min_version}"),
        topology("master", expects: "host:port", differs: { $0.master != $1.master },
                 show: { [("master", .string($0.master.description))] }),
        topology("replicas", expects: "a list of host:port (or {address: host:port, weight: 2})",
                 differs: { $0.replicas != $1.replicas || $0.replicaWeights != $1.replicaWeights },
                 show: { config in
                     var entries: [(String, RedactedValue)] = [("replicas", .list(config.replicas.map(\.description)))]
                     if !config.replicaWeights.isEmpty {
                         entries.append(("replica_weights", .object(Dictionary(uniqueKeysWithValues:
                             config.replicaWeights.map { ($0.key.description, RedactedValue.int($0.value)) }))))
                     }
                     return entries
                 }),
        topology("discovery", expects: "static | role | sentinel | cluster", differs: { $0.discovery.name != $1.discovery.name },
                 show: { [("discovery", .string($0.discovery.name))] }),
        topology("nodes", expects: "a list of host:port (discovery: role)",
                 differs: { $0.discovery.nodes != $1.discovery.nodes },
                 show: { config in config.discovery.nodes.map { [("nodes", .list($0.map(\.description)))] } ?? [] }),
        topology("sentinels", expects: "a list of host:port (discovery: sentinel)",
                 differs: { $0.discovery.sentinels != $1.discovery.sentinels },
                 show: { config in config.discovery.sentinels.map { [("sentinels", .list($0.map(\.description)))] } ?? [] }),
        topology("master_name", expects: "the name the sentinels monitor (discovery: sentinel)",
                 differs: { $0.discovery.masterName != $1.discovery.masterName },
                 show: { config in config.discovery.masterName.map { [("master_name", .string($0))] } ?? [] }),
        topology("cluster_nodes", expects: "a list of host:port, seed nodes of the cluster (discovery: cluster)",
                 differs: { $0.discovery.seeds != $1.discovery.seeds },
                 show: { config in config.discovery.seeds.map { [("cluster_nodes", .list($0.map(\.description)))] } ?? [] }),
        duration("cluster_refresh", \.clusterRefresh, expects: "a duration (5s; at least 100ms)", atLeast: Duration(seconds: 0.1)),
        field("sentinel_username", \.sentinelUsername, expects: "a string (discovery: sentinel)",
              parse: { (node, _) throws(ConfigError) in try ConfigLoader.string("sentinel_username", node) },
              show: { $0.map { .string($0) } }),
        credential("sentinel_password_file", variable: "REDIS_AMBASSADOR_SENTINEL_PASSWORD", shownAs: "sentinel_password",
                   onlySentinel: true, \.sentinelPassword, source: \.sentinelPasswordSource, file: \.sentinelPasswordFile),
        tls("sentinel_tls", \.sentinelTLS, server: false,
            expects: "true, false or a mapping: {ca_file, cert_file, key_file, server_name, verify, min_version}"),
        duration("failover_hold", \.failoverHold, expects: "a duration (2s)"),
        duration("health_interval", \.healthInterval, expects: "a duration (500ms; at least 10ms)",
                 atLeast: Duration(seconds: 0.01)),
        integer("health_failures", \.healthFailures, in: 1...100),
        duration("max_replica_lag", \.maxReplicaLag, expects: "a duration (1s; 0s: no limit)"),
        choice("balance", \.balance),
        field("read_your_writes", \.readYourWrites, expects: "session | app | off | a duration (2s)",
              parse: { (node, _) throws(ConfigError) in
                  let text = try ConfigLoader.string("read_your_writes", node)
                  switch text {
                  case "off", "false": return .off
                  case "session", "offset": return .session
                  case "app": return .app
                  default:
                      guard let value = Duration(parsing: text) else {
                          throw ConfigError(key: "read_your_writes", line: node.line,
                                            "expected session, app, off or a duration (2s), got '\(text)'")
                      }
                      return value.seconds == 0 ? .off : .duration(value)
                  }
              }, show: { .string($0.description) }),
        duration("command_timeout", \.commandTimeout, expects: "a duration (0s: off)"),
        duration("stall_threshold", \.stallThreshold, expects: "a duration (50ms; 0s: never)"),
        field("loop_pause", \.loopPause, expects: "a duration up to 1ms (0s: off)",
              parse: { (node, _) throws(ConfigError) in
                  let value = try ConfigLoader.duration("loop_pause", node)
                  if AmbassadorConfig.maxLoopPause < value {
                      throw ConfigError(key: "loop_pause", line: node.line, "must be at most \(AmbassadorConfig.maxLoopPause)")
                  }
                  return value
              }, show: { .string($0.description) }),
        choice("read_policy", \.readPolicy),
        field("username", \.username, expects: "a string",
              parse: { (node, _) throws(ConfigError) in try ConfigLoader.string("username", node) },
              show: { $0.map { .string($0) } }),
        credential("password_file", variable: "REDIS_AMBASSADOR_PASSWORD", shownAs: "password", onlySentinel: false,
                   \.password, source: \.passwordSource, file: \.passwordFile),
        ConfigKey(
            name: "auth_token_file", expects: "a file path (a token rewritten by a refresher; not with password_file)",
            restartOnly: false, secret: true,
            read: { (config: inout AmbassadorConfig, node: YAMLNode?, reading: ConfigLoader.Reading) throws(ConfigError) in
                guard let node, !node.isNull else { return }
                if config.passwordFile != nil || config.password != nil {
                    throw ConfigError(key: "auth_token_file", line: node.line,
                                      "give password_file (or REDIS_AMBASSADOR_PASSWORD) or auth_token_file, not both")
                }
                let (token, path) = try ConfigLoader.secret("auth_token_file", node, baseDirectory: reading.baseDirectory)
                guard !token.isEmpty else { throw ConfigError(key: "auth_token_file", line: node.line, "\(path) is empty") }
                (config.authToken, config.authTokenFile) = (token, path)
            },
            differs: { $0.authToken != $1.authToken || $0.authTokenFile != $1.authTokenFile },
            keep: { $0.authToken = $1.authToken; $0.authTokenFile = $1.authTokenFile },
            show: { config in config.authTokenFile.map { [("auth_token", .string("<redacted> (auth_token_file \($0))"))] } ?? [] },
            files: { config in config.authTokenFile.map { [$0] } ?? [] }),
        tls("backend_tls", \.backendTLS, server: false,
            expects: "true, false or a mapping: {ca_file, cert_file, key_file, server_name, verify, min_version}"),
        integer("backend_connections", \.backendConnections, in: 1...64, restartOnly: true),
        integer("pinned_pool_size", \.pinnedPoolSize, in: 0...1024),
        mapping(
            "clients", expects: "a mapping: `password_file: path` and/or `users: [{name, password_file}]`", secret: true,
            read: { (config: inout AmbassadorConfig, mapping: [(key: YAMLNode, value: YAMLNode)], node: YAMLNode,
                     reading: ConfigLoader.Reading) throws(ConfigError) in
                var users: [ClientUser] = []
                func add(_ name: String, _ file: YAMLNode, key: String) throws(ConfigError) {
                    let (password, path) = try ConfigLoader.secret(key, file, baseDirectory: reading.baseDirectory)
                    guard !password.isEmpty else { throw ConfigError(key: key, line: file.line, "\(path) is empty") }
                    guard !users.contains(where: { $0.name == name }) else {
                        throw ConfigError(key: key, line: file.line, "user \(name) is given twice")
                    }
                    users.append(ClientUser(name: name, password: password, passwordFile: path))
                }
                for (key, value) in mapping {
                    switch key.string {
                    case "password_file": try add("default", value, key: "clients.password_file")
                    case "users":
                        guard let list = value.sequence else {
                            throw ConfigError(key: "clients.users", line: value.line, "expected a list of {name, password_file}")
                        }
                        for entry in list {
                            guard let fields = entry.mapping else {
                                throw ConfigError(key: "clients.users", line: entry.line, "expected {name: …, password_file: …}")
                            }
                            var name: String?
                            var file: YAMLNode?
                            var rules: CommandRules?
                            for (field, value) in fields {
                                switch field.string {
                                case "name": name = try ConfigLoader.string("clients.users.name", value)
                                case "password_file": file = value
                                case "commands": rules = try ConfigLoader.commandRules("clients.users.commands", value)
                                default:
                                    throw ConfigError(key: "clients.users.\(field.string ?? "?")", line: field.line,
                                                      "unknown key (known keys: name, password_file, commands)")
                                }
                            }
                            guard let name, !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                                throw ConfigError(key: "clients.users.name", line: entry.line, "expected a user name without spaces")
                            }
                            guard let file else {
                                throw ConfigError(key: "clients.users.password_file", line: entry.line, "is required")
                            }
                            try add(name, file, key: "clients.users.password_file")
                            users[users.count - 1].commands = rules
                        }
                    default:
                        throw ConfigError(key: "clients.\(key.string ?? "?")", line: key.line, "unknown key (known keys: password_file, users)")
                    }
                }
                guard !users.isEmpty else {
                    throw ConfigError(key: "clients", line: node.line, "names no user: give `password_file` or `users`")
                }
                config.clientUsers = users
            },
            differs: { $0.clientUsers != $1.clientUsers },
            keep: { $0.clientUsers = $1.clientUsers },
            show: { config in
                guard config.requiresClientAuth else { return [] }
                return [("clients", .object(Dictionary(uniqueKeysWithValues: config.clientUsers.map {
                    ($0.name, RedactedValue.string("<redacted> (\($0.passwordFile))"))
                })))]
            },
            files: { $0.clientUsers.map(\.passwordFile) }),
        field("commands", \.commands, expects: "a mapping: `deny: [names, @categories]`, `allow: [...]`",
              parse: { (node, _) throws(ConfigError) in node.isNull ? nil : try ConfigLoader.commandRules("commands", node) },
              show: { rules in
                  rules.map { .object(["deny": .list($0.deny), "allow": .list($0.allow)]) }
              }),
        integer("max_clients", \.maxClients, in: 1...1_000_000),
        duration("client_idle_timeout", \.clientIdleTimeout, expects: "a duration (0s: never, the default)"),
        duration("connect_timeout", \.connectTimeout, expects: "a duration (2s)"),
        duration("reconnect_interval", \.reconnectInterval, expects: "a duration (250ms)"),
        duration("reconnect_max", \.reconnectMax, expects: "a duration (2s)"),
        field("workers", \.workers, expects: "auto or an integer 1...64", restartOnly: true,
              parse: { (node, _) throws(ConfigError) in
                  let text = try ConfigLoader.string("workers", node)
                  if text == "auto" { return nil }
                  guard let count = Int(text), (1...64).contains(count) else {
                      throw ConfigError(key: "workers", line: node.line, "expected auto or an integer 1...64, got '\(text)'")
                  }
                  return count
              }, show: { .some($0.map { .int($0) } ?? .string("auto")) }),
        field("log_level", \.logLevel, expects: "debug | info | warning | error",
              parse: { (node, _) throws(ConfigError) in
                  let level = try ConfigLoader.string("log_level", node)
                  guard ["debug", "info", "warning", "error"].contains(level) else {
                      throw ConfigError(key: "log_level", line: node.line, "expected debug, info, warning or error, got '\(level)'")
                  }
                  return level
              }, show: { .string($0) }),
        mapping(
            "admin", expects: "a mapping with `listen: host:port` and optionally `token_file: path`", secret: false,
            read: { (config: inout AmbassadorConfig, mapping: [(key: YAMLNode, value: YAMLNode)], node: YAMLNode,
                     reading: ConfigLoader.Reading) throws(ConfigError) in
                for (key, value) in mapping {
                    switch key.string {
                    case "listen": config.adminListen = try ConfigLoader.address("admin.listen", value)
                    case "token_file":
                        let (token, path) = try ConfigLoader.secret("admin.token_file", value, baseDirectory: reading.baseDirectory)
                        guard !token.isEmpty else { throw ConfigError(key: "admin.token_file", line: value.line, "\(path) is empty") }
                        (config.adminToken, config.adminTokenFile) = (token, path)
                    default:
                        throw ConfigError(key: "admin.\(key.string ?? "?")", line: key.line, "unknown key (known keys: listen, token_file)")
                    }
                }
                guard config.adminListen != nil else {
                    throw ConfigError(key: "admin.listen", line: node.line, "is required when `admin` is given")
                }
            },
            differs: { $0.adminListen != $1.adminListen || $0.adminToken != $1.adminToken || $0.adminTokenFile != $1.adminTokenFile },
            keep: { $0.adminListen = $1.adminListen; $0.adminToken = $1.adminToken; $0.adminTokenFile = $1.adminTokenFile },
            show: { config in
                guard let listen = config.adminListen else { return [] }
                var admin: [String: RedactedValue] = ["listen": .string(listen.description)]
                if let file = config.adminTokenFile { admin["token"] = .string("<redacted> (admin.token_file \(file))") }
                return [("admin", .object(admin))]
            },
            files: { $0.adminTokenFile.map { [$0] } ?? [] }),
        duration("shutdown_timeout", \.shutdownTimeout, expects: "a duration (10s)"),
    ]

    /// The row for `name`.
    public static func named(_ name: String) -> ConfigKey? { all.first { $0.name == name } }

    /// Keys a reload cannot apply to a running process.
    public static var restartOnlyNames: [String] { all.filter(\.restartOnly).map(\.name) }
}

extension Discovery {
    var nodes: [Address]? {
        if case .role(let nodes) = self { return nodes }
        return nil
    }

    var sentinels: [Address]? {
        if case .sentinel(let sentinels, _) = self { return sentinels }
        return nil
    }

    var seeds: [Address]? {
        if case .cluster(let seeds) = self { return seeds }
        return nil
    }

    var masterName: String? {
        if case .sentinel(_, let name) = self { return name }
        return nil
    }
}
