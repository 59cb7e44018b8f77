import Config
import EventLoop
import Foundation
import Logging
import Proxy
import RESP
import Synchronization
import Testing
import TestSupport

/// A real master and two replicas (`--replicaof`) on free loopback ports.
final class Cluster {
    let master: RedisServer
    let replicas: [RedisServer]

    init(replicas count: Int = 2, masterArguments: [String] = []) throws {
        master = try RedisServer(arguments: masterArguments)
        var replicas: [RedisServer] = []
        let auth = masterArguments.firstIndex(of: "--requirepass").map { ["--masterauth", masterArguments[$0 + 1]] } ?? []
        for _ in 0..<count {
            replicas.append(try RedisServer(arguments: ["--replicaof", "127.0.0.1", String(master.port)]
                                            + auth + masterArguments))
        }
        self.replicas = replicas
        for replica in replicas { try replica.waitForReplicationLink() }
    }

    func stop() {
        replicas.forEach { $0.stop() }
        master.stop()
    }

    /// Waits until every replica has what the master has. WAIT only counts the writes of its own
    /// connection, so write a marker on this connection first.
    func sync() throws {
        let client = try master.client()
        _ = try client.command(["SET", "__sync_marker__", "1"])
        let acknowledged = try client.command(["WAIT", String(replicas.count), "5000"])
        guard acknowledged == .integer(Int64(replicas.count)) else {
            throw RedisServerError.didNotStart("replicas did not catch up: WAIT gave \(acknowledged)")
        }
    }
}

/// The ambassador running in this process on its own event-loop thread.
final class Ambassador {
    let thread: EventLoopThread
    let port: UInt16

    init(_ given: AmbassadorConfig) throws {
        var quiet = given
        if quiet.logLevel == "info" { quiet.logLevel = "warning" }  // quiet test output
        let config = quiet
        let port = Mutex<UInt16>(0)
        let failure = Mutex<String?>(nil)
        thread = try EventLoopThread.start(name: "ambassador") { loop in
            var logger = Logger(label: "ambassador-test")
            logger.logLevel = .warning
            let proxy = Proxy(config: config, loop: loop, logger: logger)
            do {
                try proxy.start()
                loop.context = proxy
                port.withLock { $0 = proxy.listenPort }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        if let failure = failure.withLock({ $0 }) { throw RedisServerError.didNotStart("ambassador: \(failure)") }
        self.port = port.withLock { $0 }
        try waitUntilReady(tlsListener: config.listenTLS != nil)
    }

    convenience init(cluster: Cluster, policy: ReadPolicy = .preferReplica, replicas: [RedisServer]? = nil,
                     configure: (inout AmbassadorConfig) -> Void = { _ in }) throws {
        var config = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 0)),
                                      master: Address(host: "127.0.0.1", port: cluster.master.port),
                                      replicas: (replicas ?? cluster.replicas).map { Address(host: "127.0.0.1", port: $0.port) },
                                      readPolicy: policy)
        configure(&config)
        try self.init(config)
    }

    /// Ready when a PING and a write round-trip (the master connection is up); on a TLS
    /// listener (which a plaintext client cannot reach) when the backends are up.
    private func waitUntilReady(tlsListener: Bool) throws {
        if tlsListener {
            guard eventually(10, { onLoop { $0.backendsUp } }) else { throw RedisServerError.didNotStart("ambassador's backends not up") }
            return
        }
        guard eventually(10, { (try? client().command(["PING"])) == .simple("PONG") }) else {
            throw RedisServerError.didNotStart("ambassador did not answer")
        }
        // The replica connections' first chance to connect (a test may list a dead one: bounded).
        eventually(1) { onLoop { $0.backendsUp } }
    }

    func client(timeout: Double = 5) throws -> BlockingClient { try BlockingClient(port: port, timeout: timeout) }

    /// Runs `body` on the ambassador's loop thread and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (Proxy) -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        thread.handle.post { loop in
            result.withLock { $0 = body(loop.context as! Proxy) }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    func stop() {
        thread.handle.post { loop in
            (loop.context as? Proxy)?.shutdown()
            loop.context = nil
            loop.stop()
        }
        thread.join()
    }
}

extension BlockingClient {
    /// Sends one command and returns its reply, raw.
    func readRawReplyAfter(_ command: [String]) throws -> [UInt8] {
        try send(BlockingClient.encode(command))
        return try readRawReply()
    }

    /// Sends every command in one write (a pipeline), then reads one reply per command, raw.
    func pipeline(_ commands: [[String]]) throws -> [[UInt8]] {
        try send(commands.flatMap(BlockingClient.encode))
        return try commands.map { _ in try readRawReply() }
    }
}

/// Counts of `cmdstat_<name>` calls in `INFO commandstats`.
func commandCalls(_ server: RedisServer, _ command: String) throws -> Int {
    let stats = try server.info("commandstats")
    guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }),
          let calls = line.split(separator: ",").first?.split(separator: "=").last, let count = Int(calls) else { return 0 }
    return count
}

/// How many ROLE commands `server` has run (the health checks' question), read from LATENCY
/// HISTOGRAM: an admin command, which no MONITOR stream shows, unlike INFO.
func roleCalls(_ server: RedisServer) throws -> Int {
    guard let entry = try server.client().command(["LATENCY", "HISTOGRAM", "role"]).list, entry.count >= 2,
          let fields = entry[1].list, fields.count >= 2, case .integer(let calls) = fields[1] else { return 0 }
    return Int(calls)
}

/// Waits until each of `servers` has run a ROLE since `before` (each one's `roleCalls` then):
/// a health check has run on every node meanwhile.
func awaitHealthChecks(on servers: [RedisServer], since before: [Int]) -> Bool {
    eventually(5) { (try? servers.map(roleCalls)).map { zip($0, before).allSatisfy { $0 > $1 } } ?? false }
}

/// Waits until the ambassador has read `command` (lower case, as CLIENT LIST writes it) from
/// the session `id`: its CLIENT LIST line's `cmd=`, asked through `observer`.
func awaitLastCommand(_ command: String, of id: Int64, via observer: BlockingClient) -> Bool {
    eventually(5) { ((try? observer.command(["CLIENT", "LIST", "ID", String(id)]).text) ?? "").contains(" cmd=\(command) ") }
}

/// The session id CLIENT ID gives `client`.
func sessionID(_ client: BlockingClient) throws -> Int64 {
    guard case .integer(let id) = try client.command(["CLIENT", "ID"]) else { throw RedisServerError.didNotStart("no CLIENT ID") }
    return id
}

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A master and a replica whose replication stream runs through a relay that a test can hold
/// back (`relay.pauseReplication(true)`): a lagging replica on demand.
final class RelayedReplica {
    let master: RedisServer
    let relay: TCPRelay
    let replica: RedisServer

    init() throws {
        master = try RedisServer()
        relay = try TCPRelay(to: master.port)
        replica = try RedisServer(arguments: ["--replicaof", "127.0.0.1", String(relay.port)])
        try replica.waitForReplicationLink()
    }

    func stop() {
        replica.stop()
        relay.stop()
        master.stop()
    }
}

/// Whether `server` has a client blocked in `command` (lower case): a test waits for that rather
/// than sleeping.
func isBlocked(in command: String, on server: RedisServer) -> Bool {
    ((try? server.client().command(["CLIENT", "LIST"]))?.text ?? "").contains("cmd=\(command) ")
}
