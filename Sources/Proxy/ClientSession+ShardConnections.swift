import EventLoop
import RESP
import Routing

/// discovery: cluster — what one node says only of its own keys, for a session relaying on a
/// dedicated connection of the first shard:
/// - CLIENT TRACKING (RESP3 pushes). Redis remembers a key for the connection that read it and
///   invalidates it there, so a read of a key on another shard must run on a tracking
///   connection of that shard, or the app's cache would never hear that the key changed.
/// - Keyspace notifications (`__keyspace@…`, `__keyevent@…`) and `__redis__:invalidate`: each
///   node publishes them to its own subscribers only (unlike PUBLISH, which the cluster carries
///   to every node).
/// - MONITOR: each node shows the commands it runs.
///
/// So the session holds a dedicated connection to each other master (`shardConnections`),
/// opened when tracking turns on or such a subscription is made, and told the same CLIENT
/// TRACKING and those subscriptions. A tracking session's commands for keys there go the way a
/// subscriber's do (that node's -MOVED marks their place in the relayed stream, see
/// `takeRelayedRedirection`) but run on that connection. From these connections the client gets
/// the invalidations, the node-local messages and those commands' replies, as they come; the
/// subscription confirmations (and any message the relayed connection also gets) are dropped:
/// the relayed connection holds every subscription and answers for it.
///
/// Order: a push read from a shard's connection after a reply there reaches the client after
/// that reply (both are written as they are read, and the relayed stream waits meanwhile), so
/// an invalidation never overtakes the read it invalidates.
///
/// Tracking with REDIRECT (RESP2's way): each shard's connection redirects to the target
/// session's connection to that node (subscribed to `__redis__:invalidate` there when the target
/// is, as a node-local channel), so every node's invalidations reach the target client.
extension ClientSession {
    /// Tracking as RESP3 pushes on the session's own connections, relayed (see above).
    var tracksAcrossShards: Bool {
        guard proxy.clustered && tracking && pin.isRelaying else { return false }
        // With REDIRECT, once every shard's target connection is known; without, RESP3's pushes.
        return trackingRedirect >= 0 ? !redirectRequests.isEmpty : protocolVersion == 3
    }

    /// A command relayed on `target` (before its bytes go): one for keys of another shard is
    /// remembered (a subscriber's, or a tracking session's, also once tracking is off or was
    /// refused: the session relays until RESET); CLIENT TRACKING and subscriptions
    /// to node-local channels are told to every shard's connection; CLIENT CACHING is kept for
    /// the command after it.
    func noteClusterRelayed(_ frame: RequestFrame, verb: Verb, on target: BackendConnection) {
        if pin.state == .pubsub || pin.state == .clientState || tracksAcrossShards { noteForeignRelayedCommand(frame, on: target) }
        switch verb {
        case .clientTracking:
            cachingRequest = nil
            return mirrorTracking(frame, besides: target)
        case .subscription(let set, let subscribe) where set != .shardChannels:
            mirrorSubscription(frame, patterns: set == .patterns, subscribe: subscribe, besides: target)
        default:
            break
        }
        if frame.name == ShardWords.client && frame.firstArgument == ShardWords.caching && tracksAcrossShards {
            var bytes: [UInt8] = []
            connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
            cachingRequest = bytes
        } else {
            cachingRequest = nil
        }
    }

    /// CLIENT TRACKING ON|OFF … (not REDIRECT) sent on the relayed connection: the same on each
    /// other shard's connection, opened now when tracking turns on (BCAST needs every shard from
    /// the start; a read needs its shard's before it runs).
    private func mirrorTracking(_ frame: RequestFrame, besides relay: BackendConnection) {
        guard tracksAcrossShards || trackingRequest != nil || !redirectRequests.isEmpty else { return }
        var bytes: [UInt8] = []
        connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
        let existing = shardConnections
        trackingRequest = bytes
        redirectRequests = [:]
        gateShards(1) {
            for group in proxy.groups where group !== relay.backend.group {
                if let shard = existing[ObjectIdentifier(group)] {
                    trackMirrored(bytes, on: shard, holding: relay)
                } else if tracksAcrossShards {
                    _ = shardConnection(for: group)
                }
            }
        }
    }

    /// CLIENT TRACKING … REDIRECT (rewritten for the relayed connection): on each other shard's
    /// connection, naming the target's connection to that node (`redirectRequests`).
    func mirrorRedirectTracking(besides relay: BackendConnection) {
        trackingRequest = nil
        let existing = shardConnections
        gateShards(1) {
            for group in proxy.groups where group !== relay.backend.group {
                let id = ObjectIdentifier(group)
                guard let request = redirectRequests[id] else { continue }
                if let shard = existing[id] {
                    trackMirrored(request, on: shard, holding: relay)
                } else {
                    _ = shardConnection(for: group)
                }
            }
        }
    }

    /// This session is another's REDIRECT target: its connection to `group`'s master, where
    /// that node sends the invalidations (opened, with its subscriptions, if it has none).
    func redirectTarget(on group: ReplicationGroup) -> BackendConnection? {
        pinned.map { $0.backend.group === group } == true ? pinned : shardConnection(for: group)
    }

    /// (P)SUBSCRIBE / (P)UNSUBSCRIBE sent on the relayed connection: the node-local channels
    /// (and the patterns that may match one) on each other shard's connection too.
    private func mirrorSubscription(_ frame: RequestFrame, patterns: Bool, subscribe: Bool, besides relay: BackendConnection) {
        let names = (1..<max(frame.argumentCount, 1)).map { argumentBytes($0, of: frame) }
        let command = argumentBytes(0, of: frame)
        if subscribe {
            let local = names.filter { patterns ? Self.mayMatchNodeLocal($0) : Self.isNodeLocal($0) }
            guard !local.isEmpty else { return }
            let existing = shardConnections
            if patterns { mirroredPatterns.formUnion(local) } else { mirroredChannels.formUnion(local) }
            let request = RESPValue.array(([command] + local).map { .bulkString($0) }).encoded
            gateShards(names.count) {
                for group in proxy.groups where group !== relay.backend.group {
                    if let shard = existing[ObjectIdentifier(group)] {
                        subscribedShards.insert(ObjectIdentifier(shard))
                        writeMirrored(request, confirmations: local.count, on: shard, holding: relay)
                    } else {
                        _ = shardConnection(for: group)  // subscribes to them all
                    }
                }
            }
        } else {
            let held = patterns ? mirroredPatterns : mirroredChannels
            let gone = names.isEmpty ? Array(held) : names.filter { held.contains($0) }
            guard !gone.isEmpty else { return }
            if patterns { mirroredPatterns.subtract(gone) } else { mirroredChannels.subtract(gone) }
            let request = RESPValue.array(([command] + gone).map { .bulkString($0) }).encoded
            for shard in shardConnections.values { writeMirrored(request, confirmations: gone.count, on: shard, holding: relay) }
        }
    }

    /// A (un)subscription (or MONITOR) on a shard's connection: the relayed stream waits for its
    /// confirmations (one per name; MONITOR's +OK), so the client's, which follows in that
    /// stream, means every shard has it: a message published after it reaches the client (and
    /// none after an unsubscription's), a command run after it is shown.
    private func writeMirrored(_ request: [UInt8], confirmations: Int, on shard: BackendConnection, holding relay: BackendConnection?) {
        shard.rawWrite(request)
        if let relay { owe(confirmations, on: shard, holding: relay) }
    }

    /// CLIENT TRACKING on a shard's connection: the relayed stream waits for its reply, so the
    /// client's OK means every shard tracks (BCAST: a key changed next on any shard is
    /// invalidated).
    private func trackMirrored(_ request: [UInt8], on shard: BackendConnection, holding relay: BackendConnection?) {
        guard let relay else { return shard.inject(request: request, label: "CLIENT TRACKING") }
        owe(1, on: shard, holding: relay)
        shard.probe(request: request) { [weak self, weak shard] reply in
            guard let self, let shard else { return }
            let refused = reply.first == UInt8(ascii: "-")
            if refused {
                proxy.logger.warning("CLIENT TRACKING on \(shard.backend.address) failed: \(String(decoding: reply, as: UTF8.self).trimmed)")
            }
            shardConfirmed(by: shard, refused: refused)
        }
    }

    private func owe(_ replies: Int, on shard: BackendConnection, holding relay: BackendConnection) {
        owedByShard[ObjectIdentifier(shard), default: []].append(replies)
        heldForShardReplies = relay
        relay.holdRelay()
    }

    /// A reply owed by a shard's connection came (see `writeMirrored`, `trackMirrored`); an
    /// error settles all its command owed (Redis refuses a command with one error, an ACL's
    /// NOPERM say: the relayed connection's reply tells the client). The last one that
    /// connection owes: it waits while the client's own confirmation has not gone out
    /// (`relayGate`). The last one any owes: the relayed stream goes on.
    private func shardConfirmed(by shard: BackendConnection, refused: Bool = false) {
        let id = ObjectIdentifier(shard)
        guard var owed = owedByShard[id], let first = owed.first else { return }
        let settled = refused ? first : 1
        if first == settled { owed.removeFirst() } else { owed[0] = first - settled }
        owedByShard[id] = owed.isEmpty ? nil : owed
        if owed.isEmpty && relayGate > 0 {
            shard.holdRelay()
            gatedShards.append(shard)
        }
        releaseRelayWhenSettled()
    }

    /// A connection that owed replies is gone (a replica's MONITOR that could not connect):
    /// what it owed is settled, its node's part lost with it.
    private func settleOwed(by lost: BackendConnection) {
        gatedShards.removeAll { $0 === lost }
        guard owedByShard.removeValue(forKey: ObjectIdentifier(lost)) != nil else { return }
        releaseRelayWhenSettled()
    }

    /// Nothing owed any more: the relayed stream goes on (unless a command run on a shard's
    /// connection still holds it, see `runOnShardConnection`).
    private func releaseRelayWhenSettled() {
        guard owedByShard.isEmpty, let relay = heldForShardReplies else { return }
        heldForShardReplies = nil
        if heldForShard !== relay { relay.releaseRelay() }
    }

    /// The relayed connection owes the client `count` confirmations of a mirrored command, if
    /// it waits for shard replies that `change` made owed.
    private func gateShards(_ count: Int, _ change: () -> Void) {
        func owed() -> Int { owedByShard.values.reduce(0) { $0 + $1.count } }  // commands owed for
        let before = owed()
        change()
        if owed() > before { relayGate += count }
    }

    /// A frame the relayed connection delivers while `relayGate` is open: a confirmation (a
    /// (p)subscribe one, or +OK) counts down, an error ends the wait (the command failed); at
    /// zero the shard connections go on. False: neither.
    func passedRelayGate(_ frame: ReplyFrame, from backend: Connection) -> Bool {
        var counts = frame.isError
        if !counts && frame.length == 5 && frame.type == UInt8(ascii: "+") { counts = true }
        if !counts && (frame.type == UInt8(ascii: ">") || frame.type == UInt8(ascii: "*")) {
            // Its head names its kind (a long channel name makes a long frame, read no further).
            counts = Self.isConfirmation(head: BackendConnection.copy(backend, min(frame.length, 32)))
        }
        guard counts else { return false }
        passRelayed(frame, from: backend)
        relayGate = frame.isError ? 0 : relayGate - 1
        if relayGate == 0 {
            let gated = gatedShards
            gatedShards = []
            for shard in gated { shard.releaseRelay() }
        }
        return true
    }

    /// A channel only the node that owns the key publishes on.
    static func isNodeLocal(_ channel: [UInt8]) -> Bool {
        channel.starts(with: ShardWords.keyspace) || channel.starts(with: ShardWords.keyevent) || channel == ShardWords.invalidate
    }

    /// A pattern that may match a node-local channel (one that begins with a wildcard or `_`).
    static func mayMatchNodeLocal(_ pattern: [UInt8]) -> Bool {
        guard let first = pattern.first else { return false }
        return [UInt8(ascii: "_"), UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["), UInt8(ascii: "\\")].contains(first)
    }

    /// The session's connection to `group`'s master, opened if it has none (and told CLIENT
    /// TRACKING and the node-local subscriptions); nil when the master cannot be reached.
    func shardConnection(for group: ReplicationGroup) -> BackendConnection? {
        let id = ObjectIdentifier(group)
        if let shard = shardConnections[id] {
            if shard.isUsable { return shard }
            shardConnections[id] = nil
            shard.close()
        }
        let shard = group.master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
        guard shard.isUsable else { return nil }
        shard.owner = self
        shard.relay = true
        shard.select(db)
        if tracking, let request = redirectRequests[id] ?? trackingRequest { trackMirrored(request, on: shard, holding: pinned) }
        for (names, command) in [(mirroredChannels, "SUBSCRIBE"), (mirroredPatterns, "PSUBSCRIBE")] where !names.isEmpty {
            subscribedShards.insert(ObjectIdentifier(shard))
            writeMirrored(RESPValue.array([.bulk(command)] + names.map { .bulkString($0) }).encoded,
                          confirmations: names.count, on: shard, holding: pinned)
        }
        shardConnections[id] = shard
        return shard
    }

    /// Runs a relayed command that `redirection` sent elsewhere on the session's connection to
    /// the shard it names, the relayed stream waiting for its reply. False: that shard is the
    /// relayed one's (the caller runs it as for a subscriber).
    func runOnShardConnection(_ entry: ForeignCommand,
                              _ redirection: ClusterRedirection, holding relay: BackendConnection) -> Bool {
        let named = redirection.kind == .ask ? proxy.backend(at: redirection.address)?.group : nil
        guard let group = named ?? proxy.group(forSlot: redirection.slot), group !== relay.backend.group else { return false }
        relay.holdRelay()
        guard let shard = shardConnection(for: group) else {
            foreignCommandFailed("ERR ambassador: master \(group.master.address) is unavailable", releasing: relay)
            return true
        }
        if redirection.kind == .ask { shard.inject(["ASKING"], label: "ASKING") }
        if let caching = entry.caching { shard.inject(request: caching, label: "CLIENT CACHING") }
        heldForShard = relay
        shard.rawWrite(entry.bytes)
        return true
    }

    /// A frame from a shard's connection: an invalidation or a node-local message goes to the
    /// client at once, other subscription traffic is dropped (see above), and anything else is
    /// the reply to the command run there, after which the relayed stream goes on.
    func relayedFromShard(_ frame: ReplyFrame, from backend: Connection, on shard: BackendConnection) {
        if frame.isError || frame.length == 5, heldForShard == nil, owedByShard[ObjectIdentifier(shard)] != nil {
            // MONITOR's +OK, or a mirrored (un)subscription or MONITOR refused there (the
            // relayed connection's own reply answers the client). Not while a command of the
            // client's runs on a shard's connection: the reply there is its own (see the end).
            backend.discardInput(frame.length)
            return shardConfirmed(by: shard, refused: frame.isError)
        }
        if replicaMonitors.contains(where: { $0 === shard }) {
            if frame.length == 5 || isOwnMonitorLine(frame, from: backend) || !isReadMonitorLine(frame, from: backend) {
                return backend.discardInput(frame.length)
            }
            return passRelayed(frame, from: backend)
        }
        guard shardConnections.values.contains(where: { $0 === shard }) else {
            return backend.discardInput(frame.length)  // a connection this session let go of
        }
        if monitoringShards {
            // MONITOR's +OK (the relayed connection gives the client its own once every node's
            // is in), and the lines of the ambassador's own control connections, are dropped;
            // the other lines go as they come.
            if frame.length == 5 || isOwnMonitorLine(frame, from: backend) { return backend.discardInput(frame.length) }
            return passRelayed(frame, from: backend)
        }
        // A push; or, in RESP2 on a connection that subscribed, an array that is a message or a
        // confirmation (a RESP2 subscriber runs no command there).
        var subscription = frame.type == UInt8(ascii: ">")
        var bytes: [UInt8] = []
        if !subscription && protocolVersion == 2 && frame.type == UInt8(ascii: "*") && subscribedShards.contains(ObjectIdentifier(shard)) {
            bytes = BackendConnection.copy(backend, frame.length)
            subscription = Self.isPubSubFrame(bytes)
        }
        if subscription {
            let value = bytes.isEmpty ? BackendConnection.copy(backend, frame.length) : bytes
            switch Self.pubSubKind(value) {
            case .forClient:
                return passRelayed(frame, from: backend)
            case .confirmation:
                backend.discardInput(frame.length)
                return shardConfirmed(by: shard)
            case .other:
                return backend.discardInput(frame.length)
            }
        }
        passRelayed(frame, from: backend)
        if let relay = heldForShard {
            heldForShard = nil
            if heldForShardReplies !== relay { relay.releaseRelay() }
        }
    }

    /// MONITOR began on the relayed connection (a master's): every node that runs the session's
    /// commands shows them, so MONITOR runs on a connection to each other master (a cluster) and
    /// to every replica too, the lines merged as they come. A replica's lines are kept for read
    /// commands only: it also shows what replication brings (the master's writes, its PINGs).
    func monitorEverywhere(besides relay: BackendConnection) {
        guard !monitoringShards && replicaMonitors.isEmpty else { return }
        let request = RESPValue.array([.bulk("MONITOR")]).encoded
        gateShards(1) {
            if proxy.clustered {
                monitoringShards = true
                for group in proxy.groups where group !== relay.backend.group {
                    if let shard = shardConnection(for: group) { writeMirrored(request, confirmations: 1, on: shard, holding: relay) }
                }
            }
            for group in proxy.clustered ? proxy.groups : [self.group] {
                for replica in group.replicas where replica !== relay.backend {
                    let monitor = replica.acquirePinned(protocolVersion: 2, loginIndex: loginIndex)
                    guard monitor.isUsable else { continue }
                    monitor.owner = self
                    monitor.relay = true
                    writeMirrored(request, confirmations: 1, on: monitor, holding: relay)
                    replicaMonitors.append(monitor)
                }
            }
        }
    }

    /// A MONITOR line (`+<time> [<db> <address>] "command" …`) about a command one of the
    /// ambassador's own control connections sent (see `OwnConnections`).
    func isOwnMonitorLine(_ frame: ReplyFrame, from backend: Connection) -> Bool {
        guard frame.type == UInt8(ascii: "+") else { return false }
        var head: [UInt8] = []
        backend.copyInput(from: 0, count: min(frame.length, 160), into: &head)
        guard let open = head.firstIndex(of: UInt8(ascii: "[")),
              let space = head[open...].firstIndex(of: UInt8(ascii: " ")),
              let close = head[space...].firstIndex(of: UInt8(ascii: "]")) else { return false }
        let address = String(decoding: head[(space + 1)..<close], as: UTF8.self)
        if OwnConnections.contains(address) { return true }
        // A command the ambassador sent on a connection of the app's (see `OwnCommands`).
        if frame.length <= head.count, close + 2 < frame.length - 2, !OwnCommands.isEmpty,
           OwnCommands.contains(address, head[(close + 2)..<(frame.length - 2)], now: proxy.loop.nowMicroseconds) {
            return true
        }
        // A relaying session's marker (see `answerInRelayedStream`): the ambassador's, not the app's.
        return head[close...].starts(with: Self.markerLinePrefix)
    }

    static let markerLinePrefix = Array("] \"ECHO\" \"\(markerPrefix)".utf8)

    /// A replica's MONITOR line about a read command (what the ambassador sends replicas), not
    /// one replication brought.
    func isReadMonitorLine(_ frame: ReplyFrame, from backend: Connection) -> Bool {
        var head: [UInt8] = []
        backend.copyInput(from: 0, count: min(frame.length, 200), into: &head)
        guard let close = head.firstIndex(of: UInt8(ascii: "]")),
              let open = head[close...].firstIndex(of: UInt8(ascii: "\"")),
              let end = head[(open + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return false }
        let name = String(decoding: head[(open + 1)..<end], as: UTF8.self).lowercased()
        return proxy.table.info(name)?.flags.contains(.readonly) ?? false
    }

    /// A RESP2 array that is pub/sub traffic: a message or a (un)subscribe confirmation.
    static func isPubSubFrame(_ bytes: [UInt8]) -> Bool {
        guard let (value, _) = try? RESPValue.decode(bytes), case .array(let items?) = value,
              let kind = items.first?.text?.lowercased() else { return false }
        return ["message", "pmessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "pong"].contains(kind)
    }

    /// Whether a push or array whose first bytes are `head` is a (un)subscribe confirmation:
    /// `*3\r\n$9\r\nsubscribe\r\n…` (RESP3: `>3`).
    static func isConfirmation(head: [UInt8]) -> Bool {
        guard let firstEnd = head.firstIndex(of: UInt8(ascii: "\n")), firstEnd + 1 < head.count,
              head[firstEnd + 1] == UInt8(ascii: "$"),
              let lengthEnd = head[(firstEnd + 1)...].firstIndex(of: UInt8(ascii: "\r")),
              let length = Int(String(decoding: head[(firstEnd + 2)..<lengthEnd], as: UTF8.self)),
              lengthEnd + 2 + length <= head.count else { return false }
        let word = String(decoding: head[(lengthEnd + 2)..<(lengthEnd + 2 + length)], as: UTF8.self).lowercased()
        return confirmationKinds.contains(word)
    }

    static let confirmationKinds: Set<String> = ["subscribe", "psubscribe", "unsubscribe", "punsubscribe"]

    enum ShardPubSub { case forClient, confirmation, other }

    /// What a push (or a RESP2 subscriber's array) from a shard's connection is: for the client
    /// (an invalidation, or a message on a node-local channel), a confirmation of a mirrored
    /// (un)subscription, or other traffic (dropped).
    static func pubSubKind(_ bytes: [UInt8]) -> ShardPubSub {
        guard let (value, _) = try? RESPValue.decode(bytes) else { return .other }
        let items: [RESPValue]
        switch value {
        case .push(let list), .array(let list?): items = list
        default: return .other
        }
        guard let kind = items.first?.text?.lowercased() else { return .other }
        func channel(_ index: Int) -> [UInt8]? {
            guard index < items.count, case .bulkString(let bytes?) = items[index] else { return nil }
            return bytes
        }
        switch kind {
        case "invalidate": return .forClient
        case "message": return channel(1).map(isNodeLocal) ?? false ? .forClient : .other
        case "pmessage": return channel(2).map(isNodeLocal) ?? false ? .forClient : .other
        default: return confirmationKinds.contains(kind) ? .confirmation : .other
        }
    }

    /// A shard connection was lost: invalidations or notifications from its shard may be lost
    /// with it, so the client is closed, as a direct Redis's restart would close it (an app's
    /// cache goes with the connection). False: not one of them.
    func shardConnectionLost(_ lost: BackendConnection) -> Bool {
        if let index = replicaMonitors.firstIndex(where: { $0 === lost }) {
            replicaMonitors.remove(at: index)  // a replica gone: the master's lines go on
            settleOwed(by: lost)
            return true
        }
        guard let entry = shardConnections.first(where: { $0.value === lost }) else { return false }
        shardConnections[entry.key] = nil
        proxy.logger.warning("client \(id): connection to \(lost.backend.address) for its tracking or notifications lost; closing the client")
        connection.close()
        return true
    }

    /// Closes the session's shard connections (the session ended, or RESET).
    func dropShardConnections() {
        let shards = shardConnections.values
        shardConnections = [:]
        monitoringShards = false
        let monitors = replicaMonitors
        replicaMonitors = []
        for monitor in monitors { monitor.close() }
        mirroredChannels = []
        mirroredPatterns = []
        trackingRequest = nil
        redirectRequests = [:]
        subscribedShards = []
        cachingRequest = nil
        heldForShard = nil
        heldForShardReplies = nil
        owedByShard = [:]
        relayGate = 0
        gatedShards = []
        for shard in shards { shard.close() }
    }
}

/// The words a relaying session's commands and messages are matched against, packed once.
private enum ShardWords {
    static let client = ShortBytes("client")
    static let caching = ShortBytes("caching")
    static let keyspace = Array("__keyspace@".utf8)
    static let keyevent = Array("__keyevent@".utf8)
    static let invalidate = Array("__redis__:invalidate".utf8)
}
