import Foundation
import RESP
import Synchronization
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The binary with its config laid out as a Kubernetes ConfigMap volume does it:
/// `DIR/ambassador.yaml → ..data/ambassador.yaml`, `..data → ..<version>`, and an update swaps the
/// `..data` symlink atomically (a rename), never writing the file in place.
final class ConfigMapAmbassador {
    let directory: URL
    let port: UInt16
    let adminPort: UInt16
    let running: AmbassadorProcess
    var process: Process { running.process }
    private var version = 0
    var log: URL { running.log }

    init(_ yaml: (_ port: UInt16, _ adminPort: UInt16) -> String, workers: Int = 1, readyTimeout: Double = 10) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-cm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try RedisServer.freePort()
        adminPort = try RedisServer.freePort()
        try Self.publish(yaml(port, adminPort), version: 1, in: directory)
        version = 1
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("ambassador.yaml").path,
                                                   withDestinationPath: "..data/ambassador.yaml")
        running = try AmbassadorProcess(arguments: ["--config", directory.appendingPathComponent("ambassador.yaml").path],
                                        log: directory.appendingPathComponent("ambassador.log"))
        let process = running.process
        let ready = eventually(readyTimeout) {
            // Ready when a write goes through and every configured backend is up (or it exited).
            guard process.isRunning else { return true }
            guard (try? BlockingClient(port: port, timeout: 2).command(["SET", "__ready__", "1"])) == .simpleString(Array("OK".utf8)),
                  let metrics = try? HTTPProbe.request(port: adminPort, path: "/metrics"), metrics.status == 200 else { return false }
            return !metricSamples(metrics.body).contains { $0.key.hasPrefix("redis_ambassador_backend_up{") && $0.value == 0 }
        }
        if ready && process.isRunning { return }
        // Read the log before stop() removes the directory it is in.
        let why = process.isRunning ? "not ready after \(readyTimeout) s" : "exited with status \(process.terminationStatus)"
        let text = logText
        stop()
        throw RedisServerError.didNotStart("ambassador \(why); log:\n\(text)")
    }

    var logText: String { running.logText }

    /// Writes a new version directory and swaps `..data` to it in one rename, as the kubelet does.
    func publish(_ yaml: String) throws {
        version += 1
        try Self.publish(yaml, version: version, in: directory)
    }

    static func publish(_ yaml: String, version: Int, in directory: URL) throws {
        let name = "..v\(version)"
        let versionDirectory = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: versionDirectory, withIntermediateDirectories: true)
        try yaml.write(to: versionDirectory.appendingPathComponent("ambassador.yaml"), atomically: true, encoding: .utf8)
        let temporary = directory.appendingPathComponent("..data_tmp").path
        try? FileManager.default.removeItem(atPath: temporary)
        try FileManager.default.createSymbolicLink(atPath: temporary, withDestinationPath: name)
        guard rename(temporary, directory.appendingPathComponent("..data").path) == 0 else {
            throw RedisServerError.didNotStart("rename ..data: \(String(cString: strerror(errno)))")
        }
    }

    func admin(_ path: String, method: String = "GET", headers: [String] = []) throws -> (status: Int, body: String) {
        try HTTPProbe.request(port: adminPort, method: method, path: path, headers: headers)
    }

    func configView() throws -> [String: Any] {
        let body = try admin("/config").body
        return try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] ?? [:]
    }

    func generation() throws -> Int { try configView()["generation"] as? Int ?? -1 }

    func lastReloadResult() throws -> String {
        ((try configView()["last_reload"]) as? [String: Any])?["result"] as? String ?? ""
    }

    /// Waits until the config generation is `expected`; returns how long that took.
    @discardableResult
    func waitForGeneration(_ expected: Int, timeout: Double = 5) throws -> Double {
        let start = Date()
        if try eventually(timeout, every: 0.01, { try generation() == expected }) { return Date().timeIntervalSince(start) }
        throw RedisServerError.didNotStart("generation \(expected) not reached (at \(try generation())); log:\n\(logText)")
    }

    func signal(_ number: Int32) { running.signal(number) }

    /// Waits for the process to exit; its status, or nil if it is still running.
    func waitForExit(timeout: Double) -> Int32? { running.waitForExit(timeout: timeout) }

    func stop() {
        running.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Metric families and samples by name, as a Prometheus parser reads them.
func metricSamples(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space]), default: 0] += value
    }
    return samples
}

extension Integration {
@Suite(.serialized) struct ReloadTests {
    static func yaml(_ port: UInt16, _ admin: UInt16, master: RedisServer, replicas: [RedisServer],
                     policy: String = "prefer-replica", extra: String = "") -> String {
        var text = "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nread_policy: \(policy)\n"
        text += "admin:\n  listen: 127.0.0.1:\(admin)\nlog_level: info\n"
        text += replicas.isEmpty ? "replicas:\n" : "replicas:\n" + replicas.map { "  - 127.0.0.1:\($0.port)\n" }.joined()
        return text + extra
    }

    /// A master, one replica, and the binary in front of them (prefer-replica, admin on).
    static func withOneReplica() throws -> (Cluster, ConfigMapAmbassador) {
        let cluster = try Cluster(replicas: 1)
        let (master, replica) = (cluster.master, cluster.replicas[0])
        do {
            return (cluster, try ConfigMapAmbassador { port, admin in Self.yaml(port, admin, master: master, replicas: [replica]) })
        } catch {
            cluster.stop()
            throw error
        }
    }

    /// loop_pause (a wait after a busy pass of the worker): a client alone, request after
    /// request, never makes it wait (its round trips cost nothing more); clients whose pipelines
    /// arrive together do. Every reply still comes, in order, and a reload turns it off live.
    @Test func loopPauseWaitsOnlyAfterBusyPassesAndReloadsLive() throws {
        let cluster = try Cluster(replicas: 1)
        defer { cluster.stop() }
        var yaml: (String) -> String = { _ in "" }
        let ambassador = try ConfigMapAmbassador { port, admin in
            yaml = { extra in Self.yaml(port, admin, master: cluster.master, replicas: cluster.replicas, extra: extra) }
            return yaml("loop_pause: 200us\n")
        }
        defer { ambassador.stop() }
        #expect(try (ambassador.configView()["config"] as? [String: Any])?["loop_pause"] as? String == "200us")
        // The worker publishes its counts every 0.5 s. A publication after a PING sent now
        // (its commands count grew past what was published before) covers every pause before.
        let probe = try BlockingClient(port: ambassador.port, timeout: 10)
        func pausesSettled() throws -> Double {
            func commands(_ samples: [String: Double]) -> Double {
                samples.filter { $0.key.hasPrefix("redis_ambassador_commands_total") }.values.reduce(0, +)
            }
            let published = commands(metricSamples(try ambassador.admin("/metrics").body))
            _ = try probe.command(["PING"])
            var pauses = -1.0
            #expect(try eventually(5) {
                let samples = metricSamples(try ambassador.admin("/metrics").body)
                pauses = samples["redis_ambassador_loop_pauses_total{worker=\"0\"}"] ?? -1
                return commands(samples) > published
            })
            return pauses
        }
        #expect(try pausesSettled() == 0)

        let alone = try BlockingClient(port: ambassador.port, timeout: 10)
        for i in 0..<300 {
            #expect(try alone.command(["SET", "lp:alone", "\(i)"]) == .simpleString(Array("OK".utf8)))
            #expect(try alone.command(["GET", "lp:alone"]) == .bulkString(Array("\(i)".utf8)))
        }
        #expect(try pausesSettled() == 0, "a client alone made the loop wait")

        // Sixteen clients' pipelines, all sent before any reply is read: the worker finds them
        // ready together (a pass of 16 callbacks or more).
        let clients = try (0..<16).map { _ in try BlockingClient(port: ambassador.port, timeout: 10) }
        func together(round: Int) throws {
            for (index, client) in clients.enumerated() {
                try client.send((0..<100).flatMap {
                    BlockingClient.encode(["SET", "lp:\(index):\($0)", "\(round).\($0)"]) + BlockingClient.encode(["GET", "lp:\(index):\($0)"])
                })
            }
            for client in clients {
                for i in 0..<100 {
                    #expect(try client.readReply() == .simpleString(Array("OK".utf8)))
                    #expect(try client.readReply() == .bulkString(Array("\(round).\(i)".utf8)))
                }
            }
        }
        for round in 0..<5 { try together(round: round) }
        #expect(try pausesSettled() > 0, "clients sending together never made the loop wait")

        let generation = try ambassador.generation()
        try ambassador.publish(yaml("loop_pause: 0s\n"))
        #expect(try eventually(5) { try ambassador.generation() > generation })
        #expect(try (ambassador.configView()["config"] as? [String: Any])?["loop_pause"] as? String == "0ms")
        let before = try pausesSettled()
        for round in 5..<10 { try together(round: round) }
        #expect(try pausesSettled() == before, "loop_pause 0s still waits")
    }

    /// Two pipelining clients send 50,000+ mixed commands while the config is reloaded 20 times
    /// (replicas added and removed, read policy switched), by symlink swap, SIGHUP and POST /reload
    /// in turn. No error reply, no dropped connection, every reply what a direct Redis gives.
    @Test func reloadsUnderLoadDropNothing() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let (r1, r2) = (cluster.replicas[0], cluster.replicas[1])
        let variants: [(String, [RedisServer])] = [
            ("prefer-replica", [r1]), ("master", [r1, r2]), ("prefer-replica", [r2]), ("prefer-replica", [r1, r2]),
        ]
        let master = cluster.master
        // Every batch writes, so with read_your_writes its reads would all stay on the master.
        let spread = "read_your_writes: off\n"
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.yaml(port, admin, master: master, replicas: [r1, r2], extra: spread)
        }
        defer { ambassador.stop() }
        // Keys every read checks; written before the run and replicated everywhere.
        let seed = try master.client()
        for i in 0..<1000 { _ = try seed.command(["SET", "fixed:\(i)", "value-\(i)"]) }
        try cluster.sync()

        let reloadsDone = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let sent = Atomic<Int>(0)
        let finished = DispatchGroup()
        let port = ambassador.port
        for clientIndex in 0..<2 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                do {
                    let client = try BlockingClient(port: port, timeout: 10)
                    var counter: Int64 = 0
                    var n = 0
                    while !reloadsDone.load(ordering: .acquiring) || sent.load(ordering: .relaxed) < 50_000 {
                        var batch: [[String]] = []
                        for _ in 0..<100 {
                            switch n % 5 {
                            case 0: batch.append(["SET", "w:\(clientIndex):\(n)", "v\(n)"])
                            case 1, 3: batch.append(["GET", "fixed:\(n % 1000)"])
                            case 2: batch.append(["INCR", "counter:\(clientIndex)"])
                            default: batch.append(["ECHO", "e\(n)"])
                            }
                            n += 1
                        }
                        let replies = try client.pipeline(batch)
                        for (command, raw) in zip(batch, replies) {
                            let reply = try RESPValue.decode(raw)?.0
                            let ok: Bool
                            switch command[0] {
                            case "SET": ok = reply == .simpleString(Array("OK".utf8))
                            case "GET": ok = reply == .bulk("value-\(command[1].dropFirst(6))")
                            case "INCR":
                                counter += 1
                                ok = reply == .integer(counter)
                            default: ok = reply == .bulk(command[1])
                            }
                            if !ok {
                                failures.withLock { $0.append("\(command) → \(text(raw))") }
                                return
                            }
                        }
                        sent.add(batch.count, ordering: .relaxed)
                    }
                } catch {
                    failures.withLock { $0.append("client \(clientIndex): \(error)") }
                }
            }.start()
        }
        // 20 reloads, each a real change, by each trigger in turn.
        for reload in 1...20 {
            let (policy, replicas) = variants[reload % variants.count]
            try ambassador.publish(Self.yaml(ambassador.port, ambassador.adminPort, master: master,
                                             replicas: replicas, policy: policy, extra: spread))
            switch reload % 3 {
            case 0: ambassador.signal(SIGHUP)
            case 1: _ = try ambassador.admin("/reload", method: "POST")
            default: break  // the file watch sees the swapped symlink
            }
            try ambassador.waitForGeneration(reload + 1)
            // Traffic runs on this generation before the next reload.
            let sentBefore = sent.load(ordering: .relaxed)
            #expect(eventually(5) { sent.load(ordering: .relaxed) >= sentBefore + 1_000 })
        }
        reloadsDone.store(true, ordering: .releasing)
        #expect(finished.wait(timeout: .now() + 60) == .success)
        #expect(failures.withLock { $0 } == [])
        #expect(sent.load(ordering: .relaxed) >= 50_000)
        // No connection was dropped: the two clients plus the readiness probe are all that ever
        // connected, and the clients kept theirs to the end.
        // Metrics are published twice a second.
        var metrics: [String: Double] = [:]
        eventually(3) {
            metrics = metricSamples((try? ambassador.admin("/metrics").body) ?? "")
            return metrics["redis_ambassador_config_reloads_total{result=\"applied\"}"] == 21
        }
        #expect(metrics["redis_ambassador_config_reloads_total{result=\"applied\"}"] == 21)
        #expect(metrics["redis_ambassador_config_generation"] == 21)
        let errors = metrics.filter { $0.key.hasPrefix("redis_ambassador_errors_total") }.values.reduce(0, +)
        #expect(errors == 0)
        let errorReplies = metrics.filter { $0.key.contains("outcome=\"error\"") }.values.reduce(0, +)
        #expect(errorReplies == 0)
        // Replicas took reads during the run (the load really was spread).
        #expect(try commandCalls(r1, "get") > 0 && commandCalls(r2, "get") > 0)
        print("reload under load: \(sent.load(ordering: .relaxed)) commands on 2 pipelining connections, 20 reloads, "
              + "\(failures.withLock { $0.count }) failures, \(Int(errors)) ambassador errors, \(Int(errorReplies)) error replies")
    }

    /// A bad file changes nothing: the old config keeps serving, /config shows why (with the line),
    /// and the next good file — picked up from a symlink swap within 2 s — applies.
    @Test func badConfigKeepsTheRunningOneAndSwapIsSeenWithinTwoSeconds() throws {
        let (cluster, ambassador) = try Self.withOneReplica()
        defer {
            ambassador.stop()
            cluster.stop()
        }
        let master = cluster.master
        let client = try BlockingClient(port: ambassador.port)
        #expect(try client.command(["SET", "k", "1"]) == .simpleString(Array("OK".utf8)))
        try cluster.sync()  // the GET below may be served by the replica

        try ambassador.publish("listen: 127.0.0.1:\(ambassador.port)\nmaster: 127.0.0.1:\(master.port)\nread_policy: sometimes\n")
        try eventually(2) { try ambassador.lastReloadResult() == "invalid" }
        let view = try ambassador.configView()
        let last = view["last_reload"] as? [String: Any] ?? [:]
        #expect(last["result"] as? String == "invalid")
        #expect((last["message"] as? String ?? "").contains("line 3"), "\(last)")
        #expect(view["generation"] as? Int == 1)
        #expect(try client.command(["GET", "k"]) == .bulk("1"))
        #expect(try client.command(["INCR", "k"]) == .integer(2))
        // POST /reload of the same bad file says so with a 400 and changes nothing.
        #expect(try ambassador.admin("/reload", method: "POST").status == 400)
        #expect(try ambassador.generation() == 1)

        try ambassador.publish(Self.yaml(ambassador.port, ambassador.adminPort, master: master, replicas: [],
                                         policy: "master"))
        let seconds = try ambassador.waitForGeneration(2, timeout: 2)
        #expect(seconds < 2)
        print("symlink swap applied after \(String(format: "%.3f", seconds)) s")
        let config = try ambassador.configView()["config"] as? [String: Any] ?? [:]
        #expect(config["read_policy"] as? String == "master")
        #expect(try client.command(["GET", "k"]) == .bulk("2"))
        // A restart-only key is logged as such and left as it was: no new generation.
        try ambassador.publish(Self.yaml(ambassador.port, ambassador.adminPort, master: master, replicas: [],
                                         policy: "master", extra: "workers: 3\n"))
        #expect(try ambassador.admin("/reload", method: "POST").status == 200)
        let unchanged = try ambassador.configView()
        #expect(unchanged["generation"] as? Int == 2)
        #expect(((unchanged["last_reload"] as? [String: Any])?["message"] as? String ?? "").contains("workers"))
        #expect(ambassador.logText.contains("workers changes only at restart"))
        #expect(try eventually(3) {
            metricSamples(try ambassador.admin("/metrics").body)["redis_ambassador_config_reloads_total{result=\"invalid\"}"] ?? 0 >= 1
        })
    }

    /// With two worker loops, each gets the new snapshot (through its mailbox) and SIGTERM drains both.
    @Test func everyWorkerAppliesTheReload() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let ambassador = try ConfigMapAmbassador { port, admin in
            Self.yaml(port, admin, master: master, replicas: [], extra: "workers: 2\n")
        }
        defer { ambassador.stop() }
        var clients: [BlockingClient] = []
        var workers: [String: BlockingClient] = [:]
        for _ in 0..<64 where workers.count < 2 {
            let client = try BlockingClient(port: ambassador.port)
            clients.append(client)
            let info = try client.command(["AMBASSADOR", "INFO"]).text ?? ""
            if let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("worker:") }) {
                workers[String(line)] = client
            }
        }
        try #require(workers.count == 2, "connections reached both workers")
        try ambassador.publish(Self.yaml(ambassador.port, ambassador.adminPort, master: master, replicas: [],
                                         policy: "master", extra: "workers: 2\n"))
        try ambassador.waitForGeneration(2)
        for (worker, client) in workers {
            var info = ""
            #expect(try eventually(2) {
                info = try client.command(["AMBASSADOR", "INFO"]).text ?? ""
                return info.contains("read_policy:master")
            }, "\(worker): \(info)")
            #expect(try client.command(["SET", "w", "1"]) == .simpleString(Array("OK".utf8)))
        }
        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 5) == 0)
    }

    /// A master, the binary in front of it, and a client whose BLPOP on `list` is in flight.
    static func blockedOnBLPOP(_ list: String, shutdownTimeout: String) throws
        -> (RedisServer, ConfigMapAmbassador, BlockingClient)
    {
        let master = try RedisServer()
        do {
            let ambassador = try ConfigMapAmbassador { port, admin in
                Self.yaml(port, admin, master: master, replicas: [], extra: "shutdown_timeout: \(shutdownTimeout)\n")
            }
            let waiting = try BlockingClient(port: ambassador.port, timeout: 10)
            try waiting.send(BlockingClient.encode(["BLPOP", list, "0"]))
            #expect(eventually(3) { isBlocked(in: "blpop", on: master) }, "the BLPOP waits on the master")
            return (master, ambassador, waiting)
        } catch {
            master.stop()
            throw error
        }
    }

    /// SIGTERM: no new connections, the command in flight (a BLPOP) still gets its reply, then the
    /// process exits 0. A command that would never finish is cut at `shutdown_timeout`.
    @Test func sigtermDrainsInFlightRequests() throws {
        let (master, ambassador, waiting) = try Self.blockedOnBLPOP("drain-list", shutdownTimeout: "3s")
        defer {
            ambassador.stop()
            master.stop()
        }
        let idle = try BlockingClient(port: ambassador.port, timeout: 10)
        #expect(try idle.command(["PING"]) == .simple("PONG"))
        ambassador.signal(SIGTERM)
        #expect(idle.isClosedByPeer(), "an idle connection is closed at once")
        #expect(ambassador.process.isRunning, "still draining")
        #expect((try? BlockingClient(port: ambassador.port, timeout: 1).command(["PING"])) == nil, "no new connections")
        #expect(try ambassador.admin("/readyz").status == 503)
        _ = try master.client().command(["RPUSH", "drain-list", "served"])
        #expect(try waiting.readReply() == .array([.bulk("drain-list"), .bulk("served")]))
        #expect(ambassador.waitForExit(timeout: 2) == 0)
        #expect(ambassador.logText.contains("draining"))
    }

    @Test func shutdownTimeoutCutsWhatNeverFinishes() throws {
        let (master, ambassador, waiting) = try Self.blockedOnBLPOP("never", shutdownTimeout: "500ms")
        defer {
            ambassador.stop()
            master.stop()
        }
        let start = Date()
        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 3) == 0)
        let took = Date().timeIntervalSince(start)
        #expect(took >= 0.4 && took < 2, "stopped after \(took) s")
        #expect(waiting.isClosedByPeer())
    }

    /// /metrics is valid Prometheus text (checked by the reference Python parser), /healthz is
    /// 200, /readyz follows the master, unknown paths are 404.
    /// `admin.token_file`: /config and /reload need its bearer token (a wrong or missing one gets
    /// 401 and changes nothing); /metrics and the probes do not. A rotated file is a reload: the
    /// new token works, the old one no longer does.
    @Test func controlRoutesNeedTheAdminToken() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let tokenDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tokenDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tokenDirectory) }
        let tokenFile = tokenDirectory.appendingPathComponent("token")
        try "first-token\n".write(to: tokenFile, atomically: true, encoding: .utf8)
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nlog_level: info\n"
                + "admin:\n  listen: 127.0.0.1:\(admin)\n  token_file: \(tokenFile.path)\n"
        }
        defer { ambassador.stop() }
        for (path, method) in [("/config", "GET"), ("/reload", "POST")] {
            #expect(try ambassador.admin(path, method: method).status == 401, "\(path) without a token")
            #expect(try ambassador.admin(path, method: method, headers: ["Authorization: Bearer wrong"]).status == 401)
            #expect(try ambassador.admin(path, method: method, headers: ["Authorization: Bearer first-token"]).status == 200)
        }
        for path in ["/metrics", "/healthz", "/readyz"] {
            #expect(try ambassador.admin(path).status == 200, "\(path)")
        }
        let view = try ambassador.admin("/config", headers: ["Authorization: Bearer first-token"]).body
        #expect(!view.contains("first-token") && view.contains("<redacted> (admin.token_file"))
        // Rotation (as a Secret update): picked up by the file watch like a config change.
        try "second-token\n".write(to: tokenFile, atomically: true, encoding: .utf8)
        #expect(eventually(5) {
            (try? ambassador.admin("/config", headers: ["Authorization: Bearer second-token"]).status) == 200
        })
        #expect(try ambassador.admin("/config", headers: ["Authorization: Bearer first-token"]).status == 401)
    }

    /// Bad HTTP on the admin port: a hundred slowloris connections that never finish their
    /// headers, and a request with 100 KiB of them. The app's commands go on (the admin endpoint
    /// is on the supervisor's loop, the data path on the workers'), the probes still answer, the
    /// oversized request is refused (16 KiB of headers at most) and the slow ones are dropped after
    /// the endpoint's 10 s timeout rather than held for ever.
    @Test func badHTTPBlocksNeitherTheDataPathNorTheProbes() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let ambassador = try ConfigMapAmbassador { port, admin in
            "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nadmin:\n  listen: 127.0.0.1:\(admin)\n"
        }
        defer { ambassador.stop() }
        var slow: [BlockingClient] = []
        for _ in 0..<100 {
            let client = try BlockingClient(port: ambassador.adminPort, timeout: 15)
            try client.send(Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8))
            slow.append(client)
        }
        let big = try BlockingClient(port: ambassador.adminPort, timeout: 5)
        try? big.send(Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n".utf8))
        let app = try BlockingClient(port: ambassador.port)
        for i in 0..<2000 {
            #expect(try app.command(["SET", "http:\(i % 10)", "\(i)"]) == .simpleString(Array("OK".utf8)))
            #expect(try app.command(["GET", "http:\(i % 10)"]) == .bulk("\(i)"))
            if i % 500 == 0 { for client in slow { try? client.send([UInt8(ascii: "a")]) } }
        }
        for path in ["/healthz", "/readyz", "/metrics"] {
            #expect(try ambassador.admin(path).status == 200, "\(path) answers beside the slow connections")
        }
        #expect(big.isClosedByPeer(), "the oversized request is refused")
        let answer = String(decoding: big.unread, as: UTF8.self)
        #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 4"), "\(answer.prefix(60))")
        #expect(slow[0].isClosedByPeer(), "a connection that never finishes its headers is dropped")
    }

    @Test func adminEndpointServesMetricsAndProbes() throws {
        let (cluster, ambassador) = try Self.withOneReplica()
        defer {
            ambassador.stop()
            cluster.stop()
        }
        let master = cluster.master
        let client = try BlockingClient(port: ambassador.port)
        let reader = try BlockingClient(port: ambassador.port)  // wrote nothing: reads on the replica
        for i in 0..<50 {
            _ = try client.command(["SET", "m\(i)", "x"])
            _ = try reader.command(["GET", "m\(i)"])
        }
        _ = try client.command(["PING"])
        try client.send([UInt8]("*1\r\n$x\r\n".utf8))  // malformed: counted as a client protocol error
        _ = try? client.readReply()
        // Published twice a second: wait for the counts of the commands above.
        try eventually(3) {
            metricSamples(try ambassador.admin("/metrics").body)["redis_ambassador_commands_total{route=\"replica\",outcome=\"ok\",worker=\"0\"}"] ?? 0 >= 50
        }
        let (status, body) = try ambassador.admin("/metrics")
        #expect(status == 200)
        let file = ambassador.directory.appendingPathComponent("metrics.txt")
        try body.write(to: file, atomically: true, encoding: .utf8)
        let parse = Process()
        parse.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        parse.arguments = ["python3", "-c", """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            names = sorted(f.name for f in text_string_to_metric_families(open(sys.argv[1]).read()))
            print(" ".join(names))
            """, file.path]
        let pipe = Pipe()
        parse.standardOutput = pipe
        parse.standardError = pipe
        try parse.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        parse.waitUntilExit()
        #expect(parse.terminationStatus == 0, "prometheus_client rejected /metrics: \(output)")
        for family in ["redis_ambassador_commands", "redis_ambassador_request_duration_seconds",
                       "redis_ambassador_client_connections", "redis_ambassador_errors", "redis_ambassador_bytes",
                       "redis_ambassador_backend_up", "redis_ambassador_backend_connections",
                       "redis_ambassador_config_reloads", "redis_ambassador_config_generation",
                       "redis_ambassador_pinned_sessions"] {
            #expect(output.split(separator: " ").map(String.init).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.contains(family), "\(family) missing: \(output)")
        }
        let samples = metricSamples(body)
        #expect(samples["redis_ambassador_commands_total{route=\"master\",outcome=\"ok\",worker=\"0\"}"] ?? 0 >= 50)
        #expect(samples["redis_ambassador_commands_total{route=\"replica\",outcome=\"ok\",worker=\"0\"}"] ?? 0 >= 50)
        #expect(samples["redis_ambassador_errors_total{kind=\"client_protocol\",worker=\"0\"}"] == 1)
        #expect(samples["redis_ambassador_backend_up{backend=\"127.0.0.1:\(master.port)\",role=\"master\"}"] == 1)
        #expect(samples["redis_ambassador_client_connections_total"] ?? 0 >= 2)
        #expect(samples.keys.contains { $0.hasPrefix("redis_ambassador_request_duration_seconds_bucket{route=\"replica\"") })
        // Every answered command is one latency observation, in its route's series.
        for route in ["master", "replica", "local"] {
            let commands = ["ok", "error", "relayed"].compactMap { samples["redis_ambassador_commands_total{route=\"\(route)\",outcome=\"\($0)\",worker=\"0\"}"] }.reduce(0, +)
            let labels = "route=\"\(route)\",worker=\"0\""
            #expect(samples["redis_ambassador_request_duration_seconds_count{\(labels)}"] == commands, "\(route)")
            #expect(samples["redis_ambassador_request_duration_seconds_bucket{\(labels),le=\"+Inf\"}"] == commands, "\(route)")
            #expect(samples["redis_ambassador_request_duration_seconds_bucket{\(labels),le=\"5.0\"}"] ?? -1 <= commands, "\(route)")
        }
        #expect(samples["redis_ambassador_request_duration_seconds_sum{route=\"master\",worker=\"0\"}"] ?? 0 > 0)

        #expect(try ambassador.admin("/healthz").status == 200)
        #expect(try ambassador.admin("/readyz").status == 200)
        #expect(try ambassador.admin("/nope").status == 404)
        #expect(try ambassador.admin("/metrics", method: "POST").status == 405)
        master.kill9()
        #expect(try eventually(3) { try ambassador.admin("/readyz").status == 503 })
        #expect(try ambassador.admin("/healthz").status == 200)
    }
}
}
