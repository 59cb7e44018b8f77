/// Writes the replies the ambassador answers itself, in the session's protocol (RESP2 or RESP3),
/// into a reusable buffer: `clear()` keeps its capacity, so steady use allocates nothing.
public struct RESPEncoder: Sendable {
    public var protocolVersion: Int
    public private(set) var bytes: [UInt8] = []

    public init(protocolVersion: Int = 2, capacity: Int = 0) {
        self.protocolVersion = protocolVersion
        bytes.reserveCapacity(capacity)
    }

    public mutating func clear() { bytes.removeAll(keepingCapacity: true) }

    /// `+OK`: a status reply (must not contain CR or LF).
    public mutating func simpleString(_ text: String) {
        bytes.appendLine(UInt8(ascii: "+"), text.utf8)
    }

    /// `-ERR …`: an error reply. CR and LF inside become spaces, as Redis does, so the reply stays
    /// one line. `text` includes the error code (`ERR`, `WRONGTYPE`, `NOAUTH` …).
    public mutating func error(_ text: String) {
        bytes.append(UInt8(ascii: "-"))
        for byte in text.utf8 { bytes.append(byte == 13 || byte == 10 ? 32 : byte) }
        bytes.append(13); bytes.append(10)
    }

    public mutating func integer(_ value: Int64) {
        bytes.appendLine(UInt8(ascii: ":"), value)
    }

    public mutating func bulk(_ value: some Collection<UInt8>) {
        bytes.appendBlob(UInt8(ascii: "$"), value)
    }

    public mutating func bulk(_ text: String) { bulk(text.utf8) }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    public mutating func null() {
        bytes.append(contentsOf: (protocolVersion >= 3 ? "_\r\n" : "$-1\r\n").utf8)
    }

    /// Text as Redis sends CLIENT LIST or INFO: a verbatim string (`=…txt:`) in RESP3, a bulk
    /// string in RESP2.
    public mutating func verbatimOrBulk(_ text: String) {
        if protocolVersion >= 3 {
            bytes.appendBlob(UInt8(ascii: "="), Array(("txt:" + text).utf8))
        } else {
            bulk(text.utf8)
        }
    }

    public mutating func arrayHeader(_ count: Int) {
        bytes.appendLine(UInt8(ascii: "*"), Int64(count))
    }

    /// A map of `pairs` entries: `%` in RESP3, a flat array of 2×`pairs` in RESP2 (as Redis does).
    public mutating func mapHeader(_ pairs: Int) {
        if protocolVersion >= 3 {
            bytes.appendLine(UInt8(ascii: "%"), Int64(pairs))
        } else {
            bytes.appendLine(UInt8(ascii: "*"), Int64(pairs * 2))
        }
    }


}
