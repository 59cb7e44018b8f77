/// One complete reply found in a backend's byte stream.
public struct ReplyFrame: Sendable, Equatable {
    /// Bytes the reply occupies, nested elements and attributes included.
    public var length: Int
    /// The type byte of the reply itself (after any leading attribute): `+ - : $ * _ , # ! = ( % ~ >`.
    public var type: UInt8

    public init(length: Int, type: UInt8) {
        self.length = length
        self.type = type
    }

    /// An error reply (`-` simple error or `!` blob error).
    public var isError: Bool { type == UInt8(ascii: "-") || type == UInt8(ascii: "!") }
    /// A RESP3 push frame (`>`), which arrives without a request.
    public var isPush: Bool { type == UInt8(ascii: ">") }
}

/// Finds where each reply ends in a stream of RESP2/RESP3 replies, fed in any split, without
/// copying or decoding payloads: the proxy forwards replies byte for byte.
///
/// Types: simple string `+`, error `-`, integer `:`, bulk `$` (`$-1` null), array `*` (`*-1` null),
/// null `_`, double `,`, boolean `#`, blob error `!`, verbatim `=`, big number `(`, map `%`, set `~`,
/// push `>`, attribute `|` (its pairs precede, and belong to, the next value).
/// Nesting has no limit (a Lua script can return a reply thousands of levels deep): the scanner
/// is iterative, and its stack grows only for aggregates that still owe two or more elements. A
/// run of aggregates that each owe one (`*1\r\n*1\r\n…`) is one counted entry, so memory stays a
/// fraction of the reply's own bytes, which sit in the input buffer until the reply is complete.
public struct ReplyScanner: Sendable {
    private enum State: UInt8 { case type, line, lineEnd, bulkData, bulkTrailer }

    public let limits: RESPLimits
    private var state = State.type
    private var position = 0
    private var currentType: UInt8 = 0
    private var replyType: UInt8 = 0
    private var attributeAtTop = false
    private var number = DecimalNumber()
    private var remaining = 0
    /// Elements still owed by each open aggregate, innermost last. A negative entry `-k` stands
    /// for `k` directly nested aggregates that each owe exactly one element: the next element
    /// completes all of them.
    private var stack: [Int] = []

    public init(limits: RESPLimits = .redis) {
        self.limits = limits
        stack.reserveCapacity(16)
    }

    /// Open aggregates (nesting depth of the reply being scanned), for tests.
    public var depth: Int { stack.reduce(0) { $0 + ($1 < 0 ? -$1 : 1) } }

    /// Bytes of the current (incomplete) reply consumed so far: where to resume in the input.
    public var consumed: Int { position }


    /// Consumes bytes from `bytes[index...]`, advancing `index`; returns a reply as soon as one is
    /// complete, nil when all bytes were consumed inside an incomplete one.
    public mutating func scan(_ bytes: Span<UInt8>, from index: inout Int) throws(ProtocolError) -> ReplyFrame? {
        var i = index
        defer { index = i }
        let end = bytes.count
        while i < end {
            switch state {
            case .type:
                currentType = bytes[i]
                if stack.isEmpty {
                    replyType = currentType
                    attributeAtTop = currentType == UInt8(ascii: "|")
                } else if attributeAtTop && stack.count == 1 && (stack[0] == 1 || stack[0] == -1) {
                    replyType = currentType  // the value an attribute at the top decorates
                }
                guard Self.isType(currentType) else { throw .invalidReplyType(currentType) }
                number = DecimalNumber()
                i += 1
                position += 1
                state = .line

            case .line:
                let start = i
                if Self.hasNumericHeader(currentType) {
                    while i < end && bytes[i] != 13 {
                        number.push(bytes[i])
                        i += 1
                    }
                } else {
                    while i < end && bytes[i] != 13 { i += 1 }
                }
                position += i - start
                if i == end { break }
                i += 1
                position += 1
                state = .lineEnd

            case .lineEnd:
                guard bytes[i] == 10 else { throw .invalidReplyLineEnding }
                i += 1
                position += 1
                if let frame = try endOfLine() { return frame }

            case .bulkData:
                let take = min(remaining, end - i)
                i += take
                position += take
                remaining -= take
                if remaining == 0 {
                    remaining = 2
                    state = .bulkTrailer
                }

            case .bulkTrailer:
                guard bytes[i] == (remaining == 2 ? 13 : 10) else { throw .invalidReplyLineEnding }
                i += 1
                position += 1
                remaining -= 1
                if remaining == 0, let frame = elementDone() { return frame }
            }
        }
        return nil
    }

    /// A header or simple line has ended: decide what follows.
    private mutating func endOfLine() throws(ProtocolError) -> ReplyFrame? {
        switch currentType {
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            guard let length = number.value else { throw .invalidReplyLength }
            if length == -1 && currentType == UInt8(ascii: "$") { return elementDone() }
            guard length >= 0, length <= Int64(Int.max / 2) else { throw .invalidReplyLength }
            remaining = Int(length)
            if remaining == 0 {
                remaining = 2
                state = .bulkTrailer
            } else {
                state = .bulkData
            }
            return nil
        case UInt8(ascii: "*"), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
            guard let count = number.value else { throw .invalidReplyLength }
            if count == -1 && currentType == UInt8(ascii: "*") { return elementDone() }
            guard count >= 0, count <= Int64(Int.max / 4) else { throw .invalidReplyLength }
            var elements = Int(count)
            if currentType == UInt8(ascii: "%") { elements *= 2 }
            // An attribute's pairs and the value after it count as one element of the parent.
            if currentType == UInt8(ascii: "|") { elements = elements * 2 + 1 }
            if elements == 0 { return elementDone() }
            if elements == 1 {
                if let last = stack.last, last < 0 { stack[stack.count - 1] = last - 1 } else { stack.append(-1) }
            } else {
                stack.append(elements)
            }
            state = .type
            return nil
        default:
            return elementDone()
        }
    }

    /// One element is complete: close every aggregate it completes; a reply when none is open.
    private mutating func elementDone() -> ReplyFrame? {
        state = .type
        while let last = stack.last {
            // `last` is 1, or a run of aggregates owing one element each: all complete now.
            if last > 1 {
                stack[stack.count - 1] = last - 1
                return nil
            }
            stack.removeLast()
        }
        let frame = ReplyFrame(length: position, type: replyType)
        position = 0
        return frame
    }

    static func isType(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "$"), UInt8(ascii: "*"),
             UInt8(ascii: "_"), UInt8(ascii: ","), UInt8(ascii: "#"), UInt8(ascii: "!"), UInt8(ascii: "="),
             UInt8(ascii: "("), UInt8(ascii: "%"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
            return true
        default:
            return false
        }
    }

    static func hasNumericHeader(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="), UInt8(ascii: "*"), UInt8(ascii: "%"),
             UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "|"):
            return true
        default:
            return false
        }
    }
}
