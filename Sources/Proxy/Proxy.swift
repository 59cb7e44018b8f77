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
    private var boundPort: UInt16?
    /// Draining for shutdown: no new connections or commands; `onDrained` runs when the last
    /// session has closed.
    private var draining = false
    private var onDrained: (() -> Void)?
    let table: CommandTable
    let limits = RESPLimits.redis
    let slots = SlotPool()
    private var listener: Listener?
    private(set) var master: Backend!
    private(set) var replicas: [Backend] = []
    private var sessions: [Int64: ClientSession] = [:]
    private var nextSessionID: Int64 = 1
    private var replicaCursor = 0
    /// Learned from the master: what HELLO reports, and the range SELECT accepts.
    private(set) var masterVersion = "7.0.0"
    private(set) var databases = 16
    var pinnedSessions = 0 {
        didSet { stats.pinnedDelta &+= pinnedSessions - oldValue }
    }
    public private(set) var acceptedConnections = 0

    /// This worker's index (0 when there is one loop).
    public let worker: Int

    public init(config: AmbassadorConfig, loop: EventLoop, logger: Logger, table: CommandTable = .redis,
                worker: Int = 0, metrics: Metrics = Metrics()) {
        self.loop = loop
        self.config = config
        self.logger = logger
        self.logger.logLevel = Self.level(config.logLevel)
        self.stats = metrics.worker(worker)
        self.table = table
        self.worker = worker
        // Session ids stay unique across workers (CLIENT ID, HELLO): the worker in the high bits.
        nextSessionID = Int64(worker) << 40 | 1
        master = Backend(proxy: self, address: config.master, role: .master)
        replicas = config.replicas.map { Backend(proxy: self, address: $0, role: .replica) }
    }

    /// Opens the listener and the backend connections. With several workers every one listens on
    /// the same address with SO_REUSEPORT (`port` overrides the config's, for a port 0 the first
    /// worker was given).
    public func start(reusePort: Bool = false, port: UInt16? = nil) throws(SocketError) {
        self.reusePort = reusePort
        boundPort = port
        listener = try openListener(config.listen, port: port)
        let timer = Timer(loop: loop, repeating: true) { [unowned self] in self.publishMetrics() }
        timer.schedule(after: Self.publishInterval)
        publishTimer = timer
        if worker > 0 { return startBackends() }
        logger.info("listening on \(config.listen.host):\(listenPort); master \(config.master), replicas \(config.replicas.map(\.description)), read_policy \(config.readPolicy.rawValue)")
        startBackends()
    }

    private func openListener(_ address: Address, port: UInt16? = nil) throws(SocketError) -> Listener {
        let endpoint = Endpoint(host: address.host, port: port ?? address.port)
        return try Listener(loop: loop, endpoint: endpoint, reusePort: reusePort) { [unowned self] connection in
            self.accept(connection)
        }
    }

    static func level(_ text: String) -> Logger.Level {
        Logger.Level(rawValue: text) ?? .info
    }

    /// How often a worker adds its counts to the shared metrics (so /metrics lags by at most this).
    static let publishInterval = 0.5

    func publishMetrics() {
        stats.publish(bytes: [loop.clientBytesIn, loop.clientBytesOut, loop.backendBytesIn, loop.backendBytesOut])
    }

    private func startBackends() {
        master.start()
        replicas.forEach { $0.start() }
    }

    /// The port actually bound (differs from the config's when it asked for 0).
    public var listenPort: UInt16 { listener?.port ?? config.listen.port }

    /// Stops accepting and closes every connection.
    public func shutdown() {
        listener?.close()
        listener = nil
        for session in sessions.values { session.connection.close() }
        master.shutdown()
        replicas.forEach { $0.shutdown() }
        retired.forEach { $0.shutdown() }
        retired.removeAll()
        publishMetrics()
        publishTimer?.cancel()
    }

    /// Graceful shutdown: stops accepting, serves the commands already received, closes each
    /// session once its replies are written, then calls `completion` (once every session is gone).
    /// The caller bounds the wait and calls `shutdown()` for whatever is left.
    public func drain(completion: @escaping () -> Void) {
        listener?.close()
        listener = nil
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
    /// (a new listen address that cannot be bound keeps the old one).
    @discardableResult
    public func apply(_ new: AmbassadorConfig) -> [String] {
        var problems: [String] = []
        let old = config
        config = new
        logger.logLevel = Self.level(new.logLevel)
        if new.listen != old.listen && listener != nil {
            // The new address is opened before the old one closes: no moment without a listener.
            do throws(SocketError) {
                let opened = try openListener(new.listen)
                listener?.close()
                listener = opened
                boundPort = nil
                logger.info("listening on \(new.listen.host):\(opened.port) (was \(old.listen))")
            } catch {
                config.listen = old.listen
                problems.append("cannot listen on \(new.listen): \(error); still on \(old.listen)")
                logger.error("reload: cannot listen on \(new.listen): \(error); still listening on \(old.listen)")
            }
        }
        if new.master != old.master {
            let previous = master!
            master = Backend(proxy: self, address: new.master, role: .master)
            retire(previous)
            master.start()
            logger.info("master is now \(new.master) (was \(old.master))")
        }
        if new.replicas != old.replicas {
            var kept: [Address: Backend] = [:]
            for replica in replicas { kept[replica.address] = replica }
            replicas = new.replicas.map { address in
                if let existing = kept.removeValue(forKey: address) { return existing }
                let added = Backend(proxy: self, address: address, role: .replica)
                added.start()
                return added
            }
            replicaCursor = 0
            for (_, gone) in kept { retire(gone) }
            logger.info("replicas are now \(new.replicas.map(\.description))")
        }
        return problems
    }

    /// A backend that left the config: no new requests; its connections close once their
    /// in-flight replies are in (pinned sessions keep theirs until they let go).
    private func retire(_ backend: Backend) {
        backend.retire()
        if !backend.isDrained { retired.append(backend) }
    }

    func retiredBackendDrained(_ backend: Backend) {
        retired.removeAll { $0 === backend }
    }

    // MARK: sessions

    private func accept(_ connection: Connection) {
        guard !draining else { return connection.close() }
        stats.clientsOpened &+= 1
        let id = nextSessionID
        nextSessionID += 1
        acceptedConnections += 1
        let session = ClientSession(proxy: self, connection: connection, id: id)
        sessions[id] = session
        connection.start(delegate: session)
    }

    func sessionClosed(_ session: ClientSession) {
        sessions[session.id] = nil
        stats.clientsClosed &+= 1
        if draining { finishDrainIfDone() }
    }

    public var clientCount: Int { sessions.count }

    // MARK: routing

    /// Where a read goes under `read_policy`: replicas that are up take turns; `prefer-replica`
    /// falls back to the master; `replica` has nowhere to go (nil) when none is up.
    func readTarget(for session: ClientSession, excluding excluded: Backend?) -> Backend? {
        switch config.readPolicy {
        case .master:
            return master
        case .preferReplica, .replica:
            if !replicas.isEmpty {
                for step in 0..<replicas.count {
                    let candidate = replicas[(replicaCursor + step) % replicas.count]
                    if candidate.isUp && candidate !== excluded {
                        replicaCursor = (replicaCursor + step + 1) % replicas.count
                        return candidate
                    }
                }
            }
            return config.readPolicy == .preferReplica ? master : nil
        }
    }

    /// A read whose replica connection died before replying: sent again to another replica or
    /// (under prefer-replica) the master. False when there is nowhere to send it.
    func retryRead(_ slot: Slot, after failed: Backend) -> Bool {
        guard let session = slot.session, let backend = readTarget(for: session, excluding: failed),
              backend !== failed, !backend.removed else { return false }
        let target = backend.sharedConnection(for: session)
        guard target.isUsable else { return false }
        slot.retriesLeft -= 1
        target.select(session.db)
        logger.debug("retrying a read from \(failed.address) on \(backend.address)")
        target.write(slot.retryRequest, slot: slot)
        return true
    }

    /// The master's first connection came up: learn its version and number of databases.
    func backendCameUp(_ backend: Backend, through connection: BackendConnection) {
        guard backend === master else { return }
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

    /// `AMBASSADOR INFO`.
    func infoText() -> String {
        var lines = ["# ambassador", "worker:\(worker)", "clients:\(sessions.count)", "accepted_connections:\(acceptedConnections)",
                     "pinned_sessions:\(pinnedSessions)", "read_policy:\(config.readPolicy.rawValue)",
                     "master:\(master.address),\(master.isUp ? "up" : "down")"]
        for (index, replica) in replicas.enumerated() {
            lines.append("replica\(index):\(replica.address),\(replica.isUp ? "up" : "down")")
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
