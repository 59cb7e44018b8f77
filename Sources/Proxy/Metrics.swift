import Prometheus
import Synchronization

/// Where a command went.
public enum Route: Int, CaseIterable, Sendable {
    case master, replica, local, pinned
    var label: String { ["master", "replica", "local", "pinned"][rawValue] }
}

/// How a command ended: a reply, an error reply (the server's or the ambassador's), or relayed
/// on a streaming connection (pub/sub, MONITOR) where replies are not matched to commands.
public enum Outcome: Int, CaseIterable, Sendable {
    case ok, error, relayed
    var label: String { ["ok", "error", "relayed"][rawValue] }
}

/// The errors the ambassador itself reports.
public enum ErrorKind: Int, CaseIterable, Sendable {
    /// A client sent malformed RESP (it gets Redis's error and is closed).
    case clientProtocol
    /// A command found its backend down (it gets an error reply).
    case backendUnavailable
    /// A backend connection died with requests in flight.
    case backendLost
    /// A backend sent malformed RESP (the connection is reset).
    case backendProtocol
    /// A connection past `max_clients` (it gets Redis's error and is closed).
    case maxClients
    /// An app connection idle past `client_idle_timeout` (closed).
    case idleTimeout
    /// A command refused by the `commands` rules (-NOPERM).
    case commandDenied
    /// A node refused the AUTH of an app's login (the user or password unknown there).
    case backendLoginRefused
    var label: String {
        ["client_protocol", "backend_unavailable", "backend_lost", "backend_protocol", "max_clients", "idle_timeout",
         "command_denied", "backend_login_refused"][rawValue]
    }
}

public enum ReloadResult: Int, CaseIterable, Sendable {
    case applied, unchanged, invalid
    public var label: String { ["applied", "unchanged", "invalid"][rawValue] }
}

/// Every metric the ambassador exports, declared once with its help text. `/metrics` is
/// swift-prometheus's exposition of these.
public enum MetricTable {
    private static func metric(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "redis_ambassador", metricName: name, unitName: unit, helpText: help)
    }
    static var clientConnections: MetricNameDescriptor { metric("client_connections", "", "App connections open now.") }
    static var clientConnectionsTotal: MetricNameDescriptor { metric("client_connections", "total", "App connections accepted since start.") }
    static var commands: MetricNameDescriptor { metric("commands", "total", "Commands by route (master, replica, local, pinned) and outcome (ok, error, relayed).") }
    /// The latency histogram is exposed by `Metrics` itself (see `LatencyHistograms`).
    static let durationName = "redis_ambassador_request_duration_seconds"
    static let durationHelp = "Time from reading a command to having its reply, by route (event-loop clock)."
    static var errors: MetricNameDescriptor { metric("errors", "total", "Errors the ambassador reported, by kind.") }
    static var bytes: MetricNameDescriptor { metric("bytes", "total", "Bytes read from (in) and written to (out) app connections and backends.") }
    static var loopPauses: MetricNameDescriptor { metric("loop_pauses", "total", "Waits of loop_pause a worker took after a busy pass.") }
    static var backendUp: MetricNameDescriptor { metric("backend_up", "", "1 when the ambassador has a working connection to the backend.") }
    static var backendConnections: MetricNameDescriptor { metric("backend_connections", "", "Open connections to each backend (shared and pinned, all workers).") }
    static var pinnedSessions: MetricNameDescriptor { metric("pinned_sessions", "", "App sessions holding a dedicated master connection (MULTI, blocking, pub/sub).") }
    static var reloads: MetricNameDescriptor { metric("config_reloads", "total", "Config reloads by result (applied, unchanged, invalid).") }
    static var reauthentications: MetricNameDescriptor { metric("backend_reauthentications", "total", "AUTHs sent on open backend connections after the credentials changed (password_file, auth_token_file, username).") }
    static var authTokenAge: MetricNameDescriptor { metric("auth_token_age", "seconds", "Seconds since auth_token_file was last written (its refresher's last run).") }
    static var generation: MetricNameDescriptor { metric("config_generation", "", "Generation of the config in use (1 at start, +1 per applied reload).") }
    /// Latency bucket bounds, microseconds: from 50 µs (a pipelined hit) to 5 s (a slow Lua script).
    static let bucketMicroseconds = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
                                     250_000, 500_000, 1_000_000, 2_500_000, 5_000_000]
}

/// The process's metrics. The instruments are swift-prometheus's and thread-safe; the hot path
/// never touches them directly: each worker counts in plain integers (`WorkerMetrics`) and
/// publishes the deltas twice a second, so a command costs no atomic and no lock.
public final class Metrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// App connections open in every worker of the process (`max_clients`).
    let openClients = Atomic<Int>(0)
    /// Latency: swift-prometheus's histogram takes a lock per observation (and walks every bucket),
    /// so the histogram family is kept here from the workers' published bucket counts.
    private let latency = Mutex<[LatencyKey: LatencySeries]>([:])

    struct LatencyKey: Hashable, Comparable {
        var worker: Int
        var route: Int
        static func < (a: Self, b: Self) -> Bool { (a.worker, a.route) < (b.worker, b.route) }
    }

    struct LatencySeries {
        /// Observations per bucket (not cumulative); the last is above the largest bound.
        var counts = [Int](repeating: 0, count: MetricTable.bucketMicroseconds.count + 1)
        var sumMicroseconds = 0
    }
    let clientConnections: Gauge
    let clientConnectionsTotal: Counter
    let pinnedSessions: Gauge
    let generation: Gauge
    let reloads: [Counter]
    let reauthentications: Counter
    /// Set by the supervisor while `auth_token_file` is configured.
    public let authTokenAge: Gauge
    private let backends = Mutex<[BackendKey: BackendGauges]>([:])

    struct BackendKey: Hashable {
        var address: String
        var role: String
    }

    struct BackendGauges {
        var up: Gauge
        var connections: Gauge
        var upConnections: Int
        var openConnections: Int
        /// Still in the config (a retired backend's series go once its last connection closes).
        var configured: Bool
    }

    public init() {
        clientConnections = registry.makeGauge(descriptor: MetricTable.clientConnections)
        clientConnectionsTotal = registry.makeCounter(descriptor: MetricTable.clientConnectionsTotal)
        pinnedSessions = registry.makeGauge(descriptor: MetricTable.pinnedSessions)
        generation = registry.makeGauge(descriptor: MetricTable.generation)
        reauthentications = registry.makeCounter(descriptor: MetricTable.reauthentications)
        authTokenAge = registry.makeGauge(descriptor: MetricTable.authTokenAge)
        let registry = self.registry
        reloads = ReloadResult.allCases.map {
            registry.makeCounter(descriptor: MetricTable.reloads, labels: [("result", $0.label)])
        }
    }

    public func reloaded(_ result: ReloadResult, generation: Int) {
        reloads[result.rawValue].increment()
        self.generation.set(to: Double(generation))
    }

    /// The Prometheus text exposition.
    public func exposition() -> [UInt8] {
        var text = registry.emitToBuffer()
        appendLatency(to: &text)
        return text
    }

    /// A worker's series start at zero, so every route is exposed before its first command.
    func registerLatency(worker: Int) {
        latency.withLock { table in
            for route in Route.allCases where table[LatencyKey(worker: worker, route: route.rawValue)] == nil {
                table[LatencyKey(worker: worker, route: route.rawValue)] = LatencySeries()
            }
        }
    }

    /// Adds a worker's observations since its last publish (`counts` per bucket, as in `LatencySeries`).
    func addLatency(worker: Int, route: Route, counts: ArraySlice<Int>, sumMicroseconds: Int) {
        latency.withLock { table in
            let key = LatencyKey(worker: worker, route: route.rawValue)
            var series = table[key] ?? LatencySeries()
            for (i, count) in zip(series.counts.indices, counts) { series.counts[i] += count }
            series.sumMicroseconds += sumMicroseconds
            table[key] = series
        }
    }

    private func appendLatency(to text: inout [UInt8]) {
        let series = latency.withLock { $0 }
        let name = MetricTable.durationName
        var out = "# HELP \(name) \(MetricTable.durationHelp)\n# TYPE \(name) histogram\n"
        for key in series.keys.sorted() {
            let value = series[key]!
            let labels = "route=\"\(Route(rawValue: key.route)!.label)\",worker=\"\(key.worker)\""
            var cumulative = 0
            for (i, bound) in MetricTable.bucketMicroseconds.enumerated() {
                cumulative += value.counts[i]
                out += "\(name)_bucket{\(labels),le=\"\(Double(bound) / 1_000_000)\"} \(cumulative)\n"
            }
            cumulative += value.counts[MetricTable.bucketMicroseconds.count]
            out += "\(name)_bucket{\(labels),le=\"+Inf\"} \(cumulative)\n"
            out += "\(name)_sum{\(labels)} \(Double(value.sumMicroseconds) / 1_000_000)\n"
            out += "\(name)_count{\(labels)} \(cumulative)\n"
        }
        text.append(contentsOf: out.utf8)
    }

    /// The backends the config names now: their series exist (0 until connected); others go once
    /// their connections have closed.
    public func configure(master: String, replicas: [String]) {
        configure(masters: [master], replicas: replicas)
    }

    /// The same for several groups (a cluster's shards).
    public func configure(masters: [String], replicas: [String]) {
        let wanted = masters.map { BackendKey(address: $0, role: "master") } + replicas.map { BackendKey(address: $0, role: "replica") }
        backends.withLock { table in
            for key in table.keys { table[key]!.configured = false }
            for key in wanted {
                if table[key] == nil { table[key] = makeGauges(key, configured: true) }
                table[key]!.configured = true
            }
            dropUnused(&table)
        }
    }

    /// A connection to a backend opened (`open`) or closed (`-1`), and whether it counts for up.
    /// A backend `configure` does not list (any more) gets series while it has connections, not
    /// beyond: a connect that completes after the backend left the topology (a placeholder
    /// master replaced by the discovered one) must not leave `backend_up 0` behind for ever.
    func backendConnection(_ address: String, role: String, open: Int, up: Int) {
        let key = BackendKey(address: address, role: role)
        backends.withLock { table in
            if table[key] == nil { table[key] = makeGauges(key, configured: false) }
            table[key]!.openConnections += open
            table[key]!.upConnections += up
            table[key]!.connections.set(to: Double(table[key]!.openConnections))
            table[key]!.up.set(to: table[key]!.upConnections > 0 ? 1 : 0)
            dropUnused(&table)
        }
    }

    /// Whether any worker has a working connection to `address` in `role`.
    public func isUp(_ address: String, role: String) -> Bool {
        backends.withLock { $0[BackendKey(address: address, role: role)].map { $0.upConnections > 0 } ?? false }
    }

    private func makeGauges(_ key: BackendKey, configured: Bool) -> BackendGauges {
        let labels = [("backend", key.address), ("role", key.role)]
        return BackendGauges(up: registry.makeGauge(descriptor: MetricTable.backendUp, labels: labels),
                             connections: registry.makeGauge(descriptor: MetricTable.backendConnections, labels: labels),
                             upConnections: 0, openConnections: 0, configured: configured)
    }

    private func dropUnused(_ table: inout [BackendKey: BackendGauges]) {
        for (key, gauges) in table where !gauges.configured && gauges.openConnections <= 0 {
            registry.unregisterGauge(gauges.up)
            registry.unregisterGauge(gauges.connections)
            table[key] = nil
        }
    }

    /// The instruments one worker publishes into.
    public func worker(_ index: Int) -> WorkerMetrics { WorkerMetrics(metrics: self, worker: index) }
}

/// One worker's counts: plain integers on its own loop, published into the shared instruments by
/// `publish()` (a timer), so the per-command path has no atomic and no lock.
public final class WorkerMetrics {
    let metrics: Metrics
    let worker: Int
    private var commandCounts: [Int]
    private var commandCounters: [Counter]
    private var errorCounts: [Int]
    private var errorCounters: [Counter]
    /// Latency observations per route and bucket since the last publish (`LatencySeries` layout),
    /// and their sums in microseconds per route.
    private var latencyCounts: [Int]
    private var latencySums: [Int]
    private let bounds = MetricTable.bucketMicroseconds
    private let bytesCounters: [Counter]
    private var published: [Int] = [0, 0, 0, 0]
    private let pausesCounter: Counter
    private var publishedPauses = 0
    var clientsOpened = 0
    var clientsClosed = 0
    var pinnedDelta = 0
    var reauthentications = 0

    init(metrics: Metrics, worker: Int) {
        self.metrics = metrics
        self.worker = worker
        let registry = metrics.registry
        let workerLabel = ("worker", String(worker))
        commandCounts = Array(repeating: 0, count: Route.allCases.count * Outcome.allCases.count)
        commandCounters = Route.allCases.flatMap { route in
            Outcome.allCases.map { outcome in
                registry.makeCounter(descriptor: MetricTable.commands,
                                     labels: [("route", route.label), ("outcome", outcome.label), workerLabel])
            }
        }
        errorCounts = Array(repeating: 0, count: ErrorKind.allCases.count)
        errorCounters = ErrorKind.allCases.map {
            registry.makeCounter(descriptor: MetricTable.errors, labels: [("kind", $0.label), workerLabel])
        }
        latencyCounts = Array(repeating: 0, count: Route.allCases.count * (MetricTable.bucketMicroseconds.count + 1))
        latencySums = Array(repeating: 0, count: Route.allCases.count)
        metrics.registerLatency(worker: worker)
        bytesCounters = [("client", "in"), ("client", "out"), ("backend", "in"), ("backend", "out")].map {
            registry.makeCounter(descriptor: MetricTable.bytes, labels: [("peer", $0.0), ("direction", $0.1), workerLabel])
        }
        pausesCounter = registry.makeCounter(descriptor: MetricTable.loopPauses, labels: [workerLabel])
    }

    @inline(__always)
    func command(_ route: Route, _ outcome: Outcome) {
        commandCounts[route.rawValue &* 3 &+ outcome.rawValue] &+= 1
    }

    /// A command answered: counted, and its latency (microseconds) recorded.
    @inline(__always)
    func answered(_ route: Route, _ outcome: Outcome, microseconds: Int) {
        command(route, outcome)
        let value = max(microseconds, 0)
        var bucket = 0
        while bucket < bounds.count && value > bounds[bucket] { bucket &+= 1 }  // `le`: value <= bound
        latencyCounts[route.rawValue &* (bounds.count &+ 1) &+ bucket] &+= 1
        latencySums[route.rawValue] &+= value
    }

    func error(_ kind: ErrorKind) { errorCounts[kind.rawValue] &+= 1 }

    /// Adds what was counted since the last call to the shared instruments. `bytes` are the
    /// loop's running totals: client in/out, backend in/out; `pauses` the loop's `loop_pause` waits.
    func publish(bytes: [Int], pauses: Int) {
        for i in commandCounts.indices where commandCounts[i] > 0 {
            commandCounters[i].increment(by: Int64(commandCounts[i]))
            commandCounts[i] = 0
        }
        let stride = bounds.count + 1
        for route in Route.allCases {
            let range = route.rawValue * stride ..< (route.rawValue + 1) * stride
            guard latencyCounts[range].contains(where: { $0 > 0 }) else { continue }  // a sum needs a count
            metrics.addLatency(worker: worker, route: route, counts: latencyCounts[range], sumMicroseconds: latencySums[route.rawValue])
            for i in range { latencyCounts[i] = 0 }
            latencySums[route.rawValue] = 0
        }
        for i in errorCounts.indices where errorCounts[i] > 0 {
            errorCounters[i].increment(by: Int64(errorCounts[i]))
            errorCounts[i] = 0
        }
        for i in 0..<min(bytes.count, published.count) where bytes[i] > published[i] {
            bytesCounters[i].increment(by: Int64(bytes[i] - published[i]))
            published[i] = bytes[i]
        }
        if pauses > publishedPauses {
            pausesCounter.increment(by: Int64(pauses - publishedPauses))
            publishedPauses = pauses
        }
        if clientsOpened > 0 { metrics.clientConnectionsTotal.increment(by: Int64(clientsOpened)) }
        if clientsOpened != clientsClosed { metrics.clientConnections.increment(by: Double(clientsOpened - clientsClosed)) }
        if pinnedDelta != 0 { metrics.pinnedSessions.increment(by: Double(pinnedDelta)) }
        if reauthentications > 0 { metrics.reauthentications.increment(by: Int64(reauthentications)) }
        clientsOpened = 0
        clientsClosed = 0
        pinnedDelta = 0
        reauthentications = 0
    }
}
