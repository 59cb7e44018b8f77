import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The `redis-ambassador` binary itself, as a user runs it.
extension Integration {
@Suite(.serialized) struct ExecutableTests {
    /// The executable SwiftPM built next to this test bundle.
    static func binary() throws -> URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidate = bundle.appendingPathComponent("redis-ambassador")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw RedisServerError.notInstalled("redis-ambassador (build it: swift build)")
        }
        return candidate
    }

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        RedisServer.recordPID(process.processIdentifier)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

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
        let process = Process()
        process.executableURL = try Self.binary()
        process.arguments = ["--listen", "127.0.0.1:\(port)", "--master", "127.0.0.1:\(master.port)",
                             "--read-policy", "master"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        RedisServer.recordPID(process.processIdentifier)
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        var client: BlockingClient?
        eventually(4) {
            client = try? BlockingClient(port: port, timeout: 2)
            return client != nil
        }
        let app = try #require(client)
        // Still running: the port was ours (a parallel test did not take it between probe and bind).
        try #require(process.isRunning)
        #expect(try app.command(["SET", "from-binary", "1"]) == .simple("OK"))
        #expect(try master.client().command(["GET", "from-binary"]) == .bulk("1"))
        // SIGTERM stops it with status 0 (the binary unblocks signals it may inherit blocked).
        kill(process.processIdentifier, SIGTERM)
        #expect(eventually(5) { !process.isRunning })
        if !process.isRunning { #expect(process.terminationStatus == 0) }
    }

    /// `workers: 2`: two event loops share the listening port (SO_REUSEPORT); the kernel spreads
    /// connections over both, every one is served, and SIGTERM stops them all.
    @Test func twoWorkersShareOnePort() throws {
        let master = try RedisServer()
        defer { master.stop() }
        let port = try RedisServer.freePort()
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("workers-\(UUID().uuidString).yaml")
        try "listen: 127.0.0.1:\(port)\nmaster: 127.0.0.1:\(master.port)\nworkers: 2\nlog_level: warning\n"
            .write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let process = Process()
        process.executableURL = try Self.binary()
        process.arguments = ["--config", config.path]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        RedisServer.recordPID(process.processIdentifier)
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        #expect(eventually(4) { (try? BlockingClient(port: port, timeout: 2).command(["PING"])) == .simple("PONG") })
        try #require(process.isRunning, "the ambassador could bind its port")
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
        kill(process.processIdentifier, SIGTERM)
        #expect(eventually(5) { !process.isRunning })
        if !process.isRunning { #expect(process.terminationStatus == 0) }
    }
}
}
