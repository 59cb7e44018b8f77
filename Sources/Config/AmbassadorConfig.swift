/// Where reads go.
public enum ReadPolicy: String, Sendable, CaseIterable {
    /// Every read on the master.
    case master
    /// Reads spread over the replicas that are up; the master when none is.
    case preferReplica = "prefer-replica"
    /// Replicas only; an error reply when none is up.
    case replica
}

/// The ambassador's configuration: the validated content of the YAML file (or the command line).
/// `Config/ambassador.yaml` documents every key.
public struct AmbassadorConfig: Sendable, Equatable {
    /// Where the app connects.
    public var listen: Address
    public var master: Address
    public var replicas: [Address]
    public var readPolicy: ReadPolicy
    /// ACL user for backend AUTH (nil: the default user).
    public var username: String?
    /// Backend password, read from `password_file` or `REDIS_AMBASSADOR_PASSWORD`.
    public var password: String?
    /// Where the password came from, for `/config` and logs (never the password itself).
    public var passwordSource: String?
    /// Shared, pipelined connections per backend that multiplex every session's stateless commands.
    public var backendConnections: Int
    /// Idle dedicated master connections kept for pinned sessions (MULTI, BLPOP, SUBSCRIBE …).
    public var pinnedPoolSize: Int
    public var connectTimeout: Duration
    /// Pause between attempts to reconnect a lost backend.
    public var reconnectInterval: Duration
    /// `debug`, `info`, `warning`, `error`.
    public var logLevel: String
    /// Event-loop threads, each with its own SO_REUSEPORT listener and backend connections;
    /// nil is `auto` (see `workerCount(cores:)`).
    public var workers: Int?

    /// What `workers` means on a machine with `cores` cores. `auto` leaves a core for Redis and the
    /// app: on 2 cores shared with Redis one loop measured best (each extra loop also halves the
    /// batching per backend connection), so `auto` is 1 up to 2 cores and cores − 1 above.
    public func workerCount(cores: Int) -> Int {
        if let workers { return workers }
        return cores <= 2 ? 1 : cores - 1
    }

    public init(listen: Address, master: Address, replicas: [Address] = [],
                readPolicy: ReadPolicy = .preferReplica, username: String? = nil,
                password: String? = nil, passwordSource: String? = nil, backendConnections: Int = 1,
                pinnedPoolSize: Int = 8, connectTimeout: Duration = Duration(seconds: 2),
                reconnectInterval: Duration = Duration(seconds: 0.25), logLevel: String = "info",
                workers: Int? = nil) {
        self.listen = listen
        self.master = master
        self.replicas = replicas
        self.readPolicy = readPolicy
        self.username = username
        self.password = password
        self.passwordSource = passwordSource
        self.backendConnections = backendConnections
        self.pinnedPoolSize = pinnedPoolSize
        self.connectTimeout = connectTimeout
        self.reconnectInterval = reconnectInterval
        self.logLevel = logLevel
        self.workers = workers
    }
}

/// A configuration problem, naming the key and (for a file) the line.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String?
    public var line: Int?
    public var message: String

    public init(key: String?, line: Int?, _ message: String) {
        self.key = key
        self.line = line
        self.message = message
    }

    public var description: String {
        var text = ""
        if let line { text += "line \(line): " }
        if let key { text += "\(key): " }
        return text + message
    }
}
