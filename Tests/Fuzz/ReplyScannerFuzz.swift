// libFuzzer target (Scripts/fuzz.sh): the reply scanner on arbitrary bytes, checked against the
// independent decoder: wherever the scanner frames a reply, RESPValue's frame length agrees.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReplyScanner(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    var scanner = ReplyScanner(limits: RESPLimits(maxBulkLength: 1 << 20))
    var offset = 0
    while offset < input.count {
        let rest = Array(input[offset...])
        var index = 0
        let frame: ReplyFrame?
        do { frame = try scanner.scan(rest.span, from: &index) } catch { return 0 }
        guard let frame else { return 0 }
        precondition(frame.length > 0 && frame.length <= rest.count, "reply does not fit")
        if let decoded = try? RESPValue.frameLength(rest, from: 0) {
            precondition(decoded == frame.length, "scanner \(frame.length) vs decoder \(decoded)")
        }
        offset += frame.length
    }
    return 0
}
