/// Where a read goes: the read policy, balancing, read-your-writes, batch affinity, SCAN cursor
/// stickiness and the failover hold, as a pure function of values — the session's view, each
/// replica's view, the policy. The proxy builds the views from its live objects and applies the
/// answer; tests drive every combination without a socket.
///
///     request ─▶ policy master? ─────────────────────────────────────────▶ master
///             ─▶ SCAN cursor walk in progress on a node that still serves ─▶ that node
///             ─▶ read-your-writes: write in flight / offset unknown ──────▶ master (prefer-replica)
///                                  duration window open ───────────────────▶ master (prefer-replica)
///             ─▶ the batch's replica, if it takes the read (floor, not excluded)
///             ─▶ balance among replicas that take it ─────────────────────▶ replica i
///             ─▶ none: prefer-replica → master; replica → any eligible replica, else unavailable
///     master while no master is confirmed ───────────────────────────────▶ hold
public struct ReadRouter: Sendable {
    public enum Policy: Sendable, Equatable { case master, preferReplica, replica }
    public enum Balance: Sendable, Equatable { case leastOutstanding, roundRobin }

    public var policy: Policy
    public var balance: Balance
    /// Reads kept on one replica in a row (a pipeline's batch), then the choice is made again.
    public static let batchAffinity = 32
    /// least-outstanding: where the scan for the least loaded replica starts (rotates, so ties go
    /// round). round-robin: each replica's running weight (smooth weighted round-robin).
    /// (Balancing state: public only so the inlined routing code can keep it.)
    public var cursor = 0
    public var currentWeights: [Int] = []

    public init(policy: Policy, balance: Balance) {
        self.policy = policy
        self.balance = balance
    }

    /// One replica as the router sees it (the proxy's view computes each property on access,
    /// so a load that is not needed is never looked up).
    public struct Replica: Sendable, Equatable, ReplicaState {
        public enum Eligibility: Sendable, Equatable {
            /// Up, replicating from the confirmed master, link up, within max_replica_lag.
            case eligible
            /// Not to be read from now (down, lagging, syncing, busy, -LOADING …).
            case ineligible
        }
        public var eligibility: Eligibility
        public var weight: Int
        /// Requests in flight on the session's connection to it (least-outstanding's load).
        public var outstanding: Int
        /// The replication offset it last reported having applied (-1: unknown).
        public var appliedOffset: Int64

        public init(eligibility: Eligibility, weight: Int = 1, outstanding: Int = 0, appliedOffset: Int64 = -1) {
            self.eligibility = eligibility
            self.weight = weight
            self.outstanding = outstanding
            self.appliedOffset = appliedOffset
        }
    }

    /// What read-your-writes requires of this read.
    public enum Floor: Sendable, Equatable {
        /// Nothing: any eligible replica.
        case any
        /// A replica that has applied this replication offset.
        case offset(Int64)
        /// The session's write is in flight, or its offset not known yet: only the master has it.
        case pending
        /// read_your_writes by duration: the window after the session's write is open.
        case masterWindow
    }

    /// Where a node is, for batch and SCAN affinity.
    public enum Node: Sendable, Equatable {
        case master
        case replica(Int)
    }

    /// The session's side of a read.
    public struct Request: Sendable, Equatable {
        public var floor: Floor
        /// The replica the session's current batch went to, and how many reads it took.
        public var batchReplica: Int?
        public var batchReads: Int
        /// A SCAN-family command: the node of the session's walk, and whether this call
        /// continues it (cursor not 0).
        public var scan: (node: Node?, continues: Bool)?
        /// A replica that just failed this read (a retry must go elsewhere).
        public var excluded: Int?
        /// Retries: the master is allowed only when confirmed and not the one that failed.
        public var masterExcluded: Bool

        public init(floor: Floor = .any, batchReplica: Int? = nil, batchReads: Int = 0,
                    scan: (node: Node?, continues: Bool)? = nil, excluded: Int? = nil, masterExcluded: Bool = false) {
            self.floor = floor
            self.batchReplica = batchReplica
            self.batchReads = batchReads
            self.scan = scan
            self.excluded = excluded
            self.masterExcluded = masterExcluded
        }

        public static func == (a: Request, b: Request) -> Bool {
            a.floor == b.floor && a.batchReplica == b.batchReplica && a.batchReads == b.batchReads
                && a.scan?.node == b.scan?.node && a.scan?.continues == b.scan?.continues
                && a.excluded == b.excluded && a.masterExcluded == b.masterExcluded
        }
    }

    public enum Route: Sendable, Equatable {
        case master
        case replica(Int)
        /// The master, but none is confirmed (a failover): the read waits up to failover_hold.
        case hold
        /// Nowhere to go (read_policy replica, no eligible replica).
        case unavailable
    }

    public struct Decision: Sendable, Equatable {
        public var route: Route
        /// Read-your-writes held this read back from replicas that are eligible but behind:
        /// their offsets should be asked for more often.
        public var waitsForReplicas: Bool

        public init(route: Route, waitsForReplicas: Bool) {
            self.route = route
            self.waitsForReplicas = waitsForReplicas
        }
    }

    /// Routes one read. `replicas[i]` is replica i's view (computed lazily by the caller; a
    /// collection so nothing is allocated per read).
    @inlinable
    public mutating func route<C: RandomAccessCollection>(_ request: Request, replicas: C, context: C.Element.Context,
                                                         masterConfirmed: Bool) -> Decision
        where C.Element: ReplicaState, C.Index == Int
    {
        func master(_ waits: Bool = false) -> Decision {
            Decision(route: request.masterExcluded ? .unavailable : masterConfirmed ? .master : .hold, waitsForReplicas: waits)
        }
        if policy == .master { return master() }
        if let scan = request.scan, scan.continues, let node = scan.node {
            switch node {
            case .master: return master()
            case .replica(let index) where index < replicas.count && takes(replicas[index], index, request, floor: 0):
                return Decision(route: .replica(index), waitsForReplicas: false)
            default: break
            }
        }
        var floor: Int64 = 0
        switch request.floor {
        case .any: break
        case .masterWindow:
            // read_policy replica never uses the master: then any replica will do.
            if policy == .preferReplica { return master() }
        case .offset(let offset): floor = offset
        case .pending:
            if policy == .preferReplica { return master(true) }
        }
        let pending = request.floor == .pending
        if request.scan == nil, let batch = request.batchReplica, request.batchReads < Self.batchAffinity,
           batch < replicas.count, takes(replicas[batch], batch, request, floor: floor) {
            return Decision(route: .replica(batch), waitsForReplicas: false)
        }
        if let scan = request.scan, case .replica(let index)? = scan.node,
           index < replicas.count, takes(replicas[index], index, request, floor: floor) {
            return Decision(route: .replica(index), waitsForReplicas: false)  // a new walk prefers the same node
        }
        if let index = pick(request, replicas: replicas, context: context, floor: floor) {
            return Decision(route: .replica(index), waitsForReplicas: pending)
        }
        let behind = floor > 0 || pending
        if behind && policy == .replica, let index = pick(request, replicas: replicas, context: context, floor: 0) {
            // The policy forbids the master: the freshest that can be had.
            return Decision(route: .replica(index), waitsForReplicas: true)
        }
        if policy == .preferReplica { return master(behind) }
        return Decision(route: .unavailable, waitsForReplicas: behind)
    }

    @inlinable
    func takes(_ replica: some ReplicaState, _ index: Int, _ request: Request, floor: Int64) -> Bool {
        replica.isEligible && index != request.excluded && (floor == 0 || replica.appliedOffset >= floor)
    }

    /// The balanced choice among the replicas that take the read.
    @inlinable
    mutating func pick<C: RandomAccessCollection>(_ request: Request, replicas: C, context: C.Element.Context,
                                                  floor: Int64) -> Int?
        where C.Element: ReplicaState, C.Index == Int
    {
        let count = replicas.count
        guard count > 0 else { return nil }
        var best: Int?
        switch balance {
        case .leastOutstanding:
            // Fewest in flight per weight; ties go round in turn (the cursor rotates the start).
            var bestLoad = 0.0
            for step in 0..<count {
                let index = (cursor + step) % count
                let replica = replicas[index]
                guard takes(replica, index, request, floor: floor) else { continue }
                let load = Double(replica.outstanding(in: context)) / Double(max(replica.weight, 1))
                if best == nil || load < bestLoad {
                    best = index
                    bestLoad = load
                }
            }
            cursor = (cursor + 1) % count
        case .roundRobin:
            // Smooth weighted round-robin (as nginx): each pick adds every weight, takes the
            // largest, and charges it the total.
            if currentWeights.count != count { currentWeights = Array(repeating: 0, count: count) }
            var total = 0
            for index in 0..<count {
                let replica = replicas[index]
                guard takes(replica, index, request, floor: floor) else { continue }
                currentWeights[index] += max(replica.weight, 1)
                total += max(replica.weight, 1)
                if best == nil || currentWeights[index] > currentWeights[best!] { best = index }
            }
            if let best { currentWeights[best] -= total }
        }
        return best
    }

    /// The replica set changed: balancing starts over.
    public mutating func replicasChanged() {
        cursor = 0
        currentWeights = []
    }
}

/// What the router reads of a replica (the proxy's backends conform: nothing is copied per read).
public protocol ReplicaState {
    /// What the load depends on (the proxy: the session, whose connection it is).
    associatedtype Context
    /// Up, replicating from the confirmed master, link up, within max_replica_lag.
    var isEligible: Bool { get }
    var weight: Int { get }
    /// The replication offset it last reported having applied (-1: unknown).
    var appliedOffset: Int64 { get }
    /// Requests in flight on the session's connection to it (least-outstanding's load); asked
    /// only when balancing by load.
    func outstanding(in context: Context) -> Int
}

extension ReadRouter.Replica {
    public var isEligible: Bool { eligibility == .eligible }
    public func outstanding(in context: Void) -> Int { outstanding }
}
