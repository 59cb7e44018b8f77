import EventLoop

/// The front of a client's input. Requests already routed to one backend connection (`target`)
/// whose bytes still lie there form the *run*; the frame being dispatched starts right after it.
/// Consecutive requests for one connection move together, in one evbuffer_remove_buffer (whole
/// chains, no copy), instead of one partial-chain copy each.
///
/// Before the run may lie bytes already *sent as a copy* (`skipped`): a cluster request whose
/// bytes the session copied anyway (kept for a -MOVED retry) goes out from that copy, and its
/// bytes here are only drained, with whatever follows them, when the run next moves. Requests
/// that alternate between shards would otherwise each cost a move of their own.
///
/// The rule that keeps a client's bytes in order lives here: whatever takes a frame out of the
/// input other than by joining the run — dropping it (answered here, refused), or waiting with it
/// (held at a barrier) — first moves the run to its connection (`move`, which `drop` does itself),
/// and a frame for another connection, or one that needs a SELECT first, starts a new run.
struct InputRun {
    private(set) var target: BackendConnection?
    /// Bytes before the current frame: those sent as copies, then the run's.
    var count: Int { skipped + running }
    private var skipped = 0
    private var running = 0

    /// The current frame (`length` bytes, its slot already expected by `to`) joins the run for
    /// `to`, which selects `db` first if it must.
    @inline(__always)
    mutating func append(_ length: Int, to connection: BackendConnection, db: Int, from client: Connection) {
        if target !== connection || connection.db != db {
            move(from: client)
            connection.select(db)
            target = connection
        }
        running += length
    }

    /// The current frame (`length` bytes) is sent to `connection` from a copy, after the run
    /// ahead of it (moved first when there is one) and a SELECT when `db` needs one: its bytes
    /// here are only to be drained.
    @inline(__always)
    mutating func skip(_ length: Int, sendingTo connection: BackendConnection, db: Int, from client: Connection) {
        if running > 0 { move(from: client) }
        connection.select(db)
        skipped += length
    }

    /// Moves the run to its connection, after draining the bytes sent as copies: the current
    /// frame is now at the input's front.
    mutating func move(from client: Connection) {
        if skipped > 0 {
            client.discardInput(skipped)
            skipped = 0
        }
        guard let connection = target else { return }
        connection.send(from: client, length: running)
        target = nil
        running = 0
    }

    /// Drops the current frame, `length` bytes (after moving the run ahead of it).
    mutating func drop(_ length: Int, from client: Connection) {
        move(from: client)
        client.discardInput(length)
    }

    /// Drops everything after the run (malformed input: nothing more will be read).
    mutating func dropAll(from client: Connection) {
        move(from: client)
        client.discardInput(client.inputCount)
    }
}
