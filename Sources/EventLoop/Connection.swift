internal import CLibevent
internal import COpenSSL
#if canImport(Glibc)
internal import Glibc
#endif

/// What a connection tells its owner. Every method runs on the connection's loop thread.
public protocol ConnectionDelegate: AnyObject {
    /// An outbound connection finished connecting. Output written before this is sent now.
    func connectionDidConnect(_ connection: Connection)
    /// New bytes were appended to the input buffer.
    func connectionDidRead(_ connection: Connection)
    /// Output that had to wait for the socket (EAGAIN) is now all written: a peer that was slow to
    /// read has caught up.
    func connectionDidDrainOutput(_ connection: Connection)
    /// While reading was paused, the peer finished sending (FIN) with requests still unread:
    /// the owner decides whether to end now (see `Connection.checkHangup`).
    func connectionPeerFinishedSending(_ connection: Connection)
    /// The connection is closed: by the peer (`error == nil` for an orderly EOF), by an I/O error,
    /// a failed or timed-out connect, or by `close()` (after its output was flushed). Called once.
    func connectionDidClose(_ connection: Connection, error: SocketError?)
}

extension ConnectionDelegate {
    public func connectionDidConnect(_ connection: Connection) {}
    public func connectionDidDrainOutput(_ connection: Connection) {}
    public func connectionPeerFinishedSending(_ connection: Connection) {}
}

/// A TCP stream on raw libevent events and two evbuffers (LIBEVENT-NOTES.md: no bufferevents),
/// in plaintext or TLS.
///
/// - Reads go straight into the input evbuffer with `evbuffer_reserve_space` → `readv` →
///   `evbuffer_commit_space`, with no 4 KiB cap.
/// - Writes append to the output evbuffer and are flushed once per loop iteration with
///   `evbuffer_write_atmost`; EV_WRITE is armed only after the kernel said EAGAIN.
/// - `moveInput(_:to:)` hands bytes to another connection's output without copying whole chunks.
/// - TLS (a `TLSContext` given to `connect` or `start`): OpenSSL reads the socket itself (with
///   read-ahead: every record the kernel holds in one `read`) and decrypts straight into the
///   input evbuffer's reserved space; the output is encrypted from the evbuffer, up to one
///   16 KiB record per `SSL_write` (the pending output is pulled up into one block first), each
///   record one `write`, once per loop iteration as in plaintext. The owner sees plaintext only,
///   and hears `connectionDidConnect` once the handshake is done.
///
/// Lifetime: while open, the connection holds one retain on itself (taken in `start`/`connect`,
/// released in `teardown`), because libevent's callbacks need it alive and nothing else may.
public final class Connection {
    private enum State { case idle, connecting, handshaking, open, closing, closed }

    public let loop: EventLoop
    /// Held strongly while the connection is open; released when it closes (which breaks the
    /// usual connection ⇄ session cycle).
    public var delegate: ConnectionDelegate?
    /// Reading pauses while the input holds this many bytes or more; it resumes by itself once the
    /// owner consumes below it. `Int.max` (the default) never pauses.
    public var readHighWaterMark = Int.max
    /// Bytes asked of the kernel per `readv`. Just under 16 KiB on purpose: libevent adds its chain
    /// header (~64 B) and rounds the allocation up to a power of two, so reserving a full 16 KiB
    /// allocated 32 KiB per read. Freed at the top of glibc's heap, those 32 KiB chunks pushed it
    /// past the trim threshold again and again: 0.2 `brk` and 0.5 page faults per request on a
    /// 50-client GET run. At 16 KiB − 128 B both are 0.
    public var readChunkSize = 16 * 1024 - 128
    /// Bytes asked per `readv` after a read that filled `readChunkSize`.
    public static let largeReadChunkSize = 64 * 1024 - 128

    let fd: Int32
    /// Opened with `connect` (a backend), not accepted: which byte counters of the loop it feeds.
    private var outbound = false
    private var state: State = .idle
    // The evbuffers are created on first use: an idle client that never sent a byte costs neither.
    private var inputStorage: OpaquePointer?
    private var outputStorage: OpaquePointer?
    private var input: OpaquePointer {
        if let buffer = inputStorage { return buffer }
        let buffer = evbuffer_new()!
        inputStorage = buffer
        return buffer
    }
    /// The output evbuffer, with the staged bytes (see `stagesWrites`) added first: whatever
    /// reads, moves into or sends the output sees every byte written, in order.
    private var output: OpaquePointer {
        let buffer = outputStorage ?? makeOutput()
        if stagedCount > 0 { commitStaged(to: buffer) }
        return buffer
    }

    private func makeOutput() -> OpaquePointer {
        let buffer = evbuffer_new()!
        outputStorage = buffer
        return buffer
    }

    /// Small writes are copied into a buffer of the connection's own and reach the output
    /// evbuffer in one `evbuffer_add` when anything else touches it (the end-of-iteration
    /// flush, a move into it; counts include the staged bytes): a cluster session's requests
    /// go to several shards one by one, and an `evbuffer_add` each costs several times the
    /// copy. Set by the owner for connections that take many small writes per loop iteration
    /// (a shared backend connection).
    public var stagesWrites = false
    private var staged: UnsafeMutableRawPointer?
    private var stagedCount = 0
    /// The staging buffer's size, and the largest write staged.
    static let stageCapacity = 8 * 1024
    static let stageLimit = 1024

    /// Copies `count` bytes at `base` into the staging buffer; false when they must go to the
    /// output directly (staging off, or a large write).
    @inline(__always)
    private func stage(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
        guard stagesWrites, count <= Self.stageLimit else { return false }
        if stagedCount + count > Self.stageCapacity { commitStaged(to: outputStorage ?? makeOutput()) }
        if staged == nil { staged = UnsafeMutableRawPointer.allocate(byteCount: Self.stageCapacity, alignment: 16) }
        (staged! + stagedCount).copyMemory(from: base, byteCount: count)
        stagedCount += count
        return true
    }

    @inline(never)
    private func commitStaged(to buffer: OpaquePointer) {
        _ = evbuffer_add(buffer, staged, stagedCount)
        stagedCount = 0
    }

    /// Appends `count` bytes at `base` to the output (staged when small, see `stagesWrites`).
    @inline(__always)
    func append(_ base: UnsafeRawPointer, _ count: Int) {
        if !stage(base, count) { _ = evbuffer_add(output, base, count) }
    }
    var inputBuffer: OpaquePointer { input }
    var outputBuffer: OpaquePointer { output }
    private var readEvent: OpaquePointer?
    private var writeEvent: OpaquePointer?
    private var readEnabled = false
    private var pausedByOwner = false
    private var writeArmed = false
    private var dirty = false
    /// How many more output bytes may be sent before `openGate()`; nil: no gate (see `gateOutput`).
    private var gate: Int?
    /// See `cork()`.
    public private(set) var corked = false
    private var selfRetain: Unmanaged<Connection>?
    /// The TLS session, when the connection speaks TLS.
    private var tls: TLSSession?
    /// A TLS handshake that has not finished by then (loop µs) fails.
    private var handshakeDeadline = 0
    /// `close()` came while the TLS handshake ran: close (after flushing) once it is done.
    private var closeAfterHandshake = false
    /// How long an app has to finish its TLS handshake with the listener.
    public static let serverHandshakeTimeout = 10.0

    init(loop: EventLoop, fd: Int32) {
        self.loop = loop
        self.fd = fd
    }

    deinit {
        precondition(state == .idle || state == .closed, "connection freed while open")
        if state == .idle { _ = Glibc.close(fd) }
        if let inputStorage { evbuffer_free(inputStorage) }
        if let outputStorage { evbuffer_free(outputStorage) }
        staged?.deallocate()
    }

    // MARK: opening

    /// Opens an outbound connection. The delegate hears `connectionDidConnect` or
    /// `connectionDidClose(error:)` (refused, unreachable, or no answer within `timeout` seconds).
    /// With `tls` the handshake follows the TCP connect, within the same `timeout`, and the
    /// server's certificate is checked for `endpoint.host` (unless the context names another).
    public static func connect(to endpoint: Endpoint, on loop: EventLoop, timeout: Double, tls: TLSContext? = nil,
                               delegate: ConnectionDelegate) throws(SocketError) -> Connection {
        let fd = try Socket.startConnect(endpoint)
        let connection = Connection(loop: loop, fd: fd)
        if let tls {
            guard let session = tls.makeSession(fd: fd, host: endpoint.host) else {
                // Closed once, here: an idle connection's deinit would close the descriptor
                // again, by then perhaps another thread's.
                connection.close()
                throw SocketError(.tls, detail: "cannot start TLS: \(TLSContext.lastError())")
            }
            connection.tls = session
            connection.handshakeDeadline = loop.nowMicroseconds + Int(timeout * 1_000_000)
        }
        connection.delegate = delegate
        connection.outbound = true
        connection.state = .connecting
        connection.createEvents()
        var tv = timeval(seconds: timeout)
        event_add(connection.ensureWriteEvent(), &tv)
        connection.writeArmed = true
        return connection
    }

    /// Starts reading an accepted connection (see `Listener`). With `tls` (a server context) the
    /// app's handshake comes first: output written meanwhile waits for it, and a handshake that
    /// fails, or takes longer than `serverHandshakeTimeout`, closes the connection.
    public func start(delegate: ConnectionDelegate, tls: TLSContext? = nil) {
        precondition(state == .idle, "start() on a connection that is already running")
        self.delegate = delegate
        if let tls {
            createEvents()
            guard let session = tls.makeSession(fd: fd, host: nil) else {
                return teardown(error: SocketError(.tls, detail: "cannot start TLS: \(TLSContext.lastError())"))
            }
            self.tls = session
            handshakeDeadline = loop.nowMicroseconds + Int(Self.serverHandshakeTimeout * 1_000_000)
            state = .handshaking
            return continueHandshake()
        }
        state = .open
        createEvents()
        updateReading()
    }

    private func createEvents() {
        selfRetain = Unmanaged.passRetained(self)
        let context = selfRetain!.toOpaque()
        readEvent = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), { _, what, ctx in
            let connection = Unmanaged<Connection>.fromOpaque(ctx!).takeUnretainedValue()
            connection.loop.callback { connection.handleReadable(timedOut: Int32(what) & EV_TIMEOUT != 0) }
        }, context)
    }

    /// EV_WRITE is needed only while connecting and after the kernel said EAGAIN; most connections
    /// never need it, so it is created on first use (an idle connection carries one event, not two).
    private func ensureWriteEvent() -> OpaquePointer? {
        if writeEvent == nil, let context = selfRetain?.toOpaque() {
            writeEvent = event_new(loop.base, fd, Int16(EV_WRITE | EV_PERSIST), { _, what, ctx in
                let connection = Unmanaged<Connection>.fromOpaque(ctx!).takeUnretainedValue()
                connection.loop.callback { connection.handleWritable(timedOut: Int32(what) & EV_TIMEOUT != 0) }
            }, context)
        }
        return writeEvent
    }

    // MARK: state

    /// True until the connection is closed (or starts closing after `close()`).
    public var isOpen: Bool { state == .open || state == .connecting || state == .handshaking }
    /// Speaks TLS.
    public var isTLS: Bool { tls != nil }
    /// The negotiated TLS version and cipher, once the handshake is done ("" in plaintext).
    public var tlsSummary: String { state == .open ? tls?.summary ?? "" : "" }
    /// Bytes waiting in the input buffer.
    public var inputCount: Int { inputStorage.map { evbuffer_get_length($0) } ?? 0 }
    /// Bytes waiting to be written (with TLS: plaintext not yet encrypted, and records not yet sent).
    public var outputCount: Int { plainOutputCount + (tls?.ciphertextCount ?? 0) }
    private var plainOutputCount: Int { (outputStorage.map { evbuffer_get_length($0) } ?? 0) + stagedCount }
    /// The local port (useful when a test connects to port 0 listeners).
    public var localPort: UInt16 { Socket.localPort(fd) }
    /// The other end as "ip:port" (CLIENT LIST's `addr`), and this end (`laddr`).
    public var peerAddress: String { Socket.addressText(fd, peer: true) }
    public var localAddress: String { Socket.addressText(fd, peer: false) }
    /// Whether the peer came in through a Unix-domain socket (CLIENT LIST's `U` flag).
    public var isUnixSocket: Bool { Socket.isUnix(fd) }
    /// The socket's file descriptor number (CLIENT LIST's `fd`).
    public var descriptor: Int32 { fd }

    // MARK: reading

    /// Stops reading until `resumeReading()` (back-pressure from the owner).
    public func pauseReading() {
        pausedByOwner = true
        updateReading()
    }

    public func resumeReading() {
        pausedByOwner = false
        updateReading()
    }

    private func updateReading() {
        guard state == .open else { return }
        let want = !pausedByOwner && inputCount < readHighWaterMark
        if want != readEnabled {
            readEnabled = want
            if want { event_add(readEvent, nil) } else { event_del(readEvent) }
            // Records OpenSSL read ahead while reading was paused: the socket will not say so.
            if want, let tls, tls.hasBuffered { event_active(readEvent, EV_READ, 0) }
        }
    }

    /// Whether reading is paused (by the owner, or the input cap).
    public var isReadingPaused: Bool { state == .open && !readEnabled }

    /// A paused connection reads nothing, so no read tells it the peer is gone: a client blocked
    /// in BLPOP 0 (or WAIT, or held behind one) that resets its connection would be kept forever,
    /// with its dedicated backend connection. Redis reads a blocked client on and frees it at the
    /// end of its input. The owner calls this now and then for paused connections (a `poll` for
    /// POLLRDHUP: nothing on the hot path). A reset, or a FIN after everything sent was read: the
    /// connection ends now, as Redis's next read would end it. A FIN with bytes still unread:
    /// those are requests Redis would read (and, unless the client is blocked, run) before it saw
    /// the end, so the delegate decides (`connectionPeerFinishedSending`).
    public func checkHangup() {
        guard state == .open, !readEnabled, ra_peer_hung_up(fd) != 0 else { return }
        var byte: UInt8 = 0
        let peeked = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if peeked > 0 && !Socket.wasReset(fd) {
            delegate?.connectionPeerFinishedSending(self)
            return
        }
        if peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
        let code = peeked < 0 ? errno : peeked > 0 ? ECONNRESET : 0
        teardown(error: code == 0 ? nil : SocketError(.read, code: code, detail: "read: \(Socket.errnoText(code))"))
    }

    private func handleReadable(timedOut: Bool) {
        if state == .handshaking { return timedOut ? handshakeTimedOut() : continueHandshake() }
        guard state == .open else { return }
        if tls != nil { return handleReadableTLS() }
        if skipping > 0 && !skipArrivingInput() { return }
        var readSomething = false
        var ending: SocketError?? = nil  // .some(nil): EOF; .some(error): a read error
        var rounds = 0
        while rounds < 4 {
            rounds += 1
            // A first read that fills its chunk means more is waiting (a large value, a deep
            // pipeline): the next reads take the pool's largest block, 64 KiB − 128 B.
            let chunk = rounds == 1 ? readChunkSize : max(readChunkSize, Self.largeReadChunkSize)
            let room = min(chunk, readHighWaterMark == .max ? chunk : max(readHighWaterMark - inputCount, 1))
            let vectors = evbuffer_reserve_space(input, room, loop.iovecs, 2)
            guard vectors > 0 else {
                ending = .some(SocketError(.read, detail: "out of memory reserving input"))
                break
            }
            // The reserved extents may add up to more than asked: read no more than `room`, or a
            // read could run past the high-water mark.
            var budget = room
            for i in 0..<Int(vectors) {
                let take = min(budget, loop.iovecs[i].iov_len)
                loop.iovecs[i].iov_len = take
                budget -= take
            }
            let got = readv(fd, loop.iovecs, vectors)
            if got > 0 {
                // Commit exactly what was read: trim the vectors to `got` bytes.
                var left = got
                for i in 0..<Int(vectors) {
                    let take = min(left, loop.iovecs[i].iov_len)
                    loop.iovecs[i].iov_len = take
                    left -= take
                }
                evbuffer_commit_space(input, loop.iovecs, vectors)
                if outbound { loop.backendBytesIn &+= got } else { loop.clientBytesIn &+= got }
                readSomething = true
                if got < room { break }
            } else if got == 0 {
                evbuffer_commit_space(input, loop.iovecs, 0)
                ending = .some(nil)
                break
            } else {
                let e = errno
                evbuffer_commit_space(input, loop.iovecs, 0)
                if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { break }
                ending = .some(SocketError(.read, code: e, detail: "read: \(Socket.errnoText(e))"))
                break
            }
            if inputCount >= readHighWaterMark { break }
        }
        // Bytes read before an EOF or an error in the same callback are delivered first: a peer
        // that writes its last bytes and closes must not lose them.
        if readSomething { delegate?.connectionDidRead(self) }
        if let ending {
            return state == .open ? teardown(error: ending) : ()
        }
        updateReading()
    }

    /// The next `count` bytes to arrive are not wanted (the rest of a reply nobody will read):
    /// they are dropped in the kernel as they come (`recv` with `MSG_TRUNC`: no copy into the
    /// input), before anything after them is read. Only with nothing left in the input, and not
    /// under TLS (whose records must be decrypted whole).
    public func skipArriving(_ count: Int) {
        guard count > 0, tls == nil, inputCount == 0 else { return }
        skipping = count
    }

    /// Bytes `skipArriving` still drops.
    public private(set) var skipping = 0

    /// Drops what arrived of the skipped bytes. False: the socket has no more for now, it ended
    /// or failed (the connection is then torn down).
    private func skipArrivingInput() -> Bool {
        while skipping > 0 {
            let want = min(skipping, Self.skipChunk)
            let got = recv(fd, loop.scratch, want, Int32(MSG_TRUNC) | Int32(MSG_DONTWAIT))
            if got > 0 {
                skipping -= got
                if outbound { loop.backendBytesIn &+= got } else { loop.clientBytesIn &+= got }
                continue
            }
            if got == 0 {
                teardown(error: nil)
                return false
            }
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return false }
            teardown(error: SocketError(.read, code: e, detail: "read: \(Socket.errnoText(e))"))
            return false
        }
        return true
    }

    /// Most bytes dropped per `recv` while skipping (the loop's scratch buffer, never written).
    static let skipChunk = EventLoop.scratchSize

    /// Calls `body` with each contiguous chunk of input from byte `offset` on, in order, until it
    /// returns false or `end` bytes (default: all) are covered; the last chunk may reach past
    /// `end`. The spans borrow libevent's memory and must not escape the call.
    public func withInputChunks(from offset: Int = 0, through end: Int = .max, _ body: (Span<UInt8>) -> Bool) {
        let total = min(inputCount, end)
        guard total > offset else { return }
        // evbuffer_peek reports how many vectors the span needs, but fills at most
        // `iovecCapacity`: walk in batches (LIBEVENT-NOTES.md #3). The first batch is peeked
        // from the buffer's start and the `offset` bytes skipped here: positioning with
        // evbuffer_ptr_set walks the chain too, and cost more than the skip (the offset is
        // usually inside the first block: a run of requests or replies not yet moved).
        var position = 0  // bytes of the buffer the vectors so far covered
        var skip = offset
        while position < total {
            let needed: Int32
            if position == 0 {
                needed = evbuffer_peek(input, total, nil, loop.iovecs, Int32(EventLoop.iovecCapacity))
            } else {
                var ptr = evbuffer_ptr()
                guard evbuffer_ptr_set(input, &ptr, position, EVBUFFER_PTR_SET) == 0 else { return }
                needed = evbuffer_peek(input, total - position, &ptr, loop.iovecs, Int32(EventLoop.iovecCapacity))
            }
            let filled = min(Int(needed), EventLoop.iovecCapacity)
            guard filled > 0 else { return }
            for i in 0..<filled {
                let vector = loop.iovecs[i]
                let length = min(vector.iov_len, total - position)
                position += length
                if skip >= length {
                    skip -= length
                } else {
                    let chunk = UnsafeBufferPointer(start: vector.iov_base.assumingMemoryBound(to: UInt8.self) + skip,
                                                    count: length - skip)
                    skip = 0
                    if !body(chunk.span) { return }
                }
                if position == total { return }
            }
        }
    }

    /// Copies `count` input bytes starting at `offset` into `destination` (appending).
    public func copyInput(from offset: Int, count: Int, into destination: inout [UInt8]) {
        precondition(offset >= 0 && count >= 0 && offset + count <= inputCount, "copyInput out of range")
        guard count > 0 else { return }
        // Append straight from libevent's chunks (a memcpy each) rather than zero-filling first,
        // and peek only as far as the bytes reach (usually the first chunk or two).
        destination.reserveCapacity(destination.count + count)
        var left = count
        withInputChunks(from: offset, through: offset + count) { chunk in
            let take = min(chunk.count, left)
            chunk.extracting(0..<take).withUnsafeBufferPointer { destination.append(contentsOf: $0) }
            left -= take
            return left > 0
        }
    }

    /// Drops the first `count` input bytes.
    public func discardInput(_ count: Int) {
        evbuffer_drain(input, count)
        inputConsumed()
    }

    /// Moves the first `count` input bytes to `other`'s output. Whole libevent chunks change owner
    /// without being copied; only a partial chunk at either end is copied.
    public func moveInput(_ count: Int, to other: Connection) {
        precondition(count <= inputCount, "moveInput beyond the input")
        evbuffer_remove_buffer(input, other.output, count)
        other.outputAppended()
        inputConsumed()
    }

    // MARK: writing

    /// Appends bytes to the output; they are written at the end of this loop iteration.
    public func write(_ bytes: Span<UInt8>) {
        guard isOpen else { return }
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return }
            append(base, raw.count)
        }
        outputAppended()
    }

    public func write(_ bytes: [UInt8]) { write(bytes.span) }

    public func write(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in write(utf8.span) }
    }

    func outputAppendedExternally() { outputAppended() }
    /// Input was taken: reading may resume (below the high-water mark again). Reading that is
    /// on stays on (only the owner's pause or more input turns it off, and both update it
    /// themselves): nothing to look at, on the path every reply and request takes.
    @inline(__always)
    func inputConsumed() {
        if readEnabled { return }
        updateReading()
    }

    private func outputAppended() {
        guard !dirty, isOpen || state == .closing else { return }
        // Corked output waits for `flushCorked()`, unless it has grown past the cork's limit:
        // what is held stays small, and a writer that waits for the output to drain never
        // waits on a cork.
        if corked && outputCount < Self.corkLimit { return }
        dirty = true
        loop.markDirty(self)
    }

    /// Output past the first `count` bytes waits until `openGate()`: nothing after them reaches
    /// the socket before then, and a close before then drops it. (A backend connection logging
    /// in as an app's user sends its AUTH alone: what follows must never run as another user.)
    public func gateOutput(after count: Int) {
        gate = count
    }

    /// What waited behind the gate is written at the end of this loop iteration.
    public func openGate() {
        guard gate != nil else { return }
        gate = nil
        if outputCount > 0 { flushCorked() }
    }

    /// Output bytes that may be sent now (all, or what the gate lets through).
    private var sendableCount: Int { gate.map { max(0, min($0, plainOutputCount)) } ?? plainOutputCount }

    /// The most output a cork holds back.
    static let corkLimit = 64 * 1024

    /// Output appended from now on waits (up to `corkLimit` bytes) until `flushCorked()` or
    /// `uncork()`: a session that owes a pipeline's replies from several backends sends them
    /// in one write, as Redis sends a pipeline's replies, instead of one write per backend.
    public func cork() { corked = true }

    /// What is held is written at the end of this loop iteration, with anything appended
    /// until then (bytes moved in later in the same callback go too); the cork stays.
    public func flushCorked() {
        guard !dirty, isOpen || state == .closing else { return }
        dirty = true
        loop.markDirty(self)
    }

    /// Output is written as it comes again, starting with what is held.
    public func uncork() {
        guard corked else { return }
        corked = false
        flushCorked()
    }

    /// Writes what the kernel takes now; arms EV_WRITE for the rest. Called by the loop's
    /// end-of-iteration flush and by EV_WRITE.
    func flushNow() {
        dirty = false
        guard state == .open || state == .closing else { return }
        if let tls {
            guard writeTLS(tls) else { return }
        } else {
            guard send(output, countingBytes: true) else { return }
        }
        // A TLS write that waits for a read is retried by the read, not by EV_WRITE.
        let pending = tls.map { $0.ciphertextCount > 0 || (sendableCount > 0 && !$0.writeWantsRead) } ?? (sendableCount > 0)
        let drainedAfterWaiting = writeArmed && !pending
        if pending != writeArmed {
            writeArmed = pending
            if pending { event_add(ensureWriteEvent(), nil) } else { event_del(writeEvent) }
        }
        if !pending && state == .closing { return teardown(error: nil) }
        if drainedAfterWaiting { delegate?.connectionDidDrainOutput(self) }
    }

    private func handleWritable(timedOut: Bool) {
        if state == .connecting {
            return finishConnect(timedOut: timedOut)
        }
        if state == .handshaking { return timedOut ? handshakeTimedOut() : continueHandshake() }
        flushNow()
    }

    private func finishConnect(timedOut: Bool) {
        if timedOut {
            return fail(SocketError(.timeout, detail: "connect timed out"))
        }
        let e = Socket.pendingError(fd)
        if e != 0 {
            return fail(SocketError(.connect, code: e, detail: "connect: \(Socket.errnoText(e))"))
        }
        event_del(writeEvent)
        writeArmed = false
        if tls != nil {
            state = .handshaking
            return continueHandshake()
        }
        state = .open
        updateReading()
        delegate?.connectionDidConnect(self)
        if outputCount > 0 { flushNow() }
    }

    // MARK: TLS

    /// Drives the handshake one step: waits for whichever direction OpenSSL needs (until the
    /// deadline), and once it is done the connection opens as a plaintext one would.
    private func continueHandshake() {
        guard state == .handshaking, let tls else { return }
        let step = tls.handshake()
        // What the step wrote (the next flight, or an alert before a failure) goes out now; the
        // rest when the socket is writable.
        guard sendCiphertext(tls) else { return }
        switch step {
        case .done:
            event_del(readEvent)
            readEnabled = false
            if writeArmed {
                event_del(writeEvent)
                writeArmed = false
            }
            state = .open
            updateReading()
            if outbound { delegate?.connectionDidConnect(self) }
            guard state == .open else { return }
            if closeAfterHandshake { return close() }
            if outputCount > 0 { flushNow() }
            if tls.hasBuffered, readEnabled { event_active(readEvent, EV_READ, 0) }
        case .wantRead, .wantWrite:
            var tv = timeval(seconds: handshakeSecondsLeft)
            if tls.ciphertextCount > 0 {
                event_add(ensureWriteEvent(), &tv)
                writeArmed = true
            } else if writeArmed {
                event_del(writeEvent)
                writeArmed = false
            }
            event_add(readEvent, &tv)
        case .closed:
            fail(SocketError(.tls, detail: "TLS handshake: \(outbound ? "the server" : "the client") closed the connection"))
        case .failed(let reason):
            fail(SocketError(.tls, detail: "TLS handshake failed: \(reason)"))
        }
    }

    private var handshakeSecondsLeft: Double {
        max(Double(handshakeDeadline - loop.nowMicroseconds) / 1_000_000, 0.001)
    }

    private func handshakeTimedOut() {
        fail(SocketError(.timeout, detail: "TLS handshake timed out"))
    }

    /// Decrypts what the socket holds into the input. Space is reserved as for plaintext (the
    /// free end of the last block, then a new one: up to two extents) and filled by `SSL_read`s,
    /// each of which gives at most one record (16 KiB); OpenSSL keeps what does not fit for the
    /// next call.
    private func handleReadableTLS() {
        guard let tls else { return }
        var readSomething = false
        var ending: SocketError?? = nil
        var stopped: TLSSession.Step?
        var rounds = 0
        while rounds < 4, stopped == nil {
            rounds += 1
            let room = min(Self.largeReadChunkSize, readHighWaterMark == .max ? Self.largeReadChunkSize : max(readHighWaterMark - inputCount, 1))
            let vectors = Int(evbuffer_reserve_space(input, room, loop.iovecs, 2))
            guard vectors > 0 else {
                ending = .some(SocketError(.read, detail: "out of memory reserving input"))
                break
            }
            var budget = room
            var got = 0
            for i in 0..<vectors {
                let capacity = min(budget, loop.iovecs[i].iov_len)
                var used = 0
                while used < capacity, stopped == nil {
                    let step = tls.read(into: loop.iovecs[i].iov_base + used, count: capacity - used)
                    if case .done(let count) = step { used += count } else { stopped = step }
                }
                loop.iovecs[i].iov_len = used
                budget -= used
                got += used
            }
            evbuffer_commit_space(input, loop.iovecs, Int32(vectors))
            if got > 0 {
                if outbound { loop.backendBytesIn &+= got } else { loop.clientBytesIn &+= got }
                readSomething = true
            }
            if inputCount >= readHighWaterMark { break }
        }
        switch stopped {
        case nil, .done?, .wantRead?: break
        case .wantWrite?:
            // Renegotiation: OpenSSL must write before it reads on.
            if !writeArmed {
                event_add(ensureWriteEvent(), nil)
                writeArmed = true
            }
        case .closed?: ending = .some(nil)
        case .failed(let reason)?: ending = .some(SocketError(.read, detail: "TLS read: \(reason)"))
        }
        if readSomething { delegate?.connectionDidRead(self) }
        if let ending {
            return state == .open ? teardown(error: ending) : ()
        }
        guard state == .open || state == .closing else { return }
        if tls.writeWantsRead {
            tls.writeWantsRead = false
            flushNow()
        } else if tls.ciphertextCount > 0 {
            outputAppended()  // a record the read made OpenSSL write (a key update, an alert)
        }
        updateReading()
        // Stopped before OpenSSL ran dry (the round limit, or the input cap), with bytes it read
        // ahead: the socket will not say so, so come back next iteration. (After WANT_READ what
        // it holds is a partial record, which only the socket's next bytes complete.)
        if stopped == nil, state == .open, readEnabled, tls.hasBuffered { event_active(readEvent, EV_READ, 0) }
    }

    /// Encrypts the output into records (at most 16 KiB each) while fewer than 256 KiB of them
    /// wait, and sends the records with one `writev` per round. False when the connection failed.
    private func writeTLS(_ tls: TLSSession) -> Bool {
        while true {
            while sendableCount > 0, !tls.writeWantsRead, tls.ciphertextCount < 256 * 1024 {
                // A large first block (a value moved from another connection) is encrypted in place;
                // small ones (many replies) are pulled up into one record first. OpenSSL's rule: a
                // write that must be retried is retried with the same bytes.
                let contiguous = evbuffer_get_contiguous_space(output)
                let count = tls.pendingWrite > 0 ? tls.pendingWrite
                    : min(contiguous >= 4096 ? contiguous : plainOutputCount, 16 * 1024, sendableCount)
                guard let bytes = evbuffer_pullup(output, count) else {
                    fail(SocketError(.write, detail: "out of memory gathering output"))
                    return false
                }
                tls.moreFollows = plainOutputCount > count
                let step = tls.write(bytes, count: count)
                tls.moreFollows = false  // records OpenSSL writes elsewhere (handshake, alerts) go at once
                switch step {
                case .done(let written):
                    tls.pendingWrite = 0
                    evbuffer_drain(output, written)
                    if let left = gate { gate = left - written }
                    if outbound { loop.backendBytesOut &+= written } else { loop.clientBytesOut &+= written }
                case .wantWrite:  // not from the evbuffer BIO, which takes everything
                    tls.pendingWrite = count
                case .wantRead:
                    tls.pendingWrite = count
                    tls.writeWantsRead = true
                case .closed:
                    fail(SocketError(.write, code: EPIPE, detail: "TLS write: the peer closed the connection"))
                    return false
                case .failed(let reason):
                    fail(SocketError(.write, detail: "TLS write: \(reason)"))
                    return false
                }
                if tls.pendingWrite > 0 { break }
            }
            guard sendCiphertext(tls) else { return false }
            tls.push()
            // Go on only when every record went out and plaintext is left (the 256 KiB bound).
            if tls.ciphertextCount > 0 || sendableCount == 0 || tls.writeWantsRead || tls.pendingWrite > 0 { return true }
        }
    }

    /// Sends the records OpenSSL wrote, as far as the socket takes them. False when the
    /// connection failed.
    private func sendCiphertext(_ tls: TLSSession) -> Bool {
        send(tls.ciphertext, countingBytes: false)
    }

    /// Writes `buffer` to the socket as far as the kernel takes it (the plaintext output, or
    /// TLS records). False when the connection failed. `countingBytes`: the bytes feed the loop's
    /// byte counters (TLS counts the plaintext it encrypts instead).
    @inline(__always)
    private func send(_ buffer: OpaquePointer, countingBytes: Bool) -> Bool {
        // The gate holds back the plaintext output (`countingBytes`), not TLS records.
        let gated = countingBytes && gate != nil
        while evbuffer_get_length(buffer) > 0 {
            if gated && gate! <= 0 { return true }
            let written = evbuffer_write_atmost(buffer, fd, gated ? gate! : -1)
            if written < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { return true }
                if e == EINTR { continue }
                fail(SocketError(.write, code: e, detail: "write: \(Socket.errnoText(e))"))
                return false
            }
            if written == 0 { return true }
            if gated { gate! -= Int(written) }
            if countingBytes {
                if outbound { loop.backendBytesOut &+= Int(written) } else { loop.clientBytesOut &+= Int(written) }
            }
        }
        return true
    }

    // MARK: closing

    /// Closes the connection. With `flush` (the default) pending output is written first and
    /// nothing more is read; the delegate hears `connectionDidClose` when the socket is closed.
    public func close(flush: Bool = true) {
        corked = false
        // Output held behind a gate that never opened is dropped, never sent.
        let flush = flush && gate == nil
        switch state {
        case .idle:
            state = .closed
            _ = Glibc.close(fd)
        case .connecting:
            teardown(error: nil)
        case .handshaking:
            if flush && outputCount > 0 { closeAfterHandshake = true } else { teardown(error: nil) }
        case .open:
            if flush && outputCount > 0 {
                state = .closing
                readEnabled = false
                event_del(readEvent)
                flushNow()
            } else {
                teardown(error: nil)
            }
        case .closing, .closed:
            return
        }
    }

    private func fail(_ error: SocketError) {
        teardown(error: error)
    }

    /// The one place a running connection ends: frees its events, closes the socket, tells the
    /// delegate, and releases the retain taken in `createEvents`.
    private func teardown(error: SocketError?) {
        guard state != .closed else { return }
        // An orderly end says so (close_notify), as Redis does; a failed connection just closes.
        if let tls, error == nil, state == .open || state == .closing {
            tls.shutdown()
            _ = evbuffer_write_atmost(tls.ciphertext, fd, -1)  // the close_notify, if the socket takes it
        }
        state = .closed
        if let readEvent { event_free(readEvent) }
        if let writeEvent { event_free(writeEvent) }
        readEvent = nil
        writeEvent = nil
        _ = Glibc.close(fd)
        tls = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.connectionDidClose(self, error: error)
        selfRetain?.release()
        selfRetain = nil
    }
}

extension timeval {
    init(seconds: Double) {
        let whole = seconds.rounded(.down)
        self.init(tv_sec: Int(whole), tv_usec: Int((seconds - whole) * 1_000_000))
    }
}

extension Connection {
    public enum Side: Sendable { case input, output }

    /// The start addresses of the libevent chunks holding a buffer's bytes: two buffers that report
    /// the same addresses share memory, which is how the tests prove a move did not copy.
    @_spi(Testing) public func chunkAddresses(of side: Side) -> [UInt] {
        let buffer = side == .input ? input : output
        let count = Int(evbuffer_peek(buffer, -1, nil, nil, 0))
        guard count > 0 else { return [] }
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: count)
        defer { vectors.deallocate() }
        let filled = Int(evbuffer_peek(buffer, -1, nil, vectors, Int32(count)))
        return (0..<min(filled, count)).map { UInt(bitPattern: vectors[$0].iov_base) }
    }
}
