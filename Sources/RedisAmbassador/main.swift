import Config
import Control
import EventLoop
import Logging
import Proxy
import Routing
#if canImport(Glibc)
import Glibc
#endif

/// The entry point: `Invocation` reads the command line, then this runs it.
enum RedisAmbassador {
    static let version = "0.3.0"

    static func main() -> Int32 {
        let invocation: Invocation
        do {
            invocation = try Invocation.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            System.printError("Error: \(error)\n\n\(Invocation.usage)\n")
            return 64  // EX_USAGE
        }
        switch invocation {
        case .help(let text):
            print(text)
            return 0
        case .version:
            print("redis-ambassador \(version) (command table from redis-server \(CommandTable.generatedFromRedisVersion))")
            return 0
        case .listKeys:
            print(keyList())
            return 0
        case .checkConfig(let path):
            do {
                let config = try ConfigLoader.load(path: path)
                print("\(path): ok (listen \(config.listen), master \(config.master), \(config.replicas.count) replica(s), read_policy \(config.readPolicy.rawValue))")
                return 0
            } catch {
                System.printError("\(path): \(error)\n")
                return 1
            }
        case .run(let options):
            return run(options)
        }
    }

    static func run(_ options: Invocation.RunOptions) -> Int32 {
        EventLoop.unblockAllSignals()
        EventLoop.keepFreedMemory()
        let settings: AmbassadorConfig
        do {
            if let path = options.config {
                settings = try ConfigLoader.load(path: path)
            } else {
                settings = try ConfigLoader.parse(options.yaml, environment: System.environment)
            }
        } catch {
            System.printError("Error: config: \(error)\n")
            return 64
        }
        LoggingSystem.bootstrap { label in
            // Each Logger sets its own level (log_level reloads live).
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return handler
        }
        var logger = Logger(label: "redis-ambassador")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        let budget = CPUBudget.current(fallback: System.processorCount)
        let workers = settings.workerCount(budget: budget)
        do {
            let loop = try EventLoop()
            let supervisor = Supervisor(config: settings, configPath: options.config, loop: loop, logger: logger)
            try supervisor.start(workerCount: workers)
            logger.info("redis-ambassador \(version) started with \(workers) worker(s)\(settings.workers == nil ? " (auto: \(budget.description))" : ""), config generation 1")
            supervisor.run()
            return 0
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
    }

    /// The key list, from the table every key is defined in (`ConfigKey.all`).
    static func keyList() -> String {
        let defaults = AmbassadorConfig(listen: .tcp(Address(host: "127.0.0.1", port: 6380)),
                                        master: Address(host: "127.0.0.1", port: 6379)).redacted
        let width = ConfigKey.all.map(\.name.count).max() ?? 0
        return ConfigKey.all.map { key in
            var line = key.name + String(repeating: " ", count: width - key.name.count) + "  " + key.expects
            if key.restartOnly { line += "; restart only" }
            if key.secret { line += "; secret (never shown)" }
            if ["listen", "master"].contains(key.name) {
                line += "; required (discovery: static)"
            } else if let value = defaults[key.name] {
                line += "; default \(value.text)"
            }
            return line
        }.joined(separator: "\n")
    }
}

extension RedactedValue {
    /// As written in the file.
    var text: String {
        switch self {
        case .string(let text): return text
        case .int(let number): return String(number)
        case .list(let items): return "[" + items.joined(separator: ", ") + "]"
        case .object(let members): return "{" + members.map { "\($0.key): \($0.value.text)" }.sorted().joined(separator: ", ") + "}"
        }
    }
}

exit(RedisAmbassador.main())
