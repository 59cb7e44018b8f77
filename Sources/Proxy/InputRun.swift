import EventLoop

/// The front of a client's input. Requests already routed to one backend connection (`target`)
/// whose bytes still lie there form the *run*, `count` bytes long; the frame being dispatched
/// starts right after it. Consecutive requests for one connection move together, in one
/// evbuffer_remove_buffer (whole chains, no copy), instead of one partial-chain copy each.
///
/// The rule that keeps a client's bytes in order lives here: whatever takes a frame out of the
/// input other than by joining the run — dropping it (answered here, refused), or waiting with it
/// (held at a barrier) — first moves the run to its connection (`move`, which `drop` does itself),
/// and a frame for another connection, or one that needs a SELECT first, starts a new run.
struct InputRun {
    private(set) var target: BackendConnection?
    /// Bytes in the run: where the current frame starts in the input.
    private(set) var count = 0

    /// The current frame (`length` bytes, its slot already expected by `to`) joins the run for
    /// `to`, which selects `db` first if it must.
    @inline(__always)
    mutating func append(_ length: Int, to connection: BackendConnection, db: Int, from client: Connection) {
        if target !== connection || connection.db != db {
            move(from: client)
            connection.select(db)
            target = connection
        }
        count += length
    }

    /// Moves the run to its connection: the current frame is now at the input's front.
    mutating func move(from client: Connection) {
        guard let connection = target else { return }
        connection.send(from: client, length: count)
        target = nil
        count = 0
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
