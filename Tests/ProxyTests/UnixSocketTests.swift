import Foundation
import RESP
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
/// `listen: unix:/path`: the app in the same Pod reaches the ambassador through a socket file.
@Suite(.serialized) struct UnixSocketTests {
    /// A fresh directory for socket files (short paths: `sun_path` holds 107 bytes).
    static func socketDirectory() throws -> URL {
        let directory = URL(fileURLWithPath: "/tmp/ra-ux-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func mode(_ path: String) -> (isSocket: Bool, permissions: UInt32)? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return (status.st_mode & S_IFMT == S_IFSOCK, UInt32(status.st_mode) & 0o777)
    }

    /// A socket file nobody listens on, as a crashed process leaves it.
    static func leaveStaleSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        try #require(rc == 0 && mode(path)?.isSocket == true)
    }

    /// A field of a CLIENT INFO line.
    static func field(_ name: String, _ line: String) -> String? {
        line.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    /// Through the ambassador's socket a client sees what it sees through Redis's own socket:
    /// the same replies, the same errors, and CLIENT INFO's `U` flag with the socket's path as
    /// `addr` and `laddr`. The file has the configured mode, like `unixsocketperm`.
    @Test func servesLikeRedisOnItsOwnSocket() throws {
        let directory = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let redisSocket = directory.appendingPathComponent("redis.sock").path
        let ambassadorSocket = directory.appendingPathComponent("ambassador.sock").path
        let master = try RedisServer(arguments: ["--unixsocket", redisSocket, "--unixsocketperm", "600"])
        defer { master.stop() }
        let ambassador = try AmbassadorProcess(yaml: """
            listen: unix:\(ambassadorSocket)
            listen_mode: 0600
            master: 127.0.0.1:\(master.port)
            replicas: []
            """)
        defer { ambassador.stop() }
        try #require(ambassador.answers(unixPath: ambassadorSocket), "log:\n\(ambassador.logText)")
        #expect(Self.mode(ambassadorSocket)?.isSocket == true)
        #expect(Self.mode(ambassadorSocket)?.permissions == 0o600)
        #expect(Self.mode(ambassadorSocket)?.permissions == Self.mode(redisSocket)?.permissions)

        let direct = try BlockingClient(unixPath: redisSocket)
        let through = try BlockingClient(unixPath: ambassadorSocket)
        let script: [[String]] = [
            ["SET", "ux:a", "1"], ["INCR", "ux:a"], ["GET", "ux:a"], ["GET"], ["INCR", "ux:missing-type", "x"],
            ["RPUSH", "ux:l", "a", "b"], ["LRANGE", "ux:l", "0", "-1"], ["DEL", "ux:a", "ux:l"],
            ["CLIENT", "SETNAME", "ux-app"], ["CLIENT", "GETNAME"], ["NOSUCHCOMMAND"],
        ]
        // Both reach the same master, so each side writes keys of its own.
        func keyed(_ command: [String], _ side: String) -> [String] {
            command.map { $0.hasPrefix("ux:") ? side + $0 : $0 }
        }
        for command in script {
            #expect(try through.command(keyed(command, "t-")) == direct.command(keyed(command, "d-")), "\(command)")
        }
        for (client, path) in [(direct, redisSocket), (through, ambassadorSocket)] {
            let info = try client.command(["CLIENT", "INFO"]).text ?? ""
            #expect(Self.field("addr", info) == path + ":0", "\(info)")
            #expect(Self.field("laddr", info) == path + ":0", "\(info)")
            #expect(Self.field("flags", info) == "U", "\(info)")
            #expect(Self.field("name", info) == "ux-app", "\(info)")
        }
        let list = try through.command(["CLIENT", "LIST"]).text ?? ""
        #expect(list.contains("addr=\(ambassadorSocket):0 laddr=\(ambassadorSocket):0"), "\(list)")

        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 5) == 0)
        #expect(Self.mode(ambassadorSocket) == nil, "the socket file is removed at shutdown, as Redis does")
    }

    /// A socket file left by a crash is replaced; a path another process listens on, or a file
    /// that is not a socket, is refused with a clear message and left as it was.
    @Test func replacesAStaleSocketAndRefusesALiveOneOrAFile() throws {
        let directory = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let master = try RedisServer()
        defer { master.stop() }
        let path = directory.appendingPathComponent("a.sock").path
        try Self.leaveStaleSocket(path)
        func yaml(_ path: String) -> String { "listen: unix:\(path)\nmaster: 127.0.0.1:\(master.port)\nreplicas: []\n" }

        let first = try AmbassadorProcess(yaml: yaml(path))
        defer { first.stop() }
        try #require(first.answers(unixPath: path), "log:\n\(first.logText)")
        #expect(Self.mode(path)?.permissions == 0o660, "the default mode")

        let second = try AmbassadorProcess(yaml: yaml(path))
        defer { second.stop() }
        #expect(second.waitForExit(timeout: 5) == 1)
        #expect(second.logText.contains("unix:\(path) is in use by another process"), "\(second.logText)")
        #expect(try BlockingClient(unixPath: path).command(["PING"]) == .simple("PONG"), "the first keeps its socket")

        let file = directory.appendingPathComponent("not-a-socket").path
        try "keep me\n".write(toFile: file, atomically: true, encoding: .utf8)
        let third = try AmbassadorProcess(yaml: yaml(file))
        defer { third.stop() }
        #expect(third.waitForExit(timeout: 5) == 1)
        #expect(third.logText.contains("unix:\(file) exists and is not a socket"), "\(third.logText)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me\n")
    }

    /// A reload moves the listener from TCP to a Unix socket (every worker accepts on it), changes
    /// the socket's mode in place, and moves it back; connections opened before carry on.
    @Test func reloadMovesTheListenerAndItsMode() throws {
        let directory = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let master = try RedisServer()
        defer { master.stop() }
        let path = directory.appendingPathComponent("app.sock").path
        let ambassador = try ConfigMapAmbassador { port, admin in
            ReloadTests.yaml(port, admin, master: master, replicas: [], extra: "workers: 2\n")
        }
        defer { ambassador.stop() }
        let early = try BlockingClient(port: ambassador.port)
        #expect(try early.command(["SET", "ux:r", "tcp"]) == .simple("OK"))

        func publish(_ listen: String, mode: String? = nil) throws {
            var yaml = ReloadTests.yaml(ambassador.port, ambassador.adminPort, master: master, replicas: [],
                                        extra: "workers: 2\n" + (mode.map { "listen_mode: \($0)\n" } ?? ""))
            yaml = yaml.replacingOccurrences(of: "listen: 127.0.0.1:\(ambassador.port)\n", with: "listen: \(listen)\n")
            try ambassador.publish(yaml)
        }
        try publish("unix:\(path)", mode: "0600")
        try ambassador.waitForGeneration(2)
        #expect(Self.mode(path)?.permissions == 0o600)
        var workers = Set<String>()
        var clients: [BlockingClient] = []
        // Both workers' loops wake for each connection and the first to accept takes it: under
        // load one may win many in a row, so keep connecting until both have (up to 400).
        _ = try eventually(10, every: 0.005) {
            guard clients.count < 400 else { return true }
            let client = try BlockingClient(unixPath: path)
            clients.append(client)
            let info = try client.command(["AMBASSADOR", "INFO"]).text ?? ""
            workers.formUnion(info.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("worker:") }.map(String.init))
            return workers.count == 2
        }
        #expect(workers.count == 2, "both workers accept on the one socket: \(workers)")
        #expect(eventually(5) { (try? BlockingClient(port: ambassador.port, timeout: 1)) == nil }, "TCP closed")
        #expect(try early.command(["GET", "ux:r"]) == .bulk("tcp"), "a connection from before carries on")

        try publish("unix:\(path)", mode: "0640")
        try ambassador.waitForGeneration(3)
        #expect(Self.mode(path)?.permissions == 0o640)
        #expect(try clients[0].command(["PING"]) == .simple("PONG"))

        try publish("127.0.0.1:\(ambassador.port)")
        try ambassador.waitForGeneration(4)
        #expect(eventually(5) { Self.mode(path) == nil }, "the socket file goes with the Unix listener")
        #expect(try BlockingClient(port: ambassador.port).command(["GET", "ux:r"]) == .bulk("tcp"))
        #expect(try clients[0].command(["GET", "ux:r"]) == .bulk("tcp"))
        ambassador.signal(SIGTERM)
        #expect(ambassador.waitForExit(timeout: 5) == 0)
    }
}
}
