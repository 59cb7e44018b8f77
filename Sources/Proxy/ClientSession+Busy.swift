import EventLoop
import RESP
import Routing

/// A busy Redis — a script or a function run past `busy-reply-threshold`, or a slow command —
/// answers no command until then, and -BUSY after, to all but the table's `allow_busy` ones.
/// The ambassador answers PING, ECHO, SELECT and the app's own CLIENT commands itself, which
/// would answer a client at once while a direct Redis makes it wait, then refuses it (Redis's
/// own tests poll `PING` for BUSY to know a script runs). So while a master may be busy (a
/// connection to it holds a request past `stall_threshold`), those ask Redis first.
extension ClientSession {
    /// Whether `frame`, a command the ambassador would answer itself, went to Redis instead
    /// (`forwardable`: PING, ECHO, answered by Redis as by the ambassador) or waits for a PING
    /// of the busy master, held meanwhile (the others, which read or change the session's own
    /// state: Redis's error, or the ambassador's answer once Redis answers PONG). False:
    /// answer it now.
    func gateWhileBusy(_ frame: RequestFrame, forwardable: Bool, _ group: ReplicationGroup) -> Bool {
        switch busyCheck {
        case .none:
            break
        case .passed:
            busyCheck = .none
            return false
        case .refused(let error):
            busyCheck = .none
            input.drop(frame.length, from: connection)
            proxy.stats.answered(.local, .error, microseconds: 0)
            answer(error)
            return true
        }
        guard let busy = busyMaster(group) else { return false }
        if forwardable {
            forward(frame, to: busy)
            return true
        }
        flushPending()
        hold = .probe(frame)
        connection.pauseReading()
        let target = busy.connection(for: self, urgent: true, now: proxy.loop.nowMicroseconds)
        guard target.isUsable else {
            busyCheck = .passed
            probeAnswered()
            return true
        }
        target.noteOwnCommand(["PING"])
        target.probe(request: Self.pingRequest) { [weak self] bytes in
            guard let self, case .probe = self.hold else { return }
            // Lost before it answered (empty): the master is not busy, it is gone; the
            // ambassador answers as it would have.
            self.busyCheck = bytes.first == UInt8(ascii: "-") ? .refused(bytes) : .passed
            self.probeAnswered()
        }
        return true
    }

    /// A master that may be busy: one with a request waiting past `stall_threshold` (50 ms when
    /// that is off) on a shared connection. In a cluster, any shard's: one Redis busy is busy
    /// for every command.
    private func busyMaster(_ group: ReplicationGroup) -> Backend? {
        let threshold = proxy.stallMicroseconds >= 0 ? proxy.stallMicroseconds : 50_000
        let deadline = proxy.loop.nowMicroseconds - threshold
        if !proxy.clustered { return group.master.hasStalledConnection(before: deadline) ? group.master : nil }
        for shard in proxy.groups where shard.master.hasStalledConnection(before: deadline) { return shard.master }
        return nil
    }

    static let pingRequest = BackendConnection.request(["PING"])
}

/// See `ClientSession.gateWhileBusy`.
enum BusyCheck {
    case none
    /// Redis answered PONG: the held command is answered by the ambassador.
    case passed
    /// Redis refused the PING: the held command gets its error.
    case refused([UInt8])
}
