import Config
import EventLoop

/// One Redis server the ambassador talks to: its shared connections (one set per RESP version,
/// opened on first use) and, for the master, the pool of dedicated connections for pinned sessions.
final class Backend {
    enum Role: String, CustomStringConvertible {
        case master, replica
        var description: String { rawValue }
    }

    /// Strong, on purpose: the proxy lives as long as its loop, and an `unowned` reference costs
    /// a checked retain and a release at every use.
    let proxy: Proxy
    let address: Address
    let endpoint: Endpoint
    let role: Role
    /// Shared connections for RESP2 sessions ([0]) and RESP3 sessions ([1]).
    private var shared: [[BackendConnection]] = [[], []]
    private var idlePinned: [BackendConnection] = []
    /// Set when the backend left the config: no reconnects.
    var removed = false
    /// From the health checker (true without one): may take reads.
    var eligible = true
    /// Answered -LOADING or -MASTERDOWN at this time (seconds): no reads until a later check.
    var suspendedAt: Double?
    var weight = 1
    /// Smooth weighted round-robin state.
    var currentWeight = 0
    /// See `Topology.ReplicaState.caughtUpTo`; 0 (never) without a health checker.
    var caughtUpTo = 0.0
    private(set) var upConnections = 0

    init(proxy: Proxy, address: Address, role: Role) {
        self.proxy = proxy
        self.address = address
        self.endpoint = address.endpoint
        self.role = role
        weight = proxy.config.replicaWeights[address] ?? 1
    }

    /// Up when a shared connection is connected: the basic health of this issue (the topology
    /// checker adds ROLE, link status and lag).
    var isUp: Bool { upConnections > 0 }

    /// May take a read now.
    var servesReads: Bool { isUp && eligible && suspendedAt == nil && !removed }

    /// May take this read: serves reads, is not `excluded`, and (read-your-writes by offset)
    /// has caught up to `floor` (0: no requirement).
    func takesRead(excluding excluded: Backend?, caughtUpTo floor: Double) -> Bool {
        servesReads && self !== excluded && (floor == 0 || caughtUpTo >= floor)
    }

    /// Requests in flight on the shared connection `session` would use: the load for balancing.
    func outstanding(for session: ClientSession) -> Int {
        sharedConnection(for: session).inflight.count
    }

    /// The checker found it unreachable: close its connections so reads in flight are retried
    /// elsewhere now rather than waiting on a node that may never answer.
    func dropConnections() {
        for set in shared { set.forEach { $0.reset(reason: "marked down by the health check") } }
    }

    /// The health check reached it again: reconnect now rather than at the next retry tick.
    func reconnectNow() {
        for set in shared { set.forEach { $0.reconnectNow() } }
    }

    /// Requests older than `timeout` seconds on a shared connection: that connection is reset.
    func expireRequests(olderThan deadline: Int) {
        for set in shared {
            for connection in set where connection.oldestRequestStarted.map({ $0 < deadline }) ?? false {
                connection.reset(reason: "command_timeout")
            }
        }
    }

    /// Opens the RESP2 shared connections (at start-up, so the first request finds them ready).
    func start() {
        _ = connections(protocolVersion: 2)
    }

    /// Opens the shared connections for a RESP version the first time it is needed; returns the
    /// index of its set in `shared`.
    @discardableResult
    private func connections(protocolVersion: Int) -> Int {
        let index = protocolVersion == 3 ? 1 : 0
        if shared[index].isEmpty {
            shared[index] = (0..<proxy.config.backendConnections).map { _ in
                BackendConnection(backend: self, protocolVersion: protocolVersion, dedicated: false)
            }
            shared[index].forEach { $0.open() }
        }
        return index
    }

    /// The shared connection a session uses here. A session always uses the same one, so its
    /// pipelined commands keep their order on the server. (Indexes in place: no copy of the
    /// connection array, and so no retain of it, per command.)
    func sharedConnection(for session: ClientSession) -> BackendConnection {
        let index = connections(protocolVersion: session.protocolVersion)
        return shared[index][Int(session.id % Int64(shared[index].count))]
    }

    // MARK: pinned connections (master only)

    /// A dedicated connection for a session that needs one: an idle pooled one, or a new one.
    func acquirePinned(protocolVersion: Int) -> BackendConnection {
        while let connection = idlePinned.popLast() {
            if connection.isUsable { return connection }
        }
        let connection = BackendConnection(backend: self, protocolVersion: protocolVersion, dedicated: true)
        connection.open()
        return connection
    }

    /// Returns a dedicated connection whose state is clean; closes it when the pool is full.
    func releasePinned(_ connection: BackendConnection) {
        connection.owner = nil
        connection.relay = false
        if connection.isUsable && connection.reusable && idlePinned.count < proxy.config.pinnedPoolSize && !removed {
            idlePinned.append(connection)
        } else {
            connection.close()
        }
    }

    var pinnedIdleCount: Int { idlePinned.count }

    // MARK: connection events

    func connectionUp(_ connection: BackendConnection) {
        if !connection.dedicated {
            upConnections += 1
            if upConnections == 1 { proxy.backendCameUp(self, through: connection) }
            if self === proxy.master { proxy.masterConnectionUp() }
        }
    }

    func connectionDown(_ connection: BackendConnection, wasUp: Bool) {
        if connection.dedicated {
            idlePinned.removeAll { $0 === connection }
        } else if wasUp {
            upConnections -= 1
        }
    }

    /// Left the config: takes no new requests, reconnects nothing, and closes each connection once
    /// its in-flight replies are in.
    func retire() {
        removed = true
        idlePinned.forEach { $0.close() }
        idlePinned.removeAll()
        for set in shared {
            for connection in set { connection.closeWhenIdle() }
        }
        checkDrained()
    }

    /// No shared connection of this retired backend is open any more.
    var isDrained: Bool { shared.allSatisfy { $0.allSatisfy { !$0.isOpen } } }

    func checkDrained() {
        if removed && isDrained {
            shared = [[], []]
            proxy.retiredBackendDrained(self)
        }
    }

    func shutdown() {
        removed = true
        for set in shared { set.forEach { $0.close() } }
        shared = [[], []]
        idlePinned.forEach { $0.close() }
        idlePinned.removeAll()
    }
}
