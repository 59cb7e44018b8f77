@_spi(Testing) import EventLoop
import Testing

/// `ByteLog`, the FIFO of bytes a cluster session keeps its requests in, against a model: every
/// request still kept reads back as written, at the position `append` gave it, however often the
/// buffer compacted or grew underneath; releasing everything starts the buffer over.
@Suite struct ByteLogTests {
    @Test func keptBytesSurviveCompactionAndGrowth() {
        var random = SystemRandomNumberGenerator()
        let log = ByteLog()
        var kept: [(position: Int, bytes: [UInt8])] = []
        var expectedEnd = 0
        for round in 0..<4_000 {
            // Mostly small requests, now and then one of several KiB (the buffer must grow).
            let length = round % 97 == 0 ? Int.random(in: 2_000...20_000, using: &random) : Int.random(in: 0...300, using: &random)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            if !log.fits(length), let oldest = kept.first {
                log.release(upTo: oldest.position)
            }
            let position = log.append(bytes.span)
            #expect(position == expectedEnd, "positions count on across moves")
            expectedEnd += length
            kept.append((position, bytes))
            // Replies come back in order: the oldest requests are let go, a few at a time.
            if Int.random(in: 0..<3, using: &random) == 0 {
                kept.removeFirst(min(kept.count, Int.random(in: 1...6, using: &random)))
                log.release(upTo: kept.first?.position ?? log.end)
            }
            if round % 50 == 0 {
                for entry in kept {
                    #expect(log.holds(entry.position, entry.bytes.count))
                    #expect(log.bytes(at: entry.position, count: entry.bytes.count) == entry.bytes, "round \(round)")
                }
            }
        }
        #expect(log.end == expectedEnd)
        log.release(upTo: log.end)
        #expect(log.start == log.end)
        #expect(!log.holds(log.end - 1, 1), "released bytes are no longer kept")
        let next = log.append([1, 2, 3].span)
        #expect(next == expectedEnd && log.bytes(at: next, count: 3) == [1, 2, 3])
    }

    /// A burst that grew the log past 256 KiB: emptied, the log lets go of its buffer (an idle
    /// session does not hold a burst's memory); smaller buffers are kept for reuse.
    @Test func anEmptiedLogLetsGoOfALargeBuffer() {
        let log = ByteLog()
        let chunk = [UInt8](repeating: 7, count: 64 * 1024)
        var positions: [Int] = []
        for _ in 0..<5 { positions.append(log.append(chunk.span)) }
        #expect(log.bytes(at: positions[4], count: 3) == [7, 7, 7])
        log.release(upTo: log.end)
        #expect(!log.fits(1), "the large buffer is gone")
        let small = log.append([1, 2].span)
        #expect(log.bytes(at: small, count: 2) == [1, 2])
        log.release(upTo: log.end)
        #expect(log.fits(1000), "a small buffer stays for the next requests")
    }
}
