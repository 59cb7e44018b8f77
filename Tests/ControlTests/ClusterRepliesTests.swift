@testable import Control
import Config
import Foundation
import RESP
import Testing
import TestSupport

/// `ClusterReplies` on literal replies (Redis 7's documented shapes, RESP2 and RESP3), then on
/// a real six-node cluster: CLUSTER SHARDS and CLUSTER SLOTS describe the same layout.
@Suite struct ClusterRepliesTests {
    private func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }

    private func node(_ id: String, _ port: Int64, role: String, health: String = "online", ip: String = "127.0.0.1",
                      endpoint: String? = nil, tlsPort: Int64? = nil) -> [RESPValue] {
        var fields: [RESPValue] = [bulk("id"), bulk(id), bulk("port"), .integer(port)]
        if let tlsPort { fields += [bulk("tls-port"), .integer(tlsPort)] }
        fields += [bulk("ip"), bulk(ip), bulk("endpoint"), bulk(endpoint ?? ip), bulk("role"), bulk(role),
                   bulk("replication-offset"), .integer(72156), bulk("health"), bulk(health)]
        return fields
    }

    @Test func shardsInRESP2AndRESP3() throws {
        let resp2: RESPValue = .array([
            .array([bulk("slots"), .array([.integer(0), .integer(5460), .integer(10923), .integer(10923)]),
                    bulk("nodes"), .array([.array(node("a", 7000, role: "master")),
                                           .array(node("b", 7003, role: "replica", health: "loading"))])]),
            .array([bulk("slots"), .array([.integer(5461), .integer(10922)]),
                    bulk("nodes"), .array([.array(node("c", 7004, role: "replica")),
                                           .array(node("d", 7001, role: "master", endpoint: "redis-1.example", tlsPort: 7101))])]),
            // A node added but given no slots yet: a shard that serves none.
            .array([bulk("slots"), .array([]), bulk("nodes"), .array([.array(node("e", 7006, role: "master"))])]),
        ])
        let shards = try #require(ClusterReplies.shards(resp2))
        #expect(shards.count == 3)
        #expect(shards[2].slots == [] && shards[2].master.address.port == 7006)
        #expect(shards[0].slots == [0...5460, 10923...10923])
        #expect(shards[0].master.address == Address(host: "127.0.0.1", port: 7000))
        #expect(shards[0].replicas.map(\.id) == ["b"] && shards[0].replicas[0].health == "loading")
        #expect(shards[1].master.address == Address(host: "redis-1.example", port: 7001), "the endpoint, not the ip")
        #expect(shards[1].master.tlsPort == 7101)
        #expect(shards[1].replicas.map(\.address.port) == [7004])

        // RESP3: maps where RESP2 has flat arrays; the same layout.
        func mapped(_ value: RESPValue) -> RESPValue {
            guard case .array(let items?) = value else { return value }
            let isFields = !items.isEmpty && items.count % 2 == 0 && stride(from: 0, to: items.count, by: 2).allSatisfy { items[$0].text != nil && items[$0].text!.first!.isLetter }
            return isFields ? .map(items.map(mapped)) : .array(items.map(mapped))
        }
        #expect(ClusterReplies.shards(mapped(resp2)) == shards)
    }

    @Test func shardWithoutAReachableMasterIsLeftOut() throws {
        let reply: RESPValue = .array([
            .array([bulk("slots"), .array([.integer(0), .integer(16383)]),
                    bulk("nodes"), .array([.array(node("a", 7000, role: "master", ip: "?", endpoint: "?")),
                                           .array(node("b", 7003, role: "replica"))])]),
        ])
        #expect(ClusterReplies.shards(reply) == [])
        #expect(ClusterReplies.shards(.error(Array("ERR unknown subcommand".utf8))) == nil)
        #expect(ClusterReplies.shards(.array([.array([bulk("slots"), .array([.integer(0), .integer(16384)]),
                                                      bulk("nodes"), .array([])])])) == nil, "slot out of range")
    }

    @Test func slotsGroupsRangesByMaster() throws {
        func entry(_ start: Int64, _ end: Int64, _ ports: [Int64]) -> RESPValue {
            .array([.integer(start), .integer(end)] + ports.map { .array([bulk("127.0.0.1"), .integer($0), bulk("id\($0)"), .array([])]) })
        }
        let reply: RESPValue = .array([entry(0, 5460, [7000, 7003]), entry(5461, 10922, [7001, 7004]),
                                       entry(10923, 16383, [7000, 7003])])
        let shards = try #require(ClusterReplies.slots(reply))
        #expect(shards.count == 2)
        #expect(shards[0].slots == [0...5460, 10923...16383])
        #expect(shards[0].master.id == "id7000" && shards[0].replicas.map(\.address.port) == [7003])
        #expect(shards[1].slots == [5461...10922])
    }

    /// Six real nodes, three shards: SHARDS (RESP2 and RESP3) and SLOTS give the same masters,
    /// replicas and slots, and the slots cover 0...16383 once.
    @Test func realClusterDescribedTheSameByShardsAndSlots() throws {
        let cluster = try RedisClusterNodes(masters: 3, replicasPerMaster: 1)
        defer { cluster.stop() }
        // CLUSTER SLOTS lists a replica once it has taken some replication stream (offset > 0):
        // a write in every shard.
        for master in try cluster.masters() {
            let client = try master.client()
            // The first key this master owns (the others answer -MOVED).
            #expect(try (0..<1000).contains { try client.command(["SET", "k\($0)", "v"]) == .simpleString(Array("OK".utf8)) })
        }
        let client = try cluster.nodes[0].client()
        #expect(try eventually(10) {
            let listed = ClusterReplies.slots(try client.command(["CLUSTER", "SLOTS"])) ?? []
            return listed.count == 3 && listed.allSatisfy { $0.replicas.count == 1 }
        })
        let fromShards = try #require(ClusterReplies.shards(try client.command(["CLUSTER", "SHARDS"])))
        let fromSlots = try #require(ClusterReplies.slots(try client.command(["CLUSTER", "SLOTS"])))
        let resp3 = try cluster.nodes[1].client()
        _ = try resp3.command(["HELLO", "3"])
        let fromShards3 = try #require(ClusterReplies.shards(try resp3.command(["CLUSTER", "SHARDS"])))

        func layout(_ shards: [ClusterShard]) -> [String] {
            shards.map { shard in
                "\(shard.slots.sorted { $0.lowerBound < $1.lowerBound }) \(shard.master.address) \(shard.replicas.map(\.address.description).sorted())"
            }.sorted()
        }
        #expect(fromShards.count == 3)
        #expect(layout(fromShards) == layout(fromSlots))
        #expect(layout(fromShards3) == layout(fromShards))
        let covered = fromShards.flatMap(\.slots).reduce(0) { $0 + $1.count }
        #expect(covered == 16_384)
        #expect(Set(fromShards.map(\.master.address.port)) == Set(try cluster.masters().map(\.port)))
    }
}
