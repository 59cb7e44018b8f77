import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay in front of a real server, for tests that need a slow replication link: a replica
/// that replicates through the relay keeps answering its clients while `pauseReplication` holds
/// back what its master sends it — so it falls behind with its link still up, as on a congested
/// network. Other connections through the relay pass untouched.
public final class TCPRelay: @unchecked Sendable {
    public let port: UInt16
    private let target: UInt16
    private let listener: Int32
    private let paused = Atomic<Bool>(false)
    /// Signalled when replication resumes or the relay stops: a held-back pump waits on it.
    private let released = NSCondition()
    private let stopped = Atomic<Bool>(false)

    public init(to target: UInt16) throws {
        self.target = target
        (listener, port) = try LoopbackListener.open()
        Thread { [self] in acceptLoop() }.start()
    }

    deinit { stop() }

    /// Holds back (true) or lets through (false) the master's stream to replicas behind the relay.
    public func pauseReplication(_ pause: Bool) {
        released.lock()
        paused.store(pause, ordering: .relaxed)
        released.broadcast()
        released.unlock()
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        released.lock()
        released.broadcast()
        released.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    static func loopback(_ port: UInt16) -> sockaddr_in { LoopbackListener.address(port) }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(target)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                close(client)
                close(server)
                continue
            }
            let isReplica = Atomic<Bool>(false)
            let done = Atomic<Int>(0)
            let finish: @Sendable () -> Void = {
                if done.add(1, ordering: .relaxed).newValue == 1 {
                    shutdown(client, Int32(SHUT_RDWR))
                    shutdown(server, Int32(SHUT_RDWR))
                } else {
                    close(client)
                    close(server)
                }
            }
            Thread { [self] in  // client → server; spots a replica's handshake
                pump(from: client, to: server) { chunk in
                    if !isReplica.load(ordering: .relaxed),
                       String(decoding: chunk, as: UTF8.self).range(of: "PSYNC", options: .caseInsensitive) != nil
                        || String(decoding: chunk, as: UTF8.self).range(of: "REPLCONF", options: .caseInsensitive) != nil {
                        isReplica.store(true, ordering: .relaxed)
                    }
                }
                finish()
            }.start()
            Thread { [self] in  // server → client; held back for a replica while paused
                pump(from: server, to: client) { _ in
                    released.lock()
                    while isReplica.load(ordering: .relaxed) && paused.load(ordering: .relaxed)
                        && !stopped.load(ordering: .relaxed) {
                        released.wait()
                    }
                    released.unlock()
                }
                finish()
            }.start()
        }
    }

    private func pump(from source: Int32, to sink: Int32, inspect: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            let chunk = Array(buffer[..<n])
            inspect(chunk)
            var sent = 0
            while sent < n {
                let m = chunk[sent...].withUnsafeBytes { send(sink, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if m <= 0 { return }
                sent += m
            }
        }
    }
}

/// A listening socket on 127.0.0.1 and a free port (for relays and fault injectors in tests).
public enum LoopbackListener {
    /// Binds `port` (0: one the kernel chooses) and listens: the socket and its port.
    public static func open(port: UInt16 = 0, backlog: Int32 = 64) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket()") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.address(port)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw ClientError.io("loopback bind/listen")
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    static func address(_ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }
}

/// A fault injector standing where a server should be: it accepts every connection, notes when,
/// and closes it at once (a server that is restarting, or accepts and drops).
public final class AcceptRecorder: @unchecked Sendable {
    public let port: UInt16
    private let fd: Int32
    private let lock = NSLock()
    private var accepted: [Double] = []

    public init(port: UInt16 = 0) throws {
        (fd, self.port) = try LoopbackListener.open(port: port, backlog: 1024)
        let fd = self.fd
        Thread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                let now = Date().timeIntervalSince1970
                // When the kernel completed the handshake, not when this thread got round to
                // accepting: a thread scheduled late would otherwise stamp a queue of earlier
                // connections with one instant. TCP_INFO says how long ago the last ACK came in
                // (the handshake's, on a connection that has sent nothing).
                var info = tcp_info()
                var length = socklen_t(MemoryLayout<tcp_info>.size)
                let ago = getsockopt(client, Int32(IPPROTO_TCP), Int32(TCP_INFO), &info, &length) == 0
                    ? Double(info.tcpi_last_ack_recv) / 1000 : 0
                lock.withLock { accepted.append(now - ago) }
                close(client)
            }
        }.start()
    }

    /// When each connection was established (seconds since 1970).
    public var times: [Double] { lock.withLock { accepted.sorted() } }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))  // wakes the blocked accept
        close(fd)
    }
}
