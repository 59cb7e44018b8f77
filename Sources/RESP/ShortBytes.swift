/// Up to 32 bytes held inline (no heap), lower-cased as they are appended: the command name and
/// first argument of a request, compared and hashed without building a `String`.
///
/// A value longer than 32 bytes keeps its first 32 bytes and `isTruncated`; it equals no name.
public struct ShortBytes: Hashable, Sendable, CustomStringConvertible {
    public static let capacity = 32
    public private(set) var w0: UInt64 = 0
    public private(set) var w1: UInt64 = 0
    public private(set) var w2: UInt64 = 0
    public private(set) var w3: UInt64 = 0
    /// The full length of the value (may exceed `capacity`).
    public internal(set) var count: Int = 0

    public init() {}

    /// Lower-cases ASCII and packs; used for literals and tests.
    public init(_ text: some StringProtocol) {
        for byte in text.utf8 { append(byte) }
    }

    public init(bytes: some Sequence<UInt8>) {
        for byte in bytes { append(byte) }
    }

    /// The `count` bytes of `bytes` from `start` (all present), the first 32 packed. Reads eight
    /// bytes at a time where the span has them (a payload is always followed by its CRLF, so a
    /// short tail usually does) and folds case in the word, as `append` does per byte.
    @inline(__always)
    public init(_ bytes: Span<UInt8>, from start: Int, count: Int) {
        let stored = min(count, Self.capacity)
        let raw = bytes.bytes
        @inline(__always) func word(_ index: Int) -> UInt64 {
            let offset = index &* 8
            guard offset < stored else { return 0 }
            let take = min(8, stored &- offset)
            var word: UInt64 = 0
            if start &+ offset &+ 8 <= raw.byteCount {
                word = UInt64(littleEndian: raw.unsafeLoadUnaligned(fromByteOffset: start &+ offset, as: UInt64.self))
                if take < 8 { word &= (1 &<< UInt64(take &* 8)) &- 1 }
            } else {
                for j in 0..<take { word |= UInt64(bytes[start &+ offset &+ j]) &<< UInt64(j &* 8) }
            }
            return Self.foldingCase(word)
        }
        w0 = word(0)
        w1 = word(1)
        w2 = word(2)
        w3 = word(3)
        self.count = count
    }

    /// ASCII upper case to lower case in all eight bytes of `word` at once; other bytes unchanged.
    @inline(__always)
    static func foldingCase(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let seven = word & (ones &* 0x7F)
        // Per byte: high bit set where the byte is ASCII and in 'A'...'Z' (no carry between bytes).
        let upper = (seven &+ ones &* (0x80 - 0x41)) & ~(seven &+ ones &* (0x80 - 0x5B)) & ~word & (ones &* 0x80)
        return word | (upper >> 2)
    }

    public var isTruncated: Bool { count > Self.capacity }
    public var isEmpty: Bool { count == 0 }

    /// Appends one byte, ASCII upper case folded to lower case.
    @inline(__always)
    public mutating func append(_ byte: UInt8) {
        if count < Self.capacity {
            let folded = byte &- 65 < 26 ? byte | 0x20 : byte
            let shift = UInt64((count & 7) << 3)
            let bits = UInt64(folded) << shift
            switch count >> 3 {
            case 0: w0 |= bits
            case 1: w1 |= bits
            case 2: w2 |= bits
            default: w3 |= bits
            }
        }
        count += 1
    }

    /// The byte at `index` (< min(count, capacity)).
    public subscript(index: Int) -> UInt8 {
        let word: UInt64
        switch index >> 3 {
        case 0: word = w0
        case 1: word = w1
        case 2: word = w2
        default: word = w3
        }
        return UInt8(truncatingIfNeeded: word >> UInt64((index & 7) << 3))
    }

    /// The stored bytes (the first 32 when truncated).
    public var bytes: [UInt8] { (0..<min(count, Self.capacity)).map { self[$0] } }

    /// The value as text (for logs and tests, never on the per-command path).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// A well-mixed 64-bit hash of the packed words, for table lookups.
    @inline(__always)
    public var hashValue64: UInt64 {
        var h = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ w0) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 31) ^ w1) &* 0x94D0_49BB_1331_11EB
        h = (h ^ (h >> 29) ^ w2) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 32) ^ w3) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 31)
    }

    /// The decimal integer this value spells (`"12"`, `"-3"`), as Redis's string2ll reads it.
    public var integerValue: Int64? {
        guard !isTruncated else { return nil }
        var number = DecimalNumber()
        for i in 0..<count { number.push(self[i]) }
        return number.value
    }
}

/// A decimal integer read one byte at a time with the rules of Redis's `string2ll`: an optional
/// `-`, no `+`, no leading zeros (except `0` itself), no `-0`, no spaces, within Int64.
public struct DecimalNumber: Sendable {
    private var magnitude: UInt64 = 0
    private var digits = 0
    private var negative = false
    private var leadingZero = false
    private var valid = true
    private var length = 0

    public init() {}

    @inline(__always)
    public mutating func push(_ byte: UInt8) {
        length += 1
        guard valid else { return }
        if length == 1 && byte == UInt8(ascii: "-") {
            negative = true
            return
        }
        let digit = byte &- 48
        guard digit < 10, !leadingZero else {
            valid = false
            return
        }
        if digits == 0 && digit == 0 { leadingZero = true }
        digits += 1
        let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
        let (sum, o2) = times10.addingReportingOverflow(UInt64(digit))
        if o1 || o2 || sum > UInt64(Int64.max) + 1 { valid = false }
        magnitude = sum
    }

    /// The number `bytes` spell, by the same rules; nil when they are not one.
    public static func value(of bytes: some Sequence<UInt8>) -> Int64? {
        var number = DecimalNumber()
        for byte in bytes { number.push(byte) }
        return number.value
    }

    /// The number, or nil when the bytes are not one.
    public var value: Int64? {
        guard valid, digits > 0 else { return nil }
        if negative {
            if leadingZero { return nil }  // "-0"
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return magnitude > UInt64(Int64.max) ? nil : Int64(magnitude)
    }
}
