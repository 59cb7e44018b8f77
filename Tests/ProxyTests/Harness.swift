import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// How a test starts an ambassador — two ways, each written once:
/// - in this process (`Ambassador`, Support.swift): a `Proxy` on a loop thread of its own, built
///   from an `AmbassadorConfig` value, reachable with `onLoop`;
/// - as the binary (`AmbassadorProcess`, here): what a user runs, with flags or a config file
///   (`ConfigMapAmbassador` lays the file out as a Kubernetes ConfigMap volume and adds the
///   admin endpoint). Its PID is recorded for `Scripts/test.sh`, so it is stopped even when the
///   test that started it fails or times out.
final class AmbassadorProcess {
    let process = Process()
    /// Its stderr (the log), in a directory of its own that `stop()` removes.
    let log: URL
    private let ownsLogDirectory: URL?

    /// The executable SwiftPM built next to this test bundle.
    static func binary() throws -> URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidate = bundle.appendingPathComponent("redis-ambassador")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw RedisServerError.notInstalled("redis-ambassador (build it: swift build)")
        }
        return candidate
    }

    /// Runs the binary to completion (check-config, --version …): its status and output.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try runToCompletion(binary(), arguments)
    }

    /// Runs `executable` to completion: its status and output (stdout and stderr together).
    static func runToCompletion(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = executable
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

    /// Starts the binary with `arguments`, its log in `log` (default: a new temporary file).
    init(arguments: [String], log given: URL? = nil, owning directory: URL? = nil) throws {
        if let given {
            log = given
            ownsLogDirectory = directory
        } else {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-run-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            log = directory.appendingPathComponent("ambassador.log")
            ownsLogDirectory = directory
        }
        process.executableURL = try Self.binary()
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        RedisServer.recordPID(process.processIdentifier)
    }

    /// Starts the binary on a config file with `yaml` (written next to its log, removed by `stop()`).
    convenience init(yaml: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ra-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("ambassador.yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        try self.init(arguments: ["--config", config.path], log: directory.appendingPathComponent("ambassador.log"),
                      owning: directory)
    }

    var isRunning: Bool { process.isRunning }
    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Waits until a client on `port` gets an answer to PING (PONG, or NOAUTH when clients must
    /// authenticate): whether it did (false at once if it exited, say because a parallel test
    /// took the port).
    func answers(on port: UInt16, within timeout: Double = 5) -> Bool {
        answers(within: timeout) { try BlockingClient(port: port, timeout: 2) }
    }

    /// The same on a Unix socket.
    func answers(unixPath path: String, within timeout: Double = 5) -> Bool {
        answers(within: timeout) { try BlockingClient(unixPath: path, timeout: 2) }
    }

    private func answers(within timeout: Double, connect: () throws -> BlockingClient) -> Bool {
        let settled = eventually(timeout) {
            guard process.isRunning else { return true }
            let reply = try? connect().command(["PING"])
            return reply == .simple("PONG") || reply == .error(Array("NOAUTH Authentication required.".utf8))
        }
        return settled && process.isRunning
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the process to exit; its status, or nil if it is still running.
    func waitForExit(timeout: Double) -> Int32? {
        eventually(timeout, every: 0.01) { !process.isRunning }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Kills it if it still runs, and removes its temporary files.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        if let ownsLogDirectory { try? FileManager.default.removeItem(at: ownsLogDirectory) }
    }
}
