import RESP
import Testing

@Suite struct RoundTripTests {
    static func randomValue(_ rng: inout SplitMix64, depth: Int) -> RESPValue {
        func blob() -> [UInt8] {
            (0..<Int.random(in: 0...24, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        func line() -> [UInt8] {
            // Simple lines cannot hold CR or LF.
            (0..<Int.random(in: 0...16, using: &rng)).map { _ in UInt8.random(in: 32...126, using: &rng) }
        }
        let leaf = depth >= 4
        switch Int.random(in: 0...(leaf ? 10 : 15), using: &rng) {
        case 0: return .simpleString(line())
        case 1: return .error(line())
        case 2: return .integer(Int64.random(in: Int64.min...Int64.max, using: &rng))
        case 3: return .bulkString(blob())
        case 4: return .bulkString(nil)
        case 5: return .null
        case 6: return .double(Array("\(Double.random(in: -1e6...1e6, using: &rng))".utf8))
        case 7: return .boolean(Bool.random(using: &rng))
        case 8: return .blobError(blob())
        case 9: return .verbatim(Array("txt:".utf8) + blob())
        case 10: return .bigNumber(Array("-\(UInt64.random(in: 0...UInt64.max, using: &rng))".utf8))
        case 11: return .array(nil)
        default:
            let items = (0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) }
            switch Int.random(in: 0...5, using: &rng) {
            case 0: return .array(items)
            case 1: return .map(items + items)  // an even count
            case 2: return .set(items)
            case 3: return .push(items)
            case 4: return .attributed([.simpleString(line()), randomValue(&rng, depth: 4)], randomValue(&rng, depth: depth + 1))
            default: return .array(items)
            }
        }
    }

    @Test func randomNestedValuesEncodeScanAndDecodeBackTheSame() throws {
        var rng = SplitMix64(seed: 2026)
        for round in 0..<300 {
            let values = (0..<Int.random(in: 1...6, using: &rng)).map { _ in Self.randomValue(&rng, depth: 0) }
            let encoded = values.map(\.encoded)
            let stream = encoded.flatMap { $0 }
            let (replies, error) = scanReplies(stream, split: .random(seed: UInt64(round)))
            #expect(error == nil, "round \(round)")
            #expect(replies.map(\.length) == encoded.map(\.count), "round \(round)")
            var offset = 0
            for value in values {
                let decoded = try #require(try RESPValue.decode(Array(stream[offset...])))
                #expect(decoded.0 == value, "round \(round)")
                offset += decoded.1
            }
            #expect(offset == stream.count)
        }
    }

    @Test func decodeOfAPartialValueIsNil() throws {
        let full = RESPValue.array([.bulk("hello"), .integer(3)]).encoded
        for cut in 0..<full.count {
            #expect(try RESPValue.decode(Array(full[..<cut])) == nil, "cut at \(cut)")
        }
    }

    @Test func encoderWritesRESP2AndRESP3Forms() {
        var two = RESPEncoder(protocolVersion: 2)
        two.null(); two.mapHeader(1); two.bulk("a"); two.integer(-7)
        #expect(two.bytes == bytes("$-1\r\n*2\r\n$1\r\na\r\n:-7\r\n"))
        var three = RESPEncoder(protocolVersion: 3)
        three.null(); three.mapHeader(1); three.simpleString("OK")
        #expect(three.bytes == bytes("_\r\n%1\r\n+OK\r\n"))
        three.clear()
        three.error("ERR bad\r\nthing")
        #expect(three.bytes == bytes("-ERR bad  thing\r\n"))
        three.clear()
        three.integer(Int64.min); three.integer(0)
        #expect(three.bytes == bytes(":-9223372036854775808\r\n:0\r\n"))
    }
}
