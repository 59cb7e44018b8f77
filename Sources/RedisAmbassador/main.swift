import ArgumentParser
import Config
import EventLoop
import Foundation
import Logging
import Proxy
import Routing
import Synchronization

struct RedisAmbassadorCommand: ParsableCommand {
    static let version = "0.2.0"

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
        let settings: AmbassadorConfig
        do {
            settings = try loadConfig()
        } catch let error as ConfigError {
            throw ValidationError("config: \(error)")
        }
        let level = Logger.Level(rawValue: settings.logLevel == "warning" ? "warning" : settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "redis-ambassador")
        let workers = settings.workerCount(cores: ProcessInfo.processInfo.activeProcessorCount)
        let loop = try EventLoop()
        var stopWorkers: () -> Void = {}
        var workerThreads: [EventLoopThread] = []
        if workers == 1 {
            let proxy = Proxy(config: settings, loop: loop, logger: logger)
            do {
                try proxy.start()
            } catch {
                logger.critical("cannot start: \(error)")
                throw ExitCode.failure
            }
            loop.context = proxy
            stopWorkers = { proxy.shutdown() }
        } else {
            workerThreads = try startWorkers(workers, settings: settings, logger: logger)
            stopWorkers = {
                for thread in workerThreads {
                    thread.handle.post { loop in
                        (loop.context as? Proxy)?.shutdown()
                        loop.context = nil
                        loop.stop()
                    }
                }
            }
        }
        let stop: () -> Void = {
            logger.info("stopping")
            stopWorkers()
            loop.stop()
        }
        let term = SignalHandler(loop: loop, signal: SIGTERM, action: stop)
        let interrupt = SignalHandler(loop: loop, signal: SIGINT, action: stop)
        let hangup = SignalHandler(loop: loop, signal: SIGHUP) {
            logger.warning("SIGHUP: live reload is not implemented yet; restart to apply a new config")
        }
        logger.info("redis-ambassador \(RedisAmbassadorCommand.version) started with \(workers) worker(s)")
        loop.run()
        workerThreads.forEach { $0.join() }
        withExtendedLifetime((term, interrupt, hangup)) {}
    }

    /// Starts `count` event loops on threads of their own, each a complete proxy listening on the
    /// same address with SO_REUSEPORT, so the kernel spreads new connections over them. Worker 0
    /// starts first, so a port 0 in the config becomes one port that all of them share.
    private func startWorkers(_ count: Int, settings: AmbassadorConfig, logger: Logger) throws -> [EventLoopThread] {
        var threads: [EventLoopThread] = []
        var port: UInt16? = nil
        for worker in 0..<count {
            let outcome = Mutex<Result<UInt16, SocketError>?>(nil)
            let fixedPort = port
            let thread = try EventLoopThread.start(name: "worker-\(worker)") { loop in
                let proxy = Proxy(config: settings, loop: loop, logger: logger, worker: worker)
                do throws(SocketError) {
                    try proxy.start(reusePort: true, port: fixedPort)
                    loop.context = proxy
                    outcome.withLock { $0 = .success(proxy.listenPort) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                    loop.stop()
                }
            }
            switch outcome.withLock({ $0 }) {
            case .success(let bound)?:
                port = bound
                threads.append(thread)
            case .failure(let error)?:
                logger.critical("cannot start worker \(worker): \(error)")
                throw ExitCode.failure
            case nil:
                throw ExitCode.failure
            }
        }
        return threads
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
