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
