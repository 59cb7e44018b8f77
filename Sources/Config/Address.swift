/// A `host:port` written in the config (`127.0.0.1:6379`, `redis-0.redis:6379`, `[::1]:6379`).
/// Pure value: names are resolved when a connection opens, so a pod's new IP is picked up.
public struct Address: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`; nil without a port, with an empty host, or a port
    /// outside 1...65535.
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
            if host.contains(":") { return nil }  // a bare IPv6 address needs brackets
        }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace), !portText.isEmpty,
              portText.allSatisfy(\.isASCII), let port = UInt16(portText), port > 0 else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A duration written with a unit: `250ms`, `2s`, `1.5s`, `1m`, `1h`.
public struct Duration: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var seconds: Double

    public init(seconds: Double) { self.seconds = seconds }

    /// In whole microseconds (the event loop's clock).
    public var microseconds: Int { Int(seconds * 1_000_000) }

    public init?(parsing text: String) {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
                  let value = Double(number), value.isFinite, value >= 0 else { return nil }
            seconds = value * scale
            return
        }
        return nil
    }

    public static func < (a: Duration, b: Duration) -> Bool { a.seconds < b.seconds }

    public var description: String {
        if seconds > 0 && seconds < 0.001 { return "\(Int((seconds * 1_000_000).rounded()))us" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        return seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(seconds)s"
    }
}

/// Where the app connects: a TCP `host:port`, or a Unix-domain socket written `unix:/path` (for a
/// container in the same Pod, through a shared `emptyDir`; its permissions are `listen_mode`).
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    case tcp(Address)
    case unix(path: String)

    /// The longest path a `sockaddr_un` holds (108 bytes with the terminating NUL).
    public static let maxPathBytes = 107

    /// `host:port`, `[ipv6]:port` or `unix:/absolute/path`; nil otherwise.
    public init?(parsing text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count <= Self.maxPathBytes, !path.hasSuffix("/"),
                  !path.utf8.contains(0) else { return nil }
            self = .unix(path: path)
        } else if let address = Address(parsing: text) {
            self = .tcp(address)
        } else {
            return nil
        }
    }

    /// The TCP address (nil for a Unix socket).
    public var tcp: Address? {
        if case .tcp(let address) = self { return address }
        return nil
    }

    public var description: String {
        switch self {
        case .tcp(let address): address.description
        case .unix(let path): "unix:" + path
        }
    }
}
