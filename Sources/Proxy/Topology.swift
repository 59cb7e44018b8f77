import Config
import EventLoop

extension Address {
    /// Where to connect: a Config address as the event loop's endpoint (names resolve per connect).
    public var endpoint: Endpoint { Endpoint(host: host, port: port) }
}

/// What the health checker knows, handed to every worker as an immutable snapshot (like a config
/// reload): the confirmed master and each replica's state.
public struct Topology: Sendable, Equatable {
    /// The node that reported role master in the latest check; nil while none does (a failover):
    /// writes then wait up to `failover_hold`.
    public var master: Address?
    public var replicas: [ReplicaState]
    /// When this snapshot was computed (seconds since the epoch).
    public var computedAt: Double

    public init(master: Address?, replicas: [ReplicaState], computedAt: Double) {
        self.master = master
        self.replicas = replicas
        self.computedAt = computedAt
    }

    public struct ReplicaState: Sendable, Equatable {
        public var address: Address
        /// Up, replicating from the current master with its link up, not syncing or loading, and
        /// within `max_replica_lag`.
        public var eligible: Bool
        /// Reachable at all (a lagging replica is up but not eligible).
        public var up: Bool
        public var weight: Int
        /// A time (seconds since the epoch) such that the replica has every write the master had
        /// acknowledged by then: read-your-writes by offset sends a session's reads here only once
        /// this passes its last write.
        public var caughtUpTo: Double
        /// How far behind the master it was at the last check (seconds), for /config.
        public var lag: Double
        /// Why it is not eligible (for logs and /config); empty when eligible.
        public var reason: String

        public init(address: Address, eligible: Bool, up: Bool, weight: Int, caughtUpTo: Double, lag: Double,
                    reason: String) {
            self.address = address
            self.eligible = eligible
            self.up = up
            self.weight = weight
            self.caughtUpTo = caughtUpTo
            self.lag = lag
            self.reason = reason
        }
    }
}

/// An ACL login an app authenticated with (AUTH [user] password), passed through to Redis.
public struct Login: Hashable, Sendable {
    public var user: String?
    public var password: String

    public init(user: String?, password: String) {
        self.user = user
        self.password = password
    }

    /// AUTH's arguments.
    var authArguments: [String] { user.map { ["AUTH", $0, password] } ?? ["AUTH", password] }
}
