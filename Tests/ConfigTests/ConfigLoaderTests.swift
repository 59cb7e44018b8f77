import Config
import Foundation
import Testing

@Suite struct ConfigLoaderTests {
    @Test func fullFileParses() throws {
        let config = try ConfigLoader.parse("""
            listen: 127.0.0.1:6380
            master: 127.0.0.1:6379
            replicas:
              - 127.0.0.1:6381
              - "[::1]:6382"
            read_policy: replica
            username: app
            backend_connections: 4
            pinned_pool_size: 2
            connect_timeout: 250ms
            reconnect_interval: 1s
            log_level: debug
            workers: 3
            """)
        #expect(config.listen == .tcp(Address(host: "127.0.0.1", port: 6380)))
        #expect(config.master == Address(host: "127.0.0.1", port: 6379))
        #expect(config.replicas == [Address(host: "127.0.0.1", port: 6381), Address(host: "::1", port: 6382)])
        #expect(config.readPolicy == .replica)
        #expect(config.username == "app")
        #expect(config.backendConnections == 4)
        #expect(config.pinnedPoolSize == 2)
        #expect(config.connectTimeout == Duration(seconds: 0.25))
        #expect(config.reconnectInterval == Duration(seconds: 1))
        #expect(config.logLevel == "debug")
        #expect(config.workers == 3 && config.workerCount(cores: 16) == 3)
    }

    @Test func adminAndShutdownTimeout() throws {
        let config = try ConfigLoader.parse("""
            listen: 127.0.0.1:6380
            master: 127.0.0.1:6379
            admin:
              listen: 127.0.0.1:9121
            shutdown_timeout: 30s
            """)
        #expect(config.adminListen == Address(host: "127.0.0.1", port: 9121))
        #expect(config.shutdownTimeout == Duration(seconds: 30))
        let plain = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n")
        #expect(plain.adminListen == nil, "no admin key: the endpoint is off")
        #expect(plain.shutdownTimeout == Duration(seconds: 10))
        for (text, key, line) in [("admin: 9121\n", "admin", 3), ("admin:\n  port: 9121\n", "admin.port", 4),
                                  ("admin:\n  listen: nowhere\n", "admin.listen", 4),
                                  ("shutdown_timeout: 30\n", "shutdown_timeout", 3)] {
            #expect {
                try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n" + text)
            } throws: { error in
                guard let error = error as? ConfigError else { return false }
                return error.key == key && error.line == line
            }
        }
    }

    /// loop_pause: off unless set, a duration up to 1ms.
    @Test func loopPause() throws {
        let plain = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n")
        #expect(plain.loopPause == Duration(seconds: 0))
        let set = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nloop_pause: 20us\n")
        #expect(abs(set.loopPause.seconds - 0.00002) < 1e-12 && set.loopPause.description == "20us")
        for text in ["loop_pause: 2ms\n", "loop_pause: often\n", "loop_pause: -1ms\n"] {
            #expect {
                try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n" + text)
            } throws: { error in
                guard let error = error as? ConfigError else { return false }
                return error.key == "loop_pause" && error.line == 3
            }
        }
    }

    @Test func topologyKeys() throws {
        let config = try ConfigLoader.parse("""
            listen: 127.0.0.1:6380
            master: 10.0.0.1:6379
            replicas:
              - 10.0.0.2:6379
              - {address: 10.0.0.3:6379, weight: 3}
            balance: round-robin
            health_interval: 200ms
            health_failures: 3
            max_replica_lag: 2s
            read_your_writes: offset
            failover_hold: 5s
            command_timeout: 1s
            """)
        #expect(config.replicas == [Address(host: "10.0.0.2", port: 6379), Address(host: "10.0.0.3", port: 6379)])
        #expect(config.replicaWeights == [Address(host: "10.0.0.3", port: 6379): 3])
        #expect(config.balance == .roundRobin && config.healthFailures == 3)
        #expect(config.healthInterval == Duration(seconds: 0.2) && config.maxReplicaLag == Duration(seconds: 2))
        #expect(config.readYourWrites == .session && config.failoverHold == Duration(seconds: 5))
        #expect(config.commandTimeout == Duration(seconds: 1))
        #expect(try ConfigLoader.parse("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\nread_your_writes: 2s\n").readYourWrites
                == .duration(Duration(seconds: 2)))
        let defaults = try ConfigLoader.parse("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\n")
        #expect(defaults.balance == .leastOutstanding && defaults.readYourWrites == .session && defaults.discovery == .static)
        #expect(defaults.healthInterval == Duration(seconds: 0.5) && defaults.healthFailures == 2)
        #expect(defaults.maxReplicaLag == Duration(seconds: 1) && defaults.failoverHold == Duration(seconds: 2))

        let role = try ConfigLoader.parse("listen: 127.0.0.1:1\ndiscovery: role\nnodes: [127.0.0.1:2, 127.0.0.1:3]\n")
        #expect(role.discovery == .role(nodes: [Address(host: "127.0.0.1", port: 2), Address(host: "127.0.0.1", port: 3)]))
        let sentinel = try ConfigLoader.parse("listen: 127.0.0.1:1\ndiscovery: sentinel\nsentinels: [127.0.0.1:26379]\nmaster_name: main\n")
        #expect(sentinel.discovery == .sentinel(sentinels: [Address(host: "127.0.0.1", port: 26379)], masterName: "main"))
        let cluster = try ConfigLoader.parse("listen: 127.0.0.1:1\ndiscovery: cluster\ncluster_nodes: [127.0.0.1:7000, 127.0.0.1:7001]\ncluster_refresh: 2s\n")
        #expect(cluster.discovery == .cluster(seeds: [Address(host: "127.0.0.1", port: 7000), Address(host: "127.0.0.1", port: 7001)]))
        #expect(cluster.clusterRefresh == Duration(seconds: 2))
        #expect(cluster.master == Address(host: "127.0.0.1", port: 7000))
        // Into or out of cluster mode is for a restart: a reload keeps the running discovery.
        let standalone = try ConfigLoader.parse("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\n")
        #expect(cluster.applyingLive(standalone).discovery == cluster.discovery)
        #expect(standalone.applyingLive(cluster).discovery == .static)

        for (text, key) in [("discovery: role\n", "nodes"), ("discovery: role\nnodes: [127.0.0.1:2]\nmaster: 127.0.0.1:2\n", "master"),
                            ("discovery: sentinel\nsentinels: [127.0.0.1:2]\n", "master_name"),
                            ("discovery: role\nnodes: [127.0.0.1:2, 127.0.0.1:2]\n", "nodes"),
                            ("master: 127.0.0.1:2\nsentinel_password_file: /etc/hostname\n", "sentinel_password_file"),
                            ("discovery: sentinel\nsentinels: [127.0.0.1:2]\nmaster_name: m\nsentinel_password_file: /nonexistent\n", "sentinel_password_file"),
                            ("discovery: sentinel\nsentinels: [127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:2]\nmaster_name: m\n", "sentinels"),
                            ("discovery: cluster\n", "cluster_nodes"), ("discovery: galaxy\n", "discovery"),
                            ("discovery: cluster\ncluster_nodes: [127.0.0.1:2]\nmaster: 127.0.0.1:3\n", "master"),
                            ("discovery: cluster\ncluster_nodes: [127.0.0.1:2]\ncluster_refresh: 1ms\n", "cluster_refresh"),
                            ("master: 127.0.0.1:2\ncluster_refresh: 1s\n", "cluster_refresh"),
                            ("master: 127.0.0.1:2\ncluster_nodes: [127.0.0.1:3]\n", "cluster_nodes"),
                            ("master: 127.0.0.1:2\nnodes: [127.0.0.1:3]\n", "nodes"),
                            ("master: 127.0.0.1:2\nbalance: random\n", "balance"),
                            ("master: 127.0.0.1:2\nread_your_writes: sometimes\n", "read_your_writes"),
                            ("master: 127.0.0.1:2\nreplicas: [{address: 127.0.0.1:3, weight: 0}]\n", "replicas.weight"),
                            ("master: 127.0.0.1:2\nhealth_interval: 1ms\n", "health_interval")] {
            #expect {
                try ConfigLoader.parse("listen: 127.0.0.1:1\n" + text)
            } throws: { error in
                (error as? ConfigError)?.key == key
            }
        }
    }

    /// A reload applies every key but the restart-only ones, and says which keys changed.
    @Test func reloadDiffKeepsRestartOnlyKeys() throws {
        let running = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nworkers: 2\n")
        let file = try ConfigLoader.parse("""
            listen: 127.0.0.1:6380
            master: 127.0.0.1:7000
            replicas: [127.0.0.1:7001]
            read_policy: master
            workers: 4
            backend_connections: 3
            """)
        #expect(running.changedKeys(to: file) == ["master", "replicas", "read_policy", "backend_connections", "workers"])
        let applied = running.applyingLive(file)
        #expect(applied.workers == 2 && applied.backendConnections == 1)
        #expect(applied.master == Address(host: "127.0.0.1", port: 7000) && applied.readPolicy == .master)
        #expect(running.changedKeys(to: applied) == ["master", "replicas", "read_policy"])
        #expect(running.changedKeys(to: running) == [])
        var secret = running
        secret.password = "hunter2"
        secret.passwordSource = "password_file /run/secret"
        #expect(!"\(secret.redacted)".contains("hunter2"))
        #expect(secret.redacted["password"] == .string("<redacted> (password_file /run/secret)"))
    }

    @Test func workersAutoLeavesACoreForRedis() throws {
        let config = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nworkers: auto\n")
        #expect(config.workers == nil)
        #expect(config.workerCount(cores: 1) == 1)
        #expect(config.workerCount(cores: 2) == 1)
        #expect(config.workerCount(cores: 8) == 7)
        #expect(throws: ConfigError.self) { _ = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nworkers: 0\n") }
        // A container's CPU limit is the ambassador's own budget: one loop per CPU of it.
        #expect(config.workerCount(budget: CPUBudget(allowed: 32, quota: 1)) == 1)
        #expect(config.workerCount(budget: CPUBudget(allowed: 32, quota: 0.5)) == 1)
        #expect(config.workerCount(budget: CPUBudget(allowed: 32, quota: 2.5)) == 3)
        #expect(config.workerCount(budget: CPUBudget(allowed: 2, quota: 4)) == 2)
        let three = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nworkers: 3\n")
        #expect(three.workerCount(budget: CPUBudget(allowed: 32, quota: 1)) == 3)
    }

    @Test func cpuBudgetReadsAffinityListsAndCgroupQuotas() {
        #expect(CPUBudget.cpuCount("0-1\n") == 2)
        #expect(CPUBudget.cpuCount("0-3,8,10-11") == 7)
        #expect(CPUBudget.cpuCount("5") == 1)
        #expect(CPUBudget.cpuCount("") == nil)
        #expect(CPUBudget.cpuCount("3-1") == nil)
        #expect(CPUBudget.cpuCount("a-b") == nil)
        #expect(CPUBudget.quota(cpuMax: "max 100000\n") == nil)
        #expect(CPUBudget.quota(cpuMax: "150000 100000\n") == 1.5)
        #expect(CPUBudget.quota(cfsQuota: "-1\n", cfsPeriod: "100000\n") == nil)
        #expect(CPUBudget.quota(cfsQuota: "50000\n", cfsPeriod: "100000\n") == 0.5)
        // This process: at least one CPU, never more than the machine has.
        let current = CPUBudget.current(fallback: ProcessInfo.processInfo.activeProcessorCount)
        #expect(current.allowed >= 1 && current.allowed <= ProcessInfo.processInfo.activeProcessorCount)
    }

    @Test func defaultsApplyWhenKeysAreAbsent() throws {
        let config = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: localhost:6379\nreplicas:\n")
        #expect(config.readPolicy == .preferReplica)
        #expect(config.replicas.isEmpty)
        #expect(config.backendConnections == 1)
        #expect(config.password == nil)
    }

    @Test func unixListenAndItsMode() throws {
        let config = try ConfigLoader.parse("listen: unix:/run/ambassador/redis.sock\nlisten_mode: 0600\nmaster: 127.0.0.1:6379\n")
        #expect(config.listen == .unix(path: "/run/ambassador/redis.sock"))
        #expect(config.listen.description == "unix:/run/ambassador/redis.sock")
        #expect(config.listenMode == 0o600)
        #expect(try ConfigLoader.parse("listen: unix:/a.sock\nmaster: 127.0.0.1:6379\n").listenMode == 0o660)
        #expect(try ConfigLoader.parse("listen: unix:/a.sock\nmaster: 127.0.0.1:6379\nlisten_mode: 660\n").listenMode == 0o660)
        #expect(config.redacted["listen_mode"] == .string("0600"))
    }

    @Test func errorsNameTheKeyAndLine() {
        let cases: [(String, String, Int?)] = [
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nfoo: 1\n", "foo", 3),
            ("listen: nope\nmaster: 127.0.0.1:6379\n", "listen", 1),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:99999\n", "master", 2),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nread_policy: sometimes\n", "read_policy", 3),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nconnect_timeout: 5\n", "connect_timeout", 3),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nbackend_connections: 0\n", "backend_connections", 3),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nreplicas: 127.0.0.1:6381\n", "replicas", 3),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nreplicas:\n  - 127.0.0.1:6379\n", "replicas", 4),
            ("listen: 127.0.0.1:6380\n", "master", nil),
            ("listen: unix:relative.sock\nmaster: 127.0.0.1:6379\n", "listen", 1),
            ("listen: unix:/\(String(repeating: "a", count: 107))\nmaster: 127.0.0.1:6379\n", "listen", 1),
            ("listen: unix:/run/a.sock\nmaster: 127.0.0.1:6379\nlisten_mode: 0999\n", "listen_mode", 3),
            ("listen: unix:/run/a.sock\nmaster: 127.0.0.1:6379\nlisten_mode: rw\n", "listen_mode", 3),
            ("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nlisten_mode: 0600\n", "listen_mode", 3),
        ]
        for (text, key, line) in cases {
            do {
                _ = try ConfigLoader.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.key == key, "\(text)")
                #expect(error.line == line, "\(error)")
                #expect(error.description.contains(key))
            }
        }
    }

    @Test func invalidYAMLIsAnErrorWithItsLine() {
        do {
            _ = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: [unclosed\n")
            Issue.record("accepted broken YAML")
        } catch {
            #expect(error.description.contains("not valid YAML"))
            #expect(error.line != nil)
        }
    }

    @Test func passwordComesFromFileOrEnvironment() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "s3cret\n".write(to: directory.appendingPathComponent("password"), atomically: true, encoding: .utf8)
        let base = "listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n"
        let fromFile = try ConfigLoader.parse(base + "password_file: password\n", baseDirectory: directory.path,
                                              environment: ["REDIS_AMBASSADOR_PASSWORD": "env"])
        #expect(fromFile.password == "s3cret")
        let fromEnvironment = try ConfigLoader.parse(base, environment: ["REDIS_AMBASSADOR_PASSWORD": "env"])
        #expect(fromEnvironment.password == "env")
        #expect(throws: ConfigError.self) {
            _ = try ConfigLoader.parse(base + "password_file: missing\n", baseDirectory: directory.path)
        }
    }

    @Test func addressesAndDurationsParse() {
        #expect(Address(parsing: "redis-0.redis.default.svc:6379") == Address(host: "redis-0.redis.default.svc", port: 6379))
        for bad in ["", ":6379", "host", "host:", "host:0", "host:65536", "::1:6379", "[::1]6379", "a b:1"] {
            #expect(Address(parsing: bad) == nil, "\(bad)")
        }
        #expect(Duration(parsing: "250ms")?.seconds == 0.25)
        #expect(Duration(parsing: "1.5s")?.seconds == 1.5)
        #expect(Duration(parsing: "2m")?.seconds == 120)
        for bad in ["", "5", "ms", "-1s", "1x", "1 s"] { #expect(Duration(parsing: bad) == nil, "\(bad)") }
    }

    /// The reference file documents exactly the keys of the table: each one set or shown
    /// commented out (`# key:`), none that the loader would refuse.
    @Test func referenceFileDocumentsEveryKeyOfTheTable() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Config/ambassador.yaml").standardized.path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var documented = Set<String>()
        for line in text.split(separator: "\n") {
            var rest = Substring(line)
            if rest.hasPrefix("# ") { rest = rest.dropFirst(2) }
            guard let colon = rest.firstIndex(of: ":"), rest.first?.isLetter == true else { continue }
            let key = rest[..<colon]
            if key.allSatisfy({ $0.isLowercase || $0 == "_" }) { documented.insert(String(key)) }
        }
        let table = Set(ConfigKey.all.map(\.name))
        #expect(table.subtracting(documented).isEmpty, "keys with no documentation: \(table.subtracting(documented).sorted())")
        // And the file loads: every key it sets is one of the table's.
        _ = try ConfigLoader.load(path: path, environment: [:])
        #expect(Set(AmbassadorConfig.restartOnlyKeys) == ["workers", "backend_connections"])
    }

    /// A change in any key of the table shows in the diff under that key's name, and a reload
    /// keeps exactly the restart-only ones.
    @Test func everyKeyOfTheTableTakesPartInTheDiff() throws {
        let base = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n")
        let changes: [String: String] = [
            "replicas": "replicas: [127.0.0.1:7001]", "failover_hold": "failover_hold: 3s",
            "health_interval": "health_interval: 1s", "health_failures": "health_failures: 5",
            "max_replica_lag": "max_replica_lag: 0s", "balance": "balance: round-robin",
            "read_your_writes": "read_your_writes: off", "command_timeout": "command_timeout: 1s",
            "stall_threshold": "stall_threshold: 0s", "loop_pause": "loop_pause: 20us", "read_policy": "read_policy: master",
            "username": "username: app", "backend_connections": "backend_connections: 2",
            "pinned_pool_size": "pinned_pool_size: 1", "connect_timeout": "connect_timeout: 1s",
            "reconnect_interval": "reconnect_interval: 1s", "workers": "workers: 3", "log_level": "log_level: debug",
            "admin": "admin: {listen: 127.0.0.1:9999}", "shutdown_timeout": "shutdown_timeout: 1s",
        ]
        for (key, line) in changes {
            let other = try ConfigLoader.parse("listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\n\(line)\n")
            #expect(base.changedKeys(to: other) == [key], "\(line)")
            let applied = base.applyingLive(other)
            let restartOnly = ConfigKey.named(key)?.restartOnly == true
            #expect(base.changedKeys(to: applied) == (restartOnly ? [] : [key]), "\(line)")
        }
        let role = try ConfigLoader.parse("listen: 127.0.0.1:6380\ndiscovery: role\nnodes: [127.0.0.1:1, 127.0.0.1:2]\n")
        #expect(base.changedKeys(to: role).contains("discovery") && base.changedKeys(to: role).contains("nodes"))
        #expect(role.redacted["nodes"] == .list(["127.0.0.1:1", "127.0.0.1:2"]) && base.redacted["nodes"] == nil)
    }

    /// YAML as libyaml reads it: quoting, flow and block styles, anchors, comments; a document
    /// that nests without end, or a second document, is an error rather than a crash or a guess.
    @Test func yamlForms() throws {
        let config = try ConfigLoader.parse("""
            # comment
            listen: "127.0.0.1:6380"   # quoted
            master: &m 127.0.0.1:6379
            replicas:
              - {address: '127.0.0.1:6381', weight: 2}
              - 127.0.0.1:6382
            read_policy: >-
              master
            admin: ~
            """)
        #expect(config.listen.tcp?.port == 6380 && config.master.port == 6379 && config.readPolicy == .master)
        #expect(config.replicas.map(\.port) == [6381, 6382] && config.replicaWeights.count == 1)
        #expect(config.adminListen == nil)
        // `"~"` quoted is text, not null: an address, and not a valid one.
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\nadmin: \"~\"\n") }
        for (text, line) in [("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\n---\nlisten: 127.0.0.1:3\n", 3),
                             ("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\nmaster: 127.0.0.1:3\n", 3),
                             ("listen: 127.0.0.1:1\n  master: x\n", 2),
                             ("listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\nreplicas: &a [*a]\n", 3),
                             ("listen: 127.0.0.1:1\nmaster: \"unterminated\n", 3)] {
            do {
                _ = try ConfigLoader.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == line, "\(text): \(error)")
            }
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("listen: 127.0.0.1:1\nmaster: \(deep)\n") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("# only a comment\n") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(String(decoding: [0xff, 0xfe, 0x00], as: UTF8.self)) }
    }

    /// `clients`: users from files, each named once; every mistake names its key.
    @Test func clientUsers() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-clients-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "pw\n".write(to: directory.appendingPathComponent("pw"), atomically: true, encoding: .utf8)
        try "".write(to: directory.appendingPathComponent("empty"), atomically: true, encoding: .utf8)
        let base = "listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\n"
        let config = try ConfigLoader.parse(base + "clients:\n  password_file: pw\n  users: [{name: app, password_file: pw}]\n",
                                            baseDirectory: directory.path)
        #expect(config.clientUsers.map(\.name) == ["default", "app"] && config.clientUsers.allSatisfy { $0.password == "pw" })
        #expect(!"\(config.redacted)".contains("\"pw\"") && config.redacted["clients"] != nil)
        #expect(try ConfigLoader.parse(base).requiresClientAuth == false)
        for (text, key) in [("clients: {}\n", "clients"), ("clients: {users: [{name: app}]}\n", "clients.users.password_file"),
                            ("clients: {users: [{password_file: pw}]}\n", "clients.users.name"),
                            ("clients: {password_file: empty}\n", "clients.password_file"),
                            ("clients: {password_file: missing}\n", "clients.password_file"),
                            ("clients: {users: [{name: a, password_file: pw}, {name: a, password_file: pw}]}\n", "clients.users.password_file"),
                            ("clients: {token: x}\n", "clients.token")] {
            #expect(throws: ConfigError.self, "\(text)") { try ConfigLoader.parse(base + text, baseDirectory: directory.path) }
            do { _ = try ConfigLoader.parse(base + text, baseDirectory: directory.path) } catch { #expect(error.key == key, "\(text): \(error)") }
        }
    }

    /// `commands`: names and known categories; per user too.
    @Test func commandRules() throws {
        let base = "listen: 127.0.0.1:1\nmaster: 127.0.0.1:2\n"
        let config = try ConfigLoader.parse(base + "commands: {deny: ['@Dangerous', FLUSHALL], allow: [info]}\n")
        #expect(config.commands == CommandRules(deny: ["@dangerous", "flushall"], allow: ["info"]))
        let rules = try #require(config.commands)
        #expect(rules.refuses(fullName: "keys", categories: ["keyspace", "read", "slow", "dangerous"]))
        #expect(!rules.refuses(fullName: "info", categories: ["slow", "dangerous"]))
        #expect(rules.refuses(fullName: "flushall", categories: []))
        #expect(!rules.refuses(fullName: "get", categories: ["read", "string", "fast"]))
        let allowList = CommandRules(deny: ["@all"], allow: ["@read", "config|get", "client"])
        #expect(!allowList.refuses(fullName: "get", categories: ["read"]) && allowList.refuses(fullName: "set", categories: ["write"]))
        #expect(!allowList.refuses(fullName: "config|get", categories: ["admin"]) && allowList.refuses(fullName: "config|set", categories: ["admin"]))
        #expect(!allowList.refuses(fullName: "client|list", categories: ["admin"]))
        #expect(allowList.refuses(fullName: "nosuchcommand", categories: []))
        for (text, key) in [("commands: {deny: ['@nosuch']}\n", "commands.deny"), ("commands: {block: [x]}\n", "commands.block"),
                            ("commands: {deny: x}\n", "commands.deny"), ("commands: [x]\n", "commands")] {
            do {
                _ = try ConfigLoader.parse(base + text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.key == key, "\(text): \(error)")
            }
        }
    }
}
