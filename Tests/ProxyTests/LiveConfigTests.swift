import Config
import Foundation
import RESP
import Testing
import TestSupport

/// `Proxy.apply`: what a reload changes on a running worker, and what it leaves alone.
extension Integration {
@Suite(.serialized) struct LiveConfigTests {
    /// A new master takes the next writes; a session inside MULTI on the old one finishes there.
    @Test func masterChangeMovesNewWritesAndLetsOpenTransactionsFinish() throws {
        let old = try RedisServer()
        defer { old.stop() }
        let new = try RedisServer()
        defer { new.stop() }
        var config = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 0)),
                                      master: Address(host: "127.0.0.1", port: old.port), readPolicy: .master)
        let ambassador = try Ambassador(config)
        defer { ambassador.stop() }
        let transaction = try ambassador.client()
        let plain = try ambassador.client()
        #expect(try transaction.command(["MULTI"]) == .simple("OK"))
        #expect(try transaction.command(["SET", "tx", "old"]) == .simple("QUEUED"))
        #expect(try plain.command(["SET", "k", "before"]) == .simple("OK"))

        config.master = Address(host: "127.0.0.1", port: new.port)
        let snapshot = config
        let problems = ambassador.onLoop { $0.apply(snapshot) }
        #expect(problems == [])
        #expect(try plain.command(["SET", "k", "after"]) == .simple("OK"))
        #expect(try transaction.command(["EXEC"]) == .array([.simple("OK")]))
        #expect(try old.client().command(["GET", "k"]) == .bulk("before"))
        #expect(try new.client().command(["GET", "k"]) == .bulk("after"))
        #expect(try old.client().command(["GET", "tx"]) == .bulk("old"), "the open transaction ran where it began")
        #expect(try new.client().command(["GET", "tx"]) == .bulkString(nil))
        // The next transaction runs on the new master.
        #expect(try transaction.command(["MULTI"]) == .simple("OK"))
        #expect(try transaction.command(["SET", "tx", "new"]) == .simple("QUEUED"))
        #expect(try transaction.command(["EXEC"]) == .array([.simple("OK")]))
        #expect(try new.client().command(["GET", "tx"]) == .bulk("new"))
        // The old master's connections close once they have nothing in flight.
        #expect(try eventually(3) { try Self.clientCount(old) == 1 }, "only this check's own connection is left")
    }

    /// A new listen address is opened before the old one closes; connected clients carry on.
    @Test func listenChangeKeepsConnectedClients() throws {
        let master = try RedisServer()
        defer { master.stop() }
        var config = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 0)),
                                      master: Address(host: "127.0.0.1", port: master.port), readPolicy: .master)
        let ambassador = try Ambassador(config)
        defer { ambassador.stop() }
        let connected = try ambassador.client()
        #expect(try connected.command(["SET", "a", "1"]) == .simple("OK"))
        let newPort = try RedisServer.freePort()
        config.listen = .tcp(Address(host: "127.0.0.1", port: newPort))
        let snapshot = config
        #expect(ambassador.onLoop { $0.apply(snapshot) } == [])
        #expect(try connected.command(["GET", "a"]) == .bulk("1"))
        #expect(try BlockingClient(port: newPort).command(["GET", "a"]) == .bulk("1"))
        #expect((try? BlockingClient(port: ambassador.port, timeout: 1)) == nil, "the old address is closed")
        #expect(ambassador.onLoop { $0.listenPort } == newPort)
    }

    /// New credentials are used by new backend connections: rotate the password on the server,
    /// reload, and the reconnect logs in with the new one.
    @Test func newCredentialsApplyToNewConnections() throws {
        let master = try RedisServer(arguments: ["--requirepass", "first"])
        defer { master.stop() }
        var config = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 0)),
                                      master: Address(host: "127.0.0.1", port: master.port), readPolicy: .master,
                                      password: "first")
        let ambassador = try Ambassador(config)
        defer { ambassador.stop() }
        let app = try ambassador.client()
        #expect(try app.command(["SET", "p", "1"]) == .simple("OK"))
        let admin = try master.client()
        #expect(try admin.command(["CONFIG", "SET", "requirepass", "second"]) == .simple("OK"))
        config.password = "second"
        let snapshot = config
        #expect(ambassador.onLoop { $0.apply(snapshot) } == [])
        // Drop the ambassador's connections: it must come back with the new password.
        _ = try admin.command(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        var reply: RESPValue? = nil
        eventually(5, every: 0.05) {
            reply = try? app.command(["INCR", "p"])
            if case .integer = reply { return true }
            return false
        }
        guard case .integer(let value)? = reply else {
            Issue.record("no write after the password change: \(String(describing: reply))")
            return
        }
        #expect(value >= 2)
        // Back to the password the harness stops the server with.
        _ = try admin.command(["CONFIG", "SET", "requirepass", "first"])
    }

    static func clientCount(_ server: RedisServer) throws -> Int {
        let info = try server.info("clients")
        let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("connected_clients:") }
        return line.flatMap { Int($0.split(separator: ":")[1]) } ?? -1
    }
}
}
