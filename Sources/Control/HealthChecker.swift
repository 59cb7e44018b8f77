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
    /// (time sent, master_repl_offset) of the current master, oldest first.
    private var samples: [(time: Double, offset: Int64)] = []
    private var sampledMaster: Address?
    private(set) var topology: Topology?
    private var published: Topology?
    /// discovery: sentinel — a client per sentinel for queries, one subscribed to +switch-master,
    /// and what each sentinel last said (master, replicas).
    private var sentinelClients: [Address: CheckClient] = [:]
    private var subscribers: [Address: CheckClient] = [:]
    private var sentinelAnswers: [Address: (master: Address, replicas: [Address])] = [:]
    /// The last error each sentinel answered (logged when it changes).
    private var sentinelErrors: [Address: String] = [:]
    private(set) var sentinelMaster: Address?
    private var sentinelReplicas: [Address] = []

    final class Node {
        let address: Address
        let client: CheckClient
        var failures = 0
        var up = false
        var checked = false
        var inFlight = false
        var sentAt = 0.0
        var role: [RESPValue] = []
        var info: [String: String] = [:]
        var lastError = "not checked yet"
        /// Answered -BUSY (a script or function running): up, in the role it last reported.
        var busy = false
        /// The last check went unanswered on an open connection (a busy or stalled server, not
        /// an unreachable one).
        var unanswered = false
        /// The numeric addresses the node's name resolves to (ROLE reports its master by IP).
        var hosts: [String]

        init(address: Address, client: CheckClient) {
            self.address = address
            self.client = client
            hosts = address.endpoint.numericHosts()
        }

        /// "master", "slave" (every replica spelling: replica, active-replica), "sentinel" …
        var roleName: String { role.first?.text.map(RoleReport.normalisedName) ?? "" }
        var report: RoleReport? { RoleReport.parse(.array(role)) }

        /// For a replica: whether ROLE names `master` as its master.
        func follows(_ master: Node) -> Bool {
            guard let report, report.role == .replica, let host = report.masterHost,
                  report.masterPort == master.address.port else { return false }
            return master.hosts.contains(host) || master.address.host == host
        }
    }

    init(config: AmbassadorConfig, loop: EventLoop, logger: Logger, publish: @escaping (Topology) -> Void) {
        self.config = config
        self.loop = loop
        self.logger = logger
        self.publish = publish
    }

    func start() {
        reconfigure(config)
    }

    func stop() {
        timer?.cancel()
        timer = nil
        for node in nodes.values { node.client.reset("stopping") }
        for client in Array(sentinelClients.values) + Array(subscribers.values) {
            client.onClose = nil
            client.reset("stopping")
        }
    }

    /// A reloaded config: the node list, interval and thresholds change at once.
    func reconfigure(_ new: AmbassadorConfig) {
        let sentinelLoginChanged = new.sentinelUsername != config.sentinelUsername || new.sentinelPassword != config.sentinelPassword
        config = new
        logger.logLevel = Logger.Level(rawValue: new.logLevel) ?? .info
        if sentinelLoginChanged {
            // Sentinel connections log in once, when they connect: reconnect with the new login.
            sentinelClients.values.forEach { $0.reset("sentinel credentials changed") }
            subscribers.values.forEach { $0.onClose = nil; $0.reset("sentinel credentials changed") }
            sentinelClients = [:]
            subscribers = [:]
            sentinelErrors = [:]
        }
        if case .sentinel(let sentinels, _) = new.discovery {
            for (address, client) in sentinelClients where !sentinels.contains(address) {
                client.reset("left the config")
                sentinelClients[address] = nil
                subscribers[address]?.reset("left the config")
                subscribers[address] = nil
                sentinelAnswers[address] = nil
            }
        } else {
            sentinelClients.values.forEach { $0.reset("discovery changed") }
            subscribers.values.forEach { $0.reset("discovery changed") }
            sentinelClients = [:]
            subscribers = [:]
            sentinelAnswers = [:]
            sentinelMaster = nil
            sentinelReplicas = []
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
        case .sentinel: return (sentinelMaster.map { [$0] } ?? []) + sentinelReplicas
        }
    }

    private func syncNodes() {
        let wanted = Set(wantedNodes())
        for (address, node) in nodes where !wanted.contains(address) {
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
                    password: sentinel ? config.sentinelPassword : config.password)
    }

    // MARK: sentinels

    private func askSentinels(_ sentinels: [Address], name: String) {
        for address in sentinels {
            let client = sentinelClients[address] ?? self.client(for: address, sentinel: true)
            sentinelClients[address] = client
            if client.pending > 0 { client.reset("no answer within health_interval") }
            var master: Address?
            client.send(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]) { [weak self] result in
                if case .success(.array(let items?)) = result, items.count == 2, let host = items[0].text,
                   let port = items[1].text.flatMap(UInt16.init) {
                    master = Address(host: host, port: port)
                    self?.sentinelErrors[address] = nil
                } else if case .success(.error(let bytes)) = result {
                    // NOAUTH, WRONGPASS, an unknown master_name: said once per sentinel and text.
                    let text = String(decoding: bytes, as: UTF8.self)
                    if self?.sentinelErrors[address] != text {
                        self?.sentinelErrors[address] = text
                        self?.logger.error("sentinel \(address) answered: \(text)")
                    }
                }
            }
            client.send(["SENTINEL", "REPLICAS", name]) { [weak self] result in
                guard let self else { return }
                guard let master, case .success(.array(let items?)) = result else {
                    self.sentinelAnswers[address] = nil
                    return
                }
                let replicas = items.compactMap { item -> Address? in
                    guard case .array(let fields?) = item else { return nil }
                    var map: [String: String] = [:]
                    var i = 0
                    while i + 1 < fields.count {
                        if let key = fields[i].text { map[key] = fields[i + 1].text ?? "" }
                        i += 2
                    }
                    guard let host = map["ip"], let port = map["port"].flatMap(UInt16.init) else { return nil }
                    return Address(host: host, port: port)
                }
                self.sentinelAnswers[address] = (master, replicas)
                self.sentinelsChanged()
            }
            subscribe(address, name: name)
        }
    }

    /// One connection per sentinel subscribed to +switch-master: a failover is seen at once,
    /// not at the next round.
    private func subscribe(_ address: Address, name: String) {
        guard subscribers[address] == nil else { return }
        let client = self.client(for: address, sentinel: true, subscription: true)
        subscribers[address] = client
        client.onClose = { [weak self] in self?.subscribers[address] = nil }
        client.onMessage = { [weak self] message in
            guard let self, case .array(let parts?) = message, parts.count == 3, parts[0].text == "message",
                  parts[1].text == "+switch-master", let text = parts[2].text else { return }
            let words = text.split(separator: " ").map(String.init)
            guard words.count == 5, words[0] == name, let port = UInt16(words[4]) else { return }
            let announced = Address(host: words[3], port: port)
            self.logger.warning("sentinel \(address): +switch-master \(name) → \(announced)")
            self.sentinelMaster = announced
            self.sentinelReplicas.removeAll { $0 == announced }
            self.syncNodes()
            if let node = self.nodes[announced] { self.check(node) }
        }
        client.send(["SUBSCRIBE", "+switch-master"]) { _ in }
    }

    /// The master most sentinels name, and the replicas they list for it.
    private func sentinelsChanged() {
        var votes: [Address: Int] = [:]
        for answer in sentinelAnswers.values { votes[answer.master, default: 0] += 1 }
        guard let (master, _) = votes.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.description > $1.key.description) }) else { return }
        var replicas: [Address] = []
        for answer in sentinelAnswers.values where answer.master == master {
            for replica in answer.replicas where !replicas.contains(replica) && replica != master { replicas.append(replica) }
        }
        replicas.sort { $0.description < $1.description }
        guard master != sentinelMaster || replicas != sentinelReplicas else { return }
        if master != sentinelMaster { logger.info("sentinels name \(master) as master of the group") }
        sentinelMaster = master
        sentinelReplicas = replicas
        syncNodes()
        for address in [master] + replicas where nodes[address].map({ !$0.checked }) ?? false {
            check(nodes[address]!)
        }
    }

    // MARK: checking

    private func round() {
        if case .sentinel(let sentinels, let name) = config.discovery { askSentinels(sentinels, name: name) }
        // The master is asked first, so its offset sample is no newer than the replicas'.
        let master = topology?.master
        let order = nodes.values.sorted { ($0.address == master ? 0 : 1) < ($1.address == master ? 0 : 1) }
        for node in order {
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
            node.hosts = node.address.endpoint.numericHosts()
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
                self.succeeded(node, role: role, info: Self.fields(text), sentAt: sent)
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
        node.checked = true
        node.failures = 0
        node.unanswered = false
        if !node.busy { logger.warning("health: \(node.address) answers but not the check (\(text)); it keeps its role \(node.roleName)") }
        node.busy = true
        node.lastError = text
        if !node.up && !node.role.isEmpty {
            logger.info("health: \(node.address) is up (busy, role \(node.roleName))")
            node.up = true
        }
        recompute(force: false)
    }

    private func succeeded(_ node: Node, role: [RESPValue], info: [String: String], sentAt: Double) {
        node.inFlight = false
        node.busy = false
        node.unanswered = false
        node.checked = true
        node.failures = 0
        node.role = role
        node.info = info
        node.lastError = ""
        if !node.up { logger.info("health: \(node.address) is up (role \(node.roleName))") }
        node.up = true
        if node.roleName == "master", let offset = info["master_repl_offset"].flatMap(Int64.init) ?? node.report?.offset {
            if sampledMaster != node.address {
                sampledMaster = node.address
                samples.removeAll()
            }
            samples.append((sentAt, offset))
            if samples.count > 600 { samples.removeFirst(samples.count - 600) }
        }
        recompute(force: false)
    }

    private func failed(_ node: Node, _ why: String, refused: Bool = false) {
        guard node.inFlight else { return }
        node.inFlight = false
        node.checked = true
        let unanswered = node.unanswered
        node.unanswered = false
        if unanswered && node.up && node.roleName == "master" {
            // Connected but silent: a master running a long script (Redis answers nobody until
            // busy-reply-threshold, then -BUSY) or a slow command. Writes could go nowhere else;
            // direct clients would wait, so the ambassador's do too. A master that is really gone
            // closes or refuses the connection; one replaced by a failover is seen through the
            // other nodes' ROLE (discovery: role) or the sentinels.
            node.lastError = "\(why) (connection open: busy or slow; still the master)"
            node.busy = true
            return recompute(force: false)
        }
        node.failures += 1
        node.lastError = why
        if node.up && (refused || node.failures >= config.healthFailures) {
            node.up = false
            logger.warning("health: \(node.address) is down after \(node.failures) failed check(s): \(why)")
        }
        recompute(force: false)
    }

    static func fields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":"), !line.hasPrefix("#") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return fields
    }

    // MARK: topology

    private func recompute(force: Bool) {
        let now = EventLoop.wallClock
        let master = currentMaster()
        var replicas: [Topology.ReplicaState] = []
        let candidates: [Address]
        switch config.discovery {
        case .static: candidates = config.replicas
        case .role(let all): candidates = all.filter { $0 != master?.address }
        case .sentinel: candidates = sentinelReplicas.filter { $0 != master?.address }
        }
        for address in candidates {
            guard let node = nodes[address] else { continue }
            replicas.append(state(of: node, master: master))
        }
        let next = Topology(master: master?.address, replicas: replicas, computedAt: now)
        topology = next
        guard force || published.map({ !Self.sameShape($0, next) }) ?? true else { return }
        if let published, published.master != next.master {
            logger.warning("health: master \(published.master?.description ?? "none") → \(next.master?.description ?? "none (writes wait up to failover_hold)")")
        }
        for state in next.replicas {
            let before = published?.replicas.first { $0.address == state.address }
            if before?.eligible != state.eligible {
                logger.info("health: replica \(state.address) \(state.eligible ? "eligible for reads" : "not eligible: \(state.reason)")")
            }
        }
        published = next
        publish(next)
    }

    /// The same master, replicas, and up/eligible flags (lag and times aside).
    static func sameShape(_ a: Topology, _ b: Topology) -> Bool {
        a.master == b.master && a.replicas.count == b.replicas.count
            && zip(a.replicas, b.replicas).allSatisfy { $0.address == $1.address && $0.eligible == $1.eligible && $0.up == $1.up }
    }

    private func currentMaster() -> Node? {
        switch config.discovery {
        case .static:
            guard let node = nodes[config.master], node.up, node.roleName == "master" else { return nil }
            return node
        case .sentinel:
            // The sentinels' choice, once it confirms itself with ROLE.
            guard let address = sentinelMaster, let node = nodes[address], node.up, node.roleName == "master" else { return nil }
            return node
        case .role:
            let masters = nodes.values.filter { $0.up && $0.roleName == "master" }
            if masters.count <= 1 { return masters.first }
            // Several nodes say master (a split brain, or a failover half done): the one the
            // replicas follow; none if that is not clear.
            let ranked = masters.map { candidate in
                (candidate, nodes.values.filter { $0.up && $0.follows(candidate) }.count)
            }.sorted { $0.1 > $1.1 }
            return ranked[0].1 > ranked[1].1 ? ranked[0].0 : nil
        }
    }

    private func state(of node: Node, master: Node?) -> Topology.ReplicaState {
        let weight = config.replicaWeights[node.address] ?? 1
        func ineligible(_ why: String, lag: Double = .infinity) -> Topology.ReplicaState {
            Topology.ReplicaState(address: node.address, eligible: false, up: node.up, weight: weight,
                                  caughtUpTo: 0, lag: lag, reason: why)
        }
        guard node.up else { return ineligible(node.checked ? "down: \(node.lastError)" : "not checked yet") }
        guard !node.busy else { return ineligible("busy: \(node.lastError)") }
        guard let master else { return ineligible("no confirmed master") }
        guard node.roleName == "slave" else { return ineligible("reports role \(node.roleName)") }
        guard node.follows(master) else { return ineligible("does not replicate from \(master.address)") }
        // INFO's link status, or (a server that does not write it) ROLE's state.
        let linkUp = node.info["master_link_status"].map { $0 == "up" }
            ?? ["connected", "stable_sync", "online"].contains(node.report?.linkState ?? "")
        guard linkUp else { return ineligible("master_link_status is not up") }
        guard node.info["master_sync_in_progress"] ?? "0" == "0" else { return ineligible("sync in progress") }
        guard let offset = node.info["slave_repl_offset"].flatMap(Int64.init) ?? node.report?.offset,
              let newest = samples.last else {
            return ineligible("no replication offset yet")
        }
        var caughtUpTo = 0.0
        if offset >= newest.offset {
            caughtUpTo = newest.time
        } else if let reached = samples.last(where: { $0.offset <= offset }) {
            caughtUpTo = reached.time
        }
        let lag = caughtUpTo > 0 ? newest.time - caughtUpTo : .infinity
        if config.maxReplicaLag.seconds > 0 && lag > config.maxReplicaLag.seconds {
            var view = ineligible(lag.isFinite ? "lag \(Self.seconds(lag)) > max_replica_lag \(config.maxReplicaLag)"
                                               : "behind every recorded master offset", lag: lag)
            view.caughtUpTo = caughtUpTo
            return view
        }
        return Topology.ReplicaState(address: node.address, eligible: true, up: true, weight: weight,
                                     caughtUpTo: caughtUpTo, lag: lag, reason: "")
    }

    static func seconds(_ value: Double) -> String {
        let ms = Int((value * 1000).rounded())
        return ms < 1000 ? "\(ms)ms" : "\(Double(ms) / 1000)s"
    }

    /// For /config.
    func view() -> TopologyView {
        guard let topology else { return TopologyView(master: "unknown (first check pending)") }
        return TopologyView(
            master: topology.master?.description ?? "none confirmed",
            replicas: topology.replicas.map { state in
                TopologyView.Replica(address: state.address.description, eligible: state.eligible, up: state.up,
                                     weight: state.weight,
                                     lagMilliseconds: state.lag.isFinite ? Int((state.lag * 1000).rounded()) : nil,
                                     reason: state.reason.isEmpty ? nil : state.reason)
            },
            sentinelMaster: sentinelMaster?.description ?? "",
            nodes: nodes.values.sorted { $0.address.description < $1.address.description }.map { node in
                TopologyView.Node(address: node.address.description, up: node.up, role: node.roleName, busy: node.busy,
                                  consecutiveFailures: node.failures, lastError: node.lastError)
            })
    }
}

