import Config
import RESP
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
    /// discovery: cluster — every shard: its slots and its own master and replicas (`master`
    /// and `replicas` above then describe the first shard). nil otherwise.
    public var shards: [Shard]?

    public init(master: Address?, replicas: [ReplicaState], computedAt: Double, shards: [Shard]? = nil) {
        self.master = master
        self.replicas = replicas
        self.computedAt = computedAt
        self.shards = shards
    }

    /// One shard of a Redis Cluster: the slots the layout gives it, the node the layout names its
    /// master, and its health like a standalone group's.
    public struct Shard: Sendable, Equatable {
        public var slots: [ClosedRange<Int>]
        /// The master the cluster's layout names (before any health check confirms it).
        public var layoutMaster: Address
        public var topology: Topology

        public init(slots: [ClosedRange<Int>], layoutMaster: Address, topology: Topology) {
            self.slots = slots
            self.layoutMaster = layoutMaster
            self.topology = topology
        }
    }

    public struct ReplicaState: Sendable, Equatable {
        public var address: Address
        /// Whether it takes reads, and if not, why.
        public var eligibility: Eligibility
        /// Reachable at all (a lagging replica is up but not eligible).
        public var up: Bool
        public var weight: Int
        /// A time (seconds since the epoch) such that the replica has every write the master had
        /// acknowledged by then: read-your-writes by offset sends a session's reads here only once
        /// this passes its last write.
        public var caughtUpTo: Double
        /// How far behind the master it was at the last check (seconds), for /config.
        public var lag: Double

        public init(address: Address, eligibility: Eligibility, up: Bool, weight: Int, caughtUpTo: Double, lag: Double) {
            self.address = address
            self.eligibility = eligibility
            self.up = up
            self.weight = weight
            self.caughtUpTo = caughtUpTo
            self.lag = lag
        }

        /// Up, replicating from the current master with its link up, not syncing or loading, and
        /// within `max_replica_lag`.
        public var eligible: Bool { eligibility == .eligible }
        /// Why it is not eligible (for logs and /config); empty when eligible.
        public var reason: String { eligible ? "" : eligibility.description }
    }
}

/// Whether a replica takes reads, and if not, why (each case is one rule of the health checks).
public enum Eligibility: Sendable, Equatable, CustomStringConvertible {
    case eligible
    /// No check has answered yet.
    case notChecked
    /// Its checks failed `health_failures` times in a row (or the connection was refused).
    case down(String)
    /// It answers, but not the check: -BUSY (a script), or a login error.
    case busy(String)
    /// No node is confirmed master, so no replica can be known to follow it.
    case noConfirmedMaster
    /// ROLE says something other than a replica.
    case role(String)
    /// ROLE names another master.
    case notReplicating(from: Address)
    /// `master_link_status` is not up.
    case linkDown
    /// A full sync is in progress.
    case syncing
    /// Neither INFO nor ROLE gave its replication offset.
    case noOffset
    /// Further behind than `max_replica_lag` (an infinite lag: behind every recorded sample).
    case lagging(seconds: Double, limit: Duration)

    public var description: String {
        switch self {
        case .eligible: return "eligible"
        case .notChecked: return "not checked yet"
        case .down(let why): return "down: \(why)"
        case .busy(let why): return "busy: \(why)"
        case .noConfirmedMaster: return "no confirmed master"
        case .role(let name): return "reports role \(name)"
        case .notReplicating(let master): return "does not replicate from \(master)"
        case .linkDown: return "master_link_status is not up"
        case .syncing: return "sync in progress"
        case .noOffset: return "no replication offset yet"
        case .lagging(let seconds, let limit):
            guard seconds.isFinite else { return "behind every recorded master offset" }
            let ms = Int((seconds * 1000).rounded())
            return "lag \(ms < 1000 ? "\(ms)ms" : "\(Double(ms) / 1000)s") > max_replica_lag \(limit)"
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

/// A node's ROLE reply, as Redis, Valkey, KeyDB and Dragonfly write it:
/// - master: `["master", offset, [[host, port, ack offset], …]]`
/// - replica: `["slave", host, port, state, offset]` — Dragonfly says `"replica"` and may send
///   the port as a string; KeyDB's active replicas say `"active-replica"` (they also take
///   writes, but the ambassador sends writes only to the confirmed master).
/// - sentinel: `["sentinel", [names]]`.
public struct RoleReport: Sendable, Equatable {
    public enum Role: Sendable, Equatable { case master, replica, sentinel, other(String) }
    public var role: Role
    /// master: its `master_repl_offset`; replica: the offset it has applied (-1 while not
    /// connected); nil when the reply has none.
    public var offset: Int64?
    /// For a replica: the master it follows, and the link state (connected, sync, …).
    public var masterHost: String?
    public var masterPort: UInt16?
    public var linkState: String?

    public init(role: Role, offset: Int64? = nil, masterHost: String? = nil, masterPort: UInt16? = nil, linkState: String? = nil) {
        self.role = role
        self.offset = offset
        self.masterHost = masterHost
        self.masterPort = masterPort
        self.linkState = linkState
    }

    /// The name ROLE and `INFO replication`'s `role:` use for this role, normalised (`slave` for
    /// every replica spelling).
    public static func normalisedName(_ name: String) -> String {
        switch name.lowercased() {
        case "slave", "replica", "active-replica": return "slave"
        case let other: return other
        }
    }

    public static func parse(_ value: RESPValue) -> RoleReport? {
        let items: [RESPValue]
        switch value {
        case .array(let list?), .push(let list), .set(let list): items = list
        default: return nil
        }
        guard let name = items.first?.text else { return nil }
        switch normalisedName(name) {
        case "master":
            return RoleReport(role: .master, offset: items.count > 1 ? integer(items[1]) : nil)
        case "slave":
            guard items.count >= 3 else { return RoleReport(role: .replica) }
            let port = integer(items[2]).flatMap { UInt16(exactly: $0) }
            return RoleReport(role: .replica, offset: items.count > 4 ? integer(items[4]) : nil,
                              masterHost: items[1].text, masterPort: port,
                              linkState: items.count > 3 ? items[3].text : nil)
        case "sentinel":
            return RoleReport(role: .sentinel)
        default:
            return RoleReport(role: .other(name))
        }
    }

    /// An integer sent as one (`:6379`) or as text (`$4 6379`).
    public static func integer(_ value: RESPValue) -> Int64? {
        if case .integer(let number) = value { return number }
        return value.text.flatMap { Int64($0) }
    }
}
