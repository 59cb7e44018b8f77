import Foundation
import RESP
#if canImport(Glibc)
import Glibc
#endif

/// A real Redis Cluster on loopback: `masters × (1 + replicasPerMaster)` servers started with
/// `--cluster-enabled yes` (each with its bus on a free port of its own, `cluster-port`), joined
/// by `redis-cli --cluster create … --cluster-replicas N`, ready once every node says
/// `cluster_state:ok` and knows every other node.
public final class RedisClusterNodes: @unchecked Sendable {
    /// In `redis-cli --cluster create`'s order: the first `masters` were made masters.
    public let nodes: [RedisServer]

    public init(masters: Int = 3, replicasPerMaster: Int = 1, nodeTimeoutMilliseconds: Int = 1000) throws {
        var nodes: [RedisServer] = []
        do {
            for _ in 0..<masters * (1 + replicasPerMaster) {
                let bus = try RedisServer.freePort()
                nodes.append(try RedisServer(arguments: [
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", String(bus),
                    "--cluster-node-timeout", String(nodeTimeoutMilliseconds),
                    // A replica takes over whatever its link's age (the tests fail masters over
                    // right after start).
                    "--cluster-replica-validity-factor", "0",
                ]))
            }
            self.nodes = nodes
            let create = Process()
            create.executableURL = try RedisServer.executable("redis-cli")
            create.arguments = ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" }
                + ["--cluster-replicas", String(replicasPerMaster), "--cluster-yes"]
            create.standardInput = FileHandle.nullDevice
            create.standardOutput = FileHandle.nullDevice
            create.standardError = FileHandle.nullDevice
            try create.run()
            // redis-cli waits for the join for ever: a node that cannot reach another's bus
            // would hang the test run.
            if !eventually(30, every: 0.05, { !create.isRunning }) {
                create.terminate()
                create.waitUntilExit()
                throw RedisServerError.didNotStart("redis-cli --cluster create did not finish within 30 s")
            }
            guard create.terminationStatus == 0 else {
                throw RedisServerError.didNotStart("redis-cli --cluster create exited \(create.terminationStatus)")
            }
            try waitUntilHealthy()
        } catch {
            nodes.forEach { $0.stop() }
            throw error
        }
    }

    public func stop() { nodes.forEach { $0.stop() } }

    /// Waits until every running node reports `cluster_state:ok`, knows `nodes.count` nodes,
    /// and every replica's link to its master is up.
    public func waitUntilHealthy(timeout: Double = 20, running: [RedisServer]? = nil) throws {
        let running = running ?? nodes
        let healthy = try eventually(timeout, every: 0.1) {
            try running.allSatisfy { node in
                let info = try node.client().command(["CLUSTER", "INFO"]).text ?? ""
                guard info.contains("cluster_state:ok"), info.contains("cluster_known_nodes:\(nodes.count)") else { return false }
                let replication = try node.info("replication")
                return replication.contains("role:master") || replication.contains("master_link_status:up")
            }
        }
        if !healthy { throw RedisServerError.didNotStart("the cluster never reported cluster_state:ok on every node") }
    }

    /// The nodes that report role master now.
    public func masters() throws -> [RedisServer] {
        try nodes.filter { try $0.info("replication").contains("role:master") }
    }
}
