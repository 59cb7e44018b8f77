import EventLoop
import RESP
import Routing

/// A session's dedicated connection: pinning for a stateful command (MULTI, BLPOP, SUBSCRIBE …),
/// the commands sent while pinned, the connection state they change (transaction, db, protocol,
/// subscriptions, tracking), relaying, and letting go. Where the session is, is `pin`
/// (`PinState`); this file is what moves it.
extension ClientSession {
    // MARK: pinning

    func pin(_ frame: RequestFrame, state: StatefulKind, on master: Backend) {
        // After writes on a dedicated connection (a transaction, a script in one), the same one
        // again if it is idle: a WAIT there counts those writes.
        let written = lastWriteConnection?.dedicated == true ? lastWriteConnection : nil
        let connection = master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex, preferring: written)
        holdStarted = 0
        guard connection.isUsable else {
            input.drop(frame.length, from: self.connection)
            return unavailable(.pinned, "ERR ambassador: master \(master.address) is unavailable")
        }
        connection.owner = self
        pin = .pinned(connection, state)
        dispatchPinned(frame, on: connection)
    }

    /// While pinned, every command goes to the pinned connection, so Redis sees the session exactly
    /// as a direct client: queued in MULTI, waiting behind a BLPOP, in subscribe mode.
    func dispatchPinned(_ frame: RequestFrame, on target: BackendConnection) {
        let command = proxy.table.command(frame, arguments: SessionArguments(session: self, frame: frame))
        let verb = command.verb
        // As when unpinned (see `perform`); an UNPAUSE goes on this connection, not a shared one.
        if command.inspectsServer && noteServerCommand(frame) { proxy.endPause() }
        if let rules = proxy.commandRules, let refusal = refusal(by: rules, command, frame) {
            input.drop(frame.length, from: connection)
            if inMulti && !pin.isRelaying {
                // Redis flags a transaction when it refuses one of its commands, so EXEC answers
                // EXECABORT. A command Redis itself refuses at queue time (GET without a key)
                // flags it there the same way; its error reply is dropped.
                target.inject(["GET"], label: "transaction flag", expectingError: true)
            }
            return answerError(refusal)
        }
        if command.kind == .local(.quit) && !pin.isRelaying {
            proxy.stats.answered(.local, .ok, microseconds: 0)
            return answerLocally(.quit, frame)
        }
        if command.kind == .local(.reset) && !pin.isRelaying {
            // RESET would log the dedicated connection out: the ambassador does it, after every
            // earlier reply (a direct Redis answers it after a pending BLPOP too).
            if !replies.isEmpty {
                hold = .barrier(frame)
                connection.pauseReading()
                return
            }
            proxy.stats.answered(.local, .ok, microseconds: 0)
            return answerLocally(.reset, frame)
        }
        if case .stateful(.monitor) = command.kind, !inMulti, !pin.isRelaying,
           frame.name == Self.syncName || frame.name == Self.psyncName {
            return startTunnel(frame, on: target.backend)
        }
        if case .stateful(.protocolVersion) = command.kind, !inMulti, !pin.isRelaying {
            // HELLO outside MULTI is the session's, as when unpinned: the ambassador answers it
            // (its AUTH or SETNAME refused, nothing changes), and the pinned connection follows
            // the session's protocol before its next command (`useProtocol`). Sent to Redis it
            // would switch the session even when Redis refused it, and name the pooled
            // connection's id.
            proxy.stats.answered(.local, .ok, microseconds: 0)
            return hello(frame)
        }
        if proxy.clustered && inMulti && !pin.isRelaying {
            if keylessQueued != nil && moveTransaction(frame, verb, from: target) { return }
            if refusedInClusterTransaction(frame, on: target) { return }
        }
        if proxy.clustered && !inMulti && !pin.isRelaying && spansShards(frame) {
            // Outside a transaction (pipelined after EXEC, behind a blocked BLPOP, while
            // WATCHing), a command the pinned shard cannot answer for the whole keyspace runs as
            // it would unpinned, after the replies owed: its node would refuse keys of other
            // slots (-CROSSSLOT) and count only its own keys.
            if !replies.isEmpty {
                hold = .barrier(frame)
                connection.pauseReading()
                return
            }
            return dispatchClusteredInGeneral(frame, command)
        }
        target.select(db)
        target.useProtocol(protocolVersion)
        if isPinnedTool && !inMulti && !pin.isRelaying { nameInRedis(target) }
        if let rewrite = redirectRewrite(frame, verb: verb) {
            let bytes: [UInt8]
            switch rewrite {
            case .failure(let text):
                input.drop(frame.length, from: connection)
                return answerError(text)
            case .wait(let dedicated):
                hold = .barrier(frame)
                connection.pauseReading()
                dedicated.whenIdentified { [weak self] in self?.scheduleResume() }  // after that delivery
                return
            case .rewritten(let rewritten):
                bytes = rewritten
            }
            if !inMulti && !replies.isEmpty && !pin.isRelaying {
                hold = .barrier(frame)  // relaying starts once every earlier reply is in
                connection.pauseReading()
                return
            }
            // Sent in place of the app's bytes: the same command, naming Redis's id.
            trackState(frame, verb: verb)
            // Each other shard's connection redirects to the target's connection to that node.
            if proxy.clustered { mirrorRedirectTracking(besides: target) }
            input.drop(frame.length, from: connection)
            if inMulti {
                target.write(bytes, slot: enqueue(.pinned))
                return
            }
            pin = .relaying(target, .clientState)
            proxy.stats.command(.pinned, .relayed)
            target.rawWrite(bytes)
            return
        }
        if verb == .exec, inMulti, frame.argumentCount == 1, let state = relayAfterExec, !pin.isRelaying {
            // The transaction subscribes (or turns tracking on …): after EXEC the connection is
            // in that mode, so EXEC's reply and what follows are relayed, as for SUBSCRIBE.
            if !replies.isEmpty {
                hold = .barrier(frame)
                connection.pauseReading()
                return
            }
            trackState(frame, verb: verb)
            pin = .relaying(target, state)
            proxy.stats.command(.pinned, .relayed)
            target.forward(from: connection, length: frame.length, slot: nil)
            return
        }
        var beginsTransaction = false
        if case .multi = verb, !inMulti, !watching, frame.argumentCount == 1 { beginsTransaction = true }
        trackState(frame, verb: verb)
        // A cluster transaction begun here (pipelined after EXEC, behind a BLPOP) is on this
        // shard for now: its first key decides, as for any (see `moveTransaction`). Not after
        // WATCH: the watched key's shard holds it.
        if proxy.clustered && beginsTransaction && !pin.isRelaying { keylessQueued = [] }
        if verb != .wait && (lastWriteConnection !== target || lastWriteGeneration != target.generation) {
            // Any command here may write (EXEC, EVAL, a blocking move): a later WAIT runs here.
            lastWriteConnection = target
            lastWriteGeneration = target.generation
        }
        if pin.isRelaying, !inMulti, case .local(let local) = command.kind, answerInRelayedStream(local, frame, on: target) {
            return
        }
        if pin.isRelaying, !inMulti, frame.name == Self.clientName, frame.argumentCount == 2,
           !isRESP2Subscriber {
            if frame.firstArgument == Self.getRedirName {
                // The app id it redirects to (0: tracking without REDIRECT; -1: not tracking).
                input.drop(frame.length, from: connection)
                encoder.clear()
                encoder.integer(tracking ? max(trackingRedirect, 0) : -1)
                return placeInRelayedStream(encoder.bytes, on: target)
            }
            if frame.firstArgument == Self.trackingInfoName {
                // (No marker ahead of it: the marker would use up a CLIENT CACHING yes meant for it.)
                trackingInfoPending += 1
                proxy.stats.command(.pinned, .relayed)
                return target.forward(from: connection, length: frame.length, slot: nil)
            }
        }
        if pin.isRelaying {
            proxy.stats.command(.pinned, .relayed)
            if proxy.clustered { noteClusterRelayed(frame, verb: verb, on: target) }
            target.forward(from: connection, length: frame.length, slot: nil)
            return
        }
        let kind = command.kind
        if case .local(let local) = kind, Self.describesSession(local) {
            if !inMulti {
                // The session's name, id and login are the ambassador's, as when unpinned (the
                // dedicated connection is a pooled one with its own); the answer keeps its turn.
                if holdWhileNamePending(frame) { return }
                if isPinnedTool, local == .clientSetName {
                    // A tool's session: its own CLIENT SETNAME runs on its connection (Redis
                    // answers it, a refusal too), so Redis names it, and logs it, as it would a
                    // direct client. The session takes the name Redis takes.
                    if frame.argumentCount == 3, setName(argumentBytes(2, of: frame)) == nil { target.redisName = name }
                    target.forward(from: connection, length: frame.length, slot: enqueue(.pinned))
                    return
                }
                if isPinnedTool, Self.shadowedOnMaster(local) { shadow(frame, on: target) }
                proxy.stats.answered(.local, .ok, microseconds: 0)
                return answerLocally(local, frame)
            }
            // Queued in MULTI, it runs on the dedicated connection at EXEC and changes who that
            // connection is: it is closed, not pooled, when the session lets go of it.
            target.reusable = false
            if local == .clientSetName, frame.argumentCount == 3 {
                // The last valid name queued is what EXEC sets (an invalid one fails there).
                let candidate = argumentBytes(2, of: frame)
                if setName(candidate, apply: false) == nil {
                    nameQueued = true
                    queuedNameClears = candidate.isEmpty
                }
            }
        } else if inMulti, case .stateful(.protocolVersion) = kind {
            target.reusable = false  // HELLO … AUTH/SETNAME queued in MULTI, likewise
            nameQueued = true
            queuedNameClears = false
        } else if inMulti, case .stateful(let state) = kind, Self.relays(state, verb) {
            // Queued, it takes effect at EXEC (see above); the connection is never pooled again.
            target.reusable = false
            relayAfterExec = state
        }
        if !inMulti, case .stateful(let state) = kind, Self.relays(state, verb) {
            // From here on the connection streams: replies are relayed as they come.
            if !replies.isEmpty {
                hold = .barrier(frame)
                connection.pauseReading()
                return
            }
            pin = .relaying(target, state)
            proxy.stats.command(.pinned, .relayed)
            if proxy.clustered { noteClusterRelayed(frame, verb: verb, on: target) }
            if state == .monitor { monitorEverywhere(besides: target) }
            target.forward(from: connection, length: frame.length, slot: nil)
            return
        }
        let slot = enqueue(.pinned)
        // A cluster: outside a transaction, a command for another shard is redirected there.
        if proxy.clustered && !inMulti { keepForRedirect(frame, slot) }
        // Anything run on the dedicated connection may write (EXEC, a script, a blocking move):
        // the session's later reads wait for it like for a write of its own. A tool's reads and
        // inspections outside a transaction write nothing.
        if inMulti || !isPinnedTool || !Self.writesNothing(kind) {
            slot.isWrite = true
            writesInFlight += 1
            lastWriteMicroseconds = proxy.loop.nowMicroseconds
            if proxy.tracksKeys {
                slot.isAppWrite = true
                slot.appKeys = target.backend.group.keyWrites.sent(nil)  // a transaction's keys are not known here
                if proxy.clustered { slot.appGroup = target.backend.group }
            }
        }
        target.forward(from: connection, length: frame.length, slot: slot)
        if verb == .exec && nameQueued { learnNameAfterExec(on: target) }
    }

    /// Commands that change no key: a read, or one for the server itself (INFO, CONFIG, SLOWLOG …).
    static func writesNothing(_ kind: CommandClass) -> Bool {
        switch kind {
        case .read, .master: return true
        default: return false
        }
    }

    /// A tool's session whose connection is no longer right: it logged in as another user (AUTH
    /// passed through), or its node is no longer the master (a failover; the old master may live
    /// on as a replica). Once every earlier reply is in it lets go of it for one to the master,
    /// logged in as the session is, and `frame` goes there. False: not a pinned tool between
    /// commands (MULTI, WATCH, relaying keep the connection, as for any pinned session).
    @inline(never)
    func repinTool(_ frame: RequestFrame) -> Bool {
        guard isPinnedTool, !inMulti, !watching, !pin.isRelaying else { return false }
        if !replies.isEmpty {
            hold = .barrier(frame)
            connection.pauseReading()
            return true
        }
        unpin()
        flushPending()
        endBatch()
        pin(frame, state: .clientState, on: group.master)
        return true
    }

    /// A tool's session has its name in Redis too, on its dedicated connection: the slow log and
    /// CLIENT LIST there name it, as they name a direct client. The name the session set (CLIENT
    /// SETNAME, HELLO … SETNAME, answered by the ambassador) goes ahead of its next command;
    /// the connection, named, is closed rather than pooled when the session lets go of it.
    func nameInRedis(_ target: BackendConnection) {
        guard target.redisName != name else { return }
        target.inject(["CLIENT", "SETNAME", String(decoding: name ?? [], as: UTF8.self)], label: "name")
        target.redisName = name
    }

    /// A transaction queued CLIENT SETNAME (or HELLO … SETNAME): Redis ran it at EXEC, or not
    /// (WATCH, a queue-time error). The dedicated connection (pinned with no name) is asked its
    /// name right after: a name is the session's from now on; none means the transaction
    /// cleared it (`CLIENT SETNAME ""` last) or did not run. What asks for the session's name
    /// waits for the answer (`holdWhileNamePending`).
    private func learnNameAfterExec(on target: BackendConnection) {
        nameQueued = false
        namePending = true
        target.probe(["CLIENT", "GETNAME"]) { [weak self, weak target] bytes in
            guard let self, self.namePending else { return }
            self.namePending = false
            // A name, or none ($-1, _); nothing when the connection was lost first (the name
            // stays as it was).
            switch (try? RESPValue.decode(bytes))?.0 {
            case .bulkString(let name?) where !name.isEmpty:
                self.name = name
                target?.redisName = name
            case .bulkString(nil), .null:
                if self.queuedNameClears { self.name = nil }
                target?.redisName = nil
            default: break
            }
            self.probeAnswered()
        }
    }

    /// A command about the session (CLIENT GETNAME, LIST, INFO …) waits while the name a
    /// transaction may have set is asked for.
    func holdWhileNamePending(_ frame: RequestFrame) -> Bool {
        guard namePending else { return false }
        flushPending()
        hold = .probe(frame)
        connection.pauseReading()
        return true
    }

    /// Local commands about the session itself rather than the command stream.
    static func describesSession(_ kind: LocalKind) -> Bool {
        switch kind {
        case .auth, .clientSetName, .clientGetName, .clientSetInfo, .clientID,
             .clientList, .clientInfo, .clientKill, .clientUnblock: return true
        case .ping, .echo, .quit, .reset, .ambassador: return false
        }
    }

    /// Pub/sub, MONITOR and CLIENT TRACKING/REPLY make replies arrive unrequested or not at all:
    /// such a session is relayed on its dedicated connection until RESET or it disconnects.
    static func relays(_ state: StatefulKind, _ verb: Verb) -> Bool {
        switch state {
        case .pubsub, .monitor: return true
        case .clientState: return verb == .clientTracking || verb == .clientReply
        default: return false
        }
    }

    /// Follows what the session's commands do to the connection state it depends on.
    func trackState(_ frame: RequestFrame, verb: Verb) {
        switch verb {
        case .multi, .exec, .discard, .watch: break
        default: if inMulti { queued += 1 }
        }
        switch verb {
        case .subscription(let set, let subscribe): trackSubscriptions(frame, set, subscribe: subscribe)
        case .clientTracking: trackTracking(frame)
        // Only what Redis runs changes the state: with a wrong number of arguments MULTI,
        // DISCARD, WATCH and UNWATCH are refused (inside MULTI, the transaction is flagged),
        // and EXEC answers EXECABORT, which ends any transaction and unwatches; MULTI inside
        // MULTI is refused; EXEC and DISCARD without MULTI are refused and keep the WATCHed
        // keys watched (so the connection is not pooled with them).
        case .multi:
            guard frame.argumentCount == 1, !inMulti else { break }
            inMulti = true
            queued = 0
        case .exec, .discard:
            guard inMulti && frame.argumentCount == 1 || verb == .exec && frame.argumentCount != 1 else { break }
            if verb == .discard { nameQueued = false }
            inMulti = false
            keylessQueued = nil
            watching = false
            relayAfterExec = nil
            queued = 0
        case .watch:
            if !inMulti && frame.argumentCount >= 2 { watching = true }
        case .unwatch:
            if !inMulti && frame.argumentCount == 1 { watching = false }
        case .select where frame.argumentCount == 2:
            // The session changed db on its pinned connection itself.
            if let db = SessionArguments(session: self, frame: frame).shortArgument(1).integerValue,
               db >= 0, db < Int64(proxy.databases) {
                self.db = Int(db)
            }
            pinned?.db = self.db
        case .hello where frame.argumentCount >= 2:
            if let version = SessionArguments(session: self, frame: frame).shortArgument(1).integerValue,
               version == 2 || version == 3 {
                protocolVersion = Int(version)
                pinned?.assumeProtocol(protocolVersion)
            }
        default:
            break
        }
    }

    /// The credentials changed: the pinned connection AUTHs again once nothing of this session
    /// is in flight, outside MULTI and relaying (called again when it goes idle).
    func pinnedConnectionMayReauthenticate(_ connection: BackendConnection) {
        guard pinned === connection, connection.inflight.isEmpty, !inMulti, !pin.isRelaying else { return }
        connection.reauthenticate()
    }

    /// The pinned connection has no request in flight: give it back if the state is over.
    func pinnedConnectionIdle(_ connection: BackendConnection) {
        guard pinned === connection, !inMulti, !watching, !pin.isRelaying, !hold.isHolding, !isPinnedTool else { return }
        unpin()
    }

    func unpin() {
        guard let connection = pinned else { return }
        pin = .shared
        connection.backend.releasePinned(connection)
    }

    /// The pinned connection died. Waiting requests already got errors; a relayed session (a
    /// subscriber) is closed, as a direct Redis's restart would close it.
    func pinnedConnectionLost(_ connection: BackendConnection) {
        if shardConnectionLost(connection) { return }
        guard pinned === connection else { return }
        let wasRelay = pin.isRelaying
        pin = .shared
        inMulti = false
        watching = false
        queued = 0
        if wasRelay { self.connection.close() }
    }

    static let syncName = ShortBytes("sync")
    static let psyncName = ShortBytes("psync")

    /// SYNC or PSYNC: the client asks to be a replica (Redis's own tests read the replication
    /// stream this way). What follows is an RDB payload and a stream of commands, not replies:
    /// the session gets a dedicated master connection of its own (never pooled again) and, once
    /// that connection has answered everything before (Redis refuses SYNC with replies pending),
    /// its bytes pass through unparsed both ways until either side closes.
    func startTunnel(_ frame: RequestFrame, on master: Backend) {
        if !replies.isEmpty {
            hold = .barrier(frame)
            connection.pauseReading()
            return
        }
        flushPending()
        if let ready = tunnelReady, ready === pinned, ready.isOpen {
            // From the SYNC on, bytes pass through.
            tunnelReady = nil
            proxy.stats.command(.pinned, .relayed)
            // (Not `.monitor`: no MONITOR lines are written to a replica.)
            pin = .relaying(ready, .clientState)
            tunnel = ready
            ready.tunnel = true
            ready.send(from: connection, length: connection.inputCount)
            return
        }
        let dedicated: BackendConnection
        if let current = pinned {
            dedicated = current  // a WATCH or the like: the same connection becomes the replica
        } else {
            dedicated = master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
            guard dedicated.isUsable else {
                input.drop(frame.length, from: connection)
                return unavailable(.pinned, "ERR ambassador: master \(master.address) is unavailable")
            }
            dedicated.owner = self
            pin = .pinned(dedicated, .clientState)
        }
        dedicated.reusable = false
        hold = .probe(frame)
        connection.pauseReading()
        // Its set-up (AUTH, HELLO …) answered first: then nothing is pending when SYNC arrives.
        dedicated.probe(["PING"]) { [weak self, weak dedicated] reply in
            guard let self else { return }
            if reply.isEmpty { return self.connection.close() }
            self.tunnelReady = dedicated
            self.probeAnswered()
        }
    }

    /// The tunnel's connection read bytes: to the client as they are.
    func tunneled(_ backend: Connection) {
        releaseCork()
        backend.moveInput(backend.inputCount, to: connection)
        if connection.outputCount > Self.maxRelayOutput { backend.pauseReading() }
    }

    /// A frame from the relayed connection: straight to the client, in arrival order.
    func relayed(_ frame: ReplyFrame, from backend: Connection, backend owner: BackendConnection) {
        if owner !== pinned { return relayedFromShard(frame, from: backend, on: owner) }
        if relayGate > 0, passedRelayGate(frame, from: backend) { return }
        if !relayMarkers.isEmpty, frame.length == Self.markerReplyLength, frame.type == UInt8(ascii: "$"),
           takeRelayMarker(frame, from: backend) { return }
        if trackingInfoPending > 0, frame.type == UInt8(ascii: "%") || frame.type == UInt8(ascii: "*"),
           rewriteTrackingInfo(frame, from: backend) { return }
        if !relayForeign.isEmpty, frame.isError, takeRelayedRedirection(frame, from: backend, on: owner) { return }
        if frame.length == 8 && frame.type == UInt8(ascii: "+") {
            // "+RESET": the session sent RESET; the connection is clean again (and logged out).
            let bytes = BackendConnection.copy(backend, 8)
            if bytes == Array("+RESET\r\n".utf8) {
                backend.moveInput(frame.length, to: connection)
                owner.db = 0
                resetState()
                pin = .shared
                // RESET logs the connection out: close it rather than re-authenticate here.
                owner.close()
                return
            }
        }
        if pin.state == .monitor && isOwnMonitorLine(frame, from: backend) {
            // The ambassador's own health checks and discovery are not the app's to see.
            return backend.discardInput(frame.length)
        }
        passRelayed(frame, from: backend)
    }

    /// A command about the session (CLIENT ID, GETNAME, SETNAME, INFO, LIST, KILL, SETINFO)
    /// while it relays (subscribed in RESP3, tracking, MONITOR): the ambassador answers it, as
    /// when it does not relay; sent on, the dedicated connection would answer for itself (its
    /// Redis id, which no other session's CLIENT KILL, UNBLOCK or TRACKING REDIRECT knows).
    /// The answer takes its place in the relayed stream: an ECHO of a marker goes in its stead,
    /// and the marker's reply is replaced by the answer. A RESP2 subscriber is left to Redis,
    /// which refuses these commands in that context; so is a CLIENT KILL by USER (asked of the
    /// master first) and CLIENT UNBLOCK. False: not answered here.
    func answerInRelayedStream(_ local: LocalKind, _ frame: RequestFrame, on target: BackendConnection) -> Bool {
        switch local {
        case .clientID, .clientGetName, .clientSetName, .clientInfo, .clientList, .clientSetInfo:
            break
        case .clientKill:
            let filtersByUser = frame.argumentCount > 3 && (2..<frame.argumentCount).contains {
                argumentBytes($0, of: frame).lazy.map { $0 | 0x20 }.elementsEqual("user".utf8)
            }
            if filtersByUser { return false }
        default:
            return false
        }
        if isRESP2Subscriber { return false }
        capturedAnswer = []
        proxy.stats.answered(.local, .ok, microseconds: 0)
        answerLocally(local, frame)
        let answer = capturedAnswer ?? []
        capturedAnswer = nil
        placeInRelayedStream(answer, on: target)
        return true
    }

    /// Sends the ECHO of a new marker in the relayed stream: its reply will be replaced by
    /// `answer`.
    func placeInRelayedStream(_ answer: [UInt8], on target: BackendConnection) {
        relayMarkerCount &+= 1
        let digits = String(relayMarkerCount, radix: 16)
        let marker = Array((Self.markerPrefix + String(repeating: "0", count: 16 - digits.count) + digits).utf8)
        relayMarkers.append((marker, answer))
        target.rawWrite(BackendConnection.request(["ECHO", String(decoding: marker, as: UTF8.self)]))
    }

    static let getRedirName = ShortBytes("getredir")
    static let trackingInfoName = ShortBytes("trackinginfo")

    /// A relayed reply while CLIENT TRACKINGINFO's is awaited: when it is that reply (flags,
    /// redirect as an integer, prefixes), its redirect names the app client (Redis names the
    /// dedicated connection it was rewritten to). False: another reply.
    func rewriteTrackingInfo(_ frame: ReplyFrame, from backend: Connection) -> Bool {
        guard frame.length < 4096 else { return false }
        let bytes = BackendConnection.copy(backend, frame.length)
        guard let (value, _) = try? RESPValue.decode(bytes) else { return false }
        let items: [RESPValue]
        switch value {
        case .map(let pairs): items = pairs
        case .array(let flat?): items = flat
        default: return false
        }
        guard items.count == 6, items[0].text?.lowercased() == "flags", items[2].text?.lowercased() == "redirect",
              case .integer(let id) = items[3], items[4].text?.lowercased() == "prefixes" else { return false }
        trackingInfoPending -= 1
        guard id > 0, trackingRedirect > 0 else { return false }
        var out = items
        out[3] = .integer(trackingRedirect)
        backend.discardInput(frame.length)
        releaseCork()
        if case .map = value { connection.write(RESPValue.map(out).encoded) } else { connection.write(RESPValue.array(out).encoded) }
        return true
    }

    /// Markers are this prefix and 16 hex digits: 40 bytes, a 47-byte bulk string reply.
    static let markerPrefix = "redis-ambassador:marker:"
    static let markerReplyLength = 47

    /// The reply to a marker's ECHO: the answer it stands for goes to the client instead. A
    /// marker whose reply never came (CLIENT REPLY OFF or SKIP) is dropped with the ones before
    /// it. False: an app's own reply of that length.
    private func takeRelayMarker(_ frame: ReplyFrame, from backend: Connection) -> Bool {
        let bytes = BackendConnection.copy(backend, frame.length)
        guard bytes.starts(with: Array("$40\r\n".utf8)) else { return false }
        let marker = bytes[5..<45]
        guard let index = relayMarkers.firstIndex(where: { $0.marker.elementsEqual(marker) }) else { return false }
        let answer = relayMarkers[index].answer
        relayMarkers.removeFirst(index + 1)
        backend.discardInput(frame.length)
        releaseCork()
        if !answer.isEmpty { connection.write(answer) }
        return true
    }

    /// A relayed frame (from the relayed connection or one of the session's shard connections)
    /// to the client, as it comes.
    func passRelayed(_ frame: ReplyFrame, from backend: Connection) {
        releaseCork()  // a relay's messages go as they come
        backend.moveInput(frame.length, to: connection)
        // A subscriber (or MONITOR) that reads slower than messages come: stop reading its
        // dedicated connection, so the backlog stays in Redis, where its own
        // client-output-buffer-limit (pubsub: 32 MB by default) disconnects the ambassador's
        // connection — and so this client — exactly as it would a direct subscriber. The
        // ambassador never buffers a relay without bound (reading resumes once the client has
        // caught up: connectionDidDrainOutput).
        if connection.outputCount > Self.maxRelayOutput { backend.pauseReading() }
    }

    /// SUBSCRIBE and friends sent on the dedicated connection: the channels and patterns the
    /// session is subscribed to (CLIENT LIST's sub, psub, ssub and flag P).
    func trackSubscriptions(_ frame: RequestFrame, _ set: Verb.Subscriptions, subscribe: Bool) {
        let names = (1..<max(frame.argumentCount, 1)).map { argumentBytes($0, of: frame) }
        func apply(_ set: inout Set<[UInt8]>) {
            if subscribe {
                names.forEach { set.insert($0) }
            } else if names.isEmpty {
                set.removeAll()
            } else {
                names.forEach { set.remove($0) }
            }
        }
        switch set {
        case .channels: apply(&channels)
        case .patterns: apply(&patterns)
        case .shardChannels: apply(&shardChannels)
        }
    }

    /// CLIENT TRACKING ON|OFF [REDIRECT id] …: remembered for CLIENT LIST (flag t, redir).
    func trackTracking(_ frame: RequestFrame) {
        guard frame.argumentCount >= 3 else { return }
        let arguments = (2..<frame.argumentCount).map { String(decoding: argumentBytes($0, of: frame), as: UTF8.self).lowercased() }
        tracking = arguments[0] == "on"
        trackingRedirect = -1
        if tracking, let index = arguments.firstIndex(of: "redirect"), index + 1 < arguments.count,
           let id = Int64(arguments[index + 1]) {
            trackingRedirect = id
        }
    }

    /// CLIENT TRACKING … REDIRECT <app id>, rewritten for Redis: the id of the dedicated
    /// connection the app client with that id is pinned to (pinned now, relaying, if it was not:
    /// its invalidation messages must reach it). nil: no rewrite needed.
    func redirectRewrite(_ frame: RequestFrame, verb: Verb) -> RedirectOutcome? {
        guard verb == .clientTracking, frame.argumentCount >= 5 else { return nil }
        var arguments = (0..<frame.argumentCount).map { argumentBytes($0, of: frame) }
        guard let index = arguments.firstIndex(where: { String(decoding: $0, as: UTF8.self).lowercased() == "redirect" }),
              index + 1 < arguments.count else { return nil }
        let missing = RedirectOutcome.failure("ERR The client ID you want redirect to does not exist")
        guard let id = DecimalNumber.value(of: arguments[index + 1]), let target = proxy.session(id: id),
              let dedicated = target.pinnedConnection ?? target.pinForRedirect() else { return missing }
        guard let backendID = dedicated.redisClientID else {
            return dedicated.isUsable && !dedicated.identityUnknown ? .wait(dedicated) : missing
        }
        arguments[index + 1] = Array(String(backendID).utf8)
        if proxy.clustered, let home = pinned?.backend.group {
            // Every other shard's invalidations go to the target's connection to that node.
            var requests: [ObjectIdentifier: [UInt8]] = [:]
            for group in proxy.groups where group !== home {
                guard let there = target.redirectTarget(on: group) else {
                    return .failure("ERR ambassador: master \(group.master.address) is unavailable")
                }
                guard let id = there.redisClientID else {
                    return there.isUsable && !there.identityUnknown ? .wait(there) : missing
                }
                var shardArguments = arguments
                shardArguments[index + 1] = Array(String(id).utf8)
                requests[ObjectIdentifier(group)] = RESPValue.array(shardArguments.map { .bulkString($0) }).encoded
            }
            redirectRequests = requests
        }
        return .rewritten(RESPValue.array(arguments.map { .bulkString($0) }).encoded)
    }

    enum RedirectOutcome {
        case rewritten([UInt8])
        case failure(String)
        /// The target's dedicated connection is still learning its Redis id.
        case wait(BackendConnection)
    }

    /// Another client redirects its tracking here: a dedicated connection, relaying, so Redis
    /// accepts the redirect and its invalidation messages reach this client. Only between
    /// commands (nothing owed): relayed replies must not overtake pending ones.
    func pinForRedirect() -> BackendConnection? {
        guard pinned == nil, replies.isEmpty, !hold.isHolding else { return nil }
        let dedicated = group.master.acquirePinned(protocolVersion: protocolVersion, loginIndex: loginIndex)
        guard dedicated.isUsable else { return nil }
        dedicated.owner = self
        dedicated.select(db)
        pin = .relaying(dedicated, .clientState)
        return dedicated
    }

    /// Lets go of the pinned connection: back to the pool when its state is clean, else closed
    /// (a connection blocked, subscribed or mid-transaction cannot be reused safely).
    func dropPinned() {
        guard let connection = pinned else { return }
        let relaying = pin.isRelaying
        pin = .shared
        if connection.inflight.isEmpty && !inMulti && !watching && !relaying {
            connection.backend.releasePinned(connection)
        } else {
            connection.close()
        }
    }
}
