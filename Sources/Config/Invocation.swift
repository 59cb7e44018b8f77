/// The command line: `redis-ambassador [run] (--config FILE | --listen H:P --master H:P
/// [--replica H:P]… [--read-policy P])`, `redis-ambassador check-config (FILE | --keys)`,
/// `--help`, `--version`.
///
/// Parsed by hand: swift-argument-parser cost an idle ambassador 1.7 MB of its RSS (measured:
/// 10.2 → 8.4 MB without it — its own code, Swift Concurrency and libdispatch it pulls in, and
/// the start-up work), in a process that runs once per app Pod and has five options.
public enum Invocation: Equatable, Sendable {
    case run(RunOptions)
    case checkConfig(path: String)
    case listKeys
    case help(String)
    case version

    public struct RunOptions: Equatable, Sendable {
        public var config: String?
        public var listen: String?
        public var master: String?
        public var replicas: [String] = []
        public var readPolicy = "prefer-replica"

        public init(config: String? = nil, listen: String? = nil, master: String? = nil) {
            self.config = config
            self.listen = listen
            self.master = master
        }

        /// The options as a config file would say them (no file given).
        public var yaml: String {
            var text = "listen: \"\(listen ?? "")\"\nmaster: \"\(master ?? "")\"\nread_policy: \"\(readPolicy)\"\n"
            if !replicas.isEmpty { text += "replicas:\n" + replicas.map { "  - \"\($0)\"\n" }.joined() }
            return text
        }
    }

    /// A command line that cannot run: printed with the usage, exit status 64 (EX_USAGE).
    public struct UsageError: Error, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    public static let usage = """
        USAGE: redis-ambassador [run] --config <file>
               redis-ambassador [run] --listen <host:port> --master <host:port> [--replica <host:port> ...] [--read-policy <policy>]
               redis-ambassador check-config <file>
               redis-ambassador check-config --keys

        A Redis-aware ambassador proxy: writes to the master, reads from replicas, replies in order.

        SUBCOMMANDS:
          run (default)           Run the ambassador.
          check-config            Validate a config file and exit (0 valid, 1 not), or list every key (--keys).

        OPTIONS:
          --config <file>         The YAML config file (see Config/ambassador.yaml).
          --listen <host:port>    Where the app connects, without a config file.
          --master <host:port>    The Redis master, without a config file.
          --replica <host:port>   A replica; repeat for more.
          --read-policy <policy>  master | prefer-replica | replica (without a config file; default prefer-replica).
          --keys                  (check-config) List every config key: what it takes, its default, whether a reload applies it.
          --version               Show the version.
          -h, --help              Show this help.
        """

    /// Parses the arguments after the program name.
    public static func parse(_ arguments: [String]) throws(UsageError) -> Invocation {
        if arguments.contains(where: { $0 == "-h" || $0 == "--help" }) || arguments.first == "help" {
            return .help(usage)
        }
        if arguments.contains("--version") { return .version }
        var rest = arguments[...]
        var subcommand = "run"
        if let first = rest.first, !first.hasPrefix("-") {
            subcommand = first
            rest = rest.dropFirst()
        }
        /// `--name value` or `--name=value`; nil when the next argument is not this option.
        func value(of name: String, _ argument: String) throws(UsageError) -> String? {
            if argument == name {
                guard let next = rest.first, !next.hasPrefix("--") else { throw UsageError("missing value for '\(name)'") }
                rest = rest.dropFirst()
                return next
            }
            if argument.hasPrefix(name + "=") { return String(argument.dropFirst(name.count + 1)) }
            return nil
        }
        switch subcommand {
        case "run":
            var options = RunOptions()
            while let argument = rest.popFirst() {
                if let text = try value(of: "--config", argument) { options.config = text }
                else if let text = try value(of: "--listen", argument) { options.listen = text }
                else if let text = try value(of: "--master", argument) { options.master = text }
                else if let text = try value(of: "--replica", argument) { options.replicas.append(text) }
                else if let text = try value(of: "--read-policy", argument) { options.readPolicy = text }
                else if argument.hasPrefix("-") { throw UsageError("unknown option '\(argument)'") }
                else { throw UsageError("unexpected argument '\(argument)'") }
            }
            if options.config != nil && (options.listen != nil || options.master != nil || !options.replicas.isEmpty) {
                throw UsageError("give either --config or --listen/--master/--replica, not both")
            }
            if options.config == nil && (options.listen == nil || options.master == nil) {
                throw UsageError("give --config FILE, or --listen HOST:PORT and --master HOST:PORT")
            }
            return .run(options)
        case "check-config":
            var path: String?
            var keys = false
            while let argument = rest.popFirst() {
                if argument == "--keys" { keys = true }
                else if argument.hasPrefix("-") { throw UsageError("unknown option '\(argument)'") }
                else if path == nil { path = argument }
                else { throw UsageError("unexpected argument '\(argument)'") }
            }
            if keys { return .listKeys }
            guard let path else { throw UsageError("give the config file to check (or --keys)") }
            return .checkConfig(path: path)
        default:
            throw UsageError("unknown subcommand '\(subcommand)' (run, check-config)")
        }
    }
}
