import EventLoop
import Foundation
import Testing
import TestSupport

/// `Connection` over TLS, both ends in this process (a `Listener` with a server context, a
/// client with a client context), with openssl-made certificates: bytes intact both ways,
/// back-pressure, records held by OpenSSL while reading is paused, and refusals.
@Suite struct TLSConnectionTests {
    static func contexts(clientCertificate: Bool = false, requireClient: Bool = false,
                         verify: TLSVerify = .full, serverName: String? = nil) throws -> (server: TLSContext, client: TLSContext) {
        let certificates = try TestCertificates.make()
        func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
        let server = try TLSContext(server: try bytes(certificates.server.cert), keyPEM: try bytes(certificates.server.key),
                                    caPEM: requireClient ? try bytes(certificates.ca) : nil, minVersion: .tls12)
        let client = try TLSContext(client: try bytes(certificates.ca),
                                    certPEM: clientCertificate ? try bytes(certificates.client.cert) : nil,
                                    keyPEM: clientCertificate ? try bytes(certificates.client.key) : nil,
                                    verify: verify, minVersion: .tls12, serverName: serverName)
        return (server, client)
    }

    /// 8 MiB up and back through an echo that moves its input to its output: every byte, in order.
    @Test func eightMebibytesIntactBothWays() throws {
        let (server, client) = try Self.contexts()
        let loop = try EventLoop()
        let size = 8 << 20
        let payload = pattern(size, seed: 3)
        let listener = try Listener(loop: loop, endpoint: loopback) { $0.start(delegate: Echo(), tls: server) }
        let collector = Collector(loop: loop)
        collector.expected = size
        collector.onConnect = { connection in
            #expect(connection.isTLS && connection.tlsSummary.hasPrefix("TLSv1.3"))
            connection.write(payload)
        }
        let connection = try Connection.connect(to: Endpoint(host: "127.0.0.1", port: listener.port), on: loop,
                                                timeout: 2, tls: client, delegate: collector)
        runLoop(loop, timeout: 30)
        #expect(collector.received.count == size)
        #expect(collector.received == payload)
        connection.close()
    }

    /// A reader that pauses at its high-water mark: the records OpenSSL already decrypted (or read
    /// ahead) are delivered once it drains, though the socket says nothing more.
    @Test func pausedReaderGetsEveryRecordWhenItDrains() throws {
        let (server, client) = try Self.contexts()
        let loop = try EventLoop()
        let slow = SlowReader()
        let mark = 20_000
        let listener = try Listener(loop: loop, endpoint: loopback) {
            $0.readHighWaterMark = mark
            $0.start(delegate: slow, tls: server)
        }
        let size = 3 << 20
        let payload = pattern(size, seed: 9)
        let writer = Collector(loop: loop)
        writer.onConnect = { $0.write(payload) }
        let connection = try Connection.connect(to: Endpoint(host: "127.0.0.1", port: listener.port), on: loop,
                                                timeout: 2, tls: client, delegate: writer)
        var received: [UInt8] = []
        var sawPause = false
        let tick = Timer(loop: loop, repeating: true) {
            guard let reader = slow.connection else { return }
            if reader.isReadingPaused { sawPause = true }
            let n = min(reader.inputCount, 7_000)
            reader.copyInput(from: 0, count: n, into: &received)
            reader.discardInput(n)
            if received.count == size { loop.stop() }
        }
        tick.schedule(after: 0.001)
        runLoop(loop, timeout: 60)
        #expect(sawPause)
        #expect(slow.peak <= mark + 64 * 1024, "reads stop near the mark")
        #expect(received.count == size)
        #expect(received == payload)
        connection.close()
    }

    /// Mutual TLS: a client without a certificate is refused by a server that requires one, and
    /// a client that verifies names refuses a server reached under a name its certificate lacks.
    @Test func refusalsCloseWithTheReason() throws {
        let loop = try EventLoop()
        let (requiring, anonymous) = try Self.contexts(requireClient: true)
        let listener = try Listener(loop: loop, endpoint: loopback) { $0.start(delegate: Echo(), tls: requiring) }
        let refused = Collector(loop: loop)
        refused.onClose = { loop.stop() }
        refused.onConnect = { $0.write("hello") }
        _ = try Connection.connect(to: Endpoint(host: "127.0.0.1", port: listener.port), on: loop, timeout: 2,
                                   tls: anonymous, delegate: refused)
        runLoop(loop)
        #expect(refused.closed && refused.received.isEmpty)

        // The certificate names 127.0.0.1 and localhost, not redis.example.com.
        let (plainServer, strict) = try Self.contexts(serverName: "redis.example.com")
        let other = try Listener(loop: loop, endpoint: loopback) { $0.start(delegate: Echo(), tls: plainServer) }
        let mismatched = Collector(loop: loop)
        mismatched.onClose = { loop.stop() }
        _ = try Connection.connect(to: Endpoint(host: "127.0.0.1", port: other.port), on: loop, timeout: 2,
                                   tls: strict, delegate: mismatched)
        runLoop(loop)
        #expect(!mismatched.connected)
        #expect(mismatched.closeError?.description.contains("hostname mismatch") == true, "\(String(describing: mismatched.closeError))")
        _ = listener
    }
}
