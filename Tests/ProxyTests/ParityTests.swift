import Config
import Foundation
import RESP
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport

/// Beyond the happy path: what a direct Redis shows a client, the ambassador must show too.
/// Each test runs the same thing direct and through the ambassador and compares.
extension Integration {
@Suite(.serialized) struct ParityTests {
    /// A Lua script that returns a cyclic table: Redis nests the reply until Lua's stack limit
    /// (about 8,000 levels), then ends it with an error.
    static let deepScript = "local a = {}; local b = {a}; a[1] = b; return a"

    /// Any nesting Redis produces is framed: the deep reply arrives byte for byte, and the other
    /// requests on the same shared connection (before it, after it, from another client) are
    /// answered as usual instead of failing with a lost connection.
    @Test func repliesNestedThousandsDeepAreFramed() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let commands: [[String]] = [["SET", "d:k", "v"], ["EVAL", Self.deepScript, "0"], ["GET", "d:k"],
                                    ["EVAL", Self.deepScript, "0"], ["INCR", "d:n"]]
        let direct = try cluster.master.client(timeout: 10).pipeline(commands)
        #expect(direct[1].count > 30_000, "Redis nests the reply thousands deep")
        _ = try cluster.master.client().command(["DEL", "d:n"])

        let first = try ambassador.client(timeout: 10)
        let second = try ambassador.client(timeout: 10)
        // Both sessions share the one backend connection; the second's pipeline interleaves.
        try first.send(commands.flatMap(BlockingClient.encode))
        try second.send([["GET", "d:k"], ["EVAL", Self.deepScript, "0"], ["PING"]].flatMap(BlockingClient.encode))
        let proxied = try commands.map { _ in try first.readRawReply() }
        let others = try (0..<3).map { _ in try second.readRawReply() }
        // Compared as Bools: a failing == on 30 KB arrays would make the test library diff them.
        #expect(proxied.map(\.count) == direct.map(\.count))
        #expect(proxied.elementsEqual(direct), "the deep replies differ")
        #expect(others.map(\.count) == [7, direct[1].count, 7])
        #expect(others.elementsEqual([Array("$1\r\nv\r\n".utf8), direct[1], Array("+PONG\r\n".utf8)]))
    }

    static let spin = "local i = 0 while true do i = i + 1 end"
    static let spinLibrary = "#!lua name=spinlib\nredis.register_function('spin', function() local i = 0 while true do i = i + 1 end end)"

    /// The steps of the busy-script check: one client runs a script that never ends, another
    /// meets -BUSY, kills it, and carries on; then the same with a function. `port` is the
    /// master's or the ambassador's. Returns the replies and the SCRIPT KILL latency.
    static func busyScriptSession(port: UInt16, pause: () throws -> Void) throws -> ([String], Double) {
        let runner = try BlockingClient(port: port, timeout: 10)
        let other = try BlockingClient(port: port, timeout: 10)
        var replies: [String] = []
        try runner.send(BlockingClient.encode(["EVAL", spin, "0"]))
        try pause()
        replies.append(text(try other.readRawReplyAfter(["SET", "busy:k", "v"])))
        // A write: a read may be served by a replica, which is not busy.
        replies.append(text(try other.readRawReplyAfter(["DEL", "busy:none"])))
        let start = Date()
        replies.append(text(try other.readRawReplyAfter(["SCRIPT", "KILL"])))
        let killLatency = Date().timeIntervalSince(start)
        replies.append(text(try runner.readRawReply()))
        replies.append(text(try other.readRawReplyAfter(["SET", "busy:k", "v"])))
        replies.append(text(try runner.readRawReplyAfter(["GET", "busy:k"])))
        try runner.send(BlockingClient.encode(["FCALL", "spin", "0"]))
        try pause()
        replies.append(text(try other.readRawReplyAfter(["INCR", "busy:n"])))
        replies.append(text(try other.readRawReplyAfter(["FUNCTION", "KILL"])))
        replies.append(text(try runner.readRawReply()))
        replies.append(text(try runner.readRawReplyAfter(["INCR", "busy:n"])))
        return (replies, killLatency)
    }

    /// A script that never ends: the master stays up and confirmed (it answers -BUSY), other
    /// sessions get -BUSY as a direct client does, SCRIPT KILL and FUNCTION KILL reach it at
    /// once, and everything works again right after — byte for byte what a direct client sees.
    @Test func busyScriptKeepsTheMasterAndCanBeKilled() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let admin = try cluster.master.client()
        // Redis answers -BUSY once a script has run this long (5 s by default).
        _ = try admin.command(["CONFIG", "SET", "busy-reply-threshold", "1000"])
        _ = try admin.command(["FUNCTION", "LOAD", Self.spinLibrary])
        let ambassador = try ConfigMapAmbassador { port, adminPort in
            TopologyTests.config(port, adminPort, master: cluster.master, replicas: cluster.replicas,
                                 extra: "health_interval: 100ms\nhealth_failures: 2\nfailover_hold: 300ms\n")
        }
        defer { ambassador.stop() }
        let master = "127.0.0.1:\(cluster.master.port)"
        // Past busy-reply-threshold: the master answers -BUSY.
        let (direct, _) = try Self.busyScriptSession(port: cluster.master.port) {
            #expect(eventually(5) { (try? cluster.master.client().command(["PING"]))?.text?.hasPrefix("BUSY") == true })
        }
        _ = try admin.command(["DEL", "busy:k", "busy:n"])
        func masterBusy() throws -> Bool {
            let nodes = try TopologyTests.topology(ambassador)["nodes"] as? [[String: Any]] ?? []
            return nodes.contains { $0["address"] as? String == master && $0["busy"] as? Bool == true
                && ($0["last_error"] as? String ?? "").hasPrefix("BUSY") }
        }
        // The checker has seen the direct run's scripts end.
        #expect(try eventually(5) { try !masterBusy() })
        let observer = try BlockingClient(port: ambassador.port, timeout: 10)
        var confirmedWhileBusy: [Bool] = []
        let (proxied, killLatency) = try Self.busyScriptSession(port: ambassador.port) {
            // The script's connection is stalled (past stall_threshold, so other sessions' commands
            // go out on another one), and the checks, unanswered for the first second (Redis
            // answers nobody until busy-reply-threshold), have got -BUSY.
            #expect(try eventually(5) {
                let stalled = (try observer.command(["AMBASSADOR", "INFO"]).text ?? "").contains("stalled_connections:1")
                return try stalled && masterBusy()
            })
            confirmedWhileBusy.append(try TopologyTests.topology(ambassador)["master"] as? String == master)
        }
        #expect(direct[0].hasPrefix("-BUSY"), "direct: \(direct)")
        #expect(proxied == direct)
        #expect(confirmedWhileBusy == [true, true], "the busy master stayed the confirmed master")
        #expect(killLatency < 0.5, "SCRIPT KILL took \(killLatency) s")
        print("SCRIPT KILL through the ambassador under a busy script: \(Int(killLatency * 1000)) ms")
    }

    /// What the ambassador answers itself (PING, ECHO, SELECT, the CLIENT commands about the
    /// app's connection) a busy Redis refuses: Redis's own tests poll PING for -BUSY to know a
    /// script runs. Through the ambassador they get the same -BUSY, the refused SETNAME and
    /// SELECT leave the session as it was, and a PING pipelined behind the script's EVAL waits
    /// for it as on a direct connection.
    @Test func commandsTheAmbassadorAnswersMeetABusyScriptAsDirect() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let admin = try cluster.master.client()
        _ = try admin.command(["CONFIG", "SET", "busy-reply-threshold", "200"])
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        func session(port: UInt16) throws -> [String] {
            let runner = try BlockingClient(port: port, timeout: 10)
            let other = try BlockingClient(port: port, timeout: 10)
            _ = try other.command(["PING"])
            try runner.send([["EVAL", Self.spin, "0"], ["PING"], ["CLIENT", "GETNAME"]].flatMap(BlockingClient.encode))
            #expect(try eventually(5) { try other.command(["PING"]).text?.hasPrefix("BUSY") == true })
            var replies = try [["PING"], ["PING", "hi"], ["ECHO", "x"], ["CLIENT", "ID"], ["CLIENT", "SETNAME", "named"],
                               ["CLIENT", "GETNAME"], ["CLIENT", "INFO"],
                               ["CLIENT", "LIST"], ["SELECT", "1"], ["SCRIPT", "KILL"]].map { text(try other.readRawReplyAfter($0)) }
            replies += try (0..<3).map { _ in text(try runner.readRawReply()) }
            replies += try [["CLIENT", "GETNAME"], ["SET", "busy:db", "\(port)"], ["PING"]].map { text(try other.readRawReplyAfter($0)) }
            // The refused SELECT left the session in database 0.
            replies.append(try admin.command(["GET", "busy:db"]).text ?? "nil")
            replies[replies.count - 1] = replies.last == "\(port)" ? "in db 0" : "elsewhere: \(replies.last!)"
            return replies
        }
        let direct = try session(port: cluster.master.port)
        let proxied = try session(port: ambassador.port)
        #expect(direct.prefix(9).allSatisfy { $0.hasPrefix("-BUSY") }, "direct: \(direct)")
        #expect(proxied == direct)
    }

    /// CLIENT SETNAME queued in a transaction names the session when EXEC runs it, and only
    /// then: not when WATCH aborts the transaction, DISCARD drops it or the name is invalid.
    /// The name is read back at once (pipelined behind EXEC) and after, as on a direct
    /// connection.
    @Test func clientSetNameInATransactionNamesTheSessionAsDirect() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        func session(port: UInt16) throws -> [String] {
            let client = try BlockingClient(port: port, timeout: 10)
            let other = try BlockingClient(port: port, timeout: 10)
            var replies = try client.pipeline([["MULTI"], ["CLIENT", "SETNAME", "first"], ["SET", "n:k", "1"], ["EXEC"],
                                               ["CLIENT", "GETNAME"]]).map(text)
            replies += try client.pipeline([["MULTI"], ["CLIENT", "SETNAME", "not valid"], ["EXEC"], ["CLIENT", "GETNAME"],
                                            ["MULTI"], ["CLIENT", "SETNAME", "dropped"], ["DISCARD"], ["CLIENT", "GETNAME"]]).map(text)
            // WATCH: another client's write aborts the transaction, and its rename with it.
            replies += try [["WATCH", "n:k"], ["MULTI"], ["CLIENT", "SETNAME", "aborted"]].map { text(try client.readRawReplyAfter($0)) }
            replies.append(text(try other.readRawReplyAfter(["SET", "n:k", "2"])))
            replies += try [["EXEC"], ["CLIENT", "GETNAME"]].map { text(try client.readRawReplyAfter($0)) }
            replies += try client.pipeline([["MULTI"], ["CLIENT", "SETNAME", ""], ["EXEC"], ["CLIENT", "GETNAME"],
                                            ["MULTI"], ["PING"], ["CLIENT", "SETNAME", "last"], ["EXEC"]]).map(text)
            replies.append(text(try client.readRawReplyAfter(["CLIENT", "GETNAME"])))
            return replies
        }
        let direct = try session(port: cluster.master.port)
        #expect(direct.filter { $0 == "$5\r\nfirst\r\n" }.count == 4, "direct: \(direct)")
        #expect(try session(port: ambassador.port) == direct)
    }

    /// HELLO from a pinned session (here: WATCHing) that Redis refuses (a wrong password, a bad
    /// name) leaves its protocol as it was; one it accepts switches it, the dedicated connection
    /// too; and the id it answers is the session's (CLIENT ID's), as unpinned.
    @Test func helloWhilePinnedChangesTheProtocolOnlyWhenAccepted() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let commands: [[String]] = [["WATCH", "hp:k"], ["HELLO", "3", "AUTH", "someone", "wrong"], ["GET", "hp:k"],
                                    ["HGETALL", "hp:h"], ["HELLO", "3", "SETNAME", "bad name"], ["GET", "hp:k"], ["UNWATCH"],
                                    ["HGETALL", "hp:h"], ["WATCH", "hp:k"], ["HELLO", "3"], ["GET", "hp:k"], ["HGETALL", "hp:h"],
                                    ["MULTI"], ["GET", "hp:k"], ["EXEC"], ["HELLO", "2", "SETNAME", "named"], ["CLIENT", "GETNAME"],
                                    ["HGETALL", "hp:h"], ["UNWATCH"], ["GET", "hp:k"]]
        func replies(port: UInt16) throws -> [String] {
            let client = try BlockingClient(port: port, timeout: 10)
            let id = try client.command(["CLIENT", "ID"])
            return try commands.map { command in
                let reply = text(try client.readRawReplyAfter(command))
                // HELLO's id is the client's: checked against CLIENT ID, then masked.
                guard command[0] == "HELLO", reply.hasPrefix("%") || reply.hasPrefix("*") else { return reply }
                let idField = "$2\r\nid\r\n\(String(decoding: id.encoded, as: UTF8.self))"
                return reply.contains(idField) ? reply.replacingOccurrences(of: idField, with: "$2\r\nid\r\n:ID\r\n") : "wrong id: \(reply)"
            }
        }
        let direct = try replies(port: cluster.master.port)
        #expect(direct.contains("_\r\n") && direct.contains("$-1\r\n"), "direct: \(direct)")
        let proxied = try replies(port: ambassador.port)
        #expect(proxied == direct, "\(zip(direct, proxied).filter { $0 != $1 })")
    }

    /// CLIENT PAUSE WRITE holds a session's write back; direct, other clients' reads go on. They
    /// must through the ambassador too: the shared connection the held write sits on is stalled,
    /// so the reads go out on another one.
    @Test func aPausedWriteHoldsUpOnlyItsOwnSession() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        _ = try admin.command(["SET", "pause:r", "readable"])
        for port in [cluster.master.port, ambassador.port] {
            let writer = try BlockingClient(port: port, timeout: 10)
            let readers = try (0..<3).map { _ in try BlockingClient(port: port, timeout: 10) }
            _ = try readers[0].command(["PING"])
            _ = try writer.command(["PING"])
            #expect(try admin.command(["CLIENT", "PAUSE", "1500", "WRITE"]) == .simple("OK"))
            let paused = Date()
            try writer.send(BlockingClient.encode(["SET", "pause:w", "1"]))
            // The write is held by the pause; through the ambassador, its connection is stalled
            // (past stall_threshold: requests sent before that went out behind the write).
            #expect(eventually(3) { isBlocked(in: "set", on: cluster.master) })
            if port == ambassador.port {
                #expect(try eventually(3) {
                    (try readers[0].command(["AMBASSADOR", "INFO"]).text ?? "").contains("stalled_connections:1")
                })
            }
            for reader in readers {
                let start = Date()
                #expect(try reader.command(["GET", "pause:r"]) == .bulk("readable"))
                #expect(try reader.command(["EXISTS", "pause:r"]) == .integer(1))
                let took = Date().timeIntervalSince(start)
                #expect(took < 0.5, "port \(port): a read waited \(took) s behind a paused write")
            }
            #expect(try writer.readReply() == .simple("OK"))
            #expect(Date().timeIntervalSince(paused) > 1.2, "the write itself waited for the pause")
            _ = try admin.command(["CLIENT", "UNPAUSE"])
        }
    }

    /// A CLIENT PAUSE WRITE sent through the ambassador: from then on nothing queues behind a
    /// paused write on a shared connection, not even before stall_threshold, in any worker (the
    /// pause is the master's, whichever worker sent it), and CLIENT UNPAUSE itself goes out at
    /// once. Redis's pause tests poll INFO and unpause right after a write pauses. Two workers,
    /// one backend connection each, eight writers and eight readers: both workers have a paused
    /// write on their shared connection, and readers behind it. Direct, each client has its own
    /// connection: the reads are answered during the pause.
    @Test func afterClientPauseNothingQueuesBehindAPausedWrite() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try ConfigMapAmbassador { port, admin in
            ReloadTests.yaml(port, admin, master: cluster.master, replicas: [], extra: "workers: 2\nbackend_connections: 1\nstall_threshold: 20s\n")
        }
        defer { ambassador.stop() }
        for (port, through) in [(cluster.master.port, "direct"), (ambassador.port, "through the ambassador")] {
            let tool = try BlockingClient(port: port, timeout: 10)
            let writers = try (0..<8).map { _ in try BlockingClient(port: port, timeout: 25) }
            let readers = try (0..<8).map { _ in try BlockingClient(port: port, timeout: 4) }
            for client in writers + readers { _ = try client.command(["PING"]) }
            // 20 s: far longer than the test, so writes answered before it ends were released by
            // the UNPAUSE (on a loaded machine the writes may take seconds to reach Redis).
            #expect(try tool.command(["CLIENT", "PAUSE", "20000", "WRITE"]) == .simple("OK"))
            let start = Date()
            for (index, writer) in writers.enumerated() { try writer.send(BlockingClient.encode(["SET", "pause:\(index)", "1"])) }
            var clients = ""
            #expect(eventually(10) {
                clients = (try? tool.command(["INFO", "clients"]).text ?? "") ?? ""
                return clients.contains("blocked_clients:8\r\n")
            }, "\(through): \(clients.split(separator: "\r\n").filter { $0.hasPrefix("blocked") || $0.hasPrefix("connected") })")
            for (index, reader) in readers.enumerated() {
                #expect(try reader.command(["GET", "pause:none:\(index)"]) == .bulkString(nil), "\(through): reader \(index)")
            }
            #expect(try tool.command(["CLIENT", "UNPAUSE"]) == .simple("OK"))
            for writer in writers { #expect(try writer.readReply() == .simple("OK")) }
            let took = Date().timeIntervalSince(start)
            #expect(took < 15, "\(through): the writes waited \(took) s, not until UNPAUSE")
        }
    }

    /// CLIENT GETREDIR and CLIENT TRACKINGINFO of a tracking session (it relays its dedicated
    /// connection) name the app client it redirects to, not the dedicated connection Redis knows;
    /// CLIENT CACHING yes still applies to the TRACKINGINFO after it. As direct, ids aside.
    @Test func trackingRedirectIsReportedAsTheAppsId() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        func replies(_ port: UInt16) throws -> [String] {
            let listener = try BlockingClient(port: port, timeout: 5)
            guard case .integer(let listenerID) = try listener.command(["CLIENT", "ID"]) else { return ["no id"] }
            _ = try listener.command(["SUBSCRIBE", "__redis__:invalidate"])
            let tracked = try BlockingClient(port: port, timeout: 5)
            func id(_ bytes: [UInt8]) -> String { text(bytes).replacingOccurrences(of: ":\(listenerID)\r\n", with: ":LISTENER\r\n") }
            var out = [text(try tracked.readRawReplyAfter(["CLIENT", "TRACKING", "ON", "REDIRECT", String(listenerID), "NOLOOP"]))]
            out.append(id(try tracked.readRawReplyAfter(["CLIENT", "GETREDIR"])))
            out.append(id(try tracked.readRawReplyAfter(["CLIENT", "TRACKINGINFO"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "TRACKING", "OFF"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "GETREDIR"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "TRACKING", "ON", "OPTIN", "REDIRECT", String(listenerID)])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "CACHING", "YES"])))
            out.append(id(try tracked.readRawReplyAfter(["CLIENT", "TRACKINGINFO"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "TRACKING", "OFF"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "TRACKING", "ON"])))
            out.append(text(try tracked.readRawReplyAfter(["CLIENT", "GETREDIR"])))
            return out
        }
        let direct = try replies(cluster.master.port)
        #expect(direct[1] == ":LISTENER\r\n" && direct[7].contains("caching-yes") && direct[10] == ":0\r\n", "\(direct)")
        #expect(try replies(ambassador.port) == direct)
    }

    /// WAIT counts the acknowledgements of the session's own writes (the offset of the last
    /// write of the connection it runs on), direct and through the ambassador alike: with every
    /// replica healthy, with one stopped (SIGSTOP), and with one whose replication stream is held
    /// back (lagging). WAITs after a transaction count the transaction's writes.
    @Test func waitCountsTheSessionsOwnWrites() throws {
        let setup = try RelayedReplica()
        defer { setup.stop() }
        let (master, relay, lagging) = (setup.master, setup.relay, setup.replica)
        let healthy = try RedisServer(arguments: ["--replicaof", "127.0.0.1", String(master.port)])
        defer { healthy.stop() }
        try healthy.waitForReplicationLink()
        let ambassador = try Ambassador(AmbassadorConfig(
            listen: .tcp(Address(host: "127.0.0.1", port: 0)), master: Address(host: "127.0.0.1", port: master.port),
            replicas: [healthy, lagging].map { Address(host: "127.0.0.1", port: $0.port) }, readPolicy: .preferReplica))
        defer { ambassador.stop() }

        /// WAIT's reply and how long it took, after a write on the same client.
        func waitAfterWrite(_ client: BlockingClient, _ count: Int, _ timeout: Int, multi: Bool = false) throws -> (RESPValue, Double) {
            if multi {
                _ = try client.pipeline([["MULTI"], ["INCR", "wait:n"], ["EXEC"]])
            } else {
                _ = try client.command(["INCR", "wait:n"])
            }
            let start = Date()
            let reply = try client.command(["WAIT", String(count), String(timeout)])
            return (reply, Date().timeIntervalSince(start))
        }
        for (name, port) in [("direct", master.port), ("ambassador", ambassador.port)] {
            let client = try BlockingClient(port: port, timeout: 10)
            // Never wrote: every replica has offset 0 and more.
            #expect(try client.command(["WAIT", "2", "100"]) == .integer(2), "\(name)")
            // Healthy: one acknowledgement, long before the timeout (which a loaded machine's
            // second or so of scheduling delay is far from: 0.82 s seen under two CPU hogs).
            let (one, fast) = try waitAfterWrite(client, 1, 5000)
            #expect(one == .integer(1) || one == .integer(2), "\(name): at least one, at once")
            #expect(fast < 3, "\(name): WAIT 1 took \(fast) s")
            // One replica lagging: WAIT 2 gives 1 after its timeout, never 2.
            relay.pauseReplication(true)
            // (Redis 7.0 itself sometimes answers 0 here, the healthy replica's ACK not yet
            // counted: what must never come is 2, a write reported replicated that is not.)
            let (lag, lagTook) = try waitAfterWrite(client, 2, 300)
            #expect(lag == .integer(1) || lag == .integer(0), "\(name) lagging")
            #expect(lagTook >= 0.28, "\(name) lagging")
            let (lagMulti, _) = try waitAfterWrite(client, 2, 200, multi: true)
            #expect(lagMulti == .integer(1) || lagMulti == .integer(0), "\(name) lagging, after MULTI/EXEC")
            relay.pauseReplication(false)
            let (caughtUp, _) = try waitAfterWrite(client, 2, 3000)
            #expect(caughtUp == .integer(2), "\(name) caught up")
            // One replica stopped.
            healthy.signal(SIGSTOP)
            let (stopped, _) = try waitAfterWrite(client, 2, 300)
            #expect(stopped == .integer(1) || stopped == .integer(0), "\(name) with a stopped replica")
            healthy.signal(SIGCONT)
            let (back, _) = try waitAfterWrite(client, 2, 3000)
            #expect(back == .integer(2), "\(name) after SIGCONT")
            // Another session's WAIT does not count this one's writes, and vice versa: a fresh
            // session that never wrote gets its answer at once.
            relay.pauseReplication(true)
            _ = try client.command(["INCR", "wait:n"])
            let fresh = try BlockingClient(port: port, timeout: 10)
            let start = Date()
            #expect(try fresh.command(["WAIT", "2", "1000"]) == .integer(2), "\(name): a session that never wrote")
            #expect(Date().timeIntervalSince(start) < 0.5)
            relay.pauseReplication(false)
            #expect(try client.command(["WAIT", "2", "3000"]) == .integer(2))
        }
    }

    /// Read-your-writes costs the master a ROLE probe only for a session that reads after
    /// writing, asked at that read: a session that only writes costs none, and with
    /// `read_policy: master` (no read ever goes to a replica) nothing is probed at all.
    @Test func onlyAReadAfterWritesProbesTheMaster() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let writer = try ambassador.client()
        let before = try commandCalls(cluster.master, "role")
        for i in 0..<200 { #expect(try writer.command(["SET", "w:\(i)", "v\(i)"]) == .simple("OK")) }
        #expect(try commandCalls(cluster.master, "role") == before, "200 writes, no read: no probe")
        #expect(try writer.command(["GET", "w:199"]) == .bulk("v199"))
        #expect(eventually(2) { (try? commandCalls(cluster.master, "role")) ?? 0 > before }, "the read asked for one")
        // Once the replica has the writes, the session's reads return to it.
        #expect(eventually(3) {
            _ = try? writer.command(["GET", "w:0"])
            return ((try? commandCalls(cluster.replicas[0], "get")) ?? 0) > 0
        })

        let masterOnly = try Ambassador(cluster: cluster, policy: .master)
        defer { masterOnly.stop() }
        let client = try masterOnly.client()
        let start = try commandCalls(cluster.master, "role")
        for i in 0..<50 {
            #expect(try client.command(["SET", "m:\(i)", "x"]) == .simple("OK"))
            #expect(try client.command(["GET", "m:\(i)"]) == .bulk("x"))
        }
        #expect(try commandCalls(cluster.master, "role") == start, "read_policy master: nothing to probe for")
    }

    /// The shipped defaults (prefer-replica, read_your_writes: session): a session reads its own
    /// writes, in one pipeline or one at a time, inline or multibulk — as from a direct Redis —
    /// while reads that follow no write of its own still go to the replicas, and go back to them
    /// within 50 ms of the write being replicated.
    @Test func defaultConfigReadsYourOwnWrites() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)  // the defaults
        defer { ambassador.stop() }
        let replicaGets = { try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +) }

        // 2,000 SET/GET pairs (and hash writes and reads) in one pipeline.
        var commands: [[String]] = []
        for i in 0..<2_000 {
            commands.append(["SET", "ryw:\(i)", "v\(i)"])
            commands.append(["GET", "ryw:\(i)"])
            if i % 100 == 0 {
                commands.append(["HSET", "ryw:h\(i)", "f", "x"])
                commands.append(["HGETALL", "ryw:h\(i)"])
            }
        }
        let client = try ambassador.client(timeout: 30)
        let replies = try client.pipeline(commands)
        var stale = 0
        for (command, reply) in zip(commands, replies) {
            if command[0] == "GET" && reply != Array("$\(command[1].count - 3)\r\nv\(command[1].dropFirst(4))\r\n".utf8) { stale += 1 }
            if command[0] == "HGETALL" && reply == Array("*0\r\n".utf8) { stale += 1 }
        }
        #expect(stale == 0, "\(stale) stale reads in the pipeline")

        // One at a time, and inline.
        for i in 0..<300 {
            #expect(try client.command(["SET", "ryw:one", String(i)]) == .simple("OK"))
            #expect(try client.command(["GET", "ryw:one"]) == .bulk(String(i)))
            try client.send(Array("SET ryw:inline \(i)\r\nEXISTS ryw:inline\r\nGET ryw:inline\r\n".utf8))
            #expect(try client.readReply() == .simple("OK"))
            #expect(try client.readReply() == .integer(1))
            #expect(try client.readReply() == .bulk(String(i)))
        }

        // Once the write is on the replicas, reads go back to them: within 50 ms.
        try cluster.sync()
        let synced = try replicaGets()
        #expect(try eventually(0.05, every: 0.001) {
            _ = try client.command(["GET", "ryw:one"])
            return try replicaGets() > synced
        }, "a replica served a read within 50 ms of the write being there")
        let before = try replicaGets()
        for _ in 0..<200 { #expect(try client.command(["GET", "ryw:one"]) == .bulk("299")) }
        let served = try replicaGets() - before
        #expect(served >= 190, "replicas served \(served) of 200 reads after the write was replicated")

        // A session that never wrote reads from the replicas meanwhile.
        let reader = try ambassador.client()
        let readerBefore = try replicaGets()
        for _ in 0..<100 { _ = try reader.command(["GET", "ryw:0"]) }
        #expect(try replicaGets() - readerBefore >= 95)
    }

    /// An ambassador in front of `cluster`'s master and replicas, checking them every `healthInterval`.
    static func ambassador(for cluster: Cluster, healthInterval: String) throws -> ConfigMapAmbassador {
        try ConfigMapAmbassador { port, admin in
            ReloadTests.yaml(port, admin, master: cluster.master, replicas: cluster.replicas, extra: "health_interval: \(healthInterval)\n")
        }
    }

    /// MONITOR through the ambassador shows the apps' commands as a direct Redis would: reads a
    /// replica served too (not what replication brings it), PING and ECHO (Redis answers them
    /// while someone monitors), and not the ambassador's own health checks (ROLE, INFO every
    /// 50 ms here), which run on connections of their own.
    @Test func monitorShowsTheAppsCommandsNotTheAmbassadorsChecks() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Self.ambassador(for: cluster, healthInterval: "50ms")
        defer { ambassador.stop() }
        let monitor = try BlockingClient(port: ambassador.port, timeout: 10)
        #expect(try monitor.command(["MONITOR"]) == .simple("OK"))
        let app = try BlockingClient(port: ambassador.port)
        let reader = try BlockingClient(port: ambassador.port)  // wrote nothing: reads go to replicas
        var expected: [String] = []
        let nodes = [cluster.master] + cluster.replicas
        for i in 0..<4 {
            let checks = try nodes.map(roleCalls)
            _ = try app.command(["SET", "mon:\(i)", "v"])
            #expect(awaitHealthChecks(on: nodes, since: checks))  // health checks run meanwhile (every 50 ms)
            _ = try reader.command(["GET", "mon:\(i)"])  // a replica's
            _ = try app.command(["PING"])
            expected += [" \"SET\" \"mon:\(i)\" \"v\"", " \"GET\" \"mon:\(i)\"", " \"PING\""]
        }
        _ = try app.command(["ECHO", "end"])
        expected.append(" \"ECHO\" \"end\"")
        var lines: [String] = []
        while !(lines.last?.hasSuffix("\"ECHO\" \"end\"") ?? false) { lines.append(try monitor.readReply().text ?? "") }
        let commands = lines.map { $0.split(separator: "]", maxSplits: 1).last.map(String.init) ?? $0 }
        #expect(commands == expected, "\(lines)")
        // The replicas served the reads (the lines came from them).
        #expect(try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +) >= 4)
    }

    /// What the ambassador answers itself shows on MONITOR as Redis shows it: SELECT (in the db
    /// it chose), AUTH and HELLO's AUTH pair redacted, CLIENT SETNAME with its bytes escaped,
    /// RESET, QUIT; not what Redis refuses before running (a wrong number of arguments) nor
    /// admin commands (CLIENT LIST). Line for line, after the address, as direct; the lines of
    /// the ambassador's own login checks (AUTH passed through) are not among them.
    @Test func monitorShowsWhatTheAmbassadorAnswersAsRedisWould() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let commands: [[String]] = [["SELECT", "1"], ["SET", "m:k", "1"], ["SELECT", "0"], ["AUTH", "x"], ["AUTH", "u", "p"],
                                    ["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"], ["HELLO", "2", "SETNAME", "a\"b"],
                                    ["CLIENT", "SETNAME", "t\u{1}\\"], ["CLIENT", "GETNAME"], ["CLIENT", "ID"], ["CLIENT", "INFO"],
                                    ["CLIENT", "LIST"], ["SELECT"], ["ECHO", "e"], ["RESET"], ["PING", "last"], ["QUIT"]]
        func lines(port: UInt16) throws -> [String] {
            let monitor = try BlockingClient(port: port, timeout: 10)
            #expect(try monitor.command(["MONITOR"]) == .simple("OK"))
            let app = try BlockingClient(port: port, timeout: 10)
            for command in commands { _ = try app.readRawReplyAfter(command) }
            return try monitorLines(monitor, through: "\"QUIT\"")
        }
        let direct = try lines(port: cluster.master.port)
        #expect(direct.contains(" \"AUTH\" \"(redacted)\" \"(redacted)\"") && direct.contains(" \"SELECT\" \"1\""), "\(direct)")
        let proxied = try lines(port: ambassador.port)
        #expect(proxied == direct, "\(proxied) against \(direct)")
    }

    /// A MONITOR stream's lines after the address, up to the one ending in `last`. Direct, the
    /// master also shows the health checks of the ambassador beside it, and a test's own polls of
    /// INFO show either way: INFO and ROLE lines are left out.
    func monitorLines(_ monitor: BlockingClient, through last: String) throws -> [String] {
        var lines: [String] = []
        while !(lines.last?.hasSuffix(last) ?? false) {
            let line = try monitor.readReply().text ?? ""
            if !line.hasSuffix("\"ROLE\"") && !line.contains("] \"INFO\"") { lines.append(line) }
        }
        return lines.map { $0.split(separator: "]", maxSplits: 1).last.map(String.init) ?? $0 }
    }

    /// MONITOR shows none of what the ambassador sends Redis on its own: a new connection's
    /// SELECT, HELLO and CLIENT ID (here: connections for db 9 opened while a client monitors,
    /// for shared commands, a BLPOP, a transaction and a RESP3 subscriber), nor the marker that
    /// keeps a relaying session's CLIENT ID in place. Line for line, after the address, as direct.
    /// MONITOR's +OK comes once every replica shows commands too (a read served there right
    /// after it is shown, as a direct Redis shows every command after its +OK): while a replica
    /// is stopped, none comes. A replica that cannot be reached is left out, not waited for.
    @Test func monitorBeginsOnceEveryReplicaShowsCommands() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Self.ambassador(for: cluster, healthInterval: "30s")
        defer { ambassador.stop() }
        let monitor = try BlockingClient(port: ambassador.port, timeout: 10)
        let (early, began) = try ClusterTests.reply(to: ["MONITOR"], on: monitor, while: cluster.replicas[0])
        #expect(early == nil, "MONITOR began while a replica was stopped: \(String(describing: early))")
        #expect(began == .simple("OK"))
        // A replica killed since the last check (30 s apart): its connection fails, the
        // MONITOR goes on without it.
        cluster.replicas[1].kill9()
        let other = try BlockingClient(port: ambassador.port, timeout: 10)
        #expect(try other.command(["MONITOR"]) == .simple("OK"))
    }

    @Test func monitorLeavesOutWhatTheAmbassadorSendsOnItsOwn() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        func lines(port: UInt16) throws -> [String] {
            let monitor = try BlockingClient(port: port, timeout: 10)
            #expect(try monitor.command(["MONITOR"]) == .simple("OK"))
            let app = try BlockingClient(port: port, timeout: 10)
            let blocked = try BlockingClient(port: port, timeout: 10)
            let subscriber = try BlockingClient(port: port, timeout: 10)
            for client in [app, blocked] { _ = try client.command(["SELECT", "9"]) }
            _ = try app.command(["SET", "mon:a", "1"])
            try blocked.send(BlockingClient.encode(["BLPOP", "mon:list", "0"]))
            #expect(eventually(5) { ((try? cluster.master.info("clients")) ?? "").contains("blocked_clients:1") })
            _ = try app.command(["LPUSH", "mon:list", "x"])
            _ = try blocked.readReply()
            _ = try app.pipeline([["MULTI"], ["SET", "mon:b", "2"], ["EXEC"]])
            _ = try subscriber.command(["HELLO", "3"])
            _ = try subscriber.readRawReplyAfter(["SUBSCRIBE", "mon:ch"])
            _ = try subscriber.readRawReplyAfter(["CLIENT", "ID"])
            _ = try subscriber.readRawReplyAfter(["PING", "last"])
            return try monitorLines(monitor, through: "\"PING\" \"last\"")
        }
        let direct = try lines(port: cluster.master.port)
        #expect(direct.contains(" \"BLPOP\" \"mon:list\" \"0\"") && direct.contains(" \"CLIENT\" \"ID\""), "\(direct)")
        let proxied = try lines(port: ambassador.port)
        #expect(proxied == direct, "\(proxied) against \(direct)")
    }

    /// A session that relays its dedicated connection (subscribed in RESP3, tracking, MONITOR)
    /// is still itself to the CLIENT commands: CLIENT ID is its id (which CLIENT TRACKING
    /// REDIRECT, CLIENT KILL and CLIENT LIST know), SETNAME names it, GETNAME and INFO describe
    /// it, each answer in its place among the relayed replies, and not at all after CLIENT REPLY
    /// OFF. redis-py's test_client_tracking does TRACKING ON, OFF, CLIENT ID, then REDIRECT to
    /// that id. A RESP2 subscriber gets Redis's refusal. Same bytes as direct, ids aside.
    @Test func aRelayingSessionIsStillItselfToTheClientCommands() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        func replies(_ port: UInt16) throws -> [String] {
            var out: [String] = []
            let tracker = try BlockingClient(port: port, timeout: 5)
            guard case .integer(let id) = try tracker.command(["CLIENT", "ID"]) else { return ["no id"] }
            out.append(text(try tracker.readRawReplyAfter(["CLIENT", "TRACKING", "ON"])))
            out.append(text(try tracker.readRawReplyAfter(["CLIENT", "TRACKING", "OFF"])))
            out.append("same id: \(try tracker.command(["CLIENT", "ID"]) == .integer(id))")
            out.append(text(try tracker.readRawReplyAfter(["CLIENT", "TRACKING", "ON", "REDIRECT", String(id)])))
            out.append(text(try tracker.readRawReplyAfter(["CLIENT", "SETNAME", "tracked"])))
            let other = try BlockingClient(port: port, timeout: 5)
            let listed = try other.command(["CLIENT", "LIST", "ID", String(id)]).text ?? ""
            out.append("listed: \(listed.contains(" name=tracked ") && listed.contains(" redir=\(id) "))")

            let subscriber = try BlockingClient(port: port, timeout: 5)
            _ = try subscriber.command(["HELLO", "3"])
            guard case .integer(let subscriberID) = try subscriber.command(["CLIENT", "ID"]) else { return ["no id"] }
            out.append(text(try subscriber.readRawReplyAfter(["SUBSCRIBE", "rel:ch"])))
            out += try subscriber.pipeline([["CLIENT", "SETNAME", "sub"], ["CLIENT", "ID"], ["PING"], ["CLIENT", "GETNAME"], ["ECHO", "e"]])
                .map { text($0).replacingOccurrences(of: ":\(subscriberID)\r\n", with: ":ID\r\n") }
            _ = try other.command(["PUBLISH", "rel:ch", "m"])
            out.append(text(try subscriber.readRawReply()))
            let info = try subscriber.command(["CLIENT", "INFO"]).text ?? ""
            out.append("info: \(info.hasPrefix("id=\(subscriberID) ") && info.contains(" name=sub ") && info.contains(" sub=1 "))")
            try subscriber.send(BlockingClient.encode(["CLIENT", "REPLY", "OFF"]) + BlockingClient.encode(["CLIENT", "ID"]))
            out.append(text(try subscriber.readRawReplyAfter(["CLIENT", "REPLY", "ON"])))
            out.append(text(try subscriber.readRawReplyAfter(["CLIENT", "GETNAME"])))
            #expect(try other.command(["CLIENT", "KILL", "ID", String(subscriberID)]) == .integer(1))
            out.append("killed: \(subscriber.isClosedByPeer())")

            let resp2 = try BlockingClient(port: port, timeout: 5)
            out.append(text(try resp2.readRawReplyAfter(["SUBSCRIBE", "rel:ch"])))
            out.append(text(try resp2.readRawReplyAfter(["CLIENT", "ID"])))
            return out
        }
        let direct = try replies(cluster.master.port)
        #expect(direct.contains("same id: true") && direct.contains("info: true") && direct.contains("killed: true"), "\(direct)")
        #expect(try replies(ambassador.port) == direct)
    }

    /// Sessions in different databases share no connection, so the ambassador never injects a
    /// SELECT in front of an app's command: MONITOR and commandstats show what the apps sent
    /// (one SELECT per connection, when it opens). Commands across a SELECT keep their order
    /// (MOVE, then read in the other database), byte for byte as direct.
    @Test func databasesGetTheirOwnConnectionsAndNoInjectedSelect() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let monitor = try cluster.master.client(timeout: 10)
        #expect(try monitor.command(["MONITOR"]) == .simple("OK"))
        let selectsBefore = try commandCalls(cluster.master, "select")
        let nine = try ambassador.client()
        let zero = try ambassador.client()
        #expect(try nine.command(["SELECT", "9"]) == .simple("OK"))
        for i in 0..<100 {
            #expect(try nine.command(["SET", "db9:\(i)", "v"]) == .simple("OK"))
            #expect(try zero.command(["GET", "db9:\(i)"]) == .bulkString(nil))
            #expect(try nine.command(["GET", "db9:\(i)"]) == .bulk("v"))
        }
        let selects = try commandCalls(cluster.master, "select") - selectsBefore
        #expect(selects <= 1, "SELECTs on the master: \(selects) (one for the db-9 connection at most)")
        // MONITOR saw the apps' commands, in order, and no SELECT between them.
        var seen: [String] = []
        while seen.filter({ $0.contains("db9:") }).count < 300 {
            guard case .simpleString(let line) = try monitor.readReply() else { continue }
            seen.append(text(line))
        }
        let appLines = seen.filter { $0.contains("db9:") }
        #expect(appLines.first?.hasSuffix("\"SET\" \"db9:0\" \"v\"") ?? false, "\(seen.prefix(3))")
        let firstApp = seen.firstIndex { $0.contains("db9:") } ?? 0
        #expect(seen[firstApp...].filter { $0.contains("\"SELECT\"") }.isEmpty, "no SELECT between the apps' commands")

        let admin = try cluster.master.client()
        let pipeline: [[String]] = [["SET", "mv:k", "v"], ["MOVE", "mv:k", "1"], ["SELECT", "1"], ["GET", "mv:k"],
                                    ["SELECT", "0"], ["EXISTS", "mv:k"], ["SELECT", "1"], ["MOVE", "mv:k", "0"],
                                    ["SELECT", "0"], ["GET", "mv:k"], ["SWAPDB", "0", "1"], ["GET", "mv:k"],
                                    ["SELECT", "1"], ["GET", "mv:k"], ["SELECT", "0"]]
        _ = try admin.command(["FLUSHALL"])
        let direct = try cluster.master.client().pipeline(pipeline)
        _ = try admin.command(["FLUSHALL"])
        let proxied = try ambassador.client().pipeline(pipeline)
        #expect(proxied.map(text) == direct.map(text))
    }

    /// Each app connection is one client with one id: CLIENT ID, HELLO, CLIENT INFO and LIST
    /// (the app's connections, with name, db, flags and last command), CLIENT UNBLOCK, CLIENT
    /// KILL and CLIENT TRACKING REDIRECT all name it — with the same replies as direct.
    @Test func clientIdentityIsTheAppConnection() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        for (name, port) in [("direct", cluster.master.port), ("ambassador", ambassador.port)] {
            let a = try BlockingClient(port: port, timeout: 5)
            let b = try BlockingClient(port: port, timeout: 5)
            guard case .integer(let idA) = try a.command(["CLIENT", "ID"]),
                  case .integer(let idB) = try b.command(["CLIENT", "ID"]) else {
                Issue.record("\(name): CLIENT ID")
                continue
            }
            #expect(try a.command(["CLIENT", "SETNAME", "app-a"]) == .simple("OK"))
            #expect(try a.command(["SELECT", "3"]) == .simple("OK"))
            let info = try a.command(["CLIENT", "INFO"]).text ?? ""
            #expect(info.hasPrefix("id=\(idA) addr="), "\(name): \(info)")
            // qbuf: the CLIENT INFO command itself, still in the query buffer (26 bytes).
            for field in [" name=app-a ", " db=3 ", " flags=N ", " cmd=client|info ", " multi=-1 ", " sub=0 ", " qbuf=26 "] {
                #expect(info.contains(field), "\(name): \(field) in \(info)")
            }
            #expect(info.hasSuffix(" resp=2\n"), "\(name): \(info)")
            let list = try b.command(["CLIENT", "LIST", "ID", String(idA), String(idB)]).text ?? ""
            let lines = list.split(separator: "\n")
            #expect(lines.count == 2, "\(name): \(list)")
            #expect(lines.contains { $0.hasPrefix("id=\(idB) ") && $0.contains(" cmd=client|list ") }, "\(name): \(list)")
            #expect(try a.command(["SELECT", "0"]) == .simple("OK"))

            // CLIENT UNBLOCK: by the app id, both ways.
            try a.send(BlockingClient.encode(["BLPOP", "id:none", "0"]))
            #expect(eventually(3) { isBlocked(in: "blpop", on: cluster.master) }, "\(name)")
            var listed = ""
            #expect(try eventually(3) {
                listed = try b.command(["CLIENT", "LIST", "ID", String(idA)]).text ?? ""
                return listed.contains(" flags=b ") && listed.contains(" cmd=blpop ")
            }, "\(name): \(listed)")
            #expect(try b.command(["CLIENT", "UNBLOCK", String(idA)]) == .integer(1), "\(name)")
            #expect(try a.readRawReply() == Array("*-1\r\n".utf8), "\(name)")
            try a.send(BlockingClient.encode(["BRPOP", "id:none", "0"]))
            #expect(eventually(3) { isBlocked(in: "brpop", on: cluster.master) }, "\(name)")
            #expect(try eventually(3) { (try b.command(["CLIENT", "LIST", "ID", String(idA)]).text ?? "").contains(" flags=b ") })
            #expect(try b.command(["CLIENT", "UNBLOCK", String(idA), "ERROR"]) == .integer(1), "\(name)")
            #expect(text(try a.readRawReply()).hasPrefix("-UNBLOCKED"), "\(name)")
            #expect(try b.command(["CLIENT", "UNBLOCK", String(idA)]) == .integer(0), "\(name): not blocked")

            // CLIENT TRACKING REDIRECT to a RESP2 client subscribed to the invalidation channel.
            let listener = try BlockingClient(port: port, timeout: 5)
            guard case .integer(let listenerID) = try listener.command(["CLIENT", "ID"]) else { continue }
            _ = try listener.command(["SUBSCRIBE", "__redis__:invalidate"])
            #expect(try a.command(["CLIENT", "TRACKING", "ON", "REDIRECT", String(listenerID)]) == .simple("OK"), "\(name)")
            _ = try a.command(["GET", "id:tracked"])
            _ = try b.command(["SET", "id:tracked", "v"])
            let message = try listener.readReply()
            #expect(message == .array([.bulk("message"), .bulk("__redis__:invalidate"), .array([.bulk("id:tracked")])]),
                    "\(name): \(message)")
            let redirected = try b.command(["CLIENT", "LIST", "ID", String(idA)]).text ?? ""
            #expect(redirected.contains(" redir=\(listenerID) "), "\(name): \(redirected)")
            // …and to a RESP3 client that runs nothing stateful: it gets the push.
            let pushed = try BlockingClient(port: port, timeout: 5)
            _ = try pushed.command(["HELLO", "3"])
            guard case .integer(let pushedID) = try pushed.command(["CLIENT", "ID"]) else { continue }
            let tracker = try BlockingClient(port: port, timeout: 5)
            #expect(try tracker.command(["CLIENT", "TRACKING", "ON", "REDIRECT", String(pushedID)]) == .simple("OK"), "\(name)")
            _ = try tracker.command(["GET", "id:pushed"])
            _ = try b.command(["SET", "id:pushed", "v"])
            #expect(text(try pushed.readRawReply()) == ">2\r\n$10\r\ninvalidate\r\n*1\r\n$9\r\nid:pushed\r\n", "\(name)")
            #expect(try pushed.command(["PING"]) == .simple("PONG"), "\(name): it goes on as usual")
            guard case .error(let missing) = try b.command(["CLIENT", "TRACKING", "ON", "REDIRECT", "987654"]) else {
                Issue.record("\(name): REDIRECT to nobody accepted")
                continue
            }
            #expect(text(missing) == "ERR The client ID you want redirect to does not exist", "\(name)")

            // CLIENT KILL: by id, by address (the old form), and not oneself with SKIPME yes.
            #expect(try b.command(["CLIENT", "KILL", "ID", String(idA)]) == .integer(1), "\(name)")
            #expect(a.isClosedByPeer(), "\(name)")
            #expect(try b.command(["CLIENT", "KILL", "ID", String(idA)]) == .integer(0), "\(name)")
            let c = try BlockingClient(port: port, timeout: 5)
            let cInfo = try c.command(["CLIENT", "INFO"]).text ?? ""
            let cAddress = cInfo.split(separator: " ").first { $0.hasPrefix("addr=") }.map { String($0.dropFirst(5)) } ?? ""
            #expect(try b.command(["CLIENT", "KILL", cAddress]) == .simple("OK"), "\(name)")
            #expect(c.isClosedByPeer(), "\(name)")
            #expect(try b.command(["CLIENT", "KILL", "ID", String(idB)]) == .integer(0), "\(name): SKIPME yes")
            guard case .error = try b.command(["CLIENT", "KILL", "127.0.0.1:1"]) else {
                Issue.record("\(name): killing nobody succeeded")
                continue
            }
            _ = listener
        }
    }

    /// CLIENT KILL's filters are checked as Redis checks them, in order: the first bad one is
    /// refused, a USER filter names a user the master knows ("No such user" otherwise, even
    /// ahead of a later bad filter), and MAXAGE is a filter only from Redis 7.4 on. A known
    /// user's sessions are the ones killed.
    @Test func clientKillRefusesWhatRedisRefuses() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        _ = try cluster.master.client().command(["ACL", "SETUSER", "carol", "on", ">cpw", "~*", "+@all"])
        let version = (try cluster.master.client().command(["INFO", "server"]).text ?? "")
            .split(separator: "\r\n").first { $0.hasPrefix("redis_version:") } ?? ""
        let steps: [[String]] = [
            ["CLIENT", "KILL", "USER", "nobody"], ["CLIENT", "KILL", "USER", "nobody", "ID", "0"],
            ["CLIENT", "KILL", "ID", "0", "USER", "nobody"], ["CLIENT", "KILL", "USER", "carol", "TYPE", "bogus"],
            ["CLIENT", "KILL", "ID", "-1"], ["CLIENT", "KILL", "ID", "x"], ["CLIENT", "KILL", "TYPE", "bogus"],
            ["CLIENT", "KILL", "SKIPME", "maybe"], ["CLIENT", "KILL", "ID", "5", "extra"], ["CLIENT", "KILL", "BOGUS", "1"],
            ["CLIENT", "KILL", "MAXAGE", "100000"], ["CLIENT", "KILL", "127.0.0.1:1"],
            ["CLIENT", "KILL", "USER", "carol", "ID", "987654"],
        ]
        func replies(_ port: UInt16) throws -> [String] {
            let client = try BlockingClient(port: port, timeout: 5)
            return try steps.map { text(try client.readRawReplyAfter($0)) }
        }
        let direct = try replies(cluster.master.port)
        #expect(direct[0] == "-ERR No such user 'nobody'\r\n", "\(direct[0])")
        #expect(direct[10].hasPrefix(version.hasPrefix("redis_version:7.0") ? "-ERR syntax error" : ":"), "\(direct[10])")
        #expect(try replies(ambassador.port) == direct)

        // carol's session is killed, not the caller's or the default user's.
        let carol = try BlockingClient(port: ambassador.port, timeout: 5)
        #expect(try carol.command(["AUTH", "carol", "cpw"]) == .simple("OK"))
        let other = try BlockingClient(port: ambassador.port, timeout: 5)
        #expect(try other.command(["PING"]) == .simple("PONG"))
        let killer = try BlockingClient(port: ambassador.port, timeout: 5)
        #expect(try killer.command(["CLIENT", "KILL", "USER", "carol"]) == .integer(1))
        #expect(carol.isClosedByPeer())
        #expect(try other.command(["PING"]) == .simple("PONG"))
        #expect(try killer.command(["CLIENT", "KILL", "USER", "carol"]) == .integer(0))
    }

    /// With no credentials of its own the ambassador passes the app's AUTH through: Redis
    /// checks it, and the session's commands then run as that ACL user, so two apps keep their
    /// own permissions; a password set at run time works as direct. Same bytes as direct.
    @Test func authIsCheckedByRedisAndSessionsRunAsTheirUser() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        for server in [cluster.master] + cluster.replicas {
            let admin = try server.client()
            _ = try admin.command(["ACL", "SETUSER", "alice", "on", ">apw", "~a:*", "+@all"])
            _ = try admin.command(["ACL", "SETUSER", "bob", "on", ">bpw", "~b:*", "+@all"])
        }
        let steps: [[String]] = [
            ["AUTH", "alice", "wrong"], ["AUTH", "nobody", "x"], ["AUTH", "x"],
            ["AUTH", "alice", "apw"], ["ACL", "WHOAMI"], ["SET", "a:1", "x"], ["GET", "a:1"], ["SET", "b:1", "x"],
            ["GET", "b:1"], ["MULTI"], ["SET", "a:2", "y"], ["GET", "b:2"], ["EXEC"],
            ["AUTH", "bob", "bpw"], ["ACL", "WHOAMI"], ["SET", "b:1", "x"], ["GET", "a:1"], ["GET", "b:1"],
            ["RESET"], ["ACL", "WHOAMI"],
        ]
        let admin = try cluster.master.client()
        var results: [[String]] = []
        for port in [cluster.master.port, ambassador.port] {
            _ = try admin.command(["FLUSHALL"])
            let client = try BlockingClient(port: port)
            let other = try BlockingClient(port: port)
            var replies: [String] = []
            for step in steps {
                replies.append(text(try client.readRawReplyAfter(step)))
                // Another app connection, never logged in, stays the default user meanwhile.
                if step == ["SET", "b:1", "x"] { replies.append(text(try other.readRawReplyAfter(["ACL", "WHOAMI"]))) }
            }
            // HELLO 3 AUTH, and a password set at run time.
            let hello = try BlockingClient(port: port)
            replies.append(text(try hello.readRawReplyAfter(["HELLO", "3", "AUTH", "bob", "nope"])))
            if case .map(let fields) = try hello.command(["HELLO", "3", "AUTH", "bob", "bpw", "SETNAME", "h"]) {
                replies.append("HELLO map of \(fields.count / 2)")
            }
            replies.append(text(try hello.readRawReplyAfter(["ACL", "WHOAMI"])))
            replies.append(text(try hello.readRawReplyAfter(["CLIENT", "GETNAME"])))
            let setter = try BlockingClient(port: port)
            replies.append(text(try setter.readRawReplyAfter(["CONFIG", "SET", "requirepass", "tp"])))
            let late = try BlockingClient(port: port)
            replies.append(text(try late.readRawReplyAfter(["AUTH", "tp"])))
            replies.append(text(try late.readRawReplyAfter(["SET", "late", "1"])))
            replies.append(text(try late.readRawReplyAfter(["CONFIG", "SET", "requirepass", ""])))
            results.append(replies)
        }
        #expect(results[1] == results[0])
        #expect(results[0].contains("+OK\r\n"))
        #expect(results[1].filter { $0.hasPrefix("-NOPERM") }.count == 4, "\(results[1])")
    }

    /// ACL users are per node: a user made on the master alone is unknown to its replica. A
    /// session logged in as that user must never read there as another user (the replica's
    /// default user would read keys the user may not). Its requests wait behind the replica's
    /// AUTH; refused, they go to the master, the app sees direct's replies, and the replica is
    /// tried again for that login later: once it knows the user, it serves the reads again.
    @Test func aLoginAReplicaDoesNotKnowNeverReadsThereAsAnotherUser() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        _ = try admin.command(["SET", "secret", "s"])
        _ = try admin.command(["SET", "cache:1", "c"])
        try cluster.sync()
        let plain = try ambassador.client()
        // The replica takes reads before the user logs in (its first health check may come late).
        #expect(eventually(10) { (try? plain.command(["STRLEN", "cache:1"])) == .integer(1) && ((try? commandCalls(cluster.replicas[0], "strlen")) ?? 0) > 0 })
        _ = try admin.command(["ACL", "SETUSER", "dora", "on", ">dpw", "~cache:*", "+get", "+strlen", "+mget", "+set"])
        let steps: [[String]] = [["AUTH", "dora", "dpw"], ["GET", "secret"], ["GET", "cache:1"], ["STRLEN", "secret"],
                                 ["MGET", "cache:1", "secret"], ["GET", "cache:1"], ["SET", "secret", "x"], ["GET", "secret"]]
        func replies(_ port: UInt16, pipelined: Bool) throws -> [String] {
            let client = try BlockingClient(port: port, timeout: 5)
            if pipelined { return try client.pipeline(steps).map(text) }
            return try steps.map { text(try client.readRawReplyAfter($0)) }
        }
        let direct = try replies(cluster.master.port, pipelined: false)
        #expect(direct[1].hasPrefix("-NOPERM"), "\(direct)")
        #expect(try replies(ambassador.port, pipelined: true) == direct)
        #expect(try replies(ambassador.port, pipelined: false) == direct)
        #expect(try admin.command(["GET", "secret"]) == .bulk("s"))

        // The replica learns the user: within the retry window, dora's reads go back to it.
        _ = try cluster.replicas[0].client().command(["ACL", "SETUSER", "dora", "on", ">dpw", "~cache:*", "+get", "+strlen", "+mget", "+set"])
        let dora = try ambassador.client()
        #expect(try dora.command(["AUTH", "dora", "dpw"]) == .simple("OK"))
        let before = try commandCalls(cluster.replicas[0], "strlen")
        #expect(eventually(20, every: 0.2) { (try? dora.command(["STRLEN", "cache:1"])) == .integer(1) && ((try? commandCalls(cluster.replicas[0], "strlen")) ?? 0) > before })
        #expect(text(try dora.readRawReplyAfter(["GET", "secret"])) == direct[1])
    }

    /// A session that configures or inspects the server (CONFIG SET, CONFIG RESETSTAT,
    /// SLOWLOG …) is a tool or a test: its reads go to the master from then on, so the slow log
    /// and commandstats it reads there show them, as on one Redis (redis-py's test_slowlog_get:
    /// CONFIG SET slowlog-log-slower-than 0, SLOWLOG RESET, GET, SLOWLOG GET). An app session
    /// that only runs CONFIG GET still reads from the replica; RESET ends it.
    @Test func aSessionThatInspectsTheServerReadsFromTheMaster() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        _ = try cluster.master.client().command(["SET", "insp:k", "v"])
        try cluster.sync()
        let app = try ambassador.client()
        #expect(eventually(10) { (try? app.command(["STRLEN", "insp:k"])) == .integer(1) && ((try? commandCalls(cluster.replicas[0], "strlen")) ?? 0) > 0 })
        _ = try app.command(["CONFIG", "GET", "maxmemory"])
        let before = try commandCalls(cluster.replicas[0], "strlen")
        _ = try app.command(["STRLEN", "insp:k"])
        #expect(try commandCalls(cluster.replicas[0], "strlen") == before + 1, "CONFIG GET keeps an app on the replicas")

        func slowlogged(_ port: UInt16) throws -> [Bool] {
            let tool = try BlockingClient(port: port, timeout: 5)
            _ = try tool.command(["CONFIG", "SET", "slowlog-log-slower-than", "0"])
            defer { _ = try? tool.command(["CONFIG", "SET", "slowlog-log-slower-than", "10000"]) }
            _ = try tool.command(["SLOWLOG", "RESET"])
            _ = try tool.command(["GET", "insp:k"])
            let log = text(try tool.readRawReplyAfter(["SLOWLOG", "GET"]))
            _ = try tool.command(["CONFIG", "RESETSTAT"])
            _ = try tool.command(["GET", "insp:k"])
            _ = try tool.command(["HGETALL", "insp:none"])
            let stats = try tool.command(["INFO", "commandstats"]).text ?? ""
            return [log.contains("insp:k"), stats.contains("cmdstat_get:calls=1,"),
                    stats.contains("cmdstat_hgetall:calls=1,")]
        }
        let direct = try slowlogged(cluster.master.port)
        #expect(direct == [true, true, true])
        #expect(try slowlogged(ambassador.port) == direct)

        // RESET: an app again.
        let tool = try ambassador.client()
        _ = try tool.command(["SLOWLOG", "LEN"])
        _ = try tool.command(["RESET"])
        let again = try commandCalls(cluster.replicas[0], "strlen")
        _ = try tool.command(["STRLEN", "insp:k"])
        #expect(try commandCalls(cluster.replicas[0], "strlen") == again + 1)
    }

    /// A tool's session (its first admin command pins it to a dedicated master connection) is
    /// named in Redis as a direct client is: the slow log names it, whether the name was set
    /// before or by CLIENT SETNAME after (which Redis then runs too, a refused one included);
    /// with every command logged, the entries (arguments and name, newest first) are the same
    /// as direct. Redis's own slowlog tests assert the client's name. AUTH runs its next commands
    /// as that user. RESET: an app again, its reads on the replica.
    @Test func aToolSessionIsNamedInTheSlowLogAsDirect() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        func entries(_ port: UInt16) throws -> [String] {
            let tool = try BlockingClient(port: port, timeout: 5)
            _ = try tool.command(["client", "setname", "first"])
            _ = try tool.command(["CONFIG", "SET", "slowlog-log-slower-than", "0"])
            defer { _ = try? tool.command(["CONFIG", "SET", "slowlog-log-slower-than", "10000"]) }
            _ = try tool.command(["SLOWLOG", "RESET"])
            _ = try tool.command(["SET", "slow:k", "v"])
            _ = try tool.command(["client", "setname", "second"])
            _ = try tool.command(["GET", "slow:k"])
            if case .error = try tool.command(["client", "setname", "bad name"]) {} else { Issue.record("a bad name was taken") }
            _ = try tool.command(["EXISTS", "slow:k"])
            _ = try tool.command(["MULTI"])
            _ = try tool.command(["INCR", "slow:n"])
            _ = try tool.command(["EXEC"])
            guard case .array(let log?) = try tool.command(["SLOWLOG", "GET", "20"]) else { return ["no log"] }
            return log.map { entry in
                guard case .array(let fields?) = entry, fields.count == 6, case .array(let arguments?) = fields[3] else { return "\(entry)" }
                return arguments.compactMap(\.text).joined(separator: " ") + " [" + (fields[5].text ?? "?") + "]"
            }
        }
        let direct = try entries(cluster.master.port)
        #expect(direct == ["INCR slow:n [second]", "MULTI [second]", "EXISTS slow:k [second]",
                           "client setname bad name [second]", "GET slow:k [second]", "client setname second [second]",
                           "SET slow:k v [first]", "SLOWLOG RESET [first]"])
        #expect(try entries(ambassador.port) == direct)

        // AUTH (passed through to the master) moves a tool to a connection logged in as that
        // user, pipelined behind it or not.
        for port in [cluster.master.port, ambassador.port] {
            let tool = try BlockingClient(port: port, timeout: 5)
            _ = try tool.command(["ACL", "SETUSER", "slowtool", "on", ">pw", "+@all", "~*"])
            #expect(try tool.command(["AUTH", "slowtool", "pw"]) == .simpleString(Array("OK".utf8)))
            #expect(try tool.command(["ACL", "WHOAMI"]) == .bulkString(Array("slowtool".utf8)), "port \(port)")
            let replies = try tool.pipeline([["AUTH", "default", "x"], ["AUTH", "slowtool", "pw"], ["ACL", "WHOAMI"],
                                             ["RESET"], ["ACL", "WHOAMI"]]).map(text)
            #expect(replies.dropFirst() == ["+OK\r\n", "$8\r\nslowtool\r\n", "+RESET\r\n", "$7\r\ndefault\r\n"], "port \(port)")
        }

        let tool = try ambassador.client()
        _ = try tool.command(["CLIENT", "SETNAME", "reset"])
        _ = try tool.command(["SLOWLOG", "LEN"])
        _ = try tool.command(["RESET"])
        let before = try commandCalls(cluster.replicas[0], "strlen")
        _ = try tool.command(["STRLEN", "slow:k"])
        #expect(try commandCalls(cluster.replicas[0], "strlen") == before + 1)
    }

    /// SYNC makes the client a replica of the master, as direct: after its earlier replies it
    /// gets the RDB payload (no RESP reply: no CRLF after it) and then the replication stream,
    /// byte for byte. Redis's own tests read the stream this way (attach_to_replication_stream)
    /// to see what a command propagates. Other sessions go on as usual meanwhile.
    @Test func syncMakesTheSessionAReplicaAsDirect() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        func stream(_ port: UInt16) throws -> [String] {
            let admin = try BlockingClient(port: port, timeout: 10)
            _ = try admin.command(["CONFIG", "SET", "repl-ping-replica-period", "3600"])
            defer { _ = try? admin.command(["CONFIG", "SET", "repl-ping-replica-period", "10"]) }
            let replica = try BlockingClient(port: port, timeout: 10)
            // (Pipelined behind them, direct Redis would refuse SYNC: their replies pending.)
            var out = [text(try replica.readRawReplyAfter(["SELECT", "2"])), text(try replica.readRawReplyAfter(["GET", "sync:none"]))]
            try replica.send(Array("SYNC\r\n".utf8))
            var line = try replica.readLine()
            while line.isEmpty { line = try replica.readLine() }  // newlines: the master is still saving
            guard line.first == UInt8(ascii: "$"), let count = Int(text(Array(line.dropFirst()))) else { return out + [text(line)] }
            out.append("RDB: \(try replica.readBytes(count).starts(with: Array("REDIS".utf8)))")
            _ = try admin.command(["SELECT", "3"])
            _ = try admin.command(["SET", "sync:k", "v"])
            _ = try admin.command(["GETDEL", "sync:k"])
            #expect(try admin.command(["PING"]) == .simple("PONG"))
            while out.count < 6 {
                let frame = text(try replica.readRawReply())
                if !frame.lowercased().contains("ping") { out.append(frame) }
            }
            return out
        }
        let direct = try stream(cluster.master.port)
        #expect(direct.count == 6 && direct[2] == "RDB: true" && direct[5].contains("DEL"), "\(direct)")
        let proxied = try stream(ambassador.port)
        #expect(proxied == direct, "\(proxied) against \(direct)")
    }

    /// A command the table does not know — here GET renamed with rename-command, as a module's
    /// command would be — is classified from the master's COMMAND INFO after its first use: the
    /// renamed read-only command then goes to the replicas. Unknown names still get Redis's error.
    @Test func renamedAndModuleCommandsAreClassifiedFromTheMaster() throws {
        let cluster = try Cluster(replicas: 1, masterArguments: ["--rename-command", "GET", "xget"])
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        _ = try cluster.master.client().command(["SET", "rn:k", "v"])
        try cluster.sync()
        let client = try ambassador.client()
        // The replica first takes reads at all (its first health check may come late on a busy
        // machine): a known read lands on it.
        #expect(eventually(10) { (try? client.command(["STRLEN", "rn:k"])) == .integer(1) && ((try? commandCalls(cluster.replicas[0], "strlen")) ?? 0) > 0 })
        // The first use asks the master (COMMAND INFO) while the command goes there as unknown;
        // once the answer is in, the renamed read goes to the replica.
        #expect(eventually(5) { (try? client.command(["XGET", "rn:k"])) == .bulk("v") && ((try? commandCalls(cluster.replicas[0], "get")) ?? 0) > 0 })
        let before = try commandCalls(cluster.replicas[0], "get")
        for _ in 0..<50 { #expect(try client.command(["XGET", "rn:k"]) == .bulk("v")) }
        let onReplica = try commandCalls(cluster.replicas[0], "get") - before
        #expect(onReplica >= 45, "the replica served \(onReplica) of 50 renamed reads")
        #expect(text(try client.readRawReplyAfter(["NOSUCHCMD", "x"])) == text(try cluster.master.client().readRawReplyAfter(["NOSUCHCMD", "x"])))
        #expect(text(try client.readRawReplyAfter(["GET", "rn:k"])).hasPrefix("-ERR unknown command 'GET'"))
    }

    /// read_your_writes: app — a pool of 20 connections where one connection writes a key and
    /// another reads it at once never reads it stale, even with a replica whose replication is
    /// held back; `session` (which only covers a connection's own writes) does, which shows the
    /// check can fail. Keys nobody wrote are still read from the replicas.
    @Test(arguments: [ReadYourWrites.app, .session])
    func appModeCoversWritesFromAnotherPooledConnection(mode: ReadYourWrites) throws {
        let setup = try RelayedReplica()
        defer { setup.stop() }
        let (master, relay, lagging) = (setup.master, setup.relay, setup.replica)
        _ = try master.client().command(["SET", "pool:fixed", "f"])
        #expect(try eventually(3) { try lagging.client().command(["GET", "pool:fixed"]) == .bulk("f") })
        var config = AmbassadorConfig(
            listen: .tcp(Address(host: "127.0.0.1", port: 0)), master: Address(host: "127.0.0.1", port: master.port),
            replicas: [Address(host: "127.0.0.1", port: lagging.port)], readPolicy: .preferReplica)
        config.readYourWrites = mode
        let ambassador = try Ambassador(config)
        defer { ambassador.stop() }
        let pool = try (0..<20).map { _ in try ambassador.client() }
        relay.pauseReplication(true)
        var stale = 0
        for i in 0..<500 {
            #expect(try pool[i % 20].command(["SET", "pool:\(i % 37)", String(i)]) == .simple("OK"))
            if try pool[(i + 7) % 20].command(["GET", "pool:\(i % 37)"]) != .bulk(String(i)) { stale += 1 }
            if try pool[(i + 3) % 20].command(["MGET", "pool:\(i % 37)", "pool:none"]) != .array([.bulk(String(i)), .bulkString(nil)]) {
                stale += 1
            }
        }
        // A connection that wrote nothing, reading a key nobody wrote.
        let reader = try ambassador.client()
        let before = try commandCalls(lagging, "get")
        for _ in 0..<50 { #expect(try reader.command(["GET", "pool:fixed"]) == .bulk("f")) }
        let fixedOnReplica = try commandCalls(lagging, "get") - before
        relay.pauseReplication(false)
        if mode == .app {
            #expect(stale == 0, "\(stale) stale reads across the pool")
            #expect(fixedOnReplica >= 45, "a key nobody wrote is read from the replica: \(fixedOnReplica) of 50")
        } else {
            #expect(stale > 0, "session mode does not cover another connection's writes")
        }
        print("read_your_writes \(mode): \(stale) stale reads of 1,000 across a pool of 20 connections")
    }
}
}
