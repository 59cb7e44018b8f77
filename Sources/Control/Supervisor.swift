import Config
import EventLoop
import Logging
import Proxy
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The control plane, on the main thread's loop: starts the workers, owns the config (reload on
/// SIGHUP, on a change of the file's content, on `POST /reload`), the admin endpoint and shutdown.
///
/// Workers never read shared state: a reload hands each one an immutable `AmbassadorConfig`
/// through its loop's mailbox, so the per-command path takes no lock.
public final class Supervisor {
    public let loop: EventLoop
    public private(set) var config: AmbassadorConfig
    public private(set) var generation = 1
    public let metrics = Metrics()
    private let configPath: String?
    private var logger: Logger
    private var workers: [Worker] = []
    private var admin: HTTPServer?
    private var watchTimer: LoopTimer?
    private var signals: [SignalHandler] = []
    private var checker: HealthChecker?
    /// What the watched files held when last read: a reload happens when this changes.
    private var watchedContent: [UInt8] = []
    private(set) var lastReload = ReloadRecord(trigger: "start", result: .applied, message: "initial config", at: System.wallClock())
    private var stopping = false
    private var shutdownTimer: LoopTimer?
    private let drainedWorkers = DrainCounter()
    private var shutdownDeadline = ContinuousClock.now

    /// How often the config file's content is compared with what was loaded.
    public static let watchInterval = 0.5

    struct Worker {
        let handle: EventLoopHandle
        let thread: EventLoopThread
    }

    public struct ReloadRecord: Sendable {
        public var trigger: String
        public var result: ReloadResult
        public var message: String
        /// When, in seconds since the epoch.
        public var at: Int
    }

    public init(config: AmbassadorConfig, configPath: String?, loop: EventLoop, logger: Logger) {
        self.config = config
        self.configPath = configPath
        self.loop = loop
        self.logger = logger
        self.logger.logLevel = Logger.Level(rawValue: config.logLevel) ?? .info
        if let configPath { watchedContent = Self.watchedBytes(configPath, config) }
    }

    /// Starts the workers, the admin endpoint, the file watch and the signal handlers.
    public func start(workerCount: Int) throws {
        metrics.configure(master: config.master.description, replicas: config.replicas.map(\.description))
        metrics.reloaded(.applied, generation: generation)
        // Every worker, the only one included, runs on a thread of its own: this loop reads the
        // config file, resolves names for the health checks and serves the admin endpoint, and
        // none of that blocking work may delay the app's commands.
        if case .unix(let path) = config.listen {
            unixSocket = try UnixSocketFile(path: path, mode: config.listenMode)
        }
        loop.context = self
        workers = try startThreads(workerCount)
        let checker = HealthChecker(config: config, loop: loop, logger: logger) { [unowned self] topology in
            self.topologyChanged(topology)
        }
        self.checker = checker
        checker.start()
        if let address = config.adminListen { admin = try openAdmin(address) }
        if configPath != nil {
            let timer = LoopTimer(loop: loop, repeating: true) { [unowned self] in self.checkFile() }
            timer.schedule(after: Self.watchInterval)
            watchTimer = timer
        }
        signals = [
            SignalHandler(loop: loop, signal: SIGHUP) { [unowned self] in self.reload(trigger: "SIGHUP") },
            SignalHandler(loop: loop, signal: SIGTERM) { [unowned self] in self.beginShutdown("SIGTERM") },
            SignalHandler(loop: loop, signal: SIGINT) { [unowned self] in self.beginShutdown("SIGINT") },
        ]
    }

    /// Runs until shutdown has finished.
    public func run() {
        loop.run()
        workers.forEach { $0.thread.join() }
    }

    /// The admin endpoint's port (nil when off).
    public var adminPort: UInt16? { admin?.port }

    // MARK: workers

    /// `count` event loops on threads of their own, each a complete proxy on the same address
    /// with SO_REUSEPORT. Worker 0 starts first, so a port 0 becomes one port all of them share.
    private func startThreads(_ count: Int) throws -> [Worker] {
        var started: [Worker] = []
        var port: UInt16? = nil
        for index in 0..<count {
            let outcome = Mutex<Result<UInt16, SocketError>?>(nil)
            let (settings, logger, metrics, fixedPort, socket, control) = (config, logger, metrics, port, unixSocket, loop.handle)
            let thread = try EventLoopThread.start(name: "worker-\(index)") { loop in
                let proxy = Proxy(config: settings, loop: loop, logger: logger, worker: index, metrics: metrics)
                proxy.useHealthChecks()
                proxy.onClusterRedirect = { control.post { loop in (loop.context as? Supervisor)?.checker?.clusterRedirected() } }
                proxy.onPause = { until in control.post { loop in (loop.context as? Supervisor)?.eachProxy { $0.applyPause(until) } } }
                do throws(SocketError) {
                    try proxy.start(reusePort: true, port: fixedPort, unixSocket: socket)
                    loop.context = proxy
                    outcome.withLock { $0 = .success(proxy.listenPort) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                    loop.stop()
                }
            }
            switch outcome.withLock({ $0 }) {
            case .success(let bound)?:
                port = bound
                started.append(Worker(handle: thread.handle, thread: thread))
            case .failure(let error)?:
                started.forEach { $0.handle.stop() }
                throw error
            case nil:
                throw SocketError(.socket, detail: "worker \(index) did not start")
            }
        }
        return started
    }

    /// Runs `work` with each worker's proxy, on that worker's loop.
    private func eachProxy(_ work: @escaping @Sendable (Proxy) -> Void) {
        for worker in workers {
            worker.handle.post { loop in
                if let proxy = loop.context as? Proxy { work(proxy) }
            }
        }
    }

    /// A new snapshot from the health checker, for every worker (and the metrics' backend list).
    private func topologyChanged(_ topology: Topology) {
        if let shards = topology.shards {
            metrics.configure(masters: shards.map { ($0.topology.master ?? $0.layoutMaster).description },
                              replicas: shards.flatMap { $0.topology.replicas.map(\.address.description) })
        } else {
            metrics.configure(master: (topology.master ?? config.master).description,
                              replicas: topology.replicas.map(\.address.description))
        }
        eachProxy { proxy in proxy.applyTopology(topology) }
    }

    // MARK: reload

    /// Reads the file again and applies what changed. An invalid file changes nothing.
    @discardableResult
    public func reload(trigger: String) -> ReloadRecord {
        guard let configPath else {
            return record(trigger, .unchanged, "no config file (started from flags)")
        }
        guard !stopping else { return record(trigger, .unchanged, "shutting down") }
        let loaded: AmbassadorConfig
        do {
            loaded = try ConfigLoader.load(path: configPath)
        } catch {
            watchedContent = Self.watchedBytes(configPath, nil)
            logger.error("reload (\(trigger)): \(configPath): \(error); keeping generation \(generation)")
            return record(trigger, .invalid, "\(error)")
        }
        watchedContent = Self.watchedBytes(configPath, loaded)
        let restartOnly = config.changedKeys(to: loaded).filter { AmbassadorConfig.restartOnlyKeys.contains($0) }
        for key in restartOnly {
            logger.warning("reload (\(trigger)): \(key) changes only at restart; keeping the running value")
        }
        var next = config.applyingLive(loaded)
        var changed = config.changedKeys(to: next)
        guard !changed.isEmpty else {
            let note = restartOnly.isEmpty ? "no change" : "no live change (\(restartOnly.joined(separator: ", ")) need a restart)"
            return record(trigger, .unchanged, note)
        }
        if next.adminListen != config.adminListen { reopenAdmin(next.adminListen) }
        let retiredSocket = reopenUnixSocket(&next)
        changed = config.changedKeys(to: next)
        config = next
        generation += 1
        logger.logLevel = Logger.Level(rawValue: next.logLevel) ?? .info
        let (snapshot, socket) = (next, unixSocket)
        eachProxy { proxy in proxy.apply(snapshot, unixSocket: socket) }
        // The workers keep accepting on their own descriptors until they switch; the old path
        // goes now.
        retiredSocket?.close()
        checker?.reconfigure(next)
        var message = "changed: \(changed.joined(separator: ", "))"
        if !restartOnly.isEmpty { message += "; need a restart: \(restartOnly.joined(separator: ", "))" }
        logger.info("config generation \(generation) applied (\(trigger)); \(message)")
        return record(trigger, .applied, message)
    }

    private func record(_ trigger: String, _ result: ReloadResult, _ message: String) -> ReloadRecord {
        lastReload = ReloadRecord(trigger: trigger, result: result, message: message, at: System.wallClock())
        metrics.reloaded(result, generation: generation)
        return lastReload
    }

    /// The poll: the file is read through its path, so a Kubernetes ConfigMap update (a new
    /// `..data` symlink swapped in atomically) is seen like an edit in place. The password file
    /// is watched too: a rotated Secret is a reload.
    private func checkFile() {
        guard let configPath, !stopping else { return }
        if let token = config.authTokenFile, let written = System.modificationTime(atPath: token) {
            metrics.authTokenAge.set(Double(max(System.wallClock() - written, 0)))
        }
        let now = Self.watchedBytes(configPath, config)
        if now != watchedContent { reload(trigger: "file change") }
    }

    static func watchedBytes(_ path: String, _ config: AmbassadorConfig?) -> [UInt8] {
        var bytes = System.contents(atPath: path) ?? []
        for file in config?.watchedFiles ?? [] {
            guard let secret = System.contents(atPath: file) else { continue }
            bytes.append(0)
            bytes.append(contentsOf: secret)
        }
        return bytes
    }

    // MARK: Unix socket listener

    /// The Unix socket every worker accepts on (`listen: unix:/path`), bound here once.
    private var unixSocket: UnixSocketFile?

    /// A reload that changes a Unix `listen`: the new path is bound before the workers switch
    /// (if it cannot be, `next` keeps the running address); a new mode on the same path is set in
    /// place. Returns the socket to close once the workers were told.
    private func reopenUnixSocket(_ next: inout AmbassadorConfig) -> UnixSocketFile? {
        guard next.listen != config.listen || next.listenMode != config.listenMode else { return nil }
        guard case .unix(let path) = next.listen else {
            defer { unixSocket = nil }
            return unixSocket
        }
        if next.listen == config.listen, let socket = unixSocket {
            if let failure = socket.setMode(next.listenMode) {
                logger.error("reload: cannot set listen_mode on \(path): \(failure); keeping the old mode")
                next.listenMode = config.listenMode
            }
            return nil
        }
        do {
            let opened = try UnixSocketFile(path: path, mode: next.listenMode)
            defer { unixSocket = opened }
            return unixSocket
        } catch {
            logger.error("reload: cannot listen on \(next.listen): \(error); still listening on \(config.listen)")
            next.listen = config.listen
            next.listenMode = config.listenMode
            return nil
        }
    }

    // MARK: admin endpoint

    private func openAdmin(_ address: Address) throws(SocketError) -> HTTPServer {
        let endpoint = AdminEndpoint(supervisor: self)
        let server = try HTTPServer(loop: loop, endpoint: address.endpoint) { request in endpoint.handle(request) }
        logger.info("admin endpoint on http://\(address.host):\(server.port)")
        return server
    }

    /// A new admin address: opened before the old one closes; if it cannot be, the old one stays.
    private func reopenAdmin(_ address: Address?) {
        guard let address else {
            admin?.close()
            admin = nil
            return
        }
        do {
            let opened = try openAdmin(address)
            admin?.close()
            admin = opened
        } catch {
            logger.error("reload: cannot open the admin endpoint on \(address): \(error); keeping the old one")
        }
    }

    var isStopping: Bool { stopping }

    /// The master the health checks confirmed (nil: none yet, or a failover).
    var confirmedMaster: Address? { checker?.topology?.master }
    /// discovery: cluster — the shards of the latest snapshot (empty before the layout); nil
    /// otherwise.
    var clusterShards: [Topology.Shard]? {
        guard config.discovery.isCluster else { return nil }
        return checker?.topology?.shards ?? []
    }
    /// Why the nodes that are down failed their last check.
    var downReasons: [String] { checker?.downReasons ?? [] }

    func configView() -> ConfigView {
        ConfigView(generation: generation, config: config.redacted, configFile: configPath,
                   lastReload: ReloadView(trigger: lastReload.trigger, result: lastReload.result.label,
                                          message: lastReload.message, at: System.iso8601(lastReload.at)),
                   restartOnlyKeys: AmbassadorConfig.restartOnlyKeys.sorted(),
                   topology: checker?.view() ?? TopologyView(master: "unknown (first check pending)"))
    }

    // MARK: shutdown

    /// SIGTERM/SIGINT: stop accepting, let every worker serve what it has, then stop. Bounded by
    /// `shutdown_timeout`; a second signal stops at once.
    public func beginShutdown(_ why: String) {
        if stopping {
            logger.warning("\(why) while draining: stopping now")
            return finishShutdown()
        }
        stopping = true
        // Like Redis, remove the socket file: new clients are refused at once while the
        // workers drain what they have.
        unixSocket?.close()
        unixSocket = nil
        logger.info("\(why): draining (up to \(config.shutdownTimeout))")
        shutdownDeadline = ContinuousClock.now + .milliseconds(Int(config.shutdownTimeout.seconds * 1000))
        let drained = drainedWorkers
        eachProxy { proxy in proxy.drain { drained.increment() } }
        let timer = LoopTimer(loop: loop, repeating: true) { [unowned self] in
            if self.drainedWorkers.value >= self.workers.count || ContinuousClock.now >= self.shutdownDeadline {
                self.finishShutdown()
            }
        }
        timer.schedule(after: 0.02)
        shutdownTimer = timer
    }

    private func finishShutdown() {
        shutdownTimer?.cancel()
        watchTimer?.cancel()
        checker?.stop()
        let left = workers.count - drainedWorkers.value
        if left > 0 { logger.warning("shutdown timeout: closing what \(left) worker(s) still had in flight") }
        for worker in workers {
            worker.handle.post { loop in
                (loop.context as? Proxy)?.shutdown()
                loop.context = nil
                loop.stop()
            }
        }
        admin?.close()
        admin = nil
        unixSocket?.close()
        unixSocket = nil
        logger.info("stopped")
        loop.context = nil
        loop.stop()
    }
}

/// Workers count themselves drained from their own threads.
final class DrainCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .releasing) }
    var value: Int { count.load(ordering: .acquiring) }
}
