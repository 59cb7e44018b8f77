@testable import Control
import Config
import Foundation
import Testing

/// The admin endpoint's JSON (written without Foundation) reads back, through Foundation's
/// parser, as exactly the values encoded: text with quotes, control characters and non-ASCII,
/// numbers, null, nesting.
@Suite struct JSONTests {
    struct Sample: Encodable {
        var text = "a \"quoted\" \\ back\nslash\t\u{01} é 😀"
        var number = -42
        var fraction = 0.25
        var flag = true
        var missing: String? = nil
        var list = [1, 2, 3]
        var nested = ["b": ["x"], "a": []]
        var redacted: [String: RedactedValue] = ["password": .string("<redacted>"), "weights": .object(["r": .int(2)])]

        func encode(to encoder: any Encoder) throws {
            enum Key: String, CodingKey { case text, number, fraction, flag, missing, list, nested, redacted }
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(text, forKey: .text)
            try container.encode(number, forKey: .number)
            try container.encode(fraction, forKey: .fraction)
            try container.encode(flag, forKey: .flag)
            try container.encode(missing, forKey: .missing)
            try container.encode(list, forKey: .list)
            try container.encode(nested, forKey: .nested)
            try container.encode(redacted, forKey: .redacted)
        }
    }

    @Test func encodesWhatFoundationReadsBack() throws {
        let sample = Sample()
        let bytes = try JSON.encode(sample)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(parsed["text"] as? String == sample.text)
        #expect(parsed["number"] as? Int == -42 && parsed["fraction"] as? Double == 0.25 && parsed["flag"] as? Bool == true)
        #expect(parsed["missing"] is NSNull)
        #expect(parsed["list"] as? [Int] == [1, 2, 3])
        #expect((parsed["nested"] as? [String: [String]])?["b"] == ["x"])
        let redacted = parsed["redacted"] as? [String: Any]
        #expect(redacted?["password"] as? String == "<redacted>" && (redacted?["weights"] as? [String: Int])?["r"] == 2)
        // Keys sorted, as /config always printed them.
        let text = String(decoding: bytes, as: UTF8.self)
        let order = ["flag", "fraction", "list", "missing", "nested", "number", "redacted", "text"].map { text.range(of: "\"\($0)\"")!.lowerBound }
        #expect(order == order.sorted())
    }
}
