import Config
import RESP
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A master and replicas that speak TLS (replicating over TLS too), with certificates made by
/// `openssl` (`TestCertificates`). Each also keeps a plain port for the tests' own set-up and
/// checks; the ambassador is only ever given the TLS ports.
final class TLSCluster {
    let certificates: TestCertificates
    let master: RedisServer
    let replicas: [RedisServer]

    init(replicas count: Int = 2, serverCertificate: TestCertificates.Pair? = nil, masterArguments: [String] = []) throws {
        let certificates = try TestCertificates.make()
        self.certificates = certificates
        let presented = serverCertificate ?? certificates.server
        master = try RedisServer(arguments: masterArguments, tls: presented, ca: certificates.ca)
        var replicas: [RedisServer] = []
        let auth = masterArguments.firstIndex(of: "--requirepass").map { ["--masterauth", masterArguments[$0 + 1]] } ?? []
        for _ in 0..<count {
            replicas.append(try RedisServer(arguments: ["--replicaof", "127.0.0.1", String(master.tlsPort!)] + auth + masterArguments,
                                            tls: presented, ca: certificates.ca))
        }
        self.replicas = replicas
        for replica in replicas { try replica.waitForReplicationLink() }
    }

    func stop() {
        replicas.forEach { $0.stop() }
        master.stop()
    }

    /// The config lines for this cluster's TLS ports.
    func topology() -> String {
        "master: 127.0.0.1:\(master.tlsPort!)\n" + (replicas.isEmpty ? "" :
            "replicas:\n" + replicas.map { "  - 127.0.0.1:\($0.tlsPort!)\n" }.joined())
    }

    /// `backend_tls` with this cluster's CA (and `extra` lines inside it, indented).
    func backendTLS(ca: String? = nil, extra: String = "") -> String {
        "backend_tls:\n  ca_file: \(ca ?? certificates.ca)\n" + extra
    }
}

/// `redis-cli` (which speaks TLS): its exit status and output.
func redisCLI(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try AmbassadorProcess.runToCompletion(RedisServer.executable("redis-cli"), arguments)
}

extension Integration {
@Suite(.serialized) struct TLSTests {
    /// The in-process ambassador on a YAML config (TLS settings are read from their files).
    static func ambassador(_ yaml: String) throws -> Ambassador {
        var config = try ConfigLoader.parse("listen: 127.0.0.1:1\n" + yaml)
        config.listen = .tcp(Address(host: "127.0.0.1", port: 0))
        config.logLevel = "warning"
        return try Ambassador(config)
    }

    /// The transparency scripts, a 10,000-command pipeline and values larger than a TLS record,
    /// through an ambassador that reaches master and replicas over TLS only: the same replies
    /// as the same server gives directly, and the reads served by the replicas.
    @Test func scriptsOverTLSMatchDirect() throws {
        let cluster = try TLSCluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Self.ambassador(cluster.topology() + cluster.backendTLS() + "read_policy: prefer-replica\n")
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        try TransparencyTests.compareScripts(admin: admin, direct: cluster.master.port, proxied: ambassador.port)
        // Values of 1 byte to 3 MB (a TLS record holds 16 KiB), written and read back in one pipeline,
        // and each alone: a value's records but the last go out with MSG_MORE, so each write
        // ending on any record size must still leave at once.
        let client = try ambassador.client(timeout: 20)
        let sizes = [1, 16_383, 16_384, 16_385, 32_768, 65_536, 100_000, 3_000_000]
        for size in sizes {
            #expect(try client.command(["SET", "alone:\(size)", String(repeating: "a", count: size)]) == .simple("OK"), "\(size) bytes")
        }
        let writes = sizes.map { ["SET", "big:\($0)", String(repeating: "x", count: $0)] }
        #expect(try client.pipeline(writes).allSatisfy { text($0) == "+OK\r\n" })
        _ = try client.command(["WAIT", "2", "5000"])
        for size in sizes {
            #expect(try client.command(["GET", "big:\(size)"]) == .bulk(String(repeating: "x", count: size)), "\(size) bytes")
        }
        var pipeline: [[String]] = []
        for i in 0..<10_000 { pipeline.append(i % 2 == 0 ? ["INCR", "tls:n"] : ["GET", "tls:n"]) }
        let replies = try client.pipeline(pipeline)
        #expect(text(replies[9_998]) == ":5000\r\n")
        #expect(try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +) > 0, "the replicas served reads")
        // Every connection the ambassador made came in on a TLS port.
        let clients = try admin.command(["CLIENT", "LIST"]).text ?? ""
        let tlsPort = "laddr=127.0.0.1:\(cluster.master.tlsPort!) "
        #expect(clients.split(separator: "\n").filter { $0.contains(tlsPort) }.count >= 2, "\(clients)")
    }

    /// A server certificate the ambassador must refuse: each case logs why and keeps /readyz
    /// false; `verify: ca` accepts the wrong name, `verify: none` anything.
    @Test(arguments: ["wrong CA", "expired", "wrong host"])
    func badServerCertificatesFailClearly(_ failure: String) throws {
        let certificates = try TestCertificates.make()
        let (presented, expected): (TestCertificates.Pair, String) = switch failure {
        case "wrong CA": (certificates.otherServer, "certificate verify failed: ")
        case "expired": (certificates.expired, "certificate verify failed: certificate has expired")
        default: (certificates.wrongHost, "certificate verify failed: IP address mismatch")
        }
        let cluster = try TLSCluster(replicas: 0, serverCertificate: presented)
        defer { cluster.stop() }
        let adminPort = try RedisServer.freePort()
        let port = try RedisServer.freePort()
        let refusing = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(port)\n" + cluster.topology() + cluster.backendTLS()
                                             + "admin:\n  listen: 127.0.0.1:\(adminPort)\nfailover_hold: 200ms\n")
        defer { refusing.stop() }
        #expect(eventually(10) { refusing.logText.contains("TLS handshake failed: \(expected)") }, "\(refusing.logText)")
        // /readyz is 503 from the start (no master confirmed); the reason appears once the health
        // checker's own connection has failed too.
        var readiness: (status: Int, body: String)?
        #expect(eventually(5) {
            readiness = try? HTTPProbe.request(port: adminPort, path: "/readyz")
            return readiness?.status == 503 && readiness?.body.contains(expected) == true
        }, "\(String(describing: readiness))")
        #expect(refusing.logText.contains("health: 127.0.0.1:\(cluster.master.tlsPort!) is unreachable: TLS handshake failed: \(expected)"))
        #expect(try BlockingClient(port: port).command(["GET", "k"]).text?.hasPrefix("TRYAGAIN") == true)
        // The same certificate, checked less: served.
        let lenient = failure == "wrong host" ? "  verify: ca\n" : "  verify: none\n"
        let acceptingPort = try RedisServer.freePort()
        let accepting = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(acceptingPort)\n" + cluster.topology()
                                              + cluster.backendTLS(extra: lenient))
        defer { accepting.stop() }
        #expect(accepting.answers(on: acceptingPort))
        #expect(eventually(10) { (try? BlockingClient(port: acceptingPort).command(["SET", "k", "v"])) == .simple("OK") },
                "\(accepting.logText)")
    }

    /// The CA that signs the servers' certificates changes while the ambassador runs: once the
    /// servers present the new certificate, new connections fail verification (logged) until
    /// `ca_file` holds the new CA; the file watch reloads it and the next connections verify.
    @Test func rotatedCertificatesApplyToNewConnections() throws {
        let cluster = try TLSCluster(replicas: 0)
        defer { cluster.stop() }
        let certificates = cluster.certificates
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let caFile = directory.appendingPathComponent("ca.crt").path
        try FileManager.default.copyItem(atPath: certificates.ca, toPath: caFile)
        let port = try RedisServer.freePort()
        let adminPort = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(port)\n" + cluster.topology() + cluster.backendTLS(ca: caFile)
                                               + "admin:\n  listen: 127.0.0.1:\(adminPort)\nfailover_hold: 300ms\n")
        defer { ambassador.stop() }
        #expect(ambassador.answers(on: port))
        let client = try BlockingClient(port: port)
        #expect(eventually(10) { (try? client.command(["SET", "k", "v1"])) == .simple("OK") })
        // The server moves to a certificate from another CA; the ambassador's connections drop.
        let admin = try cluster.master.client()
        _ = try admin.command(["CONFIG", "SET", "tls-cert-file", certificates.otherServer.cert,
                               "tls-key-file", certificates.otherServer.key])
        _ = try admin.command(["CLIENT", "KILL", "LADDR", "127.0.0.1:\(cluster.master.tlsPort!)"])
        #expect(eventually(10) { ambassador.logText.contains("TLS handshake failed: certificate verify failed") })
        #expect(eventually(5) { (try? HTTPProbe.request(port: adminPort, path: "/readyz"))?.status == 503 })
        // The new CA is published (atomically, as a Secret update is); a reload picks it up.
        let staged = directory.appendingPathComponent("ca.crt.new").path
        try FileManager.default.copyItem(atPath: certificates.otherCA, toPath: staged)
        #expect(rename(staged, caFile) == 0)
        #expect(eventually(10) { ambassador.logText.contains("changed: backend_tls") }, "\(ambassador.logText)")
        #expect(eventually(10) { (try? BlockingClient(port: port).command(["SET", "k", "v2"])) == .simple("OK") },
                "\(ambassador.logText)")
        #expect(try admin.command(["GET", "k"]) == .bulk("v2"))
        #expect(eventually(5) { (try? HTTPProbe.request(port: adminPort, path: "/readyz"))?.status == 200 })
    }

    /// `listen_tls`: apps connect with TLS (redis-cli --tls); with `ca_file`, only those with a
    /// certificate that CA signed are served. A plaintext client gets nothing.
    @Test func listenerTLSAndClientCertificates() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let certificates = try TestCertificates.make()
        let listener = "listen_tls: {cert_file: \(certificates.server.cert), key_file: \(certificates.server.key)"
        let topology = "master: 127.0.0.1:\(cluster.master.port)\n"
        func cli(_ port: UInt16, _ extra: [String], _ command: [String]) throws -> String {
            try redisCLI(["-h", "127.0.0.1", "-p", String(port), "--tls", "--cacert", certificates.ca] + extra + command).output
        }
        // Server authentication only.
        let open = try Self.ambassador(topology + listener + "}\n")
        defer { open.stop() }
        #expect(try cli(open.port, [], ["SET", "t", "over tls"]).contains("OK"))
        #expect(try cli(open.port, [], ["GET", "t"]) == "over tls\n")
        #expect(try cli(open.port, [], ["CLIENT", "INFO"]).contains("cmd=client|info"))
        let big = String(repeating: "b", count: 100_000)  // six TLS records (an argument may not pass 128 KiB)
        #expect(try cli(open.port, [], ["SET", "big", big]).contains("OK"))
        #expect(try cluster.master.client().command(["STRLEN", "big"]) == .integer(100_000))
        #expect(try cli(open.port, [], ["GET", "big"]) == big + "\n")
        // A plaintext client on a TLS listener is not served: its first bytes fail the handshake,
        // and the connection closes at once (not at the handshake timeout).
        let plain = try BlockingClient(port: open.port, timeout: 5)
        let sent = Date()
        #expect((try? plain.command(["PING"])) == nil)
        #expect(Date().timeIntervalSince(sent) < 2, "closed after \(Date().timeIntervalSince(sent)) s")
        // Mutual TLS.
        let mutual = try Self.ambassador(topology + listener + ", ca_file: \(certificates.ca)}\n")
        defer { mutual.stop() }
        #expect(try cli(mutual.port, ["--cert", certificates.client.cert, "--key", certificates.client.key], ["PING"]) == "PONG\n")
        let anonymous = try cli(mutual.port, [], ["PING"])
        #expect(!anonymous.contains("PONG"), "\(anonymous)")
        let stranger = try cli(mutual.port, ["--cert", certificates.otherServer.cert, "--key", certificates.otherServer.key], ["PING"])
        #expect(!stranger.contains("PONG"), "\(stranger)")
        // Still serving the good ones after the refusals.
        #expect(try cli(mutual.port, ["--cert", certificates.client.cert, "--key", certificates.client.key], ["GET", "t"]) == "over tls\n")
    }

    /// 50 clients run a loop of reads, writes, transactions and blocking pops while the backend
    /// password is rotated, and then the ACL user itself is replaced and the old one deleted
    /// (Redis then closes every connection still logged in as it). Every open backend
    /// connection re-authenticates in place: no client sees an error.
    @Test func credentialsRotateUnderLoadWithoutErrors() throws {
        let cluster = try TLSCluster(replicas: 2)
        defer { cluster.stop() }
        let nodes = [cluster.master] + cluster.replicas
        let admins = try nodes.map { try $0.client() }
        for admin in admins {  // ACL rules are not replicated: every node gets them
            #expect(try admin.command(["ACL", "SETUSER", "app1", "on", ">pw1", "~*", "&*", "+@all"]) == .simple("OK"))
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-rotate-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func publish(_ name: String, _ text: String) throws {
            try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try publish("password", "pw1\n")
        let port = try RedisServer.freePort()
        let adminPort = try RedisServer.freePort()
        func yaml(user: String, file: String) -> String {
            "listen: 127.0.0.1:\(port)\n" + cluster.topology() + cluster.backendTLS()
                + "username: \(user)\npassword_file: \(directory.appendingPathComponent(file).path)\n"
                + "admin:\n  listen: 127.0.0.1:\(adminPort)\nread_policy: prefer-replica\nlog_level: info\n"
        }
        let ambassador = try AmbassadorProcess(yaml: yaml(user: "app1", file: "password"))
        defer { ambassador.stop() }
        let configFile = ambassador.log.deletingLastPathComponent().appendingPathComponent("ambassador.yaml")
        #expect(ambassador.answers(on: port))
        #expect(eventually(10) { (try? BlockingClient(port: port).command(["SET", "ready", "1"])) == .simple("OK") })

        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var commands = 0
            var errors: [String] = []
            var stop = false
            func add(_ count: Int, _ error: String?) {
                lock.lock(); defer { lock.unlock() }
                commands += count
                if let error, errors.count < 20 { errors.append(error) }
            }
            var stopped: Bool { lock.lock(); defer { lock.unlock() }; return stop }
            func commands(plus more: Int) -> Int { lock.lock(); defer { lock.unlock() }; return commands + more }
        }
        let tally = Tally()
        let group = DispatchGroup()
        for index in 0..<50 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let client = try BlockingClient(port: port, timeout: 10)
                    var round = 0
                    while !tally.stopped {
                        round += 1
                        let key = "rot:\(index)"
                        switch round % 5 {
                        case 0:
                            let reply = try client.command(["SET", key, String(round)])
                            tally.add(1, reply == .simple("OK") ? nil : "SET: \(reply)")
                        case 1:
                            let reply = try client.command(["GET", key])
                            let expected: RESPValue = round == 1 ? .bulkString(nil) : .bulk(String(round - 1))
                            tally.add(1, reply == expected ? nil : "GET: \(reply)")
                        case 2:
                            let reply = try client.command(["INCR", "rot:n:\(index)"])
                            if case .integer = reply { tally.add(1, nil) } else { tally.add(1, "INCR: \(reply)") }
                        case 3:
                            let replies = try client.pipeline([["MULTI"], ["INCR", "rot:m:\(index)"], ["EXEC"]])
                            tally.add(3, text(replies[2]).hasPrefix("*1\r\n:") ? nil : "EXEC: \(text(replies[2]))")
                        default:
                            let reply = try client.command(["BLPOP", "rot:l:\(index)", "0.02"])
                            tally.add(1, reply == .array(nil) || reply == .null ? nil : "BLPOP: \(reply)")
                        }
                    }
                } catch {
                    tally.add(0, "client \(index): \(error)")
                }
            }
        }
        /// Waits until the 50 clients have run `more` commands from now on.
        func ran(_ more: Int) {
            let target = tally.commands(plus: more)
            _ = eventually(20) { tally.commands(plus: 0) >= target }
        }
        ran(1000)
        // 1. A new password: Redis accepts both, the file changes, then the old one goes.
        for admin in admins { _ = try admin.command(["ACL", "SETUSER", "app1", ">pw2"]) }
        let authsBefore = try nodes.map { try commandCalls($0, "auth") }.reduce(0, +)
        try publish("password", "pw2\n")
        #expect(eventually(10) { ambassador.logText.contains("backend credentials changed") }, "\(ambassador.logText)")
        // Before the old password goes, the open connections log in again with the new one
        // (each once it has nothing in flight): as many reauthentications as the log announced.
        let announced = ambassador.logText.components(separatedBy: "backend credentials changed: ").last
            .flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        _ = eventually(10) {
            let metrics = (try? HTTPProbe.request(port: adminPort, path: "/metrics").body) ?? ""
            return Int(metricSamples(metrics)["redis_ambassador_backend_reauthentications_total"] ?? 0) >= announced
        }
        for admin in admins { _ = try admin.command(["ACL", "SETUSER", "app1", "<pw1"]) }
        let authsAfter = try nodes.map { try commandCalls($0, "auth") }.reduce(0, +)
        ran(1000)
        // 2. A new user, and the old one deleted: Redis closes whatever is still logged in as app1.
        for admin in admins {
            _ = try admin.command(["ACL", "SETUSER", "app2", "on", ">pw3", "~*", "&*", "+@all"])
        }
        try publish("password3", "pw3\n")
        try yaml(user: "app2", file: "password3").write(to: configFile, atomically: true, encoding: .utf8)
        let clientsAsOldUser = { () -> Int in
            (try? admins.map { try $0.command(["CLIENT", "LIST"]).text ?? "" }.joined())?
                .split(separator: "\n").filter { $0.contains(" user=app1 ") }.count ?? -1
        }
        #expect(eventually(10) { clientsAsOldUser() == 0 }, "still logged in as app1: \(clientsAsOldUser())")
        for admin in admins { _ = try admin.command(["ACL", "DELUSER", "app1"]) }
        ran(1000)
        tally.lock.lock(); tally.stop = true; tally.lock.unlock()
        group.wait()
        let metrics = try HTTPProbe.request(port: adminPort, path: "/metrics").body
        let reauths = metricSamples(metrics)["redis_ambassador_backend_reauthentications_total"] ?? 0
        print("credential rotation: 50 clients, \(tally.commands) commands, \(tally.errors.count) errors; "
              + "AUTHs on the nodes during the password change: \(authsAfter - authsBefore); reauthentications: \(Int(reauths))")
        #expect(tally.errors.isEmpty, "\(tally.errors)")
        #expect(tally.commands > 1000)
        #expect(authsAfter - authsBefore >= 3, "every node's connections authenticated again")
        #expect(reauths >= 6)
        #expect(try BlockingClient(port: port).command(["GET", "ready"]) == .bulk("1"))
    }

    /// `discovery: sentinel` with TLS everywhere: the ambassador asks a TLS sentinel
    /// (`sentinel_tls`) for the master, reaches the nodes over TLS, and follows a failover.
    @Test func sentinelOverTLSFollowsAFailover() throws {
        let cluster = try TLSCluster(replicas: 1)
        defer { cluster.stop() }
        let certificates = cluster.certificates
        let sentinel = try RedisSentinel(monitoring: cluster.master, name: "tls-group", quorum: 1,
                                         tls: certificates.server, ca: certificates.ca)
        defer { sentinel.stop() }
        let replicaAddress = "127.0.0.1:\(cluster.replicas[0].tlsPort!)"
        #expect(try eventually(15) {
            guard case .array(let replicas?) = try sentinel.client().command(["SENTINEL", "REPLICAS", "tls-group"]) else { return false }
            return replicas.count == 1
        })
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nadmin:\n  listen: 127.0.0.1:\(admin)\ndiscovery: sentinel\nmaster_name: tls-group\n"
                + "sentinels:\n  - 127.0.0.1:\(sentinel.tlsPort!)\nsentinel_tls: {ca_file: \(certificates.ca)}\n"
                + "backend_tls: {ca_file: \(certificates.ca)}\nhealth_interval: 100ms\nfailover_hold: 20s\nlog_level: info\n"
        }
        defer { ambassador.stop() }
        #expect(try TopologyTests.topology(ambassador)["master"] as? String == "127.0.0.1:\(cluster.master.tlsPort!)")
        let writer = try BlockingClient(port: ambassador.port, timeout: 30)
        #expect(try writer.command(["SET", "before", "x"]) == .simple("OK"))
        // WAIT counts the session's own writes: through the ambassador, this one's.
        #expect(try writer.command(["WAIT", "1", "5000"]) == .integer(1))
        // A sentinel that has not yet checked the replica itself answers -NOGOODSLAVE: ask again.
        var answer: RESPValue?
        #expect(eventually(10, every: 0.2) {
            answer = try? sentinel.client().command(["SENTINEL", "FAILOVER", "tls-group"])
            return answer == .simple("OK")
        }, "\(String(describing: answer))")
        #expect(try eventually(20) { try TopologyTests.topology(ambassador)["master"] as? String == replicaAddress },
                "\(ambassador.logText)")
        #expect(try writer.command(["SET", "after", "y"]) == .simple("OK"))
        #expect(try cluster.replicas[0].client().command(["GET", "after"]) == .bulk("y"))
        let before = try writer.command(["GET", "before"])
        #expect(before == .bulk("x"), "\(before)")
    }

    /// `auth_token_file`: a token rewritten by a refresher is the backend password. A new token
    /// re-authenticates the open connections, new connections use it, and
    /// `redis_ambassador_auth_token_age_seconds` follows the file's age.
    @Test func authTokenFileRotatesLiveAndReportsItsAge() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let admin = try cluster.master.client()
        _ = try admin.command(["ACL", "SETUSER", "app", "on", ">token-1", "~*", "&*", "+@all"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-token-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let token = directory.appendingPathComponent("token")
        try "token-1\n".write(to: token, atomically: true, encoding: .utf8)
        let ambassador = try ConfigMapAmbassador { port, adminPort in
            "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(cluster.master.port)\nadmin:\n  listen: 127.0.0.1:\(adminPort)\n"
                + "username: app\nauth_token_file: \(token.path)\nlog_level: info\n"
        }
        defer { ambassador.stop() }
        func metric(_ name: String) -> Double? {
            (try? ambassador.admin("/metrics")).flatMap { metricSamples($0.body)[name] }
        }
        let client = try BlockingClient(port: ambassador.port)
        #expect(try client.command(["SET", "t", "1"]) == .simple("OK"))
        #expect(eventually(3) { (metric("redis_ambassador_auth_token_age_seconds") ?? -1) >= 0 })
        #expect((metric("redis_ambassador_auth_token_age_seconds") ?? 99) < 30)
        // The refresher writes a new token, which Redis already accepts; then the old one goes.
        _ = try admin.command(["ACL", "SETUSER", "app", ">token-2"])
        try "token-2\n".write(to: token, atomically: true, encoding: .utf8)
        #expect(eventually(5) { (metric("redis_ambassador_backend_reauthentications_total") ?? 0) >= 1 }, "\(ambassador.logText)")
        _ = try admin.command(["ACL", "SETUSER", "app", "<token-1"])
        #expect(try client.command(["INCR", "t"]) == .integer(2))
        // Connections opened from now on use the new token.
        _ = try admin.command(["CLIENT", "KILL", "USER", "app"])
        #expect(eventually(5) {
            if case .integer(let value)? = try? BlockingClient(port: ambassador.port).command(["INCR", "t"]) { return value >= 3 }
            return false
        },
                "\(ambassador.logText)")
        // A refresher that stopped shows as a growing age.
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-600)], ofItemAtPath: token.path)
        #expect(eventually(3) { (metric("redis_ambassador_auth_token_age_seconds") ?? 0) >= 600 })
        #expect(!ambassador.logText.contains("token-2"), "the token never appears in the log")
    }
}
}
