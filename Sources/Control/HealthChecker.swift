import Config
import EventLoop
import Logging
import Proxy
import RESP
#if canImport(Glibc)
import Glibc
#endif

/// Every `health_interval`, asks each node for `ROLE` and `INFO replication` on a connection of
/// its own, and turns the answers into a `Topology` for the workers.
///
/// - A node is *down* after `health_failures` consecutive failed checks (no answer within the
///   interval, an error) or at once when the connection is refused; *up* after one good check.
/// - The master is the node that reports role master (static: the configured master, and only if
///   it does; role: the one node that does — when several do, the one the replicas follow).
/// - A replica is *eligible* when up, replicating from that master with `master_link_status:up`,
///   not syncing, and no further behind than `max_replica_lag`.
/// - Lag: the master's `master_repl_offset` is sampled every round with the time the request was
///   sent. A replica at offset R has everything the master had at the latest sample whose offset
///   is ≤ R (`caughtUpTo`); its lag is the newest sample's time minus that. Resolution: one
///   interval (a replica fully caught up under steady writes shows up to one interval).
final class HealthChecker {
    private let loop: EventLoop
    private var config: AmbassadorConfig
    private var logger: Logger
    private let publish: (Topology) -> Void
    private var nodes: [Address: Node] = [:]
    private var timer: LoopTimer?
    private var samples = OffsetSamples()
    private(set) var topology: Topology?
    private var published: Topology?
    /// discovery: sentinel.
    private var sentinels: SentinelDiscovery!
    /// discovery: cluster, and each shard master's offset samples.
    private var cluster: ClusterDiscovery!
    private var clusterSamples: [Address: OffsetSamples] = [:]
    private var clusterTimer: LoopTimer?
    /// When a shard without a master last prompted a read of the layout (wall clock, seconds).
    private var masterlessRefreshAt = 0.0
    private var masterlessRefreshDelay = 0.1

    /// One data node: its check connection and round state, and what it last reported.
    final class Node {
        let client: CheckClient
        var report: NodeReport
        var failures = 0
        var inFlight = false
        /// The last check went unanswered on an open connection (a busy or stalled server, not
        /// an unreachable one).
        var unanswered = false
        /// A node that is down is probed on a timer of its own, with backoff (not on the rounds,
        /// whose phase sidecars started together share); `downProbes` failed since it went down.
        var retry: LoopTimer?
        var downProbes = 0
        /// When the probe in flight was sent.
        var sentAt = 0.0

        var backingOff: Bool { retry?.isScheduled ?? false }

        func stopBackingOff() {
            retry?.cancel()
            downProbes = 0
        }

        init(address: Address, client: CheckClient) {
            self.client = client
            report = NodeReport(address: address, hosts: address.endpoint.numericHosts())
        }

        var address: Address { report.address }
    }

    init(config: AmbassadorConfig, loop: EventLoop, logger: Logger, publish: @escaping (Topology) -> Void) {
        self.config = config
        self.loop = loop
        self.logger = logger
        self.publish = publish
        sentinels = SentinelDiscovery(logger: logger) { [unowned self] address, subscription in
            self.client(for: address, sentinel: true, subscription: subscription)
        }
        sentinels.onChange = { [unowned self] switched in self.sentinelsChanged(switched: switched) }
        cluster = ClusterDiscovery(logger: logger) { [unowned self] address in self.client(for: address, sentinel: false) }
        cluster.onChange = { [unowned self] in self.clusterChanged() }
    }

    func start() {
        reconfigure(config)
    }

    func stop() {
        timer?.cancel()
        timer = nil
        for node in nodes.values {
            node.stopBackingOff()
            node.client.reset("stopping")
        }
        sentinels.reset("stopping")
        cluster.reset("stopping")
        clusterTimer?.cancel()
    }

    /// A reloaded config: the node list, interval and thresholds change at once.
    func reconfigure(_ new: AmbassadorConfig) {
        let sentinelLoginChanged = new.sentinelUsername != config.sentinelUsername || new.sentinelPassword != config.sentinelPassword
            || new.sentinelTLS != config.sentinelTLS
        config = new
        logger.logLevel = Logger.Level(rawValue: new.logLevel) ?? .info
        if sentinelLoginChanged { sentinels.reset("sentinel credentials or TLS changed") }
        for node in nodes.values {
            node.client.update(username: new.username, password: new.backendPassword, tls: new.backendTLS?.context)
        }
        if case .sentinel(let addresses, _) = new.discovery {
            sentinels.keep(only: addresses)
        } else {
            sentinels.stop("discovery changed")
        }
        clusterTimer?.cancel()
        clusterTimer = nil
        if case .cluster(let seeds) = new.discovery {
            cluster.configure(seeds: seeds, tls: new.backendTLS != nil)
            let timer = LoopTimer(loop: loop, repeating: true) { [unowned self] in self.cluster.refresh() }
            timer.schedule(after: new.clusterRefresh.seconds)
            clusterTimer = timer
            cluster.refresh()
        } else {
            cluster.stop("discovery changed")
        }
        syncNodes()
        timer?.cancel()
        let timer = LoopTimer(loop: loop, repeating: true) { [unowned self] in self.round() }
        timer.schedule(after: new.healthInterval.seconds)
        self.timer = timer
        round()
    }

    /// The data nodes to check: as configured, or as the sentinels say.
    private func wantedNodes() -> [Address] {
        switch config.discovery {
        case .static: return [config.master] + config.replicas
        case .role(let nodes): return nodes
        case .sentinel: return (sentinels.master.map { [$0] } ?? []) + sentinels.replicas
        case .cluster: return cluster.nodes
        }
    }

    /// A worker met -MOVED (or -ASK) naming a node: the layout is read again now.
    func clusterRedirected() {
        if config.discovery.isCluster { cluster.refresh() }
    }

    private func clusterChanged() {
        syncNodes()
        for node in nodes.values where !node.report.checked && !node.inFlight { check(node) }
        recompute()
    }

    private func syncNodes() {
        let wanted = Set(wantedNodes())
        for (address, node) in nodes where !wanted.contains(address) {
            node.stopBackingOff()
            node.client.reset("no longer a node")
            nodes[address] = nil
        }
        for address in wanted where nodes[address] == nil {
            nodes[address] = Node(address: address, client: client(for: address, sentinel: false))
        }
    }

    /// A check connection: to a data node with the backend credentials, to a sentinel with the
    /// sentinels' (if any). A check may take up to two intervals to connect (bounded by
    /// connect_timeout); a long-lived subscription, connect_timeout.
    private func client(for address: Address, sentinel: Bool, subscription: Bool = false) -> CheckClient {
        CheckClient(endpoint: address.endpoint, loop: loop,
                    timeout: subscription ? config.connectTimeout.seconds
                        : min(config.connectTimeout.seconds, config.healthInterval.seconds * 2),
                    username: sentinel ? config.sentinelUsername : config.username,
                    password: sentinel ? config.sentinelPassword : config.backendPassword,
                    tls: sentinel ? config.sentinelTLS?.context : config.backendTLS?.context)
    }

    // MARK: sentinels

    private func sentinelsChanged(switched: Address?) {
        syncNodes()
        let group = (sentinels.master.map { [$0] } ?? []) + sentinels.replicas
        for address in group {
            guard let node = nodes[address], address == switched || !node.report.checked else { continue }
            check(node)
        }
    }

    // MARK: checking

    private func round() {
        if case .sentinel(let addresses, let name) = config.discovery { sentinels.ask(addresses, name: name) }
        // The master is asked first, so its offset sample is no newer than the replicas'.
        let master = topology?.master
        let order = nodes.values.sorted { ($0.address == master ? 0 : 1) < ($1.address == master ? 0 : 1) }
        let now = EventLoop.wallClock
        for node in order where !node.backingOff {
            // A probe the backoff timer sent since the last round gets until the next one.
            if node.inFlight && now - node.sentAt < config.healthInterval.seconds / 2 { continue }
            if node.inFlight {
                node.unanswered = node.client.isConnected
                node.client.reset("no answer within health_interval (\(config.healthInterval))")
            }
            check(node)
        }
    }

    private func check(_ node: Node) {
        // A new connection resolves the name again (pod IPs change); so does the ROLE matching.
        if !node.client.isOpen {
            node.report.hosts = node.address.endpoint.numericHosts()
        }
        node.inFlight = true
        let sent = EventLoop.wallClock
        node.sentAt = sent
        var role: [RESPValue]?
        node.client.send(["ROLE"]) { [weak self, weak node] result in
            guard let self, let node else { return }
            switch result {
            case .success(.array(let items?)): role = items
            case .success(.error(let bytes)) where Self.isBusy(bytes) || Self.isLoginError(bytes):
                return self.busy(node, String(decoding: bytes, as: UTF8.self))
            case .success(let other): return self.failed(node, other.text ?? "unexpected ROLE reply")
            case .failure(let error): return self.failed(node, "\(error)", refused: error.code == ECONNREFUSED)
            }
        }
        node.client.send(["INFO", "replication"]) { [weak self, weak node] result in
            guard let self, let node, node.inFlight else { return }
            switch result {
            case .success(let value):
                if case .error(let bytes) = value { return self.failed(node, String(decoding: bytes, as: UTF8.self)) }
                guard let role, let text = value.text else { return self.failed(node, "unexpected INFO reply") }
                self.succeeded(node, role: role, info: TopologyBuilder.infoFields(text), sentAt: sent)
            case .failure(let error):
                self.failed(node, "\(error)", refused: error.code == ECONNREFUSED)
            }
        }
    }

    /// `-BUSY …`: a script or function is running. The node is up and still what it last
    /// reported (a master stays the master: only SCRIPT KILL, FUNCTION KILL or SHUTDOWN NOSAVE
    /// can reach it, and they must). Not `-BUSYKEY`, `-BUSYGROUP`.
    static func isBusy(_ error: [UInt8]) -> Bool {
        error.starts(with: Array("BUSY ".utf8))
    }

    /// NOAUTH / WRONGPASS / NOPERM: the node answers but not to the ambassador's login (an app
    /// set `requirepass` at run time, say). It is up; what it last reported still stands.
    static func isLoginError(_ error: [UInt8]) -> Bool {
        error.starts(with: Array("NOAUTH".utf8)) || error.starts(with: Array("WRONGPASS".utf8))
            || error.starts(with: Array("NOPERM".utf8))
    }

    private func busy(_ node: Node, _ text: String) {
        node.inFlight = false
        node.failures = 0
        node.stopBackingOff()
        node.unanswered = false
        var report = node.report
        report.checked = true
        if !report.busy { logger.warning("health: \(node.address) answers but not the check (\(text)); it keeps its role \(report.roleName)") }
        report.busy = true
        report.lastError = text
        if !report.up && !report.role.isEmpty {
            logger.info("health: \(node.address) is up (busy, role \(report.roleName))")
            report.up = true
        }
        node.report = report
        recompute()
    }

    private func succeeded(_ node: Node, role: [RESPValue], info: [String: String], sentAt: Double) {
        node.inFlight = false
        node.unanswered = false
        node.failures = 0
        node.stopBackingOff()
        var report = node.report
        report.busy = false
        report.checked = true
        report.role = role
        report.info = info
        report.lastError = ""
        if !report.up { logger.info("health: \(node.address) is up (role \(report.roleName))") }
        report.up = true
        node.report = report
        if report.roleName == "master", let offset = info["master_repl_offset"].flatMap(Int64.init) ?? report.report?.offset {
            if config.discovery.isCluster {
                clusterSamples[node.address, default: OffsetSamples()].record(master: node.address, offset: offset, at: sentAt)
            } else {
                samples.record(master: node.address, offset: offset, at: sentAt)
            }
        }
        recompute()
    }

    private func failed(_ node: Node, _ why: String, refused: Bool = false) {
        guard node.inFlight else { return }
        node.inFlight = false
        node.report.checked = true
        let unanswered = node.unanswered
        node.unanswered = false
        if unanswered && node.report.up && node.report.roleName == "master" {
            // Connected but silent: a master running a long script (Redis answers nobody until
            // busy-reply-threshold, then -BUSY) or a slow command. Writes could go nowhere else;
            // direct clients would wait, so the ambassador's do too. A master that is really gone
            // closes or refuses the connection; one replaced by a failover is seen through the
            // other nodes' ROLE (discovery: role) or the sentinels.
            node.report.lastError = "\(why) (connection open: busy or slow; still the master)"
            node.report.busy = true
            return recompute()
        }
        node.failures += 1
        if !node.report.up && node.report.lastError != why {
            // A node that never came up (a certificate refused, a wrong password) says why once,
            // and again when the reason changes.
            logger.warning("health: \(node.address) is unreachable: \(why)")
        }
        node.report.lastError = why
        if node.report.up && (refused || node.failures >= config.healthFailures) {
            node.report.up = false
            logger.warning("health: \(node.address) is down after \(node.failures) failed check(s): \(why)")
            // A cluster fails its shard over on its own: the layout says where.
            clusterRedirected()
        }
        if !node.report.up {
            // Down: the next probe waits a jittered, doubling pause (from health_interval up to
            // reconnect_max), so a thousand sidecars do not all knock on a restarting node every
            // interval, and not in step.
            let retry = node.retry ?? LoopTimer(loop: loop) { [weak self, weak node] in
                guard let self, let node else { return }
                self.check(node)
            }
            node.retry = retry
            retry.schedule(after: Backoff.delay(attempt: node.downProbes, base: config.healthInterval.seconds,
                                                cap: config.reconnectMax.seconds))
            node.downProbes += 1
        }
        recompute()
    }

    // MARK: topology

    /// A new snapshot from every node's last report; the workers hear of it when its shape
    /// (master, replicas, up/eligible) changed.
    private func recompute() {
        let next: Topology
        if config.discovery.isCluster {
            // Nothing to say before the layout is known (the workers hold writes meanwhile).
            guard !cluster.shards.isEmpty else { return }
            let shards = cluster.shards.map { shard in
                (slots: shard.slots, master: cluster.address(of: shard.master), replicas: shard.replicas.map(cluster.address(of:)))
            }
            for master in Array(clusterSamples.keys) where !cluster.nodes.contains(master) { clusterSamples[master] = nil }
            next = TopologyBuilder.cluster(config, shards: shards, nodes: nodes.mapValues(\.report),
                                           samples: clusterSamples, now: EventLoop.wallClock)
        } else {
            next = TopologyBuilder.topology(config, sentinel: (sentinels.master, sentinels.replicas),
                                            nodes: nodes.mapValues(\.report), samples: samples,
                                            now: EventLoop.wallClock)
        }
        topology = next
        if let shards = next.shards, shards.contains(where: { $0.topology.master == nil }) {
            // A shard without a confirmed master is failing over, or the layout is stale (its
            // master says it is a replica now): the layout is read again soon — after 100 ms,
            // then less often, up to cluster_refresh — not only every cluster_refresh. Writes
            // wait meanwhile, and no -MOVED comes to prompt a read.
            let now = EventLoop.wallClock
            if now - masterlessRefreshAt >= masterlessRefreshDelay {
                masterlessRefreshAt = now
                masterlessRefreshDelay = min(masterlessRefreshDelay * 2, config.clusterRefresh.seconds)
                cluster.refresh()
            }
        } else {
            masterlessRefreshDelay = 0.1
        }
        guard published.map({ !TopologyBuilder.sameShape($0, next) }) ?? true else { return }
        // Each group's changes: the one master and its replicas, or every shard's.
        let groups = next.shards?.map(\.topology) ?? [next]
        let before = published.map { $0.shards?.map(\.topology) ?? [$0] } ?? []
        for (index, group) in groups.enumerated() {
            if index < before.count, before[index].master != group.master {
                let shard = next.shards == nil ? "" : "shard \(index + 1): "
                logger.warning("health: \(shard)master \(before[index].master?.description ?? "none") → \(group.master?.description ?? "none (writes wait up to failover_hold)")")
            }
            for state in group.replicas {
                let old = before.lazy.flatMap(\.replicas).first { $0.address == state.address }
                if old?.eligible != state.eligible {
                    logger.info("health: replica \(state.address) \(state.eligible ? "eligible for reads" : "not eligible: \(state.reason)")")
                }
            }
        }
        published = next
        publish(next)
    }

    /// Why each node that is down failed its last check (for /readyz).
    var downReasons: [String] {
        nodes.values.filter { !$0.report.up && !$0.report.lastError.isEmpty }
            .sorted { $0.address.description < $1.address.description }
            .map { "\($0.address): \($0.report.lastError)" }
    }

    /// For /config.
    func view() -> TopologyView {
        guard let topology else { return TopologyView(master: "unknown (first check pending)") }
        func replicaViews(_ topology: Topology) -> [TopologyView.Replica] {
            topology.replicas.map { state in
                TopologyView.Replica(address: state.address.description, eligible: state.eligible, up: state.up,
                                     weight: state.weight,
                                     lagMilliseconds: state.lag.isFinite ? Int((state.lag * 1000).rounded()) : nil,
                                     reason: state.reason.isEmpty ? nil : state.reason)
            }
        }
        var view = TopologyView(
            master: topology.master?.description ?? "none confirmed",
            replicas: replicaViews(topology),
            sentinelMaster: sentinels.master?.description ?? "",
            nodes: nodes.values.sorted { $0.address.description < $1.address.description }.map { node in
                TopologyView.Node(address: node.address.description, up: node.report.up, role: node.report.roleName,
                                  busy: node.report.busy, consecutiveFailures: node.failures, lastError: node.report.lastError)
            })
        view.shards = topology.shards?.map { shard in
            TopologyView.Shard(slots: TopologyView.slotText(shard.slots),
                               master: shard.topology.master?.description ?? "none confirmed (\(shard.layoutMaster) in the layout)",
                               replicas: replicaViews(shard.topology))
        }
        return view
    }
}

