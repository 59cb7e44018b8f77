import EventLoop
import Testing

/// Runs `loop` on this thread until a test calls `loop.stop()`, failing after `timeout` seconds.
func runLoop(_ loop: EventLoop, timeout: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) {
    var timedOut = false
    let guardTimer = Timer(loop: loop) {
        timedOut = true
        loop.stop()
    }
    guardTimer.schedule(after: timeout)
    loop.run()
    guardTimer.cancel()
    #expect(!timedOut, "event loop test timed out", sourceLocation: sourceLocation)
}

/// Collects what a connection reads; optionally stops the loop once `expected` bytes arrived.
final class Collector: ConnectionDelegate {
    var received: [UInt8] = []
    var connected = false
    var closed = false
    var closeError: SocketError?
    var expected = Int.max
    var onConnect: ((Connection) -> Void)?
    var onClose: (() -> Void)?
    let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    func connectionDidConnect(_ connection: Connection) {
        connected = true
        onConnect?(connection)
    }

    func connectionDidRead(_ connection: Connection) {
        connection.copyInput(from: 0, count: connection.inputCount, into: &received)
        connection.discardInput(connection.inputCount)
        if received.count >= expected { loop.stop() }
    }

    func connectionDidClose(_ connection: Connection, error: SocketError?) {
        closed = true
        closeError = error
        onClose?()
    }
}

/// Reads nothing itself: remembers its connection and the most input it ever held (a test drains
/// it at its own pace, from a timer).
final class SlowReader: ConnectionDelegate {
    var connection: Connection?
    var peak = 0
    func connectionDidRead(_ connection: Connection) {
        self.connection = connection
        peak = max(peak, connection.inputCount)
    }
    func connectionDidClose(_ connection: Connection, error: SocketError?) {}
}

/// Echoes every byte back by moving it from its input to its own output (no copy).
final class Echo: ConnectionDelegate {
    func connectionDidRead(_ connection: Connection) {
        connection.moveInput(connection.inputCount, to: connection)
    }
    func connectionDidClose(_ connection: Connection, error: SocketError?) {}
}

let loopback = Endpoint(host: "127.0.0.1", port: 0)

func pattern(_ count: Int, seed: UInt8 = 7) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 11)) }
}
