import Config
import Proxy
import RESP

/// What one node last told the health checks, as a value: the input of `TopologyBuilder`.
struct NodeReport: Sendable, Equatable {
    var address: Address
    /// The numeric addresses the node's name resolves to (ROLE reports its master by IP).
    var hosts: [String]
    var up = false
    var checked = false
    /// Answered -BUSY or a login error (or left a check unanswered on an open connection, for a
    /// master): up, in the role it last reported.
    var busy = false
    var lastError = "not checked yet"
    /// The last ROLE reply and `INFO replication` fields.
    var role: [RESPValue] = []
    var info: [String: String] = [:]

    init(address: Address, hosts: [String]) {
        self.address = address
        self.hosts = hosts
    }

    /// "master", "slave" (every replica spelling: replica, active-replica), "sentinel" …
    var roleName: String { role.first?.text.map(RoleReport.normalisedName) ?? "" }
    var report: RoleReport? { RoleReport.parse(.array(role)) }

    /// For a replica: whether ROLE names `master` as its master.
    func follows(_ master: NodeReport) -> Bool {
        guard let report, report.role == .replica, let host = report.masterHost,
              report.masterPort == master.address.port else { return false }
        return master.hosts.contains(host) || master.address.host == host
    }
}

/// The master's `master_repl_offset`, sampled each round with the time the check was sent: a
/// replica at offset R has everything the master had at the newest sample whose offset is ≤ R.
struct OffsetSamples: Sendable {
    private(set) var master: Address?
    private(set) var samples: [(time: Double, offset: Int64)] = []
    /// About five minutes at the default interval.
    static let kept = 600

    /// A new sample; a different master starts the record again.
    mutating func record(master address: Address, offset: Int64, at time: Double) {
        if master != address {
            master = address
            samples.removeAll()
        }
        samples.append((time, offset))
        if samples.count > Self.kept { samples.removeFirst(samples.count - Self.kept) }
    }

    /// For a replica at `offset`: when the master last had no more than that (0 when it has
    /// less than every sample), and the lag that makes (infinite in that case). nil before any
    /// sample.
    func position(of offset: Int64) -> (caughtUpTo: Double, lag: Double)? {
        guard let newest = samples.last else { return nil }
        var caughtUpTo = 0.0
        if offset >= newest.offset {
            caughtUpTo = newest.time
        } else if let reached = samples.last(where: { $0.offset <= offset }) {
            caughtUpTo = reached.time
        }
        return (caughtUpTo, caughtUpTo > 0 ? newest.time - caughtUpTo : .infinity)
    }
}

/// Node reports in, a `Topology` out: which node is the master, and whether each replica takes
/// reads (and why not). Pure: `HealthChecker` gathers the reports, tests feed literal replies.
enum TopologyBuilder {
    /// The confirmed master: static, the configured master if it says master; sentinel, the
    /// sentinels' choice once it confirms with ROLE; role, the one node that says master, or
    /// when several do (a split brain, a failover half done) the one more replicas follow.
    static func master(_ config: AmbassadorConfig, sentinelMaster: Address?, nodes: [Address: NodeReport]) -> NodeReport? {
        switch config.discovery {
        case .static:
            guard let node = nodes[config.master], node.up, node.roleName == "master" else { return nil }
            return node
        case .sentinel:
            guard let address = sentinelMaster, let node = nodes[address], node.up, node.roleName == "master" else { return nil }
            return node
        case .cluster:
            return nil  // per shard: see `cluster`
        case .role:
            let masters = nodes.values.filter { $0.up && $0.roleName == "master" }
                .sorted { $0.address.description < $1.address.description }
            if masters.count <= 1 { return masters.first }
            let ranked = masters.map { candidate in
                (candidate, nodes.values.filter { $0.up && $0.follows(candidate) }.count)
            }.sorted { $0.1 > $1.1 }
            return ranked[0].1 > ranked[1].1 ? ranked[0].0 : nil
        }
    }

    /// One replica's state under `master`.
    static func replica(_ node: NodeReport, master: NodeReport?, samples: OffsetSamples, weight: Int,
                        maxLag: Duration) -> Topology.ReplicaState {
        func ineligible(_ why: Eligibility, caughtUpTo: Double = 0, lag: Double = .infinity) -> Topology.ReplicaState {
            Topology.ReplicaState(address: node.address, eligibility: why, up: node.up, weight: weight,
                                  caughtUpTo: caughtUpTo, lag: lag)
        }
        guard node.up else { return ineligible(node.checked ? .down(node.lastError) : .notChecked) }
        guard !node.busy else { return ineligible(.busy(node.lastError)) }
        guard let master else { return ineligible(.noConfirmedMaster) }
        guard node.roleName == "slave" else { return ineligible(.role(node.roleName)) }
        guard node.follows(master) else { return ineligible(.notReplicating(from: master.address)) }
        // INFO's link status, or (a server that does not write it) ROLE's state.
        let linkUp = node.info["master_link_status"].map { $0 == "up" }
            ?? ["connected", "stable_sync", "online"].contains(node.report?.linkState ?? "")
        guard linkUp else { return ineligible(.linkDown) }
        guard node.info["master_sync_in_progress"] ?? "0" == "0" else { return ineligible(.syncing) }
        guard let offset = node.info["slave_repl_offset"].flatMap(Int64.init) ?? node.report?.offset,
              let (caughtUpTo, lag) = samples.position(of: offset) else {
            return ineligible(.noOffset)
        }
        if maxLag.seconds > 0 && lag > maxLag.seconds {
            return ineligible(.lagging(seconds: lag, limit: maxLag), caughtUpTo: caughtUpTo, lag: lag)
        }
        return Topology.ReplicaState(address: node.address, eligibility: .eligible, up: true, weight: weight,
                                     caughtUpTo: caughtUpTo, lag: lag)
    }

    /// The whole snapshot. The replicas are the configured ones (static), every other node
    /// (role), or the ones the sentinels list (sentinel), in that order.
    static func topology(_ config: AmbassadorConfig, sentinel: (master: Address?, replicas: [Address]),
                         nodes: [Address: NodeReport], samples: OffsetSamples, now: Double) -> Topology {
        let master = master(config, sentinelMaster: sentinel.master, nodes: nodes)
        let candidates: [Address]
        switch config.discovery {
        case .static: candidates = config.replicas
        case .role(let all): candidates = all.filter { $0 != master?.address }
        case .sentinel: candidates = sentinel.replicas.filter { $0 != master?.address }
        case .cluster: candidates = []
        }
        let replicas = candidates.compactMap { address in
            nodes[address].map {
                replica($0, master: master, samples: samples, weight: config.replicaWeights[address] ?? 1,
                        maxLag: config.maxReplicaLag)
            }
        }
        return Topology(master: master?.address, replicas: replicas, computedAt: now)
    }

    /// discovery: cluster — one group per shard of the layout (`ClusterDiscovery`, with each
    /// node's address as the checks use it). A shard's master is the node the layout names,
    /// when it says master; else, the layout being behind a failover, the shard's node that
    /// says master (the promoted replica). Its replicas are the shard's other nodes, each judged
    /// against that master with the master's own offset samples.
    static func cluster(_ config: AmbassadorConfig, shards: [(slots: [ClosedRange<Int>], master: Address, replicas: [Address])],
                        nodes: [Address: NodeReport], samples: [Address: OffsetSamples], now: Double) -> Topology {
        let states = shards.map { shard -> Topology.Shard in
            func isMaster(_ address: Address) -> NodeReport? {
                guard let node = nodes[address], node.up, node.roleName == "master" else { return nil }
                return node
            }
            let master = isMaster(shard.master) ?? shard.replicas.lazy.compactMap(isMaster).first
            let members = [shard.master] + shard.replicas
            let replicas = members.filter { $0 != master?.address }.compactMap { address in
                nodes[address].map {
                    replica($0, master: master, samples: master.flatMap { samples[$0.address] } ?? OffsetSamples(),
                            weight: config.replicaWeights[address] ?? 1, maxLag: config.maxReplicaLag)
                }
            }
            return Topology.Shard(slots: shard.slots, layoutMaster: shard.master,
                                  topology: Topology(master: master?.address, replicas: replicas, computedAt: now))
        }
        let first = states.first?.topology
        return Topology(master: first?.master, replicas: first?.replicas ?? [], computedAt: now, shards: states)
    }

    /// The same master, replicas, and up/eligible flags (lag and times aside), and for a cluster
    /// the same shards and slots: no need to tell the workers.
    static func sameShape(_ a: Topology, _ b: Topology) -> Bool {
        guard a.master == b.master && a.replicas.count == b.replicas.count
            && zip(a.replicas, b.replicas).allSatisfy({ $0.address == $1.address && $0.eligible == $1.eligible && $0.up == $1.up })
        else { return false }
        guard let left = a.shards, let right = b.shards else { return (a.shards == nil) == (b.shards == nil) }
        return left.count == right.count && zip(left, right).allSatisfy {
            $0.slots == $1.slots && $0.layoutMaster == $1.layoutMaster && sameShape($0.topology, $1.topology)
        }
    }

    /// `INFO` text → its `field:value` lines.
    static func infoFields(_ text: String) -> [String: String] {
        // Over UTF-8 bytes: splitting the String itself walks grapheme clusters, which made one
        // `INFO replication` cost ~230k instructions per node check.
        var fields: [String: String] = [:]
        for line in text.utf8.split(whereSeparator: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            guard line.first != UInt8(ascii: "#"), let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            fields[String(decoding: line[..<colon], as: UTF8.self)] = String(decoding: line[line.index(after: colon)...], as: UTF8.self)
        }
        return fields
    }
}

/// Sentinel's replies, read: `SENTINEL GET-MASTER-ADDR-BY-NAME`, `SENTINEL REPLICAS`, the
/// `+switch-master` message, and the vote over what the sentinels said.
enum SentinelReplies {
    /// `*2 $host $port` → the master's address.
    static func masterAddress(_ reply: RESPValue) -> Address? {
        guard case .array(let items?) = reply, items.count == 2, let host = items[0].text,
              let port = items[1].text.flatMap(UInt16.init) else { return nil }
        return Address(host: host, port: port)
    }

    /// `SENTINEL REPLICAS`: one flat field/value array per replica; its `ip` and `port`.
    static func replicas(_ reply: RESPValue) -> [Address]? {
        guard case .array(let items?) = reply else { return nil }
        return items.compactMap { item -> Address? in
            guard let fields = item.fields?.mapValues({ $0.text ?? "" }) else { return nil }
            guard let host = fields["ip"], let port = fields["port"].flatMap(UInt16.init) else { return nil }
            return Address(host: host, port: port)
        }
    }

    /// A `+switch-master` message for `name` (`name old-ip old-port new-ip new-port`) → the new
    /// master.
    static func switchedMaster(_ message: RESPValue, name: String) -> Address? {
        let parts: [RESPValue]
        switch message {
        case .array(let list?), .push(let list): parts = list
        default: return nil
        }
        guard parts.count == 3, parts[0].text == "message", parts[1].text == "+switch-master",
              let text = parts[2].text else { return nil }
        let words = text.split(separator: " ").map(String.init)
        guard words.count == 5, words[0] == name, let port = UInt16(words[4]) else { return nil }
        return Address(host: words[3], port: port)
    }

    /// The master most sentinels name (ties: the lower address, so every ambassador picks the
    /// same), and the replicas those sentinels list for it, sorted.
    static func vote(_ answers: [Address: (master: Address, replicas: [Address])]) -> (master: Address, replicas: [Address])? {
        var votes: [Address: Int] = [:]
        for answer in answers.values { votes[answer.master, default: 0] += 1 }
        guard let (master, _) = votes.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.description > $1.key.description) })
        else { return nil }
        var replicas: [Address] = []
        for answer in answers.values where answer.master == master {
            for replica in answer.replicas where !replicas.contains(replica) && replica != master { replicas.append(replica) }
        }
        replicas.sort { $0.description < $1.description }
        return (master, replicas)
    }
}
