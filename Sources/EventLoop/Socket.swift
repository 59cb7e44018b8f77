internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif

/// The C socket calls the loop needs, each wrapped once, with errno turned into `SocketError`.
enum Socket {
    /// A resolved socket address (`sockaddr_storage` plus its length).
    struct Address {
        var storage = sockaddr_storage()
        var length: socklen_t = 0
        var family: Int32 { Int32(storage.ss_family) }
    }

    static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Resolves `endpoint` (numeric addresses without a DNS query; names through getaddrinfo,
    /// which blocks: a name is resolved on every connect, as pod IPs change).
    static func resolve(_ endpoint: Endpoint) throws(SocketError) -> Address {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result)
        guard rc == 0, let first = result else {
            let why = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            throw SocketError(.resolve, detail: "cannot resolve \(endpoint.host): \(why)")
        }
        defer { freeaddrinfo(result) }
        var address = Address()
        address.length = first.pointee.ai_addrlen
        withUnsafeMutableBytes(of: &address.storage) { raw in
            raw.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr,
                                                        count: Int(first.pointee.ai_addrlen)))
        }
        return address
    }

    static func open(family: Int32) throws(SocketError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(family, type, 0)
        guard fd >= 0 else {
            let e = errno
            throw SocketError(.socket, code: e, detail: "socket(): \(errnoText(e))")
        }
        return fd
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32 = 1) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    static func setNoDelay(_ fd: Int32) { setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY) }

    static func bindAndListen(_ endpoint: Endpoint, reusePort: Bool, backlog: Int32) throws(SocketError) -> Int32 {
        var address = try resolve(endpoint)
        let fd = try open(family: address.family)
        setOption(fd, SOL_SOCKET, SO_REUSEADDR)
        if reusePort { setOption(fd, SOL_SOCKET, SO_REUSEPORT) }
        let bound = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, address.length) }
        }
        if bound != 0 {
            let e = errno
            Glibc.close(fd)
            throw SocketError(.bind, code: e, detail: "bind \(endpoint): \(errnoText(e))")
        }
        if Glibc.listen(fd, backlog) != 0 {
            let e = errno
            Glibc.close(fd)
            throw SocketError(.listen, code: e, detail: "listen \(endpoint): \(errnoText(e))")
        }
        return fd
    }

    /// `path` as a `sockaddr_un` (the caller checked its length).
    static func unixAddress(_ path: String) throws(SocketError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SocketError(.bind, code: ENAMETOOLONG, detail: "unix:\(path): the path is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return address
    }

    /// Before binding `path`: removes a socket file nobody listens on; refuses a live one, or a
    /// file that is not a socket.
    static func removeStaleSocket(_ path: String) throws(SocketError) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw SocketError(.bind, code: EEXIST, detail: "unix:\(path) exists and is not a socket")
        }
        let probe = try open(family: AF_UNIX)
        defer { Glibc.close(probe) }
        var address = try unixAddress(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        // A non-blocking connect to a listening Unix socket succeeds at once or says EAGAIN
        // (its backlog is full): someone is there. ECONNREFUSED: a leftover file.
        if rc == 0 || errno == EAGAIN || errno == EINPROGRESS {
            throw SocketError(.bind, code: EADDRINUSE, detail: "unix:\(path) is in use by another process")
        }
        unlink(path)
    }

    /// Starts a non-blocking connect. Returns the fd; completion is signalled by writability.
    static func startConnect(_ endpoint: Endpoint) throws(SocketError) -> Int32 {
        var address = try resolve(endpoint)
        let fd = try open(family: address.family)
        setNoDelay(fd)
        let rc = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = errno
            Glibc.close(fd)
            throw SocketError(.connect, code: e, detail: "connect \(endpoint): \(errnoText(e))")
        }
        return fd
    }

    /// The pending error of a socket whose non-blocking connect finished (0 on success).
    static func pendingError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return errno }
        return value
    }

    /// The local port a socket is bound to.
    /// "ip:port" of the socket's own end (`peer: false`) or the other end, as Redis writes
    /// `laddr` and `addr` in CLIENT LIST ("[::1]:6379" is written "::1:6379" there too).
    static func addressText(_ fd: Int32, peer: Bool) -> String {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &address.length) : getsockname(fd, $0, &address.length)
            }
        }
        guard rc == 0 else { return "?:0" }
        if address.family == AF_UNIX {
            // Redis writes the listening socket's path for both ends of a Unix connection.
            return (peer ? addressText(fd, peer: false) : unixPath(address) + ":0")
        }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let found = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, address.length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard found == 0 else { return "?:0" }
        func text(_ characters: [CChar]) -> String {
            String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return text(host) + ":" + text(service)
    }

    private static func unixPath(_ address: Address) -> String {
        withUnsafeBytes(of: address.storage) { raw in
            let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
            let bytes = raw[offset..<min(Int(address.length), raw.count)]
            return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Whether the TCP peer reset the connection (its state is CLOSE). False for other sockets.
    static func wasReset(_ fd: Int32) -> Bool {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return false }
        return Int32(info.tcpi_state) == Int32(TCP_CLOSE)
    }

    /// Whether `fd` is a Unix-domain socket.
    static func isUnix(_ fd: Int32) -> Bool {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &address.length) }
        }
        return rc == 0 && address.family == AF_UNIX
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &address.length) }
        }
        guard rc == 0 else { return 0 }
        // sin_port and sin6_port both sit at byte offset 2, in network order.
        return withUnsafeBytes(of: address.storage) {
            UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}

extension Endpoint {
    /// The numeric addresses `host` resolves to ("10.0.0.7", "::1"); the host itself when it is
    /// one already. Blocking (getaddrinfo): for the control loop's topology checks, not the data path.
    public func numericHosts() -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0 else { return [host] }
        defer { freeaddrinfo(result) }
        var hosts: [String] = []
        var entry = result
        while let current = entry {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &buffer, socklen_t(buffer.count),
                           nil, 0, NI_NUMERICHOST) == 0 {
                let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !hosts.contains(text) { hosts.append(text) }
            }
            entry = current.pointee.ai_next
        }
        return hosts.isEmpty ? [host] : hosts
    }
}
