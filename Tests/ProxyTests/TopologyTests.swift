import Config
import Foundation
import RESP
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The health checker, eligibility, failover and read-your-writes, against real processes.
extension Integration {
@Suite(.serialized) struct TopologyTests {
    static func config(_ port: UInt16, _ admin: UInt16, master: RedisServer, replicas: [RedisServer],
                       extra: String) -> String {
        var text = "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nadmin:\n  listen: 127.0.0.1:\(admin)\n"
        text += "replicas:\n" + replicas.map { "  - 127.0.0.1:\($0.port)\n" }.joined()
        return text + "log_level: info\n" + extra
    }

    static func topology(_ ambassador: ConfigMapAmbassador) throws -> [String: Any] {
        try ambassador.configView()["topology"] as? [String: Any] ?? [:]
    }

    static func replicaState(_ ambassador: ConfigMapAmbassador, _ server: RedisServer) throws -> [String: Any] {
        let replicas = try topology(ambassador)["replicas"] as? [[String: Any]] ?? []
        return replicas.first { $0["address"] as? String == "127.0.0.1:\(server.port)" } ?? [:]
    }

    /// A replica that falls behind — its replication stream held back by a relay while it keeps
    /// answering reads, as on a congested link — leaves the read rotation: no read through the
    /// ambassador is staler than max_replica_lag plus two health intervals, and the replica comes
    /// back once it has caught up.
    @Test(arguments: ["300ms"])
    func laggingReplicaServesNoStaleReads(maxLag: String) throws {
        let master = try RedisServer()
        defer { master.stop() }
        let relay = try TCPRelay(to: master.port)
        defer { relay.stop() }
        let lagging = try RedisServer(arguments: ["--replicaof", "127.0.0.1", String(relay.port)])
        defer { lagging.stop() }
        try lagging.waitForReplicationLink()
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(relay.port)\nreplicas: [127.0.0.1:\(lagging.port)]\n"
                + "admin:\n  listen: 127.0.0.1:\(admin)\nhealth_interval: 100ms\nmax_replica_lag: \(maxLag)\n"
        }
        defer { ambassador.stop() }
        #expect(try eventually(3) { try Self.replicaState(ambassador, lagging)["eligible"] as? Bool == true })

        let readsDone = Atomic<Int>(0)
        // A writer bumps a counter on the master and notes when each value was acknowledged.
        let acknowledged = Mutex<[(Date, Int64)]>([])
        let stop = Atomic<Bool>(false)
        let writerDone = DispatchSemaphore(value: 0)
        let masterPort = master.port
        Thread {
            defer { writerDone.signal() }
            guard let client = try? BlockingClient(port: masterPort) else { return }
            while !stop.load(ordering: .relaxed) {
                if case .integer(let value)? = try? client.command(["INCR", "counter"]) {
                    acknowledged.withLock { $0.append((Date(), value)) }
                }
                // Paced by the reader: the next write once it has read (at most 50 ms apart).
                let seen = readsDone.load(ordering: .relaxed)
                eventually(0.05, every: 0.001) { readsDone.load(ordering: .relaxed) != seen || stop.load(ordering: .relaxed) }
            }
        }.start()
        // A watcher notes whether the checker took the replica out for lag.
        let sawLag = Atomic<Bool>(false)
        let watcherDone = DispatchSemaphore(value: 0)
        let adminPort = ambassador.adminPort
        let laggingAddress = "127.0.0.1:\(lagging.port)"
        Thread {
            defer { watcherDone.signal() }
            let saw = eventually(2.5, every: 0.03) {
                guard let body = try? HTTPProbe.request(port: adminPort, path: "/config").body,
                      let view = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                      let replicas = (view["topology"] as? [String: Any])?["replicas"] as? [[String: Any]],
                      let state = replicas.first(where: { $0["address"] as? String == laggingAddress }) else { return false }
                return (state["reason"] as? String ?? "").contains("lag")
            }
            sawLag.store(saw, ordering: .relaxed)
        }.start()
        #expect(eventually(3) { acknowledged.withLock { $0.count } >= 5 }, "the writer is running")
        relay.pauseReplication(true)  // the replica's data stands still for 1.5 s; it still answers
        let resume = Date().addingTimeInterval(1.5)
        let reader = try BlockingClient(port: ambassador.port, timeout: 5)
        var reads = 0
        var fromReplica = 0
        var stale: [String] = []
        let bound = 0.3 + 2 * 0.1 + 0.05  // max_replica_lag + two intervals + scheduling slack
        let end = Date().addingTimeInterval(2.2)
        while Date() < end {
            if Date() > resume { relay.pauseReplication(false) }
            let sent = Date()
            let reply = try reader.command(["GET", "counter"])
            reads += 1
            readsDone.add(1, ordering: .relaxed)
            let value = reply.text.flatMap { Int64($0) } ?? 0
            // The newest value acknowledged before (sent − bound) must be visible.
            let required = acknowledged.withLock { $0.last { $0.0 < sent.addingTimeInterval(-bound) }?.1 } ?? 0
            if value < required { stale.append("read \(value) < \(required)") }
        }
        relay.pauseReplication(false)
        stop.store(true, ordering: .relaxed)
        writerDone.wait()
        watcherDone.wait()
        fromReplica = try commandCalls(lagging, "get")
        #expect(stale.isEmpty, "\(stale.count) of \(reads) reads were stale: \(stale.prefix(5))")
        let tookOut = sawLag.load(ordering: .relaxed)
        #expect(tookOut, "the replica was taken out for lag")
        #expect(reads > 100 && fromReplica > 0)
        #expect(try eventually(5) { try Self.replicaState(ambassador, lagging)["eligible"] as? Bool == true },
                "it came back after catching up")
        print("lagging replica: \(reads) reads (\(fromReplica) on the replica), \(stale.count) stale")
    }

    /// balance: round-robin honours weights exactly (smooth weighted round-robin); least-outstanding
    /// sends a pipeline's reads to the replica with less in flight.
    @Test func balancingFollowsWeightsAndLoad() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let (light, heavy) = (cluster.replicas[0], cluster.replicas[1])
        let weighted = try Ambassador(cluster: cluster, policy: .preferReplica) { config in
            config.balance = .roundRobin
            config.replicaWeights = [Address(host: "127.0.0.1", port: heavy.port): 3]
        }
        let client = try weighted.client()
        for _ in 0..<400 { _ = try client.command(["GET", "w"]) }
        weighted.stop()
        #expect(try commandCalls(light, "get") == 100)
        #expect(try commandCalls(heavy, "get") == 300)

        let least = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { least.stop() }
        let before = try [light, heavy].map { try commandCalls($0, "get") }
        _ = try least.client().pipeline((0..<1_000).map { _ in ["GET", "w"] })
        let served = try zip([light, heavy], before).map { try commandCalls($0.0, "get") - $0.1 }
        #expect(served.reduce(0, +) == 1_000)
        #expect(served.allSatisfy { $0 >= 300 }, "a pipeline spreads over both replicas: \(served)")
    }

    /// A replica killed and restarted: reads keep working (retried elsewhere), it is marked down
    /// within two health intervals, and serves reads again once it is back in sync.
    @Test func replicaStoppedAndRestarted() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let master = cluster.master
        var victim = cluster.replicas[0]
        let victimPort = victim.port
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.config(port, admin, master: master, replicas: cluster.replicas, extra: "health_interval: 100ms\n")
        }
        defer { ambassador.stop() }
        _ = try master.client().command(["SET", "k", "v"])
        try cluster.sync()
        let reader = try BlockingClient(port: ambassador.port)
        for _ in 0..<50 { #expect(try reader.command(["GET", "k"]) == .bulk("v")) }
        victim.kill9()
        let killed = Date()
        var errors = 0
        var downAfter: Double?
        while Date().timeIntervalSince(killed) < 1.5 {
            if try reader.command(["GET", "k"]) != .bulk("v") { errors += 1 }
            if downAfter == nil, try Self.replicaState(ambassador, victim)["up"] as? Bool == false {
                downAfter = Date().timeIntervalSince(killed)
            }
        }
        #expect(errors == 0, "reads failed while the replica was gone")
        #expect((downAfter ?? 99) < 0.5, "marked down after \(downAfter ?? -1) s")
        victim = try RedisServer(port: victimPort, arguments: ["--replicaof", "127.0.0.1", String(master.port)])
        defer { victim.stop() }
        try victim.waitForReplicationLink()
        #expect(try eventually(5) { try Self.replicaState(ambassador, victim)["eligible"] as? Bool == true })
        var wrong: [RESPValue] = []
        let served = try eventually(5, every: 0.01) {
            for _ in 0..<20 {
                let reply = try reader.command(["GET", "k"])
                if reply != .bulk("v") { wrong.append(reply) }
            }
            return try commandCalls(victim, "get") > 0
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(3))")
        #expect(served, "the restarted replica serves reads again")
    }

    /// discovery: role — the master is whichever node says so. After the master dies and a replica
    /// is promoted (REPLICAOF NO ONE, the other re-pointed), writes through the ambassador go to
    /// the new master within two health intervals; no write ever reaches a non-master.
    @Test func roleDiscoveryFollowsAFailover() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let (old, promoted, other) = (cluster.master, cluster.replicas[0], cluster.replicas[1])
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nadmin:\n  listen: 127.0.0.1:\(admin)\ndiscovery: role\nnodes:\n"
                + [old, promoted, other].map { "  - 127.0.0.1:\($0.port)\n" }.joined()
                + "health_interval: 100ms\nfailover_hold: 3s\nlog_level: info\n"
        }
        defer { ambassador.stop() }
        #expect(try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(old.port)")
        let writer = try BlockingClient(port: ambassador.port, timeout: 10)
        for i in 0..<100 { #expect(try writer.command(["SET", "before:\(i)", "x"]) == .simple("OK")) }

        old.kill9()
        let killed = Date()
        // The ambassador has seen the master go before a replica is promoted.
        #expect(try eventually(3) { try Self.topology(ambassador)["master"] as? String == "none confirmed" })
        _ = try promoted.client().command(["REPLICAOF", "NO", "ONE"])
        let promotedAt = Date()
        _ = try other.client().command(["REPLICAOF", "127.0.0.1", String(promoted.port)])
        // The first write after the kill waits (failover_hold) and lands on the new master.
        var errorReplies = 0
        var firstWrite: Double?
        for i in 0..<200 {
            let reply = try writer.command(["SET", "after:\(i)", "y"])
            if reply == .simple("OK") {
                if firstWrite == nil { firstWrite = Date().timeIntervalSince(killed) }
            } else {
                errorReplies += 1
            }
        }
        let sincePromotion = (firstWrite ?? 99) - promotedAt.timeIntervalSince(killed)
        #expect(errorReplies == 0)
        #expect(sincePromotion < 0.2 + 0.05, "first write \(sincePromotion) s after the promotion (two intervals: 0.2 s)")
        #expect(try promoted.client().command(["GET", "after:199"]) == .bulk("y"))
        // No write reached a node that was not master: a replica would have refused it (READONLY).
        for server in [promoted, other] {
            #expect(try !server.info("errorstats").contains("READONLY"))
        }
        #expect(try eventually(3) {
            try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(promoted.port)"
        })
        print("role failover: first write \(String(format: "%.3f", firstWrite ?? -1)) s after the kill, "
              + "\(String(format: "%.3f", sincePromotion)) s after the promotion, \(errorReplies) error replies")
    }

    /// A tool's session (pinned to a dedicated master connection by its first admin command)
    /// follows a switchover too: the old master lives on as a replica, and the tool's next
    /// commands go to the new master, not to its old connection (where a write would be refused
    /// with READONLY).
    @Test func aToolSessionFollowsASwitchover() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let (old, promoted) = (cluster.master, cluster.replicas[0])
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nadmin:\n  listen: 127.0.0.1:\(admin)\ndiscovery: role\nnodes:\n"
                + [old, promoted].map { "  - 127.0.0.1:\($0.port)\n" }.joined()
                + "health_interval: 100ms\nfailover_hold: 3s\nlog_level: info\n"
        }
        defer { ambassador.stop() }
        let tool = try BlockingClient(port: ambassador.port, timeout: 10)
        #expect(try tool.command(["CONFIG", "SET", "slowlog-max-len", "200"]) == .simple("OK"))
        #expect(try tool.command(["SET", "tool:before", "x"]) == .simple("OK"))
        _ = try promoted.client().command(["REPLICAOF", "NO", "ONE"])
        _ = try old.client().command(["REPLICAOF", "127.0.0.1", String(promoted.port)])
        #expect(try eventually(5) { try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(promoted.port)" })
        #expect(try tool.command(["SET", "tool:after", "y"]) == .simple("OK"))
        #expect(try tool.command(["CONFIG", "GET", "slowlog-max-len"]) == .array([.bulk("slowlog-max-len"), .bulk("128")]),
                "the new master's setting")
        #expect(try promoted.client().command(["GET", "tool:after"]) == .bulk("y"))
    }

    /// discovery: sentinel with three sentinels: the ambassador finds the master and replicas from
    /// them (confirmed with ROLE). When the master dies and the sentinels fail over, writes wait
    /// and then land on the promoted replica; none fails and none reaches a non-master.
    @Test func sentinelDiscoveryFollowsAFailover() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let sentinels = try (0..<3).map { _ in try RedisSentinel(monitoring: cluster.master, name: "group", quorum: 2) }
        defer { sentinels.forEach { $0.stop() } }
        // The sentinels must know the replicas and each other before a failover can be agreed.
        #expect(try eventually(15) {
            try sentinels.allSatisfy { sentinel in
                let client = try sentinel.client()
                guard case .array(let replicas?) = try client.command(["SENTINEL", "REPLICAS", "group"]),
                      case .array(let peers?) = try client.command(["SENTINEL", "SENTINELS", "group"]) else { return false }
                return replicas.count == 2 && peers.count == 2
            }
        })
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nadmin:\n  listen: 127.0.0.1:\(admin)\ndiscovery: sentinel\nmaster_name: group\nsentinels:\n"
                + sentinels.map { "  - 127.0.0.1:\($0.port)\n" }.joined()
                // The sentinels' election may fail under load and be tried again after twice
                // their failover-timeout (5 s): writes wait that long.
                + "health_interval: 100ms\nfailover_hold: 45s\nlog_level: info\n"
        }
        defer { ambassador.stop() }
        #expect(try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(cluster.master.port)")
        #expect(try eventually(3) {
            (try Self.topology(ambassador)["replicas"] as? [[String: Any]] ?? []).filter { $0["eligible"] as? Bool == true }.count == 2
        })
        let writer = try BlockingClient(port: ambassador.port, timeout: 60)
        for i in 0..<50 { #expect(try writer.command(["SET", "before:\(i)", "x"]) == .simple("OK")) }

        cluster.master.kill9()
        let killed = Date()
        // A write racing the kill itself would get an error (it may or may not have run: writes
        // are never retried); from the moment the connection is seen closed, writes wait.
        #expect(try eventually(3) { try Self.topology(ambassador)["master"] as? String == "none confirmed" })
        var errorReplies: [String] = []
        var firstWrite: Double?
        for i in 0..<100 {
            let reply = try writer.command(["SET", "after:\(i)", "y"])
            if reply == .simple("OK") {
                if firstWrite == nil { firstWrite = Date().timeIntervalSince(killed) }
            } else {
                errorReplies.append("\(reply.text ?? "\(reply)")")
            }
        }
        #expect(errorReplies.isEmpty)
        #expect(firstWrite != nil)
        let newMaster = try #require(cluster.replicas.first { (try? $0.client().command(["ROLE"]))?.arrayFirstText == "master" })
        #expect(try newMaster.client().command(["GET", "after:99"]) == .bulk("y"))
        #expect(try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(newMaster.port)")
        for replica in cluster.replicas {
            #expect(try !replica.info("errorstats").contains("READONLY"), "no write reached a node while it was a replica")
        }
        print("sentinel failover: first write \(String(format: "%.3f", firstWrite ?? -1)) s after the master was killed, \(errorReplies.count) error replies \(errorReplies)")
    }

    /// Sentinels that require a password (`requirepass`) are asked with `sentinel_password_file`;
    /// without it the ambassador finds no master and its log says what the sentinel answered.
    @Test func sentinelsThatRequireAPasswordAreAskedWithIt() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let sentinel = try RedisSentinel(monitoring: cluster.master, name: "group", quorum: 1, password: "s3ntinel")
        defer { sentinel.stop() }
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("ra-sentinel-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: secrets) }
        let passwordFile = secrets.appendingPathComponent("password")
        try "s3ntinel\n".write(to: passwordFile, atomically: true, encoding: .utf8)
        func yaml(_ port: UInt16, _ admin: UInt16, password: Bool) -> String {
            "listen: 127.0.0.1:\(port)\nadmin:\n  listen: 127.0.0.1:\(admin)\ndiscovery: sentinel\nmaster_name: group\n"
                + "sentinels: [127.0.0.1:\(sentinel.port)]\nhealth_interval: 100ms\nlog_level: info\n"
                + (password ? "sentinel_password_file: \(passwordFile.path)\n" : "")
        }
        let ambassador = try ConfigMapAmbassador { yaml($0, $1, password: true) }
        defer { ambassador.stop() }
        #expect(try Self.topology(ambassador)["master"] as? String == "127.0.0.1:\(cluster.master.port)")
        #expect(try BlockingClient(port: ambassador.port).command(["SET", "k", "v"]) == .simple("OK"))
        let config = try ambassador.configView()["config"] as? [String: Any] ?? [:]
        #expect((config["sentinel_password"] as? String)?.hasPrefix("<redacted>") == true)
        #expect(!(try HTTPProbe.request(port: ambassador.adminPort, path: "/config").body.contains("s3ntinel")))

        do {
            // The sentinel is asked every 100 ms: 3 s is plenty to see its NOAUTH.
            let unauthenticated = try ConfigMapAmbassador({ yaml($0, $1, password: false) }, readyTimeout: 3)
            unauthenticated.stop()
            Issue.record("became ready without the sentinel password")
        } catch {
            #expect("\(error)".contains("sentinel 127.0.0.1:\(sentinel.port) answered: NOAUTH"), "\(error)")
        }
    }

    /// With no master at all, a write waits failover_hold and then gets a clear error; it is not
    /// written anywhere. Reads go on meanwhile.
    @Test func writesWithoutAMasterGetAClearErrorAfterTheHold() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let (master, replica) = (cluster.master, cluster.replicas[0])
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.config(port, admin, master: master, replicas: [replica], extra: "health_interval: 100ms\nfailover_hold: 500ms\n")
        }
        defer { ambassador.stop() }
        let client = try BlockingClient(port: ambassador.port)
        #expect(try client.command(["SET", "k", "1"]) == .simple("OK"))
        // The configured master stops being one (it now replicates from the replica's port).
        _ = try master.client().command(["REPLICAOF", "127.0.0.1", String(replica.port)])
        #expect(try eventually(2) { try Self.topology(ambassador)["master"] as? String == "none confirmed" })
        let start = Date()
        let reply = try client.command(["SET", "k", "2"])
        let waited = Date().timeIntervalSince(start)
        guard case .error(let bytes) = reply else {
            Issue.record("a write without a master got \(reply)")
            return
        }
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("TRYAGAIN"))
        #expect(waited >= 0.45 && waited < 1.5, "waited \(waited) s")
        #expect(try !master.info("errorstats").contains("READONLY"), "the write never reached the demoted node")
        #expect(try client.command(["PING"]) == .simple("PONG"))
    }

    /// read_your_writes (by offset, and by duration): a loop that writes a key and reads it back
    /// at once never reads an older value, while replicas still take reads that follow no write.
    @Test(arguments: ["offset", "1s"])
    func readYourWritesNeverReadsStale(mode: String) throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let master = cluster.master
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.config(port, admin, master: master, replicas: cluster.replicas,
                        extra: "health_interval: 100ms\nread_your_writes: \(mode)\n")
        }
        defer { ambassador.stop() }
        #expect(try eventually(3) {
            (try Self.topology(ambassador)["replicas"] as? [[String: Any]] ?? []).allSatisfy { $0["eligible"] as? Bool == true }
        })
        let client = try BlockingClient(port: ambassador.port)
        var stale = 0
        for i in 0..<2_000 {
            _ = try client.command(["SET", "ryw", "\(i)"])
            if try client.command(["GET", "ryw"]) != .bulk("\(i)") { stale += 1 }
        }
        #expect(stale == 0, "\(stale) stale reads under read_your_writes: \(mode)")
        // Reads go to replicas again once the window has passed (or the replicas have the write).
        let replicaGets = { try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +) }
        let last = try replicaGets()
        #expect(try eventually(3, every: 0.01) {
            _ = try client.command(["GET", "ryw"])
            return try replicaGets() > last
        })
        let before = try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +)
        for _ in 0..<50 { #expect(try client.command(["GET", "ryw"]) == .bulk("1999")) }
        let after = try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +)
        #expect(after - before == 50, "reads after the window were served by replicas")
        print("read_your_writes \(mode): 2000 write-then-read pairs, \(stale) stale")
    }

    /// A replica that answers -MASTERDOWN (its link is down, replica-serve-stale-data no) before
    /// the checker has noticed: the read is retried elsewhere and the client sees the value.
    @Test func masterDownReplyIsRetriedElsewhere() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let (master, broken, healthy) = (cluster.master, cluster.replicas[0], cluster.replicas[1])
        _ = try master.client().command(["SET", "k", "v"])
        try cluster.sync()
        let ambassador = try ConfigMapAmbassador { port, admin in
            // A long interval: only the reply itself can reveal the broken replica.
            Self.config(port, admin, master: master, replicas: [broken, healthy], extra: "health_interval: 30s\n")
        }
        defer { ambassador.stop() }
        let deadPort = try RedisServer.freePort()
        let admin = try broken.client()
        _ = try admin.command(["CONFIG", "SET", "replica-serve-stale-data", "no"])
        _ = try admin.command(["REPLICAOF", "127.0.0.1", String(deadPort)])
        guard case .error(let text) = try admin.command(["GET", "k"]), String(decoding: text, as: UTF8.self).hasPrefix("MASTERDOWN") else {
            Issue.record("the broken replica does not answer MASTERDOWN")
            return
        }
        let client = try BlockingClient(port: ambassador.port)
        for _ in 0..<20 { #expect(try client.command(["GET", "k"]) == .bulk("v")) }
        #expect(try commandCalls(healthy, "get") >= 20)
    }

    /// SCRIPT LOAD goes to the master and Redis 7 does not replicate it: EVALSHA_RO on a replica
    /// answers -NOSCRIPT, and the ambassador retries it on the master, so the app sees the result.
    @Test func evalshaReadOnlyFindsTheScriptOnTheMaster() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let client = try ambassador.client()
        let sha = try #require(try client.command(["SCRIPT", "LOAD", "return 42"]).text)
        for _ in 0..<10 { #expect(try client.command(["EVALSHA_RO", sha, "0"]) == .integer(42)) }
        #expect(try cluster.replicas.map { try commandCalls($0, "evalsha_ro") }.reduce(0, +) > 0, "replicas were tried first")
        // A script that exists nowhere still gets Redis's own error.
        guard case .error(let text) = try client.command(["EVALSHA_RO", String(repeating: "0", count: 40), "0"]) else {
            Issue.record("an unknown script did not fail")
            return
        }
        #expect(String(decoding: text, as: UTF8.self).hasPrefix("NOSCRIPT"))
    }

    /// The same in deep pipelines: a replica's -NOSCRIPT is taken out of the middle of a read
    /// that brought many replies (more than one look at the input frames at once), the read is
    /// retried on the master, and every reply still reaches the client in its place, values of
    /// every size around it.
    @Test func readsRetriedInTheMiddleOfDeepPipelinesKeepTheirPlace() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        // The values come from another session: this one has written nothing, so its reads
        // may go to the replicas at once.
        let writer = try ambassador.client(timeout: 20)
        let sha = try #require(try writer.command(["SCRIPT", "LOAD", "return 42"]).text)
        let values = (0..<200).map { String(repeating: Character(UnicodeScalar(UInt8(97 + $0 % 26))), count: ($0 * 389) % 5000) }
        _ = try writer.pipeline(values.indices.map { ["SET", "deep:\($0)", values[$0]] })
        try cluster.sync()
        let client = try ambassador.client(timeout: 20)
        var commands: [[String]] = []
        var expected: [[UInt8]] = []
        for round in 0..<6 {
            for i in values.indices {
                if (i + round) % 9 == 4 {
                    commands.append(["EVALSHA_RO", sha, "0"])
                    expected.append(Array(":42\r\n".utf8))
                } else {
                    commands.append(["GET", "deep:\(i)"])
                    expected.append(Array("$\(values[i].utf8.count)\r\n\(values[i])\r\n".utf8))
                }
            }
        }
        let replies = try client.pipeline(commands)
        let misplaced = zip(commands, zip(expected, replies)).enumerated().filter { $0.element.1.0 != $0.element.1.1 }
        #expect(misplaced.isEmpty, "\(misplaced.count) of \(commands.count) replies wrong, first at \(misplaced.first.map { "\($0.offset): \($0.element.0)" } ?? "")")
        #expect(try cluster.replicas.map { try commandCalls($0, "evalsha_ro") }.reduce(0, +) > 0, "replicas were tried first")
        #expect(try commandCalls(cluster.master, "evalsha_ro") > 0, "and the master answered")
    }

    /// command_timeout: a read stuck on a frozen replica is retried elsewhere after the timeout.
    @Test func commandTimeoutRetriesAReadStuckOnAFrozenReplica() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let (master, frozen) = (cluster.master, cluster.replicas[0])
        _ = try master.client().command(["SET", "k", "v"])
        try cluster.sync()
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.config(port, admin, master: master, replicas: cluster.replicas,
                        extra: "health_interval: 30s\ncommand_timeout: 300ms\nbalance: round-robin\n")
        }
        defer { ambassador.stop() }
        // Freeze the replica only once it is eligible: frozen before its first probe answered,
        // it would never take reads, and nothing would wait on it.
        #expect(eventually(10) { cluster.replicas.allSatisfy { ambassador.logText.contains("replica 127.0.0.1:\($0.port) eligible for reads") } })
        frozen.signal(SIGSTOP)
        defer { frozen.signal(SIGCONT) }
        let client = try BlockingClient(port: ambassador.port, timeout: 5)
        let start = Date()
        for _ in 0..<4 { #expect(try client.command(["GET", "k"]) == .bulk("v")) }
        let took = Date().timeIntervalSince(start)
        #expect(took < 2, "four reads took \(took) s")
        #expect(ambassador.logText.contains("command_timeout"))
    }
}
}

extension RESPValue {
    /// The first element of an array reply, as text (ROLE's role name).
    var arrayFirstText: String? {
        if case .array(let items?) = self { return items.first?.text }
        return nil
    }
}
