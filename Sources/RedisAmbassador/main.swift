import ArgumentParser
import Config
import EventLoop
import Foundation
import Logging
import Control
import Proxy
import Routing
import Synchronization

struct RedisAmbassadorCommand: ParsableCommand {
    static let version = "0.3.0"

    static let configuration = CommandConfiguration(
        commandName: "redis-ambassador",
        abstract: "A Redis-aware ambassador proxy: writes to the master, reads from replicas, replies in order.",
        version: "redis-ambassador \(version) (command table from redis-server \(CommandTable.generatedFromRedisVersion))",
        subcommands: [Run.self, CheckConfig.self],
        defaultSubcommand: Run.self
    )
}

/// Runs the ambassador from a config file, or from flags for quick development use.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the ambassador (the default).")

    @Option(name: .long, help: "The YAML config file (see Config/ambassador.yaml).")
    var config: String?

    @Option(name: .long, help: "Where the app connects, without a config file (host:port).")
    var listen: String?

    @Option(name: .long, help: "The Redis master, without a config file (host:port).")
    var master: String?

    @Option(name: .long, help: "A replica (host:port); repeat for more.")
    var replica: [String] = []

    @Option(name: .long, help: "master | prefer-replica | replica (without a config file).")
    var readPolicy: String = "prefer-replica"

    func validate() throws {
        if config != nil && (listen != nil || master != nil || !replica.isEmpty) {
            throw ValidationError("give either --config or --listen/--master/--replica, not both")
        }
        if config == nil && (listen == nil || master == nil) {
            throw ValidationError("give --config FILE, or --listen HOST:PORT and --master HOST:PORT")
        }
    }

    func loadConfig() throws -> AmbassadorConfig {
        if let config { return try ConfigLoader.load(path: config) }
        var yaml = "listen: \"\(listen!)\"\nmaster: \"\(master!)\"\nread_policy: \"\(readPolicy)\"\n"
        if !replica.isEmpty { yaml += "replicas:\n" + replica.map { "  - \"\($0)\"\n" }.joined() }
        return try ConfigLoader.parse(yaml, environment: ProcessInfo.processInfo.environment)
    }

    func run() throws {
        EventLoop.unblockAllSignals()
        EventLoop.keepFreedMemory()
        let settings: AmbassadorConfig
        do {
            settings = try loadConfig()
        } catch let error as ConfigError {
            throw ValidationError("config: \(error)")
        }
        LoggingSystem.bootstrap { label in
            // Each Logger sets its own level (log_level reloads live).
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return handler
        }
        var logger = Logger(label: "redis-ambassador")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        let budget = CPUBudget.current(fallback: ProcessInfo.processInfo.activeProcessorCount)
        let workers = settings.workerCount(budget: budget)
        let loop = try EventLoop()
        let supervisor = Supervisor(config: settings, configPath: config, loop: loop, logger: logger)
        do {
            try supervisor.start(workerCount: workers)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode.failure
        }
        logger.info("redis-ambassador \(RedisAmbassadorCommand.version) started with \(workers) worker(s)\(settings.workers == nil ? " (auto: \(budget.description))" : ""), config generation 1")
        supervisor.run()
    }
}

/// Checks a config file and exits: 0 when valid, 1 with the error (key and line) when not.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a config file and exit (0 valid, 1 not).")

    @Argument(help: "The YAML config file.")
    var path: String

    func run() throws {
        do {
            let config = try ConfigLoader.load(path: path)
            print("\(path): ok (listen \(config.listen), master \(config.master), \(config.replicas.count) replica(s), read_policy \(config.readPolicy.rawValue))")
        } catch {
            FileHandle.standardError.write(Data("\(path): \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

RedisAmbassadorCommand.main()
