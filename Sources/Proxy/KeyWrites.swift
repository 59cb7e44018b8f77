import RESP
import Routing

/// `read_your_writes: app`: a write by any of the app's connections to a key sends reads of that
/// key — from any connection, a pool's other ones included — to the master until a replica has
/// applied it (by replication offset, as for a session's own writes: see `ReplicationTracker`).
///
/// Keys are remembered by a 64-bit hash of their bytes (a collision only sends a read to the
/// master). A write whose keys are not known from the command table (movable keys: EVAL,
/// ZUNIONSTORE …, a transaction, more than two keys) counts for every key. The table is bounded:
/// past `capacity` entries, those every replica has applied are dropped, and while it is still
/// full new writes count for every key. One table per worker.
final class KeyWrites {
    struct Entry {
        /// Writes to the key sent and not yet answered.
        var inflight: Int32 = 0
        /// The master probe covering the last answered write (0: none yet).
        var probe = 0
    }

    private(set) var entries: [UInt64: Entry] = [:]
    /// Writes whose keys are not known: they count for every key.
    private(set) var global = Entry()
    /// Over every key: writes in flight, and the newest probe (a read whose keys are unknown
    /// waits for all of them).
    private var inflightTotal = 0
    private var newestProbe = 0
    private var sentWhileFull = 0
    static let capacity = 100_000

    /// A write to `keys` (nil: unknown keys) was sent; returns the keys it is counted under
    /// (global when unknown, or when the table is full).
    func sent(_ keys: KeyHashes?) -> KeyHashes {
        inflightTotal += 1
        guard let keys, entries.count < Self.capacity else {
            global.inflight += 1
            return KeyHashes(global: true)
        }
        for i in 0..<keys.count { entries[keys[i], default: Entry()].inflight += 1 }
        return keys
    }

    /// That write was answered (or failed): its keys need a replica at the offset of `probe`.
    func answered(_ keys: KeyHashes, probe: Int) {
        inflightTotal -= 1
        newestProbe = probe
        guard !keys.global else {
            global.inflight -= 1
            global.probe = probe
            return
        }
        for i in 0..<keys.count {
            guard var entry = entries[keys[i]] else { continue }
            entry.inflight -= 1
            entry.probe = probe
            entries[keys[i]] = entry
        }
    }

    /// The offset a replica needs to serve a read of the keys `hashes` yields (0: any); nil
    /// while a write to one of them (or to unknown keys) is in flight or its offset is not known
    /// yet. `hashes` nil: the read's keys are not known, so every recent write counts.
    func floor(tracker: ReplicationTracker, _ hashes: (((UInt64) -> Bool) -> Void)?) -> Int64? {
        guard var floor = try? Self.floor(of: global, tracker) else { return nil }
        guard let hashes else {
            if inflightTotal > 0 { return nil }
            return newestProbe == 0 ? floor : tracker.floor(forProbe: newestProbe).map { max(floor, $0) }
        }
        var pending = false
        hashes { hash in
            guard let entry = self.entries[hash] else { return true }
            guard let needed = try? Self.floor(of: entry, tracker) else {
                pending = true
                return false
            }
            floor = max(floor, needed)
            return true
        }
        return pending ? nil : floor
    }

    private struct Pending: Error {}

    private static func floor(of entry: Entry, _ tracker: ReplicationTracker) throws(Pending) -> Int64 {
        if entry.inflight > 0 { throw Pending() }
        if entry.probe == 0 { return 0 }
        guard let offset = tracker.floor(forProbe: entry.probe) else { throw Pending() }
        return offset
    }

    /// Drops the entries every replica has applied (`floor`: the least applied offset), when the
    /// table is full (at most once per 10,000 writes while it stays full).
    func prune(appliedByAll floor: Int64, tracker: ReplicationTracker) {
        guard entries.count >= Self.capacity else { return }
        sentWhileFull += 1
        guard sentWhileFull % 10_000 == 1 else { return }
        entries = entries.filter { _, entry in
            guard entry.inflight == 0, let needed = try? Self.floor(of: entry, tracker) else { return true }
            return needed > floor
        }
    }
}

/// The key hashes of one command: up to two kept inline (no allocation); more, or keys the
/// command table cannot place, make it `global`.
struct KeyHashes {
    var first: UInt64 = 0
    var second: UInt64 = 0
    var count = 0
    var global = false

    subscript(index: Int) -> UInt64 { index == 0 ? first : second }

    mutating func append(_ hash: UInt64) {
        if count == 0 { first = hash } else if count == 1 { second = hash } else { global = true }
        count = min(count + 1, 2)
    }
}

extension ClientSession {
    /// The hashes of `frame`'s keys, from the command table's key positions; nil when they are
    /// not known (movable keys, an unknown command) or more than two.
    func keyHashes(_ frame: RequestFrame) -> KeyHashes? {
        guard let visit = keyVisitor(frame) else { return nil }
        var keys = KeyHashes()
        visit { hash in
            keys.append(hash)
            return !keys.global
        }
        return keys.count > 0 && !keys.global ? keys : nil
    }

    /// Calls `visit` with the hash of each of `frame`'s keys until it returns false; nil when the
    /// keys are not known from the command table (movable keys, an unknown command).
    func keyVisitor(_ frame: RequestFrame) -> (((UInt64) -> Bool) -> Void)? {
        guard let info = proxy.table.info(name: frame.name, firstArgument: frame.firstArgument),
              !info.flags.contains(.movableKeys), info.firstKey > 0 else { return nil }
        let last = info.lastKey < 0 ? frame.argumentCount + info.lastKey : info.lastKey
        let step = max(info.keyStep, 1)
        return { visit in
            var index = info.firstKey
            while index <= last && index < frame.argumentCount {
                if !visit(self.argumentHash(index, of: frame)) { return }
                index += step
            }
        }
    }

    /// FNV-1a of argument `index`, read in place.
    func argumentHash(_ index: Int, of frame: RequestFrame) -> UInt64 {
        let range = parser.arguments[index]
        var hash: UInt64 = 0xcbf29ce484222325
        if frame.isInline {
            for byte in parser.inlineBytes[range.offset..<range.offset + range.count] {
                hash = (hash ^ UInt64(byte)) &* 0x100000001b3
            }
            return hash
        }
        var left = range.count
        connection.withInputChunks(from: pendingBytes + range.offset) { chunk in
            let take = min(left, chunk.count)
            for i in 0..<take { hash = (hash ^ UInt64(chunk[i])) &* 0x100000001b3 }
            left -= take
            return left > 0
        }
        return hash
    }
}
