import Routing
import Testing

/// The read router without sockets: every policy × replica eligibility × read-your-writes floor ×
/// master state, and the affinities.
@Suite struct RouterTests {
    typealias R = ReadRouter
    static let eligible = R.Replica(eligibility: .eligible, appliedOffset: 100)
    static let behind = R.Replica(eligibility: .eligible, appliedOffset: 50)
    static let out = R.Replica(eligibility: .ineligible, appliedOffset: 100)

    func route(_ policy: R.Policy, _ replicas: [R.Replica], _ request: R.Request = R.Request(),
               confirmed: Bool = true, balance: R.Balance = .leastOutstanding) -> R.Decision {
        var router = R(policy: policy, balance: balance)
        return router.route(request, replicas: replicas, context: (), masterConfirmed: confirmed)
    }

    /// The invariants, over every combination.
    @Test func everyCombinationKeepsThePolicysPromises() {
        let states = [Self.eligible, Self.behind, Self.out]
        let floors: [R.Floor] = [.any, .offset(100), .offset(75), .pending, .masterWindow]
        for policy in [R.Policy.master, .preferReplica, .replica] {
            for a in states { for b in states {
                for floor in floors { for confirmed in [true, false] { for excluded in [nil, 0] as [Int?] {
                    let replicas = [a, b]
                    let decision = route(policy, replicas, R.Request(floor: floor, excluded: excluded), confirmed: confirmed)
                    let what = "\(policy) \(replicas.map(\.appliedOffset)) \(replicas.map(\.eligibility)) \(floor) confirmed:\(confirmed) excluded:\(String(describing: excluded))"
                    switch decision.route {
                    case .replica(let index):
                        #expect(policy != .master, "\(what)")
                        #expect(replicas[index].eligibility == .eligible, "an ineligible replica: \(what)")
                        #expect(index != excluded, "the excluded replica: \(what)")
                        if case .offset(let needed) = floor, replicas[index].appliedOffset < needed {
                            #expect(policy == .replica && decision.waitsForReplicas, "a replica behind the floor: \(what)")
                        }
                        if floor == .pending || floor == .masterWindow { #expect(policy == .replica, "\(what)") }
                        if floor == .pending { #expect(decision.waitsForReplicas, "\(what)") }
                    case .master, .hold:
                        #expect(policy != .replica, "the master under read_policy replica: \(what)")
                        #expect((decision.route == .hold) == !confirmed, "\(what)")
                    case .unavailable:
                        #expect(policy == .replica, "\(what)")
                        #expect(!replicas.indices.contains { replicas[$0].eligibility == .eligible && $0 != excluded }, "\(what)")
                    }
                }}}
            }}
        }
    }

    @Test func preferReplicaFallsBackToTheMaster() {
        #expect(route(.preferReplica, [Self.eligible]).route == .replica(0))
        #expect(route(.preferReplica, [Self.out, Self.out]).route == .master)
        #expect(route(.preferReplica, []).route == .master)
        #expect(route(.preferReplica, [Self.out], confirmed: false).route == .hold)
        #expect(route(.master, [Self.eligible]).route == .master)
        #expect(route(.replica, [Self.out]).route == .unavailable)
    }

    @Test func readYourWritesFloors() {
        // Write in flight: the master, and replicas are asked for fresher offsets.
        #expect(route(.preferReplica, [Self.eligible], R.Request(floor: .pending)) == R.Decision(route: .master, waitsForReplicas: true))
        #expect(route(.preferReplica, [Self.eligible], R.Request(floor: .masterWindow)) == R.Decision(route: .master, waitsForReplicas: false))
        // Only the replica that has the offset.
        #expect(route(.preferReplica, [Self.behind, Self.eligible], R.Request(floor: .offset(100))).route == .replica(1))
        #expect(route(.preferReplica, [Self.behind], R.Request(floor: .offset(100))) == R.Decision(route: .master, waitsForReplicas: true))
        #expect(route(.preferReplica, [Self.behind], R.Request(floor: .offset(50))).route == .replica(0))
        // read_policy replica never uses the master: the freshest it can have.
        #expect(route(.replica, [Self.behind], R.Request(floor: .offset(100))) == R.Decision(route: .replica(0), waitsForReplicas: true))
        #expect(route(.replica, [Self.behind], R.Request(floor: .pending)) == R.Decision(route: .replica(0), waitsForReplicas: true))
    }

    @Test func retriesGoElsewhere() {
        #expect(route(.preferReplica, [Self.eligible, Self.eligible], R.Request(excluded: 0)).route == .replica(1))
        #expect(route(.preferReplica, [Self.eligible], R.Request(excluded: 0)).route == .master)
        #expect(route(.preferReplica, [Self.eligible], R.Request(excluded: 0, masterExcluded: true)).route == .unavailable)
        #expect(route(.replica, [Self.eligible], R.Request(excluded: 0)).route == .unavailable)
    }

    @Test func batchAffinityKeepsAPipelineOnOneReplicaThenSpreads() {
        let replicas = [Self.eligible, Self.eligible]
        #expect(route(.preferReplica, replicas, R.Request(batchReplica: 1, batchReads: 5)).route == .replica(1))
        #expect(route(.preferReplica, replicas, R.Request(batchReplica: 1, batchReads: R.batchAffinity - 1)).route == .replica(1))
        // After batchAffinity reads the balancer chooses again (least outstanding here).
        var busy = replicas
        busy[1].outstanding = 10
        #expect(route(.preferReplica, busy, R.Request(batchReplica: 1, batchReads: R.batchAffinity)).route == .replica(0))
        // A batch replica that left the rotation, or is behind the floor, is not kept.
        #expect(route(.preferReplica, [Self.eligible, Self.out], R.Request(batchReplica: 1)).route == .replica(0))
        #expect(route(.preferReplica, [Self.eligible, Self.behind], R.Request(floor: .offset(100), batchReplica: 1)).route == .replica(0))
    }

    @Test func scanWalksStayOnTheirNode() {
        let replicas = [Self.eligible, Self.eligible]
        // A walk in progress stays, whatever read-your-writes or the balance would pick.
        #expect(route(.preferReplica, replicas, R.Request(floor: .pending, scan: (node: .replica(1), continues: true))).route == .replica(1))
        #expect(route(.preferReplica, replicas, R.Request(scan: (node: .master, continues: true))).route == .master)
        #expect(route(.preferReplica, replicas, R.Request(scan: (node: .master, continues: true)), confirmed: false).route == .hold)
        // Its node left the rotation: routed as a new read.
        #expect(route(.preferReplica, [Self.eligible, Self.out], R.Request(scan: (node: .replica(1), continues: true))).route == .replica(0))
        // A new walk prefers the same node, within the floor.
        #expect(route(.preferReplica, replicas, R.Request(scan: (node: .replica(1), continues: false))).route == .replica(1))
        #expect(route(.preferReplica, replicas, R.Request(floor: .pending, scan: (node: .replica(1), continues: false))).route == .master)
        // A batch replica does not steer a SCAN.
        #expect(route(.preferReplica, replicas, R.Request(batchReplica: 0, scan: (node: .replica(1), continues: false))).route == .replica(1))
    }

    @Test func leastOutstandingByLoadPerWeightAndTiesRotate() {
        var router = R(policy: .preferReplica, balance: .leastOutstanding)
        var replicas = [R.Replica(eligibility: .eligible, weight: 1, outstanding: 4),
                        R.Replica(eligibility: .eligible, weight: 4, outstanding: 8)]
        #expect(router.route(R.Request(), replicas: replicas, context: (), masterConfirmed: true).route == .replica(1), "8/4 < 4/1")
        replicas[1].outstanding = 20
        #expect(router.route(R.Request(), replicas: replicas, context: (), masterConfirmed: true).route == .replica(0), "4/1 < 20/4")
        let idle = [Self.eligible, Self.eligible, Self.eligible]
        var seen: [Int] = []
        for _ in 0..<6 {
            if case .replica(let index) = router.route(R.Request(), replicas: idle, context: (), masterConfirmed: true).route { seen.append(index) }
        }
        #expect(Set(seen) == [0, 1, 2], "ties go round: \(seen)")
    }

    @Test func roundRobinFollowsWeights() {
        var router = R(policy: .preferReplica, balance: .roundRobin)
        let replicas = [R.Replica(eligibility: .eligible, weight: 2), R.Replica(eligibility: .eligible, weight: 1),
                        R.Replica(eligibility: .ineligible, weight: 5)]
        var counts = [0, 0, 0]
        for _ in 0..<30 {
            if case .replica(let index) = router.route(R.Request(), replicas: replicas, context: (), masterConfirmed: true).route { counts[index] += 1 }
        }
        #expect(counts == [20, 10, 0])
        router.replicasChanged()
        #expect(router.currentWeights.isEmpty && router.cursor == 0)
    }
}
