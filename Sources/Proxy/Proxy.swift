import Config
import EventLoop
import Logging
import RESP
import Routing

/// The ambassador on one event loop: accepts app connections, owns the backends, routes.
public final class Proxy {
    public let loop: EventLoop
    public private(set) var config: AmbassadorConfig
    public private(set) var logger: Logger
    /// This worker's counters, published to the process's `Metrics` by `publishTimer`.
    let stats: WorkerMetrics
    private var publishTimer: Timer?
    private var reusePort = false
    /// Draining for shutdown: no new connections or commands; `onDrained` runs when the last
    /// session has closed.
    private var draining = false
    private var onDrained: (() -> Void)?
    let table: CommandTable
    let limits = RESPLimits.redis
    let slots = SlotPool()
    private var listener: Listener?
    /// The master and replicas (with discovery: cluster, the first shard's; keyless commands
    /// go there).
    private(set) var primary: ReplicationGroup!
    /// Every group: the one, or one per cluster shard, in the layout's order (`primary` first).
    private(set) var groups: [ReplicationGroup] = []
    /// discovery: cluster — commands are routed by their keys' hash slot (`slotMap`: the index in
    /// `groups` of the shard serving each slot). Fixed at start (a restart changes it).
    let clustered: Bool
    private(set) var slotMap = SlotMap()
    /// The layout's ranges `slotMap` was built from; nil once a -MOVED edited it (the next
    /// layout rebuilds it whatever its ranges).
    private var slotMapRanges: [[ClosedRange<Int>]]? = []
    /// A layout has arrived (before it, every command waits for a master, as during a failover).
    private(set) var hasLayout = false
    /// Tells the control plane a -MOVED or -ASK was met (the layout is read again); set by the
    /// supervisor, called on this worker's loop.
    public var onClusterRedirect: (@Sendable () -> Void)?
    /// Every backend of every group.
    var allBackends: [Backend] { groups.count == 1 ? primary.backends : groups.flatMap(\.backends) }
    private var sessions: [Int64: ClientSession] = [:]
    private var nextSessionID: Int64 = 1
    /// Learned from the master: what HELLO reports, and the range SELECT accepts.
    private(set) var masterVersion = "7.0.0"

    /// Whether the master's Redis is `major.minor` or later (what it refuses, the ambassador refuses).
    func masterIsAtLeast(_ major: Int, _ minor: Int) -> Bool {
        let parts = masterVersion.split(separator: ".").compactMap { Int($0) }
        return parts.count >= 2 && (parts[0], parts[1]) >= (major, minor)
    }
    private(set) var databases = 16
    var pinnedSessions = 0 {
        didSet { stats.pinnedDelta &+= pinnedSessions - oldValue }
    }
    public private(set) var acceptedConnections = 0
    /// `stall_threshold` in µs; -1 when off.
    private(set) var stallMicroseconds = 50_000
    /// Until when (loop µs: the wall clock, the same in every worker) a CLIENT PAUSE sent through
    /// any worker holds the master's writes: meanwhile a request never queues behind another in
    /// flight on a shared master connection (a paused write there would hold it until the pause
    /// ends; direct, each client has its own connection). 0: no pause. Each worker has its own
    /// shared connections: the worker that sent the pause tells the others (`onPause`).
    private(set) var pausedUntil = 0
    /// Tells every worker of a pause (its end, or 0) sent through this one (`applyPause`).
    public var onPause: (@Sendable (Int) -> Void)?

    /// A CLIENT PAUSE of `milliseconds` (at most 2^40) was sent now.
    func notePause(milliseconds: Int) {
        applyPause(loop.nowMicroseconds + milliseconds * 1000)
        onPause?(pausedUntil)
    }

    /// CLIENT UNPAUSE was sent.
    func endPause() {
        applyPause(0)
        onPause?(0)
    }

    /// A pause sent through any worker: until `until` (µs), or over (0).
    public func applyPause(_ until: Int) {
        pausedUntil = until == 0 ? 0 : max(pausedUntil, until)
    }
    /// read_your_writes is `session` or `app` (offsets are tracked), and `app` (keys too):
    /// kept as flags, read on every command. Nothing is tracked when no read can go to a
    /// replica (`read_policy: master`, or a static topology without replicas): each tracked
    /// write costs a ROLE probe of the master, for nothing there.
    private(set) var tracksOffsets = true
    private(set) var tracksKeys = false

    private func noteReadYourWrites() {
        let replicaReads = config.readPolicy != .master && (config.discovery != .static || !config.replicas.isEmpty)
        tracksOffsets = replicaReads && (config.readYourWrites == .session || config.readYourWrites == .app)
        tracksKeys = replicaReads && config.readYourWrites == .app
    }
    private var sweepTimer: Timer?

    /// This worker's index (0 when there is one loop).
    public let worker: Int

    public init(config: AmbassadorConfig, loop: EventLoop, logger: Logger, table: CommandTable = .redis,
                worker: Int = 0, metrics: Metrics = Metrics()) {
        self.loop = loop
        self.config = config
        self.logger = logger
        self.logger.logLevel = Self.level(config.logLevel)
        self.stats = metrics.worker(worker)
        self.shared = metrics
        self.table = table
        self.worker = worker
        clustered = config.discovery.isCluster
        // Session ids stay unique across workers (CLIENT ID, HELLO): the worker in the high bits.
        nextSessionID = Int64(worker) << 40 | 1
        stallMicroseconds = Self.microseconds(config.stallThreshold)
        loop.pauseMicroseconds = UInt32(max(Self.microseconds(config.loopPause), 0))
        commandRules = CommandRulesIndex(config)
        noteReadYourWrites()
        primary = ReplicationGroup(proxy: self, master: config.master, replicas: config.replicas)
        groups = [primary]
    }

    static func microseconds(_ threshold: Duration) -> Int {
        threshold.seconds > 0 ? threshold.microseconds : -1
    }

    /// Opens the listener and the backend connections. With several workers every one listens on
    /// the same address with SO_REUSEPORT (`port` overrides the config's, for a port 0 the first
    /// worker was given), or accepts on the one Unix socket the supervisor bound (`unixSocket`;
    /// without one, a Unix `listen` is bound here and removed at shutdown).
    public func start(reusePort: Bool = false, port: UInt16? = nil, unixSocket: UnixSocketFile? = nil) throws(SocketError) {
        self.reusePort = reusePort
        listener = try openListener(config.listen, port: port, shared: unixSocket)
        let timer = Timer(loop: loop, repeating: true) { [unowned self] in self.publishMetrics() }
        timer.schedule(after: Self.publishInterval)
        publishTimer = timer
        let sweep = Timer(loop: loop, repeating: true) { [unowned self] in
            self.allBackends.forEach { $0.sweepOverflow() }
            self.checkPausedClients()
            self.releaseMemoryIfIdle()
        }
        sweep.schedule(after: Self.overflowSweepInterval)
        sweepTimer = sweep
        scheduleTimeoutChecks()
        scheduleIdleChecks()
        if worker > 0 { return startBackends() }
        logger.info("listening on \(listenDescription); master \(config.master), replicas \(config.replicas.map(\.description)), read_policy \(config.readPolicy.rawValue)")
        startBackends()
    }

    /// A Unix socket this proxy bound itself (no supervisor gave it one), removed when it stops.
    private var ownUnixSocket: UnixSocketFile?

    private func openListener(_ address: ListenAddress, port: UInt16? = nil,
                              shared: UnixSocketFile? = nil) throws(SocketError) -> Listener {
        let accept: (Connection) -> Void = { [unowned self] connection in self.accept(connection) }
        switch address {
        case .tcp(let tcp):
            var endpoint = tcp.endpoint
            if let port { endpoint.port = port }
            let opened = try Listener(loop: loop, endpoint: endpoint, reusePort: reusePort, onAccept: accept)
            closeOwnUnixSocket()
            return opened
        case .unix(let path):
            // The supervisor's socket, else one of this proxy's own (a reload only gets here
            // with a new path, so an own socket is never reused).
            let socket = if let shared { shared } else { try UnixSocketFile(path: path, mode: config.listenMode) }
            let opened: Listener
            do throws(SocketError) { opened = try Listener(loop: loop, socket: socket, onAccept: accept) } catch {
                if shared == nil { socket.close() }
                throw error
            }
            closeOwnUnixSocket()
            if shared == nil { ownUnixSocket = socket }
            return opened
        }
    }

    private func closeOwnUnixSocket() {
        ownUnixSocket?.close()
        ownUnixSocket = nil
    }

    /// `host:port` as bound (the real port when the config asked for 0), or `unix:/path`.
    var listenDescription: String {
        switch config.listen {
        case .tcp(let address): "\(address.host):\(listenPort)"
        case .unix: config.listen.description
        }
    }

    /// Clients whose reading is paused (blocked, held, or slow to read) are not read, so their
    /// hanging up is looked for here (`Connection.checkHangup`): one that left while blocked in
    /// BLPOP 0 is let go within a sweep interval instead of never.
    private func checkPausedClients() {
        let paused = sessions.values.filter { $0.connection.isReadingPaused }
        for session in paused { session.connection.checkHangup() }
    }

    /// Bytes the loop had moved at the last sweep, and whether memory was released since traffic
    /// last moved.
    private var trafficAtSweep = 0
    private var releasedSinceTraffic = true

    /// A worker whose clients moved no byte for a whole sweep interval gives back what a burst
    /// left: pooled slots past a few hundred (a deep pipeline leaves one per request), the buffer
    /// pool's blocks (up to 4 MiB) and glibc's free heap (up to the 8 MiB trim threshold it keeps
    /// while busy). Once per quiet spell; the next burst allocates again.
    private func releaseMemoryIfIdle() {
        let traffic = loop.clientBytesIn &+ loop.clientBytesOut
        defer { trafficAtSweep = traffic }
        guard traffic == trafficAtSweep else {
            releasedSinceTraffic = false
            return
        }
        guard !releasedSinceTraffic else { return }
        releasedSinceTraffic = true
        slots.trim(keeping: 256)
        loop.releaseIdleMemory()
    }

    static func level(_ text: String) -> Logger.Level {
        Logger.Level(rawValue: text) ?? .info
    }

    /// Overflow connections idle for two sweeps in a row are closed.
    static let overflowSweepInterval = 5.0

    /// How often a worker adds its counts to the shared metrics (so /metrics lags by at most this).
    static let publishInterval = 0.5

    func publishMetrics() {
        stats.publish(bytes: [loop.clientBytesIn, loop.clientBytesOut, loop.backendBytesIn, loop.backendBytesOut], pauses: loop.pauses)
    }

    private func startBackends() {
        groups.forEach { $0.start() }
    }

    /// The port actually bound (differs from the config's when it asked for 0).
    public var listenPort: UInt16 { listener?.port ?? config.listen.tcp?.port ?? 0 }

    /// Stops accepting and closes every connection.
    public func shutdown() {
        listener?.close()
        listener = nil
        closeOwnUnixSocket()
        for session in sessions.values { session.connection.close() }
        groups.forEach { $0.shutdown() }
        retired.forEach { $0.shutdown() }
        retired.removeAll()
        publishMetrics()
        publishTimer?.cancel()
        sweepTimer?.cancel()
        timeoutTimer?.cancel()
        idleTimer?.cancel()
    }

    /// Graceful shutdown: stops accepting, serves the commands already received, closes each
    /// session once its replies are written, then calls `completion` (once every session is gone).
    /// The caller bounds the wait and calls `shutdown()` for whatever is left.
    public func drain(completion: @escaping () -> Void) {
        listener?.close()
        listener = nil
        closeOwnUnixSocket()
        draining = true
        onDrained = completion
        for session in Array(sessions.values) { session.drain() }
        finishDrainIfDone()
    }

    private func finishDrainIfDone() {
        guard draining, sessions.isEmpty, let done = onDrained else { return }
        onDrained = nil
        done()
    }

    // MARK: reload

    /// Backends that left the config and still have replies to deliver.
    private var retired: [Backend] = []

    /// Applies a new config snapshot (already validated, restart-only keys already kept as they
    /// were). New connections use the new values; sessions carry on. Returns the problems met
    /// (a new listen address that cannot be bound keeps the old one). `unixSocket`: the socket
    /// the supervisor bound for a new Unix `listen`.
    @discardableResult
    public func apply(_ new: AmbassadorConfig, unixSocket: UnixSocketFile? = nil) -> [String] {
        var problems: [String] = []
        let old = config
        config = new
        logger.logLevel = Self.level(new.logLevel)
        if new.listen != old.listen && listener != nil {
            // The new address is opened before the old one closes: no moment without a listener.
            do throws(SocketError) {
                let opened = try openListener(new.listen, shared: unixSocket)
                listener?.close()
                listener = opened
                logger.info("listening on \(listenDescription) (was \(old.listen))")
            } catch {
                config.listen = old.listen
                config.listenMode = old.listenMode
                problems.append("cannot listen on \(new.listen): \(error); still on \(old.listen)")
                logger.error("reload: cannot listen on \(new.listen): \(error); still listening on \(old.listen)")
            }
        }
        if new.listen == old.listen, new.listenMode != old.listenMode, let own = ownUnixSocket,
           let failure = own.setMode(new.listenMode) {
            problems.append("cannot chmod \(own.path): \(failure)")
        }
        if new.username != old.username || new.backendPassword != old.backendPassword {
            var count = 0
            for backend in allBackends + retired { count += backend.credentialsChanged() }
            for session in sessions.values { if session.pinned?.credentialsChanged() == true { count += 1 } }
            logger.info("backend credentials changed: \(count) open connection(s) authenticate again")
        }
        if new.commandTimeout != old.commandTimeout { scheduleTimeoutChecks() }
        if new.clientIdleTimeout != old.clientIdleTimeout { scheduleIdleChecks() }
        stallMicroseconds = Self.microseconds(new.stallThreshold)
        loop.pauseMicroseconds = UInt32(max(Self.microseconds(new.loopPause), 0))
        commandRules = CommandRulesIndex(new)
        noteReadYourWrites()
        groups.forEach { $0.configureRouter() }
        // With a health checker the backends come from its topology (which follows the new
        // config within one check), not straight from the file.
        if healthChecked { return problems }
        if new.master != old.master { primary.replaceMaster(with: new.master) }
        if new.replicas != old.replicas {
            primary.replaceReplicas(with: new.replicas)
            logger.info("replicas are now \(new.replicas.map(\.description))")
        }
        if new.replicaWeights != old.replicaWeights { primary.applyWeights(new.replicaWeights) }
        return problems
    }

    /// A group's master changed: commands learned from the old one are asked again.
    func masterReplaced() {
        learnedCommands.removeAll()
    }

    /// A backend that left the config: no new requests; its connections close once their
    /// in-flight replies are in (pinned sessions keep theirs until they let go).
    func retire(_ backend: Backend) {
        backend.retire()
        if !backend.isDrained { retired.append(backend) }
    }

    func retiredBackendDrained(_ backend: Backend) {
        retired.removeAll { $0 === backend }
    }

    // MARK: sessions

    private func accept(_ connection: Connection) {
        guard !draining else { return connection.close() }
        // max_clients counts every worker's clients (one atomic add per connection).
        if shared.openClients.add(1, ordering: .relaxed).newValue > config.maxClients {
            shared.openClients.subtract(1, ordering: .relaxed)
            stats.error(.maxClients)
            connection.start(delegate: RejectedClient.shared, tls: config.listenTLS?.context)
            connection.write(RejectedClient.tooMany)
            return connection.close()
        }
        stats.clientsOpened &+= 1
        let id = nextSessionID
        nextSessionID += 1
        acceptedConnections += 1
        let session = ClientSession(proxy: self, connection: connection, id: id)
        sessions[id] = session
        connection.start(delegate: session, tls: config.listenTLS?.context)
    }

    func sessionClosed(_ session: ClientSession) {
        sessions[session.id] = nil
        shared.openClients.subtract(1, ordering: .relaxed)
        stats.clientsClosed &+= 1
        if draining { finishDrainIfDone() }
    }

    public var clientCount: Int { sessions.count }

    /// The master and every replica have a shared connection up.
    public var backendsUp: Bool { allBackends.allSatisfy(\.isUp) }

    /// Logins apps passed through (AUTH checked by the master while the ambassador holds no
    /// credentials of its own): each gets a number, 1…, naming its backend connection sets.
    private var loginIndexes: [Login: Int] = [:]
    private(set) var logins: [Login] = []

    func loginIndex(for login: Login) -> Int {
        if let index = loginIndexes[login] { return index }
        logins.append(login)
        loginIndexes[login] = logins.count
        return logins.count
    }

    func login(at index: Int) -> Login? { index > 0 && index <= logins.count ? logins[index - 1] : nil }

    /// Whether the apps' own AUTH goes to Redis (the ambassador has no backend password).
    /// The app's AUTH goes to Redis: the ambassador has neither backend credentials nor client
    /// users of its own to check it against.
    var passesLoginsThrough: Bool { config.backendPassword == nil && !config.requiresClientAuth }
    /// The `commands` rules by user, taken from the config when it is applied; nil when there
    /// are none, so a command without rules costs one test.
    private(set) var commandRules: CommandRulesIndex?

    /// Commands the table does not know, classified from the master's `COMMAND INFO` (module
    /// commands, renamed ones): asked once per name, on first use; until the answer is in, and
    /// for names the master does not know either, they go to the master as unknown.
    private var learnedCommands: [ShortBytes: CommandClass] = [:]

    /// The class of an unknown command, once learned (asks the master the first time).
    func learnedClass(of name: ShortBytes) -> CommandClass? {
        if let known = learnedCommands[name] { return known }
        guard name.count <= ShortBytes.capacity, learnedCommands.count < 4096,
              let control = primary.master.controlConnection() else { return nil }
        learnedCommands[name] = .unknown  // asked once
        let text = name.description
        control.probe(["COMMAND", "INFO", text]) { [unowned self] bytes in
            guard let (value, _) = try? RESPValue.decode(bytes), case .array(let entries?) = value,
                  entries.count == 1, case .array(let info?) = entries[0], info.count >= 3,
                  case .array(let flags?) = info[2] else { return }
            let learned = CommandTable.classify(flags: flags.compactMap(\.text))
            self.learnedCommands[name] = learned
            self.logger.info("command '\(text)' is not in the command table: the master describes it as \(learned)")
        }
        return nil
    }
    var allSessions: [ClientSession] { Array(sessions.values) }

    /// This worker's sessions running MONITOR (asked only while someone monitors).
    var monitoringSessions: [ClientSession] {
        sessions.values.filter { $0.pinnedState == .monitor && $0.connection.isOpen }
    }

    func session(id: Int64) -> ClientSession? { sessions[id] }

    // MARK: topology

    /// Set by the control plane when a health checker feeds this worker topologies: backends
    /// then start ineligible and the master unconfirmed until the first snapshot.
    public private(set) var healthChecked = false
    /// What every worker shares: the metrics, and the count of open app connections.
    private let shared: Metrics
    private var timeoutTimer: Timer?
    private var idleTimer: Timer?

    public func useHealthChecks() {
        healthChecked = true
        groups.forEach { $0.useHealthChecks() }
    }

    /// A new snapshot from the health checker.
    public func applyTopology(_ new: Topology) {
        guard clustered, let shards = new.shards else { return primary.applyTopology(new) }
        applyCluster(shards)
    }

    /// A new cluster layout: each shard keeps the group that already serves one of its nodes
    /// (connections, router and offsets and all), new shards get a group, the rest retire; then
    /// each group takes its shard's health, and the slot table is rebuilt.
    private func applyCluster(_ shards: [Topology.Shard]) {
        var available = groups
        var next: [ReplicationGroup] = []
        for shard in shards {
            let members = Set([shard.layoutMaster] + shard.topology.replicas.map(\.address) + (shard.topology.master.map { [$0] } ?? []))
            let index = available.firstIndex { members.contains($0.master.address) }
                ?? available.firstIndex { $0.replicas.contains { members.contains($0.address) } }
                ?? (hasLayout ? nil : available.indices.first)  // the seed placeholder becomes the first shard
            if let index {
                next.append(available.remove(at: index))
            } else {
                let group = ReplicationGroup(proxy: self, master: shard.topology.master ?? shard.layoutMaster, replicas: [])
                if healthChecked { group.useHealthChecks() }
                group.start()
                next.append(group)
            }
        }
        // `primary` stays a group (sessions hold it): with no shard at all it is kept, idle.
        if next.isEmpty { next = [primary] }
        for gone in available where gone !== primary {
            gone.backends.forEach { retire($0) }
            gone.shutdownTimers()
        }
        groups = next
        primary = next[0]
        hasLayout = !shards.isEmpty
        // Every health-check snapshot comes here; the table is rebuilt (16,384 entries) only
        // when the layout's ranges changed, or a -MOVED edited it since.
        let ranges = shards.map(\.slots)
        if ranges != slotMapRanges {
            slotMap = SlotMap(ranges: ranges)
            slotMapRanges = ranges
        }
        for (group, shard) in zip(groups, shards) {
            if shard.topology.master == nil, group.master.address != shard.layoutMaster, group.topology == nil {
                group.replaceMaster(with: shard.layoutMaster)
            }
            group.applyTopology(shard.topology)
        }
    }

    /// The group serving `slot`; nil when no shard does (the layout says the slot is unserved).
    @inline(__always)
    func group(forSlot slot: Int) -> ReplicationGroup? {
        guard hasLayout else { return primary }
        guard let index = slotMap.shard(of: slot) else { return nil }
        return groups[index]
    }

    /// A -MOVED reply named `address` as `slot`'s owner: the table says so at once (when a group
    /// has that master), and the control plane reads the layout again.
    func moved(slot: Int, to address: Address) -> ReplicationGroup? {
        requestLayout()
        guard let index = groups.firstIndex(where: { $0.master.address == address }) else { return nil }
        slotMap.assign(slot, to: index)
        slotMapRanges = nil
        return groups[index]
    }

    /// When the control plane was last asked for the layout (loop µs): at most every 50 ms.
    private var layoutRequestedAt = Int.min / 2

    /// A redirection was met: the layout is read again (soon, and once for a burst of them).
    func requestLayout() {
        let now = loop.nowMicroseconds
        guard now - layoutRequestedAt >= 50_000 else { return }
        layoutRequestedAt = now
        onClusterRedirect?()
    }

    /// One-shot timers for `after` (fired ones are let go at a later call: never inside their
    /// own callback).
    private final class OneShot {
        var timer: Timer?
        var fired = false
    }
    private var oneShots: [OneShot] = []

    // MARK: corked sessions

    /// Sessions that corked their client output (see `ClientSession.endBatch`), each once. A
    /// cork lasts at most `corkDuration`: what a batch's quick replies wait for may itself wait
    /// (a write held by CLIENT PAUSE, a long script), and Redis would have sent them meanwhile.
    private var corked: [ClientSession] = []
    private var corkTimer: Timer?
    private var corkTimerArmed = false
    static let corkDuration = 0.01

    /// `session` corked its output now.
    func corkStarted(_ session: ClientSession) {
        if !session.inCorkList {
            session.inCorkList = true
            corked.append(session)
        }
        guard !corkTimerArmed else { return }
        if corkTimer == nil { corkTimer = Timer(loop: loop) { [unowned self] in self.releaseCorks() } }
        corkTimerArmed = true
        corkTimer?.schedule(after: Self.corkDuration)
    }

    /// Uncorks the sessions corked `corkDuration` ago or earlier; the list keeps those corked since
    /// (a session that uncorked and corked again counts from its new cork).
    private func releaseCorks() {
        corkTimerArmed = false
        let limit = Int(Self.corkDuration * 1_000_000)
        let now = loop.nowMicroseconds
        var kept = 0
        var oldest = now
        for session in corked {
            if now - session.corkedAt >= limit { session.releaseCork() }
            if session.corkedAt < 0 {
                session.inCorkList = false
                continue
            }
            oldest = min(oldest, session.corkedAt)
            corked[kept] = session
            kept += 1
        }
        corked.removeSubrange(kept...)
        if kept > 0 {
            corkTimerArmed = true
            corkTimer?.schedule(after: Double(max(limit - (now - oldest), 100)) / 1_000_000)
        }
    }

    /// Runs `action` on this loop after `seconds`.
    func after(_ seconds: Double, _ action: @escaping () -> Void) {
        oneShots.removeAll { $0.fired }
        let shot = OneShot()
        let timer = Timer(loop: loop) { [unowned shot] in
            shot.fired = true
            action()
        }
        shot.timer = timer
        oneShots.append(shot)
        timer.schedule(after: seconds)
    }

    /// The backend at `address` in any group (a redirection's target).
    func backend(at address: Address) -> Backend? {
        group(at: address)?.backends.first { $0.address == address }
    }

    /// The group whose node is at `address` (an -ASK target), its master or a replica.
    func group(at address: Address) -> ReplicationGroup? {
        groups.first { $0.master.address == address } ?? groups.first { $0.replicas.contains { $0.address == address } }
    }

    /// `client_idle_timeout`: idle app connections are closed, checked a few times per timeout
    /// (at least every second, as Redis's clients cron).
    private func scheduleIdleChecks() {
        idleTimer = expiryTimer(config.clientIdleTimeout, every: 0.05...1) { proxy, deadline in
            for session in Array(proxy.sessions.values) where session.isIdle(since: deadline) { session.closeIdle() }
        }
    }

    /// `command_timeout`: shared connections with a request older than it are reset.
    private func scheduleTimeoutChecks() {
        timeoutTimer = expiryTimer(config.commandTimeout, every: 0.01...0.25) { proxy, deadline in
            proxy.allBackends.forEach { $0.expireRequests(olderThan: deadline) }
        }
    }

    /// A repeating check, a quarter of `limit` apart (within `bounds`), handed the loop time
    /// `limit` ago; nil when `limit` is 0 (off). The caller's old timer is dropped with it.
    private func expiryTimer(_ limit: Duration, every bounds: ClosedRange<Double>,
                             _ check: @escaping (Proxy, _ deadline: Int) -> Void) -> Timer? {
        guard limit.seconds > 0 else { return nil }
        let microseconds = limit.microseconds
        let timer = Timer(loop: loop, repeating: true) { [unowned self] in
            check(self, self.loop.nowMicroseconds - microseconds)
        }
        timer.schedule(after: min(max(limit.seconds / 4, bounds.lowerBound), bounds.upperBound))
        return timer
    }

    /// The master's first connection came up: learn its version and number of databases.
    func backendCameUp(_ backend: Backend, through connection: BackendConnection) {
        guard backend === primary.master || (clustered && backend.role == .master) else { return }
        connection.probe(["INFO", "server"]) { [unowned self] bytes in
            guard let (value, _) = try? RESPValue.decode(bytes), let text = value.text else { return }
            for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("redis_version:") {
                self.masterVersion = String(line.dropFirst("redis_version:".count))
            }
        }
        connection.probe(["CONFIG", "GET", "databases"]) { [unowned self] bytes in
            guard let (value, _) = try? RESPValue.decode(bytes), case .array(let items?) = value,
                  items.count == 2, let count = items[1].text.flatMap(Int.init) else { return }
            self.databases = count
        }
    }

    /// Shared connections whose oldest request has waited `stall_threshold`: sessions move off them.
    var stalledConnections: Int {
        guard stallMicroseconds >= 0 else { return 0 }
        let deadline = loop.nowMicroseconds - stallMicroseconds
        return allBackends.reduce(0) { $0 + $1.stalledConnections(before: deadline) }
    }

    /// Bytes of replies whose clients had left, dropped as they arrived without being read
    /// (see `BackendConnection.skipAbandonedReply`).
    var skippedReplyBytes = 0

    /// `AMBASSADOR INFO`.
    func infoText() -> String {
        var lines = ["# ambassador", "worker:\(worker)", "master_confirmed:\(primary.masterConfirmed ? 1 : 0)", "clients:\(sessions.count)", "accepted_connections:\(acceptedConnections)",
                     "pinned_sessions:\(pinnedSessions)", "stalled_connections:\(stalledConnections)",
                     "read_policy:\(config.readPolicy.rawValue)",
                     "master:\(primary.master.address),\(primary.master.isUp ? "up" : "down")"]
        let heap = EventLoop.heapUsage()
        lines.append("heap_in_use_bytes:\(heap.inUse)")
        lines.append("heap_free_bytes:\(heap.free)")
        lines.append("pooled_slots:\(slots.count)")
        lines.append("learned_commands:\(learnedCommands.count)")
        lines.append("skipped_reply_bytes:\(skippedReplyBytes)")
        for (index, replica) in primary.replicas.enumerated() {
            lines.append("replica\(index):\(replica.address),\(replica.isUp ? "up" : "down"),\(replica.servesReads ? "eligible" : "ineligible")")
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}

/// A backend as `ReadRouter` sees a replica: its load is that of the session's connection.
extension Backend: ReplicaState {
    var isEligible: Bool { servesReads }
    func outstanding(in session: ClientSession) -> Int { outstanding(for: session) }
}

/// A connection turned away at `max_clients`: it gets Redis's error, then is closed (nothing it
/// sends is read).
final class RejectedClient: ConnectionDelegate, Sendable {
    static let shared = RejectedClient()
    static let tooMany = Array("-ERR max number of clients reached\r\n".utf8)
    func connectionDidRead(_ connection: Connection) { connection.discardInput(connection.inputCount) }
    func connectionDidClose(_ connection: Connection, error: SocketError?) {}
}

/// The `commands` rules of each client user (its own, else the global ones), looked up per
/// command without copying the config.
struct CommandRulesIndex {
    let global: CommandRules?
    let byUser: [String: CommandRules]

    /// nil when the config has no rules at all.
    init?(_ config: AmbassadorConfig) {
        var byUser: [String: CommandRules] = [:]
        for user in config.clientUsers { if let rules = user.commands ?? config.commands { byUser[user.name] = rules } }
        guard config.commands != nil || !byUser.isEmpty else { return nil }
        global = config.commands
        self.byUser = byUser
    }

    func rules(for user: String) -> CommandRules? { byUser[user] ?? global }
}
