import Config
import EventLoop
import RESP

/// A small RESP client for the control loop's own requests (ROLE, INFO): one connection to one
/// node, requests answered in order, every reply decoded into a `RESPValue`. Never on the data
/// path.
final class CheckClient: ConnectionDelegate {
    typealias Reply = Result<RESPValue, SocketError>

    let endpoint: Endpoint
    private let loop: EventLoop
    private var connection: Connection?
    private var waiting: [(Reply) -> Void] = []
    private var connected = false
    private let timeout: Double
    private var handshake: [[String]]
    /// TLS for the next connection (nil: plaintext).
    private var tls: TLSContext?

    init(endpoint: Endpoint, loop: EventLoop, timeout: Double, username: String?, password: String?, tls: TLSContext?) {
        self.endpoint = endpoint
        self.loop = loop
        self.timeout = timeout
        self.tls = tls
        handshake = Self.handshake(username: username, password: password)
    }

    private static func handshake(username: String?, password: String?) -> [[String]] {
        guard let password else { return [] }
        return [username.map { ["AUTH", $0, password] } ?? ["AUTH", password]]
    }

    /// New credentials (a rotated password): an open connection authenticates again now, in
    /// order with its checks; the next connection uses them from the start. A new TLS context
    /// (rotated certificates) is used by the next connection.
    func update(username: String?, password: String?, tls: TLSContext?) {
        self.tls = tls
        let next = Self.handshake(username: username, password: password)
        guard next != handshake else { return }
        handshake = next
        if connection != nil {
            for command in next { write(command) { _ in } }
        }
    }

    /// Replies nobody asked for: pub/sub messages on a subscribed connection.
    var onMessage: ((RESPValue) -> Void)?
    /// Called when the connection closes (a subscriber re-subscribes on the next round).
    var onClose: (() -> Void)?

    var isOpen: Bool { connection != nil }
    /// Open and past the TCP handshake (a check left unanswered on it met a silent server, not an
    /// unreachable one).
    var isConnected: Bool { connection != nil && connected }
    var pending: Int { waiting.count }

    /// Sends `arguments`; `reply` gets the decoded reply, or the error that closed the connection.
    func send(_ arguments: [String], reply: @escaping (Reply) -> Void) {
        if connection == nil {
            connected = false
            do {
                connection = try Connection.connect(to: endpoint, on: loop, timeout: timeout, tls: tls, delegate: self)
            } catch {
                reply(.failure(error))
                return
            }
            // A wrong password shows in the replies that follow (NOAUTH errors).
            for command in handshake { write(command) { _ in } }
        }
        write(arguments, reply: reply)
    }

    private func write(_ arguments: [String], reply: @escaping (Reply) -> Void) {
        connection?.write(RESPValue.array(arguments.map { .bulk($0) }).encoded)
        waiting.append(reply)
    }

    /// Drops the connection (a check that took too long): what waits gets a timeout.
    func reset(_ why: String) {
        guard let connection else { return }
        self.connection = nil
        forgetAddress()
        connection.delegate = nil
        connection.close(flush: false)
        failAll(SocketError(.timeout, detail: why))
        onClose?()
    }

    func connectionDidConnect(_ connection: Connection) {
        connected = true
        // Left out of the clients' MONITOR streams (see `OwnConnections`).
        localAddress = connection.localAddress
        OwnConnections.add(localAddress!)
    }

    /// This connection's address as Redis sees its client, while connected.
    private var localAddress: String?

    deinit {
        if let localAddress { OwnConnections.remove(localAddress) }
    }

    private func forgetAddress() {
        if let localAddress { OwnConnections.remove(localAddress) }
        localAddress = nil
    }

    func connectionDidRead(_ connection: Connection) {
        while connection.inputCount > 0 {
            var bytes: [UInt8] = []
            connection.copyInput(from: 0, count: connection.inputCount, into: &bytes)
            let decoded: (RESPValue, Int)?
            do throws(ProtocolError) {
                decoded = try RESPValue.decode(bytes)
            } catch {
                return reset("invalid RESP from \(endpoint): \(error)")
            }
            guard let (value, used) = decoded else { return }
            connection.discardInput(used)
            guard !waiting.isEmpty else {
                onMessage?(value)
                continue
            }
            waiting.removeFirst()(.success(value))
        }
    }

    func connectionDidClose(_ connection: Connection, error: SocketError?) {
        guard self.connection === connection else { return }
        self.connection = nil
        forgetAddress()
        failAll(error ?? SocketError(.closedByPeer, detail: "\(endpoint) closed the connection"))
        onClose?()
    }

    func connectionDidDrainOutput(_ connection: Connection) {}

    private func failAll(_ error: SocketError) {
        let callbacks = waiting
        waiting.removeAll()
        for callback in callbacks { callback(.failure(error)) }
    }
}
