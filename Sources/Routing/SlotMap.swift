import RESP

/// What a command's keys say about where it may run in a Redis Cluster.
public enum CommandSlot: Sendable, Equatable {
    /// No key: any node may run it (or it goes to every master, for the fan-out commands).
    case none
    /// Every key hashes to this slot.
    case slot(Int)
    /// Keys in different slots: Redis Cluster answers -CROSSSLOT.
    case crossSlot
}

/// Arguments whose hash slot can be read in place (the session's reader hashes the bytes where
/// libevent holds them; tests hand arrays).
public protocol SlotArguments: CommandArguments {
    /// `HashSlot` of argument `index`, all its bytes (not the 32 that `shortArgument` keeps).
    func slot(ofArgument index: Int) -> Int
}

extension CommandInfo {
    /// See `KeyRule.slot`.
    public func slot(_ arguments: some SlotArguments) -> CommandSlot { keyRule.slot(arguments) }
}

extension KeyRule {
    /// The slot every key of the command hashes to, as a cluster node checks it
    /// (`getNodeByQuery`): the keys `visitKeys` finds, each hashed in full.
    @inline(__always)
    public func slot(_ arguments: some SlotArguments) -> CommandSlot {
        var result = CommandSlot.none
        visitKeys(arguments) { index in
            let slot = arguments.slot(ofArgument: index)
            switch result {
            case .none: result = .slot(slot)
            case .slot(let first) where first != slot: result = .crossSlot
            default: break
            }
        }
        return result
    }
}

/// Which shard serves each of the 16,384 slots. Built from the ranges `CLUSTER SHARDS` or
/// `CLUSTER SLOTS` give for each shard.
///
/// A flat table (32 KiB) holds every slot's owner, and while the layout is a few runs of
/// consecutive slots (one or a few ranges per shard, as `redis-cli --cluster create` and most
/// reshardings leave it) a lookup scans the runs instead: a few bytes that stay in cache. A
/// load from the table at a random key's slot missed the cache on most requests under load
/// (perf: 95 % of the lookup's samples on that one load, as much time as the rest of a read's
/// routing). A layout of many runs (slots moved one by one) is looked up in the table.
public struct SlotMap: Sendable, Equatable {
    /// Shard index per slot; `unowned` for a slot no shard serves.
    @usableFromInline private(set) var owners: [UInt16]
    public static let unowned: UInt16 = .max
    /// The table as runs: run `i` ends at slot `runEnds[i]` (ascending, the last one 16,383)
    /// and is served by `runOwners[i]`. Empty when there are more than `maxRuns`.
    @usableFromInline private(set) var runEnds: [UInt16] = []
    @usableFromInline private(set) var runOwners: [UInt16] = []
    static let maxRuns = 24

    public init() {
        owners = Array(repeating: Self.unowned, count: HashSlot.count)
        makeRuns()
    }

    /// `ranges[i]`: the slot ranges of shard `i`. A slot listed twice goes to the later shard
    /// (a layout read mid-migration may show it on both: the next refresh settles it).
    public init(ranges: [[ClosedRange<Int>]]) {
        self.init()
        for (shard, list) in ranges.enumerated() {
            for range in list where range.lowerBound >= 0 && range.upperBound < HashSlot.count {
                for slot in range { owners[slot] = UInt16(shard) }
            }
        }
        makeRuns()
    }

    /// The shard serving `slot`, nil when none does. Inlinable: it runs for every keyed cluster
    /// command, in another module.
    @inlinable @inline(__always)
    public func shard(of slot: Int) -> Int? {
        let owner: UInt16
        if runEnds.isEmpty {
            owner = owners[slot]
        } else {
            // The run holding `slot` is the count of runs ending before it (the last one ends
            // at the last slot). Counted over all of them, without a branch per run: keys hash
            // at random, so a loop that stopped at the run mispredicted its exit about every
            // other lookup.
            var run = 0
            for end in runEnds { run &+= Int(bitPattern: UInt(bitPattern: Int(end) &- slot) >> 63) }  // end < slot
            owner = runOwners[run]
        }
        return owner == Self.unowned ? nil : Int(owner)
    }

    /// The runs of the table, if there are few enough (see `runEnds`).
    private mutating func makeRuns() {
        var ends: [UInt16] = []
        var runOwners: [UInt16] = []
        for slot in 0..<HashSlot.count where slot == HashSlot.count - 1 || owners[slot + 1] != owners[slot] {
            if ends.count == Self.maxRuns {
                ends.removeAll()
                runOwners.removeAll()
                break
            }
            ends.append(UInt16(slot))
            runOwners.append(owners[slot])
        }
        runEnds = ends
        self.runOwners = runOwners
    }

    /// How many runs a lookup scans (0: it reads the table).
    public var runCount: Int { runEnds.count }

    /// Slots no shard serves.
    public var unservedCount: Int { owners.reduce(0) { $0 + ($1 == Self.unowned ? 1 : 0) } }

    /// A slot moved (a `-MOVED` reply names its new owner).
    public mutating func assign(_ slot: Int, to shard: Int) {
        guard slot >= 0 && slot < HashSlot.count, owners[slot] != UInt16(shard) else { return }
        owners[slot] = UInt16(shard)
        makeRuns()
    }
}
