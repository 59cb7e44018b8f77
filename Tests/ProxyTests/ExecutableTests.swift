import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The `redis-ambassador` binary itself, as a user runs it.
extension Integration {
@Suite(.serialized) struct ExecutableTests {
    static func binary() throws -> URL { try AmbassadorProcess.binary() }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) { try AmbassadorProcess.run(arguments) }

    @Test func checkConfigAcceptsTheShippedConfigAndNamesTheBadKeyAndLine() throws {
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Config/ambassador.yaml").standardized.path
        let good = try Self.run(["check-config", shipped])
        #expect(good.status == 0, "\(good.output)")
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).yaml")
        try "listen: 127.0.0.1:6380\nmaster: 127.0.0.1:6379\nread_policy: sometimes\n".write(to: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: bad) }
        let result = try Self.run(["check-config", bad.path])
        #expect(result.status == 1)
        #expect(result.output.contains("line 3") && result.output.contains("read_policy"), "\(result.output)")
        let version = try Self.run(["--version"])
        #expect(version.status == 0 && version.output.contains("redis-ambassador"))
    }

    @Test func runsFromFlagsAndServesClients() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(arguments: ["--listen", "127.0.0.1:\(port)", "--master", "127.0.0.1:\(master.port)",
                                                           "--read-policy", "master"])
        defer { ambassador.stop() }
        // Still running: the port was ours (a parallel test did not take it between probe and bind).
        try #require(ambassador.answers(on: port), "\(ambassador.logText)")
        let app = try BlockingClient(port: port, timeout: 2)
        #expect(try app.command(["SET", "from-binary", "1"]) == .simple("OK"))
        #expect(try master.client().command(["GET", "from-binary"]) == .bulk("1"))
        // SIGTERM stops it with status 0 (the binary unblocks signals it may inherit blocked).
        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 5) == 0)
    }

    /// `workers: 2`: two event loops share the listening port (SO_REUSEPORT); the kernel spreads
    /// connections over both, every one is served, and SIGTERM stops them all.
    @Test func twoWorkersShareOnePort() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let ambassador = try AmbassadorProcess(yaml: "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nworkers: 2\nlog_level: warning\n")
        defer { ambassador.stop() }
        try #require(ambassador.answers(on: port), "the ambassador could bind its port: \(ambassador.logText)")
        var workersSeen = Set<String>()
        var clients: [BlockingClient] = []
        for i in 0..<64 {
            let client = try BlockingClient(port: port, timeout: 5)
            clients.append(client)
            let info = try client.command(["AMBASSADOR", "INFO"]).text ?? ""
            if let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("worker:") }) {
                workersSeen.insert(String(line))
            }
            #expect(try client.command(["SET", "w\(i)", "v\(i)"]) == .simple("OK"))
        }
        for (i, client) in clients.enumerated() { #expect(try client.command(["GET", "w\(i)"]) == .bulk("v\(i)")) }
        #expect(workersSeen == ["worker:0", "worker:1"], "connections spread over both workers")
        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 5) == 0)
    }
}
}
