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

/// Bytes kept aside on the data path — a read's request, for a retry on another node if its
/// replica fails before replying — in storage of its own that keeps its capacity: filled with
/// one memcpy per input chunk, emptied by forgetting the count. (An `[UInt8]` appended to cost
/// about 290 instructions per request in this role: capacity and uniqueness checks, the generic
/// append, the removeAll.)
public final class SavedBytes {
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0
    public private(set) var count = 0

    public init() {}
    deinit { storage?.deallocate() }

    public func removeAll() { count = 0 }

    /// Holds `bytes` (a copy) instead of what it held.
    public func set(_ bytes: Span<UInt8>) {
        count = 0
        append(bytes)
    }

    /// The bytes, for a test or a log.
    public var bytes: [UInt8] {
        guard let storage, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: storage, count: count))
    }

    /// Appends a copy of `bytes`.
    public func append(_ bytes: Span<UInt8>) {
        bytes.withUnsafeBytes { append($0) }
    }

    fileprivate func append(_ chunk: UnsafeRawBufferPointer) {
        guard chunk.count > 0, let base = chunk.baseAddress else { return }
        reserve(chunk.count).copyMemory(from: base, byteCount: chunk.count)
        count += chunk.count
    }

    /// Room for `extra` more bytes: where they go (the caller fills them, then counts them).
    fileprivate func reserve(_ extra: Int) -> UnsafeMutableRawPointer {
        if count + extra > capacity {
            let grown = max(64, capacity * 2, count + extra)
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 8)
            if let storage {
                bigger.copyMemory(from: storage, byteCount: count)
                storage.deallocate()
            }
            storage = bigger
            capacity = grown
        }
        return storage! + count
    }

    fileprivate func added(_ extra: Int) { count += extra }

    fileprivate func withBytes<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        body(UnsafeRawBufferPointer(start: storage, count: count))
    }
}

/// Room reserved at the end of a connection's output for several small pieces at once (see
/// `Connection.reserveOutput`): one libevent reservation and one commit instead of an
/// `evbuffer_add` each. Nothing else may touch that output until it is committed.
public struct OutputRoom {
    fileprivate var base: UnsafeMutableRawPointer
    fileprivate var capacity: Int
    fileprivate var used = 0
}

extension Connection {
    /// Contiguous room for `count` more output bytes; nil when the connection is closed (the
    /// bytes would be dropped) or libevent cannot reserve it.
    public func reserveOutput(_ count: Int) -> OutputRoom? {
        guard isOpen, count > 0 else { return nil }
        var extent = iovec()
        guard evbuffer_reserve_space(outputBuffer, count, &extent, 1) == 1, let base = extent.iov_base,
              extent.iov_len >= count else { return nil }
        return OutputRoom(base: base, capacity: count)
    }

    /// Copies `saved`'s bytes into `room`, after what it holds.
    public func copy(_ saved: SavedBytes, into room: inout OutputRoom) {
        saved.withBytes { raw in
            guard let source = raw.baseAddress, raw.count > 0 else { return }
            precondition(room.used + raw.count <= room.capacity, "copy past the reserved output")
            (room.base + room.used).copyMemory(from: source, byteCount: raw.count)
            room.used += raw.count
        }
    }

    /// Adds what was copied into `room` to the output.
    public func commit(_ room: OutputRoom) {
        var extent = iovec(iov_base: room.base, iov_len: room.used)
        evbuffer_commit_space(outputBuffer, &extent, 1)
        outputAppendedExternally()
    }
}

extension Connection {
    /// Moves the first `count` input bytes into `saved` (after what it holds): one copy, and
    /// the input drained, in one libevent call.
    public func removeInput(_ count: Int, into saved: SavedBytes) {
        precondition(count >= 0 && count <= inputCount, "removeInput beyond the input")
        guard count > 0 else { return }
        let taken = evbuffer_remove(inputBuffer, saved.reserve(count), count)
        saved.added(max(0, Int(taken)))
        inputConsumed()
    }

    /// Copies `count` input bytes starting `offset` bytes in into `saved` (after what it holds).
    public func copyInput(from offset: Int, count: Int, into saved: SavedBytes) {
        precondition(offset >= 0 && count >= 0 && offset + count <= inputCount, "copyInput out of range")
        guard count > 0 else { return }
        var left = count
        withInputChunks(from: offset, through: offset + count) { chunk in
            let take = min(chunk.count, left)
            chunk.extracting(0..<take).withUnsafeBytes { saved.append($0) }
            left -= take
            return left > 0
        }
    }

    /// Appends `saved`'s bytes to the output (they stay in `saved`).
    public func write(_ saved: SavedBytes) {
        saved.withBytes { raw in
            guard let base = raw.baseAddress else { return }
            write(Span(_unsafeElements: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: raw.count)))
        }
    }
}
