import Config
import EventLoop
import RESP
import Routing

/// discovery: cluster — a session's commands routed by hash slot: the shard of the command's
/// keys (all in one slot, as a cluster node demands), the first shard for keyless commands;
/// and the cluster's redirections (-MOVED, -ASK, -TRYAGAIN) followed for the client, which
/// sees one Redis.
extension ClientSession {
    /// -MOVED / -ASK followed at once per request; further ones after a pause (see `redirect`).
    static let redirectLimit = 5

    /// A new command was read: whether its reply is silenced (CLIENT REPLY), decided once
    /// (a held command keeps it: nothing else is read while it waits).
    func beginCommand() {
        switch replyMode {
        case .on: silentCommand = false
        case .off: silentCommand = true
        case .skip:
            silentCommand = true
            replyMode = .on
        }
    }

    /// CLIENT REPLY ON|OFF|SKIP, kept by the session (see `replyMode`). True when answered.
    private func clientReply(_ frame: RequestFrame) -> Bool {
        guard frame.name == Words.clientName, frame.firstArgument == Words.replyName, frame.argumentCount == 3 else { return false }
        let mode = SessionArguments(session: self, frame: frame).shortArgument(2)
        input.drop(frame.length, from: connection)
        proxy.stats.answered(.local, .ok, microseconds: 0)
        if mode == Words.onName {
            replyMode = .on
            silentCommand = false
            encoder.clear()
            encoder.simpleString("OK")
            answer(encoder.bytes)
        } else if mode == Words.offName {
            replyMode = .off
        } else if mode == Words.skipName {
            if replyMode != .off { replyMode = .skip }
        } else {
            answerError("ERR syntax error")
        }
        return true
    }


    func dispatchClustered(_ frame: RequestFrame, _ command: Command) {
        // The common case first: one key, argument 1, hashed by the parser; a plain read or
        // write of a shard that has a master. No reference is taken that the send does not need.
        if command.keyIsFirstArgument, frame.firstArgumentSlot >= 0, !deferredMulti, proxy.hasLayout, waitingRedirects.isEmpty,
           let index = proxy.slotMap.shard(of: Int(frame.firstArgumentSlot)) {
            switch command.kind {
            case .read:
                return forwardRead(frame, verb: command.verb, proxy.groups[index])
            case .write, .unknown:
                let target = proxy.groups[index]
                guard target.masterConfirmed else { return holdForMaster(frame, target) }
                return forward(frame, to: target.master, write: true)
            default:
                break
            }
        }
        dispatchClusteredInGeneral(frame, command)
    }

    /// Everything but the common case: keys elsewhere than argument 1, keyless commands,
    /// transactions, fan-outs and the cluster's own commands. (Apart, so the common case does
    /// not pay this function's frame.)
    @inline(never)
    func dispatchClusteredInGeneral(_ frame: RequestFrame, _ command: Command) {
        if !waitingRedirects.isEmpty {
            // A redirected request waits to be sent again: nothing overtakes it.
            flushPending()
            hold = .barrier(frame)
            return connection.pauseReading()
        }
        let keys = proxy.table.keys(of: command)
        var target = proxy.primary!
        var crossSlot = false
        var keyless = true
        if frame.name == Words.clusterName, frame.argumentCount >= 3,
           frame.firstArgument == Words.countKeysInSlot || frame.firstArgument == Words.getKeysInSlot {
            // About one slot: its owner answers.
            if let slot = Int(String(decoding: argumentBytes(2, of: frame), as: UTF8.self)), slot >= 0, slot < HashSlot.count,
               let owner = proxy.group(forSlot: slot) {
                target = owner
            }
        } else if keys.hasKeys {
            keyless = false
            switch keys.slot(SessionArguments(session: self, frame: frame)) {
            case .none:
                break
            case .crossSlot:
                crossSlot = true
            case .slot(let slot):
                guard let owner = proxy.group(forSlot: slot) else {
                    input.drop(frame.length, from: connection)
                    return unavailable(.master, "CLUSTERDOWN Hash slot not served")
                }
                target = owner
            }
        }
        if command.verb == .wait, keyless, !deferredMulti {
            let written = shardWaitConnections()
            if written.count > 1 {
                // Writes to several shards: WAIT / WAITAOF run on each, where the session's
                // last write there went, after every earlier reply (as any WAIT), and the
                // client gets the least count (see `Merge.least`).
                if !replies.isEmpty {
                    flushPending()
                    hold = .barrier(frame)
                    return connection.pauseReading()
                }
                let arguments = (0..<frame.argumentCount).map { argumentBytes($0, of: frame) }
                let parts = written.map { Part(arguments: arguments, group: $0.backend.group, slot: -1, waitsOn: $0) }
                return runParts(frame, parts, .least, isWrite: false)
            }
            if let written = lastWriteConnection?.backend.group, proxy.groups.contains(where: { $0 === written }) {
                // WAIT / WAITAOF count the replicas of the node the session's writes went to
                // (one node cannot speak for another's replicas).
                target = written
            }
        }
        if deferredMulti { return queueInDeferredTransaction(frame, command, target, keyless: keyless) }
        if command.verb == .multi && frame.argumentCount == 1 {
            // The transaction's shard is that of its first keyed command: MULTI waits for it.
            input.drop(frame.length, from: connection)
            proxy.stats.answered(.local, .ok, microseconds: 0)
            deferredMulti = true
            encoder.clear()
            encoder.simpleString("OK")
            return answer(encoder.bytes)
        }
        if crossSlot || keyless, let (parts, merge, isWrite) = clusterParts(frame, crossSlot: crossSlot) {
            // Keys across slots (MGET, MSET, DEL …) or a question for every master (DBSIZE,
            // SCAN …): run on each shard and answered as one. After the replies owed, as a
            // command that spans connections must.
            if !replies.isEmpty {
                flushPending()
                hold = .barrier(frame)
                return connection.pauseReading()
            }
            return runParts(frame, parts, merge, isWrite: isWrite)
        }
        if crossSlot {
            input.drop(frame.length, from: connection)
            proxy.stats.answered(.local, .error, microseconds: 0)
            return answerError(Self.crossSlotError)
        }
        if answeredAsOneNode(frame) || clientReply(frame) { return }
        perform(CommandRouter.route(command, ShardContext(session: self, group: target)), frame, command, in: target)
    }

    static let crossSlotError = "CROSSSLOT Keys in request don't hash to the same slot"

    /// A relayed command for keys of another shard, kept until the relayed node's -MOVED for it
    /// comes back (see `takeRelayedRedirection`).
    struct ForeignCommand {
        var slot: Int
        var name: ShortBytes
        var firstArgument: ShortBytes
        var bytes: [UInt8]
        /// CLIENT CACHING sent just before it (it applies to this command, wherever it runs).
        var caching: [UInt8]?
        /// Sent inside MULTI: queued there (and refused), not run elsewhere.
        var queued: Bool
    }

    /// The first command after MULTI: the transaction starts on `group`'s master (a dedicated
    /// connection, MULTI sent ahead of the command), or, for EXEC, DISCARD and MULTI, ends or
    /// errs here, as Redis answers an empty transaction.
    private func queueInDeferredTransaction(_ frame: RequestFrame, _ command: Command, _ group: ReplicationGroup, keyless: Bool) {
        switch command.verb {
        case .exec where frame.argumentCount == 1, .discard where frame.argumentCount == 1, .multi where frame.argumentCount == 1:
            // (With other arguments Redis refuses them and flags the transaction: it begins
            // below, and the refusal is Redis's.)
            input.drop(frame.length, from: connection)
            proxy.stats.answered(.local, command.verb == .multi ? .error : .ok, microseconds: 0)
            encoder.clear()
            encoder.protocolVersion = protocolVersion
            switch command.verb {
            case .multi:
                encoder.error("ERR MULTI calls can not be nested")
            case .exec:
                deferredMulti = false
                encoder.arrayHeader(0)
            default:
                deferredMulti = false
                encoder.simpleString("OK")
            }
            return answer(encoder.bytes)
        default:
            break
        }
        // As for any command that pins: at the input's front, after the replies owed, to a
        // writable master.
        flushPending()
        if !replies.isEmpty {
            hold = .barrier(frame)
            return connection.pauseReading()
        }
        guard group.masterWritable(for: self) else { return holdForMaster(frame, group) }
        let dedicated = group.master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
        holdStarted = 0
        guard dedicated.isUsable else {
            input.drop(frame.length, from: connection)
            return unavailable(.pinned, "ERR ambassador: master \(group.master.address) is unavailable")
        }
        dedicated.owner = self
        pin = .pinned(dedicated, .transaction)
        dedicated.select(db)
        dedicated.useProtocol(protocolVersion)
        dedicated.inject(["MULTI"], label: "MULTI")
        deferredMulti = false
        inMulti = true
        queued = 0
        // Keyless (PING …): the first shard for now; the first key decides (see `moveTransaction`).
        keylessQueued = keyless ? [] : nil
        dispatchPinned(frame, on: dedicated)
    }

    /// A transaction begun on the first shard with keyless commands only: the first keyed
    /// command decides its shard, as the first key does for any transaction. A keyless command
    /// is remembered; a keyed one of another shard moves the transaction there, once the
    /// replies owed are in: the old connection is closed (which discards its transaction), and
    /// the new one gets MULTI and the keyless commands again (their QUEUED, or their queue-time
    /// error that flags the transaction, already answered), then the command. True when the
    /// frame was taken care of here.
    func moveTransaction(_ frame: RequestFrame, _ verb: Verb, from target: BackendConnection) -> Bool {
        switch verb {
        case .exec, .discard, .multi, .watch: return false
        default: break
        }
        let keys = keySlot(of: frame)
        guard case .slot(let slot) = keys else {
            if case .none = keys {
                var bytes: [UInt8] = []
                connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
                keylessQueued?.append(bytes)
            } else {
                keylessQueued = nil  // keys of several slots: the node refuses it, the shard stays
            }
            return false
        }
        guard let owner = proxy.group(forSlot: slot), owner !== target.backend.group else {
            keylessQueued = nil
            return false
        }
        if !replies.isEmpty {
            hold = .barrier(frame)  // the old connection's replies come first
            connection.pauseReading()
            return true
        }
        let again = keylessQueued ?? []
        keylessQueued = nil
        pin = .shared
        target.close()
        let dedicated = owner.master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
        guard dedicated.isUsable else {
            input.drop(frame.length, from: connection)
            inMulti = false
            queued = 0
            unavailable(.pinned, "ERR ambassador: master \(owner.master.address) is unavailable")
            return true
        }
        dedicated.owner = self
        pin = .pinned(dedicated, .transaction)
        dedicated.select(db)
        dedicated.useProtocol(protocolVersion)
        dedicated.inject(["MULTI"], label: "MULTI")
        for request in again { dedicated.inject(request: request, label: "transaction replay", expectingError: true) }
        dispatchPinned(frame, on: dedicated)
        return true
    }

    /// A command queued in a transaction pinned to `target`'s shard whose keys are in another
    /// shard: -CROSSSLOT, and the transaction is flagged (EXEC answers EXECABORT), as a cluster
    /// node refuses a command of a transaction it cannot run. True when refused.
    func refusedInClusterTransaction(_ frame: RequestFrame, on target: BackendConnection) -> Bool {
        guard case .slot(let slot) = keySlot(of: frame), let owner = proxy.group(forSlot: slot), owner !== target.backend.group else { return false }
        input.drop(frame.length, from: connection)
        target.inject(["GET"], label: "transaction flag", expectingError: true)
        proxy.stats.answered(.local, .error, microseconds: 0)
        answerError(Self.crossSlotError)
        return true
    }

    /// A command no single shard answers as one Redis would: keys of several slots, a question
    /// for every master (DBSIZE, KEYS, SCAN …), or one about the cluster that the ambassador
    /// answers as one node.
    func spansShards(_ frame: RequestFrame) -> Bool {
        switch keySlot(of: frame) {
        case .crossSlot: return true
        case .slot: return false
        case .none:
            if Self.fanOutNames.contains(frame.name) { return clusterParts(frame, crossSlot: false) != nil }
            return isOneNodeQuestion(frame)
        }
    }

    /// What `answeredAsOneNode` answers: READONLY, READWRITE, ASKING, and the CLUSTER
    /// subcommands in `oneNodeQuestions`.
    private func isOneNodeQuestion(_ frame: RequestFrame) -> Bool {
        if frame.argumentCount == 1 {
            return frame.name == Words.readOnly || frame.name == Words.readWrite || frame.name == Words.asking
        }
        return frame.name == Words.clusterName && frame.argumentCount == 2
            && Self.oneNodeQuestions.contains(frame.firstArgument.description)
    }

    static let oneNodeQuestions: Set<String> = ["slots", "shards", "nodes", "info", "myid", "myshardid"]

    /// What a cluster-aware client asks of the node it talks to, answered for the ambassador as
    /// one node that owns every slot (CLUSTER SLOTS, SHARDS, NODES, INFO, MYID): such a client
    /// then sends everything here, as a plain one does. READONLY, READWRITE and ASKING are
    /// accepted (reads are spread and redirections followed here anyway).
    private func answeredAsOneNode(_ frame: RequestFrame) -> Bool {
        guard isOneNodeQuestion(frame) else { return false }
        if frame.argumentCount == 1 {
            input.drop(frame.length, from: connection)
            proxy.stats.answered(.local, .ok, microseconds: 0)
            encoder.clear()
            encoder.simpleString("OK")
            answer(encoder.bytes)
            return true
        }
        let (host, port) = ownAddress()
        let id = Self.nodeID(host: host, port: port, salt: 0)
        encoder.clear()
        encoder.protocolVersion = protocolVersion
        switch frame.firstArgument.description {
        case "slots":
            encoder.arrayHeader(1)
            encoder.arrayHeader(3)
            encoder.integer(0)
            encoder.integer(Int64(HashSlot.count - 1))
            encoder.arrayHeader(3)
            encoder.bulk(host)
            encoder.integer(Int64(port))
            encoder.bulk(id)
        case "shards":
            encoder.arrayHeader(1)
            encoder.mapHeader(2)
            encoder.bulk("slots")
            encoder.arrayHeader(2)
            encoder.integer(0)
            encoder.integer(Int64(HashSlot.count - 1))
            encoder.bulk("nodes")
            encoder.arrayHeader(1)
            encoder.mapHeader(7)
            for (field, value) in [("id", id), ("port", nil), ("ip", host), ("endpoint", host), ("role", "master")] {
                encoder.bulk(field)
                if let value { encoder.bulk(value) } else { encoder.integer(Int64(port)) }
            }
            encoder.bulk("replication-offset")
            encoder.integer(0)
            encoder.bulk("health")
            encoder.bulk("online")
        case "nodes":
            encoder.verbatimOrBulk("\(id) \(host):\(port)@0 myself,master - 0 0 1 connected 0-\(HashSlot.count - 1)\n")
        case "info":
            encoder.verbatimOrBulk([
                "cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384", "cluster_slots_pfail:0",
                "cluster_slots_fail:0", "cluster_known_nodes:1", "cluster_size:1", "cluster_current_epoch:1",
                "cluster_my_epoch:1", "cluster_stats_messages_sent:0", "cluster_stats_messages_received:0",
                "total_cluster_links_buffer_limit_exceeded:0",
            ].joined(separator: "\r\n") + "\r\n")
        case "myid":
            encoder.bulk(id)
        default:  // "myshardid", the one `oneNodeQuestions` names besides those above
            encoder.bulk(Self.nodeID(host: host, port: port, salt: 1))
        }
        input.drop(frame.length, from: connection)
        proxy.stats.answered(.local, .ok, microseconds: 0)
        answer(encoder.bytes)
        return true
    }

    /// The address this client reached the ambassador at (a node's address in the replies above).
    private func ownAddress() -> (host: String, port: Int) {
        let local = connection.localAddress
        guard let colon = local.lastIndex(of: ":"), let port = Int(local[local.index(after: colon)...]), port > 0 else {
            return ("127.0.0.1", Int(proxy.listenPort))
        }
        return (String(local[..<colon]), port)
    }

    /// A node id (40 hex digits) that stays the same for the same address.
    static func nodeID(host: String, port: Int, salt: UInt64) -> String {
        var hash: UInt64 = 0xcbf29ce484222325 ^ salt
        var digits = ""
        for round in 0..<3 {
            for byte in "redis-ambassador \(host):\(port) \(round)".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 }
            digits += String(hash, radix: 16).leftPadded(to: 16)
        }
        return String(digits.prefix(40))
    }

    /// A relaying session (subscribed, tracking …) keeps its dedicated connection on the shard
    /// where it began; a command whose keys live on another shard still goes there (its -MOVED
    /// marks its place in the stream) and is remembered, to be sent to its owner then.
    func noteForeignRelayedCommand(_ frame: RequestFrame, on target: BackendConnection) {
        guard case .slot(let slot) = keySlot(of: frame), let owner = proxy.group(forSlot: slot),
              owner !== target.backend.group, relayForeign.count < 1024 else { return }
        var bytes: [UInt8] = []
        connection.copyInput(from: pendingBytes, count: frame.length, into: &bytes)
        relayForeign.append(ForeignCommand(slot: slot, name: frame.name, firstArgument: frame.firstArgument, bytes: bytes,
                                           caching: cachingRequest, queued: inMulti))
    }

    /// A -MOVED or -ASK in a relayed stream for a command remembered above: the stream waits,
    /// the command runs on its owner, its reply takes the redirection's place, and the stream
    /// goes on. A RESP2 session still subscribed gets the error a node gives a subscriber
    /// instead (one node would own the key and refuse it in that context). False: not one.
    func takeRelayedRedirection(_ frame: ReplyFrame, from backend: Connection, on relay: BackendConnection) -> Bool {
        guard frame.length < 512, let redirection = ClusterRedirection(BackendConnection.copy(backend, frame.length)),
              redirection.kind == .moved || redirection.kind == .ask else { return false }
        // Entries the node served after all (the table was stale) got no redirection: skipped.
        guard let index = relayForeign.firstIndex(where: { $0.slot == redirection.slot }) else { return false }
        let entry = relayForeign[index]
        relayForeign.removeFirst(index + 1)
        backend.discardInput(frame.length)
        if redirection.kind == .moved { _ = proxy.moved(slot: redirection.slot, to: redirection.address) }
        if entry.queued {
            // In a transaction (on the relayed connection's shard), a key of another shard is
            // refused as in any cluster transaction; EXEC then answers EXECABORT.
            encoder.clear()
            encoder.protocolVersion = protocolVersion
            encoder.error(Self.crossSlotError)
            connection.write(encoder.bytes)
            return true
        }
        if isRESP2Subscriber {
            let name = proxy.table.info(name: entry.name, firstArgument: entry.firstArgument)?.name ?? entry.name.description
            encoder.clear()
            encoder.error("ERR Can't execute '\(name)': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
            connection.write(encoder.bytes)
            return true
        }
        if tracksAcrossShards, runOnShardConnection(entry, redirection, holding: relay) { return true }
        relay.holdRelay()
        let group = proxy.group(forSlot: redirection.slot) ?? proxy.primary!
        let node = redirection.kind == .ask
            ? (proxy.backend(at: redirection.address) ?? group.master!)
            : group.master!
        let target = node.sharedConnection(for: self)
        guard target.isUsable else {
            foreignCommandFailed("ERR ambassador: master \(node.address) is unavailable", releasing: relay)
            return true
        }
        if redirection.kind == .ask { target.inject(["ASKING"], label: "ASKING") }
        target.probe(request: entry.bytes) { [weak self, weak relay] reply in
            guard let self, self.connection.isOpen else { return }
            guard !reply.isEmpty else {
                return self.foreignCommandFailed("ERR ambassador: connection to master \(node.address) lost before it replied", releasing: relay)
            }
            self.connection.write(reply)
            relay?.releaseRelay()
        }
        return true
    }

    /// A relayed command run on another shard got no reply: the error takes its place in the
    /// stream, which goes on.
    func foreignCommandFailed(_ message: String, releasing relay: BackendConnection?) {
        encoder.clear()
        encoder.error(message)
        connection.write(encoder.bytes)
        relay?.releaseRelay()
    }

    /// Where the command's keys hash (`.none` for a keyless or unknown command).
    func keySlot(of frame: RequestFrame) -> CommandSlot {
        let keys = proxy.table.keyRule(name: frame.name, firstArgument: frame.firstArgument, argumentCount: frame.argumentCount)
        return keys.hasKeys ? keys.slot(SessionArguments(session: self, frame: frame)) : .none
    }

    /// The hash slot of argument `index`, read in place (copied only when it spans chunks of
    /// the input buffer).
    func keySlot(_ index: Int, of frame: RequestFrame) -> Int {
        if index == 1 && frame.firstArgumentSlot >= 0 { return Int(frame.firstArgumentSlot) }
        let range = parser.arguments[index]
        if frame.isInline {
            return HashSlot.of(Array(parser.inlineBytes[range.offset..<range.offset + range.count]))
        }
        var slot = -1
        connection.withInputChunks(from: pendingBytes + range.offset) { chunk in
            if chunk.count >= range.count { slot = HashSlot.of(chunk.extracting(0..<range.count)) }
            return false
        }
        return slot >= 0 ? slot : HashSlot.of(argumentBytes(index, of: frame))
    }

    /// Keeps a request's bytes: a shard that answers -MOVED or -ASK gets it sent again elsewhere.
    func keepForRedirect(_ frame: RequestFrame, _ slot: Slot) {
        if frameKept && requestLog.holds(frameAt, frame.length) {
            // The parser's copy, in the session's log.
            slot.keptAt = frameAt
            slot.keptCount = frame.length
            frameKept = false
        } else {
            connection.copyInput(from: pendingBytes, count: frame.length, into: slot.retryRequest)
        }
        slot.redirectsLeft = Self.redirectLimit
    }

    /// A shard redirected `slot`'s request (its error reply already read and dropped): sent
    /// again where the cluster says, at once for the first few -MOVED / -ASK, else after a
    /// pause. The client sees the error only when `failover_hold` has passed since the request
    /// was sent (or began to wait for a master), and then at the latest: nodes disagree for a
    /// moment in a failover (one names a node that still sends the request back), and a plain
    /// client cannot follow a redirection itself.
    ///
    /// Requests that wait are sent again in the order the client sent them, and none overtakes
    /// one that waits: a pipelined SET and GET of a key whose slot is on the move must run in
    /// that order wherever they end up.
    func redirect(_ slot: Slot, _ redirection: ClusterRedirection, from backend: Backend) {
        let redirection = followMap(redirection, from: backend)
        if waitingRedirects.isEmpty, redirection.kind == .moved || redirection.kind == .ask {
            slot.redirectsLeft -= 1
            if slot.redirectsLeft > 0, send(slot, again: redirection, from: backend) { return }
        }
        wait(WaitingRedirect(slot: slot, redirection: redirection, backend: backend))
    }

    /// A command queued in a transaction was answered -MOVED or -ASK: the transaction's shard
    /// no longer serves that slot. The command cannot go elsewhere (the transaction runs on
    /// one node, which has now marked it to abort, as Redis does), so the client gets
    /// -TRYAGAIN in its place, and the slot map follows at once: the transaction sent again
    /// goes to the new owner, as a cluster client's would after the -MOVED. The raw -MOVED
    /// would send a cluster client around the ambassador, and mean nothing to a plain one.
    func redirectedInTransaction(_ slot: Slot, _ redirection: ClusterRedirection, from backend: Backend) {
        let redirection = followMap(redirection, from: backend)
        fail(slot, "TRYAGAIN ambassador: slot \(redirection.slot) moved during the transaction, which will abort; send it again (\(redirection.text))")
    }

    /// What `backend` said of the slot map, taken in: a -MOVED's slot follows to the node named
    /// at once (when a group has that master), an -ASK asks for the layout. Returns the
    /// redirection with an empty host ("MOVED 3999 :6381") read as the node's own, as the
    /// cluster means it.
    private func followMap(_ redirection: ClusterRedirection, from backend: Backend) -> ClusterRedirection {
        var redirection = redirection
        if redirection.slot >= 0 && redirection.address.host.isEmpty {
            redirection.address = Address(host: backend.address.host, port: redirection.address.port)
        }
        switch redirection.kind {
        case .moved:
            _ = proxy.moved(slot: redirection.slot, to: redirection.address)
        case .ask:
            proxy.requestLayout()
        case .tryAgain, .clusterDown, .masterLost:
            break
        }
        return redirection
    }

    /// Whether a request whose `failover_hold` counts from `since` (loop µs) may still wait.
    func withinFailoverHold(since: Int) -> Bool {
        proxy.loop.nowMicroseconds - since < proxy.config.failoverHold.microseconds
    }

    /// Remembers `target` as where the session's last write to its node went (see `shardWrites`).
    @inline(__always)
    func noteShardWrite(_ target: BackendConnection) {
        guard !target.dedicated else { return }
        let id = ObjectIdentifier(target.backend)
        if let i = shardWrites.firstIndex(where: { $0.backendID == id }) {
            if shardWrites[i].connection !== target || shardWrites[i].generation != target.generation {
                shardWrites[i] = ShardWrite(connection: target, generation: target.generation, backendID: id)
            }
            return
        }
        // Entries for nodes that are masters no more go when there are more than shards.
        if shardWrites.count > proxy.groups.count { shardWrites.removeAll { !Self.isWaitConnection($0) } }
        shardWrites.append(ShardWrite(connection: target, generation: target.generation, backendID: id))
    }

    /// Where a WAIT of this session runs when its writes went to more than one shard: for each
    /// shard, the connection that took its last write there, while that is the same connection
    /// (not reconnected since) to the shard's master. Empty when that is one shard or none: the
    /// WAIT then runs as in the other modes (on the connection of the session's last write).
    /// A transaction's writes (on a dedicated connection) are not among these.
    func shardWaitConnections() -> [BackendConnection] {
        guard shardWrites.count > 1 else { return [] }
        let live = shardWrites.filter(Self.isWaitConnection).map(\.connection)
        return live.count > 1 ? live : []
    }

    private static func isWaitConnection(_ write: ShardWrite) -> Bool {
        let connection = write.connection
        return connection.isOpen && connection.generation == write.generation && !connection.backend.removed
            && connection.backend.group.master === connection.backend
    }

    /// A request lost with its connection but safe to send again (never sent, or a read): to
    /// the shard's master once one is confirmed, up to `failover_hold` after it was first sent
    /// (or held).
    func resendWhenMasterConfirmed(_ slot: Slot, from backend: Backend) {
        // Its error if no master is confirmed in time: -TRYAGAIN, as for a write that waited for
        // one (it never ran: a read, or a request that never left).
        wait(WaitingRedirect(slot: slot, redirection: .connectionLost(to: backend), backend: backend))
    }

    /// Queues `waiting` in request order; the first to wait starts the retries.
    private func wait(_ waiting: WaitingRedirect) {
        let position = replies.slots.firstIndex { $0 === waiting.slot } ?? Int.max
        let index = waitingRedirects.firstIndex { other in
            (replies.slots.firstIndex { $0 === other.slot } ?? Int.max) > position
        } ?? waitingRedirects.endIndex
        waitingRedirects.insert(waiting, at: index)
        if waitingRedirects.count == 1 { retryWaiting(attempt: 0) }
    }

    /// After a pause (by the first waiting request's kind): the waiting requests are sent
    /// again in order, as far as their nodes allow; the rest wait on.
    private func retryWaiting(attempt: Int) {
        guard let first = waitingRedirects.first else { return }
        let pause = first.redirection.pause(attempt: attempt, waited: proxy.loop.nowMicroseconds - first.slot.holdSince)
        proxy.after(pause) { [weak self] in self?.sendWaiting(attempt: attempt) }
    }

    private func sendWaiting(attempt: Int) {
        var layoutAsked = false
        while let first = waitingRedirects.first {
            let slot = first.slot
            guard slot.session === self, connection.isOpen else {
                waitingRedirects.removeFirst()
                continue
            }
            // Checked before every send, not only when the node is unreachable: a node that
            // answers (-TRYAGAIN in a half-migrated slot, -CLUSTERDOWN while the cluster cannot
            // fail a shard over) would otherwise be asked again and again, without end.
            guard withinFailoverHold(since: slot.holdSince) else {
                waitingRedirects.removeFirst()
                fail(slot, first.redirection.clientError)
                continue
            }
            if !layoutAsked, first.redirection.kind == .moved || first.redirection.kind == .ask {
                // The layout again, should the last read have come from a node that lagged.
                proxy.requestLayout()
                layoutAsked = true
            }
            if send(slot, again: first.redirection, from: first.backend) {
                // A further redirection is followed too (after a pause, once the quick ones
                // are spent).
                slot.redirectsLeft = max(slot.redirectsLeft, 1)
                waitingRedirects.removeFirst()
                continue
            }
            return retryWaiting(attempt: attempt + 1)
        }
    }

    /// Sends `slot`'s request to where `redirection` points now; false when that node has no
    /// usable connection.
    private func send(_ slot: Slot, again redirection: ClusterRedirection, from backend: Backend) -> Bool {
        var target: Backend?
        switch redirection.kind {
        case .moved, .ask:
            // The node named (a master of a group, or one known as a replica that was just
            // promoted: the cluster says it serves the slot); else the slot's master by the table.
            target = proxy.backend(at: redirection.address)
            if target == nil || target!.removed {
                target = proxy.group(forSlot: redirection.slot)?.master
                // Not back to the node that redirected it: it would only say the same again.
                // The layout will name the node (it was asked for).
                if target?.address == backend.address { return false }
            }
        case .tryAgain, .clusterDown:
            target = backend.removed ? backend.group.master : backend
        case .masterLost:
            guard backend.group.masterConfirmed else { return false }
            target = backend.group.master
        }
        guard let target, !target.removed else { return false }
        let connection = target.sharedConnection(for: self)
        guard connection.isUsable else { return false }
        if redirection.kind == .ask { connection.inject(["ASKING"], label: "ASKING") }
        resend(slot, to: connection)
        return true
    }
}

/// A redirected request waiting to be sent again (see `ClientSession.redirect`).
struct WaitingRedirect {
    let slot: Slot
    let redirection: ClusterRedirection
    /// The node that redirected it (or lost it).
    let backend: Backend
}

/// A cluster's redirection of one request, read from its error reply.
struct ClusterRedirection {
    enum Kind {
        case moved, ask, tryAgain, clusterDown
        /// Not a reply: the connection went before the request reached Redis (or it only reads).
        case masterLost
    }
    var kind: Kind
    var slot: Int
    var address: Address
    /// The error as the node wrote it (without the leading '-' and CRLF).
    var text: String

    init(kind: Kind, text: String) {
        (self.kind, slot, address, self.text) = (kind, -1, Address(host: "", port: 0), text)
    }

    /// A request lost with its connection to `backend` before it replied: it waits for a
    /// master to be confirmed, and this is its error if none is in time (-TRYAGAIN: it never
    /// ran, being a read or never sent).
    static func connectionLost(to backend: Backend) -> ClusterRedirection {
        ClusterRedirection(kind: .masterLost, text: "TRYAGAIN ambassador: connection to \(backend.role) \(backend.address) lost before it replied, and no master confirmed within failover_hold")
    }

    /// What the client gets when the redirections run out: a -TRYAGAIN or -CLUSTERDOWN as the
    /// node wrote it; a -MOVED or -ASK as a -TRYAGAIN. The client knows the ambassador as the
    /// one node that serves every slot: a cluster client would turn to the node named, around
    /// the ambassador, and a plain one cannot follow it.
    var clientError: String {
        switch kind {
        case .moved, .ask: "TRYAGAIN ambassador: slot \(slot) still redirected when failover_hold ran out (\(text))"
        case .tryAgain, .clusterDown, .masterLost: text
        }
    }

    /// The pause (seconds) before a request turned back this way is sent again, on its
    /// `attempt`th wait, `waited` µs into its `failover_hold`: the same for a single request
    /// (`ClientSession.retryWaiting`) and a part of a split one (`sendPart`).
    func pause(attempt: Int, waited: Int) -> Double {
        switch kind {
        case .masterLost:
            // Nothing goes out until a master is confirmed: a check, not a request.
            0.05
        case .tryAgain, .clusterDown:
            // The node answered and is asked again: the pause grows with the wait, an eighth
            // of it (20 ms at first, 100 ms from 0.8 s on), not a request every 20 ms throughout.
            min(0.1, max(0.02, Double(waited) / 8_000_000))
        case .moved, .ask:
            0.02 * Double(1 << min(attempt, 4))
        }
    }

    /// `-MOVED 3999 127.0.0.1:6381`, `-ASK 3999 127.0.0.1:6381`, `-TRYAGAIN …`; nil for any
    /// other error.
    init?(_ bytes: [UInt8]) {
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasPrefix("-") { text.removeFirst() }
        while text.hasSuffix("\r\n") || text.hasSuffix("\n") { text.removeLast() }
        self.text = text
        if text.hasPrefix("TRYAGAIN") || text.hasPrefix("CLUSTERDOWN") {
            (kind, slot, address) = (text.hasPrefix("TRYAGAIN") ? .tryAgain : .clusterDown, -1, Address(host: "", port: 0))
            return
        }
        let words = text.split(separator: " ")
        guard words.count == 3, let slot = Int(words[1]), slot >= 0, slot < HashSlot.count,
              let colon = words[2].lastIndex(of: ":"), let port = UInt16(words[2][words[2].index(after: colon)...])
        else { return nil }
        switch words[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        self.slot = slot
        var host = String(words[2][..<colon])
        // An IPv6 node is written [::1]:port by some versions.
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        address = Address(host: host, port: port)
    }
}

/// The session as `CommandRouter` sees it for one command of a cluster shard.
struct ShardContext: DispatchContext {
    let session: ClientSession
    let group: ReplicationGroup

    var repliesOwed: Bool { session.repliesOwed }
    var passesLoginsThrough: Bool { session.passesLoginsThrough }
    var masterConfirmed: Bool { group.masterConfirmed }
    var masterWritable: Bool { group.masterWritable(for: session) }
    var hasWriteConnection: Bool { session.waitConnection(group) != nil }
    var pinsTools: Bool { false }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// The command and argument names the cluster session looks for, packed once.
private enum Words {
    static let clusterName = ShortBytes("cluster")
    static let countKeysInSlot = ShortBytes("countkeysinslot")
    static let getKeysInSlot = ShortBytes("getkeysinslot")
    static let readOnly = ShortBytes("readonly")
    static let readWrite = ShortBytes("readwrite")
    static let asking = ShortBytes("asking")
    static let clientName = ShortBytes("client")
    static let replyName = ShortBytes("reply")
    static let onName = ShortBytes("on")
    static let offName = ShortBytes("off")
    static let skipName = ShortBytes("skip")
}
