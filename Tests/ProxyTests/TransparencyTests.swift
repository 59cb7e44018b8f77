import Config
import Foundation
import Testing
import TestSupport

/// One step of a scripted client session.
enum Step {
    /// The main client sends a command and reads its reply.
    case send([String])
    /// The main client sends a command without waiting (it blocks, or replies later).
    case sendOnly([String])
    /// The main client reads one reply (a pushed message, a blocked command's answer).
    case read
    /// A second client sends a command and reads its reply (WATCH conflicts, PUBLISH, unblocking).
    case other([String])
    /// The main client sends a command whose reply differs by nature (ids, server info): not compared.
    case sendUncompared([String])
}

/// Runs `steps` against `port` (the master, or the ambassador) and returns every reply, raw.
func run(_ steps: [Step], port: UInt16) throws -> [String] {
    let main = try BlockingClient(port: port, timeout: 5)
    let other = try BlockingClient(port: port, timeout: 5)
    var replies: [String] = []
    for step in steps {
        switch step {
        case .send(let command):
            try main.send(BlockingClient.encode(command))
            replies.append(text(try main.readRawReply()))
        case .sendOnly(let command):
            try main.send(BlockingClient.encode(command))
        case .read:
            replies.append(text(try main.readRawReply()))
        case .other(let command):
            try other.send(BlockingClient.encode(command))
            replies.append("other: " + text(try other.readRawReply()))
        case .sendUncompared(let command):
            try main.send(BlockingClient.encode(command))
            _ = try main.readRawReply()
            replies.append("(uncompared \(command[0]))")
        }
    }
    return replies
}

extension Integration {
@Suite(.serialized) struct TransparencyTests {
    static let scripts: [(String, [Step])] = [
        ("strings", [
            .send(["SET", "s:a", "1"]), .send(["GET", "s:a"]), .send(["APPEND", "s:a", "23"]),
            .send(["INCR", "s:a"]), .send(["INCRBYFLOAT", "s:a", "0.5"]), .send(["GETRANGE", "s:a", "0", "1"]),
            .send(["SETRANGE", "s:a", "1", "xx"]), .send(["MSET", "s:b", "2", "s:c", "3"]),
            .send(["MGET", "s:a", "s:b", "s:nope"]), .send(["SETNX", "s:b", "9"]), .send(["GETSET", "s:b", "7"]),
            .send(["STRLEN", "s:a"]), .send(["EXISTS", "s:a", "s:nope"]), .send(["TYPE", "s:a"]),
            .send(["SET", "s:e", "v", "EX", "100"]), .send(["TTL", "s:e"]), .send(["DEL", "s:a", "s:b"]),
            .send(["GET", "s:a"]), .send(["SET", "s:bin", "a\r\nb\u{0}c"]), .send(["GET", "s:bin"]),
        ]),
        ("lists", [
            .send(["RPUSH", "l:a", "1", "2", "3"]), .send(["LPUSH", "l:a", "0"]), .send(["LRANGE", "l:a", "0", "-1"]),
            .send(["LPOP", "l:a"]), .send(["RPOP", "l:a", "2"]), .send(["LINDEX", "l:a", "0"]),
            .send(["LINSERT", "l:a", "BEFORE", "1", "x"]), .send(["LLEN", "l:a"]), .send(["LREM", "l:a", "0", "x"]),
            .send(["RPUSH", "l:b", "a", "b", "c", "b"]), .send(["LPOS", "l:b", "b", "COUNT", "0"]),
            .send(["LTRIM", "l:b", "1", "-1"]), .send(["LMOVE", "l:b", "l:c", "LEFT", "RIGHT"]),
            .send(["LRANGE", "l:c", "0", "-1"]), .send(["LPOP", "l:nope"]),
        ]),
        ("hashes", [
            .send(["HSET", "h:a", "f1", "v1", "f2", "v2"]), .send(["HGET", "h:a", "f1"]),
            .send(["HMGET", "h:a", "f1", "nope"]), .send(["HGETALL", "h:a"]), .send(["HINCRBY", "h:a", "n", "5"]),
            .send(["HEXISTS", "h:a", "f2"]), .send(["HDEL", "h:a", "f2"]), .send(["HKEYS", "h:a"]),
            .send(["HLEN", "h:a"]), .send(["HGETALL", "h:nope"]),
        ]),
        ("sets and sorted sets", [
            .send(["SADD", "t:a", "3", "1", "2"]), .send(["SISMEMBER", "t:a", "2"]), .send(["SCARD", "t:a"]),
            .send(["SMEMBERS", "t:a"]), .send(["SREM", "t:a", "1"]), .send(["SADD", "t:b", "2", "9"]),
            .send(["SINTER", "t:a", "t:b"]), .send(["SUNIONSTORE", "t:c", "t:a", "t:b"]),
            .send(["ZADD", "z:a", "1", "one", "2", "two", "3", "three"]), .send(["ZRANGE", "z:a", "0", "-1", "WITHSCORES"]),
            .send(["ZSCORE", "z:a", "two"]), .send(["ZINCRBY", "z:a", "5", "one"]), .send(["ZRANK", "z:a", "one"]),
            .send(["ZREVRANGE", "z:a", "0", "1"]), .send(["ZRANGEBYSCORE", "z:a", "2", "(6"]),
            .send(["ZREM", "z:a", "two"]), .send(["ZCARD", "z:a"]),
        ]),
        ("streams", [
            .send(["XADD", "x:a", "1-1", "f", "v"]), .send(["XADD", "x:a", "2-1", "f", "w"]), .send(["XLEN", "x:a"]),
            .send(["XRANGE", "x:a", "-", "+"]), .send(["XREVRANGE", "x:a", "+", "-", "COUNT", "1"]),
            .send(["XGROUP", "CREATE", "x:a", "g", "0"]), .send(["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "x:a", ">"]),
            .send(["XACK", "x:a", "g", "1-1"]), .send(["XPENDING", "x:a", "g"]),
            .send(["XREAD", "COUNT", "5", "STREAMS", "x:a", "0"]), .send(["XADD", "x:a", "1-0", "f", "v"]),
        ]),
        ("scripts", [
            .send(["EVAL", "return {1, 'two', {3}}", "0"]),
            .send(["EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])", "1", "e:k", "val"]),
            .send(["SCRIPT", "LOAD", "return 'loaded'"]), .send(["EVALSHA", "2c5d4c4e5d8a0f9bba1e13e8b4c29cfa1b3c2a3f", "0"]),
            .send(["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "e:k"]),
            .send(["EVAL", "return redis.call('NOSUCH')", "0"]), .send(["EVAL", "return 1 +", "0"]),
        ]),
        ("transactions", [
            .send(["MULTI"]), .send(["SET", "m:a", "1"]), .send(["INCR", "m:a"]), .send(["PING"]), .send(["EXEC"]),
            .send(["WATCH", "m:w"]), .other(["SET", "m:w", "changed"]), .send(["MULTI"]), .send(["SET", "m:w", "mine"]),
            .send(["EXEC"]), .send(["GET", "m:w"]),
            .send(["WATCH", "m:w"]), .send(["MULTI"]), .send(["SET", "m:w", "mine"]), .send(["EXEC"]), .send(["GET", "m:w"]),
            .send(["MULTI"]), .send(["SET", "m:b", "1"]), .send(["DISCARD"]), .send(["GET", "m:b"]),
            .send(["EXEC"]), .send(["DISCARD"]), .send(["MULTI"]), .send(["MULTI"]), .send(["NOSUCH"]), .send(["EXEC"]),
            .send(["MULTI"]), .send(["SET", "m:c", "x"]), .send(["LPUSH", "m:c", "y"]), .send(["EXEC"]),
            .send(["WATCH", "m:c"]), .send(["SELECT", "1"]), .send(["RESET"]), .send(["GET", "m:c"]),
            .send(["MULTI"]), .send(["INCR", "m:n"]), .send(["EXEC"]),
        ]),
        ("pub/sub", [
            .send(["SUBSCRIBE", "ps:ch"]), .other(["PUBLISH", "ps:ch", "hello"]), .read,
            .send(["PSUBSCRIBE", "ps:*"]), .other(["PUBLISH", "ps:x", "world"]), .read,
            .send(["PING"]), .send(["UNSUBSCRIBE", "ps:ch"]), .send(["PUNSUBSCRIBE"]),
            .send(["GET", "ps:nope"]),
        ]),
        ("subscribing inside a transaction", [
            .send(["MULTI"]), .send(["SUBSCRIBE", "tx:ch"]), .send(["SET", "tx:k", "1"]), .send(["EXEC"]),
            .send(["PING"]), .other(["PUBLISH", "tx:ch", "m"]), .read, .send(["MULTI"]), .send(["UNSUBSCRIBE"]),
            .send(["PING"]), .send(["MULTI"]), .send(["PSUBSCRIBE", "tx:*"]), .send(["DISCARD"]), .send(["PING"]),
            .send(["MULTI"]), .send(["PSUBSCRIBE", "tx:*"]), .send(["EXEC"]), .other(["PUBLISH", "tx:p", "n"]), .read,
        ]),
        ("blocking pops with timeouts", [
            .send(["BLPOP", "b:empty", "0.1"]), .other(["RPUSH", "b:q", "a"]), .send(["BLPOP", "b:q", "1"]),
            .sendOnly(["BRPOP", "b:later", "5"]), .other(["LPUSH", "b:later", "x"]), .read,
            .send(["BZPOPMIN", "b:z", "0.1"]), .send(["XREAD", "BLOCK", "100", "STREAMS", "b:s", "$"]),
            .send(["BLMOVE", "b:empty", "b:dst", "LEFT", "RIGHT", "0.1"]), .send(["PING"]),
        ]),
        ("select", [
            .send(["SELECT", "1"]), .send(["SET", "db:k", "one"]), .send(["GET", "db:k"]), .send(["SELECT", "0"]),
            .send(["GET", "db:k"]), .send(["SELECT", "16"]), .send(["SELECT", "abc"]), .send(["SELECT", "2"]),
            .send(["MULTI"]), .send(["SET", "db:t", "2"]), .send(["EXEC"]), .send(["GET", "db:t"]),
            .send(["SELECT", "0"]), .send(["GET", "db:t"]), .send(["DBSIZE"]),
        ]),
        ("errors", [
            .send(["SET", "err:s", "v"]), .send(["LPUSH", "err:s", "x"]), .send(["NOSUCHCOMMAND", "a", "b"]),
            .send(["GET"]), .send(["SET", "err:s", "v", "EX", "abc"]), .send(["INCR", "err:s"]),
            .send(["CONFIG", "NOSUCH"]), .send(["ECHO"]), .send(["PING", "a", "b"]),
        ]),
        ("client reply", [
            .sendOnly(["CLIENT", "REPLY", "SKIP"]), .sendOnly(["SET", "cr:a", "1"]), .send(["GET", "cr:a"]),
            .sendOnly(["CLIENT", "REPLY", "OFF"]), .sendOnly(["SET", "cr:b", "2"]), .sendOnly(["GET", "cr:b"]),
            .send(["CLIENT", "REPLY", "ON"]), .send(["GET", "cr:b"]),
        ]),
        ("client tracking with RESP3 pushes", [
            .sendUncompared(["HELLO", "3"]), .send(["CLIENT", "TRACKING", "ON"]), .send(["GET", "tr:k"]),
            .other(["SET", "tr:k", "v"]), .read, .send(["GET", "tr:k"]), .send(["PING"]),
        ]),
        ("connection commands", [
            .send(["PING"]), .send(["PING", "hi"]), .send(["ECHO", "e"]), .send(["CLIENT", "GETNAME"]),
            .send(["CLIENT", "SETNAME", "app-1"]), .send(["CLIENT", "GETNAME"]), .send(["CLIENT", "SETNAME", "a b"]),
            .send(["AUTH", "x"]), .send(["AUTH", "u", "p"]), .send(["AUTH", "default", "p"]),
            .sendUncompared(["HELLO", "3"]), .send(["HSET", "c:h", "f", "v"]), .send(["HGETALL", "c:h"]),
            .send(["GET", "c:nope"]), .send(["HELLO", "4"]), .send(["HELLO", "3", "FOO"]),
            .sendUncompared(["HELLO", "2"]), .send(["HGETALL", "c:h"]), .send(["GET", "c:nope"]),
            .send(["RESET"]), .send(["CLIENT", "GETNAME"]), .send(["QUIT"]),
        ]),
    ]

    /// The same sessions, direct and through the ambassador (read_policy master): same bytes.
    @Test func scriptedSessionsGetByteIdenticalReplies() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        try Self.compareScripts(admin: try cluster.master.client(), direct: cluster.master.port, proxied: ambassador.port)
    }

    /// Runs every script on `direct` (the master) and on `proxied` (an ambassador in front of
    /// it), from an empty database each time (`admin` flushes it), and compares the replies.
    static func compareScripts(admin: BlockingClient, direct: UInt16, proxied: UInt16) throws {
        for (name, steps) in scripts {
            _ = try admin.command(["FLUSHALL"])
            _ = try admin.command(["SCRIPT", "FLUSH"])
            let directReplies = try run(steps, port: direct)
            _ = try admin.command(["FLUSHALL"])
            _ = try admin.command(["SCRIPT", "FLUSH"])
            let proxiedReplies = try run(steps, port: proxied)
            #expect(proxiedReplies.count == directReplies.count, "\(name)")
            for (index, (a, b)) in zip(directReplies, proxiedReplies).enumerated() {
                #expect(a == b, "\(name), reply \(index): direct \(a.debugDescription) ambassador \(b.debugDescription)")
            }
        }
    }

    /// 10,000 mixed commands in one pipeline: same replies, same order.
    @Test func pipelineOfTenThousandMixedCommands() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        var commands: [[String]] = []
        for i in 0..<10_000 {
            let key = "p:\(i % 97)"
            switch i % 10 {
            case 0: commands.append(["SET", key, String(repeating: "v", count: i % 300)])
            case 1: commands.append(["GET", key])
            case 2: commands.append(["INCR", "p:counter:\(i % 7)"])
            case 3: commands.append(["LPUSH", "p:list:\(i % 5)", String(i)])
            case 4: commands.append(["LRANGE", "p:list:\(i % 5)", "0", "3"])
            case 5: commands.append(["HSET", "p:hash", "f\(i % 13)", String(i)])
            case 6: commands.append(["HGET", "p:hash", "f\(i % 13)"])
            case 7: commands.append(["INCR", key])  // WRONGTYPE/not-integer errors mixed in
            case 8: commands.append(["PING"])
            default: commands.append(["ZADD", "p:z", String(i), "m\(i % 50)"])
            }
        }
        let admin = try cluster.master.client()
        _ = try admin.command(["FLUSHALL"])
        let direct = try cluster.master.client(timeout: 30).pipeline(commands)
        _ = try admin.command(["FLUSHALL"])
        let proxied = try ambassador.client(timeout: 30).pipeline(commands)
        #expect(proxied.count == 10_000)
        let mismatches = zip(direct, proxied).enumerated().filter { $0.element.0 != $0.element.1 }
        #expect(mismatches.isEmpty, "first mismatch: \(mismatches.first.map { "\($0.offset): \(text($0.element.0)) vs \(text($0.element.1))" } ?? "")")
    }

    /// One write carrying reads, writes, SELECTs, local commands that read their arguments
    /// (ECHO, CLIENT SETNAME), a SCAN-family read and a transaction: consecutive requests for one
    /// backend move together, and every other command must still find its own bytes.
    @Test func mixedPipelineInOneWriteMatchesDirect() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        _ = try cluster.master.client().pipeline([["SET", "a", "1"], ["HSET", "h", "f", "v"], ["XADD", "s", "1-1", "k", "v"],
                                                   ["SELECT", "1"], ["SET", "b", "2"]])
        try cluster.sync()
        var commands: [[String]] = []
        for i in 0..<60 {
            commands += [["GET", "a"], ["ECHO", "e\(i)"], ["GET", "a"], ["SET", "w\(i)", "x"], ["GET", "a"],
                         ["CLIENT", "SETNAME", "n\(i)"], ["ECHO", "with space \(i)"], ["SELECT", String(1 + i % 2)],
                         ["GET", "b"], ["GET", "a"], ["SET", "w\(i)", "y"], ["ECHO", "db \(i)"], ["SELECT", "0"],
                         ["HSCAN", "h", "0"], ["XREAD", "COUNT", "5", "STREAMS", "s", "0"], ["GET", "a"], ["PING"],
                         ["MULTI"], ["GET", "a"], ["EXEC"], ["GET", "a"], ["CLIENT", "GETNAME"], ["ECHO", "tail \(i)"]]
        }
        let direct = try cluster.master.client(timeout: 30).pipeline(commands)
        let proxied = try ambassador.client(timeout: 30).pipeline(commands)
        #expect(proxied.count == commands.count)
        let mismatches = zip(direct, proxied).enumerated().filter { $0.element.0 != $0.element.1 }
        #expect(mismatches.isEmpty, "first mismatch: \(mismatches.first.map { "\($0.offset) \(commands[$0.offset]): \(text($0.element.0)) vs \(text($0.element.1))" } ?? "")")
        #expect(try commandCalls(cluster.replicas[0], "get") + commandCalls(cluster.replicas[1], "get") > 0)
    }

    /// Under prefer-replica, sessions that read data written before they started see what a
    /// direct client sees, even when consecutive replies come from different servers.
    @Test func readsFromReplicasMatchDirectReplies() throws {
        let cluster = try Cluster(replicas: 2)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .preferReplica)
        defer { ambassador.stop() }
        let admin = try cluster.master.client()
        var prefill: [[String]] = []
        for i in 0..<200 {
            prefill.append(["SET", "r:\(i)", "value-\(i)"])
            prefill.append(["RPUSH", "r:list", String(i)])
        }
        prefill.append(["HSET", "r:hash", "a", "1", "b", "2"])
        _ = try admin.pipeline(prefill)
        try cluster.sync()
        var reads: [[String]] = []
        for i in 0..<3_000 {
            switch i % 6 {
            case 0: reads.append(["GET", "r:\(i % 250)"])
            case 1: reads.append(["LRANGE", "r:list", "0", String(i % 20)])
            case 2: reads.append(["HGETALL", "r:hash"])
            case 3: reads.append(["SET", "w:\(i)", "x"])  // writes in between go to the master
            case 4: reads.append(["EXISTS", "r:\(i % 250)", "nope"])
            default: reads.append(["STRLEN", "r:\(i % 250)"])
            }
        }
        let direct = try cluster.master.client(timeout: 30).pipeline(reads)
        let proxied = try ambassador.client(timeout: 30).pipeline(reads)
        let mismatches = zip(direct, proxied).enumerated().filter { $0.element.0 != $0.element.1 }
        #expect(mismatches.isEmpty, "first mismatch: \(mismatches.first.map { "\($0.offset): \(text($0.element.0)) vs \(text($0.element.1))" } ?? "")")
        // And the replicas really served them.
        #expect(try commandCalls(cluster.replicas[0], "get") + commandCalls(cluster.replicas[1], "get") > 0)
    }
}
}
