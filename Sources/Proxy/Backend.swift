import Config
import EventLoop
import RESP

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
    /// The master and replicas this backend belongs to.
    let group: ReplicationGroup
    let address: Address
    let endpoint: Endpoint
    let role: Role
    /// Shared connections for RESP2 sessions ([0]) and RESP3 sessions ([1]).
    private var shared: [[BackendConnection]] = [[], []]
    /// Extra shared connections per RESP version, opened while the regular ones are stalled,
    /// or busy when a large request comes.
    private var overflow: [[BackendConnection]] = [[], []]
    /// Most overflow connections per RESP version: past it, stalled sessions share the least
    /// stalled one.
    static let maxOverflow = 16
    private var idlePinned: [BackendConnection] = []
    /// Shared connections of sessions logged in with their own AUTH (pass-through), by login
    /// number, then as `shared` by database and RESP version.
    private var loginShared: [Int: [[BackendConnection]]] = [:]
    /// Every shared connection set: the ambassador's own, overflow, and the apps' logins.
    private var allSets: [[BackendConnection]] { shared + overflow + loginShared.values.flatMap { $0 } }
    /// Set when the backend left the config: no reconnects.
    var removed = false

    /// App logins this node refused (`Proxy.loginIndex` → loop µs until which it is passed over
    /// for their reads). See `BackendConnection.loginAnswered`.
    private var refusedLogins: [Int: Int] = [:]

    func refuseLogin(_ index: Int, until: Int) { refusedLogins[index] = until }

    /// Whether this node refused `index`'s login a short while ago.
    func refusesLogin(_ index: Int, now: Int) -> Bool {
        guard let until = refusedLogins[index] else { return false }
        if until > now { return true }
        refusedLogins[index] = nil
        return false
    }
    /// From the health checker (true without one): may take reads.
    var eligible = true
    /// Answered -LOADING or -MASTERDOWN at this time (seconds): no reads until a later check.
    var suspendedAt: Double?
    var weight = 1
    /// Smooth weighted round-robin state.
    var currentWeight = 0
    /// The replication offset this replica last reported having applied (ROLE on its control
    /// connection); -1 while unknown. See `ReplicationTracker`.
    var appliedOffset: Int64 = -1
    /// A dedicated connection for the ambassador's own probes (ROLE), opened on first use.
    private var control: BackendConnection?
    private var offsetPollInFlight = false
    private(set) var upConnections = 0

    init(group: ReplicationGroup, address: Address, role: Role) {
        self.group = group
        self.proxy = group.proxy
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

    /// May take this read: serves reads, is not `excluded`, and (read-your-writes) has applied
    /// the replication stream up to `floor` (0: no requirement).
    func takesRead(excluding excluded: Backend?, floor: Int64) -> Bool {
        servesReads && self !== excluded && (floor == 0 || appliedOffset >= floor)
    }

    /// A connection of its own for the ambassador's probes (not reconnected: made again when
    /// needed after a loss).
    func controlConnection() -> BackendConnection? {
        guard !removed else { return nil }
        if let control, control.isUsable { return control }
        let connection = BackendConnection(backend: self, protocolVersion: 2, dedicated: true)
        connection.isControl = true
        connection.open()
        control = connection
        return connection.isUsable ? connection : nil
    }

    /// Asks the replica for the offset it has applied, unless a request for it is out already.
    func pollAppliedOffset() {
        guard !offsetPollInFlight, let connection = controlConnection() else { return }
        offsetPollInFlight = true
        connection.probe(request: ReplicationTracker.roleRequest, onOffsetReply)
    }

    private lazy var onOffsetReply: ([UInt8]) -> Void = { [unowned self] bytes in
        self.offsetPollInFlight = false
        if let offset = ReplicationTracker.replicaOffset(bytes) { self.appliedOffset = max(self.appliedOffset, offset) }
    }

    /// Requests in flight on the shared connection `session` would use: the load for balancing.
    func outstanding(for session: ClientSession) -> Int {
        sharedConnection(for: session).inflight.count
    }

    /// The checker found it unreachable: close its connections so reads in flight are retried
    /// elsewhere now rather than waiting on a node that may never answer.
    func dropConnections() {
        for set in allSets { set.forEach { $0.reset(reason: "marked down by the health check") } }
    }

    /// The health check reached it again: reconnect now rather than at the next retry tick.
    func reconnectNow() {
        for set in shared { set.forEach { $0.reconnectNow() } }
    }

    /// Requests older than `timeout` seconds on a shared connection: that connection is reset.
    func expireRequests(olderThan deadline: Int) {
        for set in allSets {
            for connection in set where connection.oldestRequestStarted.map({ $0 < deadline }) ?? false {
                connection.reset(reason: "command_timeout")
            }
        }
    }

    /// Opens the RESP2 shared connections (at start-up, so the first request finds them ready).
    func start() {
        _ = connections(protocolVersion: 2)
    }

    /// Where a session's shared connections sit in `shared` (and `overflow`): one set per
    /// database and RESP version, so no SELECT is ever injected in front of an app's command.
    @inline(__always)
    static func setIndex(db: Int, protocolVersion: Int) -> Int {
        db &* 2 &+ (protocolVersion == 3 ? 1 : 0)
    }

    /// Opens the shared connections for a database and RESP version the first time they are
    /// needed (a connection for db N selects it once, when it connects); returns the index of
    /// their set in `shared`.
    @discardableResult
    private func connections(protocolVersion: Int, db: Int = 0) -> Int {
        let index = Self.setIndex(db: db, protocolVersion: protocolVersion)
        if index >= shared.count || shared[index].isEmpty {
            if index >= shared.count { shared += Array(repeating: [], count: index + 1 - shared.count) }
            shared[index] = (0..<proxy.config.backendConnections).map { _ in
                BackendConnection(backend: self, protocolVersion: protocolVersion, dedicated: false, db: db)
            }
            shared[index].forEach { $0.open() }
        }
        return index
    }

    /// The shared connection a session uses here, for its database. A session always uses the
    /// same one, so its pipelined commands keep their order on the server. (Indexes in place: no
    /// copy of the connection array, and so no retain of it, per command.)
    func sharedConnection(for session: ClientSession) -> BackendConnection {
        if session.loginIndex != 0 { return loginConnection(for: session) }
        let index = connections(protocolVersion: session.protocolVersion, db: session.db)
        return shared[index][Int(session.id % Int64(shared[index].count))]
    }

    /// The same for a session logged in as an app user: connections authenticated as it.
    private func loginConnection(for session: ClientSession) -> BackendConnection {
        let index = Self.setIndex(db: session.db, protocolVersion: session.protocolVersion)
        var sets = loginShared[session.loginIndex] ?? []
        if index >= sets.count { sets += Array(repeating: [], count: index + 1 - sets.count) }
        if sets[index].isEmpty {
            sets[index] = (0..<proxy.config.backendConnections).map { _ in
                BackendConnection(backend: self, protocolVersion: session.protocolVersion, dedicated: false,
                                  db: session.db, loginIndex: session.loginIndex)
            }
            sets[index].forEach { $0.open() }
        }
        loginShared[session.loginIndex] = sets
        return sets[index][Int(session.id % Int64(sets[index].count))]
    }

    /// The shared connection for a session's next request here when it has nothing outstanding
    /// on this backend (else it stays where its earlier requests went, for their order): its
    /// own regular connection, unless that one is stalled — its oldest request has waited
    /// `stall_threshold` (a busy script, a paused write, a slow command holds it). Then an
    /// overflow connection that is not stalled, opened if need be. `urgent` (SCRIPT KILL,
    /// FUNCTION KILL, SHUTDOWN) avoids any connection with a request in flight, at once.
    /// A `large` request (see `largeRequest`) may go to an overflow connection while the regular
    /// one is busy (`largeRequestConnection`): a connection carries one request's bytes at a
    /// time, so one big value holds up every session behind it, and Redis reads each connection
    /// at most a TLS record (16 KiB) or a socket buffer per loop, where several connections are
    /// read in turn.
    func connection(for session: ClientSession, urgent: Bool, large: Bool = false, now: Int) -> BackendConnection {
        let regular = sharedConnection(for: session)
        guard !regular.inflight.isEmpty, regular.isUsable, session.loginIndex == 0 else { return regular }
        if large { return largeRequestConnection(regular: regular, session: session, now: now) }
        let threshold = urgent || (proxy.pausedUntil > now && role == .master) ? 0 : proxy.stallMicroseconds
        if threshold < 0 { return regular }
        let deadline = now - threshold
        if !regular.isStalled(before: deadline) { return regular }
        return overflowConnection(protocolVersion: session.protocolVersion, db: session.db, deadline: deadline) ?? regular
    }

    /// An overflow connection whose oldest request is younger than `deadline` (or idle); a new
    /// one while there are fewer than `maxOverflow`; else nil.
    private func overflowConnection(protocolVersion: Int, db: Int, deadline: Int) -> BackendConnection? {
        let index = overflowSet(db: db, protocolVersion: protocolVersion)
        for connection in overflow[index] where connection.isUsable && !connection.isStalled(before: deadline) {
            return connection
        }
        guard overflow[index].count < Self.maxOverflow, !removed else { return nil }
        return openOverflow(at: index, protocolVersion: protocolVersion, db: db)
    }

    /// For a large request while the regular connection is busy: the connection with the fewest
    /// requests in flight among the regular one and the overflow ones, a new overflow one while
    /// every one is busy and there are fewer than `largeLanes`. Fewest, not merely an idle one:
    /// Redis reads its connections in turn, so a connection holding most of the queue would hold
    /// its requests longest (measured: p99 doubled when lanes took only idle turns).
    private func largeRequestConnection(regular: BackendConnection, session: ClientSession, now: Int) -> BackendConnection {
        let index = overflowSet(db: session.db, protocolVersion: session.protocolVersion)
        // Not one held by a busy script or a slow command (stall_threshold).
        let stalled = proxy.stallMicroseconds < 0 ? Int.min : now - proxy.stallMicroseconds
        var best = regular
        for lane in overflow[index] where lane.isUsable && !lane.isStalled(before: stalled)
            && lane.inflight.count < best.inflight.count { best = lane }
        guard !best.inflight.isEmpty, overflow[index].count < Self.largeLanes, !removed else { return best }
        return openOverflow(at: index, protocolVersion: session.protocolVersion, db: session.db) ?? best
    }

    /// Where the overflow connections for a database and RESP version sit in `overflow` (the
    /// set made if need be).
    private func overflowSet(db: Int, protocolVersion: Int) -> Int {
        let index = Self.setIndex(db: db, protocolVersion: protocolVersion)
        if index >= overflow.count { overflow += Array(repeating: [], count: index + 1 - overflow.count) }
        return index
    }

    /// A new overflow connection in set `index`; nil when it could not start.
    private func openOverflow(at index: Int, protocolVersion: Int, db: Int) -> BackendConnection? {
        let connection = BackendConnection(backend: self, protocolVersion: protocolVersion, dedicated: false,
                                           overflow: true, db: db)
        overflow[index].append(connection)
        connection.open()
        return connection.isUsable ? connection : nil
    }

    /// Ends the WAIT that holds `blocked` (Redis id `id`) for a client that left: CLIENT UNBLOCK
    /// on one of the ambassador's own shared connections that no WAIT holds, or a new overflow one.
    func unblock(_ blocked: BackendConnection, id: Int64) {
        let messenger = (shared + overflow).joined().first { $0 !== blocked && $0.isUsable && !$0.isStalled(before: Int.min) }
            ?? openOverflow(at: overflowSet(db: blocked.db, protocolVersion: blocked.protocolVersion),
                            protocolVersion: blocked.protocolVersion, db: blocked.db)
        messenger?.inject(["CLIENT", "UNBLOCK", String(id)], label: "CLIENT UNBLOCK of a WAIT whose client left")
    }

    /// Requests at least this long (a value of 16 KiB or more) count as `large`.
    static let largeRequest = 16 * 1024
    /// Most overflow connections large requests open (per database and RESP version), closed
    /// again once idle. Measured with 50 clients each sending 64 KiB SETs to a TLS master (two
    /// TLS replicas on the same 2 cores), against HAProxy's 50 connections: idle-only turns on
    /// 4 lanes, 0.94-1.05x its rate but twice its p99; fewest-in-flight on 4 lanes, 0.89-0.90x;
    /// on 12, 0.96-1.02x; on 16, 1.12-1.17x the rate at 0.9x its CPU and a lower p99 (26-35 ms
    /// against 36-39 ms).
    static let largeLanes = 16

    /// Closes overflow connections idle since the previous sweep (nothing in flight and nothing
    /// sent in between).
    func sweepOverflow() {
        for index in overflow.indices {
            overflow[index].removeAll { connection in
                guard connection.inflight.isEmpty else {
                    connection.sweptAt = -1
                    return false
                }
                if connection.sweptAt == connection.expected || !connection.isOpen {
                    connection.close()
                    return true
                }
                connection.sweptAt = connection.expected
                return false
            }
        }
    }

    var overflowCount: Int { overflow.reduce(0) { $0 + $1.count } }

    /// Whether a shared connection here holds a request older than `deadline` (nothing allocated:
    /// asked for commands the ambassador answers itself).
    func hasStalledConnection(before deadline: Int) -> Bool {
        for set in shared { for connection in set where connection.isStalled(before: deadline) { return true } }
        for set in overflow { for connection in set where connection.isStalled(before: deadline) { return true } }
        for sets in loginShared.values { for set in sets { for connection in set where connection.isStalled(before: deadline) { return true } } }
        return false
    }

    func stalledConnections(before deadline: Int) -> Int {
        allSets.reduce(0) { $0 + $1.filter { $0.isStalled(before: deadline) }.count }
    }

    // MARK: pinned connections (master only)

    /// A dedicated connection for a session that needs one: an idle pooled one, or a new one.
    func acquirePinned(protocolVersion: Int, loginIndex: Int = 0, preferring preferred: BackendConnection? = nil) -> BackendConnection {
        if let preferred, preferred.loginIndex == loginIndex, let index = idlePinned.firstIndex(where: { $0 === preferred }) {
            idlePinned.remove(at: index)
            if preferred.isUsable { return preferred }
        }
        while let index = idlePinned.lastIndex(where: { $0.loginIndex == loginIndex }) {
            let connection = idlePinned.remove(at: index)
            if connection.isUsable { return connection }
        }
        let connection = BackendConnection(backend: self, protocolVersion: protocolVersion, dedicated: true,
                                           loginIndex: loginIndex)
        connection.open()
        // Its Redis id, for CLIENT UNBLOCK and CLIENT TRACKING REDIRECT naming the app client.
        connection.identify()
        return connection
    }

    static let clientIDRequest = BackendConnection.request(["CLIENT", "ID"])

    /// Asks this node whether `login` is valid, on a connection of its own that is closed after
    /// (so no shared connection changes user); `reply` gets Redis's answer (empty: none came).
    func checkLogin(_ login: Login, reply: @escaping ([UInt8]) -> Void) {
        let connection = BackendConnection(backend: self, protocolVersion: 2, dedicated: true)
        connection.isControl = true  // its AUTH shows on MONITOR as the session's (showOnMonitors)
        connection.open()
        guard connection.isUsable else { return reply([]) }
        connection.probe(login.authArguments) { [connection] bytes in
            connection.close()
            reply(bytes)
        }
    }

    /// Returns a dedicated connection whose state is clean; closes it when the pool is full.
    func releasePinned(_ connection: BackendConnection) {
        connection.owner = nil
        connection.relay = false
        connection.reauthenticate()
        if connection.isUsable && connection.reusable && idlePinned.count < proxy.config.pinnedPoolSize && !removed {
            idlePinned.append(connection)
        } else {
            connection.close()
        }
    }


    // MARK: connection events

    func connectionUp(_ connection: BackendConnection) {
        if connection.isRegularShared {
            upConnections += 1
            if upConnections == 1 { proxy.backendCameUp(self, through: connection) }
            if self === group.master { group.masterConnectionUp() }
        }
    }

    func connectionDown(_ connection: BackendConnection, wasUp: Bool) {
        if connection.dedicated {
            idlePinned.removeAll { $0 === connection }
        } else if connection.overflow {
            for index in overflow.indices { overflow[index].removeAll { $0 === connection } }
        } else if wasUp {
            upConnections -= 1
        }
    }

    /// The ambassador's credentials changed: every connection open here AUTHs again (see
    /// `BackendConnection.credentialsChanged`; pinned ones are reached through their sessions).
    /// Returns how many will.
    func credentialsChanged() -> Int {
        var count = 0
        for set in allSets { for connection in set where connection.credentialsChanged() { count += 1 } }
        for connection in idlePinned where connection.credentialsChanged() { count += 1 }
        if let control, control.credentialsChanged() { count += 1 }
        return count
    }

    /// Left the config: takes no new requests, reconnects nothing, and closes each connection once
    /// its in-flight replies are in.
    func retire() {
        removed = true
        control?.close()
        control = nil
        idlePinned.forEach { $0.close() }
        idlePinned.removeAll()
        for set in allSets {
            for connection in set { connection.closeWhenIdle() }
        }
        checkDrained()
    }

    /// No shared connection of this retired backend is open any more.
    var isDrained: Bool { allSets.allSatisfy { $0.allSatisfy { !$0.isOpen } } }

    func checkDrained() {
        if removed && isDrained {
            shared = [[], []]
            overflow = [[], []]
            loginShared = [:]
            proxy.retiredBackendDrained(self)
        }
    }

    func shutdown() {
        removed = true
        control?.close()
        control = nil
        for set in allSets { set.forEach { $0.close() } }
        shared = [[], []]
        overflow = [[], []]
        idlePinned.forEach { $0.close() }
        idlePinned.removeAll()
    }
}
