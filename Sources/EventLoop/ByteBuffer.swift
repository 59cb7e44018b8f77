internal import CLibevent

/// An evbuffer of our own: where a reply that arrived out of turn waits for its client's turn.
/// Bytes move in from a connection's input and out to a connection's output without copying whole
/// chunks.
public final class ByteBuffer {
    let buffer: OpaquePointer

    public init() { buffer = evbuffer_new() }
    deinit { evbuffer_free(buffer) }

    public var count: Int { evbuffer_get_length(buffer) }

    public func append(_ bytes: Span<UInt8>) {
        bytes.withUnsafeBufferPointer { _ = evbuffer_add(buffer, $0.baseAddress, $0.count) }
    }

    public func append(_ bytes: [UInt8]) { append(bytes.span) }

    public func removeAll() { evbuffer_drain(buffer, count) }
}

extension Connection {
    /// Moves the first `count` input bytes into `buffer`.
    public func moveInput(_ count: Int, to buffer: ByteBuffer) {
        precondition(count <= inputCount, "moveInput beyond the input")
        evbuffer_remove_buffer(inputBuffer, buffer.buffer, count)
        inputConsumed()
    }

    /// Moves everything in `buffer` to this connection's output (the buffer is left empty).
    public func write(_ buffer: ByteBuffer) {
        guard isOpen else {
            buffer.removeAll()
            return
        }
        evbuffer_add_buffer(outputBuffer, buffer.buffer)
        outputAppendedExternally()
    }
}
