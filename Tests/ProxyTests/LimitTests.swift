import Config
import Foundation
@testable import Proxy
import Synchronization
import RESP
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// What a misbehaving client can cost the ambassador: never more than it would cost Redis.
extension Integration {
@Suite(.serialized) struct LimitTests {
    static func rssBytes(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(whereSeparator: \.isWhitespace)[1]) else { return 0 }
        return kib * 1024
    }

    /// A subscriber that never reads while 400 MB are published. Direct, Redis cuts it off at
    /// its `client-output-buffer-limit pubsub` (32 MB by default) and PUBLISH then counts no
    /// receiver. Through the ambassador the same happens — Redis cuts off the ambassador's
    /// connection, and the ambassador the client — and the ambassador's memory stays bounded
    /// (it used to buffer all of it: 25 → 420 MB for 6,000 × 64 KiB).
    @Test func aSubscriberThatNeverReadsIsCutOffAsByRedisAndCostsTheAmbassadorLittle() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(arguments: ["--listen", "127.0.0.1:\(port)", "--master", "127.0.0.1:\(master.port)"])
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        let pid = ambassador.process.processIdentifier
        let baseline = Self.rssBytes(pid)
        let message = String(repeating: "m", count: 64 * 1024)
        var peak = 0
        for (name, target) in [("direct", master.port), ("ambassador", port)] {
            let subscriber = try BlockingClient(port: target, timeout: 10)
            #expect(try subscriber.command(["SUBSCRIBE", "news"]) == .array([.bulk("subscribe"), .bulk("news"), .integer(1)]), "\(name)")
            // From here on the subscriber reads nothing.
            let publisher = try master.client()
            var receiversAtTheEnd: RESPValue = .null
            for i in 0..<6_400 {  // 400 MB
                receiversAtTheEnd = try publisher.command(["PUBLISH", "news", message])
                if name == "ambassador" && i % 64 == 0 { peak = max(peak, Self.rssBytes(pid)) }
            }
            #expect(receiversAtTheEnd == .integer(0), "\(name): Redis cut the subscriber off (\(receiversAtTheEnd))")
            // The subscriber finds its connection closed once it reads what was buffered for it.
            #expect(subscriber.isClosedByPeer(), "\(name)")
        }
        #expect(peak > 0 && peak - baseline < 48 << 20,
                "ambassador RSS \(baseline >> 20) MB before, \(peak >> 20) MB at most while 400 MB were published")
        // And it goes on serving.
        #expect(try BlockingClient(port: port).command(["PING"]) == .simple("PONG"))
        print("relay limit: ambassador RSS \(baseline >> 10) KiB before, peak \(peak >> 10) KiB while 400 MB were published to a subscriber that never read")
    }

    /// `max_clients` as Redis's `maxclients`: past it a new connection gets exactly Redis's error
    /// and is closed; once one leaves, a new one is served again. Counted across workers.
    @Test func maxClientsAsRedisMaxclients() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let limited = try RedisServer(arguments: ["--maxclients", "3"])
        defer { limited.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nmax_clients: 3\nworkers: 2\nlog_level: warning\n")
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        // Direct, a Redis with maxclients 3: three are served, the fourth is refused and closed.
        var direct: [BlockingClient] = []
        for _ in 0..<3 {
            let client = try BlockingClient(port: limited.port)
            #expect(try client.readRawReplyAfter(["PING"]) == Array("+PONG\r\n".utf8))
            direct.append(client)
        }
        let refused = try BlockingClient(port: limited.port)
        let directRefusal = try refused.readRawReply()
        #expect(text(directRefusal) == "-ERR max number of clients reached\r\n")
        #expect(refused.isClosedByPeer())
        direct.removeAll()
        // Through the ambassador: three are served, the fourth refused with the same bytes and closed.
        // (A connection that just closed — the readiness probe's — may not be counted out yet:
        // each of the three is awaited.)
        var clients: [BlockingClient] = []
        for _ in 0..<3 {
            var served: BlockingClient?
            eventually(5) {
                guard let client = try? BlockingClient(port: port, timeout: 1),
                      (try? client.readRawReplyAfter(["PING"])) == Array("+PONG\r\n".utf8) else { return false }
                served = client
                return true
            }
            clients.append(try #require(served))
        }
        let fourth = try BlockingClient(port: port)
        #expect(try fourth.readRawReply() == directRefusal)
        #expect(fourth.isClosedByPeer())
        // One leaves: a new one is served.
        clients.removeFirst()
        #expect(eventually(5) { (try? BlockingClient(port: port, timeout: 1).command(["PING"])) == .simple("PONG") })
    }

    /// `client_idle_timeout` as Redis's `timeout`: an idle connection is closed, silently; one
    /// that keeps sending, one blocked in BLPOP and a subscriber are not.
    @Test func idleTimeoutAsRedisTimeout() throws {
        let master = try RedisServer(arguments: ["--timeout", "1"])
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let running = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nclient_idle_timeout: 1s\nlog_level: warning\n")
        defer { running.stop() }
        try #require(running.answers(on: port), "\(running.logText)")
        for (name, target) in [("direct", master.port), ("ambassador", port)] {
            // A short timeout: `isClosedByPeer` then answers within 0.2 s.
            let idle = try BlockingClient(port: target, timeout: 0.2)
            #expect(try idle.command(["PING"]) == .simple("PONG"))
            let busy = try BlockingClient(port: target, timeout: 6)
            let blocked = try BlockingClient(port: target, timeout: 6)
            try blocked.send(BlockingClient.encode(["BLPOP", "idle-list-\(name)", "0"]))
            let subscriber = try BlockingClient(port: target, timeout: 6)
            _ = try subscriber.command(["SUBSCRIBE", "idle-channel"])
            // The idle one is closed after a second or two (Redis checks about every second);
            // the busy one, sending every quarter of a second, is kept.
            var busyAnswered = true
            let closed = eventually(6, every: 0.05) {
                busyAnswered = busyAnswered && (try? busy.command(["PING"])) == .simple("PONG")
                return idle.isClosedByPeer()
            }
            #expect(closed, "\(name): the idle connection is closed")
            #expect(busyAnswered, "\(name)")
            #expect(try busy.command(["PING"]) == .simple("PONG"), "\(name)")
            // The blocked one still waits and gets its element; the subscriber still hears.
            _ = try master.client().command(["RPUSH", "idle-list-\(name)", "x"])
            #expect(try blocked.readReply() == .array([.bulk("idle-list-\(name)"), .bulk("x")]), "\(name)")
            _ = try master.client().command(["PUBLISH", "idle-channel", "still"])
            #expect(try subscriber.readReply() == .array([.bulk("message"), .bulk("idle-channel"), .bulk("still")]), "\(name)")
        }
    }
}
}

extension Integration {
/// `clients`: authentication at the ambassador, byte for byte as a Redis with requirepass and an
/// ACL user answers it, independent of the backend (which here has no password at all).
@Suite(.serialized) struct ClientAuthTests {
    @Test func clientsMustAuthenticateAsWithRequirepass() throws {
        let direct = try RedisServer(arguments: ["--requirepass", "s3cret"])
        defer { direct.stop() }
        _ = try { () throws -> RESPValue in
            let admin = try BlockingClient(port: direct.port)
            _ = try admin.command(["AUTH", "s3cret"])
            return try admin.command(["ACL", "SETUSER", "app", "on", ">apppass", "~*", "&*", "+@all"])
        }()
        let backend = try RedisServer()
        defer { backend.stop() }
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("ra-clients-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: secrets) }
        try "s3cret\n".write(to: secrets.appendingPathComponent("default"), atomically: true, encoding: .utf8)
        try "apppass\n".write(to: secrets.appendingPathComponent("app"), atomically: true, encoding: .utf8)
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(yaml: """
            listen: 127.0.0.1:\(port)
            master: 127.0.0.1:\(backend.port)
            log_level: warning
            clients:
              password_file: \(secrets.appendingPathComponent("default").path)
              users:
                - {name: app, password_file: \(secrets.appendingPathComponent("app").path)}
            """)
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        let steps: [[String]] = [
            ["GET", "k"], ["PING"], ["GET"], ["NoSuchCmd", "a", "b"], ["HELLO", "3"], ["CLIENT", "ID"],
            ["CLIENT", "Foo"], ["client"], ["CONFIG", "Xyz", "a"], ["OBJECT", "bar", "k"], ["CLIENT", "setname"],
            ["AUTH", "wrong"], ["AUTH", "nobody", "x"], ["AUTH", "app", "wrong"], ["HELLO", "3", "AUTH", "app", "wrong"],
            ["AUTH", "s3cret"], ["GET", "k"], ["PING"],
            ["RESET"], ["GET", "k"],
            ["AUTH", "app", "apppass"], ["SET", "k", "v"], ["GET", "k"],
        ]
        let viaAmbassador = try BlockingClient(port: port)
        let viaRedis = try BlockingClient(port: direct.port)
        for step in steps {
            let expected = try viaRedis.readRawReplyAfter(step)
            #expect(text(try viaAmbassador.readRawReplyAfter(step)) == text(expected), "\(step)")
        }
        // QUIT before authenticating: +OK and the connection closes, both ways.
        for target in [direct.port, port] {
            let fresh = try BlockingClient(port: target)
            #expect(text(try fresh.readRawReplyAfter(["QUIT"])) == "+OK\r\n")
            #expect(fresh.isClosedByPeer())
        }
        // Nothing reached the backend before AUTH: of the four GETs sent, the two after it.
        let (gets, sets) = (try commandCalls(backend, "get"), try commandCalls(backend, "set"))
        #expect(gets == 2 && sets == 1, "GET \(gets), SET \(sets) on the backend")
    }
}
}

extension Integration {
/// `commands`: the same refusals, byte for byte, as a Redis ACL user with the same rules, and
/// a refused command never reaches a backend.
@Suite(.serialized) struct CommandRulesTests {
    @Test func denyAndAllowAsARedisACLUser() throws {
        let direct = try RedisServer()
        defer { direct.stop() }
        #expect(try direct.client().command(["ACL", "SETUSER", "u", "on", ">p", "~*", "&*", "+@all", "-@dangerous", "+info"]) == .simple("OK"))
        let backend = try RedisServer()
        defer { backend.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(yaml: """
            listen: 127.0.0.1:\(port)
            master: 127.0.0.1:\(backend.port)
            log_level: warning
            commands: {deny: ['@dangerous'], allow: [info]}
            """)
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        let viaRedis = try BlockingClient(port: direct.port)
        #expect(try viaRedis.command(["AUTH", "u", "p"]) == .simple("OK"))
        let viaAmbassador = try BlockingClient(port: port)
        let refused: [[String]] = [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "SET", "maxclients", "10"], ["CONFIG", "GET", "maxclients"],
                                   ["KEYS", "*"], ["SHUTDOWN", "NOSAVE"], ["MIGRATE", "h", "1", "k", "0", "1"], ["SORT", "l"]]
        for step in refused {
            let expected = try viaRedis.readRawReplyAfter(step)
            #expect(text(expected).hasPrefix("-NOPERM"), "\(step): \(text(expected))")
            #expect(text(try viaAmbassador.readRawReplyAfter(step)) == text(expected), "\(step)")
        }
        // A refusal inside MULTI flags the transaction, so EXEC aborts it; without one EXEC runs.
        for step in [["SET", "k", "v"], ["GET", "k"], ["DEL", "k"], ["PING"],
                     ["MULTI"], ["SET", "t", "1"], ["FLUSHALL"], ["INCR", "t"], ["EXEC"], ["GET", "t"],
                     ["MULTI"], ["SET", "t", "2"], ["EXEC"], ["GET", "t"], ["DEL", "t"]] {
            #expect(text(try viaAmbassador.readRawReplyAfter(step)) == text(try viaRedis.readRawReplyAfter(step)), "\(step)")
        }
        // INFO: allowed as an exception (its text differs between the two servers).
        #expect(try viaAmbassador.readRawReplyAfter(["INFO", "server"]).first == UInt8(ascii: "$"))
        #expect(try commandCalls(backend, "flushall") == 0 && commandCalls(backend, "keys") == 0 && commandCalls(backend, "config|set") == 0)
    }
}
}

/// Reconnect discipline: a lost backend is retried with a pause that doubles up to
/// `reconnect_max`, jittered, so sidecars that lost the same master come back spread out.
@Suite struct ReconnectBackoffTests {
    @Test func theBackoffDoublesUpToTheCapAndIsJittered() {
        let full = (0..<7).map { Backoff.delay(attempt: $0, base: 0.25, cap: 2, random: 1) }
        #expect(full == [0.25, 0.5, 1, 2, 2, 2, 2])
        #expect(Backoff.delay(attempt: 2, base: 0.25, cap: 2, random: 0.5) == 0.5)
        #expect(Backoff.delay(attempt: 60, base: 0.25, cap: 2, random: 1) == 2)
        #expect(Backoff.delay(attempt: 3, base: 1, cap: 0.1, random: 1) == 1, "a cap below the base is the base")
        let draws = (0..<200).map { _ in Backoff.delay(attempt: 3, base: 0.25, cap: 2) }
        #expect(draws.allSatisfy { $0 >= 1 && $0 <= 2 } && Set(draws).count > 100, "random 50-100 % of 2 s")
    }

    /// The timeline of one ambassador's attempts at a "master" that accepts and drops every
    /// connection (a restarting server): the gaps grow, and none passes reconnect_max.
    @Test func attemptsAtAFailingMasterSpreadOut() throws {
        let recorder = try AcceptRecorder()
        defer { recorder.stop() }
        let port = recorder.port
        var config = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 0)), master: Address(host: "127.0.0.1", port: port))
        config.reconnectInterval = Duration(seconds: 0.1)
        config.reconnectMax = Duration(seconds: 0.8)
        let ambassador = try Ambassador(config)
        defer { ambassador.stop() }
        eventually(6) { recorder.times.count >= 8 }
        let times = recorder.times
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        try #require(gaps.count >= 6, "attempts: \(times.count)")
        // Fixed 100 ms retries would make about 40 attempts in 4 s; the backoff made the gaps
        // grow toward 0.4-0.8 s, and none is longer than the cap (plus scheduling slack).
        #expect(gaps.suffix(3).allSatisfy { $0 >= 0.3 }, "late gaps \(gaps)")
        #expect(gaps.allSatisfy { $0 <= 1.2 }, "gaps \(gaps)")
        #expect(gaps.prefix(2).allSatisfy { $0 <= 0.35 }, "early gaps \(gaps)")
    }
}

extension Integration {
/// A thousand sidecars and one master: when the master dies, every sidecar loses it at the same
/// instant. Were they to retry on a fixed period they would stay in step and knock on the
/// restarted master together; the jittered backoff (reconnects and the health probes of a down
/// node) spreads them out. Sixteen processes stand in for the thousand.
@Suite(.serialized) struct SidecarHerdTests {
    /// A node down for long does not fill the log: each connection logs its first five failed
    /// attempts in a row (the backoff growing), then one line a minute, not one per attempt.
    /// (Here attempts come every 10–40 ms; the test waits for forty failed health probes, on
    /// the same backoff: some fifty reconnects a connection.)
    @Test func aLongOutageLogsAFewLinesNotOnePerAttempt() throws {
        let dead = try RedisServer.freePort()  // nothing listens there
        let listen = try RedisServer.freePort()
        let admin = try RedisServer.freePort()
        let sidecar = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(listen)\nadmin:\n  listen: 127.0.0.1:\(admin)\n"
                                                + "master: 127.0.0.1:\(dead)\nread_policy: master\nworkers: 1\n"
                                                + "health_interval: 10ms\nreconnect_interval: 10ms\nreconnect_max: 40ms\n")
        defer { sidecar.stop() }
        let perAttempt = "cannot connect to master"
        #expect(eventually(5) { sidecar.logText.contains("(further failures: one line a minute)") }, "\(sidecar.logText.suffix(2000))")
        func failedChecks() -> Int {
            let body = (try? HTTPProbe.request(port: admin, path: "/config").body) ?? ""
            let nodes = ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])
                .flatMap { $0["topology"] as? [String: Any] }?["nodes"] as? [[String: Any]]
            return nodes?.compactMap { $0["consecutive_failures"] as? Int }.max() ?? 0
        }
        #expect(eventually(10) { failedChecks() >= 40 })
        let log = sidecar.logText
        let lines = log.components(separatedBy: perAttempt).count - 1
        let connections = log.components(separatedBy: "(further failures: one line a minute)").count - 1
        #expect(connections >= 1 && lines <= 5 * connections + 2, "\(lines) lines for \(connections) connection(s):\n\(log.suffix(3000))")
        #expect(!log.contains("still cannot connect"), "a minute has not passed")
        #expect(sidecar.isRunning)
    }

    @Test func sidecarsThatLostTheMasterTogetherComeBackSpreadOut() throws {
        let master = try RedisServer()
        let port = master.port
        var sidecars: [AmbassadorProcess] = []
        defer { sidecars.forEach { $0.stop() } }
        var listenPorts: [UInt16] = []
        for _ in 0..<16 {
            let listen = try RedisServer.freePort()
            listenPorts.append(listen)
            sidecars.append(try AmbassadorProcess(arguments: ["--listen", "127.0.0.1:\(listen)", "--master", "127.0.0.1:\(port)",
                                                              "--read-policy", "master"]))
        }
        for (sidecar, listen) in zip(sidecars, listenPorts) {
            try #require(sidecar.answers(on: listen), "log:\n\(sidecar.logText)")
        }
        master.kill9()
        // The outage lasts until every sidecar's backoff has reached reconnect_max (2 s) from
        // reconnect_interval (250 ms): past four failed attempts in a row (250, 500, 1,000 ms,
        // then the cap), each logged.
        let failedAttempts = { (sidecar: AmbassadorProcess) in
            sidecar.logText.components(separatedBy: "cannot connect to master").count - 1
        }
        #expect(eventually(20, every: 0.1) { sidecars.allSatisfy { failedAttempts($0) >= 5 } })
        // The master "restarts": something accepts on its port again (and drops each connection,
        // so every sidecar goes on retrying), and notes when each attempt arrives.
        let recorder = try AcceptRecorder(port: port)
        defer { recorder.stop() }
        let start = Date().timeIntervalSince1970
        // The observation window is 2.5 s: it is over once an attempt arrives after it.
        #expect(eventually(10, every: 0.05) { recorder.times.contains { $0 - start >= 2.5 } })
        let offsets = recorder.times.map { $0 - start }.filter { $0 < 2.5 }
        var buckets = [Int](repeating: 0, count: 25)
        for offset in offsets { buckets[min(24, Int(offset * 10))] += 1 }
        print("connection attempts at the restarted master, per 100 ms (16 sidecars): \(buckets)")
        // Every sidecar came back within reconnect_max plus a health interval...
        #expect(offsets.count >= 16, "\(buckets)")
        // ...and not at once: no 100 ms holds more than a sixth of the attempts, and they arrive
        // across most of the window. In step, each retry would bring all 16 together; probes on
        // health rounds would come in bursts every health_interval (the sidecars started
        // together, so their rounds share a phase).
        #expect(buckets.max()! <= max(5, offsets.count / 6), "\(buckets)")
        #expect(buckets.filter { $0 > 0 }.count >= 15, "\(buckets)")
    }
}
}
