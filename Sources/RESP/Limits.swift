/// Named limits of the RESP codec, checked before anything is allocated.
///
/// Defaults follow Redis 7: `proto-max-bulk-len` (512 MiB), `PROTO_INLINE_MAX_SIZE` (64 KiB), and the
/// pre-7.0 multibulk cap of 1,048,576 arguments (Redis 7 allows up to INT_MAX; a proxy that keeps an
/// argument table per command has a reason to stop earlier).
public struct RESPLimits: Sendable, Equatable {
    /// Largest bulk string a client may send (`$<len>`), in bytes.
    public var maxBulkLength: Int
    /// Most arguments in one multibulk request (`*<count>`).
    public var maxMultibulkCount: Int
    /// Longest inline command line, and longest `*`/`$` header line, in bytes.
    public var maxInlineSize: Int

    public init(maxBulkLength: Int = 512 * 1024 * 1024,
                maxMultibulkCount: Int = 1024 * 1024,
                maxInlineSize: Int = 64 * 1024) {
        self.maxBulkLength = maxBulkLength
        self.maxMultibulkCount = maxMultibulkCount
        self.maxInlineSize = maxInlineSize
    }

    public static let redis = RESPLimits()
}

/// Why a byte stream is not valid RESP. Request errors carry Redis's own texts, so a client sees
/// the reply Redis would have sent (`-ERR Protocol error: …`).
public enum ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidMultibulkLength
    case invalidBulkLength
    case expectedDollar(got: UInt8)
    case unbalancedQuotes
    case tooBigInlineRequest
    case tooBigMultibulkCountString
    case tooBigBulkCountString
    /// A reply (from a backend) starts with a byte that is no RESP2/RESP3 type.
    case invalidReplyType(UInt8)
    /// A reply's length or count header is not a valid number for its type.
    case invalidReplyLength
    /// A reply line does not end in CRLF.
    case invalidReplyLineEnding
    /// A reply nests deeper than `RESPValue.maxDecodeDepth` (decoding only: framing has no limit).
    case replyTooDeep

    /// The message as Redis words it (without the `ERR ` prefix).
    public var message: String {
        switch self {
        case .invalidMultibulkLength: return "Protocol error: invalid multibulk length"
        case .invalidBulkLength: return "Protocol error: invalid bulk length"
        case .expectedDollar(let byte):
            // Redis replaces CR and LF in error texts with spaces.
            let shown = byte == 13 || byte == 10 ? " " : String(decoding: [byte], as: UTF8.self)
            return "Protocol error: expected '$', got '\(shown)'"
        case .unbalancedQuotes: return "Protocol error: unbalanced quotes in request"
        case .tooBigInlineRequest: return "Protocol error: too big inline request"
        case .tooBigMultibulkCountString: return "Protocol error: too big mbulk count string"
        case .tooBigBulkCountString: return "Protocol error: too big bulk count string"
        case .invalidReplyType(let byte): return "Protocol error: invalid reply type byte \(byte)"
        case .invalidReplyLength: return "Protocol error: invalid reply length"
        case .invalidReplyLineEnding: return "Protocol error: reply line not terminated by CRLF"
        case .replyTooDeep: return "Protocol error: reply nested too deeply to decode"
        }
    }

    /// The error reply a client gets: `-ERR <message>\r\n`.
    public var reply: [UInt8] { Array("-ERR \(message)\r\n".utf8) }

    public var description: String { message }
}
