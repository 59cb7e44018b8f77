import RESP
import Testing

@Suite struct RequestParserTests {
    let splits: [Split] = [.whole, .oneByte] + (1...25).map { .random(seed: $0) }

    @Test func multibulkRequestYieldsLengthNameAndArgumentRanges() {
        let stream = multibulk(["SET", "key", "value"])
        let (requests, error) = parseRequests(stream)
        #expect(error == nil)
        #expect(requests.count == 1)
        let request = requests[0]
        #expect(request.frame.length == stream.count)
        #expect(request.frame.argumentCount == 3)
        #expect(request.frame.name == ShortBytes("set"))
        #expect(request.frame.firstArgument == ShortBytes("key"))
        #expect(!request.frame.isInline)
        #expect(request.arguments == [bytes("SET"), bytes("key"), bytes("value")])
    }

    @Test func commandNameIsLowerCasedAndLongNamesAreMarkedTruncated() {
        let long = String(repeating: "X", count: 40)
        let (requests, _) = parseRequests(multibulk(["GeT", "k"]) + multibulk([long]))
        #expect(requests[0].frame.name == ShortBytes("get"))
        #expect(requests[0].frame.name.description == "get")
        #expect(requests[1].frame.name.isTruncated)
        #expect(requests[1].frame.name.count == 40)
        #expect(requests[1].arguments[0] == bytes(long))
    }

    @Test func binaryPayloadWithCRLFInsideIsOneArgument() {
        let value = "a\r\nb\r\n*2\r\n$3\r\n"
        let (requests, error) = parseRequests(multibulk(["SET", "k", value]))
        #expect(error == nil)
        #expect(requests.count == 1)
        #expect(requests[0].arguments[2] == bytes(value))
    }

    @Test func pipelineParsesTheSameWholeDripFedAndInRandomSplits() {
        var stream: [UInt8] = []
        stream += multibulk(["PING"])
        stream += multibulk(["SET", "key:1", String(repeating: "v", count: 300)])
        stream += bytes("GET key:1\r\n")
        stream += multibulk(["MSET", "a", "1", "b", "2", "c", ""])
        stream += bytes("*0\r\n")
        stream += bytes("set \"quoted \\x41\\n\" 'it\\'s'\r\n")
        stream += bytes("\r\n")
        stream += multibulk(["CLIENT", "SETNAME", "app-1"])
        stream += multibulk(["EVAL", String(repeating: "return 1 ", count: 30), "0"])
        let (reference, error) = parseRequests(stream)
        #expect(error == nil)
        #expect(reference.count == 9)
        #expect(reference.map(\.frame.length).reduce(0, +) == stream.count)
        #expect(reference[5].arguments == [bytes("set"), bytes("quoted A\n"), bytes("it's")])
        for split in splits {
            let (requests, error) = parseRequests(stream, split: split)
            #expect(error == nil, "\(split)")
            #expect(requests == reference, "\(split)")
        }
    }

    @Test func consumerThatDrainsEachFrameAndResumesAtPositionSeesEveryRequest() {
        // The proxy's way of reading: drain each frame, re-read the rest from `position`.
        var stream: [UInt8] = []
        var expected: [[[UInt8]]] = []
        for i in 0..<50 {
            let args = ["SET", "key:\(i)", String(repeating: "x", count: i * 7)]
            stream += multibulk(args)
            expected.append(args.map(bytes))
            stream += bytes("GET key:\(i)\r\n")
            expected.append([bytes("GET"), bytes("key:\(i)")])
        }
        for split in splits {
            let (requests, error) = parseLikeTheProxy(stream, split: split)
            #expect(error == nil, "\(split)")
            #expect(requests == expected, "\(split)")
        }
    }

    @Test func emptyMultibulkAndBlankInlineLinesAreFramesWithNoArguments() {
        // Redis ignores these without replying; the proxy must drop exactly their bytes.
        for input in ["*0\r\n", "*-1\r\n", "*-5\r\n", "\r\n", "\n", "   \t \r\n"] {
            let (requests, error) = parseRequests(bytes(input))
            #expect(error == nil, "\(input.debugDescription)")
            #expect(requests.count == 1)
            #expect(requests.first?.frame.argumentCount == 0)
            #expect(requests.first?.frame.length == input.utf8.count)
        }
    }

    @Test func inlineSplittingFollowsRedisSdssplitargs() {
        let cases: [(String, [String])] = [
            ("PING", ["PING"]),
            ("  set   a    b  ", ["set", "a", "b"]),
            ("set \"a b\" c", ["set", "a b", "c"]),
            ("echo \"\\x41\\x4a\\t\\\\\\\"\"", ["echo", "AJ\t\\\""]),
            ("echo 'x\\'y'", ["echo", "x'y"]),
            ("echo ab\"cd\"", ["echo", "abcd"]),
            ("echo \"\"", ["echo", ""]),
            ("echo 'a\\nb'", ["echo", "a\\nb"]),
        ]
        for (line, expected) in cases {
            let (requests, error) = parseRequests(bytes(line + "\r\n"))
            #expect(error == nil, "\(line)")
            #expect(requests.first?.arguments == expected.map(bytes), "\(line)")
            #expect(requests.first?.frame.isInline == true)
        }
        // A NUL byte: the line never ends (see aNulBeforeTheNewlineMeansTheInlineLineNeverEnds;
        // checked against redis-server 7.0: no reply, then "too big inline request").
        let (withNul, nulError) = parseRequests(bytes("echo a") + [0] + bytes(" b\r\n"))
        #expect(withNul.isEmpty && nulError == nil)
        // A bare LF ends an inline command too, and a trailing CR is not part of the line.
        let (lf, _) = parseRequests(bytes("ping\nping\r\n"))
        #expect(lf.map(\.frame.length) == [5, 6])
    }

    @Test func unbalancedQuotesInInlineRequest() {
        for line in ["set \"a b\r\n", "set 'a\r\n", "echo \"foo\"bar\r\n", "echo 'a'b\r\n"] {
            #expect(parseRequests(bytes(line)).error == .unbalancedQuotes, "\(line)")
        }
        #expect(ProtocolError.unbalancedQuotes.reply == bytes("-ERR Protocol error: unbalanced quotes in request\r\n"))
    }

    @Test func invalidMultibulkLength() {
        for input in ["*abc\r\n", "*1x\r\n", "*\r\n", "*01\r\n", "*+1\r\n", "*-0\r\n", "*1048577\r\n",
                      "*99999999999999999999\r\n"] {
            for split in [Split.whole, .oneByte] {
                #expect(parseRequests(bytes(input), split: split).error == .invalidMultibulkLength, "\(input.debugDescription) \(split)")
            }
        }
        // The largest allowed count is not an error (it just waits for the arguments).
        #expect(parseRequests(bytes("*1048576\r\n")).error == nil)
        #expect(ProtocolError.invalidMultibulkLength.reply == bytes("-ERR Protocol error: invalid multibulk length\r\n"))
    }

    @Test func invalidBulkLengthIsRefusedBeforeAnyPayloadArrives() {
        // 512 MiB + 1, negative, overflowing, and malformed lengths: refused from the header alone.
        for header in ["$536870913", "$-1", "$-5", "$99999999999999999999", "$1a", "$", "$01"] {
            let input = bytes("*2\r\n$3\r\nGET\r\n\(header)\r\n")
            #expect(parseRequests(input).error == .invalidBulkLength, "\(header)")
        }
        // Exactly 512 MiB is allowed: no error, just waiting for the bytes.
        let (requests, error) = parseRequests(bytes("*2\r\n$3\r\nSET\r\n$536870912\r\nabc"))
        #expect(error == nil && requests.isEmpty)
        let small = RESPLimits(maxBulkLength: 10)
        #expect(parseRequests(multibulk(["SET", "k", "01234567890"]), limits: small).error == .invalidBulkLength)
        #expect(ProtocolError.invalidBulkLength.reply == bytes("-ERR Protocol error: invalid bulk length\r\n"))
    }

    @Test func expectedDollarGotSomethingElse() {
        #expect(parseRequests(bytes("*1\r\n:5\r\n")).error == .expectedDollar(got: UInt8(ascii: ":")))
        #expect(ProtocolError.expectedDollar(got: UInt8(ascii: ":")).reply == bytes("-ERR Protocol error: expected '$', got ':'\r\n"))
        // A CR where '$' belongs is shown as a space, as Redis sanitises error lines.
        #expect(parseRequests(bytes("*1\r\n\r\n")).error == .expectedDollar(got: 13))
        #expect(ProtocolError.expectedDollar(got: 13).message == "Protocol error: expected '$', got ' '")
    }

    @Test func tooBigInlineRequest() {
        let line = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024 + 1)
        for split in [Split.whole, .random(seed: 9)] {
            #expect(parseRequests(line, split: split).error == .tooBigInlineRequest)
        }
        // Exactly the limit, then a newline, is a valid (if odd) command.
        let ok = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024) + [10]
        #expect(parseRequests(ok).error == nil)
    }

    /// Redis finds an inline line's end with strchr: a NUL before the newline means it never
    /// ends, whatever follows, until the inline limit.
    @Test func aNulBeforeTheNewlineMeansTheInlineLineNeverEnds() {
        for split in [Split.whole, .random(seed: 4), .oneByte] {
            let waiting = parseRequests(bytes("PING a\u{0}b\r\nPING\r\n*1\r\n$4\r\nPING\r\n"), split: split)
            #expect(waiting.requests.isEmpty && waiting.error == nil)
            let more = bytes("PING a\u{0}b\r\n") + [UInt8](repeating: 10, count: 64 * 1024)
            #expect(parseRequests(more, split: split).error == .tooBigInlineRequest)
        }
        // After the newline a NUL is the next line's business; inside a bulk it is data.
        #expect(parseRequests(bytes("PING\r\n*2\r\n$4\r\nECHO\r\n$1\r\n\u{0}\r\n")).requests.count == 2)
    }

    @Test func tooBigMultibulkAndBulkCountStrings() {
        let digits = [UInt8](repeating: UInt8(ascii: "1"), count: 64 * 1024 + 1)
        #expect(parseRequests(bytes("*") + digits, split: .random(seed: 3)).error == .tooBigMultibulkCountString)
        #expect(parseRequests(bytes("*1\r\n$") + digits).error == .tooBigBulkCountString)
    }

    @Test func protocolErrorComesAfterTheValidRequestsBeforeIt() {
        let stream = multibulk(["SET", "a", "1"]) + multibulk(["GET", "a"]) + bytes("*x\r\n") + multibulk(["PING"])
        for split in splits {
            let (requests, error) = parseRequests(stream, split: split)
            #expect(requests.count == 2, "\(split)")
            #expect(error == .invalidMultibulkLength, "\(split)")
        }
    }

    @Test func byteAfterCRIsSkippedUncheckedAsRedisDoes() {
        // Redis reads "\r?" line ends and the two bytes after a payload without checking them;
        // framing must agree with Redis or a forwarded pipeline would desynchronise.
        let stream = bytes("*2\r!$3\rXGETYZ$1\r\nkAB")
        let (requests, error) = parseRequests(stream, split: .oneByte)
        #expect(error == nil)
        #expect(requests.first?.arguments == [bytes("GET"), bytes("k")])
        #expect(requests.first?.frame.length == stream.count)
    }

    @Test func randomizedMultibulkRoundTrips() {
        var rng = SplitMix64(seed: 42)
        for round in 0..<200 {
            var expected: [[[UInt8]]] = []
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let argc = Int.random(in: 1...6, using: &rng)
                let args: [[UInt8]] = (0..<argc).map { _ in
                    (0..<Int.random(in: 0...70, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
                expected.append(args)
                stream += bytes("*\(argc)\r\n")
                for a in args { stream += bytes("$\(a.count)\r\n") + a + bytes("\r\n") }
            }
            let (requests, error) = parseRequests(stream, split: .random(seed: UInt64(round)))
            #expect(error == nil)
            #expect(requests.map(\.arguments) == expected, "round \(round)")
            #expect(requests.map(\.frame.length).reduce(0, +) == stream.count)
        }
    }

    @Test func parserReusesItsBuffersAcrossFrames() {
        // Multibulk and inline frames over and over: once the largest has been seen, the argument
        // table and the inline buffer keep their storage (no growth, no reallocation).
        var parser = RequestParser()
        let frames = [multibulk(["SET", "k", "v"]), Array("GET key\r\n".utf8), multibulk(["MSET", "a", "1", "b", "2"])]
        func parseAll() {
            for frame in frames {
                var index = 0
                _ = try? parser.parse(frame.span, from: &index)
            }
        }
        parseAll()
        let capacity = parser.bufferCapacity
        #expect(capacity > 0)
        for _ in 0..<1_000 { parseAll() }
        #expect(parser.bufferCapacity == capacity, "the buffers grew across identical frames")
        #expect(parser.arguments.count == 5)
        #expect(parser.isAtFrameStart)
    }

    /// A frame that arrives whole takes the one-pass fast path; one that arrives a byte at a time
    /// takes the state machine. On valid and on mangled input (signs, leading zeros, missing '$',
    /// short payloads, huge counts, stray bytes) both must give the same frames and the same error.
    @Test func wholeFrameFastPathAgreesWithTheStateMachine() {
        var rng = SplitMix64(seed: 7)
        let headers = ["3", "03", "+3", "-1", "0", "00", "1x", "", "99999999999999999999", "1048577", "2", "16"]
        var fastPathFrames = 0
        for _ in 0..<3000 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let arguments = (0..<Int.random(in: 1...4, using: &rng)).map { _ in
                    String(repeating: "kK", count: Int.random(in: 0...20, using: &rng))
                }
                var frame = multibulk(arguments)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0:  // replace a header's digits
                    let marks = frame.indices.filter { frame[$0] == UInt8(ascii: "$") || frame[$0] == UInt8(ascii: "*") }
                    let at = marks.randomElement(using: &rng)! + 1
                    let digitsEnd = frame[at...].firstIndex(of: 13)!
                    frame.replaceSubrange(at..<digitsEnd, with: bytes(headers.randomElement(using: &rng)!))
                case 1:  // one byte changed anywhere
                    frame[Int.random(in: 0..<frame.count, using: &rng)] = [UInt8(ascii: "$"), 13, 10, UInt8(ascii: "x"), 0].randomElement(using: &rng)!
                case 2:  // cut short
                    frame.removeLast(Int.random(in: 1...frame.count, using: &rng))
                default:
                    break
                }
                stream += frame
            }
            let whole = parseRequests(stream, split: .whole)
            let slow = parseRequests(stream, split: .oneByte)
            #expect(whole.requests == slow.requests, "\(stream)")
            #expect(whole.error == slow.error, "\(stream)")
            fastPathFrames += whole.requests.count
        }
        #expect(fastPathFrames > 3000)
    }
}

@Suite struct ShortBytesTests {
    /// The word-at-a-time packing gives what byte-at-a-time `append` gives, for every byte value,
    /// every length up to past the capacity, and spans that end right after the value.
    @Test func packingFromASpanMatchesAppend() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<4000 {
            let length = Int.random(in: 0...40, using: &rng)
            let padding = Int.random(in: 0...9, using: &rng)
            let offset = Int.random(in: 0...3, using: &rng)
            let buffer = (0..<offset + length + padding).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let value = buffer[offset..<offset + length]
            #expect(ShortBytes(buffer.span, from: offset, count: length) == ShortBytes(bytes: value), "\(Array(value))")
        }
        for byte in UInt8.min...UInt8.max {
            #expect(ShortBytes([byte, byte, byte, byte, byte, byte, byte, byte, 13, 10].span, from: 0, count: 8)
                    == ShortBytes(bytes: [UInt8](repeating: byte, count: 8)))
        }
    }
}
