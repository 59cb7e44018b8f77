import EventLoop

/// One request's place in line. A client request's slot sits in its session's FIFO (reply order)
/// and in the FIFO of the backend connection it was written to (reply matching). A reply that
/// arrives while its slot is not the session's head waits in `reply` until its turn.
///
/// Slots are pooled and reused, buffers and all: steady traffic allocates none.
final class Slot {
    enum Kind {
        /// A client's request: the reply goes to `session` in order.
        case client
        /// A request the ambassador injected (SELECT before a command, AUTH, HELLO): its reply is
        /// dropped, unless it is an error, which is logged.
        case injected
        /// A request whose reply the ambassador reads itself (the master's version, databases).
        case probe
    }

    var kind = Kind.client
    var session: ClientSession?
    /// Where the request went and when (loop clock, µs): for the latency histogram.
    var route = Route.master
    var started = 0
    /// discovery: cluster — since when `failover_hold` counts for this request (loop µs): when
    /// it first waited for a master, else when it was sent. Set by `ClientSession.enqueue`.
    var holdSince = 0
    /// A write (or an unknown command) on the master: its reply time feeds read-your-writes.
    var isWrite = false
    /// EVALSHA_RO: -NOSCRIPT from a replica is retried elsewhere (the script may be cached there).
    var isEvalshaRO = false
    /// WAIT or WAITAOF sent on a shared connection: it may take as long as its timeout, so
    /// `command_timeout` does not apply to it.
    var isBlocking = false
    /// read_your_writes: app — a write, and the keys it is counted under in `KeyWrites`.
    var isAppWrite = false
    var appKeys = KeyHashes()
    /// discovery: cluster — the shard whose `KeyWrites` counts `appKeys` (nil: the session's group).
    var appGroup: ReplicationGroup?
    /// discovery: cluster — -MOVED / -ASK / -TRYAGAIN replies still followed for this request
    /// (its bytes are in `retryRequest`).
    var redirectsLeft = 0
    /// CLIENT REPLY OFF / SKIP (cluster): the reply is read and dropped, never written.
    var silent = false
    /// The last request of a batch (see `ClientSession.endBatch`): once its reply is written,
    /// the client's corked output goes out.
    var endsBatch = false
    /// The reply is complete (in `shortReply` or `reply`, or answered locally into one).
    var ready = false
    /// A backend's reply that waits for its turn: up to `shortReplyLimit` bytes are kept in the
    /// session's `replyLog` (`replyCount` bytes at `replyAt`; -1: not there), with the rest of
    /// the run of that session's replies the backend read together (one copy for the run, see
    /// `BackendConnection.keepReply`), and copied on into the client's output in its turn,
    /// where they join the bytes before them. Larger ones move into `reply` as libevent chains
    /// (no copy of the bulk). Moving every reply as a chain cost a buffer block per reply and
    /// gave a pipeline answered by three shards about ten iovecs per client write instead of one.
    var replyAt = -1
    var replyCount = 0
    /// A reply the ambassador made (`store`), up to `shortReplyLimit` bytes.
    let shortReply = SavedBytes()
    let reply = ByteBuffer()
    /// `reply` holds the reply (not `shortReply` or the log).
    var large = false
    static let shortReplyLimit = 1024

    /// The bytes of a short reply (in the session's log, or `shortReply`).
    @inline(__always)
    var shortCount: Int { replyAt >= 0 ? replyCount : shortReply.count }

    /// Keeps `bytes` as the reply.
    func store(_ bytes: [UInt8]) {
        if bytes.count <= Self.shortReplyLimit {
            shortReply.append(bytes.span)
        } else {
            reply.append(bytes)
            large = true
        }
        ready = true
    }
    /// A read sent to a replica keeps its request bytes, so it can be retried elsewhere if the
    /// replica's connection dies before replying.
    let retryRequest = SavedBytes()
    /// discovery: cluster — the request's bytes kept in its session's `requestLog` instead
    /// (`keptCount` bytes at `keptAt`; -1: none).
    var keptAt = -1
    var keptCount = 0
    /// The session's `requestLog` position when the slot was queued: nothing the slot (or any
    /// after it) keeps lies before it.
    var logMark = 0
    var retriesLeft = 0
    var probe: (([UInt8]) -> Void)?
    /// What an injected request was, for the log if it fails.
    var label: StaticString = ""
    /// An injected request meant to fail (its error is not logged).
    var expectsError = false

    func reset() {
        kind = .client
        session = nil
        // Only a reply that waited for its turn (or one made here) used the buffer: an in-turn
        // reply moves from the backend straight to the client, and the check costs two
        // libevent calls per request.
        if large {
            reply.removeAll()
            large = false
        }
        shortReply.removeAll()
        replyAt = -1
        ready = false
        retryRequest.removeAll()
        keptAt = -1
        retriesLeft = 0
        redirectsLeft = 0
        silent = false
        endsBatch = false
        isWrite = false
        isEvalshaRO = false
        isBlocking = false
        isAppWrite = false
        probe = nil
        label = ""
        expectsError = false
    }
}

/// Free slots of one event loop.
final class SlotPool {
    private var free: [Slot] = []
    var count: Int { free.count }

    func take() -> Slot {
        free.popLast() ?? Slot()
    }

    func give(_ slot: Slot) {
        slot.reset()
        if free.count < 65_536 { free.append(slot) }
    }

    /// Lets go of free slots beyond `count` (a quiet loop after a deep pipeline), and of the
    /// room the kept ones grew for a large request or reply: a slot that once kept a 100 KB
    /// request for a retry would hold those 100 KB while pooled (a quiet cluster ambassador
    /// held 11 MB that way after a soak's burst).
    func trim(keeping count: Int) {
        if free.count > count {
            free.removeSubrange(count...)
            free.reserveCapacity(count)
        }
        for slot in free {
            slot.retryRequest.removeAll(keepingAtMost: 4096)
            slot.shortReply.removeAll(keepingAtMost: 4096)
        }
    }
}
