/// A decoded RESP2/RESP3 value: for the ambassador's own control traffic (health checks, HELLO,
/// `INFO` replies) and for tests. The per-command path never decodes; it forwards bytes.
public indirect enum RESPValue: Hashable, Sendable {
    case simpleString([UInt8])
    case error([UInt8])
    case integer(Int64)
    /// `$<len>`; nil is the RESP2 null bulk `$-1`.
    case bulkString([UInt8]?)
    /// `*<count>`; nil is the RESP2 null array `*-1`.
    case array([RESPValue]?)
    /// RESP3 `_`.
    case null
    /// RESP3 `,`: kept as its text so encoding gives back the same bytes (`inf`, `1.5e3` …).
    case double([UInt8])
    case boolean(Bool)
    case blobError([UInt8])
    /// RESP3 `=`: the payload including its three-letter format and colon (`txt:…`).
    case verbatim([UInt8])
    case bigNumber([UInt8])
    /// RESP3 `%`: keys and values alternate.
    case map([RESPValue])
    case set([RESPValue])
    case push([RESPValue])
    /// RESP3 `|`: attribute pairs (keys and values alternating) and the value they decorate.
    case attributed([RESPValue], RESPValue)

    public static func simple(_ text: String) -> RESPValue { .simpleString(Array(text.utf8)) }
    public static func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }
    public static func error(_ text: String) -> RESPValue { .error(Array(text.utf8)) }

    /// The bytes of a simple string, bulk string, verbatim string or error, as text.
    public var text: String? {
        switch self {
        case .simpleString(let b), .error(let b), .blobError(let b), .bigNumber(let b), .double(let b):
            return String(decoding: b, as: UTF8.self)
        case .bulkString(let b?): return String(decoding: b, as: UTF8.self)
        case .verbatim(let b): return String(decoding: b.dropFirst(min(4, b.count)), as: UTF8.self)
        default: return nil
        }
    }

    // MARK: encoding

    /// Appends the RESP encoding of this value to `out`.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .simpleString(let b): out.appendLine(UInt8(ascii: "+"), b)
        case .error(let b): out.appendLine(UInt8(ascii: "-"), b)
        case .integer(let n): out.appendLine(UInt8(ascii: ":"), n)
        case .bulkString(nil): out.append(contentsOf: "$-1\r\n".utf8)
        case .bulkString(let b?): out.appendBlob(UInt8(ascii: "$"), b)
        case .array(nil): out.append(contentsOf: "*-1\r\n".utf8)
        case .array(let items?): out.appendAggregate(UInt8(ascii: "*"), items.count, items)
        case .null: out.append(contentsOf: "_\r\n".utf8)
        case .double(let b): out.appendLine(UInt8(ascii: ","), b)
        case .boolean(let v): out.append(contentsOf: (v ? "#t\r\n" : "#f\r\n").utf8)
        case .blobError(let b): out.appendBlob(UInt8(ascii: "!"), b)
        case .verbatim(let b): out.appendBlob(UInt8(ascii: "="), b)
        case .bigNumber(let b): out.appendLine(UInt8(ascii: "("), b)
        case .map(let items): out.appendAggregate(UInt8(ascii: "%"), items.count / 2, items)
        case .set(let items): out.appendAggregate(UInt8(ascii: "~"), items.count, items)
        case .push(let items): out.appendAggregate(UInt8(ascii: ">"), items.count, items)
        case .attributed(let pairs, let value):
            out.appendAggregate(UInt8(ascii: "|"), pairs.count / 2, pairs)
            value.encode(into: &out)
        }
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    // MARK: decoding

    /// Decodes the first complete value in `bytes`; nil when they hold only part of one.
    /// Returns the value and the bytes it used.
    public static func decode(_ bytes: [UInt8], from offset: Int = 0,
                              limits: RESPLimits = .redis) throws(ProtocolError) -> (RESPValue, Int)? {
        // Frame first with the scanner (which validates), then build the value.
        guard let length = try frameLength(bytes, from: offset, limits: limits) else { return nil }
        var reader = Reader(bytes: bytes, position: offset)
        return (try reader.value(), length)
    }

    /// The length of the first complete reply in `bytes`, without decoding it (any depth); nil
    /// when they hold only part of one.
    public static func frameLength(_ bytes: [UInt8], from offset: Int = 0,
                                   limits: RESPLimits = .redis) throws(ProtocolError) -> Int? {
        var scanner = ReplyScanner(limits: limits)
        var index = offset
        return try scanner.scan(bytes.span, from: &index)?.length
    }

    /// Deepest value `decode` builds (it recurses; framing alone has no limit).
    public static let maxDecodeDepth = 1_000

    private struct Reader {
        let bytes: [UInt8]
        var position: Int
        var depth = 0

        mutating func line() -> ArraySlice<UInt8> {
            let start = position
            while bytes[position] != 13 { position += 1 }
            defer { position += 2 }
            return bytes[start..<position]
        }

        mutating func number() throws(ProtocolError) -> Int64 {
            var n = DecimalNumber()
            for b in line() { n.push(b) }
            guard let v = n.value else { throw .invalidReplyLength }
            return v
        }

        mutating func blob() throws(ProtocolError) -> [UInt8]? {
            let length = try number()
            if length < 0 { return nil }
            defer { position += Int(length) + 2 }
            return Array(bytes[position..<position + Int(length)])
        }

        mutating func items(_ count: Int64) throws(ProtocolError) -> [RESPValue] {
            var items: [RESPValue] = []
            for _ in 0..<max(count, 0) { items.append(try value()) }
            return items
        }

        mutating func value() throws(ProtocolError) -> RESPValue {
            depth += 1
            defer { depth -= 1 }
            guard depth <= RESPValue.maxDecodeDepth else { throw .replyTooDeep }
            let type = bytes[position]
            position += 1
            switch type {
            case UInt8(ascii: "+"): return .simpleString(Array(line()))
            case UInt8(ascii: "-"): return .error(Array(line()))
            case UInt8(ascii: ":"): return .integer(try number())
            case UInt8(ascii: "$"): return .bulkString(try blob())
            case UInt8(ascii: "*"):
                let n = try number()
                return n < 0 ? .array(nil) : .array(try items(n))
            case UInt8(ascii: "_"): _ = line(); return .null
            case UInt8(ascii: ","): return .double(Array(line()))
            case UInt8(ascii: "#"): return .boolean(line().first == UInt8(ascii: "t"))
            case UInt8(ascii: "!"): return .blobError(try blob() ?? [])
            case UInt8(ascii: "="): return .verbatim(try blob() ?? [])
            case UInt8(ascii: "("): return .bigNumber(Array(line()))
            case UInt8(ascii: "%"): return .map(try items(try number() * 2))
            case UInt8(ascii: "~"): return .set(try items(try number()))
            case UInt8(ascii: ">"): return .push(try items(try number()))
            case UInt8(ascii: "|"):
                let pairs = try items(try number() * 2)
                return .attributed(pairs, try value())
            default: throw .invalidReplyType(type)
            }
        }
    }
}

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendLine(_ type: UInt8, _ body: some Collection<UInt8>) {
        append(type)
        append(contentsOf: body)
        append(13); append(10)
    }

    @inline(__always)
    mutating func appendLine(_ type: UInt8, _ number: Int64) {
        append(type)
        appendDecimal(number)
        append(13); append(10)
    }

    mutating func appendBlob(_ type: UInt8, _ body: some Collection<UInt8>) {
        appendLine(type, Int64(body.count))
        append(contentsOf: body)
        append(13); append(10)
    }

    mutating func appendAggregate(_ type: UInt8, _ count: Int, _ items: [RESPValue]) {
        appendLine(type, Int64(count))
        for item in items { item.encode(into: &self) }
    }

    /// Decimal digits of `number`, written in place (no String, no allocation past capacity).
    mutating func appendDecimal(_ number: Int64) {
        if number < 0 { append(UInt8(ascii: "-")) }
        var magnitude = number.magnitude
        var digits = 1
        var probe = magnitude
        while probe >= 10 { probe /= 10; digits += 1 }
        append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var k = count - 1
        repeat {
            self[k] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
            k -= 1
        } while magnitude > 0
    }
}

extension RESPValue {
    /// The elements of an array, set or push.
    public var list: [RESPValue]? {
        switch self {
        case .array(let items?), .set(let items), .push(let items): return items
        default: return nil
        }
    }

    /// A field/value list: a RESP2 flat array or a RESP3 map, keyed by the fields' text.
    public var fields: [String: RESPValue]? {
        let items: [RESPValue]
        switch self {
        case .array(let list?), .map(let list): items = list
        default: return nil
        }
        var result: [String: RESPValue] = [:]
        var i = 0
        while i + 1 < items.count {
            if let key = items[i].text { result[key] = items[i + 1] }
            i += 2
        }
        return result
    }
}
