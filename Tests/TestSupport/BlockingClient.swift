import Foundation
import RESP
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking Redis client for tests: sends commands as multibulk, reads replies with the
/// RESP decoder, and can send raw bytes to provoke protocol errors. It is the "app" in tests.
public final class BlockingClient {
    private var fd: Int32
    private var buffer: [UInt8] = []
    /// Bytes of `buffer` already decoded (dropped in one go, not per reply).
    private var head = 0

    public init(host: String = "127.0.0.1", port: UInt16, timeout: Double = 5) throws {
        fd = try Self.open(AF_INET, timeout: timeout)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = port.bigEndian
        try Self.connect(fd, to: &address, "\(host):\(port)")
    }

    /// A client on a Unix-domain socket.
    public init(unixPath path: String, timeout: Double = 5) throws {
        fd = try Self.open(AF_UNIX, timeout: timeout)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8).prefix($0.count - 1)) }
        try Self.connect(fd, to: &address, "unix:\(path)")
    }

    private static func open(_ family: Int32, timeout: Double) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket") }
        setTimeout(fd, timeout)
        return fd
    }

    private static func setTimeout(_ fd: Int32, _ timeout: Double) {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// How long a read or a write may wait from now on (seconds).
    public func setTimeout(_ timeout: Double) { Self.setTimeout(fd, timeout) }

    private static func connect<Address>(_ fd: Int32, to address: inout Address, _ name: String) throws {
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
        if rc != 0 {
            // Not closed here: the initializer throws with the client whole, so its deinit
            // closes the descriptor. Closing it here too closed whatever another thread had
            // opened under the same number meanwhile — Foundation's watch on a child process,
            // whose early EOF then hung the test run in a blocking waitpid.
            let why = String(cString: strerror(errno))
            throw ClientError.io("connect to \(name): \(why)")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Hangs up (both directions: a FIN) now; the descriptor itself is closed with the client.
    public func disconnect() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Resets the connection (SO_LINGER 0, then close: an RST), as a crashed or killed app does.
    public func abort() {
        guard fd >= 0 else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
        fd = -1
    }

    /// Sends raw bytes as they are.
    public func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ClientError.io("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    public static func encode(_ arguments: [String]) -> [UInt8] {
        RESPValue.array(arguments.map { .bulk($0) }).encoded
    }

    /// Sends one command and reads its reply.
    public func command(_ arguments: [String]) throws -> RESPValue {
        try send(Self.encode(arguments))
        return try readReply()
    }

    /// Reads one complete reply.
    public func readReply() throws -> RESPValue {
        while true {
            if head < buffer.count, let (value, used) = try RESPValue.decode(buffer, from: head) {
                head += used
                return value
            }
            try fill()
        }
    }

    /// Reads one reply and returns its exact bytes.
    public func readRawReply() throws -> [UInt8] {
        while true {
            if head < buffer.count, let used = try RESPValue.frameLength(buffer, from: head) {
                defer { head += used }
                return Array(buffer[head..<head + used])
            }
            try fill()
        }
    }

    /// Reads exactly `count` bytes (an RDB payload, which is no RESP reply).
    public func readBytes(_ count: Int) throws -> [UInt8] {
        while buffer.count - head < count { try fill() }
        defer { head += count }
        return Array(buffer[head..<head + count])
    }

    /// Reads one line, without its CRLF.
    public func readLine() throws -> [UInt8] {
        while true {
            if let end = buffer[head...].firstIndex(of: UInt8(ascii: "\n")) {
                defer { head = end + 1 }
                let line = buffer[head..<end]
                return Array(line.last == UInt8(ascii: "\r") ? line.dropLast() : line)
            }
            try fill()
        }
    }

    /// Sends `pipeline` and reads its `count` replies: their bytes, and whether the first
    /// `recv` brought them all (the server answered the pipeline in one write).
    public func pipeline(_ pipeline: [UInt8], replies count: Int) throws -> (inOneRead: Bool, replies: [[UInt8]]) {
        try send(pipeline)
        let before = buffer.count - head
        try fill()
        let received = buffer.count - head - before
        let replies = try (0..<count).map { _ in try readRawReply() }
        return (received == replies.reduce(0) { $0 + $1.count }, replies)
    }

    /// What was received and not yet read as replies (after `isClosedByPeer`, everything the
    /// server sent before closing).
    public var unread: [UInt8] { Array(buffer[head...]) }

    /// True when the server closed the connection (reads EOF) within the timeout.
    public func isClosedByPeer() -> Bool {
        do {
            while true { try fill() }
        } catch ClientError.closed {
            return true
        } catch {
            return false
        }
    }

    private func fill() throws {
        if head > 0 {
            buffer.removeFirst(head)
            head = 0
        }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { throw ClientError.closed }
        if n < 0 { throw ClientError.io("recv: \(String(cString: strerror(errno)))") }
        buffer += chunk[..<n]
    }
}

public enum ClientError: Error {
    case io(String)
    case closed
}

/// A one-request HTTP/1.0 client for the admin endpoint.
public enum HTTPProbe {
    public static func request(port: UInt16, method: String = "GET", path: String, headers: [String] = [],
                               timeout: Double = 5) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw ClientError.io("connect to admin port \(port): \(String(cString: strerror(errno)))") }
        let extra = headers.map { $0 + "\r\n" }.joined()
        let request = Array("\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\(extra)Content-Length: 0\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw ClientError.io("recv: \(String(cString: strerror(errno)))") }
            response += chunk[..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let statusLine = text.split(separator: "\r\n").first,
              let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) }),
              let split = text.range(of: "\r\n\r\n") else {
            throw ClientError.io("not an HTTP response: \(text.prefix(200))")
        }
        return (status, String(text[split.upperBound...]))
    }
}
