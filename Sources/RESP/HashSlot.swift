/// Redis Cluster's hash slot of a key, as `keyHashSlot` in Redis's cluster.c computes it: the
/// CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the key, modulo 16,384.
/// When the key holds a hash tag — a `{` followed, later, by a `}` with at least one byte between
/// them (the first `{` and the first `}` after it) — only the tag is hashed, so `{user:1}:name`
/// and `{user:1}:mail` share a slot. Pure and allocation-free: the slot routing of Redis Cluster
/// behind the ambassador, and `CLUSTER KEYSLOT` answered locally, both rest on it.
public enum HashSlot {
    public static let count = 16_384

    /// The slot of `key`: one pass that hashes while it looks for a `{` (most keys have none),
    /// then, when one opens a tag, the tag alone.
    public static func of(_ key: Span<UInt8>) -> Int {
        key.withUnsafeBufferPointer { bytes in
            table.withUnsafeBufferPointer { table in
                var crc: UInt16 = 0
                var index = 0
                let count = bytes.count
                while index < count {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: "{") { break }
                    crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
                    index += 1
                }
                if index < count {
                    // A `{`: a tag if a `}` follows with at least one byte between.
                    var close = index + 1
                    while close < count && bytes[close] != UInt8(ascii: "}") { close += 1 }
                    if close < count && close > index + 1 {
                        crc = 0
                        for position in (index + 1)..<close {
                            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ bytes[position])]
                        }
                    } else {
                        while index < count {
                            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ bytes[index])]
                            index += 1
                        }
                    }
                }
                return Int(crc) & (Self.count - 1)
            }
        }
    }

    public static func of(_ key: [UInt8]) -> Int { of(key.span) }

    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of($0.span) }
    }

    /// CRC16-XMODEM by byte: the remainder of each byte value shifted into the top.
    static let table: [UInt16] = (0..<256).map { value in
        var crc = UInt16(value) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}
