import Synchronization

/// The local addresses (`host:port`) of the process's own control connections to Redis: health
/// checks, discovery, lag probes. A client's MONITOR stream leaves out what they send, as a
/// direct Redis's stream would not show an ambassador that is not there. Shared by every thread.
public enum OwnConnections {
    private static let addresses = Mutex<Set<String>>([])

    public static func add(_ address: String) {
        addresses.withLock { _ = $0.insert(address) }
    }

    public static func remove(_ address: String) {
        addresses.withLock { _ = $0.remove(address) }
    }

    public static func contains(_ address: String) -> Bool {
        addresses.withLock { $0.contains(address) }
    }
}

/// Commands the ambassador itself sends on connections that carry app traffic (a new
/// connection's SELECT, HELLO, CLIENT ID; a probe's PING), by the connection's address and
/// their MONITOR line's arguments (`"SELECT" "9"`). A direct Redis would never run them, so
/// MONITOR leaves their lines out, for a while after they were sent (the line may reach a
/// monitoring session on another worker before or after the reply reaches the sender).
public enum OwnCommands {
    private struct Entry {
        var arguments: [UInt8]
        var until: Int
    }
    private static let entries = Mutex<[String: [Entry]]>([:])
    /// How long a line is left out after its command was sent (µs).
    public static let window = 10_000_000

    /// `arguments` (as MONITOR writes them) were sent from `address` at `now` (loop µs).
    public static func add(_ address: String, _ arguments: [UInt8], now: Int) {
        entries.withLock { entries in
            if entries.count > 1024 {
                // Addresses of connections long closed: their lines have long been left out.
                entries = entries.filter { $0.value.contains { $0.until > now } }
            }
            var list = entries[address, default: []]
            list.removeAll { $0.until <= now }
            list.append(Entry(arguments: arguments, until: now + window))
            entries[address] = list
        }
    }

    /// Whether a MONITOR line from `address` with these arguments is one of the ambassador's.
    public static func contains(_ address: String, _ arguments: ArraySlice<UInt8>, now: Int) -> Bool {
        entries.withLock { entries in
            entries[address]?.contains { $0.until > now && $0.arguments.elementsEqual(arguments) } ?? false
        }
    }

    /// Whether any address has commands left out (a cheap check before parsing a line).
    public static var isEmpty: Bool { entries.withLock { $0.isEmpty } }
}
