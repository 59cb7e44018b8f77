/// Redis Cluster's hash slot of a key, as `keyHashSlot` in Redis's cluster.c computes it: the
/// CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection) of the key, modulo 16,384.
/// When the key holds a hash tag — a `{` followed, later, by a `}` with at least one byte between
/// them (the first `{` and the first `}` after it) — only the tag is hashed, so `{user:1}:name`
/// and `{user:1}:mail` share a slot. Pure and allocation-free: the slot routing of Redis Cluster
/// behind the ambassador, and `CLUSTER KEYSLOT` answered locally, both rest on it.
public enum HashSlot {
    public static let count = 16_384

    /// The slot of `key`. Keys are read eight bytes at a time: a word with no `{` (most keys have
    /// none) is hashed two bytes per table step; the word that holds one, and any tail shorter
    /// than a word, go byte by byte, looking for the tag.
    public static func of(_ key: Span<UInt8>) -> Int {
        key.bytes.withUnsafeBytes { bytes in
            tables.withUnsafeBufferPointer { tables in
                let count = bytes.count
                var crc: UInt16 = 0
                var index = 0
                // Whole words without a `{`: two table steps per two bytes (see `tables`).
                while count - index >= 8 {
                    let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                    let braces = word ^ 0x7B7B_7B7B_7B7B_7B7B
                    if (braces &- 0x0101_0101_0101_0101) & ~braces & 0x8080_8080_8080_8080 != 0 { break }
                    var shift: UInt64 = 0
                    while shift < 64 {
                        let pair = UInt16(truncatingIfNeeded: word >> shift)
                        let x = crc ^ (pair << 8 | pair >> 8)
                        crc = tables[256 + Int(x >> 8)] ^ tables[Int(x & 0xFF)]
                        shift += 16
                    }
                    index += 8
                }
                // The rest byte by byte, up to a `{`.
                while index < count {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: "{") { break }
                    crc = step(crc, byte, tables)
                    index += 1
                }
                if index < count {
                    // A `{`: a tag if a `}` follows with at least one byte between.
                    var close = index + 1
                    while close < count && bytes[close] != UInt8(ascii: "}") { close += 1 }
                    if close < count && close > index + 1 {
                        crc = 0
                        for position in (index + 1)..<close { crc = step(crc, bytes[position], tables) }
                    } else {
                        while index < count {
                            crc = step(crc, bytes[index], tables)
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

    /// CRC16-XMODEM tables. `0..<256`: the remainder of each byte value shifted into the top
    /// (one byte: `crc = (crc << 8) ^ T[(crc >> 8) ^ byte]`). `256..<512`: the same followed by a
    /// zero byte, `U[a] = (T[a] << 8) ^ T[T[a] >> 8]`. As the CRC is linear, two bytes `b0 b1`
    /// are then one step: with `x = crc ^ (b0 << 8 | b1)`, `crc = U[x >> 8] ^ T[x & 0xFF]`.
    static let tables: [UInt16] = {
        let byte: [UInt16] = (0..<256).map { value in
            var crc = UInt16(value) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
            return crc
        }
        return byte + byte.map { (($0 & 0xFF) << 8) ^ byte[Int($0 >> 8)] }
    }()
}
