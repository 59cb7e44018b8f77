import RESP
import Testing

@Suite struct ReplyScannerTests {
    /// One sample of every RESP2 and RESP3 type, nested ones included.
    static let samples: [(String, UInt8)] = [
        ("+OK\r\n", UInt8(ascii: "+")),
        ("-ERR unknown command 'FOO'\r\n", UInt8(ascii: "-")),
        (":-42\r\n", UInt8(ascii: ":")),
        ("$5\r\nhello\r\n", UInt8(ascii: "$")),
        ("$0\r\n\r\n", UInt8(ascii: "$")),
        ("$-1\r\n", UInt8(ascii: "$")),
        ("$4\r\n\r\n\r\n\r\n", UInt8(ascii: "$")),
        ("*-1\r\n", UInt8(ascii: "*")),
        ("*0\r\n", UInt8(ascii: "*")),
        ("*3\r\n:1\r\n$1\r\na\r\n*2\r\n+x\r\n$-1\r\n", UInt8(ascii: "*")),
        ("_\r\n", UInt8(ascii: "_")),
        (",3.14\r\n", UInt8(ascii: ",")),
        (",-inf\r\n", UInt8(ascii: ",")),
        ("#t\r\n", UInt8(ascii: "#")),
        ("!21\r\nSYNTAX invalid syntax\r\n", UInt8(ascii: "!")),
        ("=15\r\ntxt:Some string\r\n", UInt8(ascii: "=")),
        ("(3492890328409238509324850943850943825024385\r\n", UInt8(ascii: "(")),
        ("%2\r\n+first\r\n:1\r\n+second\r\n*1\r\n:2\r\n", UInt8(ascii: "%")),
        ("%0\r\n", UInt8(ascii: "%")),
        ("~2\r\n+a\r\n+b\r\n", UInt8(ascii: "~")),
        (">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", UInt8(ascii: ">")),
        ("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:7\r\n", UInt8(ascii: "*")),
        ("*2\r\n|1\r\n+ttl\r\n:3600\r\n+v\r\n:5\r\n", UInt8(ascii: "*")),
    ]

    @Test func everyTypeIsFramedExactly() {
        for (text, type) in Self.samples {
            let (replies, error) = scanReplies(bytes(text))
            #expect(error == nil, "\(text.debugDescription)")
            #expect(replies == [ReplyFrame(length: text.utf8.count, type: type)], "\(text.debugDescription)")
        }
    }

    @Test func allTypesBackToBackWholeDripFedAndRandomSplits() {
        let stream = Self.samples.flatMap { bytes($0.0) }
        let expected = Self.samples.map { ReplyFrame(length: $0.0.utf8.count, type: $0.1) }
        for split in [Split.whole, .oneByte] + (1...40).map({ Split.random(seed: $0) }) {
            let (replies, error) = scanReplies(stream, split: split)
            #expect(error == nil, "\(split)")
            #expect(replies == expected, "\(split)")
        }
    }

    @Test func errorsAndPushFramesAreRecognised() {
        let (replies, _) = scanReplies(bytes("-WRONGTYPE x\r\n!3\r\nERR\r\n>2\r\n+a\r\n+b\r\n+OK\r\n"))
        #expect(replies.map(\.isError) == [true, true, false, false])
        #expect(replies.map(\.isPush) == [false, false, true, false])
    }

    @Test func invalidTypeByte() {
        #expect(scanReplies(bytes("?5\r\n")).error == .invalidReplyType(UInt8(ascii: "?")))
        #expect(scanReplies(bytes("*1\r\nX\r\n")).error == .invalidReplyType(UInt8(ascii: "X")))
    }

    @Test func invalidLengthsAndCounts() {
        for text in ["$-2\r\n", "$abc\r\n", "*-2\r\n", "%-1\r\n", "!-1\r\n", "$\r\n", "*1a\r\n"] {
            #expect(scanReplies(bytes(text)).error == .invalidReplyLength, "\(text.debugDescription)")
        }
    }

    @Test func lineNotEndingInCRLF() {
        #expect(scanReplies(bytes("+OK\rX")).error == .invalidReplyLineEnding)
        #expect(scanReplies(bytes("$2\r\nabXY")).error == .invalidReplyLineEnding)
    }

    /// Any depth is framed (a Lua script can return a reply nested thousands deep): no limit,
    /// whatever the split, and the stack stays small for runs of one-element aggregates.
    @Test func deepNestingIsFramedWithoutALimit() {
        let cases: [(String, UInt8)] = [
            (String(repeating: "*1\r\n", count: 100_000) + ":1\r\n", UInt8(ascii: "*")),
            // Two elements per level: the second of each is a scalar after the deeper one ends.
            (String(repeating: "*2\r\n", count: 5_000) + ":1\r\n" + String(repeating: "+x\r\n", count: 5_000), UInt8(ascii: "*")),
            // Mixed kinds, the way Redis writes a cyclic Lua table cut at its stack limit.
            (String(repeating: "*1\r\n%1\r\n+k\r\n~1\r\n", count: 3_000) + "-ERR reached lua stack limit\r\n", UInt8(ascii: "*")),
            // An attribute at the top that owes one element, decorating a deep value.
            ("|0\r\n" + String(repeating: "*1\r\n", count: 1_000) + "_\r\n", UInt8(ascii: "*")),
        ]
        for (text, type) in cases {
            let stream = bytes(text) + bytes("+OK\r\n")
            for split in [Split.whole, .random(seed: 7), .random(seed: 8)] {
                let (replies, error) = scanReplies(stream, split: split)
                #expect(error == nil)
                let expected = [ReplyFrame(length: text.utf8.count, type: type), ReplyFrame(length: 5, type: UInt8(ascii: "+"))]
                #expect(replies.count == 2 && replies.elementsEqual(expected), "\(text.prefix(20).debugDescription) \(split)")
            }
        }
        // A million one-element levels open at once: one stack entry, not a million.
        var scanner = ReplyScanner()
        let open = bytes(String(repeating: "*1\r\n", count: 1_000_000))
        var index = 0
        #expect((try? scanner.scan(open.span, from: &index)) == .some(nil))
        #expect(scanner.depth == 1_000_000)
        let close = bytes(":7\r\n")
        index = 0
        #expect((try? scanner.scan(close.span, from: &index)) == .some(ReplyFrame(length: open.count + close.count, type: UInt8(ascii: "*"))))
        #expect(scanner.depth == 0 && scanner.consumed == 0, "back between replies")
    }

    @Test func hugeBulkIsSkippedNotBuffered() {
        // A 1 GiB length is only a number to the scanner: it waits, it does not allocate.
        var scanner = ReplyScanner()
        let header = bytes("$1073741824\r\n") + [UInt8](repeating: 0, count: 1000)
        var index = 0
        #expect((try? scanner.scan(header.span, from: &index)) == .some(nil))
        #expect(index == header.count)
    }
}
