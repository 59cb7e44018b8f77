// libFuzzer target (Scripts/fuzz.sh), differential: the parser's fast path (a whole frame in one
// buffer) against its resumable state machine (the same bytes one at a time). Both must give the
// same frames, with the same arguments, and fail on the same input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestSplit(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = frames(input, chunk: max(input.count, 1))
    let dripped = frames(input, chunk: 1)
    precondition(whole.frames == dripped.frames, "frames differ: \(whole.frames) vs \(dripped.frames)")
    precondition(whole.failed == dripped.failed, "one failed, the other did not")
    return 0
}

/// Parses `input` arriving `chunk` bytes at a time; each frame as (length, arguments). The
/// buffer grows in place and framed bytes are skipped, not removed: no allocation per byte, so
/// dripping a 4 KiB input costs about as much as parsing it whole.
private func frames(_ input: [UInt8], chunk: Int) -> (frames: [[[UInt8]]], failed: Bool) {
    var parser = RequestParser(limits: RESPLimits(maxBulkLength: 1 << 20))
    var buffer: [UInt8] = []
    buffer.reserveCapacity(input.count)
    var result: [[[UInt8]]] = []
    var consumed = 0  // bytes of `buffer` already returned as frames
    var start = 0
    while start < input.count {
        buffer.append(contentsOf: input[start..<min(start + chunk, input.count)])
        start += chunk
        while buffer.count > consumed + parser.position {
            let from = consumed + parser.position
            var index = 0
            let frame: RequestFrame?
            do { frame = try parser.parse(buffer.span.extracting(from..<buffer.count), from: &index) } catch {
                return (result, true)
            }
            guard let frame else { break }
            result.append([Array(String(frame.length).utf8)] + parser.arguments.map { range in
                frame.isInline ? Array(parser.inlineBytes[range.offset..<range.offset + range.count])
                               : Array(buffer[consumed + range.offset..<consumed + range.offset + range.count])
            })
            consumed += frame.length
        }
    }
    return (result, false)
}
