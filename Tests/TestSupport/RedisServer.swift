import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` on a free loopback port, started for a test and stopped with it.
/// No mock: tests talk to the same server a production ambassador would.
public final class RedisServer: @unchecked Sendable {
    public let port: UInt16
    public let directory: URL
    /// The `--requirepass` it was started with: `client()` authenticates with it.
    public let password: String?
    /// The TLS port, for a server started with `tls` (the plain `port` stays open for the tests'
    /// own set-up and checks: the same server, the same data).
    public let tlsPort: UInt16?
    private let process: Process
    private let lock = NSLock()
    private var stopped = false

    /// Starts `redis-server` with persistence off; `arguments` are appended (`--replicaof …`).
    /// With `port`, on that port (to restart a server where it was). With `tls`, a TLS port too,
    /// presenting `tls` (signed by `ca`); client certificates signed by `ca` are checked when
    /// given (`tls-auth-clients optional`, or `yes` with `requireClientCertificates`), and a
    /// replica replicates over TLS.
    public init(port fixedPort: UInt16? = nil, arguments: [String] = [], tls: TestCertificates.Pair? = nil,
                ca: String? = nil, requireClientCertificates: Bool = false) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ra-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        password = arguments.firstIndex(of: "--requirepass").map { arguments[$0 + 1] }
        let password = self.password
        var tlsPort: UInt16?
        (port, process) = try Self.launch("redis-server", port: fixedPort) { port in
            var tlsArguments: [String] = []
            if let tls {
                let chosen = try RedisServer.freePort()
                tlsPort = chosen
                tlsArguments = ["--tls-port", String(chosen), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key,
                                "--tls-auth-clients", requireClientCertificates ? "yes" : "optional", "--tls-replication", "yes"]
                    + (ca.map { ["--tls-ca-cert-file", $0] } ?? [])
            }
            return ["--port", String(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory.path, "--repl-diskless-sync-delay", "0",
             "--logfile", directory.appendingPathComponent("redis.log").path, "--daemonize", "no"] + tlsArguments + arguments
        } ready: { port, process in
            // The port was free when probed, but a parallel test may have taken it since: then our
            // server failed to bind and someone else's answers. Only our own process will do.
            Self.waitForPing(port: port, timeout: 10)
                && Self.serverProcessID(port: port, password: password) == process.processIdentifier
        }
        self.tlsPort = tlsPort
    }

    /// Starts `executable` on a free port (or `port`), retrying with another port when the probed
    /// one was taken before the server bound it. `arguments` may write files for that port.
    static func launch(_ executable: String, port fixedPort: UInt16? = nil,
                       arguments: (UInt16) throws -> [String],
                       ready: (UInt16, Process) -> Bool) throws -> (UInt16, Process) {
        var lastError: Error = RedisServerError.didNotStart("no attempt")
        for _ in 0..<5 {
            let port = try fixedPort ?? freePort()
            let process = Process()
            process.executableURL = try Self.executable(executable)
            process.arguments = try arguments(port)
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            recordPID(process.processIdentifier)
            if ready(port, process) { return (port, process) }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            lastError = RedisServerError.didNotStart("\(executable) on port \(port) did not answer PING")
        }
        throw lastError
    }

    /// With `RA_TEST_PIDFILE` set (`.ci/run` sets it), every server started is listed there, so
    /// the CI script can stop exactly the processes the tests started, by PID, if a test crashed
    /// before stopping its own. Never by name: a developer's own Redis must survive a test run.
    public static func recordPID(_ pid: Int32) {
        guard let path = ProcessInfo.processInfo.environment["RA_TEST_PIDFILE"] else { return }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { return }
        let line = Array("\(pid)\n".utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    deinit { stop() }

    /// Stops the server: `SHUTDOWN NOSAVE`, then SIGKILL if it is still running after 5 s.
    ///
    /// Not SIGTERM: a test runs on a libdispatch worker thread, which blocks signals, and the child
    /// inherits that mask, so redis-server would never see a SIGTERM. Safe to call twice.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            if let client = try? BlockingClient(port: port, timeout: 2) {
                if let password { _ = try? client.send(BlockingClient.encode(["AUTH", password])) }
                _ = try? client.send(BlockingClient.encode(["SHUTDOWN", "NOSAVE"]))
            }
            eventually(5, every: 0.01) { !process.isRunning }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Sends `signal` to the server process: SIGSTOP freezes it (a stalled node), SIGCONT resumes it.
    public func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Kills the server at once (SIGKILL), as a crash or a lost pod would.
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
    }

    /// `INFO section` as text.
    public func info(_ section: String) throws -> String {
        try client().command(["INFO", section]).text ?? ""
    }

    /// Waits until this replica reports `master_link_status:up`.
    public func waitForReplicationLink(timeout: Double = 10) throws {
        if try eventually(timeout, { try info("replication").contains("master_link_status:up") }) { return }
        throw RedisServerError.didNotStart("replica on \(port) never linked to its master")
    }

    /// A new blocking client connected to this server.
    public func client(timeout: Double = 5) throws -> BlockingClient {
        let client = try BlockingClient(port: port, timeout: timeout)
        if let password { _ = try client.command(["AUTH", password]) }
        return client
    }

    public static func executable(_ name: String) throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        for directory in directories {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw RedisServerError.notInstalled(name)
    }

    /// A loopback port nothing listens on right now, and one this process has not been handed
    /// before: two calls in a row (an ambassador's listen and admin ports) could otherwise get
    /// the same just-closed port from the kernel, and the second bind then fails (seen in CI).
    public static func freePort() throws -> UInt16 {
        for _ in 0..<100 {
            let (fd, port) = try LoopbackListener.open()
            close(fd)
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw RedisServerError.didNotStart("no loopback port this process has not used yet")
    }

    private static let handedOut = Mutex<Set<UInt16>>([])

    /// `process_id` from `INFO server` of whatever answers on `port`.
    static func serverProcessID(port: UInt16, password: String?) -> Int32? {
        guard let client = try? BlockingClient(port: port, timeout: 2) else { return nil }
        if let password { _ = try? client.command(["AUTH", password]) }
        guard let info = (try? client.command(["INFO", "server"]))?.text else { return nil }
        return info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("process_id:") }
            .flatMap { Int32($0.dropFirst("process_id:".count)) }
    }

    static func waitForPing(port: UInt16, timeout: Double) -> Bool {
        eventually(timeout) {
            // PONG, or NOAUTH from a server with a password: either way it is serving.
            guard let client = try? BlockingClient(port: port, timeout: 1), let reply = try? client.command(["PING"]) else { return false }
            return reply == .simple("PONG") || reply.text?.hasPrefix("NOAUTH") == true
        }
    }
}

public enum RedisServerError: Error, CustomStringConvertible {
    case notInstalled(String)
    case didNotStart(String)

    public var description: String {
        switch self {
        case .notInstalled(let name): return "\(name) is not installed (apt-get install redis-server redis-tools)"
        case .didNotStart(let why): return "redis-server did not start: \(why)"
        }
    }
}

/// A real `redis-sentinel` on a free loopback port, monitoring one master as `name`.
public final class RedisSentinel: @unchecked Sendable {
    public let port: UInt16
    private let process: Process
    private let directory: URL

    /// The TLS port, for a sentinel started with `tls` (which then reaches the data nodes over TLS).
    public let tlsPort: UInt16?

    /// `password`: the sentinel requires it (`requirepass`, and `sentinel-pass` towards its peers).
    /// `tls`: it also listens with TLS, presenting `tls` (signed by `ca`), and monitors the
    /// master's TLS port over TLS.
    public init(monitoring master: RedisServer, name: String, quorum: Int, downAfterMilliseconds: Int = 500,
                password: String? = nil, tls: TestCertificates.Pair? = nil, ca: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-sentinel-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let directory = self.directory
        var tlsPort: UInt16?
        (port, process) = try RedisServer.launch("redis-sentinel") { port in
            let config = directory.appendingPathComponent("sentinel-\(port).conf")
            var tlsLines = ""
            if let tls {
                let chosen = try RedisServer.freePort()
                tlsPort = chosen
                tlsLines = "tls-port \(chosen)\ntls-cert-file \(tls.cert)\ntls-key-file \(tls.key)\n"
                    + "tls-replication yes\ntls-auth-clients optional\n" + (ca.map { "tls-ca-cert-file \($0)\n" } ?? "")
            }
            try """
                port \(port)
                bind 127.0.0.1
                daemonize no
                dir \(directory.path)
                logfile \(directory.appendingPathComponent("sentinel.log").path)
                \(tlsLines)sentinel monitor \(name) 127.0.0.1 \(tls == nil ? master.port : master.tlsPort!) \(quorum)
                sentinel down-after-milliseconds \(name) \(downAfterMilliseconds)
                sentinel failover-timeout \(name) 5000
                sentinel parallel-syncs \(name) 2
                \(password.map { "requirepass \($0)\nsentinel sentinel-pass \($0)\n" } ?? "")
                """.write(to: config, atomically: true, encoding: .utf8)
            return [config.path]
        } ready: { port, process in
            RedisServer.waitForPing(port: port, timeout: 10) && process.isRunning
        }
        self.tlsPort = tlsPort
    }

    deinit { stop() }

    public func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    public func client() throws -> BlockingClient { try BlockingClient(port: port, timeout: 5) }
}
