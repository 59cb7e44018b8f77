/// A TCP endpoint written as `host:port` (`127.0.0.1:6379`, `localhost:6380`, `[::1]:6379`).
///
/// Pure value type: parsing never touches the network; names are resolved when a socket is opened,
/// so a host name is looked up again on every reconnect.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`. Returns nil with no port, an empty host or a port
    /// outside 0...65535.
    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !host.isEmpty, !portText.isEmpty, portText.allSatisfy(\.isASCII),
              let port = UInt16(portText) else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Why a socket operation failed: the C `errno` plus what we were doing.
public struct SocketError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case resolve, socket, bind, listen, connect, timeout, read, write, closedByPeer
    }
    public var kind: Kind
    /// The C errno, 0 where none applies (a timeout, a closed peer, a failed name lookup).
    public var code: Int32
    public var detail: String

    public init(_ kind: Kind, code: Int32 = 0, detail: String) {
        self.kind = kind
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
}
