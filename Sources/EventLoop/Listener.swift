internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif

/// Accepts connections on one TCP address or one Unix socket and hands each to `onAccept`, not
/// yet reading: the receiver calls `Connection.start(delegate:)`.
///
/// The listener's event holds an unretained reference; `close()` or deinit frees the event, so the
/// owner keeps the listener alive for as long as it should accept.
public final class Listener {
    public let loop: EventLoop
    /// The bound TCP port (the real one when the endpoint's port was 0); 0 for a Unix socket.
    public let port: UInt16
    private let fd: Int32
    private let tcp: Bool
    private var event: OpaquePointer?
    private let onAccept: (Connection) -> Void

    /// Binds and listens. `reusePort` sets SO_REUSEPORT so several loops can share one address.
    public convenience init(loop: EventLoop, endpoint: Endpoint, reusePort: Bool = false, backlog: Int32 = 511,
                            onAccept: @escaping (Connection) -> Void) throws(SocketError) {
        let fd = try Socket.bindAndListen(endpoint, reusePort: reusePort, backlog: backlog)
        self.init(loop: loop, fd: fd, tcp: true, onAccept: onAccept)
    }

    /// Accepts on `socket`, which other loops may accept on too (a Unix socket has no
    /// SO_REUSEPORT: every worker waits on the one socket, and whichever accepts first serves).
    public convenience init(loop: EventLoop, socket: UnixSocketFile,
                            onAccept: @escaping (Connection) -> Void) throws(SocketError) {
        self.init(loop: loop, fd: try socket.duplicateDescriptor(), tcp: false, onAccept: onAccept)
    }

    private init(loop: EventLoop, fd: Int32, tcp: Bool, onAccept: @escaping (Connection) -> Void) {
        self.loop = loop
        self.onAccept = onAccept
        self.fd = fd
        self.tcp = tcp
        port = tcp ? Socket.localPort(fd) : 0
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
            if tcp { Socket.setNoDelay(client) }
            onAccept(Connection(loop: loop, fd: client))
        }
    }
}

/// A listening Unix-domain socket: the path, bound once with its mode, shared by every worker's
/// `Listener`. `close()` closes it and removes the path (if it is still this socket's).
public final class UnixSocketFile: Sendable {
    public let path: String
    private let fd: Int32
    private let inode: UInt64

    /// Binds `path` with permissions `mode` and listens. A socket file nobody listens on (left by
    /// a crash) is replaced; a path another process listens on, or a path that is not a socket,
    /// is refused. The mode is set before `listen`, so no connection is accepted under wider
    /// permissions.
    public init(path: String, mode: UInt32, backlog: Int32 = 511) throws(SocketError) {
        self.path = path
        try Socket.removeStaleSocket(path)
        var address = try Socket.unixAddress(path)
        let fd = try Socket.open(family: AF_UNIX)
        self.fd = fd
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if bound != 0 {
            let e = errno
            Glibc.close(fd)
            throw SocketError(.bind, code: e, detail: "bind unix:\(path): \(Socket.errnoText(e))")
        }
        if chmod(path, mode_t(mode)) != 0 || Glibc.listen(fd, backlog) != 0 {
            let e = errno
            Glibc.close(fd)
            unlink(path)
            throw SocketError(.listen, code: e, detail: "listen unix:\(path): \(Socket.errnoText(e))")
        }
        var status = stat()
        inode = stat(path, &status) == 0 ? UInt64(status.st_ino) : 0
    }

    /// Sets the socket file's permissions (a reload of `listen_mode`). False with errno's text.
    public func setMode(_ mode: UInt32) -> String? {
        chmod(path, mode_t(mode)) == 0 ? nil : Socket.errnoText(errno)
    }

    func duplicateDescriptor() throws(SocketError) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            let e = errno
            throw SocketError(.socket, code: e, detail: "dup unix:\(path): \(Socket.errnoText(e))")
        }
        return copy
    }

    /// Closes this descriptor (listeners holding a duplicate keep accepting until they close)
    /// and removes the path, unless another socket has taken it since.
    public func close() {
        var status = stat()
        if stat(path, &status) == 0, UInt64(status.st_ino) == inode { unlink(path) }
        _ = Glibc.close(fd)
    }
}
