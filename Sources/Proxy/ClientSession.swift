import Synchronization
import DequeModule
import EventLoop
import RESP
import Routing

/// One application connection: its requests, in order, to wherever each goes, and its replies,
/// in the same order, back.
///
/// A request's life (each arrow is the function that makes the move):
///
///     input bytes
///       │ processInput: parse a frame at input.count + parser.position
///       ▼
///     parsed ──dispatch──┬─▶ dropped         blank frame, refused, unavailable: input.drop
///       │                ├─▶ answered here   local (PING, CLIENT …): answer / enqueue+fill
///       │                ├─▶ held            hold = .barrier (SELECT, AUTH, MULTI … with replies
///       │                │                   owed) or .master (none confirmed: holdForMaster);
///       │                │                   waits at the input's front, reading paused, until
///       │                │                   resume() / masterAvailable()
///       │                ├─▶ in the run      read / write / master: enqueue a Slot, then
///       │                │                   send → input.append (bytes wait to move together)
///       │                └─▶ pinned          stateful: pin → dispatchPinned on the dedicated
///       │                                    connection (a Slot), or relaying (no Slot)
///       ▼
///     sent              input.move: the run's bytes go to their BackendConnection
///       │ BackendConnection.deliver → completed (or fail / fill)
///       ▼
///     answered          head of `replies`: its bytes move to the client now (or in the
///       │               backend's pending run); not the head: they wait in the Slot
///       │ replies.flush — only writes
///       ▼
///     written           nothing owed: scheduleResume → after the callback, resume():
///                       close if due, dispatch the held frame, processInput again
///
/// Where the session's commands go is `pin` (`PinState`: shared, pinned, relaying). Invariants:
/// replies leave in request order; a session's requests to one backend stay on one connection
/// while any is unanswered (`bindings`); input bytes leave only through `InputRun` (its move
/// comes first); nothing runs inside a backend connection's delivery except filling slots.
final class ClientSession: ConnectionDelegate, DeferredWork, DispatchContext {
    /// Strong, on purpose: the proxy lives as long as its loop, and an `unowned` reference costs
    /// a checked retain and a release at every use (about 6% of the instructions per command).
    let proxy: Proxy
    let connection: Connection
    let id: Int64
    var parser: RequestParser
    /// Requests whose replies the client has not been sent yet, oldest first.
    private(set) var replies = ReplyQueue()
    /// A resume is due after the current callback (see `scheduleResume`).
    private var resumeScheduled = false
    /// When the client's output was corked (loop µs), -1 when it is not (see `endBatch`).
    private(set) var corkedAt = -1
    /// In the proxy's list of corked sessions (see `Proxy.corkStarted`).
    var inCorkList = false
    var db = 0
    var protocolVersion = 2
    var name: [UInt8]?
    /// Which connection the session's commands go to. Setting it keeps the proxy's count of
    /// pinned sessions and the connection's relay flag in step (the one place that does).
    var pin: PinState = .shared {
        didSet {
            let (wasMonitor, isMonitor) = (oldValue.state == .monitor, pin.state == .monitor)
            if wasMonitor != isMonitor { Self.monitors.add(isMonitor ? 1 : -1, ordering: .relaxed) }
            let (old, new) = (oldValue.connection, pin.connection)
            if (old == nil) != (new == nil) { proxy.pinnedSessions += new == nil ? -1 : 1 }
            if let old, old !== new { old.relay = false }
            new?.relay = pin.isRelaying
        }
    }
    /// The dedicated master connection, while the session's state needs one.
    var pinned: BackendConnection? { pin.connection }
    var inMulti = false
    /// discovery: cluster — commands a relaying session sent on its dedicated connection whose
    /// keys live on another shard, oldest first: that node's -MOVED (or -ASK) for each marks its
    /// place in the relayed stream (see `takeRelayedRedirection`).
    var relayForeign: [ForeignCommand] = []
    /// Cluster requests redirected and waiting to be sent again, in request order (see
    /// `ClientSession.redirect`); while any waits, new commands wait behind the replies owed.
    var waitingRedirects: [WaitingRedirect] = []
    /// Answers the ambassador owes in a relayed stream, each behind the ECHO of its marker
    /// (see `answerInRelayedStream`).
    var relayMarkers: [(marker: [UInt8], answer: [UInt8])] = []
    /// CLIENT TRACKINGINFO commands relayed whose reply has not come back yet: its redirect is
    /// Redis's id of a dedicated connection, written as the app id (see `rewriteTrackingInfo`).
    var trackingInfoPending = 0
    var relayMarkerCount: UInt64 = 0
    /// While set, `answer` collects the bytes here instead of writing them.
    var capturedAnswer: [UInt8]?
    /// The session configured or inspected the server (CONFIG SET, CONFIG RESETSTAT, SLOWLOG,
    /// LATENCY, DEBUG …): a tool or a test, not app traffic. Its reads go to the master from then
    /// on (until RESET), so what it inspects there (the slow log, commandstats, an LFU counter)
    /// covers them, as it would on one Redis.
    var readsFromMaster = false
    /// Subscribed in RESP2: Redis refuses most commands in that context.
    var isRESP2Subscriber: Bool {
        protocolVersion == 2 && !(channels.isEmpty && patterns.isEmpty && shardChannels.isEmpty)
    }
    /// After SYNC or PSYNC: the session is a replica of the master, its bytes passed through
    /// both ways unparsed (see `startTunnel`).
    var tunnel: BackendConnection?
    /// The connection that answered the PING sent ahead of SYNC (see `startTunnel`).
    weak var tunnelReady: BackendConnection?
    /// discovery: cluster — a relaying session's dedicated connections to the other shards'
    /// masters, for what one node says only of its own keys: CLIENT TRACKING's invalidations
    /// (its commands for that shard's keys run there) and keyspace notifications (its
    /// subscriptions to them are made there too). Keyed by the shard's group. See
    /// `ClientSession+ShardConnections.swift`.
    var shardConnections: [ObjectIdentifier: BackendConnection] = [:]
    /// The session's subscriptions that shard connections hold too (node-local channels, and
    /// patterns that may match them).
    var mirroredChannels: Set<[UInt8]> = []
    var mirroredPatterns: Set<[UInt8]> = []
    /// MONITOR runs on every shard connection too.
    var monitoringShards = false
    /// MONITOR on each replica too (reads served there), lines of read commands only.
    var replicaMonitors: [BackendConnection] = []
    /// Sessions in MONITOR, every worker's.
    static let monitors = Atomic<Int>(0)
    /// The session's last CLIENT TRACKING request, as sent: replayed on a shard's connection
    /// opened later.
    var trackingRequest: [UInt8]?
    /// CLIENT TRACKING … REDIRECT: the request for each other shard's connection, naming the
    /// redirect target's connection to that node (see `redirectRewrite`).
    var redirectRequests: [ObjectIdentifier: [UInt8]] = [:]
    /// Shard connections this session ever subscribed on (their RESP2 arrays may be messages).
    var subscribedShards: Set<ObjectIdentifier> = []
    /// The CLIENT CACHING request relayed just before, if the last one was: it applies to the
    /// next command, which may run on another shard's connection.
    var cachingRequest: [UInt8]?
    /// The relayed connection waiting while another shard's tracking connection answers a command.
    weak var heldForShard: BackendConnection?
    /// What each shard connection still owes for the mirrored commands it was sent, in order (a
    /// confirmation per name, MONITOR's +OK, a reply to CLIENT TRACKING), and the relayed
    /// connection waiting while any is owed: the client's own reply (the relayed connection's)
    /// goes out once every node holds the subscription, the tracking or the MONITOR, as one
    /// Redis answers only once the next message, invalidation or command would reach the client.
    var owedByShard: [ObjectIdentifier: [Int]] = [:]
    weak var heldForShardReplies: BackendConnection?
    /// The relayed connection's confirmations (or +OK) of mirrored commands, still to reach the
    /// client; meanwhile the shard connections that have confirmed wait (`gatedShards`), so
    /// nothing they send (a message, a MONITOR line, an invalidation) overtakes them.
    var relayGate = 0
    var gatedShards: [BackendConnection] = []
    /// discovery: cluster — CLIENT REPLY, kept here (the session's commands run on many
    /// connections): OFF silences every reply, SKIP the next command's; `silentCommand` is
    /// whether the command being dispatched gets none (decided when it is read: see
    /// `beginCommand`).
    var replyMode = ReplyMode.on
    var silentCommand = false
    /// discovery: cluster — MULTI was answered here and waits for the transaction's first
    /// command, whose keys choose the shard (see `queueInDeferredTransaction`).
    var deferredMulti = false
    /// discovery: cluster — a transaction started on the first shard for keyless commands (PING,
    /// ECHO …) before any key named its shard: their requests, replayed on the shard of the first
    /// keyed command if that is another (see `moveTransaction`). nil once a key decided.
    var keylessQueued: [[UInt8]]?
    var watching = false
    /// A command that makes the connection stream (SUBSCRIBE, CLIENT TRACKING …) is queued in
    /// the transaction: it takes effect at EXEC, which therefore starts relaying.
    var relayAfterExec: StatefulKind?
    /// A command kept at the front of the input instead of dispatched, and what it waits for.
    var hold: Hold = .none
    /// A command the ambassador answers itself, asked of a master that may be busy first (see
    /// `gateWhileBusy`).
    var busyCheck: BusyCheck = .none
    /// A CLIENT SETNAME is queued in this session's transaction (see `learnNameAfterExec`).
    var nameQueued = false
    /// The last name queued is empty (it clears the name).
    var queuedNameClears = false
    /// The name a transaction may have set is being asked for.
    var namePending = false
    /// How the session ends: not yet, after the replies owed (QUIT, malformed input), or
    /// serving what it already read (shutdown).
    private var ending: Ending = .open
    /// When the current command started waiting for a master (loop µs; 0: not waiting). Kept
    /// across re-checks, so `failover_hold` counts from the first wait.
    var holdStarted = 0
    var waitingSince: Int { holdStarted }
    /// Read-your-writes: when the session last sent a write (loop µs), and when the last write's
    /// reply arrived (wall clock seconds, for the offset mode).
    var lastWriteMicroseconds = 0
    /// The replica the current input batch's reads go to (see `processInput`), and how many.
    private var batchReplica: Int?
    private var batchReads = 0
    /// The node this session's SCAN-family cursor walks run on (see `forwardRead`).
    private var scanNode: Backend?
    /// Requests routed to one backend connection whose bytes still lie at the front of the input
    /// (see `InputRun`, which keeps the rule that they move before anything else touches it):
    /// consecutive requests for one backend connection move in one evbuffer_remove_buffer
    /// (whole chains, no copy) instead of one partial-chain copy each. Their slots are already in
    /// the connection's `inflight`; anything else that touches the input moves them first.
    var input = InputRun()
    var pendingBytes: Int { input.count }
    /// Where this session's requests to each backend go: the shared connection it used last
    /// there, and that connection's `expected` count after its last request. While
    /// `answered < through` the session has requests outstanding there, and its next ones
    /// follow them on the same connection (Redis runs one connection's commands in order);
    /// after that it may move (see `Backend.connection(for:urgent:)`). A handful of entries,
    /// one per backend the session uses.
    private struct Binding {
        let connection: BackendConnection
        var through: Int
        /// The connection's and its backend's identities: the searches below compare these,
        /// without taking a reference to the connection for each binding they pass.
        let connectionID: ObjectIdentifier
        let backendID: ObjectIdentifier

        init(connection: BackendConnection, through: Int) {
            self.connection = connection
            self.through = through
            connectionID = ObjectIdentifier(connection)
            backendID = ObjectIdentifier(connection.backend)
        }
    }
    private var bindings: [Binding] = []
    /// The shared master connection this session's last write went out on, and its generation
    /// then: Redis counts a WAIT's acknowledgements from the offset of the last write *of the
    /// connection it runs on*, so the session's WAIT runs there.
    var lastWriteConnection: BackendConnection?
    var lastWriteGeneration = 0
    /// discovery: cluster — for each master the session wrote to, the shared connection its
    /// last write there went out on (and that connection's generation then): a WAIT after
    /// writes to several shards runs on each of them (see `shardWaitConnections`). A handful
    /// of entries, one per master written.
    struct ShardWrite {
        let connection: BackendConnection
        let generation: Int
        let backendID: ObjectIdentifier
    }
    var shardWrites: [ShardWrite] = []
    var writesInFlight = 0
    /// Read-your-writes by offset: the master probe that covers the session's last answered
    /// write (0: it wrote nothing; -1: it wrote, and no probe was asked for yet), and the
    /// offset that probe reported once known (-1 before).
    private var floorProbe = 0
    private var floorOffset: Int64 = -1
    /// discovery: cluster — the shard tracker `floorProbe` was asked of.
    private var floorTracker: ObjectIdentifier?
    /// read_your_writes: app — what the read being routed needs for its keys (see `KeyWrites`);
    /// nil: a write to one of them is not on any replica yet.
    private(set) var readKeyFloor: Int64? = 0
    /// The loop's time when the current command was dispatched (read once per command: the
    /// clock read is a libevent call).
    private var dispatchNow = 0
    /// discovery: cluster — the frame last parsed is copied into `requestLog` (at `frameAt`)
    /// when it lay whole in one chunk (`frameKept`): its request keeps it for a redirection
    /// (see `keepForRedirect`).
    let keepsFrames: Bool
    let requestLog = ByteLog()
    var frameAt = 0
    var frameKept = false
    /// Short replies that came back out of turn, waiting for the replies before them (see
    /// `Slot.replyAt`): one buffer filled front to back, so a pipeline's replies from several
    /// shards or nodes land next to each other, not in the storage of whichever pooled slot.
    let replyLog = ByteLog()
    /// The backend connection whose pending run holds replies of this session kept out of
    /// turn: their slots are ready, their bytes not yet in `replyLog` (see
    /// `BackendConnection.keepReply`). Writing replies ends that run first.
    var keptPendingOn: BackendConnection?
    /// Where the binding `sharedConnection(to:)` used last sits in `bindings` (saves `send` a search).
    private var lastBinding = 0

    /// The replication offset a replica needs for this session's reads (0: any); nil while a
    /// write is in flight or its offset is not known yet (see `ReplicationTracker`).
    ///
    /// The master is probed for the offset when the session first reads after writing, not when
    /// the write is answered: a probe sent later still covers the write (offsets only grow), and
    /// a session that only writes (a writer of a read/write split, a loader) then costs the
    /// master no ROLE per write. That first read goes to the master, which has every write.
    @inline(__always)
    func readFloor(_ tracker: ReplicationTracker) -> Int64? {
        if writesInFlight > 0 { return nil }
        if floorProbe == 0 { return 0 }
        if proxy.clustered && floorProbe > 0 && floorTracker != ObjectIdentifier(tracker) {
            // A cluster: offsets belong to one shard's replication stream. A read on another
            // shard than the one probed asks that shard's master (whose offset covers every
            // write the session made there: offsets only grow).
            floorProbe = -1
            floorOffset = -1
        }
        if floorProbe < 0 {
            floorProbe = tracker.probeAfterWrite()
            if proxy.clustered { floorTracker = ObjectIdentifier(tracker) }
            return nil
        }
        if floorOffset < 0 {
            guard let offset = tracker.floor(forProbe: floorProbe) else { return nil }
            floorOffset = max(offset, 1)
        }
        return floorOffset
    }
    // MARK: DispatchContext (what CommandRouter reads)

    var repliesOwed: Bool { !replies.isEmpty }
    var passesLoginsThrough: Bool { proxy.passesLoginsThrough }
    /// The master and replicas this session's commands go to. A strong `let`: looked up through
    /// the proxy, or held `unowned(unsafe)` or in a `var`, every use retained and released it
    /// (callgrind: +100 to +150 instructions per request, 4,177 → 4,300-4,400).
    let group: ReplicationGroup
    var masterConfirmed: Bool { group.masterConfirmed }
    var masterWritable: Bool { group.masterWritable(for: self) }
    var hasWriteConnection: Bool { waitConnection(group) != nil }
    var pinsTools: Bool { !proxy.clustered }
    /// A tool's session, pinned to a dedicated master connection until RESET (see
    /// `CommandRouter.pinTool`).
    var isPinnedTool: Bool { readsFromMaster && pinsTools }

    var encoder = RESPEncoder()
    /// For CLIENT LIST / INFO: when the connection was accepted and last ran a command (loop
    /// µs), that command's name and first argument, the login, the channels and patterns it is
    /// subscribed to, commands queued in MULTI, the CLIENT TRACKING redirect (an app id).
    let createdAt: Int
    var lastCommandAt: Int
    var lastCommand = ShortBytes()
    var lastArgument = ShortBytes()
    var user = "default"
    /// Past `clients` authentication (always, when the config asks none; a session opened before
    /// it was asked stays so, as a Redis connection does when requirepass is set).
    var authenticated: Bool
    /// The app's own login (AUTH passed through to Redis): its number, 0 for none.
    private(set) var loginIndex = 0
    /// An AUTH (or HELLO … AUTH) is being checked by the master: nothing after it is
    /// dispatched until it is answered (the next commands run as its user).
    var awaitingLogin = false

    func loggedIn(as login: Login?) {
        loginIndex = login.map { proxy.loginIndex(for: $0) } ?? 0
        user = login?.user ?? "default"
        bindings.removeAll()
        lastWriteConnection = nil
        shardWrites.removeAll()
    }
    var channels: Set<[UInt8]> = []
    var patterns: Set<[UInt8]> = []
    var shardChannels: Set<[UInt8]> = []
    var queued = 0
    var trackingRedirect: Int64 = -1
    var tracking = false
    /// The state that pinned the session (a blocking command's session is "blocked" while it
    /// waits on the dedicated connection).
    var pinnedState: StatefulKind? { pin.state }
    var isInMulti: Bool { inMulti || deferredMulti }
    var isBlocked: Bool { pinnedState == .blocking && !(pinned?.inflight.isEmpty ?? true) }
    var pinnedConnection: BackendConnection? { pinned }
    /// Replies waiting for a client that reads slowly, at most: past this the ambassador stops
    /// reading its requests until it catches up (checked whenever replies are written to it).
    static let maxOutput = 64 << 20

    /// Replies were just written to the client: over `maxOutput`, stop reading it now (reading
    /// resumes when its output drains: `connectionDidDrainOutput`).
    @inline(__always)
    func checkOutputCap() {
        if connection.outputCount > Self.maxOutput { connection.pauseReading() }
    }

    /// Relayed bytes (pub/sub messages, MONITOR lines) waiting for a client that reads slowly, at
    /// most: past this the ambassador stops reading the relayed connection (see `relayed`).
    static let maxRelayOutput = 8 << 20

    /// Most requests in flight before the ambassador stops reading from this client.
    static let maxPipeline = 8192

    init(proxy: Proxy, connection: Connection, id: Int64) {
        self.proxy = proxy
        group = proxy.primary
        self.connection = connection
        self.id = id
        parser = RequestParser(limits: proxy.limits)
        parser.hashesFirstArgument = proxy.clustered
        keepsFrames = proxy.clustered
        authenticated = !proxy.config.requiresClientAuth
        createdAt = proxy.loop.nowMicroseconds
        lastCommandAt = createdAt
    }

    // MARK: input

    func connectionDidRead(_ connection: Connection) {
        processInput()
    }

    /// A client that was slow to read caught up: read (and dispatch) its requests again, and
    /// what its relayed connection sends.
    func connectionDidDrainOutput(_ connection: Connection) {
        if pin.isRelaying { pinned?.resumeReading() }
        for shard in shardConnections.values { shard.resumeReading() }
        processInput()
    }

    /// Parses and dispatches every complete request in the input, unless one is held at a barrier.
    private func processInput() {
        if let tunnel { return tunnel.send(from: connection, length: connection.inputCount) }
        // The reads of one batch (what one read from the socket brought) stay on one replica:
        // split across replicas, a pipeline's replies would come back out of turn and wait in
        // slots (a copy each) instead of moving straight to the client. Balancing works across
        // batches and sessions.
        batchReplica = nil  // a held read dispatched outside a batch may have set it
        batchReads = 0
        defer { batchReplica = nil }
        while !hold.isHolding && !awaitingLogin && ending != .afterReplies && connection.inputCount > pendingBytes + parser.position {
            let frame: RequestFrame?
            do throws(ProtocolError) {
                frame = try connection.nextFrame(from: pendingBytes + parser.position) { chunk, index throws(ProtocolError) in
                    let start = index
                    let parsed = try parser.parse(chunk, from: &index)
                    if keepsFrames, let parsed {
                        // A cluster request keeps its bytes for a redirection: copied here, while
                        // they are in hand, when the frame lay whole in this chunk. What answered
                        // requests kept is let go when the log runs out of room.
                        frameKept = index - start == parsed.length
                        if !requestLog.fits(parsed.length) {
                            requestLog.release(upTo: replies.head?.logMark ?? requestLog.end)
                        }
                        frameAt = frameKept ? requestLog.append(chunk.extracting(start..<index)) : requestLog.end
                    }
                    return parsed
                }
            } catch {
                flushPending()
                return protocolError(error)
            }
            guard let frame else { break }
            if keepsFrames { beginCommand() }
            dispatch(frame)
        }
        flushPending()
        endBatch()
        applyBackPressure()
    }

    /// Moves the pending requests' bytes to their backend connection (see `InputRun`).
    @inline(__always)
    func flushPending() {
        input.move(from: connection)
    }

    /// Routes a request (its slot made) to `target`: its bytes join the pending run when they go
    /// to the same connection, and the run moves first when they do not, or when a SELECT must
    /// be injected ahead of them.
    private func send(_ frame: RequestFrame, to target: BackendConnection, slot: Slot) {
        if frame.length < Self.copySendLimit && (slot.keptAt >= 0 || keepsFrames && slot.retryRequest.count == frame.length) {
            // The copy kept for a redirection goes out instead (see `InputRun`).
            input.skip(frame.length, sendingTo: target, db: db, from: connection)
            writeKept(slot, to: target)
        } else {
            input.append(frame.length, to: target, db: db, from: connection)
        }
        target.expect(slot)
        let id = ObjectIdentifier(target)
        if lastBinding < bindings.count && bindings[lastBinding].connectionID == id {
            bindings[lastBinding].through = target.expected
            return
        }
        for i in bindings.indices where bindings[i].connectionID == id {
            bindings[i].through = target.expected
            return
        }
    }

    /// A cluster request shorter than this goes out from its redirection copy (one more small
    /// copy) rather than moving from the input; a larger one moves, whole chains uncopied.
    static let copySendLimit = 16 * 1024

    /// The shared connection for this session's next request to `backend`: where its earlier
    /// requests there still wait, else whichever the backend offers (its regular connection
    /// unless that one is stalled, or busy when the request is `large`). nil: its earlier
    /// requests wait where another session's WAIT now holds the connection after them, and the
    /// request must not queue behind that WAIT (see `holdBehindWait`).
    @inline(__always)
    private func sharedConnection(to backend: Backend, urgent: Bool = false, large: Bool = false) -> BackendConnection? {
        let id = ObjectIdentifier(backend)
        for i in bindings.indices where bindings[i].backendID == id {
            let bound = bindings[i].connection
            lastBinding = i
            if bound.answered < bindings[i].through { return bound.heldByWait(notOf: self) ? nil : bound }
            let chosen = backend.connection(for: self, urgent: urgent, large: large, now: dispatchNow)
            if chosen !== bound { bindings[i] = Binding(connection: chosen, through: 0) }
            return chosen
        }
        if bindings.count >= 8 { bindings.removeAll { $0.connection.answered >= $0.through } }
        let chosen = backend.connection(for: self, urgent: urgent, large: large, now: dispatchNow)
        lastBinding = bindings.count
        bindings.append(Binding(connection: chosen, through: 0))
        return chosen
    }

    private func applyBackPressure() {
        if replies.count >= Self.maxPipeline || connection.outputCount > Self.maxOutput {
            connection.pauseReading()
        } else if !hold.isHolding && ending == .open && !awaitingLogin {
            connection.resumeReading()
        }
    }

    /// Malformed input: Redis's error reply after the replies already owed, then close.
    private func protocolError(_ error: ProtocolError) {
        proxy.logger.debug("client \(id): \(error.message)")
        proxy.stats.error(.clientProtocol)
        input.dropAll(from: connection)
        encoder.clear()
        encoder.error("ERR \(error.message)")
        answer(encoder.bytes)
        ending = .afterReplies
        connection.pauseReading()
        closeIfDrained()
    }

    // MARK: dispatch

    private func dispatch(_ frame: RequestFrame) {
        if frame.argumentCount == 0 {  // *0, *-1, blank line: Redis ignores them silently
            input.drop(frame.length, from: connection)
            return
        }
        dispatchNow = proxy.loop.nowMicroseconds
        lastCommand = frame.name
        lastArgument = frame.firstArgument
        lastCommandAt = dispatchNow
        if let pinned {
            if readsFromMaster && (pinned.loginIndex != loginIndex || pinned.backend !== group.master) && repinTool(frame) {
                return
            } else if proxy.clustered && pinned.inflight.isEmpty && !inMulti && !watching && !pin.isRelaying {
                // A cluster session held a shard's master for a state now over (EXEC answered, a
                // blocking command served) while this frame waited at a barrier: it lets go, so
                // the frame is routed by its keys, as every one after it.
                unpin()
            } else {
                flushPending()
                endBatch()
                return dispatchPinned(frame, on: pinned)
            }
        }
        var command = proxy.table.command(frame, arguments: SessionArguments(session: self, frame: frame))
        if case .unknown = command.kind {
            // WAITAOF (Redis 7.2+) is WAIT's kin where the table predates it; other unknown
            // commands are classified from the master's COMMAND INFO once it has answered.
            if command.verb == .wait {
                command.kind = .stateful(.blocking)
            } else if let learned = proxy.learnedClass(of: frame.name) {
                command.kind = learned
            }
        }
        if !authenticated, let refusal = refusalBeforeAuthentication(command, frame) {
            input.drop(frame.length, from: connection)
            return answerError(refusal)
        }
        if let rules = proxy.commandRules, let refusal = refusal(by: rules, command, frame) {
            input.drop(frame.length, from: connection)
            return answerError(refusal)
        }
        // Only forwards join the pending run; everything else finds its frame at the input's front.
        switch command.kind {
        case .read, .write, .master, .unknown: break
        default:
            flushPending()
            endBatch()
        }
        if proxy.clustered { return dispatchClustered(frame, command) }
        perform(CommandRouter.route(command, self), frame, command, in: group)
    }

    /// Carries out the router's decision for a command whose keys belong to `group` (the one
    /// group, or a cluster shard's).
    @inline(__always)
    func perform(_ route: CommandRouter.Route, _ frame: RequestFrame, _ command: Command, in group: ReplicationGroup) {
        switch route {
        case .barrier:
            // Everything sent before must be answered first (see CommandRouter).
            hold = .barrier(frame)
            connection.pauseReading()
        case .local(let local):
            if local.refusedWhileBusy, gateWhileBusy(frame, forwardable: local == .ping || local == .echo, group) { return }
            if Self.describesSession(local), holdWhileNamePending(frame) { return }
            if (local == .ping || local == .echo) && (readsFromMaster || Self.monitors.load(ordering: .relaxed) > 0) {
                // Someone runs MONITOR, or this session inspects the server: Redis answers these
                // too, so they show there (and in its slow log and commandstats) as direct. Never
                // behind another session's request (a script just started may keep Redis busy):
                // Redis answers -BUSY then, as direct.
                return forward(frame, to: group.master, urgent: true)
            }
            if readsFromMaster, Self.shadowedOnMaster(local) {
                // The same for what only describes the session: Redis runs it too (its reply
                // dropped), so its commandstats and latency histograms count it; the answer is
                // the ambassador's.
                let target = group.master.connection(for: self, urgent: true, now: dispatchNow)
                if target.isUsable { shadow(frame, on: target) }
            }
            proxy.stats.answered(.local, .ok, microseconds: 0)
            answerLocally(local, frame)
        case .select:
            if gateWhileBusy(frame, forwardable: false, group) { return }
            // Each database has its own shared connections: commands sent before the switch
            // were done before any after it goes out on another connection (MOVE, SWAPDB,
            // FLUSHALL order across databases as on one direct connection).
            proxy.stats.answered(.local, .ok, microseconds: 0)
            select(frame)
        case .hello:
            proxy.stats.answered(.local, .ok, microseconds: 0)
            hello(frame)
        case .hold:
            holdForMaster(frame, group)
        case .waitOnWriteConnection:
            guard let target = waitConnection(group) else { return pin(frame, state: .blocking, on: group.master) }
            forwardWait(frame, on: target)
        case .pin(let state):
            if state == .monitor && (frame.name == Self.syncName || frame.name == Self.psyncName) {
                return startTunnel(frame, on: group.master)
            }
            pin(frame, state: state, on: group.master)
        case .read:
            forwardRead(frame, verb: command.verb, group)
        case .master(let write, let urgent):
            let unpauses = command.inspectsServer && noteServerCommand(frame)
            forward(frame, to: group.master, write: write, urgent: urgent)
            // CLIENT UNPAUSE ends the pause once it is on its way: itself, it must not queue
            // behind a paused write either.
            if unpauses { proxy.endPause() }
        }
    }

    /// AUTH, HELLO, QUIT and RESET (the table's `no_auth` commands): they run before
    /// authentication and whatever the `commands` rules say.
    private static func runsBeforeAuthentication(_ kind: CommandClass) -> Bool {
        switch kind {
        case .local(.auth), .local(.quit), .local(.reset), .stateful(.protocolVersion): return true
        default: return false
        }
    }

    /// Before `clients` authentication: Redis's checks in its order — an unknown command, a
    /// wrong number of arguments, then NOAUTH for all but AUTH, HELLO, QUIT and RESET (the
    /// table's `no_auth` commands). nil: the command may run.
    private func refusalBeforeAuthentication(_ command: Command, _ frame: RequestFrame) -> String? {
        switch command.kind {
        case _ where Self.runsBeforeAuthentication(command.kind):
            return nil
        case .unknown:
            let name = String(decoding: argumentBytes(0, of: frame).prefix(128), as: UTF8.self)
            var arguments = ""
            var index = 1
            while index < frame.argumentCount && arguments.utf8.count < 128 {
                let room = 128 - arguments.utf8.count
                arguments += "'" + String(decoding: argumentBytes(index, of: frame).prefix(room), as: UTF8.self) + "' "
                index += 1
            }
            return "ERR unknown command '\(name)', with args beginning with: \(arguments)"
        default:
            // A container's unknown subcommand is named before arity and authentication, as
            // Redis's processCommand does.
            let container = String(decoding: argumentBytes(0, of: frame), as: UTF8.self)
            if frame.argumentCount >= 2, !(proxy.table.info(container.lowercased())?.subcommands.isEmpty ?? true) {
                let subcommand = argumentBytes(1, of: frame)
                let sub = String(decoding: subcommand, as: UTF8.self).lowercased()
                if proxy.table.info("\(container.lowercased())|\(sub)") == nil {
                    let given = String(decoding: subcommand.prefix(128), as: UTF8.self)
                    return "ERR unknown subcommand '\(given)'. Try \(container.uppercased()) HELP."
                }
            }
            if let info = proxy.table.info(name: frame.name, firstArgument: frame.firstArgument),
               !info.acceptsArgumentCount(frame.argumentCount) {
                return "ERR wrong number of arguments for '\(info.name)' command"
            }
            return "NOAUTH Authentication required."
        }
    }

    /// `commands` rules (the user's own, else the global ones): -NOPERM as the master's Redis
    /// words it, and the command reaches no backend. AUTH, HELLO, QUIT and RESET always run.
    func refusal(by index: CommandRulesIndex, _ command: Command, _ frame: RequestFrame) -> String? {
        guard !Self.runsBeforeAuthentication(command.kind), let rules = index.rules(for: user) else { return nil }
        let info = proxy.table.info(name: frame.name, firstArgument: frame.firstArgument)
        let fullName = info?.name ?? String(decoding: argumentBytes(0, of: frame), as: UTF8.self).lowercased()
        guard rules.refuses(fullName: fullName, categories: info?.aclCategories ?? []) else { return nil }
        proxy.stats.error(.commandDenied)
        // Redis 7.2 names the user; 7.0 and 7.1 say "this user".
        let namesUser = proxy.masterIsAtLeast(7, 2)
        return "NOPERM \(namesUser ? "User \(user)" : "this user") has no permissions to run the '\(fullName)' command"
    }

    // MARK: failover hold

    /// No node is confirmed master: this write (and everything after it) waits, at the front of
    /// the input (the pending run ahead of it moves first).
    func holdForMaster(_ frame: RequestFrame, _ group: ReplicationGroup) {
        flushPending()
        hold = .master(frame)
        if holdStarted == 0 { holdStarted = proxy.loop.nowMicroseconds }
        connection.pauseReading()
        group.waitForMaster(self)
    }

    /// The answer a `.probe` hold waited for is in: the command waits like any barrier now.
    func probeAnswered() {
        if case .probe(let frame) = hold { hold = .barrier(frame) }
        scheduleResume()
    }

    func masterAvailable() {
        guard case .master(let frame) = hold else { return }
        // Now it waits like any barrier: for the replies before it, then resume() sends it.
        hold = .barrier(frame)
        scheduleResume()
    }

    /// `failover_hold` passed without a master: the write gets an error (it was not sent
    /// anywhere), and the session goes on with its next command.
    func masterUnavailable() {
        guard case .master(let frame) = hold else { return }
        hold = .none
        input.drop(frame.length, from: connection)
        proxy.stats.error(.backendUnavailable)
        proxy.stats.answered(.master, .error, microseconds: proxy.loop.nowMicroseconds &- holdStarted)
        holdStarted = 0
        answerError("TRYAGAIN ambassador: no node confirmed as master within failover_hold (\(proxy.config.failoverHold)); the command was not sent")
        processInput()
    }

    /// Sends a request to the master (or a backend chosen for it) on this session's shared connection.
    /// With health checks, a master whose connection is down may be failing over: the command
    /// waits for it (up to `failover_hold`) instead of failing at once.
    func forward(_ frame: RequestFrame, to backend: Backend, write: Bool = false, urgent: Bool = false) {
        guard let target = sharedConnection(to: backend, urgent: urgent, large: frame.length >= Backend.largeRequest) else {
            return holdBehindWait(frame)
        }
        let route: Route = backend.role == .master ? .master : .replica
        guard target.isUsable else {
            if route == .master && proxy.healthChecked { return holdForMaster(frame, backend.group) }
            input.drop(frame.length, from: connection)
            return unavailable(route, "ERR ambassador: \(backend.role) \(backend.address) is unavailable")
        }
        if write {
            lastWriteMicroseconds = proxy.loop.nowMicroseconds
            writesInFlight += 1
            if lastWriteConnection !== target || lastWriteGeneration != target.generation {
                lastWriteConnection = target
                lastWriteGeneration = target.generation
                if proxy.clustered { noteShardWrite(target) }
            }
        }
        let slot = enqueue(route)
        slot.isWrite = write
        if write && proxy.tracksKeys {
            let group = backend.group
            slot.isAppWrite = true
            slot.appKeys = group.keyWrites.sent(keyHashes(frame))
            if proxy.clustered { slot.appGroup = group }
            if group.keyWrites.entries.count >= KeyWrites.capacity {
                group.keyWrites.prune(appliedByAll: group.replicas.map(\.appliedOffset).min() ?? 0, tracker: group.tracker)
            }
        }
        if proxy.clustered { keepForRedirect(frame, slot) }
        send(frame, to: target, slot: slot)
    }

    /// The connection a WAIT of this session must run on: the shared master connection its last
    /// write went out on, while it is the same connection (not reconnected since) to the current
    /// master. nil: the session wrote nothing there (a WAIT on a pinned connection then counts
    /// from that connection's own offset, as on a new direct connection).
    func waitConnection(_ group: ReplicationGroup) -> BackendConnection? {
        guard let target = lastWriteConnection, !target.dedicated, target.backend === group.master, target.isOpen,
              target.generation == lastWriteGeneration else { return nil }
        return target
    }

    /// This session's earlier requests to a backend wait on a shared connection that another
    /// session's WAIT holds next, which may be for as long as its timeout: a direct client
    /// never waits for another's WAIT. The frame waits for every earlier reply (those there come
    /// before the WAIT's), then goes to a connection no WAIT holds (see `Backend.connection`).
    private func holdBehindWait(_ frame: RequestFrame) {
        flushPending()
        endBatch()
        hold = .barrier(frame)
        connection.pauseReading()
    }

    /// WAIT/WAITAOF on the connection of the session's writes (every earlier reply is in). The
    /// session's next requests to the master follow it there, as they would wait for it direct.
    private func forwardWait(_ frame: RequestFrame, on target: BackendConnection) {
        holdStarted = 0
        let slot = enqueue(.master)
        slot.isBlocking = true
        bindToWait(on: target)
        // Its Redis id before the WAIT, so a WAIT left behind by a client that hangs up can be
        // ended (see `BackendConnection.unblockAbandonedWait`).
        target.identify()
        send(frame, to: target, slot: slot)
        flushPending()
    }

    /// A WAIT of this session goes out on `target` now: the session's next requests to that node
    /// follow it there (as they would wait for it direct), and the session's hang-up ends it
    /// (see `connectionDidClose`).
    func bindToWait(on target: BackendConnection) {
        let id = ObjectIdentifier(target.backend)
        for i in bindings.indices where bindings[i].backendID == id {
            bindings.remove(at: i)
            break
        }
        bindings.append(Binding(connection: target, through: target.expected))
    }

    func forwardRead(_ frame: RequestFrame, verb: Verb, _ group: ReplicationGroup) {
        if readsFromMaster && group.masterConfirmed { return forward(frame, to: group.master) }
        if proxy.tracksKeys {
            readKeyFloor = group.keyWrites.floor(tracker: group.tracker, keyVisitor(frame))
        }
        var request = ReadRouter.Request(floor: group.readFloor(for: self), batchReplica: batchReplica, batchReads: batchReads)
        var isScan = false
        if case .scan(let cursorArgument) = verb {
            // A cursor means something only on the node that issued it (replicas of one master
            // hold the same keys, but their hash tables may differ in size or be mid-rehash): a
            // walk in progress (cursor not 0) stays on its node while that node may serve it.
            isScan = true
            let cursor = cursorArgument == 1 ? frame.firstArgument : SessionArguments(session: self, frame: frame).shortArgument(cursorArgument)
            request.scan = (node: group.routerNode(scanNode), continues: cursor.integerValue != 0)
        }
        let backend: Backend
        switch group.routeRead(for: self, request).route {
        case .replica(let index) where loginIndex != 0 && group.replicas[index].refusesLogin(loginIndex, now: dispatchNow):
            // The replica refused this session's login lately (ACL users are per node): the
            // master, which accepted it, reads instead.
            return forward(frame, to: group.master)
        case .replica(let index):
            backend = group.replicas[index]
            if isScan {
                scanNode = backend
            } else if index == batchReplica && batchReads < ReadRouter.batchAffinity {
                batchReads += 1
            } else {
                // A long pipeline still spreads: after `batchAffinity` reads the choice is remade.
                batchReplica = index
                batchReads = 1
            }
        case .master:
            if isScan { scanNode = group.master }
            return forward(frame, to: group.master)
        case .hold:
            // A read for the master waits like a write while no master is confirmed (with
            // discovery it may not be the master yet).
            return holdForMaster(frame, group)
        case .unavailable:
            input.drop(frame.length, from: connection)
            return unavailable(.replica, "ERR ambassador: no replica is available for reads (read_policy: replica)")
        }
        guard let target = sharedConnection(to: backend, large: frame.length >= Backend.largeRequest) else {
            return holdBehindWait(frame)
        }
        // The replica is up, but this session's connection to it may be reconnecting.
        guard target.isUsable else { return forward(frame, to: backend) }
        let slot = enqueue(.replica)
        // Keep the request: if the replica goes away before replying, the read is retried.
        if proxy.clustered {
            keepForRedirect(frame, slot)
        } else {
            connection.copyInput(from: pendingBytes, count: frame.length, into: slot.retryRequest)
        }
        slot.retriesLeft = 2
        // A pattern, not `==`: Verb's derived equality is a call of some 26 instructions per read.
        if case .evalshaRO = verb { slot.isEvalshaRO = true }
        send(frame, to: target, slot: slot)
    }

    /// Sends `slot`'s kept request again, to `target` (a redirection, a read retried elsewhere).
    func resend(_ slot: Slot, to target: BackendConnection) {
        if slot.isWrite && proxy.clustered { noteShardWrite(target) }
        writeKept(slot, to: target)
        target.expect(slot)
    }

    /// Writes the copy `slot` keeps of its request (in the log, else its own buffer) to `target`.
    private func writeKept(_ slot: Slot, to target: BackendConnection) {
        if slot.keptAt >= 0 {
            target.write(requestLog, at: slot.keptAt, count: slot.keptCount)
        } else {
            target.write(slot.retryRequest)
        }
    }

    /// A new slot at the tail of the session's FIFO, timed from now. The command is on its way:
    /// its wait for a master, if it had one, ends here (and still counts towards failover_hold).
    /// (Inlined: out of line, the hot paths paid some 60 instructions a request for the call.)
    @inline(__always)
    func enqueue(_ route: Route) -> Slot {
        let slot = proxy.slots.take()
        slot.session = self
        if silentCommand { slot.silent = true }
        slot.route = route
        slot.started = dispatchNow
        slot.holdSince = holdStarted == 0 ? dispatchNow : holdStarted
        holdStarted = 0
        slot.logMark = frameAt
        replies.append(slot)
        return slot
    }

    /// The command's backend is down: an error reply, counted.
    func unavailable(_ route: Route, _ message: String) {
        proxy.stats.error(.backendUnavailable)
        proxy.stats.answered(route, .error, microseconds: 0)
        answerError(message)
    }

    // MARK: replies

    /// A backend's reply for `slot`: the next `length` bytes of `backend`'s input (after its
    /// pending run of replies).
    func completed(_ slot: Slot, length: Int, from backend: BackendConnection, isError: Bool) {
        proxy.stats.answered(slot.route, isError ? .error : .ok,
                             microseconds: proxy.loop.nowMicroseconds &- slot.started)
        if slot.isWrite { writeAnswered(slot) }
        if slot.silent {
            // CLIENT REPLY OFF / SKIP (cluster): Redis ran it; the client gets nothing.
            backend.discardReply(length)
            slot.ready = true
            if replies.isHead(slot) { flushReady() }
            return
        }
        if replies.isHead(slot) {
            if slot.endsBatch { connection.flushCorked() }  // written at the iteration's end, run and all
            // Joined first, then removed: a run of this session's replies kept out of turn
            // that ends here becomes ready while this one is still the head, so none of it is
            // written ahead of this reply (see `BackendConnection.flushReplies`).
            backend.deferReply(length, for: self)
            replies.removeHead(into: proxy.slots)
            // While the next reply is still awaited nothing else can be written to the client:
            // this one waits in the backend's pending run, to move with the ones after it (a
            // pipeline's replies leave in one move). Otherwise it moves now, ahead of the rest.
            if let next = replies.head, !next.ready, backend.batchesReplies { return }
            backend.flushReplies()
            flushReady()
        } else {
            backend.keepReply(length, for: slot, of: self)
        }
    }

    /// Room in `replyLog` for `count` more bytes: when they do not fit, what no waiting reply
    /// needs any more is let go first (a client that keeps its pipeline full never empties
    /// the queue, where the log would otherwise start over).
    func makeReplyRoom(_ count: Int) {
        if !replyLog.fits(count) { replyLog.release(upTo: replies.oldestKept(in: replyLog)) }
    }

    /// A write's reply (or failure) is in: read-your-writes by offset needs a master probe sent
    /// from now on (see `ReplicationTracker`).
    func writeAnswered(_ slot: Slot) {
        if slot.isAppWrite {
            let group = slot.appGroup ?? group
            group.keyWrites.answered(slot.appKeys, probe: group.tracker.probeAfterWrite())
            slot.isAppWrite = false
            slot.appGroup = nil
        }
        writesInFlight -= 1
        if writesInFlight == 0 && proxy.tracksOffsets {
            floorProbe = -1
            floorOffset = -1
        }
    }

    /// `slot`'s request failed: the client gets `message` as an error reply in its place.
    func fail(_ slot: Slot, _ message: String) {
        if slot.isWrite { writeAnswered(slot) }
        proxy.stats.answered(slot.route, .error, microseconds: proxy.loop.nowMicroseconds &- slot.started)
        encoder.clear()
        encoder.error(message)
        slot.store(slot.silent ? [] : encoder.bytes)
        if replies.isHead(slot) { flushReady() }
    }

    /// Commands the ambassador answers that Redis may run too, to no effect but its counters.
    static func shadowedOnMaster(_ local: LocalKind) -> Bool {
        switch local {
        case .clientID, .clientList, .clientInfo, .clientGetName: return true
        default: return false
        }
    }

    /// Sends `frame` (answered by the ambassador) to Redis as well, its reply dropped.
    func shadow(_ frame: RequestFrame, on target: BackendConnection) {
        let arguments = (0..<frame.argumentCount).map { String(decoding: argumentBytes($0, of: frame), as: UTF8.self) }
        target.inject(arguments, label: "shadowed", expectingError: true)
    }

    /// An admin command (`Command.inspectsServer`) on its way to the master: the session is a
    /// tool's from now on (`readsFromMaster`), and a CLIENT PAUSE ms is noted (see
    /// `Proxy.pausedUntil`). True for CLIENT UNPAUSE: the caller ends the pause once it has sent it.
    func noteServerCommand(_ frame: RequestFrame) -> Bool {
        readsFromMaster = true
        guard frame.name == Self.clientName else { return false }
        if frame.firstArgument == Self.unpauseName {
            return true
        } else if frame.firstArgument == Self.pauseName, frame.argumentCount >= 3,
                  let milliseconds = DecimalNumber.value(of: argumentBytes(2, of: frame)), milliseconds > 0 {
            proxy.notePause(milliseconds: Int(min(milliseconds, 1 << 40)))
        }
        return false
    }

    static let clientName = ShortBytes("client")
    static let pauseName = ShortBytes("pause")
    static let unpauseName = ShortBytes("unpause")

    /// A reply the ambassador gets from the master for a command it rewrote (CLIENT UNBLOCK with
    /// the backend connection's id): it takes its turn in the FIFO like any reply.
    func answerFromMaster(_ arguments: [String]) {
        askMaster(arguments, into: enqueue(.master))
    }

    /// The same, for a slot already in the FIFO.
    func askMaster(_ arguments: [String], into slot: Slot) {
        askMaster(arguments, for: slot) { session, bytes in
            session.fill(slot, with: bytes, isError: bytes.first == UInt8(ascii: "-"))
        }
    }

    /// Sends `arguments` to the master for `slot`'s request; `handler` gets the reply while the
    /// session is still waiting for it (a lost master or connection fails the slot instead).
    func askMaster(_ arguments: [String], for slot: Slot, _ handler: @escaping (ClientSession, [UInt8]) -> Void) {
        let target = group.master.connection(for: self, urgent: true, now: dispatchNow)
        guard target.isUsable else {
            return fail(slot, "ERR ambassador: master \(group.master.address) is unavailable")
        }
        target.probe(arguments) { [weak self] bytes in
            guard let self, slot.session === self else { return }
            if bytes.isEmpty { return self.fail(slot, "ERR ambassador: connection to master lost before it replied") }
            handler(self, bytes)
        }
    }

    /// A reply the ambassador composed or fetched for `slot`: counted, then written in its turn.
    func fill(_ slot: Slot, with bytes: [UInt8], isError: Bool) {
        proxy.stats.answered(slot.route, isError ? .error : .ok, microseconds: proxy.loop.nowMicroseconds &- slot.started)
        slot.store(slot.silent ? [] : bytes)
        if replies.isHead(slot) { flushReady() }
    }

    /// Writes every ready reply from the head of the queue; once nothing is owed, what waited
    /// for that resumes after the current callback.
    func flushReady() {
        if let pending = keptPendingOn { pending.flushReplies() }
        replies.flush(to: connection, log: replyLog, pool: proxy.slots)
        checkOutputCap()
        if replies.isEmpty {
            // Nothing awaited keeps a request in the log now (but a frame parsed and held, not
            // yet sent, may): it starts over, and lets go of a buffer a burst made large. The
            // same for the replies kept out of turn.
            if keepsFrames { requestLog.release(upTo: frameKept ? frameAt : requestLog.end) }
            replyLog.release(upTo: replyLog.end)
            releaseCork()
            scheduleResume()
        }
    }

    /// The replies owed so far form a batch: the client gets them in one write once all are in
    /// (its connection is corked until then), as Redis writes the replies to what one read
    /// brought after running it all. A pipeline whose commands go to several backends (cluster
    /// shards, master and replicas) then costs the client one read, not one per backend.
    /// A batch ends where a read from the socket was dispatched, and before any command that
    /// may wait (blocking, a transaction, a subscription, one held for a master …), so the
    /// replies before it are never held up by it.
    /// A cork lasts at most `Proxy.corkDuration` (10 ms).
    func endBatch() {
        guard let tail = replies.tail else { return }
        tail.endsBatch = true
        guard corkedAt < 0 else { return }
        connection.cork()
        corkedAt = proxy.loop.nowMicroseconds
        proxy.corkStarted(self)
    }

    /// Output flows again (nothing owed, or the cork lasted `Proxy.corkDuration`).
    func releaseCork() {
        guard corkedAt >= 0 else { return }
        corkedAt = -1
        connection.uncork()
    }

    /// `resume()` after the current callback (once, however many replies arrive in it): a
    /// backend connection delivering replies never has this session dispatch — and queue new
    /// requests on it — in the middle of its delivery.
    func scheduleResume() {
        guard !resumeScheduled else { return }
        resumeScheduled = true
        proxy.loop.runAfterCallback(self)
    }

    func runDeferred() {
        resumeScheduled = false
        resume()
    }

    /// Nothing is owed (or a login check let input go on): close if that was due, dispatch the
    /// held command, read on.
    private func resume() {
        guard connection.isOpen else { return }
        if replies.isEmpty {
            if closeIfDrained() { return }
            if case .barrier(let frame) = hold {
                hold = .none
                dispatch(frame)
                flushPending()
            }
        }
        if !hold.isHolding { processInput() }
        closeIfDrainedForShutdown()
    }

    /// `client_idle_timeout`: nothing owed or held, not blocked, not subscribed or monitoring
    /// (Redis's exemptions), and no command since `deadline` (loop µs).
    func isIdle(since deadline: Int) -> Bool {
        lastCommandAt < deadline && replies.isEmpty && !hold.isHolding && !pin.isRelaying && !isBlocked
            && ending == .open && connection.isOpen
    }

    /// Closed for idleness, silently, as Redis does.
    func closeIdle() {
        proxy.stats.error(.idleTimeout)
        connection.close()
    }

    /// Shutdown: stop reading, serve the complete commands already read, close when answered.
    func drain() {
        if ending == .open { ending = .draining }
        connection.pauseReading()
        processInput()
        closeIfDrainedForShutdown()
    }

    private func closeIfDrainedForShutdown() {
        if ending == .draining && replies.isEmpty && !hold.isHolding && connection.isOpen { connection.close() }
    }

    /// A reply the ambassador makes: written now if nothing is owed before it, else queued.
    func answer(_ bytes: [UInt8]) {
        if capturedAnswer != nil { return capturedAnswer! += bytes }
        if silentCommand { return }  // CLIENT REPLY OFF / SKIP (cluster)
        if replies.isEmpty {
            connection.write(bytes)
        } else {
            enqueue(.local).store(bytes)
        }
    }

    func answerError(_ message: String) {
        encoder.clear()
        encoder.error(message)
        answer(encoder.bytes)
    }

    /// After QUIT: close once the last owed reply is written.
    func closeAfterReplies() {
        ending = .afterReplies
        connection.pauseReading()
        closeIfDrained()
    }

    @discardableResult
    private func closeIfDrained() -> Bool {
        guard ending == .afterReplies, replies.isEmpty else { return false }
        connection.close()
        return true
    }

    func resetState() {
        db = 0
        protocolVersion = 2
        name = nil
        nameQueued = false
        inMulti = false
        deferredMulti = false
        keylessQueued = nil
        replyMode = .on
        silentCommand = false
        watching = false
        relayAfterExec = nil
        queued = 0
        channels = []
        patterns = []
        shardChannels = []
        relayForeign = []
        relayMarkers = []
        trackingInfoPending = 0
        readsFromMaster = false
        dropShardConnections()
        tracking = false
        trackingRedirect = -1
        user = "default"
        if loginIndex != 0 {
            loginIndex = 0
            bindings.removeAll()
            lastWriteConnection = nil
            shardWrites.removeAll()
        }
    }

    /// RESET: back to a fresh connection's state. A pinned connection is handed back when clean,
    /// closed otherwise.
    func reset() {
        dropPinned()
        resetState()
        // RESET logs the connection out, as Redis's does (its default user then needs AUTH).
        authenticated = !proxy.config.requiresClientAuth
    }

    // MARK: closing

    /// The client finished sending while its reading was paused, requests still unread. Redis
    /// would read them and free the client at the end of its input; run they would, unless the
    /// client is blocked. So a session waiting on a blocking command (BLPOP 0, WAIT, which may
    /// never return) ends now; any other goes on and meets the end when it reads again.
    func connectionPeerFinishedSending(_ connection: Connection) {
        if isBlocked || replies.slots.contains(where: { $0.isBlocking && !$0.ready }) {
            connection.close(flush: false)
        }
    }

    func connectionDidClose(_ connection: Connection, error: SocketError?) {
        // Replies still owed are read and dropped by the backend connections.
        replies.abandon(pool: proxy.slots)
        // A WAIT of this session holding a shared connection ends, as a direct Redis ends it
        // (its connection stays among the bindings while the WAIT is in flight).
        for binding in bindings { binding.connection.abandonWaits(of: self) }
        dropPinned()
        dropShardConnections()
        proxy.sessionClosed(self)
    }
}

/// A command a session keeps at the front of its input instead of dispatching it.
enum Hold {
    case none
    /// Until every earlier reply is in (a barrier: SELECT, MULTI, BLPOP … with replies owed), or
    /// until something elsewhere happens (a tracking redirect's id): `resume()` dispatches it.
    case barrier(RequestFrame)
    /// Until a node is confirmed master, up to failover_hold (`masterAvailable` /
    /// `masterUnavailable`).
    case master(RequestFrame)
    /// Until the answer to a question the ambassador asked Redis for it (a busy master's PING,
    /// the name a transaction set): then it waits like a barrier (`probeAnswered`).
    case probe(RequestFrame)

    var isHolding: Bool {
        if case .none = self { return false }
        return true
    }
}

/// How a session ends.
enum Ending {
    case open
    /// After QUIT or malformed input: nothing more is read; close once the owed replies are out.
    case afterReplies
    /// Shutdown: nothing more is read from the socket; what was read is served, then close.
    case draining
}

/// Which connection a session's commands go to.
enum PinState {
    /// The shared connections, chosen per command (`ClientSession.sharedConnection(to:)`).
    case shared
    /// A dedicated master connection held for `state`: a blocking command, a transaction
    /// (MULTI … EXEC, WATCH), client state; each command's reply takes its turn in the queue.
    case pinned(BackendConnection, StatefulKind)
    /// A dedicated connection whose replies stream to the client as they come (pub/sub,
    /// MONITOR, CLIENT TRACKING's invalidations), until RESET or the client leaves.
    case relaying(BackendConnection, StatefulKind)

    var connection: BackendConnection? {
        switch self {
        case .shared: return nil
        case .pinned(let connection, _), .relaying(let connection, _): return connection
        }
    }

    var state: StatefulKind? {
        switch self {
        case .shared: return nil
        case .pinned(_, let state), .relaying(_, let state): return state
        }
    }

    var isRelaying: Bool {
        if case .relaying = self { return true }
        return false
    }
}

/// A request's arguments as `classify` reads them, straight from the client's input buffer.
struct SessionArguments: CommandArguments {
    let session: ClientSession
    let frame: RequestFrame

    var count: Int { frame.argumentCount }

    func shortArgument(_ index: Int) -> ShortBytes {
        if index == 0 { return frame.name }
        if index == 1 { return frame.firstArgument }
        return session.shortArgument(index, of: frame)
    }
}

extension SessionArguments: SlotArguments {
    func slot(ofArgument index: Int) -> Int { session.keySlot(index, of: frame) }
}

/// CLIENT REPLY's state, kept by a cluster session.
enum ReplyMode {
    case on, off
    /// The next command's reply is dropped, then on again.
    case skip
}
