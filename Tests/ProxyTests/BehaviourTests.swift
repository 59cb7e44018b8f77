import Config
import Foundation
import RESP
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
@Suite(.serialized) struct BehaviourTests {
    /// After a read-heavy run the replicas have served the reads, and nobody saw READONLY.
    @Test func readsLandOnReplicasAndWritesOnTheMaster() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        // Routing alone: with read_your_writes the reads after this session's SETs would (rightly)
        // go to the master until the replicas have them.
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica) { $0.readYourWrites = .off }
        defer { ambassador.stop() }
        let client = try ambassador.client()
        var commands: [[String]] = []
        for i in 0..<2_000 { commands.append(i % 10 == 0 ? ["SET", "k\(i % 50)", "v"] : ["GET", "k\(i % 50)"]) }
        _ = try client.pipeline(commands)
        let replicaGets = try cluster.replicas.map { try commandCalls($0, "get") }
        #expect(replicaGets.allSatisfy { $0 > 0 }, "every replica served reads: \(replicaGets)")
        #expect(replicaGets.reduce(0, +) == 1_800)
        #expect(try commandCalls(cluster.master, "get") == 0)
        #expect(try commandCalls(cluster.master, "set") == 200)
        // No write reached a replica: a replica refuses client writes with READONLY, counted here.
        for server in [cluster.master] + cluster.replicas {
            #expect(try !server.info("errorstats").contains("READONLY"))
        }
    }

    @Test func readPolicyMasterKeepsReplicasIdle() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        _ = try ambassador.client().pipeline((0..<500).map { ["GET", "k\($0)"] })
        for replica in cluster.replicas { #expect(try commandCalls(replica, "get") == 0) }
        #expect(try commandCalls(cluster.master, "get") == 500)
    }

    /// A cursor is only meaningful on the node that issued it: one session's SCAN and HSCAN walks
    /// stay on one replica, although single reads alternate between idle replicas.
    @Test func scanCursorWalkStaysOnOneReplica() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        // The session writes its keys first: without this its first SCAN could (rightly) start on
        // the master, and the walk stay there.
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica) { $0.readYourWrites = .off }
        defer { ambassador.stop() }
        let client = try ambassador.client()
        _ = try client.pipeline((0..<300).map { ["SET", "scan:\($0)", "v"] } + (0..<1000).map { ["HSET", "h", "f\($0)", "v"] })
        try cluster.sync()
        func walk(_ command: [String]) throws -> (calls: Int, items: Int) {
            var cursor = "0", calls = 0, items = 0
            repeat {
                guard case .array(let reply?) = try client.command(Array(command.prefix(command[0] == "SCAN" ? 1 : 2)) + [cursor] + ["COUNT", "7"]),
                      case .bulkString(let next?) = reply[0], case .array(let found?) = reply[1] else {
                    Issue.record("unexpected reply to \(command)")
                    return (calls, items)
                }
                cursor = text(next)
                calls += 1
                items += found.count
            } while cursor != "0"
            return (calls, items)
        }
        let scan = try walk(["SCAN"])
        let hscan = try walk(["HSCAN", "h"])
        #expect(scan.items >= 301, "every key seen")
        #expect(hscan.items >= 2000, "every field and value seen")
        #expect(scan.calls > 10 && hscan.calls > 10, "\(scan) \(hscan)")
        let scans = try cluster.replicas.map { try commandCalls($0, "scan") }
        let hscans = try cluster.replicas.map { try commandCalls($0, "hscan") }
        #expect(scans.sorted() == [0, scan.calls], "SCAN calls per replica: \(scans)")
        #expect(hscans == scans.map { $0 == 0 ? 0 : hscan.calls }, "HSCAN on the same replica: \(hscans)")
        // Plain reads still spread over both replicas.
        for i in 0..<20 { _ = try client.command(["GET", "scan:\(i)"]) }
        #expect(try cluster.replicas.allSatisfy { try commandCalls($0, "get") > 0 })
    }

    @Test func readPolicyReplicaAnswersAnErrorWhenNoReplicaIsUp() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .replica)
        defer { ambassador.stop() }
        let client = try ambassador.client()
        #expect(try client.command(["GET", "x"]) == .bulkString(nil))
        cluster.replicas[0].stop()
        var reply = RESPValue.null
        #expect(eventually(3) {
            reply = (try? client.command(["GET", "x"])) ?? .null
            return reply.text?.contains("no replica is available") == true
        }, "\(reply)")
        #expect(try client.command(["SET", "x", "1"]) == .simple("OK"), "writes still work")
    }

    /// 200 concurrent app connections share a handful of backend connections.
    @Test func twoHundredClientsShareAFewBackendConnections() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let clients = try (0..<200).map { _ in try ambassador.client() }
        for (i, client) in clients.enumerated() {
            try client.send(BlockingClient.encode(i % 2 == 0 ? ["SET", "mux\(i)", "v"] : ["GET", "mux\(i)"]))
        }
        for client in clients { _ = try client.readReply() }
        for server in [cluster.master] + cluster.replicas {
            let list = try server.client().command(["CLIENT", "LIST"]).text ?? ""
            // Not the replicas' own links (flags=S) nor this CLIENT LIST connection (cmd=client).
            let ambassadorConnections = list.split(whereSeparator: \.isNewline)
                .filter { !$0.contains("flags=S") && !$0.contains("cmd=client") }
            #expect(ambassadorConnections.count <= 4, "server \(server.port): \(ambassadorConnections.count) connections")
            #expect(ambassadorConnections.count >= 1)
        }
        #expect(ambassador.onLoop { $0.clientCount } == 200)
    }

    /// Transactions reuse pooled connections: no connection per transaction on the master.
    /// Large values (16 KiB and more) sent while the shared connection is busy go out on a few
    /// extra connections, and each session's commands still take effect in the order it sent
    /// them: pipelines that mix large and small values, and lone large writes followed by reads.
    @Test func largeValuesTakeExtraConnectionsAndKeepEachSessionsOrder() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let failures = Mutex<[String]>([])
        let finished = DispatchGroup()
        let port = ambassador.port
        for clientIndex in 0..<16 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                do {
                    let client = try BlockingClient(port: port, timeout: 10)
                    let key = "big:\(clientIndex)", small = "small:\(clientIndex)"
                    func check(_ what: String, _ raw: [UInt8], _ expected: RESPValue) {
                        let reply = try? RESPValue.decode(raw)?.0
                        if reply != expected { failures.withLock { $0.append("client \(clientIndex) \(what): \(text(raw).prefix(60))") } }
                    }
                    for round in 0..<30 {
                        let a = String(repeating: Character(UnicodeScalar(UInt8(97 + round % 26))), count: 20_000 + round)
                        let b = String(repeating: "z", count: 17_000 + clientIndex)
                        let replies = try client.pipeline([
                            ["SET", key, a], ["APPEND", key, "x"], ["GET", key], ["SET", small, "\(round)"],
                            ["GET", small], ["SET", key, b], ["STRLEN", key], ["INCR", "count:\(clientIndex)"],
                        ])
                        check("SET a", replies[0], .simple("OK"))
                        check("APPEND", replies[1], .integer(Int64(a.utf8.count + 1)))
                        check("GET a", replies[2], .bulk(a + "x"))
                        check("SET small", replies[3], .simple("OK"))
                        check("GET small", replies[4], .bulk("\(round)"))
                        check("SET b", replies[5], .simple("OK"))
                        check("STRLEN", replies[6], .integer(Int64(b.utf8.count)))
                        check("INCR", replies[7], .integer(Int64(round + 1)))
                        // A lone large write (nothing of this session in flight), then reads.
                        check("lone SET", try client.readRawReplyAfter(["SET", key, a]), .simple("OK"))
                        check("GET after lone SET", try client.readRawReplyAfter(["GET", key]), .bulk(a))
                        check("lone APPEND", try client.readRawReplyAfter(["APPEND", small, a]), .integer(Int64("\(round)".utf8.count + a.utf8.count)))
                        check("STRLEN after lone APPEND", try client.readRawReplyAfter(["STRLEN", small]), .integer(Int64("\(round)".utf8.count + a.utf8.count)))
                    }
                } catch {
                    failures.withLock { $0.append("client \(clientIndex): \(error)") }
                }
            }.start()
        }
        finished.wait()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { Array($0.prefix(5)) })")
        // The ambassador's connections to the master that carried the app's commands: the
        // regular one plus at least one lane for large values, and at most 16 lanes.
        let list = try cluster.master.client().command(["CLIENT", "LIST"]).text ?? ""
        let carriers = list.split(whereSeparator: \.isNewline).filter { line in
            ["set", "get", "append", "strlen", "incr"].contains { line.contains("cmd=\($0) ") }
        }
        #expect(carriers.count >= 2 && carriers.count <= 17, "\(carriers.count) connections:\n\(list)")
    }

    @Test func transactionsReusePinnedConnections() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let before = try totalConnections(cluster.master)
        for round in 0..<100 {
            let client = try ambassador.client()
            let replies = try client.pipeline([["MULTI"], ["INCR", "tx"], ["EXEC"]])
            #expect(text(replies[2]) == "*1\r\n:\(round + 1)\r\n")
        }
        let opened = try totalConnections(cluster.master) - before
        #expect(opened <= 3, "connections opened for 100 transactions: \(opened)")
    }

    /// A pinned session's name, id and login stay the session's; a transaction that renames
    /// its dedicated connection gets it closed instead of handed to the next session.
    @Test func pinnedSessionsKeepTheirIdentityAndRenamedConnectionsAreNotPooled() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let client = try ambassador.client()
        // WATCH pins the session; its name and id are still the ones the ambassador gave it.
        guard case .integer(let id) = try client.command(["CLIENT", "ID"]) else {
            Issue.record("CLIENT ID is not an integer")
            return
        }
        let replies = try client.pipeline([["CLIENT", "SETNAME", "app"], ["WATCH", "k"], ["CLIENT", "GETNAME"],
                                           ["CLIENT", "ID"], ["UNWATCH"], ["CLIENT", "GETNAME"]])
        #expect(replies.map(text) == ["+OK\r\n", "+OK\r\n", "$3\r\napp\r\n", ":\(id)\r\n", "+OK\r\n", "$3\r\napp\r\n"])
        // Renamed inside MULTI: the name reaches the dedicated connection at EXEC, which is then
        // closed, so no other session inherits it.
        let renamed = try client.pipeline([["MULTI"], ["CLIENT", "SETNAME", "renamed"], ["EXEC"]])
        #expect(text(renamed[2]) == "*1\r\n+OK\r\n")
        _ = try client.command(["PING"])
        #expect(try eventually(3) { try cluster.master.client().command(["CLIENT", "LIST"]).text?.contains("name=renamed") == false })
    }

    /// EXEC or DISCARD without MULTI, and UNWATCH with an argument, are refused and leave the
    /// WATCHed keys watched: the dedicated connection must not go back to the pool with them,
    /// or another session's transaction there would abort (EXEC nil) when the key changes.
    /// (EXEC with an argument answers EXECABORT, which unwatches.)
    @Test func refusedTransactionCommandsDoNotLeaveAWatchOnAPooledConnection() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let other = try ambassador.client()
        for refused in [["EXEC"], ["DISCARD"], ["UNWATCH", "x"], ["EXEC", "x"]] {
            let watcher = try ambassador.client()
            let replies = try watcher.pipeline([["WATCH", "w:k"], refused, ["PING"]]).map(text)
            #expect(replies[0] == "+OK\r\n" && replies[1].hasPrefix("-") && replies[2] == "+PONG\r\n", "\(refused): \(replies)")
            watcher.disconnect()
            _ = try other.command(["PING"])
            // Three transactions in a row, each after the watched key changed.
            for round in 0..<3 {
                #expect(try other.command(["SET", "w:k", "\(round)"]) == .simple("OK"))
                let exec = try other.pipeline([["MULTI"], ["INCR", "w:n"], ["EXEC"]]).map(text)
                #expect(exec[2].hasPrefix("*1\r\n:"), "after \(refused), round \(round): \(exec)")
            }
        }
        // MULTI with an argument is refused: no transaction begins.
        let client = try ambassador.client()
        let replies = try client.pipeline([["MULTI", "x"], ["SET", "w:m", "1"], ["EXEC"]]).map(text)
        #expect(replies == ["-ERR wrong number of arguments for 'multi' command\r\n", "+OK\r\n", "-ERR EXEC without MULTI\r\n"])
    }

    /// A client pipelines GETs of a large value and hangs up without reading: the replies still
    /// come (Redis ran the GETs), and the ambassador drops what has not arrived of each unread,
    /// in the kernel (AMBASSADOR INFO counts it). Other clients on the same shared connection
    /// get every reply, in order, byte for byte, while and after the stream is skipped.
    @Test func largeRepliesAClientLeftBehindAreSkippedAndTheStreamStaysInStep() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let big = String(repeating: "b", count: 1 << 20)
        let admin = try ambassador.client()
        #expect(try admin.command(["SET", "skip:big", big]) == .simple("OK"))
        func skipped() throws -> Int {
            let text = try admin.command(["AMBASSADOR", "INFO"]).text ?? ""
            return text.split(whereSeparator: \.isNewline).first { $0.hasPrefix("skipped_reply_bytes:") }
                .flatMap { Int($0.dropFirst("skipped_reply_bytes:".count)) } ?? -1
        }
        let other = try BlockingClient(port: ambassador.port, timeout: 10)
        for round in 0..<5 {
            let leaver = try BlockingClient(port: ambassador.port, timeout: 10)
            let leaverID = try sessionID(leaver)
            try leaver.send((0..<20).flatMap { _ in BlockingClient.encode(["GET", "skip:big"]) })
            #expect(awaitLastCommand("get", of: leaverID, via: admin))  // the GETs are on their way
            leaver.abort()
            // Same connection (one shared connection to the master): the other client's
            // pipeline comes behind the abandoned replies, including a large reply of its own.
            let commands = (0..<50).flatMap { i in [["SET", "skip:\(round):\(i)", "\(i)"], ["GET", "skip:\(round):\(i)"]] }
                + [["GET", "skip:big"], ["PING"]]
            let replies = try other.pipeline(commands).map(text)
            let expected = (0..<50).flatMap { i in ["+OK\r\n", "$\(String(i).utf8.count)\r\n\(i)\r\n"] }
                + ["$\(big.utf8.count)\r\n\(big)\r\n", "+PONG\r\n"]
            #expect(replies == expected, "round \(round)")
        }
        #expect(try eventually(5) { try skipped() > 1 << 20 })
        #expect(try other.command(["GET", "skip:big"]) == .bulk(big))
    }

    /// A BLPOP waiting on one client does not delay anyone else.
    @Test func pendingBlockingPopDelaysNoOtherClient() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let blocked = try ambassador.client()
        try blocked.send(BlockingClient.encode(["BLPOP", "never", "3"]))
        #expect(eventually(2) { isBlocked(in: "blpop", on: cluster.master) })
        let start = Date()
        let other = try ambassador.client()
        for i in 0..<100 { #expect(try other.command(["SET", "b\(i)", "v"]) == .simple("OK")) }
        #expect(Date().timeIntervalSince(start) < 1.0)
        try other.send(BlockingClient.encode(["RPUSH", "never", "x"]))
        _ = try other.readReply()
        #expect(try blocked.readReply() == .array([.bulk("never"), .bulk("x")]))
    }

    /// Twelve clients pipeline reads (replicas) and writes (the master) at once over shared
    /// connections, so most replies arrive before their turn and wait. Replies of every size
    /// around the point where a waiting reply is copied rather than moved (1,024 bytes), errors
    /// among them, and pipelines deep enough that replies straddle the backends' reads: each
    /// client gets exactly its own replies, in its order.
    @Test func repliesArrivingOutOfTurnKeepEverySessionsOrder() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        // Shared values: bulk replies from 9 bytes up, dense around 1,024 (value length + 9
        // to 11 bytes of framing).
        let sizes = Array(0..<40).map { $0 * 53 } + Array(1000...1030) + [4_000, 20_000, 70_000]
        let values = sizes.indices.map { String(repeating: Character(UnicodeScalar(UInt8(97 + $0 % 26))), count: sizes[$0]) }
        let value = { @Sendable (i: Int) in values[i] }
        _ = try cluster.master.client(timeout: 30).pipeline(sizes.indices.map { ["SET", "v:\($0)", value($0)] } + [["SET", "text", "abc"]])
        try cluster.sync()
        let failures = Mutex<[String]>([])
        let finished = DispatchGroup()
        let port = ambassador.port
        for clientIndex in 0..<12 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                do {
                    let client = try BlockingClient(port: port, timeout: 30)
                    var counter: Int64 = 0
                    for round in 0..<8 {
                        var commands: [[String]] = [], expected: [RESPValue] = []
                        for step in 0..<(150 + 40 * round) {
                            let i = (step * 7 + clientIndex * 13 + round) % sizes.count
                            switch step % 5 {
                            case 0, 2:
                                commands.append(["GET", "v:\(i)"]); expected.append(.bulk(value(i)))
                            case 1:
                                commands.append(["SET", "own:\(clientIndex):\(step)", value(i)]); expected.append(.simple("OK"))
                            case 3:
                                counter += 1
                                commands.append(["INCR", "count:\(clientIndex)"]); expected.append(.integer(counter))
                            default:
                                // An error from a replica, between replies that wait.
                                commands.append(["LLEN", "text"])
                                expected.append(.error(Array("WRONGTYPE Operation against a key holding the wrong kind of value".utf8)))
                            }
                        }
                        let replies = try client.pipeline(commands)
                        for (index, (raw, want)) in zip(replies, expected).enumerated() {
                            let got = try? RESPValue.decode(raw)?.0
                            if got != want {
                                failures.withLock { $0.append("client \(clientIndex) round \(round) reply \(index) \(commands[index]): \(text(raw).prefix(40))") }
                                break
                            }
                        }
                        if replies.count != expected.count { failures.withLock { $0.append("client \(clientIndex): \(replies.count) replies") } }
                    }
                } catch {
                    failures.withLock { $0.append("client \(clientIndex): \(error)") }
                }
            }.start()
        }
        finished.wait()
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { Array($0.prefix(5)) })")
        #expect(try commandCalls(cluster.replicas[0], "get") + commandCalls(cluster.replicas[1], "get") > 0)
    }

    /// A pipeline whose replies come from the master and from replicas reaches the client in one
    /// write, as Redis answers what one read brought; and a command that waits (BLPOP, XREAD
    /// BLOCK, WAIT) or a subscription never holds back the replies before it, as with Redis.
    @Test func pipelineRepliesLeaveTogetherButNeverWaitForABlockedCommand() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        let keys = (0..<24).map { "pipe:\($0)" }
        let admin = try cluster.master.client()
        for key in keys { _ = try admin.command(["SET", key, String(repeating: "v", count: 40)]) }
        try cluster.sync()
        // Reads spread over both replicas (batches of reads, ambassador-wide) with writes between.
        var pipeline: [UInt8] = []
        for (index, key) in keys.enumerated() {
            pipeline += BlockingClient.encode(index % 4 == 3 ? ["INCR", "pipe:n"] : ["GET", key])
        }
        let client = try ambassador.client()
        var whole = 0
        for _ in 0..<20 where try client.pipeline(pipeline, replies: keys.count).inOneRead { whole += 1 }
        #expect(whole >= 18, "\(whole) of 20 pipelines came in one read")

        for waiting in [["BLPOP", "pipe:list", "0"], ["XREAD", "BLOCK", "0", "STREAMS", "pipe:stream", "$"],
                        ["WAIT", "3", "0"], ["SUBSCRIBE", "pipe:channel"]] {
            for port in [cluster.master.port, ambassador.port] {
                let waiter = try BlockingClient(port: port, timeout: 3)
                try waiter.send(BlockingClient.encode(["GET", keys[0]]) + BlockingClient.encode(["INCR", "pipe:n"])
                                + BlockingClient.encode(waiting))
                let place = "\(waiting) on \(port == ambassador.port ? "the ambassador" : "Redis")"
                do {
                    #expect(try waiter.readReply() == .bulk(String(repeating: "v", count: 40)), "\(place)")
                    if case .integer = try waiter.readReply() {} else { Issue.record("INCR before \(place)") }
                } catch {
                    Issue.record("the replies before \(place) were held back: \(error)")
                }
                waiter.abort()
            }
        }

        // A write that CLIENT PAUSE WRITE holds does not hold back the read before it: Redis
        // sends the read's reply while the write waits, and so does the ambassador (a batch's
        // replies wait for each other 10 ms at most).
        for port in [cluster.master.port, ambassador.port] {
            let place = port == ambassador.port ? "the ambassador" : "Redis"
            _ = try admin.command(["CLIENT", "PAUSE", "5000", "WRITE"])
            let client = try BlockingClient(port: port, timeout: 2)
            try client.send(BlockingClient.encode(["GET", keys[1]]) + BlockingClient.encode(["SET", "pipe:paused", "1"]))
            do {
                #expect(try client.readReply() == .bulk(String(repeating: "v", count: 40)), "\(place)")
            } catch {
                Issue.record("the read before a paused write was held back on \(place): \(error)")
            }
            _ = try admin.command(["CLIENT", "UNPAUSE"])
            #expect(try client.readReply() == .simple("OK"), "\(place)")
        }
    }

    /// A session's WAIT that never returns (WAIT 3 0 with two replicas) runs on the shared master
    /// connection its writes went to; other sessions' commands sent right after it are not
    /// queued behind it there, as no direct client waits for another's WAIT.
    @Test func aWaitWithoutTimeoutHoldsNoOtherSession() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        let waiter = try ambassador.client()
        try waiter.send(BlockingClient.encode(["SET", "wait:a", "1"]) + BlockingClient.encode(["WAIT", "3", "0"]))
        #expect(try waiter.readReply() == .simple("OK"))
        // Several sessions, so that some share the waiter's connection; each must be answered
        // (a 2 s client timeout fails the test).
        for index in 0..<8 {
            let other = try ambassador.client(timeout: 2)
            do {
                #expect(try other.command(["SET", "wait:b\(index)", "1"]) == .simple("OK"))
                #expect(try other.command(["INCR", "wait:n"]) == .integer(Int64(index + 1)))
            } catch {
                Issue.record("session \(index) waited behind another's WAIT: \(error)")
            }
        }
        waiter.abort()
    }

    /// A client that hangs up during its WAIT: a direct Redis ends the WAIT with the client. The
    /// shared master connection it ran on would otherwise stay blocked for good (WAIT 3 0 with
    /// two replicas), a connection lost per such client; the ambassador ends it (CLIENT UNBLOCK),
    /// and only that one: a WAIT whose client is still there goes on.
    @Test func aWaitWhoseClientLeftIsEnded() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        func blockedInWait() throws -> Int {
            let list = try admin.command(["CLIENT", "LIST"]).text ?? ""
            return list.split(separator: "\n").filter { $0.contains("cmd=wait") && $0.contains("flags=b") }.count
        }
        let patient = try ambassador.client()
        try patient.send(BlockingClient.encode(["SET", "wait:p", "1"]) + BlockingClient.encode(["WAIT", "3", "0"]))
        #expect(try patient.readReply() == .simple("OK"))
        #expect(eventually(2) { (try? blockedInWait()) == 1 })
        for round in 0..<3 {
            let waiter = try ambassador.client()
            try waiter.send(BlockingClient.encode(["SET", "wait:a\(round)", "1"]) + BlockingClient.encode(["WAIT", "3", "0"]))
            #expect(try waiter.readReply() == .simple("OK"))
            #expect(eventually(2) { (try? blockedInWait()) == 2 }, "round \(round): the WAIT runs, beside the patient one")
            waiter.abort()
            #expect(eventually(2) { (try? blockedInWait()) == 1 }, "round \(round): the WAIT of the client that left ended, not the other")
        }
        patient.abort()
        #expect(eventually(2) { (try? blockedInWait()) == 0 })
        // The master connections are free again: writes from new sessions are answered.
        #expect(try ambassador.client(timeout: 2).command(["SET", "wait:after", "1"]) == .simple("OK"))
    }

    /// A session whose request is already on the shared master connection when another
    /// session's WAIT (WAIT 3 0, two replicas: never satisfied) is sent there does not queue its
    /// next request behind that WAIT: it waits for its own earlier reply, then goes to a
    /// connection no WAIT holds, as no direct client waits for another's WAIT.
    @Test func requestsBoundBeforeAnotherSessionsWaitDoNotQueueBehindIt() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster)
        defer { ambassador.stop() }
        let waiter = try ambassador.client()
        #expect(try waiter.command(["SET", "hol:w", "1"]) == .simple("OK"))  // its writes' connection
        // A script that keeps Redis busy for 400 ms: the first request stays in flight on the
        // (one) shared master connection while the WAIT, then the next request, are sent.
        let busy = "local s = redis.call('TIME') while true do local t = redis.call('TIME') "
            + "if (t[1] - s[1]) * 1000000 + (t[2] - s[2]) > 400000 then return 1 end end"
        let bound = try ambassador.client(timeout: 3)
        let observer = try ambassador.client()
        let (boundID, waiterID) = (try sessionID(bound), try sessionID(waiter))
        try bound.send(BlockingClient.encode(["EVAL", busy, "0"]))
        #expect(awaitLastCommand("eval", of: boundID, via: observer))
        try waiter.send(BlockingClient.encode(["WAIT", "3", "0"]))
        #expect(awaitLastCommand("wait", of: waiterID, via: observer))
        try bound.send(BlockingClient.encode(["INCR", "hol:n"]))
        #expect(try bound.readReply() == .integer(1))
        do {
            #expect(try bound.readReply() == .integer(1))
        } catch {
            Issue.record("INCR waited behind the other session's WAIT: \(error)")
        }
        waiter.abort()
    }

    /// A replica stopped during a read loop: reads move on, no error reaches the client.
    @Test func replicaStoppedDuringReadLoopCausesNoError() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        _ = try admin.pipeline((0..<100).map { ["SET", "loop\($0)", "v\($0)"] })
        try cluster.sync()
        let client = try ambassador.client()
        var errors = 0
        var wrong = 0
        var firstWrong = ""
        for round in 0..<60 {
            if round == 20 { cluster.replicas[0].kill9() }
            if round == 40 { cluster.replicas[1].stop() }
            let replies = try client.pipeline((0..<50).map { ["GET", "loop\(($0 + round) % 100)"] })
            for (i, reply) in replies.enumerated() {
                let expected = "v\((i + round) % 100)"
                if reply.first == UInt8(ascii: "-") { errors += 1 }
                else if text(reply) != "$\(expected.utf8.count)\r\n\(expected)\r\n" {
                    if wrong == 0 { firstWrong = "round \(round) #\(i): \(text(reply).debugDescription)" }
                    wrong += 1
                }
            }
        }
        #expect(errors == 0)
        #expect(wrong == 0, "\(firstWrong)")
        #expect(try commandCalls(cluster.master, "get") > 0, "reads fell back to the master")
    }

    /// The master goes away: requests get an error naming it, the client stays connected, and
    /// works again once the master is back.
    @Test func masterDownGivesErrorsThenRecovers() throws {
        let cluster = try Cluster(replicas: 0)
        let port = cluster.master.port
        let ambassador = try Ambassador(cluster: cluster, policy: .master) { $0.reconnectInterval = Duration(seconds: 0.05) }
        defer { ambassador.stop() }
        let client = try ambassador.client()
        #expect(try client.command(["SET", "k", "1"]) == .simple("OK"))
        cluster.master.kill9()
        var reply = RESPValue.null
        #expect(eventually(3) {
            reply = (try? client.command(["SET", "k", "2"])) ?? .null
            if case .error = reply { return true }
            return false
        })
        #expect(reply.text?.hasPrefix("ERR ambassador:") == true, "\(reply)")
        #expect(reply.text?.contains("127.0.0.1:\(port)") == true)
        #expect(try client.command(["PING"]) == .simple("PONG"), "the client connection stays open")
        let restarted = try RedisServer(port: port)
        defer { restarted.stop() }
        #expect(eventually(5, every: 0.05) { (try? client.command(["SET", "k", "3"])) == .simple("OK") })
        #expect(try restarted.client().command(["GET", "k"]) == .bulk("3"))
    }

    /// Backends that need a password: the ambassador authenticates, the app does not.
    @Test func backendCredentialsComeFromTheAmbassador() throws {
        let cluster = try Cluster(replicas: 1, masterArguments: ["--requirepass", "s3cret"])
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica) { $0.password = "s3cret" }
        defer { ambassador.stop() }
        let client = try ambassador.client()
        #expect(try client.command(["SET", "a", "1"]) == .simple("OK"))
        try cluster.sync()
        #expect(try client.command(["GET", "a"]) == .bulk("1"))
        #expect(try client.command(["AUTH", "s3cret"]) == .simple("OK"))
        #expect(try client.command(["AUTH", "wrong"]).text?.hasPrefix("WRONGPASS") == true)
        #expect(try client.pipeline([["MULTI"], ["INCR", "n"], ["EXEC"]]).last.map(text) == "*1\r\n:1\r\n")
    }

    /// A RESP3 session gets RESP3 replies from the replicas too.
    @Test func resp3SessionGetsResp3FromEveryBackend() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        _ = try cluster.master.client().command(["HSET", "h3", "f", "v"])
        try cluster.sync()
        let client = try ambassador.client()
        guard case .map = try client.command(["HELLO", "3"]) else { Issue.record("HELLO 3 is not a map"); return }
        for _ in 0..<6 {
            #expect(text(try client.pipeline([["HGETALL", "h3"]])[0]) == "%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
            #expect(text(try client.pipeline([["GET", "nope"]])[0]) == "_\r\n")
        }
        #expect(try cluster.replicas.map { try commandCalls($0, "hgetall") }.reduce(0, +) > 0)
    }

    /// SELECT holds wherever a command goes, replicas included.
    @Test func selectedDatabaseHoldsOnReplicas() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        _ = try admin.pipeline([["SELECT", "3"], ["SET", "dbk", "three"], ["SELECT", "0"], ["SET", "dbk", "zero"]])
        try cluster.sync()
        let client = try ambassador.client()
        #expect(try client.command(["SELECT", "3"]) == .simple("OK"))
        for _ in 0..<10 { #expect(try client.command(["GET", "dbk"]) == .bulk("three")) }
        let other = try ambassador.client()  // another session on the same shared connections
        for _ in 0..<10 { #expect(try other.command(["GET", "dbk"]) == .bulk("zero")) }
        #expect(try client.pipeline([["GET", "dbk"], ["SELECT", "0"], ["GET", "dbk"]]).map(text)
                == ["$5\r\nthree\r\n", "+OK\r\n", "$4\r\nzero\r\n"])
        #expect(try cluster.replicas.map { try commandCalls($0, "get") }.reduce(0, +) > 0)
    }

    /// MONITOR streams what the master executes to the monitoring client.
    @Test func monitorStreamsCommands() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let monitor = try ambassador.client()
        #expect(try monitor.command(["MONITOR"]) == .simple("OK"))
        _ = try ambassador.client().command(["SET", "watched-key", "v"])
        let line = try monitor.readReply().text ?? ""
        #expect(line.contains("\"SET\" \"watched-key\" \"v\""), "\(line)")
    }

    /// A client that reads slowly stops being read from while its replies pile up (past 64 MiB),
    /// and is read again once it catches up: every reply arrives, in order.
    @Test func slowReaderIsPausedAndResumed() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica) { $0.readYourWrites = .off }
        defer { ambassador.stop() }
        let value = String(repeating: "x", count: 30_000)
        _ = try cluster.master.client().command(["SET", "fat", value])
        try cluster.sync()
        let client = try ambassador.client(timeout: 10)
        // ~90 MB of replies from the replica, unread, while a write held back on the master
        // (CLIENT PAUSE WRITE) keeps the session owing a reply: only the output cap can stop the
        // ambassador reading this client.
        let count = 3_000
        _ = try cluster.master.client().command(["CLIENT", "PAUSE", "1500", "WRITE"])
        try client.send((0..<count).flatMap { _ in BlockingClient.encode(["GET", "fat"]) }
                        + BlockingClient.encode(["SET", "after", "1"]))
        #expect(eventually(10) { ambassador.onLoop { $0.loop.backendBytesIn } > 80 << 20 }, "the replies came in")
        let read = ambassador.onLoop { $0.loop.clientBytesIn }
        #expect(read >= count * 22, "every GET was read")
        // …so this PING waits in the socket until the client has read enough.
        try client.send(BlockingClient.encode(["PING"]))
        #expect(!eventually(0.3) { ambassador.onLoop { $0.loop.clientBytesIn } != read }, "the PING was read while the output was over the cap")
        for _ in 0..<count { #expect(try client.readRawReply().count == 30_000 + 10) }
        #expect(try client.readReply() == .simple("OK"))
        #expect(try client.readReply() == .simple("PONG"))
    }

    // MARK: bad input

    @Test func malformedRequestGetsRedisErrorAndOnlyThatClientIsClosed() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let bystander = try ambassador.client()
        #expect(try bystander.command(["SET", "x", "1"]) == .simple("OK"))
        let cases: [(String, String)] = [
            ("*1\r\n$3\r\nGET\r\n*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
            ("*2\r\n$3\r\nGET\r\n$999999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
            ("*1\r\n:5\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"),
            ("SET \"a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
        ]
        for (input, expected) in cases {
            for port in [cluster.master.port, ambassador.port] {
                let client = try BlockingClient(port: port, timeout: 3)
                try client.send(Array(input.utf8))
                var replies: [String] = []
                while let reply = try? client.readRawReply() { replies.append(text(reply)) }
                #expect(replies.last == expected, "\(port == ambassador.port ? "ambassador" : "redis"): \(input.debugDescription) → \(replies)")
            }
        }
        let tooBig = try ambassador.client(timeout: 3)
        try tooBig.send(Array("*1\r\n$".utf8) + [UInt8](repeating: UInt8(ascii: "9"), count: 70_000))
        #expect(text(try tooBig.readRawReply()) == "-ERR Protocol error: too big bulk count string\r\n")
        #expect(tooBig.isClosedByPeer())
        #expect(try bystander.command(["GET", "x"]) == .bulk("1"), "other clients are unaffected")
    }

    /// An inline line with a NUL byte before its newline never ends for Redis (it looks for the
    /// newline with strchr): Redis waits, then at 64 KiB answers "too big inline request" and
    /// closes. Through the ambassador the same, and the line never reaches the shared backend
    /// connection, where Redis would wait the same way with everyone's requests queued behind it
    /// and then close it (found by Scripts/soak.sh).
    @Test func anInlineLineWithANulNeverEndsAsInRedis() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master) { $0.backendConnections = 1 }
        defer { ambassador.stop() }
        let bystander = try ambassador.client()
        #expect(try bystander.command(["SET", "x", "1"]) == .simple("OK"))
        for port in [cluster.master.port, ambassador.port] {
            let name = port == ambassador.port ? "ambassador" : "redis"
            let client = try BlockingClient(port: port, timeout: 0.5)
            try client.send(Array("PING a\u{0}b\r\nPING\r\n".utf8))
            #expect((try? client.readRawReply()) == nil, "\(name): no reply, the line has not ended")
            #expect(try bystander.command(["GET", "x"]) == .bulk("1"), "\(name): the shared connection still serves")
            let rest = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024) + Array("\r\n".utf8)
            try client.send(rest)
            client.setTimeout(3)
            var replies: [String] = []
            while let reply = try? client.readRawReply() { replies.append(text(reply)) }
            #expect(replies == ["-ERR Protocol error: too big inline request\r\n"], "\(name): \(replies)")
        }
        #expect(try bystander.command(["GET", "x"]) == .bulk("1"), "other clients are unaffected")
    }

    /// SUBSCRIBE queued in MULTI subscribes the connection at EXEC. The session that did it leaves;
    /// its dedicated connection must not go back to the pool still subscribed, or the next
    /// session's MULTI would be refused and that session would receive the channel's messages
    /// (found by Scripts/soak.sh).
    @Test func aTransactionThatSubscribedNeverLendsItsConnection() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master) { $0.pinnedPoolSize = 1 }
        defer { ambassador.stop() }
        for round in 0..<3 {
            let subscriber = try ambassador.client()
            for command in [["MULTI"], ["SUBSCRIBE", "leak:ch"], ["EXEC"]] { try subscriber.send(BlockingClient.encode(command)) }
            #expect(text(try subscriber.readRawReply()) == "+OK\r\n")
            #expect(text(try subscriber.readRawReply()) == "+QUEUED\r\n")
            #expect(text(try subscriber.readRawReply()) == "*1\r\n*3\r\n$9\r\nsubscribe\r\n$7\r\nleak:ch\r\n:1\r\n")
            subscriber.disconnect()
            let next = try ambassador.client(timeout: 1)
            for command in [["MULTI"], ["PING"], ["EXEC"]] { try next.send(BlockingClient.encode(command)) }
            #expect(text(try next.readRawReply()) == "+OK\r\n", "round \(round)")
            #expect(text(try next.readRawReply()) == "+QUEUED\r\n", "round \(round)")
            #expect(text(try next.readRawReply()) == "*1\r\n+PONG\r\n", "round \(round)")
            _ = try cluster.master.client().command(["PUBLISH", "leak:ch", "secret"])
            #expect(try next.command(["PING"]) == .simple("PONG"), "no message reached another session")
        }
    }

    /// A client blocked in BLPOP 0 with a RESET held behind it is not read (the RESET waits for
    /// the BLPOP's reply), so no read sees it hang up. Redis frees such a client when it goes;
    /// the ambassador finds it gone within a sweep interval (5 s), by a reset or a FIN, and closes
    /// its dedicated connection, which unblocks nothing else (found by Scripts/soak.sh).
    @Test func aBlockedClientThatHangsUpIsLetGo() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        func blockedOnMaster() throws -> Int {
            (try admin.command(["CLIENT", "LIST"]).text ?? "").split(separator: "\n").filter { $0.contains("flags=b") }.count
        }
        let hangUps: [(BlockingClient) -> Void] = [{ $0.abort() }, { $0.disconnect() }]
        for (index, hangUp) in hangUps.enumerated() {
            let client = try ambassador.client()
            try client.send(BlockingClient.encode(["BLPOP", "hang:q", "0"]) + BlockingClient.encode(["RESET"]))
            #expect(try eventually(5) { try blockedOnMaster() == 1 }, "case \(index)")
            #expect(ambassador.onLoop { $0.clientCount } == 1)
            hangUp(client)
            #expect(eventually(12) { ambassador.onLoop { $0.clientCount } == 0 }, "case \(index): the session is let go")
            #expect(try eventually(5) { try blockedOnMaster() == 0 }, "case \(index): its dedicated connection is closed")
        }
        #expect(try ambassador.client().command(["RPUSH", "hang:q", "x"]) == .integer(1), "nobody popped it")
    }

    /// A client that leaves mid-pipeline: its replies are read and dropped, and the shared
    /// connection stays in step for everybody else.
    @Test func clientLeavingMidPipelineLeavesSharedConnectionsInSync() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master) { $0.backendConnections = 1 }
        defer { ambassador.stop() }
        _ = try cluster.master.client().command(["SET", "big", String(repeating: "x", count: 100_000)])
        for _ in 0..<10 {
            let leaver = try ambassador.client()
            try leaver.send((0..<500).flatMap { _ in BlockingClient.encode(["GET", "big"]) })
        }
        // The leavers are gone (their sessions closed mid-pipeline).
        #expect(eventually(5) { ambassador.onLoop { $0.clientCount } == 0 })
        let stayer = try ambassador.client()
        for i in 0..<200 {
            #expect(try stayer.command(["ECHO", "x"]) == .bulk("x"))
            #expect(try stayer.command(["INCR", "seq"]) == .integer(Int64(i + 1)))
        }
    }

    /// A subscriber stays subscribed while others publish; when it leaves, its dedicated
    /// connection is closed rather than reused in subscribe mode.
    @Test func subscriberReceivesMessagesAndItsConnectionIsNotReused() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        do {
            let subscriber = try ambassador.client()
            _ = try subscriber.command(["SUBSCRIBE", "news"])
            let publisher = try ambassador.client()
            for i in 0..<20 { #expect(try publisher.command(["PUBLISH", "news", "m\(i)"]) == .integer(1)) }
            for i in 0..<20 {
                #expect(try subscriber.readReply() == .array([.bulk("message"), .bulk("news"), .bulk("m\(i)")]))
            }
        }
        // The subscribers' dedicated connections are closed, not pooled.
        #expect(try eventually(3) {
            try cluster.master.client().command(["PUBSUB", "NUMSUB", "news"]) == .array([.bulk("news"), .integer(0)])
        })
        let client = try ambassador.client()
        #expect(try client.pipeline([["MULTI"], ["GET", "a"], ["EXEC"]]).map(text) == ["+OK\r\n", "+QUEUED\r\n", "*1\r\n$-1\r\n"])
        #expect(try cluster.master.client().command(["PUBSUB", "NUMSUB", "news"]) == .array([.bulk("news"), .integer(0)]))
    }
}
}

func totalConnections(_ server: RedisServer) throws -> Int {
    let stats = try server.info("stats")
    let line = stats.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_connections_received:") }
    return line.flatMap { Int($0.split(separator: ":")[1]) } ?? 0
}
