import Config
import DequeModule
import EventLoop
import Logging
import RESP

/// One connection to a Redis server: shared (many sessions' stateless commands, pipelined) or
/// dedicated (one pinned session's MULTI, BLPOP, SUBSCRIBE …).
///
/// Requests are written in order and their slots queued in `inflight`; each reply the scanner
/// frames completes the oldest slot. A connection in relay mode (pub/sub, MONITOR, CLIENT
/// TRACKING/REPLY) forwards every frame to its session as it comes instead.
final class BackendConnection: ConnectionDelegate {
    enum State { case connecting, up, down }

    /// Strong: a pinned connection may outlive its backend's place in the config (a session in
    /// MULTI on a master that a reload replaced). The cycle with `Backend.shared` is broken when
    /// the backend is drained or shut down.
    let backend: Backend
    let dedicated: Bool
    /// An extra shared connection, opened while the backend's regular ones are stalled (see
    /// `Backend.connection(for:urgent:)`): not reconnected, closed once idle.
    let overflow: Bool
    /// Requests written here (replies expected) and replies read or failed, since the object was
    /// made: a session whose last request here was number N has nothing outstanding once
    /// `answered >= N`.
    private(set) var expected = 0
    private(set) var answered = 0
    /// Incremented on every (re)connect: a session's WAIT counts its writes only on the very
    /// connection (not a reconnected one) they went out on.
    private(set) var generation = 0
    /// Redis's id for this connection (CLIENT ID, asked when a dedicated connection opens): what
    /// CLIENT UNBLOCK and CLIENT TRACKING REDIRECT are translated to.
    var redisClientID: Int64? {
        didSet { runIdentified() }
    }
    /// The CLIENT ID probe got no integer: the id will not come.
    var identityUnknown = false {
        didSet { runIdentified() }
    }
    private var identified: [() -> Void] = []

    /// Runs `action` once the Redis id is known (or known not to come).
    func whenIdentified(_ action: @escaping () -> Void) {
        if redisClientID != nil || identityUnknown { return action() }
        identified.append(action)
    }

    private func runIdentified() {
        let actions = identified
        identified.removeAll()
        actions.forEach { $0() }
    }
    /// `expected` at the last idle sweep (overflow connections close after two idle sweeps).
    var sweptAt = -1
    /// The RESP version this connection speaks (HELLO 3 is sent at connect for 3).
    private(set) var protocolVersion: Int
    private(set) var state = State.down
    private(set) var connection: Connection?
    private(set) var inflight = Deque<Slot>()
    private var scanner = ReplyScanner()
    /// The db the connection is in; -1 when unknown (a SELECT the session sent itself).
    var db = 0
    /// The session this dedicated connection is pinned to.
    var owner: ClientSession?
    /// A connection for the ambassador's own probes (`Backend.controlConnection`): its address is
    /// among `OwnConnections` while it is up, so MONITOR leaves its commands out.
    var isControl = false
    private var ownAddress: String?
    /// Forward every frame straight to `owner` (pub/sub, MONITOR, tracking): no slots.
    var relay = false
    /// Forward every byte straight to `owner`, unparsed (a session that sent SYNC or PSYNC).
    var tunnel = false
    /// Replies at the front of the input that are next in `pendingSession`'s order: they move
    /// to its connection together when the run ends (end of the read, another session's reply,
    /// anything else reading the input) instead of one partial-block copy each.
    private var pendingSession: ClientSession?
    private var pendingReplyBytes = 0
    /// The pending run is of replies that came before their turn: they go into the session's
    /// `replyLog` together, one copy for the run, not one each (see `keepReply`).
    private var pendingKept = false
    /// False once a pinned session changed the connection's identity (AUTH, CLIENT SETNAME or
    /// HELLO queued in MULTI): it is closed rather than returned to the pool.
    var reusable = true
    /// The name this connection has in Redis: set for a tool's session (see
    /// `ClientSession.nameInRedis`) or by a transaction's CLIENT SETNAME; nil: none. A
    /// connection once named is never pooled again.
    var redisName: [UInt8]? { didSet { reusable = false } }
    private var reconnectTimer: Timer?
    /// Why the connection was dropped by the ambassador itself (command_timeout, health check).
    private var failReason: String?

    /// The database a shared connection serves (selected once, when it connects); 0 for
    /// dedicated ones, whose db follows their session.
    let homeDB: Int

    /// The app login this connection authenticates as (0: the ambassador's own credentials, or
    /// none). See `Proxy.loginIndex(for:)`.
    let loginIndex: Int

    init(backend: Backend, protocolVersion: Int, dedicated: Bool, overflow: Bool = false, db: Int = 0,
         loginIndex: Int = 0) {
        self.backend = backend
        self.protocolVersion = protocolVersion
        self.dedicated = dedicated
        self.overflow = overflow
        self.homeDB = db
        self.loginIndex = loginIndex
    }

    /// Counted as one of the backend's regular shared connections (up count, `backend_up`).
    var isRegularShared: Bool { !dedicated && !overflow }

    /// The oldest request here has waited since before `deadline` (loop µs): something holds
    /// this connection back (a busy script, a paused write, a slow command).
    @inline(__always)
    func isStalled(before deadline: Int) -> Bool {
        guard let first = inflight.first else { return false }
        // A WAIT in flight (`Slot.isBlocking`) holds the connection until it returns, which may
        // be never (WAIT 3 0): the connection is stalled from the start, so no other session's
        // request joins it in the `stall_threshold` before it would count as stalled.
        return first.started <= deadline || answered < blockingThrough
    }

    /// `expected` just after the last WAIT sent here on a shared connection (see `isStalled`).
    private var blockingThrough = 0

    var proxy: Proxy { backend.proxy }
    var isUsable: Bool { state != .down && !backend.removed }
    var isOpen: Bool { connection != nil }
    /// Counted in the metrics' open connections (and, when shared, in the backend's up count).
    private var counted = false

    // MARK: connecting

    /// Opens the connection and queues the handshake (AUTH, HELLO) ahead of any request.
    func open() {
        guard state == .down, !backend.removed else { return }
        let config = proxy.config
        do {
            connection = try Connection.connect(to: backend.endpoint, on: proxy.loop, timeout: config.connectTimeout.seconds,
                                                tls: config.backendTLS?.context, delegate: self)
        } catch {
            logCannotConnect("\(error)")
            scheduleReconnect()
            return
        }
        // Replies come in bulk (a pipeline's worth, or a 64 KiB value): read them in chunks of
        // the pool's largest class, 4× fewer reads than the client side's 16 KiB.
        connection?.readChunkSize = Connection.largeReadChunkSize
        // A shared connection takes many sessions' small requests per loop iteration (a
        // cluster session's pipeline is split over shards request by request); a dedicated
        // one, one session's, and there may be many of those: no staging buffer for them.
        connection?.stagesWrites = !dedicated
        state = .connecting
        generation &+= 1
        if !dedicated && (redisClientID != nil || identityUnknown) {
            // A new connection has a new id (and a restarted server hands out old ones again):
            // an UNBLOCK must never name a stale one.
            redisClientID = nil
            identityUnknown = false
        }
        identifying = false
        unblockedAt = -1
        db = 0
        scanner = ReplyScanner()
        authStale = false
        unsentOwnCommands = []
        if let login = proxy.login(at: loginIndex) {
            // The app's own login: nothing after its AUTH is sent until Redis accepts it, so no
            // request of the app's ever runs as another user (the node may not know the user:
            // ACL users are not replicated).
            let user = login.user ?? "default"
            probe(login.authArguments) { [weak self] reply in self?.loginAnswered(reply, user: user) }
            if let connection { connection.gateOutput(after: connection.outputCount) }
        } else if let auth = Self.ownAuth(config) {
            inject(auth, label: "AUTH")
        }
        if protocolVersion == 3 { inject(["HELLO", "3"], label: "HELLO 3") }
        // A cluster replica answers reads of its master's slots only after READONLY.
        if proxy.clustered && backend.role == .replica { inject(["READONLY"], label: "READONLY") }
        if homeDB != 0 { select(homeDB) }
    }

    /// AUTH with the ambassador's own credentials (`username` + `password_file` or
    /// `auth_token_file`); nil without them.
    static func ownAuth(_ config: AmbassadorConfig) -> [String]? {
        guard let password = config.backendPassword else { return nil }
        return ["AUTH"] + (config.username.map { [$0] } ?? []) + [password]
    }

    // MARK: credential rotation

    /// The ambassador's credentials changed while this connection was open: it must AUTH again,
    /// at a moment no request of a session's depends on the old login (see `reauthenticate`).
    private(set) var authStale = false

    /// The credentials changed (a rotated `password_file` or `auth_token_file`, a new
    /// `username`). A connection that authenticates as the ambassador AUTHs again without being
    /// closed: a shared or idle one at once (its requests are stateless, and the AUTH takes its
    /// turn in the pipeline, so every request after it runs under the new login); one pinned to
    /// a session once nothing of the session is in flight and it is not inside MULTI or
    /// relaying (an AUTH queued in MULTI would run at EXEC; a RESP2 subscriber may not AUTH).
    /// Connections of an app's own login, or whose session changed identity, are left alone.
    /// Returns whether it will re-authenticate.
    @discardableResult
    func credentialsChanged() -> Bool {
        guard connection != nil, loginIndex == 0, reusable, state != .down else { return false }
        authStale = true
        if let owner {
            owner.pinnedConnectionMayReauthenticate(self)
        } else {
            reauthenticate()
        }
        return true
    }

    /// Sends the AUTH now, if it is due. The caller knows nothing of a session's depends on
    /// the old login.
    func reauthenticate() {
        guard authStale, connection != nil else { return }
        authStale = false
        guard let auth = Self.ownAuth(proxy.config) else { return }
        inject(auth, label: "AUTH")
        proxy.stats.reauthentications &+= 1
    }

    func connectionDidConnect(_ connection: Connection) {
        failuresInARow = 0
        if isControl {
            ownAddress = connection.localAddress
            OwnConnections.add(ownAddress!)
        }
        state = .up
        counted = true
        if !unsentOwnCommands.isEmpty {
            let now = proxy.loop.nowMicroseconds
            for rendered in unsentOwnCommands { OwnCommands.add(connection.localAddress, rendered, now: now) }
            unsentOwnCommands = []
        }
        proxy.stats.metrics.backendConnection(backend.address.description, role: backend.role.rawValue,
                                              open: 1, up: isRegularShared ? 1 : 0)
        proxy.logger.info("connected to \(backend.role) \(backend.address)\(dedicated ? " (dedicated)" : overflow ? " (overflow)" : "")\(connection.isTLS ? " over \(connection.tlsSummary)" : "")")
        backend.connectionUp(self)
    }

    /// Redis answered the AUTH of the app's login: what waited behind it goes out, or, when
    /// refused, never does. The connection closes; its reads go to another node (this one is
    /// passed over for this login for `loginRetry`), anything else fails with the refusal.
    private func loginAnswered(_ reply: [UInt8], user: String) {
        guard let connection, !reply.isEmpty else { return }  // empty: the connection was lost
        if reply.first == UInt8(ascii: "+") {
            loginRefused = false
            return connection.openGate()
        }
        let text = String(decoding: reply.dropFirst().prefix { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
        proxy.logger.warning("\(backend.role) \(backend.address) refused user \(user)'s login (\(text)); its reads go to other nodes for \(Int(Self.loginRetry))s")
        proxy.stats.error(.backendLoginRefused)
        backend.refuseLogin(loginIndex, until: proxy.loop.nowMicroseconds + Int(Self.loginRetry * 1_000_000))
        loginRefused = true
        failReason = "\(backend.role) refused user \(user)'s login: \(text)"
        connection.close(flush: false)
    }

    /// How long a node that refused an app's login is passed over for its reads, and when the
    /// connection tries the login again.
    static let loginRetry = 10.0

    /// The last AUTH of this connection's app login was refused (see `loginAnswered`).
    private var loginRefused = false

    private func scheduleReconnect() {
        guard isRegularShared, !backend.removed else { return }
        let timer = reconnectTimer ?? Timer(loop: proxy.loop) { [unowned self] in self.open() }
        reconnectTimer = timer
        if loginRefused {
            loginRefused = false
            return timer.schedule(after: Self.loginRetry)
        }
        timer.schedule(after: Backoff.delay(attempt: failedAttempts, base: proxy.config.reconnectInterval.seconds,
                                           cap: proxy.config.reconnectMax.seconds))
        failedAttempts += 1
    }

    /// Attempts since this connection last got a reply: a server that accepts and drops the
    /// connection counts as failing too.
    private var failedAttempts = 0

    /// A failed attempt to connect. The first `loudAttempts` in a row are logged each (the
    /// backoff growing to `reconnect_max`); after that one line a minute says how many more
    /// failed, so a node down for hours does not write a line per attempt per connection.
    private func logCannotConnect(_ why: String) {
        failuresInARow += 1
        if failuresInARow <= Self.loudAttempts {
            let more = failuresInARow == Self.loudAttempts ? " (further failures: one line a minute)" : ""
            proxy.logger.warning("cannot connect to \(backend.role) \(backend.address): \(why)\(more)")
            quietSince = proxy.loop.nowMicroseconds
            quietFailures = 0
            return
        }
        quietFailures += 1
        let now = proxy.loop.nowMicroseconds
        guard now - quietSince >= Self.quietLogInterval else { return }
        proxy.logger.warning("still cannot connect to \(backend.role) \(backend.address): \(why) (\(quietFailures) more attempts failed since the last line)")
        quietSince = now
        quietFailures = 0
    }
    /// Attempts in a row that could not connect (reset by one that does).
    private var failuresInARow = 0
    private var quietSince = 0
    private var quietFailures = 0
    static let loudAttempts = 5
    static let quietLogInterval = 60_000_000

    // MARK: writing

    /// Writes a request the ambassador makes itself; its reply is dropped (errors are logged).
    func inject(_ arguments: [String], label: StaticString, expectingError: Bool = false) {
        noteOwnCommand(arguments)
        inject(request: Self.request(arguments), label: label, expectingError: expectingError)
    }

    /// A command of the ambassador's own on this connection: MONITOR leaves its line out
    /// (see `OwnCommands`), once the connection's address is known.
    func noteOwnCommand(_ arguments: [String]) {
        guard !isControl, ClientSession.monitors.load(ordering: .relaxed) > 0 else { return }
        let bytes = arguments.map { Array($0.utf8) }
        let rendered = ClientSession.monitorArguments(
            bytes, redacting: ClientSession.redacted(arguments.first?.lowercased() ?? "", bytes))
        if state == .up, let connection {
            OwnCommands.add(connection.localAddress, rendered, now: proxy.loop.nowMicroseconds)
        } else {
            unsentOwnCommands.append(rendered)
        }
    }

    /// Own commands queued before the connection was up (its address unknown then).
    private var unsentOwnCommands: [[UInt8]] = []

    /// The same with the request already encoded (an app's own request, replayed).
    func inject(request: [UInt8], label: StaticString, expectingError: Bool = false) {
        let slot = proxy.slots.take()
        slot.kind = .injected
        slot.expectsError = expectingError
        slot.started = proxy.loop.nowMicroseconds
        slot.label = label
        write(request, slot: slot)
    }

    /// Writes a request whose reply the ambassador reads itself.
    func probe(_ arguments: [String], _ handler: @escaping ([UInt8]) -> Void) {
        noteOwnCommand(arguments)
        probe(request: Self.request(arguments), handler)
    }

    /// The same with the request already encoded (a probe sent often: nothing built per call).
    /// `waitOf`: the request is a WAIT (or WAITAOF) of that session, which holds the
    /// connection as a client's WAIT does (`isStalled`, `heldByWait`) and is ended if the
    /// session hangs up first (`abandonWaits`).
    func probe(request: [UInt8], waitOf session: ClientSession? = nil, _ handler: @escaping ([UInt8]) -> Void) {
        let slot = proxy.slots.take()
        slot.kind = .probe
        if let session {
            slot.session = session
            slot.isBlocking = true
        }
        slot.started = proxy.loop.nowMicroseconds
        slot.probe = handler
        write(request, slot: slot)
    }

    /// A request the ambassador sends itself (AUTH, HELLO, SELECT, INFO), as a multibulk.
    static func request(_ arguments: [String]) -> [UInt8] {
        RESPValue.array(arguments.map { .bulk($0) }).encoded
    }

    /// Reading again after a relayed client caught up (see `ClientSession.relayed`).
    func resumeReading() { connection?.resumeReading() }

    /// Bytes with no reply slot (a relayed connection's command, rewritten by the ambassador).
    func rawWrite(_ bytes: [UInt8]) {
        connection?.write(bytes)
    }

    func write(_ bytes: [UInt8], slot: Slot) {
        connection?.write(bytes)
        expect(slot)
    }

    /// A request's bytes from a copy (its reply expected with `expect`).
    func write(_ saved: SavedBytes) {
        connection?.write(saved)
    }

    /// A request's bytes kept in a session's log (its reply expected with `expect`).
    func write(_ log: ByteLog, at position: Int, count: Int) {
        connection?.write(log, at: position, count: count)
    }

    /// Moves a client's request (the first `length` bytes of its input) to this connection;
    /// its reply, if it has a slot, is expected after those already in flight.
    func forward(from client: Connection, length: Int, slot: Slot?) {
        if let slot { expect(slot) }
        send(from: client, length: length)
    }

    /// Asks Redis for this connection's id (CLIENT ID) unless it is known or asked already.
    func identify() {
        guard redisClientID == nil, !identityUnknown, !identifying else { return }
        identifying = true
        noteOwnCommand(["CLIENT", "ID"])
        probe(request: Backend.clientIDRequest) { [weak self] bytes in
            guard let self else { return }
            identifying = false
            guard let (value, _) = try? RESPValue.decode(bytes), case .integer(let id) = value else {
                identityUnknown = true
                return
            }
            redisClientID = id
            unblockAbandonedWait()  // a WAIT sent after the question, whose client left meanwhile
        }
    }
    private var identifying = false

    /// The last WAIT sent here is still running and is not `session`'s: a request of that
    /// session sent here now would wait for it.
    @inline(__always)
    func heldByWait(notOf session: ClientSession) -> Bool {
        guard answered < blockingThrough else { return false }
        let index = blockingThrough - answered - 1
        return index < inflight.count && inflight[index].session !== session
    }

    /// A shared connection whose oldest request is a WAIT (or WAITAOF) whose client has left
    /// holds every later request until that WAIT times out, which may be never (WAIT 3 0). A
    /// direct Redis ends a client's WAIT when the client hangs up; here the ambassador asks it
    /// to (CLIENT UNBLOCK, on another connection), once per such WAIT. Its reply is dropped.
    func unblockAbandonedWait() {
        guard !dedicated, answered < blockingThrough, let first = inflight.first, first.isBlocking,
              first.kind != .injected, first.session == nil, unblockedAt != answered, let id = redisClientID else { return }
        unblockedAt = answered
        backend.unblock(self, id: id)
    }
    /// `answered` when `unblockAbandonedWait` last asked (the WAIT then at the head).
    private var unblockedAt = -1

    /// `session` hung up: its WAITs here are abandoned (a client's slot lost its session with
    /// the session's replies; a WAIT part of a split, see `ClientSession.runParts`, is a probe
    /// that names it), and the one at the front is ended.
    func abandonWaits(of session: ClientSession) {
        for slot in inflight where slot.kind == .probe && slot.isBlocking && slot.session === session {
            slot.session = nil
        }
        unblockAbandonedWait()
    }

    /// A request's reply will come on this connection, after those already expected; its bytes
    /// follow with `send(from:length:)`, before anything else is written here.
    func expect(_ slot: Slot) {
        inflight.append(slot)
        expected &+= 1
        if slot.isBlocking { blockingThrough = expected }
    }

    /// Moves a run of client requests (the first `length` bytes of its input) to this connection.
    func send(from client: Connection, length: Int) {
        guard let connection else {
            // Not reached: callers check `isUsable` (a connection that is not down exists), and
            // nothing closes it between that check and this move. The bytes are dropped rather
            // than left to be parsed again.
            client.discardInput(length)
            return
        }
        client.moveInput(length, to: connection)
    }

    /// Makes the connection's db match `db`, injecting SELECT when it differs.
    func select(_ db: Int) {
        if self.db != db {
            inject(["SELECT", String(db)], label: "SELECT")
            self.db = db
        }
    }

    /// The session sent HELLO itself on this (dedicated) connection.
    func assumeProtocol(_ version: Int) { protocolVersion = version }

    /// Makes the connection speak `version`, injecting HELLO when it differs (dedicated only).
    func useProtocol(_ version: Int) {
        if protocolVersion != version {
            inject(["HELLO", String(version)], label: "HELLO")
            protocolVersion = version
        }
    }

    // MARK: reading

    /// A relayed connection whose stream waits while the ambassador fetches one reply from
    /// another shard (see `ClientSession.takeRelayedRedirection`): nothing more is delivered.
    private(set) var relayHeld = false

    func holdRelay() {
        relayHeld = true
        connection?.pauseReading()
    }

    /// The stream goes on: what arrived meanwhile is delivered, then reading resumes.
    func releaseRelay() {
        guard relayHeld else { return }
        relayHeld = false
        guard let connection else { return }
        connection.resumeReading()
        connectionDidRead(connection)
    }

    func connectionDidRead(_ connection: Connection) {
        if tunnel, let owner { return owner.tunneled(connection) }
        // Entered again from a delivery (a relay released on this connection): the loop below
        // goes on with whatever is left, in order.
        guard !reading else { return }
        reading = true
        defer { reading = false }
        while !relayHeld && connection.inputCount > pendingReplyBytes + scanner.consumed {
            // Up to 16 complete replies from one look at the input (one evbuffer_peek, not one
            // per reply), then delivered one by one.
            var frames = InlineArray<16, ReplyFrame>(repeating: ReplyFrame(length: 0, type: 0))
            var count = 0
            var failure: ProtocolError?
            connection.withInputChunks(from: pendingReplyBytes + scanner.consumed) { chunk in
                var index = 0
                do throws(ProtocolError) {
                    while let frame = try scanner.scan(chunk, from: &index) {
                        frames[count] = frame
                        count += 1
                        if count == frames.count { return false }
                    }
                } catch {
                    failure = error
                    return false
                }
                return true
            }
            // The bytes from the next reply on: each delivery takes exactly its reply's bytes
            // from the front (moved, dropped or added to the pending run).
            var ahead = connection.inputCount - pendingReplyBytes
            var delivered = 0, rescan = false
            while delivered < count {
                let frame = frames[delivered]
                deliver(frame, from: connection)
                if self.connection !== connection {  // closed while delivering
                    flushReplies(from: connection)
                    return
                }
                delivered += 1
                ahead -= frame.length
                if connection.inputCount - pendingReplyBytes != ahead || (relayHeld && delivered < count) {
                    // The input changed otherwise, or the stream is held: what was scanned past
                    // this reply is scanned again when reading goes on.
                    scanner = ReplyScanner()
                    rescan = true
                    break
                }
            }
            if rescan { continue }
            if let failure {
                flushReplies()
                proxy.stats.error(.backendProtocol)
                proxy.logger.error("\(backend.role) \(backend.address) sent invalid RESP (\(failure)); reconnecting")
                connection.close(flush: false)
                return
            }
            if count == 0 {
                skipAbandonedReply(connection)
                break
            }
        }
        flushReplies()
    }

    /// The reply at the front, still arriving, is a large bulk string whose client has left:
    /// the rest of it is dropped as it comes (`Connection.skipArriving`: no copy, no buffering)
    /// instead of read whole and then dropped. A client that pipelines GETs of a large value
    /// and hangs up would otherwise leave the ambassador copying every byte of every reply, and
    /// everyone behind them on this shared connection waiting (a direct Redis drops a client's
    /// output when it hangs up; here the requests have already gone out).
    private func skipAbandonedReply(_ connection: Connection) {
        guard batchesReplies, pendingReplyBytes == 0, !connection.isTLS, connection.skipping == 0,
              let slot = inflight.first, slot.kind == .client, slot.session == nil,
              connection.inputStarts(with: Self.bulkMarker) else { return }
        var head: [UInt8] = []
        connection.copyInput(from: 0, count: min(connection.inputCount, 24), into: &head)
        guard let end = head.firstIndex(of: UInt8(ascii: "\r")), end + 1 < head.count, head[end + 1] == UInt8(ascii: "\n"),
              let length = Int(String(decoding: head[1..<end], as: UTF8.self)), length >= 0 else { return }
        let remaining = end + 2 + length + 2 - connection.inputCount
        guard remaining >= Self.skipThreshold else { return }
        _ = takeAnswered()
        proxy.skippedReplyBytes &+= remaining
        scanner = ReplyScanner()
        connection.discardInput(connection.inputCount)
        connection.skipArriving(remaining)
        proxy.slots.give(slot)
        closeIfRetiredAndDrained()
    }

    static let bulkMarker = Array("$".utf8)
    /// Replies this much short of whole, or more, are skipped rather than read (see
    /// `skipAbandonedReply`).
    static let skipThreshold = 16 * 1024

    /// `connectionDidRead` is running (see there).
    private var reading = false

    /// A session's reply, next in its order, joins the pending run (see `pendingSession`).
    func deferReply(_ length: Int, for session: ClientSession) {
        if pendingSession !== session || pendingKept { flushReplies() }
        pendingSession = session
        pendingReplyBytes += length
    }

    /// A session's reply that came before its turn: it joins a pending run of such replies,
    /// which goes into the session's `replyLog` when the run ends (see `flushReplies`). A
    /// large one, or one on a connection that does not batch, is taken at once.
    ///
    /// The slot is ready at once, its place in the log known: nothing else goes into that log
    /// before the run does (the session's replies from other connections come in their own
    /// callbacks; any other use of this input ends the run first), and a session about to
    /// write its replies ends the run first (`ClientSession.keptPendingOn`).
    func keepReply(_ length: Int, for slot: Slot, of session: ClientSession) {
        guard batchesReplies, length <= Slot.shortReplyLimit else { return moveReply(length, to: slot, of: session) }
        if pendingSession !== session || !pendingKept {
            flushReplies()
            pendingSession = session
            pendingKept = true
            session.keptPendingOn = self
        }
        slot.replyAt = session.replyLog.end + pendingReplyBytes
        slot.replyCount = length
        slot.ready = true
        pendingReplyBytes += length
    }

    /// Moves the pending replies to their client (or, replies out of turn, into its log).
    func flushReplies() {
        if let connection { flushReplies(from: connection) }
    }

    private func flushReplies(from connection: Connection) {
        guard let session = pendingSession else { return }
        let count = pendingReplyBytes
        pendingSession = nil
        pendingReplyBytes = 0
        if pendingKept {
            // Where `keepReply` placed them (a client that left meanwhile gave its slots back;
            // the bytes still leave the input).
            pendingKept = false
            session.keptPendingOn = nil
            session.makeReplyRoom(count)
            let position = connection.removeInput(count, into: session.replyLog)
            assert(position + count == session.replyLog.end, "a kept run landed elsewhere than keepReply placed it")
            return
        }
        connection.moveInput(count, to: session.connection)
        session.checkOutputCap()
    }

    /// Drops the reply at the front of the input (after the pending run).
    func discardReply(_ length: Int) {
        flushReplies()
        connection?.discardInput(length)
    }

    /// Takes the reply at the front of the input (after the pending run) for `slot`, where it
    /// waits for its turn (see `Slot.replyAt`).
    func moveReply(_ length: Int, to slot: Slot, of session: ClientSession) {
        flushReplies()
        slot.ready = true
        guard let connection else { return }
        if length <= Slot.shortReplyLimit {
            session.makeReplyRoom(length)
            slot.replyAt = connection.removeInput(length, into: session.replyLog)
            slot.replyCount = length
        } else {
            connection.moveInput(length, to: slot.reply)
            slot.large = true
        }
    }

    /// Whether replies may wait in a pending run: only on shared connections, whose slots are
    /// all matched replies.
    var batchesReplies: Bool { !dedicated && !relay }

    private func deliver(_ frame: ReplyFrame, from connection: Connection) {
        // Only a session's in-order replies wait in the pending run; anything else that reads
        // or drops input bytes finds its frame at the front.
        if frame.isError { flushReplies() }
        // Requests queued before relaying began (an injected SELECT or HELLO) are answered first;
        // a push (RESP3: an invalidation, a message) answers none of them and is relayed as it comes.
        if relay, inflight.isEmpty || frame.type == UInt8(ascii: ">"), let owner {
            flushReplies()
            owner.relayed(frame, from: connection, backend: self)
            return
        }
        guard let slot = takeAnswered() else {
            flushReplies()
            // Nothing asked for this (a push frame on a shared connection): drop it.
            proxy.logger.debug("unrequested reply from \(backend.address) dropped")
            connection.discardInput(frame.length)
            return
        }
        switch slot.kind {
        case .client:
            if frame.isError, slot.redirectsLeft > 0, let session = slot.session,
               let redirection = clusterRedirection(frame, from: connection) {
                // -MOVED, -ASK, -TRYAGAIN from a cluster shard: the request goes where it says.
                connection.discardInput(frame.length)
                session.redirect(slot, redirection, from: backend)
            } else if frame.isError, slot.redirectsLeft == 0, proxy.clustered, let session = slot.session,
                      let redirection = clusterRedirection(frame, from: connection),
                      redirection.kind == .moved || redirection.kind == .ask {
                // Inside a transaction (nothing kept to send again): the map follows, and the
                // client gets an error that keeps it talking to the ambassador.
                connection.discardInput(frame.length)
                session.redirectedInTransaction(slot, redirection, from: backend)
            } else if frame.isError, slot.retriesLeft > 0, backend.role == .replica, let session = slot.session,
               retryable(frame, from: connection, slot: slot) {
                // -LOADING, -MASTERDOWN (or -NOSCRIPT for EVALSHA_RO): the read goes to another
                // eligible node, then the master, before the client sees an error.
                connection.discardInput(frame.length)
                if backend.group.retryRead(slot, after: backend) {
                    break
                }
                session.fail(slot, "ERR ambassador: no other node could serve the read")
            } else if let session = slot.session {
                session.completed(slot, length: frame.length, from: self, isError: frame.isError)
            } else {
                flushReplies()
                connection.discardInput(frame.length)  // its client left: read and drop
                proxy.slots.give(slot)
            }
        case .injected:
            flushReplies()
            if frame.isError && !slot.expectsError {
                let text = String(decoding: Self.copy(connection, frame.length), as: UTF8.self)
                proxy.logger.error("\(slot.label) on \(backend.role) \(backend.address) failed: \(text.trimmed)")
            }
            connection.discardInput(frame.length)
            proxy.slots.give(slot)
        case .probe:
            flushReplies()
            let bytes = Self.copy(connection, frame.length)
            connection.discardInput(frame.length)
            slot.probe?(bytes)
            proxy.slots.give(slot)
        }
        if dedicated, let owner, inflight.isEmpty {
            if authStale { owner.pinnedConnectionMayReauthenticate(self) }
            owner.pinnedConnectionIdle(self)
        }
        closeIfRetiredAndDrained()
    }

    /// The oldest request here is answered: its slot leaves the queue.
    @inline(__always)
    private func takeAnswered() -> Slot? {
        guard let slot = inflight.popFirst() else { return nil }
        answered &+= 1
        failedAttempts = 0
        if answered < blockingThrough { unblockAbandonedWait() }  // a WAIT behind: is it abandoned?
        return slot
    }

    /// A shared connection of a backend that left the config closes once nothing is owed on it.
    private func closeIfRetiredAndDrained() {
        guard backend.removed, !dedicated, inflight.isEmpty else { return }
        flushReplies()
        close()
        backend.checkDrained()
    }

    /// Whether a replica's error reply means "try elsewhere"; LOADING and MASTERDOWN also take
    /// the replica out of the read rotation until a later health check.
    /// (Compared in place: an application that meets many error replies on a replica, WRONGTYPE
    /// say, pays no copy for this check.)
    private func retryable(_ frame: ReplyFrame, from connection: Connection, slot: Slot) -> Bool {
        let name: StaticString? = connection.inputStarts(with: Self.loading) ? "LOADING"
            : connection.inputStarts(with: Self.masterDown) ? "MASTERDOWN" : nil
        if let name {
            if backend.suspendedAt == nil {
                backend.suspendedAt = proxy.loop.now
                proxy.logger.warning("replica \(backend.address) answered \(name): no reads until the next health check")
            }
            return true
        }
        return slot.isEvalshaRO && connection.inputStarts(with: Self.noScript)
    }

    /// A cluster's redirection, when the error at the front of the input is one (compared in
    /// place first: other errors cost no copy).
    private func clusterRedirection(_ frame: ReplyFrame, from connection: Connection) -> ClusterRedirection? {
        guard connection.inputStarts(with: Self.moved) || connection.inputStarts(with: Self.ask)
            || connection.inputStarts(with: Self.tryAgain) || connection.inputStarts(with: Self.clusterDown) else { return nil }
        return ClusterRedirection(Self.copy(connection, min(frame.length, 512)))
    }

    static let moved = Array("-MOVED ".utf8)
    static let ask = Array("-ASK ".utf8)
    static let tryAgain = Array("-TRYAGAIN".utf8)
    static let clusterDown = Array("-CLUSTERDOWN".utf8)
    static let loading = Array("-LOADING".utf8)
    static let masterDown = Array("-MASTERDOWN".utf8)
    static let noScript = Array("-NOSCRIPT".utf8)

    static func copy(_ connection: Connection, _ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        connection.copyInput(from: 0, count: count, into: &bytes)
        return bytes
    }

    // MARK: closing

    func connectionDidClose(_ connection: Connection, error: SocketError?) {
        guard self.connection === connection else { return }
        forgetOwnAddress()
        let wasUp = state == .up
        state = .down
        // A run of replies read before the close still reaches its session (its slots count
        // on those bytes).
        flushReplies(from: connection)
        self.connection = nil
        uncount()
        let why = error.map { "\($0)" } ?? "closed by the server"
        if wasUp {
            proxy.logger.warning("lost \(backend.role) \(backend.address)\(dedicated ? " (dedicated)" : overflow ? " (overflow)" : ""): \(why)")
        } else {
            logCannotConnect(why)
        }
        failInflight(sent: wasUp)
        failReason = nil
        backend.connectionDown(self, wasUp: wasUp)
        if let owner {
            self.owner = nil
            owner.pinnedConnectionLost(self)
        }
        if backend.removed { return backend.checkDrained() }
        scheduleReconnect()
    }

    /// Every request still waiting here gets an error reply — or, for a read that may be retried,
    /// another backend.
    private func failInflight(sent: Bool = true) {
        let pending = inflight
        inflight.removeAll()
        answered &+= pending.count
        for slot in pending {
            switch slot.kind {
            case .client:
                guard let session = slot.session else {
                    proxy.slots.give(slot)
                    continue
                }
                if slot.retriesLeft > 0, backend.group.retryRead(slot, after: backend) { continue }
                // A cluster request kept for redirection that never reached Redis (the connection
                // never came up), or that only reads: it waits for the shard's master instead.
                if slot.redirectsLeft > 0, !sent || !slot.isWrite, failReason == nil {
                    session.resendWhenMasterConfirmed(slot, from: backend)
                    continue
                }
                proxy.stats.error(.backendLost)
                let why = failReason.map { "reset (\($0))" } ?? "lost"
                session.fail(slot, "ERR ambassador: connection to \(backend.role) \(backend.address) \(why) before it replied")
            case .injected:
                proxy.slots.give(slot)
            case .probe:
                // No reply will come: the handler sees nothing (and may ask again).
                let handler = slot.probe
                proxy.slots.give(slot)
                handler?([])
            }
        }
    }

    private func uncount() {
        guard counted else { return }
        counted = false
        proxy.stats.metrics.backendConnection(backend.address.description, role: backend.role.rawValue,
                                              open: -1, up: isRegularShared ? -1 : 0)
    }

    func reconnectNow() {
        guard state == .down, !backend.removed else { return }
        reconnectTimer?.cancel()
        open()
    }

    /// When the oldest request still waiting here was sent (loop µs).
    /// (A WAIT at the front may legitimately take its whole timeout.)
    var oldestRequestStarted: Int? {
        guard let first = inflight.first, !first.isBlocking else { return nil }
        return first.started
    }

    /// Drops the connection (as if the server had closed it): requests in flight fail or, for
    /// reads, are retried elsewhere; a shared connection reconnects.
    func reset(reason: String) {
        guard let connection, state != .down else { return }
        proxy.logger.warning("resetting connection to \(backend.role) \(backend.address): \(reason)")
        failReason = reason
        connection.close(flush: false)
    }

    /// For a retired backend: close now if nothing is in flight, else after the last reply.
    func closeWhenIdle() {
        reconnectTimer?.cancel()
        if inflight.isEmpty && owner == nil { close() }
    }

    /// Closes for good (a dedicated connection not worth pooling, or shutdown).
    private func forgetOwnAddress() {
        if let ownAddress { OwnConnections.remove(ownAddress) }
        ownAddress = nil
    }

    func close() {
        forgetOwnAddress()
        uncount()
        reconnectTimer?.cancel()
        owner = nil
        relay = false
        if let connection {
            flushReplies(from: connection)
            self.connection = nil
            state = .down
            failInflight()
            connection.delegate = nil
            connection.close(flush: false)
        }
    }
}
