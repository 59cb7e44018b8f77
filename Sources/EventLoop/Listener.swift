internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif

/// Accepts TCP connections on one address and hands each to `onAccept`, not yet reading:
/// the receiver calls `Connection.start(delegate:)`.
///
/// The listener's event holds an unretained reference; `close()` or deinit frees the event, so the
/// owner keeps the listener alive for as long as it should accept.
public final class Listener {
    public let loop: EventLoop
    public let endpoint: Endpoint
    /// The bound port (the real one when `endpoint.port` was 0).
    public let port: UInt16
    private let fd: Int32
    private var event: OpaquePointer?
    private let onAccept: (Connection) -> Void

    /// Binds and listens. `reusePort` sets SO_REUSEPORT so several loops can share one address.
    public init(loop: EventLoop, endpoint: Endpoint, reusePort: Bool = false, backlog: Int32 = 511,
                onAccept: @escaping (Connection) -> Void) throws(SocketError) {
        self.loop = loop
        self.endpoint = endpoint
        self.onAccept = onAccept
        fd = try Socket.bindAndListen(endpoint, reusePort: reusePort, backlog: backlog)
        port = Socket.localPort(fd)
        event = event_new(loop.base, fd, Int16(EV_READ | EV_PERSIST), { _, _, ctx in
            let listener = Unmanaged<Listener>.fromOpaque(ctx!).takeUnretainedValue()
            listener.loop.callback { listener.acceptAll() }
        }, Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit { close() }

    /// Stops accepting and closes the listening socket. Accepted connections carry on.
    public func close() {
        guard let event else { return }
        event_free(event)
        self.event = nil
        _ = Glibc.close(fd)
    }

    private func acceptAll() {
        // Accept what is queued, bounded so one busy listener cannot starve the loop.
        for _ in 0..<64 {
            let client = ra_accept_nonblocking(fd)
            if client < 0 { return }  // EAGAIN, or a transient error (EMFILE, ECONNABORTED)
            Socket.setNoDelay(client)
            onAccept(Connection(loop: loop, fd: client))
        }
    }
}
