import RESP

/// Deterministic generator so a failing random case can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How a byte stream is cut into the chunks the parser sees.
enum Split: CustomStringConvertible {
    case whole
    case oneByte
    case random(seed: UInt64)

    func chunks(of count: Int) -> [Range<Int>] {
        switch self {
        case .whole: return count == 0 ? [] : [0..<count]
        case .oneByte: return (0..<count).map { $0..<$0 + 1 }
        case .random(let seed):
            var rng = SplitMix64(seed: seed)
            var cuts: [Range<Int>] = []
            var start = 0
            while start < count {
                let size = Int.random(in: 1...max(1, min(count - start, 1 + Int(rng.next() % 40))), using: &rng)
                cuts.append(start..<start + size)
                start += size
            }
            return cuts
        }
    }

    var description: String {
        switch self {
        case .whole: return "whole"
        case .oneByte: return "one byte at a time"
        case .random(let seed): return "random split \(seed)"
        }
    }
}

/// A request as the tests compare it: frame plus the argument bytes it points at.
struct ParsedRequest: Equatable, CustomStringConvertible {
    var frame: RequestFrame
    var arguments: [[UInt8]]
    var description: String {
        "\(frame.length)B " + arguments.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
    }
}

/// Feeds `stream` to a fresh parser in chunks; returns the requests and the error, if any.
func parseRequests(_ stream: [UInt8], split: Split = .whole, limits: RESPLimits = .redis)
    -> (requests: [ParsedRequest], error: ProtocolError?)
{
    var parser = RequestParser(limits: limits)
    var requests: [ParsedRequest] = []
    var frameStart = 0
    for chunk in split.chunks(of: stream.count) {
        let bytes = Array(stream[chunk])
        var index = 0
        while index < bytes.count {
            do {
                guard let frame = try parser.parse(bytes.span, from: &index) else { break }
                let arguments = parser.arguments.map { range -> [UInt8] in
                    if frame.isInline { return Array(parser.inlineBytes[range.offset..<range.offset + range.count]) }
                    let start = frameStart + range.offset
                    return Array(stream[start..<start + range.count])
                }
                requests.append(ParsedRequest(frame: frame, arguments: arguments))
                frameStart += frame.length
            } catch {
                return (requests, error)
            }
        }
    }
    return (requests, nil)
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A multibulk request for `arguments`.
func multibulk(_ arguments: [String]) -> [UInt8] {
    var out = bytes("*\(arguments.count)\r\n")
    for argument in arguments { out += bytes("$\(argument.utf8.count)\r\n\(argument)\r\n") }
    return out
}

/// Scans `stream` as replies in chunks; returns each reply's length and type, and any error.
func scanReplies(_ stream: [UInt8], split: Split = .whole, limits: RESPLimits = .redis)
    -> (replies: [ReplyFrame], error: ProtocolError?)
{
    var scanner = ReplyScanner(limits: limits)
    var replies: [ReplyFrame] = []
    for chunk in split.chunks(of: stream.count) {
        let bytes = Array(stream[chunk])
        var index = 0
        while index < bytes.count {
            do {
                guard let reply = try scanner.scan(bytes.span, from: &index) else { break }
                replies.append(reply)
            } catch {
                return (replies, error)
            }
        }
    }
    return (replies, nil)
}

/// Parses the way the proxy does: bytes arrive into a buffer in chunks; after each frame the
/// consumer drains exactly `frame.length` bytes and the parser resumes at `position` of what is
/// left. Returns the arguments of every frame.
func parseLikeTheProxy(_ stream: [UInt8], split: Split) -> (requests: [[[UInt8]]], error: ProtocolError?) {
    var parser = RequestParser()
    var buffer: [UInt8] = []
    var requests: [[[UInt8]]] = []
    for chunk in split.chunks(of: stream.count) {
        buffer += stream[chunk]
        while buffer.count > parser.position {
            let unread = Array(buffer[parser.position...])
            var index = 0
            let frame: RequestFrame?
            do { frame = try parser.parse(unread.span, from: &index) } catch { return (requests, error) }
            guard let frame else { break }
            requests.append(parser.arguments.map { range in
                frame.isInline ? Array(parser.inlineBytes[range.offset..<range.offset + range.count])
                               : Array(buffer[range.offset..<range.offset + range.count])
            })
            buffer.removeFirst(frame.length)
        }
    }
    return (requests, nil)
}
