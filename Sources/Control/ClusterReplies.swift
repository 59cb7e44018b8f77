import Config
import Proxy
import RESP

/// One shard of a Redis Cluster as a node describes it: the slot ranges it serves, its master
/// and its replicas (`discovery: cluster`).
struct ClusterShard: Sendable, Equatable {
    struct Node: Sendable, Equatable {
        var id: String
        var address: Address
        /// The TLS port, when the node has one (`tls-port` in CLUSTER SHARDS).
        var tlsPort: UInt16?
        /// `online`, `failed` or `loading` (CLUSTER SHARDS); `online` from CLUSTER SLOTS,
        /// which lists no failed node.
        var health: String
    }

    /// Inclusive slot ranges, in the order the node gave them.
    var slots: [ClosedRange<Int>]
    var master: Node
    var replicas: [Node]
}

/// The slot layout from `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (every version), as pure
/// functions of the replies, RESP2 or RESP3.
enum ClusterReplies {
    /// `CLUSTER SHARDS`: one entry per shard, a field/value list (`slots`, `nodes`), each node
    /// a field/value list (`id`, `port`, `tls-port`, `ip`, `endpoint`, `hostname`, `role`,
    /// `health` …). A shard without a master (every node failed) is left out; so are its slots,
    /// which then belong to nobody, as the cluster says. A master without slots (a node just
    /// added, or emptied before its removal) is a shard that serves none: a slot moving to it
    /// answers -ASK with its address, and the fan-outs (DBSIZE, SCAN, SCRIPT LOAD …) reach the
    /// keys and settings it holds.
    static func shards(_ reply: RESPValue) -> [ClusterShard]? {
        guard let entries = reply.list else { return nil }
        var shards: [ClusterShard] = []
        for entry in entries {
            guard let fields = entry.fields, let slotList = fields["slots"]?.list,
                  let nodeList = fields["nodes"]?.list else { return nil }
            var slots: [ClosedRange<Int>] = []
            var i = 0
            while i + 1 < slotList.count {
                guard let start = integer(slotList[i]), let end = integer(slotList[i + 1]),
                      0 <= start, start <= end, end < 16_384 else { return nil }
                slots.append(Int(start)...Int(end))
                i += 2
            }
            var master: ClusterShard.Node?
            var replicas: [ClusterShard.Node] = []
            for nodeEntry in nodeList {
                guard let node = nodeEntry.fields, let id = node["id"]?.text,
                      let port = node["port"].flatMap(integer).flatMap({ UInt16(exactly: $0) }).flatMap({ $0 > 0 ? $0 : nil })
                        ?? tlsOnlyPort(node) else {
                    return nil
                }
                guard let host = preferredHost(node) else { continue }
                let described = ClusterShard.Node(id: id, address: Address(host: host, port: port),
                                                  tlsPort: node["tls-port"].flatMap(integer).flatMap { UInt16(exactly: $0) },
                                                  health: node["health"]?.text ?? "online")
                switch node["role"]?.text {
                case "master": master = described
                case "replica", "slave": replicas.append(described)
                default: continue
                }
            }
            // A failed master with slots: its replicas will take over; until then the shard
            // has no master (writes wait, as in a failover).
            guard let master else { continue }
            shards.append(ClusterShard(slots: slots, master: master, replicas: replicas))
        }
        return shards
    }

    /// `CLUSTER SLOTS`: one entry per slot range — start, end, then the master and its
    /// replicas, each `[host, port, id, (metadata)]`. Ranges served by the same master are one
    /// shard.
    static func slots(_ reply: RESPValue) -> [ClusterShard]? {
        guard let entries = reply.list else { return nil }
        var shards: [ClusterShard] = []
        for entry in entries {
            guard let items = entry.list, items.count >= 3, let start = integer(items[0]), let end = integer(items[1]),
                  0 <= start, start <= end, end < 16_384 else { return nil }
            var nodes: [ClusterShard.Node] = []
            for nodeEntry in items[2...] {
                guard let node = nodeEntry.list, node.count >= 2, let host = node[0].text,
                      let port = integer(node[1]).flatMap({ UInt16(exactly: $0) }) else { return nil }
                // "?" or "": the node does not know its address; skipped, like Redis's clients do.
                guard !host.isEmpty, host != "?" else { continue }
                nodes.append(ClusterShard.Node(id: node.count > 2 ? node[2].text ?? "" : "",
                                               address: Address(host: host, port: port), tlsPort: nil, health: "online"))
            }
            guard let master = nodes.first else { continue }
            let range = Int(start)...Int(end)
            if let index = shards.firstIndex(where: { $0.master.address == master.address }) {
                shards[index].slots.append(range)
            } else {
                shards.append(ClusterShard(slots: [range], master: master, replicas: Array(nodes.dropFirst())))
            }
        }
        return shards
    }

    /// `endpoint` (what `cluster-preferred-endpoint-type` chose), else `ip`; nil when neither
    /// is known (`?` or empty).
    private static func preferredHost(_ node: [String: RESPValue]) -> String? {
        for key in ["endpoint", "ip"] {
            if let host = node[key]?.text, !host.isEmpty, host != "?" { return host }
        }
        return nil
    }

    /// A node that listens only for TLS reports `tls-port` and no `port` (or port 0).
    private static func tlsOnlyPort(_ node: [String: RESPValue]) -> UInt16? {
        node["tls-port"].flatMap(integer).flatMap { UInt16(exactly: $0) }
    }

    private static func integer(_ value: RESPValue) -> Int64? { RoleReport.integer(value) }
}
