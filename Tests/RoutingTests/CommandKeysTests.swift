import Foundation
import RESP
import Routing
import Testing
import TestSupport

/// `CommandInfo.visitKeys` against a real Redis's `COMMAND GETKEYS`: every keyed command of the
/// table with plain arguments, then thousands of random argument lists for each command whose
/// keys move (keywords, numbers that atoi reads, empty strings), where the keys must be the
/// same, in the same order, and a command Redis finds no key in must yield none here.
@Suite struct CommandKeysTests {
    struct Arguments: SlotArguments {
        let values: [[UInt8]]
        var count: Int { values.count }
        func shortArgument(_ index: Int) -> ShortBytes { ShortBytes(bytes: values[index]) }
        func slot(ofArgument index: Int) -> Int { HashSlot.of(values[index]) }
    }

    private func slot(_ command: [String]) -> CommandSlot? {
        let arguments = Arguments(values: command.map { Array($0.utf8) })
        return CommandTable.redis.info(name: arguments.shortArgument(0),
                                       firstArgument: command.count > 1 ? arguments.shortArgument(1) : ShortBytes())?.slot(arguments)
    }

    private func keys(_ command: [String]) -> [String]? {
        let arguments = Arguments(values: command.map { Array($0.utf8) })
        guard let info = CommandTable.redis.info(name: arguments.shortArgument(0),
                                                firstArgument: command.count > 1 ? arguments.shortArgument(1) : ShortBytes()) else {
            return nil
        }
        var found: [String] = []
        info.visitKeys(arguments) { found.append(command[$0]) }
        return found
    }

    /// Redis's answer: the keys, or [] when it finds none ("Invalid arguments …", "The command
    /// has no key arguments"); nil when the command itself is refused (arity, unknown).
    private func redisKeys(_ reply: RESPValue) -> [String]? {
        switch reply {
        case .array(let items?): return items.map { $0.text ?? "" }
        case .error(let bytes):
            let text = String(decoding: bytes, as: UTF8.self)
            if text.contains("Invalid arguments") || text.contains("no key arguments") { return [] }
            return nil
        default: return nil
        }
    }

    private func compare(_ commands: [[String]], on client: BlockingClient) throws -> (compared: Int, mismatches: [String]) {
        var compared = 0
        var mismatches: [String] = []
        for batch in stride(from: 0, to: commands.count, by: 200) {
            let chunk = Array(commands[batch..<min(batch + 200, commands.count)])
            try client.send(chunk.flatMap { BlockingClient.encode(["COMMAND", "GETKEYS"] + $0) })
            for command in chunk {
                let reply = try client.readReply()
                guard let expected = redisKeys(reply) else { continue }
                compared += 1
                let ours = keys(command)
                if ours != expected { mismatches.append("\(command): redis \(expected), ours \(ours.map { "\($0)" } ?? "unknown")") }
            }
        }
        return (compared, mismatches)
    }

    @Test func everyKeyedCommandWithPlainArguments() throws {
        let server = try RedisServer()
        defer { server.stop() }
        var commands: [[String]] = []
        // Channels are not keys (SPUBLISH, SSUBSCRIBE: the table's positions name them).
        for info in CommandTable.redis.infos where info.firstKey > 0 && !info.flags.contains(.movableKeys) && !info.flags.contains(.pubsub) {
            let parts = info.name.split(separator: "|").map(String.init)
            let total = max(abs(info.arity), info.lastKey + 1, 4)
            for extra in 0..<3 {
                commands.append(parts + (parts.count..<(total + extra * 2)).map { "a\($0)" })
            }
        }
        let (compared, mismatches) = try compare(commands, on: try server.client())
        #expect(compared > 300, "compared \(compared)")
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches: \(mismatches.prefix(10))")
    }

    /// Commands whose keys move, with thousands of random argument lists (keywords, numbers
    /// atoi reads, empty strings), queued in MULTI on a node of a real three-master cluster:
    /// Redis checks a command's keys there (its own `*GetKeys` functions, which `COMMAND
    /// GETKEYS` does not use for every command) and answers -CROSSSLOT when they span slots,
    /// -MOVED with the slot when the node does not own it, else QUEUED or another error. The
    /// keys found here must predict that answer every time. Nothing runs: each MULTI is
    /// discarded.
    @Test func movableKeysPredictTheClusterAnswer() throws {
        let cluster = try RedisClusterNodes(masters: 3, replicasPerMaster: 0)
        defer { cluster.stop() }
        let node = cluster.nodes[0]
        let client = try node.client()
        var owned = Set<Int>()
        if case .array(let ranges?) = try client.command(["CLUSTER", "SLOTS"]) {
            for range in ranges {
                guard case .array(let items?) = range, items.count >= 3, case .integer(let start) = items[0],
                      case .integer(let end) = items[1], case .array(let master?) = items[2], master.count >= 2,
                      case .integer(let port) = master[1], port == Int64(node.port) else { continue }
                owned.formUnion(Int(start)...Int(end))
            }
        }
        #expect(owned.count > 5000 && owned.count < 6000)
        let movable = CommandTable.redis.infos.filter { $0.flags.contains(.movableKeys) }
        #expect(movable.count >= 20)
        let vocabulary = ["k1", "k2", "{t}k3", "{t}k4", "k5", "0", "1", "2", "3", "-1", "02", "2abc", " 2", "+2", "99",
                          "STREAMS", "streams", "store", "STOREDIST", "limit", "GET", "by", "KEYS", "auth",
                          "auth2", "copy", "replace", "block", "COUNT", "group", "noack", "", "x", "$", "0-0"]
        var generator = SystemRandomNumberGenerator()
        var commands: [[String]] = [
            ["EVAL", "return 1", "0"], ["EVAL", "s", "2", "{t}a", "{t}b", "c"], ["FCALL", "f", "1", "a"],
            ["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"], ["SORT", "s", "BY", "w_*", "GET", "#", "STORE", "d"],
            ["SORT", "{s}", "STORE", "d1", "STORE", "{s}d2"], ["SORT", "s", "LIMIT", "0", "10", "STORE", "d"],
            ["SORT_RO", "s", "BY", "w_*"], ["MIGRATE", "127.0.0.1", "1", "", "0", "5000", "KEYS", "a", "b"],
            ["MIGRATE", "127.0.0.1", "1", "k", "0", "5000", "COPY", "REPLACE"],
            ["MIGRATE", "127.0.0.1", "1", "", "0", "5000", "AUTH2", "u", "p", "KEYS", "{t}a", "{t}b"],
            ["GEORADIUS", "{g}", "0", "0", "1", "km", "STORE", "{g}d"], ["GEORADIUSBYMEMBER", "g", "m", "1", "km", "STOREDIST", "d"],
            ["XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "{x}a", "{x}b", "0", "0"],
            ["XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "s1", ">"], ["LMPOP", "2", "a", "b", "LEFT"],
            ["BLMPOP", "0", "2", "{l}a", "{l}b", "LEFT"], ["BZMPOP", "1", "1", "z", "MIN"], ["SINTERCARD", "2", "a", "b", "LIMIT", "1"],
            // Keys longer than the 32 bytes a ShortBytes keeps: hashed in full.
            ["EVAL", "s", "2", String(repeating: "k", count: 40) + "1", String(repeating: "k", count: 40) + "2"],
            ["EVAL", "s", "2", String(repeating: "x", count: 50) + "{t}", String(repeating: "y", count: 50) + "{t}"],
        ]
        for info in movable {
            let parts = info.name.split(separator: "|").map(String.init)
            for _ in 0..<300 {
                let length = Int.random(in: 0...9, using: &generator)
                commands.append(parts + (0..<length).map { _ in vocabulary.randomElement(using: &generator)! })
            }
        }
        var compared = 0
        var mismatches: [String] = []
        for batch in stride(from: 0, to: commands.count, by: 200) {
            let chunk = Array(commands[batch..<min(batch + 200, commands.count)])
            try client.send(chunk.flatMap { BlockingClient.encode(["MULTI"]) + BlockingClient.encode($0) + BlockingClient.encode(["DISCARD"]) })
            for command in chunk {
                _ = try client.readReply()
                let reply = try client.readReply()
                _ = try client.readReply()
                let text = reply.text ?? ""
                // Refused before the keys are looked at (arity, unknown): nothing to compare.
                if text.contains("wrong number of arguments") || text.hasPrefix("ERR unknown") { continue }
                compared += 1
                let expected: String
                switch slot(command) ?? .none {
                case .none: expected = "not redirected"
                case .slot(let slot) where owned.contains(slot): expected = "not redirected"
                case .slot(let slot): expected = "MOVED \(slot)"
                case .crossSlot: expected = "CROSSSLOT"
                }
                let got = text.hasPrefix("CROSSSLOT") ? "CROSSSLOT"
                    : text.hasPrefix("MOVED") ? "MOVED " + (text.split(separator: " ").dropFirst().first.map(String.init) ?? "")
                    : "not redirected"
                if got != expected { mismatches.append("\(command): redis \(text), ours \(expected) (keys \(keys(command) ?? []))") }
            }
        }
        #expect(compared > 5000, "compared \(compared)")
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches: \(mismatches.prefix(12))")
    }
}
