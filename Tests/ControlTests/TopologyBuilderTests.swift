@testable import Control
import Config
import Proxy
import RESP
import Testing

/// The topology builder on literal ROLE / INFO / SENTINEL replies: which node is the master and
/// why each replica does or does not take reads, without a socket.
@Suite struct TopologyBuilderTests {
    static let master = Address(host: "127.0.0.1", port: 6379)
    static func address(_ port: UInt16) -> Address { Address(host: "127.0.0.1", port: port) }

    static func masterRole(offset: Int64) -> [RESPValue] { [.bulk("master"), .integer(offset), .array([])] }
    static func replicaRole(of host: String = "127.0.0.1", port: Int64 = 6379, state: String = "connected",
                            offset: Int64, spelled name: String = "slave") -> [RESPValue] {
        [.bulk(name), .bulk(host), .integer(port), .bulk(state), .integer(offset)]
    }

    /// A node that answered ROLE and INFO replication.
    static func node(_ address: Address, role: [RESPValue], info: String = "") -> NodeReport {
        var report = NodeReport(address: address, hosts: [address.host])
        report.up = true
        report.checked = true
        report.lastError = ""
        report.role = role
        report.info = TopologyBuilder.infoFields(info)
        return report
    }

    static func replicaInfo(offset: Int64, link: String = "up", syncing: Bool = false) -> String {
        "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:\(link)\r\n"
            + "master_sync_in_progress:\(syncing ? 1 : 0)\r\nslave_repl_offset:\(offset)\r\n"
    }

    static func config(_ replicas: [UInt16], maxLag: Double = 1) -> AmbassadorConfig {
        var config = AmbassadorConfig(listen: .tcp(address(6380)), master: master, replicas: replicas.map(address))
        config.maxReplicaLag = Duration(seconds: maxLag)
        return config
    }

    /// Samples: the master had offset 500 at t=100 and 1000 at t=101.
    static var samples: OffsetSamples {
        var samples = OffsetSamples()
        samples.record(master: master, offset: 500, at: 100)
        samples.record(master: master, offset: 1000, at: 101)
        return samples
    }

    @Test func everyRuleOfEligibility() {
        var nodes: [Address: NodeReport] = [Self.master: Self.node(Self.master, role: Self.masterRole(offset: 1000),
                                                                    info: "role:master\r\nmaster_repl_offset:1000\r\n")]
        func add(_ port: UInt16, _ report: NodeReport) { nodes[Self.address(port)] = report }
        add(1, Self.node(Self.address(1), role: Self.replicaRole(offset: 1000), info: Self.replicaInfo(offset: 1000)))
        add(2, Self.node(Self.address(2), role: Self.replicaRole(state: "connect", offset: -1), info: Self.replicaInfo(offset: 0, link: "down")))
        add(3, Self.node(Self.address(3), role: Self.replicaRole(state: "sync", offset: -1), info: Self.replicaInfo(offset: 0, syncing: true)))
        add(4, Self.node(Self.address(4), role: Self.replicaRole(port: 7000, offset: 1000), info: Self.replicaInfo(offset: 1000)))
        var down = NodeReport(address: Self.address(5), hosts: ["127.0.0.1"])
        down.checked = true
        down.lastError = "connection refused"
        add(5, down)
        add(6, NodeReport(address: Self.address(6), hosts: ["127.0.0.1"]))
        var busy = Self.node(Self.address(7), role: Self.replicaRole(offset: 1000), info: Self.replicaInfo(offset: 1000))
        busy.busy = true
        busy.lastError = "BUSY Redis is busy running a script."
        add(7, busy)
        add(8, Self.node(Self.address(8), role: Self.masterRole(offset: 5)))
        add(9, Self.node(Self.address(9), role: Self.replicaRole(offset: 600), info: Self.replicaInfo(offset: 600)))
        add(10, Self.node(Self.address(10), role: Self.replicaRole(offset: 400), info: Self.replicaInfo(offset: 400)))
        // Dragonfly: `replica`, the port as text, no INFO fields; KeyDB: `active-replica`.
        add(11, Self.node(Self.address(11), role: [.bulk("replica"), .bulk("127.0.0.1"), .bulk("6379"), .bulk("stable_sync"), .integer(1000)]))
        add(12, Self.node(Self.address(12), role: Self.replicaRole(offset: 1000, spelled: "active-replica")))
        add(13, Self.node(Self.address(13), role: [.bulk("slave"), .bulk("127.0.0.1"), .integer(6379), .bulk("connected")]))

        let config = Self.config(Array(1...13), maxLag: 0.5)
        let topology = TopologyBuilder.topology(config, sentinel: (nil, []), nodes: nodes, samples: Self.samples, now: 102)
        #expect(topology.master == Self.master)
        let by = Dictionary(uniqueKeysWithValues: topology.replicas.map { ($0.address.port, $0) })
        let expected: [UInt16: Eligibility] = [
            1: .eligible, 2: .linkDown, 3: .syncing, 4: .notReplicating(from: Self.master),
            5: .down("connection refused"), 6: .notChecked, 7: .busy("BUSY Redis is busy running a script."),
            8: .role("master"), 9: .lagging(seconds: 1, limit: Duration(seconds: 0.5)),
            10: .lagging(seconds: .infinity, limit: Duration(seconds: 0.5)), 11: .eligible, 12: .eligible, 13: .noOffset,
        ]
        for (port, eligibility) in expected {
            #expect(by[port]?.eligibility == eligibility, "replica \(port): \(by[port]?.eligibility.description ?? "missing")")
        }
        #expect(by[1]?.lag == 0 && by[1]?.caughtUpTo == 101)
        #expect(by[9]?.caughtUpTo == 100 && by[9]?.reason == "lag 1.0s > max_replica_lag 500ms")
        #expect(by[10]?.reason == "behind every recorded master offset")
        #expect(by[5]?.up == false && by[9]?.up == true)
        // max_replica_lag 0s: no limit, the lagging ones are eligible.
        let unlimited = TopologyBuilder.topology(Self.config(Array(1...13), maxLag: 0), sentinel: (nil, []), nodes: nodes,
                                                 samples: Self.samples, now: 102)
        #expect(unlimited.replicas.filter(\.eligible).map(\.address.port).sorted() == [1, 9, 10, 11, 12])
        // The master down: nobody is confirmed, so no replica can be known to follow it.
        nodes[Self.master]!.up = false
        let headless = TopologyBuilder.topology(config, sentinel: (nil, []), nodes: nodes, samples: Self.samples, now: 102)
        #expect(headless.master == nil)
        #expect(headless.replicas.first { $0.address.port == 1 }?.eligibility == .noConfirmedMaster)
        // A configured master that reports replica is not the master either.
        nodes[Self.master] = Self.node(Self.master, role: Self.replicaRole(port: 6390, offset: 1))
        #expect(TopologyBuilder.master(config, sentinelMaster: nil, nodes: nodes) == nil)
    }

    @Test func roleDiscoveryPicksTheMasterTheReplicasFollow() {
        let a = Self.address(7001), b = Self.address(7002), c = Self.address(7003)
        var config = AmbassadorConfig(listen: .tcp(Self.address(6380)), master: a)
        config.discovery = .role(nodes: [a, b, c])
        var nodes = [a: Self.node(a, role: Self.masterRole(offset: 10)),
                     b: Self.node(b, role: Self.masterRole(offset: 10)),
                     c: Self.node(c, role: Self.replicaRole(port: 7002, offset: 10), info: Self.replicaInfo(offset: 10))]
        #expect(TopologyBuilder.master(config, sentinelMaster: nil, nodes: nodes)?.address == b)
        let topology = TopologyBuilder.topology(config, sentinel: (nil, []), nodes: nodes, samples: OffsetSamples(), now: 1)
        // The other self-declared master is a replica candidate that reports role master.
        #expect(topology.replicas.map(\.address) == [a, c])
        #expect(topology.replicas.first?.eligibility == .role("master"))
        #expect(topology.replicas.last?.eligibility == .noOffset)  // no sample of b's offset yet
        // Two masters and nobody following either: no master at all (writes wait).
        nodes[c] = Self.node(c, role: Self.replicaRole(port: 9999, offset: 10))
        #expect(TopologyBuilder.master(config, sentinelMaster: nil, nodes: nodes) == nil)
        // One master: that one.
        nodes[a] = Self.node(a, role: Self.replicaRole(port: 7002, offset: 10))
        #expect(TopologyBuilder.master(config, sentinelMaster: nil, nodes: nodes)?.address == b)
    }

    @Test func sentinelMasterNeedsItsOwnConfirmation() {
        let a = Self.address(7001), b = Self.address(7002)
        var config = AmbassadorConfig(listen: .tcp(Self.address(6380)), master: Self.address(26379))
        config.discovery = .sentinel(sentinels: [Self.address(26379)], masterName: "mymaster")
        let nodes = [a: Self.node(a, role: Self.replicaRole(port: 7002, offset: 10)), b: Self.node(b, role: Self.masterRole(offset: 10))]
        #expect(TopologyBuilder.master(config, sentinelMaster: b, nodes: nodes)?.address == b)
        // The sentinels name a node that says replica (a failover they have not seen finish).
        #expect(TopologyBuilder.master(config, sentinelMaster: a, nodes: nodes) == nil)
        let topology = TopologyBuilder.topology(config, sentinel: (b, [a]), nodes: nodes, samples: OffsetSamples(), now: 1)
        #expect(topology.master == b && topology.replicas.map(\.address) == [a])
    }

    @Test func sentinelRepliesAndTheVote() {
        #expect(SentinelReplies.masterAddress(.array([.bulk("10.0.0.5"), .bulk("6379")])) == Address(host: "10.0.0.5", port: 6379))
        #expect(SentinelReplies.masterAddress(.null) == nil)  // an unknown master_name
        #expect(SentinelReplies.masterAddress(.error(Array("ERR No such master with that name".utf8))) == nil)
        let resp2: RESPValue = .array([
            .array(["name", "10.0.0.6:6379", "ip", "10.0.0.6", "port", "6379", "flags", "slave"].map { .bulk($0) }),
            .array(["name", "10.0.0.7:6380", "ip", "10.0.0.7", "port", "6380"].map { .bulk($0) }),
            .array(["name", "broken"].map { .bulk($0) }),
        ])
        #expect(SentinelReplies.replicas(resp2) == [Address(host: "10.0.0.6", port: 6379), Address(host: "10.0.0.7", port: 6380)])
        let resp3: RESPValue = .array([.map(["ip", "10.0.0.8", "port", "6379"].map { .bulk($0) })])
        #expect(SentinelReplies.replicas(resp3) == [Address(host: "10.0.0.8", port: 6379)])
        #expect(SentinelReplies.replicas(.array([])) == [])
        let message: RESPValue = .array(["message", "+switch-master", "mymaster 10.0.0.5 6379 10.0.0.6 6379"].map { .bulk($0) })
        #expect(SentinelReplies.switchedMaster(message, name: "mymaster") == Address(host: "10.0.0.6", port: 6379))
        #expect(SentinelReplies.switchedMaster(message, name: "other") == nil)
        #expect(SentinelReplies.switchedMaster(.array(["subscribe", "+switch-master", "1"].map { .bulk($0) }), name: "mymaster") == nil)

        let (x, y, z) = (Address(host: "10.0.0.5", port: 6379), Address(host: "10.0.0.6", port: 6379), Address(host: "10.0.0.7", port: 6379))
        let (s1, s2, s3) = (Self.address(26379), Self.address(26380), Self.address(26381))
        let majority = SentinelReplies.vote([s1: (x, [y, z]), s2: (x, [z]), s3: (y, [x])])
        #expect(majority?.master == x && majority?.replicas == [y, z])
        // A tie goes to the lower address, whatever order the answers came in.
        #expect(SentinelReplies.vote([s1: (y, []), s2: (x, [])])?.master == x)
        #expect(SentinelReplies.vote([s2: (x, []), s1: (y, [])])?.master == x)
        #expect(SentinelReplies.vote([:]) == nil)
    }

    @Test func offsetSamplesStartAgainWithANewMaster() {
        var samples = Self.samples
        #expect(samples.position(of: 1000)! == (101, 0))
        #expect(samples.position(of: 700)! == (100, 1))
        samples.record(master: Self.address(7000), offset: 5, at: 200)
        #expect(samples.samples.count == 1 && samples.position(of: 5)! == (200, 0))
        for i in 0..<700 { samples.record(master: Self.address(7000), offset: Int64(i), at: Double(300 + i)) }
        #expect(samples.samples.count == OffsetSamples.kept)
        #expect(OffsetSamples().position(of: 1) == nil)
    }

    @Test func infoFieldsSkipSectionsAndKeepColonsInValues() {
        let fields = TopologyBuilder.infoFields("# Replication\r\nrole:master\r\nslave0:ip=127.0.0.1,port=6380,state=online\r\n\r\nmaster_replid:abc\r\n")
        #expect(fields == ["role": "master", "slave0": "ip=127.0.0.1,port=6380,state=online", "master_replid": "abc"])
    }
}
