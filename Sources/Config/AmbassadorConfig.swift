/// Where reads go.
public enum ReadPolicy: String, Sendable, CaseIterable {
    /// Every read on the master.
    case master
    /// Reads spread over the replicas that are up; the master when none is.
    case preferReplica = "prefer-replica"
    /// Replicas only; an error reply when none is up.
    case replica
}

/// How the ambassador finds the master and the replicas.
public enum Discovery: Sendable, Equatable {
    /// `master` and `replicas` as written.
    case `static`
    /// Ask each of `nodes` for its ROLE: the one that says master is the master, the nodes that
    /// replicate from it are the replicas; followed through failovers.
    case role(nodes: [Address])
    /// Ask `sentinels` for `masterName`'s master and replicas (confirmed with ROLE), and follow
    /// their `+switch-master` announcements.
    case sentinel(sentinels: [Address], masterName: String)
    /// A Redis Cluster: ask `seeds` (then any node learned) for the slot layout (`CLUSTER
    /// SHARDS`, else `CLUSTER SLOTS`); each shard is a master with replicas, routed by key slot.
    case cluster(seeds: [Address])

    public var name: String {
        switch self {
        case .static: return "static"
        case .role: return "role"
        case .sentinel: return "sentinel"
        case .cluster: return "cluster"
        }
    }

    public var isCluster: Bool {
        if case .cluster = self { return true }
        return false
    }
}

/// Which eligible replica takes the next read.
public enum Balance: String, Sendable, CaseIterable {
    /// The one with the fewest requests in flight (per weight).
    case leastOutstanding = "least-outstanding"
    /// In turn, weighted.
    case roundRobin = "round-robin"
}

/// After a session writes, where its reads go for a while.
public enum ReadYourWrites: Sendable, Equatable {
    case off
    /// To the master for this long after each write.
    case duration(Duration)
    /// Per session and exact: to the master until a replica has applied the replication offset
    /// of the session's writes (the default; `offset` is accepted as another name).
    case session
    /// As `session`, and a write by any of the app's connections to a key sends reads of that
    /// key from every connection to the master until a replica has it (connection pools).
    case app

    public var description: String {
        switch self {
        case .off: return "off"
        case .duration(let d): return d.description
        case .session: return "session"
        case .app: return "app"
        }
    }
}

/// The ambassador's configuration: the validated content of the YAML file (or the command line).
/// `Config/ambassador.yaml` documents every key.
public struct AmbassadorConfig: Sendable, Equatable {
    /// Where the app connects.
    public var listen: ListenAddress
    /// The Unix socket's permissions (`listen_mode`, octal; only with `listen: unix:/path`).
    public var listenMode: UInt32 = 0o660
    /// `listen_tls`: apps connect with TLS (and, with its `ca_file`, a client certificate). nil:
    /// plaintext, the default (the listener is the Pod's loopback).
    public var listenTLS: TLSSettings?
    public var master: Address
    public var replicas: [Address]
    /// `backend_tls`: every connection to a Redis node (shared, pinned, health checks) speaks
    /// TLS. nil: plaintext.
    public var backendTLS: TLSSettings?
    /// `sentinel_tls`: the connections to the sentinels speak TLS. nil: plaintext.
    public var sentinelTLS: TLSSettings?
    public var readPolicy: ReadPolicy
    /// ACL user for backend AUTH (nil: the default user).
    public var username: String?
    /// Backend password, read from `password_file` or `REDIS_AMBASSADOR_PASSWORD`.
    public var password: String?
    /// Where the password came from, for `/config` and logs (never the password itself).
    public var passwordSource: String?
    /// The `password_file` path (watched for changes, like the config file itself).
    public var passwordFile: String?
    /// A short-lived token used as the password (`auth_token_file`, rewritten by an external
    /// refresher: a workload-identity agent, a CSI driver); watched like `password_file`.
    public var authToken: String?
    public var authTokenFile: String?
    /// The password every backend connection AUTHs with: the token when there is one.
    public var backendPassword: String? { authToken ?? password }
    /// discovery: sentinel — the sentinels' own credentials (their `requirepass`), from
    /// `sentinel_password_file` or `REDIS_AMBASSADOR_SENTINEL_PASSWORD`; nil: no AUTH.
    public var sentinelUsername: String?
    public var sentinelPassword: String?
    public var sentinelPasswordSource: String?
    public var sentinelPasswordFile: String?
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
    /// nil is `auto` (see `workerCount(budget:)`).
    public var workers: Int?
    public var discovery: Discovery = .static
    /// discovery: cluster — how often the slot layout is read again (it is also read at once
    /// after a -MOVED reply or a node failure).
    public var clusterRefresh = Duration(seconds: 5)
    /// Per-replica weight for balancing (absent: 1).
    public var replicaWeights: [Address: Int] = [:]
    public var balance: Balance = .leastOutstanding
    /// How often every backend is asked for ROLE and INFO replication.
    public var healthInterval = Duration(seconds: 0.5)
    /// Consecutive failed checks before a backend is down (a refused connection is at once).
    public var healthFailures = 2
    /// A replica further behind the master than this serves no read (0: no limit).
    public var maxReplicaLag = Duration(seconds: 1)
    public var readYourWrites: ReadYourWrites = .session
    /// While no node is confirmed master (a failover), writes wait this long, then get an error.
    public var failoverHold = Duration(seconds: 2)
    /// A request on a shared backend connection unanswered this long closes the connection
    /// (reads are retried elsewhere; others get an error). 0: off. Never applies to blocking
    /// commands or pub/sub (they run on pinned connections).
    public var commandTimeout = Duration(seconds: 0)
    /// A shared backend connection whose oldest request has waited this long is *stalled* (a
    /// busy script, a paused write, a slow command holds it): sessions with nothing outstanding
    /// there send their next requests on another connection to the same node, so no session
    /// waits behind another session's held-back command. 0: never.
    public var stallThreshold = Duration(seconds: 0.05)
    /// After a busy pass over the ready sockets a worker waits this long before it looks again,
    /// so more replies come in per wake-up (less CPU per request under load, for a little
    /// latency; a quiet worker never waits). 0: off.
    public var loopPause = Duration(seconds: 0)
    /// The most `loop_pause` may be.
    public static let maxLoopPause = Duration(seconds: 0.001)
    /// `clients`: the users an app must AUTH as (checked by the ambassador, independent of the
    /// backend credentials). Empty: no authentication asked (the listener is the Pod's loopback).
    public var clientUsers: [ClientUser] = []
    public var requiresClientAuth: Bool { !clientUsers.isEmpty }
    /// `commands`: what every app connection may run (a client user's own rules replace it).
    public var commands: CommandRules?
    /// Reconnect backoff: the pause after each failed attempt doubles from `reconnectInterval`
    /// up to this, each one jittered (a random 50–100 % of it).
    public var reconnectMax = Duration(seconds: 2)
    /// App connections open at once, at most (all workers together); past it a new one gets
    /// `-ERR max number of clients reached` and is closed, as Redis's `maxclients` does.
    public var maxClients = 10_000
    /// An app connection with nothing owed, not blocked and not subscribed, that sends nothing
    /// for this long is closed, as Redis's `timeout` does. 0: never (the default, like Redis).
    public var clientIdleTimeout = Duration(seconds: 0)
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, `/config`, `POST /reload`);
    /// nil (no `admin:` key) turns it off.
    public var adminListen: Address?
    /// `admin.token_file`: the bearer token `GET /config` and `POST /reload` then require (read
    /// from the file; a rotated file is a reload). nil: they are served only to loopback peers.
    public var adminToken: String?
    public var adminTokenFile: String?
    /// How long SIGTERM/SIGINT wait for in-flight requests before closing what is left.
    public var shutdownTimeout: Duration

    /// What `workers: auto` means. With a CPU quota (a container's `limits.cpu`) the quota is the
    /// ambassador's own: one loop per CPU of it, rounded up, within the CPUs it may run on.
    /// Without one the cores are shared with Redis and the app: on 2 cores one loop measured best
    /// (each extra loop also halves the batching per backend connection), so `auto` is 1 up to
    /// 2 cores and cores − 1 above.
    public func workerCount(budget: CPUBudget) -> Int {
        if let workers { return workers }
        if let quota = budget.quota { return max(1, min(budget.allowed, Int(quota.rounded(.up)))) }
        return budget.allowed <= 2 ? 1 : budget.allowed - 1
    }

    public func workerCount(cores: Int) -> Int { workerCount(budget: CPUBudget(allowed: cores)) }

    public init(listen: ListenAddress, master: Address, replicas: [Address] = [],
                readPolicy: ReadPolicy = .preferReplica, username: String? = nil,
                password: String? = nil, passwordSource: String? = nil, backendConnections: Int = 1,
                pinnedPoolSize: Int = 8, connectTimeout: Duration = Duration(seconds: 2),
                reconnectInterval: Duration = Duration(seconds: 0.25), logLevel: String = "info",
                workers: Int? = nil, adminListen: Address? = nil,
                shutdownTimeout: Duration = Duration(seconds: 10)) {
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
        self.adminListen = adminListen
        self.shutdownTimeout = shutdownTimeout
    }

    /// The keys whose value differs in `other`, in file order (for the reload log line).
    public func changedKeys(to other: AmbassadorConfig) -> [String] {
        ConfigKey.all.filter { $0.differs(self, other) }.map(\.name)
    }

    /// Keys a reload cannot apply to a running process: the number of event loops and of shared
    /// connections per backend are fixed at start.
    public static let restartOnlyKeys: Set<String> = Set(ConfigKey.restartOnlyNames)

    /// The secret files the config was read from (watched with the config file).
    public var watchedFiles: [String] { ConfigKey.all.flatMap { $0.files(self) } }

    /// `other` with the restart-only keys kept at this config's values: what a reload applies.
    public func applyingLive(_ other: AmbassadorConfig) -> AmbassadorConfig {
        var applied = other
        for key in ConfigKey.all where key.restartOnly { key.keep(&applied, self) }
        // Into or out of a cluster the workers' routing changes shape: that takes a restart.
        if applied.discovery.isCluster != discovery.isCluster {
            (applied.discovery, applied.master, applied.replicas) = (discovery, master, replicas)
        }
        return applied
    }

    /// The config as `/config` shows it: every key that is set, secrets replaced by where they
    /// came from.
    public var redacted: [String: RedactedValue] {
        var view: [String: RedactedValue] = [:]
        for key in ConfigKey.all {
            for (name, value) in key.show(self) { view[name] = value }
        }
        return view
    }
}

/// A user an app may AUTH as at the ambassador (`clients.password_file` is the `default` user).
public struct ClientUser: Sendable, Equatable {
    public var name: String
    public var password: String
    /// Where the password came from (watched: a rotated file is a reload).
    public var passwordFile: String
    /// This user's `commands` rules (nil: the global ones).
    public var commands: CommandRules?

    public init(name: String, password: String, passwordFile: String, commands: CommandRules? = nil) {
        self.name = name
        self.password = password
        self.passwordFile = passwordFile
        self.commands = commands
    }
}

/// A JSON-shaped value of the redacted config view.
public indirect enum RedactedValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case list([String])
    case object([String: RedactedValue])
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
