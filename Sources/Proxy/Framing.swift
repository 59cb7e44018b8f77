import EventLoop
import RESP

extension Connection {
    /// Feeds the input from `offset` (where the scanner stopped) to `step`, chunk by chunk, until it
    /// yields a frame (returned), runs out of bytes (nil) or finds invalid RESP (thrown). Shared by
    /// client sessions (requests) and backend connections (replies).
    func nextFrame<Frame>(from offset: Int,
                          _ step: (Span<UInt8>, inout Int) throws(ProtocolError) -> Frame?) throws(ProtocolError) -> Frame? {
        var frame: Frame?
        var failure: ProtocolError?
        withInputChunks(from: offset) { chunk in
            var index = 0
            do throws(ProtocolError) {
                frame = try step(chunk, &index)
            } catch {
                failure = error
                return false
            }
            return frame == nil
        }
        if let failure { throw failure }
        return frame
    }

    /// Whether the input starts with `prefix`, read in place (no copy, no allocation).
    func inputStarts(with prefix: [UInt8]) -> Bool {
        guard inputCount >= prefix.count else { return false }
        var matched = 0
        withInputChunks { chunk in
            var i = 0
            while i < chunk.count && matched < prefix.count {
                if chunk[i] != prefix[matched] { return false }
                i += 1
                matched += 1
            }
            return matched < prefix.count
        }
        return matched == prefix.count
    }
}
