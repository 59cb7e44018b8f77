import Config
import EventLoop
import Routing

/// One master and its replicas, and what is known of them on this worker: where a session's
/// writes and reads go. A static or Sentinel-discovered topology is one group (`Proxy.primary`);
/// Redis Cluster will be one per shard. Each group has its own read router, read-your-writes
/// offsets (offsets mean something only within one replication stream), health snapshot and
/// writes waiting for a confirmed master.
final class ReplicationGroup {
    unowned(unsafe) let proxy: Proxy
    private(set) var master: Backend!
    private(set) var replicas: [Backend] = []
    /// Read-your-writes by replication offset (see `ReplicationTracker`).
    let tracker = ReplicationTracker()
    /// read_your_writes: app — recent writes by key (see `KeyWrites`).
    let keyWrites = KeyWrites()
    /// Where reads go (see `ReadRouter`, which decides from values; this builds them from the
    /// live backends and applies the answer).
    private(set) var router = ReadRouter(policy: .preferReplica, balance: .leastOutstanding)
    /// The latest health snapshot (with a health checker).
    private(set) var topology: Topology?
    /// Sessions whose next command is a write waiting for a confirmed master.
    private var waitingForMaster: [ClientSession] = []
    private var holdTimer: Timer?

    init(proxy: Proxy, master: Address, replicas: [Address]) {
        self.proxy = proxy
        tracker.group = self
        self.master = Backend(group: self, address: master, role: .master)
        self.replicas = replicas.map { Backend(group: self, address: $0, role: .replica) }
        configureRouter()
    }

    var backends: [Backend] { [master!] + replicas }

    func start() { backends.forEach { $0.start() } }

    func shutdown() {
        backends.forEach { $0.shutdown() }
        tracker.stop()
        holdTimer?.cancel()
    }

    /// The group left the cluster's layout (its backends retire on their own): offset probes
    /// stop, and sessions waiting for its master try again, routed by the new layout.
    func shutdownTimers() {
        tracker.stop()
        holdTimer?.cancel()
        holdTimer = nil
        let waiting = waitingForMaster
        waitingForMaster.removeAll()
        for session in waiting { session.masterAvailable() }
    }

    func configureRouter() {
        router.policy = switch proxy.config.readPolicy {
        case .master: .master
        case .preferReplica: .preferReplica
        case .replica: .replica
        }
        router.balance = proxy.config.balance == .roundRobin ? .roundRobin : .leastOutstanding
    }

    // MARK: membership

    /// A new master backend; the old one is retired (its pinned sessions finish there).
    func replaceMaster(with address: Address) {
        let old = master!
        master = Backend(group: self, address: address, role: .master)
        tracker.reset()
        proxy.masterReplaced()
        proxy.retire(old)
        master.start()
        proxy.logger.warning("master is now \(address) (was \(old.address))")
    }

    /// The replica set becomes `addresses`: backends already there are kept (connections and all),
    /// new ones started, the rest retired.
    func replaceReplicas(with addresses: [Address]) {
        guard addresses != replicas.map(\.address) else { return }
        var kept: [Address: Backend] = [:]
        for replica in replicas { kept[replica.address] = replica }
        replicas = addresses.map { address in
            if let existing = kept.removeValue(forKey: address) { return existing }
            let added = Backend(group: self, address: address, role: .replica)
            added.start()
            return added
        }
        router.replicasChanged()
        for (_, gone) in kept { proxy.retire(gone) }
    }

    func applyWeights(_ weights: [Address: Int]) {
        for replica in replicas { replica.weight = weights[replica.address] ?? 1 }
    }

    // MARK: topology

    /// Writes may go to `master`: it reported role master in the latest check (always, without a
    /// health checker).
    var masterConfirmed: Bool { proxy.healthChecked ? topology?.master != nil : true }

    /// A write can go out now: the master is confirmed and, with health checks, the session's
    /// connection to it is not down (a master that just vanished may be failing over: the write
    /// waits up to `failover_hold` rather than failing at once).
    func masterWritable(for session: ClientSession) -> Bool {
        guard masterConfirmed else { return false }
        return !proxy.healthChecked || master.sharedConnection(for: session).isUsable
    }

    /// The master's connection came (back) up: writes that waited for it go.
    func masterConnectionUp() {
        if masterConfirmed && !waitingForMaster.isEmpty { releaseWaitingWrites() }
    }

    func useHealthChecks() {
        replicas.forEach { $0.eligible = false }
    }

    /// A new snapshot from the health checker.
    func applyTopology(_ new: Topology) {
        let previous = topology
        topology = new
        if let address = new.master, address != master.address { replaceMaster(with: address) }
        if new.master == nil && previous?.master != nil {
            proxy.logger.warning("no node reports role master: writes wait up to \(proxy.config.failoverHold) (failover_hold)")
        }
        let states = new.replicas.filter { $0.address != master.address }
        replaceReplicas(with: states.map(\.address))
        for (backend, state) in zip(replicas, states) {
            if backend.suspendedAt.map({ new.computedAt > $0 + proxy.config.healthInterval.seconds }) ?? false {
                backend.suspendedAt = nil
            }
            backend.eligible = state.eligible
            backend.weight = max(1, state.weight)
            // Unreachable: what is in flight there is retried elsewhere now.
            if case .down = state.eligibility, backend.isUp { backend.dropConnections() }
            if state.up && !backend.isUp { backend.reconnectNow() }
        }
        if masterConfirmed { releaseWaitingWrites() }
    }

    /// A write found no confirmed master: the session waits (reading paused) until one is, or
    /// until `failover_hold` passes.
    func waitForMaster(_ session: ClientSession) {
        waitingForMaster.append(session)
        if holdTimer == nil {
            holdTimer = Timer(loop: proxy.loop, repeating: true) { [unowned self] in self.expireWaitingWrites() }
            holdTimer!.schedule(after: 0.05)
        }
    }

    private func releaseWaitingWrites() {
        let waiting = waitingForMaster
        waitingForMaster.removeAll()
        holdTimer?.cancel()
        holdTimer = nil
        for session in waiting { session.masterAvailable() }
    }

    private func expireWaitingWrites() {
        let deadline = proxy.loop.nowMicroseconds - proxy.config.failoverHold.microseconds
        let expired = waitingForMaster.filter { $0.waitingSince <= deadline }
        guard !expired.isEmpty else { return }
        waitingForMaster.removeAll { $0.waitingSince <= deadline }
        for session in expired { session.masterUnavailable() }
        if waitingForMaster.isEmpty {
            holdTimer?.cancel()
            holdTimer = nil
        }
    }

    // MARK: reads

    /// Routes a read for `session`; read-your-writes' need for fresher replica offsets is noted.
    func routeRead(for session: ClientSession, _ request: ReadRouter.Request) -> ReadRouter.Decision {
        let decision = router.route(request, replicas: replicas, context: session, masterConfirmed: masterConfirmed)
        if decision.waitsForReplicas { tracker.demand() }
        return decision
    }

    /// What read-your-writes requires of `session`'s next read.
    func readFloor(for session: ClientSession) -> ReadRouter.Floor {
        switch proxy.config.readYourWrites {
        case .off:
            return .any
        case .session:
            return Self.floor(session.readFloor(tracker))
        case .app:
            guard let own = session.readFloor(tracker), let keys = session.readKeyFloor else { return .pending }
            return Self.floor(max(own, keys))
        case .duration(let window):
            let open = session.lastWriteMicroseconds > 0
                && proxy.loop.nowMicroseconds - session.lastWriteMicroseconds < window.microseconds
            return open ? .masterWindow : .any
        }
    }

    private static func floor(_ offset: Int64?) -> ReadRouter.Floor {
        guard let offset else { return .pending }
        return offset > 0 ? .offset(offset) : .any
    }

    /// Where `node` sits for the router: the master, replica i, or nil (no longer a backend).
    func routerNode(_ node: Backend?) -> ReadRouter.Node? {
        guard let node else { return nil }
        if node === master { return .master }
        return replicas.firstIndex { $0 === node }.map { .replica($0) }
    }

    /// A replica read that failed for transport reasons, or answered -LOADING/-MASTERDOWN: sent
    /// once to another eligible node, then (under prefer-replica) to the master. False when there
    /// is nowhere left to send it.
    func retryRead(_ slot: Slot, after failed: Backend) -> Bool {
        guard let session = slot.session, slot.retriesLeft > 0 else { return false }
        var backend: Backend?
        if slot.retriesLeft > 1 {
            let request = ReadRouter.Request(floor: readFloor(for: session), excluded: replicas.firstIndex { $0 === failed },
                                             masterExcluded: master === failed)
            switch routeRead(for: session, request).route {
            case .replica(let index) where session.loginIndex != 0
                && replicas[index].refusesLogin(session.loginIndex, now: proxy.loop.nowMicroseconds):
                backend = masterConfirmed && master !== failed ? master : nil  // see `ClientSession.forwardRead`
            case .replica(let index): backend = replicas[index]
            case .master: backend = master
            case .hold, .unavailable: break
            }
        } else if proxy.config.readPolicy != .replica && masterConfirmed && master !== failed {
            backend = master
        }
        guard let backend, !backend.removed else { return false }
        let target = backend.sharedConnection(for: session)
        guard target.isUsable else { return false }
        slot.retriesLeft -= 1
        target.select(session.db)
        proxy.logger.debug("retrying a read from \(failed.address) on \(backend.address)")
        session.resend(slot, to: target)
        return true
    }
}
