import EventLoop
import RESP

/// Read-your-writes by replication offset (`read_your_writes: session`, the default).
///
/// Redis gives no replication offset with a write's reply, so the ambassador brackets it:
///
/// 1. A write's effect enters the master's replication stream before its reply is sent (Redis
///    propagates a command at the end of `call()`, and replies leave in `beforeSleep`, later).
///    So when the reply has *arrived*, `master_repl_offset` already counts the write.
/// 2. A `ROLE` sent to the master *after* that moment answers an offset `M` at least as large:
///    every later read of the offset does. The session's reads need a replica at offset `≥ M`.
///    (`M` may include other sessions' later writes: that only makes the wait longer, never a
///    read staler.)
/// 3. A replica's `ROLE` reports the offset it has applied. It only grows while it follows the
///    same master, so an old sample is a lower bound: a replica is used once a sample says
///    `applied ≥ M`.
///
/// The probe is asked for when the session first reads after writing (step 2 allows any later
/// moment), so a session that only writes costs no probe.
///
/// Until then the session's reads go to the master (which has every write). While any session
/// waits, replicas are asked for their offset every `pollInterval`, so reads return to them
/// within a few milliseconds of the data being there. Probes of the master are coalesced: one
/// in flight, and the next (for the writes answered meanwhile) right after it.
///
/// Probes run on dedicated control connections, never on the connections that carry the apps'
/// commands: MONITOR shows them as the ambassador's own `ROLE`s, like the health checks.
final class ReplicationTracker {
    /// Set by the group as soon as it exists: the tracker is created with it, as a `let` (a lazy
    /// property cost a retain and a release on every read's floor lookup).
    unowned(unsafe) var group: ReplicationGroup!
    /// Master probes sent, the newest answered, and the offset it reported.
    private(set) var probesSent = 0
    private(set) var probesAnswered = 0
    private(set) var masterOffset: Int64 = 0
    private var probeInFlight = false
    private var probeWanted = false
    /// The number of the probe in flight, and its reply handler (made once, not per probe).
    private var inFlightNumber = 0
    private lazy var onProbeReply: ([UInt8]) -> Void = { [unowned self] bytes in self.probeAnswered(bytes) }
    static let roleRequest = BackendConnection.request(["ROLE"])
    private var masterControl: BackendConnection?
    /// When a session last found no replica caught up (loop µs): replicas are polled until
    /// `pollLinger` after it.
    private var lastDemand = 0
    private var pollTimer: Timer?
    static let pollInterval = 0.001
    static let pollLinger = 100_000

    init() {}

    /// A session's writes were answered (now, or earlier): the number of the master probe whose
    /// offset covers them (one sent from now on), which this call makes sure is sent. Sessions
    /// ask when they first read after writing (`ClientSession.readFloor`).
    func probeAfterWrite() -> Int {
        let number = probesSent + 1
        if probeInFlight {
            probeWanted = true
        } else {
            sendProbe()
        }
        return number
    }

    /// The offset a session whose writes are covered by probe `number` needs a replica to have
    /// applied; nil while that probe has not answered.
    func floor(forProbe number: Int) -> Int64? {
        probesAnswered >= number ? masterOffset : nil
    }

    /// A session's read found no replica at its floor: poll the replicas for a while.
    func demand() {
        lastDemand = group.proxy.loop.nowMicroseconds
        guard pollTimer == nil else { return }
        pollReplicas()
        let timer = Timer(loop: group.proxy.loop, repeating: true) { [unowned self] in self.tick() }
        timer.schedule(after: Self.pollInterval)
        pollTimer = timer
    }

    private func tick() {
        if probeWanted && !probeInFlight {
            probeWanted = false
            sendProbe()
        }
        if group.proxy.loop.nowMicroseconds - lastDemand > Self.pollLinger {
            pollTimer?.cancel()
            pollTimer = nil
            return
        }
        pollReplicas()
    }

    private func pollReplicas() {
        for replica in group.replicas where replica.servesReads { replica.pollAppliedOffset() }
    }

    private func sendProbe() {
        let master = group.master!
        if masterControl.map({ !$0.isUsable || $0.backend !== master }) ?? true {
            masterControl?.close()
            masterControl = master.controlConnection()
        }
        guard let control = masterControl, control.isUsable else {
            // No way to learn the offset now: the sessions waiting read from the master, and the
            // poll timer tries again.
            probeWanted = true
            return
        }
        probesSent += 1
        probeInFlight = true
        inFlightNumber = probesSent
        control.probe(request: Self.roleRequest, onProbeReply)
    }

    private func probeAnswered(_ bytes: [UInt8]) {
        probeInFlight = false
        let number = inFlightNumber
        guard let offset = Self.masterOffset(bytes) else {
            // Lost, or not a master's answer: the poll timer asks again.
            probeWanted = true
            return
        }
        if number > probesAnswered {
            probesAnswered = number
            masterOffset = max(masterOffset, offset)
            // The data is probably on the replicas already: ask now rather than at the next tick.
            if pollTimer != nil { pollReplicas() }
        }
        if probeWanted {
            probeWanted = false
            sendProbe()
        }
    }

    /// The master changed: offsets learned so far may not apply to it.
    func reset() {
        masterControl?.close()
        masterControl = nil
        probeInFlight = false
        probeWanted = false
        // `masterOffset` stays: a promoted replica continues the old master's offsets. The
        // replicas' must be asked again.
        for replica in group.replicas { replica.appliedOffset = -1 }
    }

    func stop() {
        pollTimer?.cancel()
        pollTimer = nil
        masterControl?.close()
        masterControl = nil
    }

    /// `master_repl_offset` from a master's ROLE reply (`["master", offset, [...]]`): read in
    /// place when it has the usual shape, decoded otherwise.
    static func masterOffset(_ bytes: [UInt8]) -> Int64? {
        if bytes.count > masterPrefix.count, bytes.starts(with: masterPrefix),
           let end = bytes[masterPrefix.count...].firstIndex(of: 13),
           let value = DecimalNumber.value(of: bytes[masterPrefix.count..<end]) {
            return value
        }
        guard let (value, _) = try? RESPValue.decode(bytes), let report = RoleReport.parse(value),
              report.role == .master else { return nil }
        return report.offset
    }

    static let masterPrefix = Array("*3\r\n$6\r\nmaster\r\n:".utf8)
    static let replicaPrefix = Array("*5\r\n$5\r\nslave\r\n".utf8)

    /// The applied offset from a replica's ROLE reply (`["slave", host, port, state, offset]`;
    /// Valkey and Dragonfly may say "replica"); -1 while it is not connected.
    static func replicaOffset(_ bytes: [UInt8]) -> Int64? {
        // Usually `*5 $5 slave <host> :<port> <state> :<offset>`: the offset is the last line.
        if bytes.starts(with: replicaPrefix), bytes.count > 3, bytes[bytes.count - 2] == 13,
           let colon = bytes[..<(bytes.count - 2)].lastIndex(of: UInt8(ascii: ":")),
           bytes[colon - 1] == 10, bytes[colon - 2] == 13,
           let value = DecimalNumber.value(of: bytes[(colon + 1)..<(bytes.count - 2)]) {
            return value
        }
        guard let (value, _) = try? RESPValue.decode(bytes), let report = RoleReport.parse(value),
              report.role == .replica else { return nil }
        return report.offset
    }
}
