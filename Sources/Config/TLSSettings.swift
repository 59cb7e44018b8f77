import EventLoop

/// One TLS side as the config gives it (`backend_tls`, `sentinel_tls`, `listen_tls`), with the
/// context made from what its files held when the config was read. Two settings are equal when
/// their keys and their files' contents are: a rotated certificate is a changed config, whose
/// new context the next connections use (open ones keep theirs).
public struct TLSSettings: Sendable, Equatable {
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// Sent as SNI and expected in the server's certificate instead of the address's host.
    public var serverName: String?
    public var verify: TLSVerify = .full
    public var minVersion: TLSVersion = .tls12
    /// The files' contents, in the order ca, cert, key (compared, never shown).
    fileprivate var contents: [[UInt8]] = []
    /// The OpenSSL context every connection of this side is made from.
    public private(set) var context: TLSContext

    public static func == (a: TLSSettings, b: TLSSettings) -> Bool {
        a.caFile == b.caFile && a.certFile == b.certFile && a.keyFile == b.keyFile && a.serverName == b.serverName
            && a.verify == b.verify && a.minVersion == b.minVersion && a.contents == b.contents
    }

    /// The files read (watched like the config file: a change is a reload).
    public var files: [String] { [caFile, certFile, keyFile].compactMap { $0 } }

    /// The certificate this side presents expires then (seconds since the epoch), if it has one.
    public var certificateExpiry: Int? { context.certificateExpiry }

    /// How `/config` shows it (paths, never contents).
    var shown: RedactedValue {
        var fields: [String: RedactedValue] = ["min_version": .string(minVersion.rawValue)]
        if context.role == .client { fields["verify"] = .string(verify.rawValue) }
        if let caFile { fields["ca_file"] = .string(caFile) }
        if let certFile { fields["cert_file"] = .string(certFile) }
        if let keyFile { fields["key_file"] = .string(keyFile) }
        if let serverName { fields["server_name"] = .string(serverName) }
        return .object(fields)
    }

    /// Reads `key` (a mapping; for a client side also `true`, TLS with the system's trusted CAs,
    /// or `false`/null, plaintext). A file that cannot be read, holds no certificate, or a key that
    /// does not match its certificate is an error naming the key: a reload keeps the running config.
    static func read(_ key: String, _ node: YAMLNode, server: Bool, baseDirectory: String) throws(ConfigError) -> TLSSettings? {
        if node.isNull { return nil }
        if !server, let flag = node.string, node.mapping == nil {
            switch flag {
            case "true", "yes", "on": return try make(key, node, server: false, fields: [:], baseDirectory: baseDirectory)
            case "false", "no", "off": return nil
            default: break
            }
        }
        guard let pairs = node.mapping else {
            throw ConfigError(key: key, line: node.line, server
                ? "expected a mapping: {cert_file, key_file, ca_file, min_version}"
                : "expected true, false or a mapping: {ca_file, cert_file, key_file, server_name, verify, min_version}")
        }
        let known = server ? ["cert_file", "key_file", "ca_file", "min_version"]
                           : ["ca_file", "cert_file", "key_file", "server_name", "verify", "min_version"]
        var fields: [String: YAMLNode] = [:]
        for (name, value) in pairs {
            guard let name = name.string, known.contains(name) else {
                throw ConfigError(key: "\(key).\(name.string ?? "?")", line: name.line,
                                  "unknown key (known keys: \(known.joined(separator: ", ")))")
            }
            fields[name] = value
        }
        return try make(key, node, server: server, fields: fields, baseDirectory: baseDirectory)
    }

    private static func make(_ key: String, _ node: YAMLNode, server: Bool, fields: [String: YAMLNode],
                             baseDirectory: String) throws(ConfigError) -> TLSSettings {
        func file(_ name: String) throws(ConfigError) -> (path: String, bytes: [UInt8])? {
            guard let value = fields[name], !value.isNull else { return nil }
            var path = try ConfigLoader.string("\(key).\(name)", value)
            if !path.hasPrefix("/") { path = baseDirectory + "/" + path }
            guard let bytes = System.contents(atPath: path) else {
                throw ConfigError(key: "\(key).\(name)", line: value.line, "cannot read \(path)")
            }
            return (path, bytes)
        }
        let ca = try file("ca_file"), cert = try file("cert_file"), keyFile = try file("key_file")
        /// One of `Choice`'s names, or its default when the key is absent.
        func choice<Choice: RawRepresentable & CaseIterable>(_ name: String, default value: Choice) throws(ConfigError) -> Choice
            where Choice.RawValue == String {
            guard let node = fields[name] else { return value }
            let text = try ConfigLoader.string("\(key).\(name)", node)
            guard let parsed = Choice(rawValue: text) else {
                throw ConfigError(key: "\(key).\(name)", line: node.line,
                                  "expected \(ConfigLoader.alternatives(Choice.allCases.map(\.rawValue))), got '\(text)'")
            }
            return parsed
        }
        let verify = try choice("verify", default: TLSVerify.full)
        let minVersion = try choice("min_version", default: TLSVersion.tls12)
        let serverName = try fields["server_name"].map { (value: YAMLNode) throws(ConfigError) -> String in
            let name = try ConfigLoader.string("\(key).server_name", value)
            guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                throw ConfigError(key: "\(key).server_name", line: value.line, "expected a host name")
            }
            return name
        }
        if (cert == nil) != (keyFile == nil) {
            throw ConfigError(key: "\(key).\(cert == nil ? "cert_file" : "key_file")", line: node.line,
                              "cert_file and key_file go together")
        }
        if server && cert == nil {
            throw ConfigError(key: "\(key).cert_file", line: node.line, "is required (with key_file): the certificate apps verify")
        }
        let context: TLSContext
        do throws(TLSError) {
            if server {
                context = try TLSContext(server: cert!.bytes, keyPEM: keyFile!.bytes, caPEM: ca?.bytes, minVersion: minVersion)
            } else {
                context = try TLSContext(client: ca?.bytes, certPEM: cert?.bytes, keyPEM: keyFile?.bytes,
                                         verify: verify, minVersion: minVersion, serverName: serverName)
            }
        } catch {
            throw ConfigError(key: key, line: node.line, error.detail)
        }
        var settings = TLSSettings(caFile: ca?.path, certFile: cert?.path, keyFile: keyFile?.path, serverName: serverName,
                                   verify: verify, minVersion: minVersion, context: context)
        settings.contents = [ca?.bytes ?? [], cert?.bytes ?? [], keyFile?.bytes ?? []]
        return settings
    }
}

extension ConfigKey {
    /// A TLS side (`backend_tls`, `sentinel_tls`, `listen_tls`): applied live, to new connections.
    static func tls(_ name: String, _ path: WritableKeyPath<AmbassadorConfig, TLSSettings?> & Sendable,
                    server: Bool, expects: String) -> ConfigKey {
        ConfigKey(
            name: name, expects: expects, restartOnly: false, secret: false,
            read: { (config: inout AmbassadorConfig, node: YAMLNode?, reading: ConfigLoader.Reading) throws(ConfigError) in
                guard let node else { return }
                config[keyPath: path] = try TLSSettings.read(name, node, server: server, baseDirectory: reading.baseDirectory)
            },
            differs: { $0[keyPath: path] != $1[keyPath: path] },
            keep: { $0[keyPath: path] = $1[keyPath: path] },
            show: { config in config[keyPath: path].map { [(name, $0.shown)] } ?? [] },
            files: { config in config[keyPath: path]?.files ?? [] })
    }
}
