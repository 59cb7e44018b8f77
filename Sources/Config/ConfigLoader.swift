import EventLoop

/// Reads and validates the YAML config. Every problem names its key and line; nothing is applied
/// until the whole file is valid. The keys themselves are the rows of `ConfigKey.all`.
public enum ConfigLoader {
    /// What a key's reader may need besides its own node.
    struct Reading: Sendable {
        /// Every key the file has, for the keys read together (the topology).
        var values: [String: YAMLNode]
        /// Relative `password_file` paths are relative to this directory (the config file's).
        var baseDirectory: String
        /// Supplies `REDIS_AMBASSADOR_PASSWORD` and `REDIS_AMBASSADOR_SENTINEL_PASSWORD`.
        var environment: [String: String]
    }

    /// Loads the file at `path`. `environment` supplies `REDIS_AMBASSADOR_PASSWORD`.
    public static func load(path: String, environment: [String: String] = System.environment)
        throws(ConfigError) -> AmbassadorConfig
    {
        guard let bytes = System.contents(atPath: path) else {
            throw ConfigError(key: nil, line: nil, "cannot read \(path)")
        }
        let base = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        return try parse(bytes, baseDirectory: base.isEmpty ? "/" : base, environment: environment)
    }

    /// Parses YAML text. Relative `password_file` paths are relative to `baseDirectory`.
    public static func parse(_ text: String, baseDirectory: String = ".",
                             environment: [String: String] = [:]) throws(ConfigError) -> AmbassadorConfig {
        try parse(Array(text.utf8), baseDirectory: baseDirectory, environment: environment)
    }

    static func parse(_ bytes: [UInt8], baseDirectory: String, environment: [String: String]) throws(ConfigError) -> AmbassadorConfig {
        guard let root = try YAMLNode.parse(bytes) else {
            throw ConfigError(key: nil, line: nil, "the file is empty: `listen` and `master` are required")
        }
        guard let mapping = root.mapping else {
            throw ConfigError(key: nil, line: root.line, "the top level must be a mapping of keys")
        }
        var values: [String: YAMLNode] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else {
                throw ConfigError(key: nil, line: keyNode.line, "keys must be strings")
            }
            guard ConfigKey.named(key) != nil else {
                let known = ConfigKey.all.map(\.name).sorted().joined(separator: ", ")
                throw ConfigError(key: key, line: keyNode.line, "unknown key (known keys: \(known))")
            }
            guard values[key] == nil else {
                throw ConfigError(key: key, line: keyNode.line, "is given twice")
            }
            values[key] = value
        }
        let reading = Reading(values: values, baseDirectory: baseDirectory, environment: environment)
        var config = try topology(values)
        for key in ConfigKey.all {
            try key.read?(&config, values[key.name], reading)
        }
        return config
    }

    /// The keys that decide the topology, read together since they depend on each other:
    /// `listen`, `discovery` and, by mode, `master` + `replicas`, `nodes`, or `sentinels` +
    /// `master_name`; keys of another mode are refused.
    static func topology(_ values: [String: YAMLNode]) throws(ConfigError) -> AmbassadorConfig {
        func required(_ key: String) throws(ConfigError) -> YAMLNode {
            guard let node = values[key] else { throw ConfigError(key: key, line: nil, "is required") }
            return node
        }
        let listen = try listenAddress(try required("listen"))
        if listen.tcp != nil, let node = values["listen_mode"] {
            throw ConfigError(key: "listen_mode", line: node.line, "only used with listen: unix:/path")
        }
        var discovery = Discovery.static
        if let node = values["discovery"] {
            switch try string("discovery", node) {
            case "static": discovery = .static
            case "role":
                let nodes = try distinctAddresses("nodes", values, for: node, discovery: "role", noun: "node")
                for key in ["master", "replicas"] where values[key] != nil {
                    throw ConfigError(key: key, line: values[key]!.line, "not used with discovery: role (the nodes' ROLE decides)")
                }
                discovery = .role(nodes: nodes)
            case "sentinel":
                // A sentinel listed twice would count twice toward the majority that decides the master.
                let sentinels = try distinctAddresses("sentinels", values, for: node, discovery: "sentinel", noun: "sentinel")
                guard let nameNode = values["master_name"] else {
                    throw ConfigError(key: "master_name", line: node.line, "discovery: sentinel needs `master_name`")
                }
                let name = try string("master_name", nameNode)
                guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                    throw ConfigError(key: "master_name", line: nameNode.line, "expected a name without spaces")
                }
                for key in ["master", "replicas", "nodes"] where values[key] != nil {
                    throw ConfigError(key: key, line: values[key]!.line, "not used with discovery: sentinel (the sentinels decide)")
                }
                discovery = .sentinel(sentinels: sentinels, masterName: name)
            case "cluster":
                let seeds = try distinctAddresses("cluster_nodes", values, for: node, discovery: "cluster", noun: "seed node")
                for key in ["master", "replicas", "nodes"] where values[key] != nil {
                    throw ConfigError(key: key, line: values[key]!.line, "not used with discovery: cluster (the cluster's slot layout decides)")
                }
                discovery = .cluster(seeds: seeds)
            case let other:
                throw ConfigError(key: "discovery", line: node.line, "expected static, role, sentinel or cluster, got '\(other)'")
            }
        }
        if case .role = discovery {} else if let node = values["nodes"] {
            throw ConfigError(key: "nodes", line: node.line, "only used with discovery: role")
        }
        if !discovery.isCluster {
            for key in ["cluster_nodes", "cluster_refresh"] where values[key] != nil {
                throw ConfigError(key: key, line: values[key]!.line, "only used with discovery: cluster")
            }
        }
        if case .sentinel = discovery {} else {
            for key in ["sentinels", "master_name", "sentinel_username", "sentinel_password_file"] where values[key] != nil {
                throw ConfigError(key: key, line: values[key]!.line, "only used with discovery: sentinel")
            }
        }
        var config: AmbassadorConfig
        switch discovery {
        case .sentinel(let sentinels, _):
            // Until the sentinels answer, the first sentinel's address stands in as master: no
            // write goes anywhere before a check confirms a real one.
            config = AmbassadorConfig(listen: listen, master: sentinels[0])
        case .cluster(let seeds):
            // Until the layout is read, the first seed stands in as the one shard's master; it
            // takes no write before a check confirms it.
            config = AmbassadorConfig(listen: listen, master: seeds[0])
        case .role(let nodes):
            // Until the first ROLE answers, the first node stands in as master; it takes no write
            // before a check confirms it.
            config = AmbassadorConfig(listen: listen, master: nodes[0], replicas: Array(nodes.dropFirst()))
        case .static:
            config = AmbassadorConfig(listen: listen, master: try address("master", try required("master")))
            // `replicas:` with nothing after it means none.
            if let node = values["replicas"], !node.isNull {
                try readReplicas(node, into: &config)
            }
        }
        config.discovery = discovery
        return config
    }

    /// `replicas`: each entry `host:port`, or `{address: host:port, weight: 2}`.
    private static func readReplicas(_ node: YAMLNode, into config: inout AmbassadorConfig) throws(ConfigError) {
        guard let sequence = node.sequence else {
            throw ConfigError(key: "replicas", line: node.line, "expected a list of host:port")
        }
        var replicas: [Address] = []
        for item in sequence {
            guard let entry = item.mapping else {
                replicas.append(try address("replicas", item))
                continue
            }
            var found: Address?
            var weight = 1
            for (keyNode, value) in entry {
                switch keyNode.string {
                case "address": found = try address("replicas.address", value)
                case "weight": weight = try integer("replicas.weight", value, in: 1...1000)
                default:
                    throw ConfigError(key: "replicas.\(keyNode.string ?? "?")", line: keyNode.line, "unknown key (known keys: address, weight)")
                }
            }
            guard let found else { throw ConfigError(key: "replicas.address", line: item.line, "is required in a replica mapping") }
            if weight != 1 { config.replicaWeights[found] = weight }
            replicas.append(found)
        }
        if Set(replicas).count != replicas.count {
            throw ConfigError(key: "replicas", line: node.line, "lists the same replica twice")
        }
        if replicas.contains(config.master) {
            throw ConfigError(key: "replicas", line: node.line, "lists the master \(config.master)")
        }
        config.replicas = replicas
    }

    // MARK: typed values

    /// `a, b or c`.
    static func alternatives(_ names: [String]) -> String {
        names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    static func string(_ key: String, _ node: YAMLNode) throws(ConfigError) -> String {
        guard let text = node.string else {
            throw ConfigError(key: key, line: node.line, "expected \(ConfigKey.named(key)?.expects ?? "a value")")
        }
        return text
    }

    /// A secret read from the file `node` names (relative to the config's directory); a trailing
    /// newline (as `echo` or a Kubernetes Secret may leave) is not part of it.
    static func secret(_ key: String, _ node: YAMLNode, baseDirectory: String) throws(ConfigError) -> (String, path: String) {
        var path = try string(key, node)
        if !path.hasPrefix("/") { path = baseDirectory + "/" + path }
        guard let bytes = System.contents(atPath: path) else {
            throw ConfigError(key: key, line: node.line, "cannot read \(path)")
        }
        var secret = String(decoding: bytes, as: UTF8.self)
        while secret.hasSuffix("\n") || secret.hasSuffix("\r") { secret.removeLast() }
        return (secret, path)
    }

    /// The list of host:port under `key` that `discovery: <mode>` (at `modeNode`) needs: present,
    /// not empty, each address once.
    static func distinctAddresses(_ key: String, _ values: [String: YAMLNode], for modeNode: YAMLNode,
                                  discovery mode: String, noun: String) throws(ConfigError) -> [Address] {
        guard let list = values[key], let sequence = list.sequence, !sequence.isEmpty else {
            throw ConfigError(key: key, line: modeNode.line, "discovery: \(mode) needs `\(key)`, a list of host:port")
        }
        var addresses: [Address] = []
        for item in sequence { addresses.append(try address(key, item)) }
        if Set(addresses).count != addresses.count {
            throw ConfigError(key: key, line: list.line, "lists the same \(noun) twice")
        }
        return addresses
    }

    /// `{deny: [...], allow: [...]}`: command names and `@categories` Redis knows.
    static func commandRules(_ key: String, _ node: YAMLNode) throws(ConfigError) -> CommandRules {
        guard let mapping = node.mapping else { throw ConfigError(key: key, line: node.line, "expected {deny: [...], allow: [...]}") }
        var lists: [String: [String]] = [:]
        for (field, value) in mapping {
            guard let name = field.string, name == "deny" || name == "allow" else {
                throw ConfigError(key: "\(key).\(field.string ?? "?")", line: field.line, "unknown key (known keys: deny, allow)")
            }
            guard let items = value.sequence else {
                throw ConfigError(key: "\(key).\(name)", line: value.line, "expected a list of command names and @categories")
            }
            var entries: [String] = []
            for item in items {
                let entry = try string("\(key).\(name)", item).lowercased()
                if entry.hasPrefix("@"), !CommandRules.categories.contains(String(entry.dropFirst())) {
                    throw ConfigError(key: "\(key).\(name)", line: item.line,
                                      "unknown category '\(entry)' (known: \(CommandRules.categories.sorted().map { "@" + $0 }.joined(separator: " ")))")
                }
                guard !entry.isEmpty, !entry.contains(where: \.isWhitespace) else {
                    throw ConfigError(key: "\(key).\(name)", line: item.line, "expected a command name or @category, got '\(entry)'")
                }
                entries.append(entry)
            }
            lists[name] = entries
        }
        return CommandRules(deny: lists["deny"] ?? [], allow: lists["allow"] ?? [])
    }

    static func address(_ key: String, _ node: YAMLNode) throws(ConfigError) -> Address {
        let text = try string(key, node)
        guard let address = Address(parsing: text) else {
            throw ConfigError(key: key, line: node.line, "'\(text)' is not host:port")
        }
        return address
    }

    static func listenAddress(_ node: YAMLNode) throws(ConfigError) -> ListenAddress {
        let text = try string("listen", node)
        guard let address = ListenAddress(parsing: text) else {
            let why = text.hasPrefix("unix:")
                ? "needs an absolute path of at most \(ListenAddress.maxPathBytes) bytes after `unix:`"
                : "is not host:port or unix:/path"
            throw ConfigError(key: "listen", line: node.line, "'\(text)' \(why)")
        }
        return address
    }

    static func integer(_ key: String, _ node: YAMLNode, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try string(key, node)
        guard let value = Int(text), range.contains(value) else {
            let expects = ConfigKey.named(key)?.expects ?? "an integer \(range.lowerBound)...\(range.upperBound)"
            throw ConfigError(key: key, line: node.line, "expected \(expects), got '\(text)'")
        }
        return value
    }

    static func duration(_ key: String, _ node: YAMLNode) throws(ConfigError) -> Duration {
        let text = try string(key, node)
        guard let value = Duration(parsing: text) else {
            throw ConfigError(key: key, line: node.line, "expected a duration with a unit (250ms, 2s, 1m), got '\(text)'")
        }
        return value
    }
}
