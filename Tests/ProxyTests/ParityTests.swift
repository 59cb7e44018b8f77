import Config
import Foundation
import Testing
import TestSupport

/// Beyond the happy path: what a direct Redis shows a client, the ambassador must show too.
/// Each test runs the same thing direct and through the ambassador and compares.
extension Integration {
@Suite(.serialized) struct ParityTests {
    /// A Lua script that returns a cyclic table: Redis nests the reply until Lua's stack limit
    /// (about 8,000 levels), then ends it with an error.
    static let deepScript = "local a = {}; local b = {a}; a[1] = b; return a"

    /// Any nesting Redis produces is framed: the deep reply arrives byte for byte, and the other
    /// requests on the same shared connection (before it, after it, from another client) are
    /// answered as usual instead of failing with a lost connection.
    @Test func repliesNestedThousandsDeepAreFramed() throws {
        let cluster = try Cluster(replicas: 0)
        defer { cluster.stop() }
        let ambassador = try Ambassador(cluster: cluster, policy: .master)
        defer { ambassador.stop() }
        let commands: [[String]] = [["SET", "d:k", "v"], ["EVAL", Self.deepScript, "0"], ["GET", "d:k"],
                                    ["EVAL", Self.deepScript, "0"], ["INCR", "d:n"]]
        let direct = try cluster.master.client(timeout: 10).pipeline(commands)
        #expect(direct[1].count > 30_000, "Redis nests the reply thousands deep")
        _ = try cluster.master.client().command(["DEL", "d:n"])

        let first = try ambassador.client(timeout: 10)
        let second = try ambassador.client(timeout: 10)
        // Both sessions share the one backend connection; the second's pipeline interleaves.
        try first.send(commands.flatMap(BlockingClient.encode))
        try second.send([["GET", "d:k"], ["EVAL", Self.deepScript, "0"], ["PING"]].flatMap(BlockingClient.encode))
        let proxied = try commands.map { _ in try first.readRawReply() }
        let others = try (0..<3).map { _ in try second.readRawReply() }
        // Compared as Bools: a failing == on 30 KB arrays would make the test library diff them.
        #expect(proxied.map(\.count) == direct.map(\.count))
        #expect(proxied.elementsEqual(direct), "the deep replies differ")
        #expect(others.map(\.count) == [7, direct[1].count, 7])
        #expect(others.elementsEqual([Array("$1\r\nv\r\n".utf8), direct[1], Array("+PONG\r\n".utf8)]))
    }
}
}
