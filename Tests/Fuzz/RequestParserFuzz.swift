// libFuzzer target (Scripts/fuzz.sh): the request parser on arbitrary bytes, as the proxy feeds
// it (a frame at a time from the front of what is left). It must never crash, hang or return a
// frame that does not fit the bytes, and every argument range must lie inside its frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    var parser = RequestParser(limits: RESPLimits(maxBulkLength: 1 << 20))
    var offset = 0
    while offset < input.count {
        let rest = Array(input[offset...])
        var index = 0
        let frame: RequestFrame?
        do { frame = try parser.parse(rest.span, from: &index) } catch { return 0 }
        guard let frame else { return 0 }
        precondition(frame.length > 0 && frame.length <= rest.count && index == frame.length, "frame does not fit")
        precondition(frame.argumentCount == parser.arguments.count || frame.argumentCount == 0, "argument count")
        for range in parser.arguments {
            let limit = frame.isInline ? parser.inlineBytes.count : frame.length
            precondition(range.offset >= 0 && range.count >= 0 && range.offset + range.count <= limit, "argument outside its frame")
        }
        offset += frame.length
    }
    return 0
}
