/// Redis Cluster's hash slot of a key, as `keyHashSlot` in Redis's cluster.c computes it: the
/// CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the key, modulo 16,384.
/// When the key holds a hash tag — a `{` followed, later, by a `}` with at least one byte between
/// them (the first `{` and the first `}` after it) — only the tag is hashed, so `{user:1}:name`
/// and `{user:1}:mail` share a slot. Pure and allocation-free: the slot routing of Redis Cluster
/// behind the ambassador, and `CLUSTER KEYSLOT` answered locally, both rest on it.
public enum HashSlot {
    public static let count = 16_384

    /// The slot of `key`. Keys are read eight bytes at a time: a word with no `{` (most keys have
    /// none) is one slicing step (eight table lookups, see `tables`); the word that holds one,
    /// and any tail shorter than a word, go byte by byte, looking for the tag.
    public static func of(_ key: Span<UInt8>) -> Int {
        key.bytes.withUnsafeBytes { bytes in
            tables.withUnsafeBufferPointer { t in
                let count = bytes.count
                var crc: UInt16 = 0
                var index = 0
                // Whole words without a `{`.
                while count - index >= 8 {
                    let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                    let braces = word ^ 0x7B7B_7B7B_7B7B_7B7B
                    if (braces &- 0x0101_0101_0101_0101) & ~braces & 0x8080_8080_8080_8080 != 0 { break }
                    // Byte k of the key is bits 8k..<8k+8 of the (little-endian) word.
                    @inline(__always) func byte(_ k: UInt64) -> Int { Int(truncatingIfNeeded: word >> (8 * k)) & 0xFF }
                    let x0 = Int(crc >> 8) ^ byte(0), x1 = Int(crc & 0xFF) ^ byte(1)
                    crc = t[7 * 256 + x0] ^ t[6 * 256 + x1] ^ t[5 * 256 + byte(2)] ^ t[4 * 256 + byte(3)]
                        ^ t[3 * 256 + byte(4)] ^ t[2 * 256 + byte(5)] ^ t[256 + byte(6)] ^ t[byte(7)]
                    index += 8
                }
                // The rest byte by byte, up to a `{`.
                while index < count {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: "{") { break }
                    crc = step(crc, byte, t)
                    index += 1
                }
                if index < count {
                    // A `{`: a tag if a `}` follows with at least one byte between.
                    var close = index + 1
                    while close < count && bytes[close] != UInt8(ascii: "}") { close += 1 }
                    if close < count && close > index + 1 {
                        crc = 0
                        for position in (index + 1)..<close { crc = step(crc, bytes[position], t) }
                    } else {
                        while index < count {
                            crc = step(crc, bytes[index], t)
                            index += 1
                        }
                    }
                }
                return Int(crc) & (Self.count - 1)
            }
        }
    }

    /// One byte into the CRC.
    @inline(__always)
    private static func step(_ crc: UInt16, _ byte: UInt8, _ tables: UnsafeBufferPointer<UInt16>) -> UInt16 {
        (crc << 8) ^ tables[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
    }

    public static func of(_ key: [UInt8]) -> Int { of(key.span) }

    public static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { of($0.span) }
    }
}
