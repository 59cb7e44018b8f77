import Config
import RESP
import Routing

/// discovery: cluster — commands one node could not run alone, run across the shards and
/// answered as one Redis would:
/// - split: MGET, MSET, DEL, UNLINK, EXISTS, TOUCH whose keys span slots go out as one
///   request per slot, and the replies are merged in key order;
/// - fan-out: DBSIZE, KEYS, FLUSHALL, FLUSHDB, SCRIPT LOAD/FLUSH/EXISTS, FUNCTION
///   LOAD/FLUSH/DELETE, RANDOMKEY, INFO (when it shows the Keyspace section), CONFIG
///   SET/RESETSTAT/REWRITE, CLIENT PAUSE/UNPAUSE and SCRIPT/FUNCTION KILL go to every master;
///   SCAN walks the masters in turn with one cursor.
/// The parts run on the masters' shared connections; -MOVED, -ASK and -TRYAGAIN on a part are
/// followed as for any request. The client's reply takes its turn in its queue.
extension ClientSession {
    /// How the parts' replies become the client's.
    enum Merge {
        /// MGET: each part's values go back to the positions of its keys.
        case values(positions: [[Int]], count: Int)
        /// DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the sum.
        case sum
        /// MSET, FLUSHALL, FLUSHDB, SCRIPT FLUSH, FUNCTION FLUSH/DELETE, SCRIPT LOAD,
        /// FUNCTION LOAD: every part's reply is the same; that one (or the first error).
        case same
        /// KEYS: every part's array, one after another.
        case concatenate
        /// The least of each count: SCRIPT EXISTS (1 where every master has the script); WAIT
        /// (the replicas that acknowledged every shard's writes, as one Redis counts replicas
        /// that have all of a client's); WAITAOF (each of its two counts).
        case least
        /// SCAN on master `index` of `count`: the cursor carries the master's index.
        case scan(index: Int, count: Int)
        /// RANDOMKEY (the first `count` parts; then each master's DBSIZE): one of the masters'
        /// keys, the master chosen in proportion to its keys, as one Redis picks among all of
        /// them (nil only when every master is empty).
        case random(count: Int)
        /// INFO: the first master's, its Keyspace section the sum of every master's.
        case info
        /// SCRIPT KILL, FUNCTION KILL: OK where one master had a script to end; else the error
        /// that says why not (UNKILLABLE before NOTBUSY).
        case killed
    }

    /// One request of a split or fan-out, and where it goes.
    struct Part {
        var arguments: [[UInt8]]
        var group: ReplicationGroup
        /// The slot of its keys (-1: keyless), for redirections.
        var slot: Int
        /// SCRIPT KILL, FUNCTION KILL: on a connection with nothing in flight (not behind the script).
        var urgent = false
        /// WAIT, WAITAOF: on this connection (Redis counts from the offset of the last write of
        /// the connection a WAIT runs on), held as a client's WAIT holds one.
        var waitsOn: BackendConnection?
    }

    /// The split or fan-out for this command, if it needs one (nil: route it as usual).
    static let splitNames: Set<ShortBytes> = Set(["mget", "exists", "del", "unlink", "touch", "mset"].map { ShortBytes($0) })
    static let fanOutNames: Set<ShortBytes> = Set(["dbsize", "keys", "flushall", "flushdb", "script", "function", "scan", "randomkey", "info", "config", "client"].map { ShortBytes($0) })

    /// INFO's sections that include Keyspace (none named: the default ones).
    static let keyspaceSections: Set<String> = ["default", "all", "everything", "keyspace"]

    func clusterParts(_ frame: RequestFrame, crossSlot: Bool) -> (parts: [Part], merge: Merge, isWrite: Bool)? {
        guard proxy.hasLayout, (crossSlot ? Self.splitNames : Self.fanOutNames).contains(frame.name) else { return nil }
        let name = frame.name.description
        if crossSlot {
            let count = frame.argumentCount
            let step: Int
            switch name {
            case "mget", "exists": step = 1
            case "del", "unlink", "touch": step = 1
            case "mset" where count % 2 == 1: step = 2
            default: return nil
            }
            var bySlot: [Int: (arguments: [[UInt8]], positions: [Int])] = [:]
            var order: [Int] = []
            var index = 1
            var position = 0
            while index < count {
                let key = argumentBytes(index, of: frame)
                let slot = HashSlot.of(key)
                if bySlot[slot] == nil {
                    bySlot[slot] = ([argumentBytes(0, of: frame)], [])
                    order.append(slot)
                }
                bySlot[slot]!.arguments.append(key)
                if step == 2 { bySlot[slot]!.arguments.append(argumentBytes(index + 1, of: frame)) }
                bySlot[slot]!.positions.append(position)
                position += 1
                index += step
            }
            var parts: [Part] = []
            for slot in order {
                guard let group = proxy.group(forSlot: slot) else { return nil }
                parts.append(Part(arguments: bySlot[slot]!.arguments, group: group, slot: slot))
            }
            let merge: Merge = switch name {
            case "mget": .values(positions: order.map { bySlot[$0]!.positions }, count: position)
            case "mset": .same
            default: .sum
            }
            return (parts, merge, name != "mget" && name != "exists")
        }
        let arguments = { (0..<frame.argumentCount).map { self.argumentBytes($0, of: frame) } }
        let everyMaster = { (arguments: [[UInt8]]) in self.proxy.groups.map { Part(arguments: arguments, group: $0, slot: -1) } }
        switch name {
        case "dbsize" where frame.argumentCount == 1:
            return (everyMaster(arguments()), .sum, false)
        case "randomkey" where frame.argumentCount == 1:
            let masters = everyMaster(arguments())
            return (masters + everyMaster([Array("DBSIZE".utf8)]), .random(count: masters.count), false)
        case "info":
            // Only when the reply counts keys: the other sections are the node's own.
            let all = arguments()
            let sections = all.dropFirst().map { String(decoding: $0, as: UTF8.self).lowercased() }
            guard sections.isEmpty || sections.contains(where: Self.keyspaceSections.contains) else { return nil }
            return (everyMaster(all), .info, false)
        case "keys" where frame.argumentCount == 2:
            return (everyMaster(arguments()), .concatenate, false)
        case "flushall", "flushdb":
            return (everyMaster(arguments()), .same, true)
        case "script", "function", "config", "client":
            let sub = frame.firstArgument.description
            switch (name, sub) {
            case ("script", "kill"), ("function", "kill"):
                // The busy script may run on any shard.
                let parts = everyMaster(arguments()).map { part in
                    var part = part
                    part.urgent = true
                    return part
                }
                return (parts, .killed, false)
            case ("config", "set"), ("config", "resetstat"), ("config", "rewrite"), ("client", "pause"), ("client", "unpause"):
                // One Redis's settings are the whole keyspace's: notify-keyspace-events,
                // maxmemory-policy … must hold on every shard (CONFIG GET asks the first).
                return (everyMaster(arguments()), .same, false)
            case ("script", "load"), ("script", "flush"), ("function", "load"), ("function", "flush"), ("function", "delete"):
                return (everyMaster(arguments()), .same, true)
            case ("script", "exists") where frame.argumentCount > 2:
                return (everyMaster(arguments()), .least, false)
            default:
                return nil
            }
        case "scan" where frame.argumentCount >= 2:
            var all = arguments()
            let count = proxy.groups.count
            guard let cursor = UInt64(String(decoding: all[1], as: UTF8.self)) else { return nil }
            let index = Int(cursor % UInt64(Self.scanShards))
            guard index < count else {
                return ([], .scan(index: -1, count: count), false)  // a cursor from another layout
            }
            all[1] = Array(String(cursor / UInt64(Self.scanShards)).utf8)
            return ([Part(arguments: all, group: proxy.groups[index], slot: -1)], .scan(index: index, count: count), false)
        default:
            return nil
        }
    }

    /// SCAN's cursor: the master's own cursor × this + the master's index.
    static let scanShards = 1024

    /// Sends the parts; the client's reply is merged when the last is in.
    func runParts(_ frame: RequestFrame, _ parts: [Part], _ merge: Merge, isWrite: Bool) {
        input.drop(frame.length, from: connection)
        let slot = enqueue(.master)
        // A WAIT: the session's client may hang up while it runs (see `connectionPeerFinishedSending`).
        if parts.contains(where: { $0.waitsOn != nil }) { slot.isBlocking = true }
        if isWrite {
            slot.isWrite = true
            writesInFlight += 1
            lastWriteMicroseconds = proxy.loop.nowMicroseconds
        }
        if case .scan(let index, _) = merge, index < 0 {
            return finish(slot, [], merge, error: "ERR invalid cursor")
        }
        guard !parts.isEmpty else { return finish(slot, [], merge, error: nil) }
        if case .scan(let index, let count) = merge, parts.count == 1 {
            return scan(from: index, of: count, parts[0], wanted: Self.scanCount(parts[0].arguments), found: [], into: slot)
        }
        var replies = [[UInt8]](repeating: [], count: parts.count)
        var remaining = parts.count
        for (index, part) in parts.enumerated() {
            sendPart(part, attempt: 0, since: slot.holdSince, isWrite: isWrite) { [weak self] bytes in
                guard let self, slot.session === self else { return }
                replies[index] = bytes
                remaining -= 1
                if remaining == 0 { self.finish(slot, replies, merge, error: nil) }
            }
        }
    }

    /// SCAN on master `index` of `count`. A master whose walk ends (cursor 0) before COUNT keys
    /// (10 unless given) were found in this call hands over to the next master in the same
    /// call, as one Redis holding few keys answers them all at once with cursor 0.
    private func scan(from index: Int, of count: Int, _ part: Part, wanted: Int, found: [RESPValue], into slot: Slot) {
        sendPart(part, attempt: 0, since: slot.holdSince, isWrite: false) { [weak self] bytes in
            guard let self, slot.session === self else { return }
            guard let (value, _) = try? RESPValue.decode(bytes), let reply = value.list, reply.count == 2,
                  let text = reply[0].text, let cursor = UInt64(text), let keys = reply[1].list else {
                // An error (or anything else) is the client's reply as it came.
                return self.finish(slot, [bytes], .scan(index: index, count: count), error: nil)
            }
            let all = found + keys
            if cursor == 0, index + 1 < count, index + 1 < self.proxy.groups.count, all.count < wanted {
                var next = part
                next.group = self.proxy.groups[index + 1]
                next.arguments[1] = Array("0".utf8)
                return self.scan(from: index + 1, of: count, next, wanted: wanted, found: all, into: slot)
            }
            // The client's cursor: the master's own × scanShards + the master's index; 0 at the
            // end of the last master's walk.
            var nextCursor: UInt64 = 0
            if cursor != 0 {
                let (scaled, overflow) = cursor.multipliedReportingOverflow(by: UInt64(Self.scanShards))
                guard !overflow else {
                    return self.finish(slot, [], .scan(index: index, count: count),
                                       error: "ERR ambassador: the node's SCAN cursor \(cursor) is too large to carry the shard")
                }
                nextCursor = scaled + UInt64(index)
            } else if index + 1 < count {
                nextCursor = UInt64(index + 1)
            }
            self.finish(slot, [RESPValue.array([.bulk(String(nextCursor)), .array(all)]).encoded], .scan(index: index, count: count), error: nil)
        }
    }

    /// SCAN's COUNT option (10 when absent or not a positive number).
    static func scanCount(_ arguments: [[UInt8]]) -> Int {
        var index = 2
        while index + 1 < arguments.count {
            if String(decoding: arguments[index], as: UTF8.self).lowercased() == "count",
               let count = Int(String(decoding: arguments[index + 1], as: UTF8.self)), count > 0 {
                return count
            }
            index += 2
        }
        return 10
    }

    /// One part on its shard's master, under the rules of a single request: a redirection
    /// is followed, a shard with no usable master (a failover) is waited for, and a read lost
    /// with its connection is sent again once a master is confirmed; each pause as a single
    /// request's (`ClusterRedirection.pause`), all within `failover_hold` from `since` (when
    /// the command was sent, or began to wait for a master), after which the part answers the
    /// error a single request would get. A write lost with its connection answers an error at
    /// once: it may have run, and is never sent twice; so does a WAIT, which has nothing to count
    /// on another connection.
    private func sendPart(_ part: Part, attempt: Int, since: Int, isWrite: Bool, _ done: @escaping ([UInt8]) -> Void) {
        let mayResend = !isWrite && part.waitsOn == nil
        // Not behind a busy script or a slow command (as any request's choice, `stall_threshold`).
        var target = part.group.master.connection(for: self, urgent: part.urgent, now: proxy.loop.nowMicroseconds)
        if let own = part.waitsOn, own.isUsable, own.backend === part.group.master { target = own }
        guard target.isUsable, part.group.masterConfirmed else {
            guard proxy.healthChecked else {
                return done(Array("-ERR ambassador: master \(part.group.master.address) is unavailable\r\n".utf8))
            }
            let waiting = ClusterRedirection(kind: .masterLost, text: "TRYAGAIN ambassador: no node confirmed as master of \(part.group.master.address)'s shard within failover_hold (\(proxy.config.failoverHold)); this part of the command was not sent")
            guard withinFailoverHold(since: since) else { return done(Array("-\(waiting.clientError)\r\n".utf8)) }
            return retryPart(part, after: waiting, attempt: attempt, since: since, isWrite: isWrite, done)
        }
        target.select(db)
        if part.waitsOn != nil {
            // Its Redis id first, so the WAIT can be ended if the client hangs up (see
            // `BackendConnection.unblockAbandonedWait`).
            target.identify()
        }
        if isWrite { noteShardWrite(target) }
        defer { if part.waitsOn != nil { bindToWait(on: target) } }
        target.probe(request: RESPValue.array(part.arguments.map { .bulkString($0) }).encoded,
                     waitOf: part.waitsOn == nil ? nil : self) { [weak self] bytes in
            guard let self else { return }
            let inTime = self.withinFailoverHold(since: since)
            if bytes.isEmpty {
                guard mayResend, self.proxy.healthChecked, inTime else {
                    return done(Array("-ERR ambassador: connection to master \(part.group.master.address) lost before it replied\r\n".utf8))
                }
                return self.retryPart(part, after: .connectionLost(to: part.group.master), attempt: attempt, since: since, isWrite: isWrite, done)
            }
            guard bytes.first == UInt8(ascii: "-"), let redirection = ClusterRedirection(bytes) else { return done(bytes) }
            // The first few -MOVED / -ASK are followed whatever the time, as a single request's
            // are; every other resend only within failover_hold.
            let quick = (redirection.kind == .moved || redirection.kind == .ask) && attempt < Self.redirectLimit
            guard quick || inTime else { return done(Array("-\(redirection.clientError)\r\n".utf8)) }
            var next = part
            switch redirection.kind {
            case .moved, .ask:
                if redirection.kind == .moved { _ = self.proxy.moved(slot: redirection.slot, to: redirection.address) }
                self.proxy.requestLayout()
                next.group = self.proxy.group(forSlot: redirection.slot) ?? part.group
                if redirection.kind == .ask, let node = self.proxy.group(at: redirection.address) { next.group = node }
            case .tryAgain, .clusterDown, .masterLost:
                break
            }
            self.retryPart(next, after: redirection, attempt: attempt, since: since, isWrite: isWrite, done)
        }
    }

    /// `part` again after `redirection`'s pause (an -ASK's ASKING goes right before it).
    private func retryPart(_ part: Part, after redirection: ClusterRedirection, attempt: Int, since: Int, isWrite: Bool,
                           _ done: @escaping ([UInt8]) -> Void) {
        let pause = redirection.pause(attempt: attempt, waited: proxy.loop.nowMicroseconds - since)
        proxy.after(pause) { [weak self] in
            guard let self else { return }
            if redirection.kind == .ask {
                // ASKING must come right before the request, on the same connection.
                let connection = self.proxy.backend(at: redirection.address)?.sharedConnection(for: self)
                if let connection, connection.isUsable { connection.inject(["ASKING"], label: "ASKING") }
            }
            self.sendPart(part, attempt: attempt + 1, since: since, isWrite: isWrite, done)
        }
    }

    /// The merged reply, in the client's protocol (the parts were sent on connections that
    /// speak it).
    private func finish(_ slot: Slot, _ replies: [[UInt8]], _ merge: Merge, error: String?) {
        if slot.isWrite { writeAnswered(slot) }
        slot.isWrite = false
        encoder.clear()
        encoder.protocolVersion = protocolVersion
        if let error {
            encoder.error(error)
            return fill(slot, with: encoder.bytes, isError: true)
        }
        if case .killed = merge {
            let ok = replies.first { $0.first == UInt8(ascii: "+") }
            let notBusy = Array("-NOTBUSY".utf8)
            let why = replies.first { $0.first == UInt8(ascii: "-") && !$0.starts(with: notBusy) }
            return fill(slot, with: ok ?? why ?? replies.first ?? [], isError: ok == nil)
        }
        if let failed = replies.first(where: { $0.first == UInt8(ascii: "-") || $0.first == UInt8(ascii: "!") }) {
            return fill(slot, with: failed, isError: true)
        }
        let values = replies.map { (try? RESPValue.decode($0))?.0 }
        var bytes: [UInt8]
        switch merge {
        case .same, .killed, .scan:
            bytes = replies.first ?? Array("+OK\r\n".utf8)
        case .sum:
            var total: Int64 = 0
            for value in values { if case .integer(let n)? = value { total += n } }
            encoder.integer(total)
            bytes = encoder.bytes
        case .values(let positions, let count):
            var merged = [RESPValue](repeating: .bulkString(nil), count: count)
            for (part, value) in zip(positions, values) {
                guard let items = value?.list else { continue }
                for (position, item) in zip(part, items) { merged[position] = item }
            }
            bytes = RESPValue.array(merged).encoded
        case .concatenate:
            bytes = RESPValue.array(values.flatMap { $0?.list ?? [] }).encoded
        case .least:
            var merged: [Int64]?
            for value in values {
                let counts: [Int64]
                if case .integer(let n)? = value {
                    counts = [n]
                } else {
                    counts = (value?.list ?? []).map { item -> Int64 in if case .integer(let n) = item { return n } else { return 0 } }
                }
                merged = merged.map { zip($0, counts).map { min($0, $1) } } ?? counts
            }
            if case .integer? = values.first {
                encoder.integer(merged?.first ?? 0)
                bytes = encoder.bytes
            } else {
                bytes = RESPValue.array((merged ?? []).map { .integer($0) }).encoded
            }
        case .random(let count):
            var weights: [(index: Int, keys: Int64)] = []
            for index in 0..<min(count, replies.count) where values[index].map({ $0 != .bulkString(nil) && $0 != .null }) ?? false {
                var keys: Int64 = 1
                if index + count < values.count, case .integer(let n)? = values[index + count] { keys = max(n, 1) }
                weights.append((index, keys))
            }
            var pick = Int64.random(in: 0..<max(weights.reduce(0) { $0 + $1.keys }, 1))
            var chosen = weights.first?.index
            for (index, keys) in weights {
                if pick < keys { chosen = index; break }
                pick -= keys
            }
            bytes = chosen.map { replies[$0] } ?? replies.first ?? Array("$-1\r\n".utf8)
        case .info:
            bytes = Self.mergedInfo(values.map { $0 ?? .null }) ?? replies.first ?? []
        }
        fill(slot, with: bytes, isError: false)
    }

    /// INFO's text from every master, as one Redis's: the first master's, with each `dbN:` line
    /// of its Keyspace section summed over all (keys, expires…; avg_ttl weighted by expires).
    /// nil when a reply is not INFO text.
    static func mergedInfo(_ values: [RESPValue]) -> [UInt8]? {
        guard let first = values.first else { return nil }
        var texts: [String] = []
        for value in values {
            guard let text = value.text else { return nil }
            texts.append(text)
        }
        var totals: [String: [(String, Int64)]] = [:]  // db → fields in order
        var order: [String] = []
        var ttlWeight: [String: (sum: Double, weight: Int64)] = [:]
        for text in texts {
            for line in keyspaceLines(text) {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let db = String(line[..<colon])
                var fields: [(String, Int64)] = []
                for pair in line[line.index(after: colon)...].split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2, let number = Int64(parts[1]) else { continue }
                    fields.append((String(parts[0]), number))
                }
                let expires = fields.first { $0.0 == "expires" }?.1 ?? 0
                if let ttl = fields.first(where: { $0.0 == "avg_ttl" })?.1 {
                    let old = ttlWeight[db] ?? (0, 0)
                    ttlWeight[db] = (old.sum + Double(ttl) * Double(expires), old.weight + expires)
                }
                if var known = totals[db] {
                    for (name, number) in fields {
                        if let i = known.firstIndex(where: { $0.0 == name }) { known[i].1 += number } else { known.append((name, number)) }
                    }
                    totals[db] = known
                } else {
                    totals[db] = fields
                    order.append(db)
                }
            }
        }
        // dbN in numeric order, as Redis lists them.
        order.sort { (Int($0.dropFirst(2)) ?? 0) < (Int($1.dropFirst(2)) ?? 0) }
        let merged = order.map { db -> String in
            let fields = totals[db]!.map { name, number -> String in
                if name == "avg_ttl", let w = ttlWeight[db] {
                    return "avg_ttl=\(w.weight > 0 ? Int64((w.sum / Double(w.weight)).rounded()) : 0)"
                }
                return "\(name)=\(number)"
            }
            return "\(db):" + fields.joined(separator: ",")
        }
        // The first text with its Keyspace lines replaced.
        var lines = texts[0].split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard let header = lines.firstIndex(of: "# Keyspace") else { return nil }
        var end = header + 1
        while end < lines.count && lines[end].hasPrefix("db") { end += 1 }
        lines.replaceSubrange((header + 1)..<end, with: merged)
        let text = Array(lines.joined(separator: "\r\n").utf8)
        if case .verbatim(let raw) = first { return RESPValue.verbatim(Array(raw.prefix(4)) + text).encoded }
        return RESPValue.bulkString(text).encoded
    }

    /// The `dbN:…` lines of INFO's Keyspace section.
    private static func keyspaceLines(_ text: String) -> [Substring] {
        let lines = text.split(separator: "\r\n")
        guard let header = lines.firstIndex(of: "# Keyspace") else { return [] }
        return Array(lines[(header + 1)...].prefix { $0.hasPrefix("db") })
    }
}
