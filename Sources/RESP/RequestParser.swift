/// One complete request found in the byte stream.
public struct RequestFrame: Sendable, Equatable {
    /// Bytes the request occupies in the stream, from its first byte through its last CRLF.
    /// Forwarding exactly these bytes gives Redis the same command.
    public var length: Int
    /// Number of arguments including the command name. 0 for frames Redis ignores without a
    /// reply (`*0`, `*-1`, an empty or blank inline line): drop their bytes and move on.
    public var argumentCount: Int
    /// Argument 0, lower-cased (the command name).
    public var name: ShortBytes
    /// Argument 1, lower-cased (the subcommand or first key); empty if there is none.
    public var firstArgument: ShortBytes
    /// An inline command (`PING\r\n`): its arguments are unescaped into `RequestParser.inlineBytes`.
    public var isInline: Bool
    /// With `RequestParser.hashesFirstArgument`: argument 1's Redis Cluster hash slot, all its
    /// bytes (case kept), when the frame was read in one piece; -1 otherwise.
    public var firstArgumentSlot: Int32 = -1

    public init(length: Int, argumentCount: Int, name: ShortBytes, firstArgument: ShortBytes, isInline: Bool) {
        self.length = length
        self.argumentCount = argumentCount
        self.name = name
        self.firstArgument = firstArgument
        self.isInline = isInline
    }
}

/// Where one argument's bytes are: for a multibulk request, an offset from the frame's first byte;
/// for an inline request, an offset into `RequestParser.inlineBytes`.
public struct ArgumentRange: Sendable, Equatable {
    public var offset: Int
    public var count: Int
}

/// A resumable parser for client requests, multibulk (`*N\r\n$len\r\n…`) and inline, that frames
/// them exactly as Redis's `processMultibulkBuffer`/`processInlineBuffer` do, so forwarding each
/// frame's bytes untouched gives Redis the same commands.
///
/// Feed it bytes in order, in any split; it keeps its place between calls and never copies a
/// payload (only the first 32 bytes of arguments 0 and 1, lower-cased, and inline lines, which are
/// bounded by `maxInlineSize`). After a frame, `arguments` lists where each argument lies.
/// Its buffers are reused: in steady state it allocates nothing.
public struct RequestParser: Sendable {
    private enum State: UInt8 {
        case frameStart, countLine, countLineEnd, bulkLine, bulkLineEnd, bulkData, bulkTrailer, inlineLine
        /// An inline line with a NUL byte before its newline: Redis finds the end of an inline
        /// line with `strchr`, which stops at the NUL, so the line never ends. Redis waits for
        /// more bytes until the query buffer passes the inline limit, then answers "too big inline
        /// request" and closes. So does the ambassador (had it forwarded the line at its '\n',
        /// Redis would wait the same way on the shared connection, with everyone's requests after
        /// it, and close it at 64 KiB).
        case inlineNeverEnds
    }

    public let limits: RESPLimits
    /// The argument ranges of the frame most recently returned.
    public var arguments: ArraySlice<ArgumentRange> { ranges[..<rangeCount] }
    /// Storage for `arguments`, reused: entries past `rangeCount` are stale and get overwritten
    /// (cheaper per request than emptying and refilling an array).
    private var ranges: [ArgumentRange] = []
    private var rangeCount = 0
    /// Unescaped inline arguments of the frame most recently returned (when it was inline).
    public private(set) var inlineBytes: [UInt8] = []

    /// Redis Cluster routing: hash argument 1 while it is in hand (see
    /// `RequestFrame.firstArgumentSlot`), which spares the router a second pass over the input.
    public var hashesFirstArgument = false
    private var state = State.frameStart
    /// Bytes of the current frame consumed so far.
    public private(set) var position = 0
    private var number = DecimalNumber()
    private var lineLength = 0
    private var bulkFirstByte: UInt8 = 0
    private var haveFirstByte = false
    private var argumentsExpected = 0
    private var remaining = 0
    private var frame = RequestFrame(length: 0, argumentCount: 0, name: ShortBytes(),
                                     firstArgument: ShortBytes(), isInline: false)
    private var line: [UInt8] = []

    /// Nothing is reserved up front: an idle client costs no argument table. The table grows on
    /// the first requests and keeps its capacity from then on.
    public init(limits: RESPLimits = .redis) {
        self.limits = limits
    }

    /// True between frames (nothing of a next frame consumed yet).
    public var isAtFrameStart: Bool { state == .frameStart }

    /// Capacity of the reused buffers (argument table, inline bytes), for tests that check they
    /// stop growing once the largest frame has been seen.
    public var bufferCapacity: Int { ranges.capacity + inlineBytes.capacity }

    /// Consumes bytes from `bytes[index...]`, advancing `index`. Returns the frame as soon as one
    /// is complete (`index` then points just past it), or nil when every byte was consumed and the
    /// frame is not complete yet. Throws on input Redis would reject; the stream is then unusable.
    public mutating func parse(_ bytes: Span<UInt8>, from index: inout Int) throws(ProtocolError) -> RequestFrame? {
        var i = index
        defer { index = i }
        let end = bytes.count
        while i < end {
            switch state {
            case .frameStart:
                if bytes[i] == UInt8(ascii: "*"), let frame = wholeFrame(bytes, at: &i) { return frame }
                beginFrame()
                if bytes[i] == UInt8(ascii: "*") {
                    state = .countLine
                    i += 1
                    position = 1
                } else {
                    state = .inlineLine
                }

            case .countLine:
                // Redis finds the '\r', then reads the count between '*' and it.
                guard try scanHeaderLine(bytes, &i, tooLong: .tooBigMultibulkCountString) else { break }
                state = .countLineEnd

            case .countLineEnd:
                // The byte after '\r' is skipped unchecked, as Redis does.
                i += 1
                position += 1
                guard let count = number.value, count <= Int64(limits.maxMultibulkCount) else {
                    throw .invalidMultibulkLength
                }
                if count <= 0 { return finishFrame() }
                argumentsExpected = Int(count)
                startBulk()

            case .bulkLine:
                // As for the count line, Redis first finds the '\r', then checks for '$'.
                if !haveFirstByte {
                    haveFirstByte = true
                    bulkFirstByte = bytes[i]
                    if bulkFirstByte != 13 {
                        i += 1
                        lineLength += 1
                        position += 1
                    }
                }
                guard try scanHeaderLine(bytes, &i, tooLong: .tooBigBulkCountString) else { break }
                state = .bulkLineEnd

            case .bulkLineEnd:
                i += 1
                position += 1
                guard bulkFirstByte == UInt8(ascii: "$") else { throw .expectedDollar(got: bulkFirstByte) }
                guard let length = number.value, length >= 0, length <= Int64(limits.maxBulkLength) else {
                    throw .invalidBulkLength
                }
                remaining = Int(length)
                record(ArgumentRange(offset: position, count: remaining))
                state = .bulkData

            case .bulkData:
                let take = min(remaining, end - i)
                let argument = rangeCount - 1
                if argument < 2 {
                    // Keep the first 32 bytes of the name and first argument; past that, the length.
                    let already = ranges[argument].count - remaining
                    let capture = min(take, max(0, ShortBytes.capacity - already))
                    for k in 0..<capture {
                        if argument == 0 { frame.name.append(bytes[i + k]) } else { frame.firstArgument.append(bytes[i + k]) }
                    }
                    if argument == 0 { frame.name.count += take - capture } else { frame.firstArgument.count += take - capture }
                }
                i += take
                position += take
                remaining -= take
                if remaining == 0 {
                    remaining = 2
                    state = .bulkTrailer
                }

            case .bulkTrailer:
                // Redis skips the two bytes after the payload without looking at them.
                let take = min(remaining, end - i)
                i += take
                position += take
                remaining -= take
                if remaining == 0 {
                    if rangeCount == argumentsExpected { return finishFrame() }
                    startBulk()
                }

            case .inlineLine:
                let start = i
                while i < end && bytes[i] != 10 && bytes[i] != 0 { i += 1 }
                if line.count + (i - start) > limits.maxInlineSize { throw .tooBigInlineRequest }
                for k in start..<i { line.append(bytes[k]) }
                position += i - start
                if i == end { break }
                if bytes[i] == 0 {
                    line.removeAll(keepingCapacity: true)
                    state = .inlineNeverEnds
                    continue
                }
                i += 1
                position += 1
                return try finishInline()

            case .inlineNeverEnds:
                position += end - i
                i = end
                if position > limits.maxInlineSize { throw .tooBigInlineRequest }
            }
        }
        return nil
    }

    /// The fast path: a multibulk frame that lies whole in `bytes` from `start`, with plain
    /// headers (digits only, no sign or leading zero, within the limits), read in one pass. For
    /// anything else it returns nil and leaves `start` alone, and the state machine above reads
    /// the frame from its first byte (so errors and split frames behave exactly as there).
    @inline(__always)
    private mutating func wholeFrame(_ bytes: Span<UInt8>, at start: inout Int) -> RequestFrame? {
        let end = bytes.count
        var i = start + 1
        guard let count = Self.header(bytes, &i, end), count > 0, count <= limits.maxMultibulkCount else { return nil }
        rangeCount = 0
        var name = ShortBytes(), firstArgument = ShortBytes()
        var firstSlot: Int32 = -1
        for argument in 0..<count {
            guard i < end, bytes[i] == UInt8(ascii: "$") else { return nil }
            i += 1
            guard let length = Self.header(bytes, &i, end), length <= limits.maxBulkLength,
                  end - i >= length + 2 else { return nil }
            record(ArgumentRange(offset: i - start, count: length))
            if argument == 0 {
                name = ShortBytes(bytes, from: i, count: length)
            } else if argument == 1 {
                firstArgument = ShortBytes(bytes, from: i, count: length)
                if hashesFirstArgument { firstSlot = Int32(HashSlot.of(bytes.extracting(i..<i + length))) }
            }
            i += length + 2  // Redis skips the two bytes after the payload unchecked
        }
        defer { start = i }
        var frame = RequestFrame(length: i - start, argumentCount: count, name: name, firstArgument: firstArgument,
                                 isInline: false)
        frame.firstArgumentSlot = firstSlot
        return frame
    }

    /// Reads 1 to 18 digits (no leading zero unless alone) and the '\r' after them, then skips the
    /// byte after that unchecked, as Redis does. nil if the header is not that or is not all here.
    @inline(__always)
    private static func header(_ bytes: Span<UInt8>, _ i: inout Int, _ end: Int) -> Int? {
        var value = 0
        let first = i
        while i < end {
            let digit = bytes[i] &- UInt8(ascii: "0")
            if digit >= 10 { break }
            value = value &* 10 &+ Int(digit)
            i += 1
        }
        let digits = i - first
        guard digits > 0, digits <= 18, digits == 1 || bytes[first] != UInt8(ascii: "0"),
              end - i >= 2, bytes[i] == 13 else { return nil }
        i += 2
        return value
    }

    /// Reads a `*`/`$` header's digits up to its '\r'; true once the '\r' is consumed. A header
    /// longer than `maxInlineSize` without one is `tooLong`.
    private mutating func scanHeaderLine(_ bytes: Span<UInt8>, _ i: inout Int,
                                         tooLong: ProtocolError) throws(ProtocolError) -> Bool {
        let start = i
        let end = bytes.count
        while i < end && bytes[i] != 13 {
            number.push(bytes[i])
            i += 1
        }
        lineLength += i - start
        position += i - start
        if i == end {
            if lineLength > limits.maxInlineSize { throw tooLong }
            return false
        }
        i += 1
        position += 1
        return true
    }

    @inline(__always)
    private mutating func record(_ range: ArgumentRange) {
        if rangeCount < ranges.count {
            ranges[rangeCount] = range
        } else {
            ranges.append(range)
        }
        rangeCount += 1
    }

    private mutating func beginFrame() {
        position = 0
        number = DecimalNumber()
        lineLength = 0
        rangeCount = 0
        frame = RequestFrame(length: 0, argumentCount: 0, name: ShortBytes(), firstArgument: ShortBytes(), isInline: false)
    }

    private mutating func startBulk() {
        number = DecimalNumber()
        lineLength = 0
        haveFirstByte = false
        state = .bulkLine
    }

    private mutating func finishFrame() -> RequestFrame {
        frame.length = position
        frame.argumentCount = rangeCount
        state = .frameStart
        position = 0  // the next frame starts where this one ends
        return frame
    }

    private mutating func finishInline() throws(ProtocolError) -> RequestFrame {
        if line.last == 13 { line.removeLast() }
        inlineBytes.removeAll(keepingCapacity: true)
        defer { line.removeAll(keepingCapacity: true) }
        guard InlineSplitter.split(line, into: &inlineBytes, ranges: &ranges) else {
            throw .unbalancedQuotes
        }
        rangeCount = ranges.count
        frame.isInline = true
        if arguments.count > 0 {
            let name = arguments[0]
            frame.name = ShortBytes(bytes: inlineBytes[name.offset..<name.offset + name.count])
        }
        if arguments.count > 1 {
            let first = arguments[1]
            frame.firstArgument = ShortBytes(bytes: inlineBytes[first.offset..<first.offset + first.count])
        }
        return finishFrame()
    }
}

/// Redis's `sdssplitargs`: splits an inline line into arguments, with "double quotes" (escapes
/// `\n \r \t \b \a \\ \" \xHH`) and 'single quotes' (escape `\'`). A closing quote must be
/// followed by a space or the end; a NUL byte ends the line (it is a C string to Redis).
enum InlineSplitter {
    static func split(_ line: [UInt8], into out: inout [UInt8], ranges: inout [ArgumentRange]) -> Bool {
        ranges.removeAll(keepingCapacity: true)
        let n = line.firstIndex(of: 0) ?? line.count
        @inline(__always) func at(_ i: Int) -> UInt8 { i < n ? line[i] : 0 }
        @inline(__always) func isSpace(_ c: UInt8) -> Bool { c == 32 || (c >= 9 && c <= 13) }
        var p = 0
        while true {
            while p < n && isSpace(line[p]) { p += 1 }
            if p >= n { return true }
            var inDouble = false, inSingle = false, done = false
            let start = out.count
            while !done {
                let c = at(p)
                if inDouble {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "x"),
                       let hi = hexValue(at(p + 2)), let lo = hexValue(at(p + 3)) {
                        out.append(hi << 4 | lo)
                        p += 3
                    } else if c == UInt8(ascii: "\\") && at(p + 1) != 0 {
                        p += 1
                        switch at(p) {
                        case UInt8(ascii: "n"): out.append(10)
                        case UInt8(ascii: "r"): out.append(13)
                        case UInt8(ascii: "t"): out.append(9)
                        case UInt8(ascii: "b"): out.append(8)
                        case UInt8(ascii: "a"): out.append(7)
                        default: out.append(at(p))
                        }
                    } else if c == UInt8(ascii: "\"") {
                        if at(p + 1) != 0 && !isSpace(at(p + 1)) { return false }
                        done = true
                    } else if c == 0 {
                        return false
                    } else {
                        out.append(c)
                    }
                } else if inSingle {
                    if c == UInt8(ascii: "\\") && at(p + 1) == UInt8(ascii: "'") {
                        p += 1
                        out.append(UInt8(ascii: "'"))
                    } else if c == UInt8(ascii: "'") {
                        if at(p + 1) != 0 && !isSpace(at(p + 1)) { return false }
                        done = true
                    } else if c == 0 {
                        return false
                    } else {
                        out.append(c)
                    }
                } else {
                    switch c {
                    case 32, 10, 13, 9, 0: done = true
                    case UInt8(ascii: "\""): inDouble = true
                    case UInt8(ascii: "'"): inSingle = true
                    default: out.append(c)
                    }
                }
                if at(p) != 0 { p += 1 }
            }
            ranges.append(ArgumentRange(offset: start, count: out.count - start))
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - 87
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - 55
        default: return nil
        }
    }
}
