import Foundation
@testable import RESP
import Routing
import Testing
import TestSupport

/// `HashSlot` against the published CRC16 check value and against a real Redis's
/// `CLUSTER KEYSLOT` (a `--cluster-enabled` server: the command needs no slot assigned).
@Suite struct HashSlotTests {
    @Test func checkValueAndHashTags() {
        // CRC16-XMODEM("123456789") = 0x31C3, the standard check value (Redis's crc16.c cites it).
        #expect(HashSlot.of("123456789") == 0x31C3)
        #expect(HashSlot.of("{user:1}:name") == HashSlot.of("user:1"))
        #expect(HashSlot.of("{user:1}:name") == HashSlot.of("{user:1}:mail"))
        #expect(HashSlot.of("{}x") != HashSlot.of(""), "an empty tag: the whole key is hashed")
        #expect(HashSlot.of("x{a}{b}") == HashSlot.of("a"), "the first tag")
        #expect(HashSlot.of("x{{a}}") == HashSlot.of("{a"), "from the first { to the first } after it")
        #expect(HashSlot.of("") == 0)
        #expect((0..<1000).allSatisfy { HashSlot.of("key:\($0)") < HashSlot.count })
    }

    /// The reference: Redis's slot rule on CRC16-XMODEM computed bit by bit (polynomial 0x1021),
    /// sharing nothing with the tables the product uses.
    static func bitwise(_ key: [UInt8]) -> Int {
        var start = 0, end = key.count
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            (start, end) = (open + 1, close)
        }
        var crc: UInt16 = 0
        for byte in key[start..<end] {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return Int(crc) & (HashSlot.count - 1)
    }

    /// Every entry of the slicing tables is the bit-by-bit CRC of its byte followed by `k` zero
    /// bytes (the tables are a literal in the source: a typo would show here, whatever keys
    /// the other tests happen to draw).
    @Test func tablesFollowFromThePolynomial() {
        #expect(HashSlot.tables.count == 8 * 256)
        for k in 0..<8 {
            for value in 0..<256 {
                var crc: UInt16 = 0
                for byte in [UInt8(value)] + Array(repeating: 0, count: k) {
                    crc ^= UInt16(byte) << 8
                    for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
                }
                #expect(HashSlot.tables[k * 256 + value] == crc, "T\(k)[\(value)]")
            }
        }
    }

    /// The word-at-a-time hash agrees with the bit-at-a-time reference for every length up to
    /// 70 and a `{` or `}` in every position (each eight-byte word, the tail, tags across words).
    @Test func wordStepsAgreeWithTheBytewiseReference() {
        #expect(Self.bitwise(Array("123456789".utf8)) == 0x31C3)
        var random = SystemRandomNumberGenerator()
        for length in 0...70 {
            for _ in 0..<40 {
                var key = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
                    .map { $0 == 0x7B || $0 == 0x7D ? 0x41 : $0 }
                if length > 0 && Bool.random(using: &random) { key[Int.random(in: 0..<length, using: &random)] = 0x7B }
                if length > 0 && Bool.random(using: &random) { key[Int.random(in: 0..<length, using: &random)] = 0x7D }
                #expect(HashSlot.of(key) == Self.bitwise(key), "\(key)")
            }
        }
    }

    /// 3,000 keys — random bytes, braces in every position, empty and unclosed tags, binary — get
    /// the slot Redis gives them.
    @Test func matchesRedisClusterKeyslot() throws {
        let server = try RedisServer(arguments: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(UUID().uuidString.prefix(8)).conf"])
        defer { server.stop() }
        let client = try server.client()
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("{}ab:1\u{0}\r\n".utf8) + [0xff, 0x7b, 0x7d]
        var keys: [[UInt8]] = [Array("{".utf8), Array("}".utf8), Array("{}".utf8), Array("}{".utf8), Array("{a".utf8),
                                Array("a}".utf8), Array("{}{a}".utf8), Array("{{}}".utf8), []]
        for _ in 0..<3000 - keys.count {
            let length = Int.random(in: 0...24, using: &generator)
            keys.append((0..<length).map { _ in
                Bool.random(using: &generator) ? alphabet.randomElement(using: &generator)! : UInt8.random(in: 0...255, using: &generator)
            })
        }
        for batch in stride(from: 0, to: keys.count, by: 500) {
            let chunk = keys[batch..<min(batch + 500, keys.count)]
            var request: [UInt8] = []
            for key in chunk {
                request += Array("*3\r\n$7\r\nCLUSTER\r\n$7\r\nKEYSLOT\r\n$\(key.count)\r\n".utf8) + key + Array("\r\n".utf8)
            }
            try client.send(request)
            for key in chunk {
                let reply = try client.readReply()
                #expect(reply == .integer(Int64(HashSlot.of(key))), "\(key)")
            }
        }
    }
}

/// `SlotMap`: ranges to shards, slots no shard serves, a slot reassigned by MOVED.
@Suite struct SlotMapTests {
    @Test func rangesUnservedSlotsAndMoves() {
        var map = SlotMap(ranges: [[0...5460, 10923...10923], [5461...10922], [10924...16383]])
        #expect(map.shard(of: 0) == 0 && map.shard(of: 5460) == 0 && map.shard(of: 10923) == 0)
        #expect(map.shard(of: 5461) == 1 && map.shard(of: 10922) == 1)
        #expect(map.shard(of: 10924) == 2 && map.shard(of: 16383) == 2)
        #expect(map.unservedCount == 0)
        map.assign(16383, to: 1)
        #expect(map.shard(of: 16383) == 1)
        let partial = SlotMap(ranges: [[0...99], [], [16000...16383]])
        #expect(partial.shard(of: 100) == nil && partial.shard(of: 15999) == nil)
        #expect(partial.unservedCount == HashSlot.count - 100 - 384)
        #expect(SlotMap().unservedCount == HashSlot.count)
    }

    /// The runs a lookup scans say what the table says, for layouts of few runs and of many
    /// (random reshardings, slot by slot and in ranges), and across the switch between them.
    @Test func runsAndTableAgree() {
        var random = SystemRandomNumberGenerator()
        for layout in 0..<40 {
            let shards = Int.random(in: 1...6, using: &random)
            var owner = [Int?](repeating: nil, count: HashSlot.count)
            var ranges = [[ClosedRange<Int>]](repeating: [], count: shards)
            var slot = Int.random(in: 0...2, using: &random) == 0 ? Int.random(in: 0..<100, using: &random) : 0
            while slot < HashSlot.count {
                let end = min(HashSlot.count - 1, slot + Int.random(in: 0...(layout % 2 == 0 ? 6000 : 900), using: &random))
                if Int.random(in: 0..<10, using: &random) > 0 {  // a gap now and then: unserved slots
                    let shard = Int.random(in: 0..<shards, using: &random)
                    ranges[shard].append(slot...end)
                    for s in slot...end { owner[s] = shard }
                }
                slot = end + 1
            }
            var map = SlotMap(ranges: ranges)
            for _ in 0..<Int.random(in: 0...60, using: &random) {  // MOVED, one slot at a time
                let moved = Int.random(in: 0..<HashSlot.count, using: &random)
                let shard = Int.random(in: 0..<shards, using: &random)
                map.assign(moved, to: shard)
                owner[moved] = shard
            }
            for s in 0..<HashSlot.count where map.shard(of: s) != owner[s] {
                Issue.record("layout \(layout) (\(map.runCount) runs): slot \(s) gave \(String(describing: map.shard(of: s))), not \(String(describing: owner[s]))")
                break
            }
        }
        #expect(SlotMap(ranges: [[0...5460], [5461...10922], [10923...16383]]).runCount == 3)
        #expect(SlotMap(ranges: [Array(stride(from: 0, to: 16384, by: 2).map { $0...$0 }), []]).runCount == 0)
    }

    @Test func commandSlotOfKeys() {
        struct Arguments: SlotArguments {
            let values: [String]
            var count: Int { values.count }
            func shortArgument(_ index: Int) -> ShortBytes { ShortBytes(values[index]) }
            func slot(ofArgument index: Int) -> Int { HashSlot.of(values[index]) }
        }
        func slot(_ command: [String]) -> CommandSlot? {
            let arguments = Arguments(values: command)
            return CommandTable.redis.info(name: ShortBytes(command[0]), firstArgument: command.count > 1 ? ShortBytes(command[1]) : ShortBytes())?
                .slot(arguments)
        }
        #expect(slot(["PING"]) == CommandSlot.none)
        #expect(slot(["GET", "k"]) == .slot(HashSlot.of("k")))
        #expect(slot(["MGET", "{u}a", "{u}b"]) == .slot(HashSlot.of("u")))
        #expect(slot(["MGET", "a", "b"]) == .crossSlot, "a and b hash to different slots")
        #expect(slot(["MSET", "{u}a", "1", "{u}b", "2"]) == .slot(HashSlot.of("u")), "values are not keys")
        #expect(slot(["EVAL", "return 1", "0"]) == CommandSlot.none)
    }
}
