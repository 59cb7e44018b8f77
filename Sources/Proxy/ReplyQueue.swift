import DequeModule
import EventLoop

/// The replies a session owes its client, in request order: one `Slot` per request, filled by
/// whoever answers it — a backend (`ClientSession.completed`), the ambassador itself
/// (`answer`, `fill`), an error (`fail`) — and written from the head while the head is ready.
///
/// `flush` only writes. What was waiting for the replies (a held command, more input, a close)
/// is the session's business, and runs after the callback that delivered them
/// (`ClientSession.scheduleResume`), never inside a backend connection's delivery.
struct ReplyQueue {
    private(set) var slots = Deque<Slot>()

    var isEmpty: Bool { slots.isEmpty }
    var count: Int { slots.count }
    var head: Slot? { slots.first }
    var tail: Slot? { slots.last }

    @inline(__always)
    func isHead(_ slot: Slot) -> Bool { slots.first === slot }

    mutating func append(_ slot: Slot) { slots.append(slot) }

    /// The head's reply went straight to the client (its bytes moved by the backend): it leaves.
    @inline(__always)
    mutating func removeHead(into pool: SlotPool) {
        pool.give(slots.removeFirst())
    }

    /// Writes every ready reply from the head, in order, to `client` (short replies a backend
    /// sent out of turn are in `log`). Nothing else. Two or more short replies in a row (a
    /// pipeline's, come back from several shards or nodes) are copied into one reservation of
    /// the client's output rather than appended one by one.
    mutating func flush(to client: Connection, log: ByteLog, pool: SlotPool) {
        while let head = slots.first, head.ready {
            if !head.large, slots.count > 1 {
                var count = 0, total = 0
                for slot in slots {
                    guard slot.ready, !slot.large else { break }
                    count += 1
                    total += slot.shortCount
                }
                if count > 1, var room = client.reserveOutput(total) {
                    var endsBatch = false
                    for _ in 0..<count {
                        let slot = slots.removeFirst()
                        if slot.replyAt >= 0 {
                            client.copy(log, at: slot.replyAt, count: slot.replyCount, into: &room)
                        } else {
                            client.copy(slot.shortReply, into: &room)
                        }
                        endsBatch = endsBatch || slot.endsBatch
                        pool.give(slot)
                    }
                    client.commit(room)
                    if endsBatch { client.flushCorked() }
                    continue
                }
            }
            if head.large {
                client.write(head.reply)
            } else if head.replyAt >= 0 {
                client.write(log, at: head.replyAt, count: head.replyCount)
            } else if head.shortReply.count > 0 {
                client.write(head.shortReply)
            }
            if head.endsBatch { client.flushCorked() }
            slots.removeFirst()
            pool.give(head)
        }
    }

    /// The oldest position in `log` a waiting reply still needs (`end` when none does).
    func oldestKept(in log: ByteLog) -> Int {
        var oldest = log.end
        for slot in slots where slot.replyAt >= 0 && slot.replyAt < oldest { oldest = slot.replyAt }
        return oldest
    }

    /// The client left: ready replies go back to the pool; a slot still awaited is read and
    /// dropped by its backend connection when its reply comes (`session` is cleared).
    mutating func abandon(pool: SlotPool) {
        for slot in slots {
            if slot.ready { pool.give(slot) } else { slot.session = nil }
        }
        slots.removeAll()
    }
}
