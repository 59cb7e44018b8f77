/// A TCP endpoint (host name or address, and port). Names are resolved when a socket is opened,
/// so a host name is looked up again on every reconnect.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Why a socket operation failed: the C `errno` plus what we were doing.
public struct SocketError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case resolve, socket, bind, listen, connect, timeout, read, write, closedByPeer, tls
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
