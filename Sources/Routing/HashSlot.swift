/// Redis Cluster's hash slot of a key, as `keyHashSlot` in Redis's cluster.c computes it: the
/// CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the key, modulo 16,384.
/// When the key holds a hash tag — a `{` followed, later, by a `}` with at least one byte between
/// them (the first `{` and the first `}` after it) — only the tag is hashed, so `{user:1}:name`
/// and `{user:1}:mail` share a slot. Pure and allocation-free: the slot routing of Redis Cluster
/// behind the ambassador, and `CLUSTER KEYSLOT` answered locally, both rest on it.
public enum HashSlot {
    public static let count = 16_384

    /// The slot of `key`.
    public static func of(_ key: Span<UInt8>) -> Int {
        var start = 0
        var end = key.count
        if let open = firstIndex(of: UInt8(ascii: "{"), in: key, from: 0),
           let close = firstIndex(of: UInt8(ascii: "}"), in: key, from: open + 1), close > open + 1 {
            start = open + 1
            end = close
        }
        var crc: UInt16 = 0
        var index = start
        while index < end {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ key[index])]
            index += 1
        }
        return Int(crc) & (count - 1)
    }

    public static func of(_ key: [UInt8]) -> Int { of(key.span) }

    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of($0.span) }
    }

    private static func firstIndex(of byte: UInt8, in bytes: Span<UInt8>, from start: Int) -> Int? {
        var index = start
        while index < bytes.count {
            if bytes[index] == byte { return index }
            index += 1
        }
        return nil
    }

    /// CRC16-XMODEM by byte: the remainder of each byte value shifted into the top.
    static let table: [UInt16] = (0..<256).map { value in
        var crc = UInt16(value) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}
