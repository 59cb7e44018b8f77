import Config
import EventLoop
import Logging
import RESP

/// `discovery: cluster`: reads the slot layout — which shard serves which slots, each shard's
/// master and replicas — from one node at a time: `CLUSTER SHARDS` (Redis 7), or `CLUSTER SLOTS`
/// where that is unknown. Asked every `cluster_refresh`, and at once when a worker met `-MOVED`
/// or a node went down (`refresh()`). The node that answered last is asked first; then the
/// seeds, then every node the layout named, until one answers (with a layout that serves no
/// fewer slots than the current one; else all are asked, see `answered`).
final class ClusterDiscovery {
    typealias ClientFactory = (_ address: Address) -> CheckClient
    private let makeClient: ClientFactory
    private var logger: Logger
    private var clients: [Address: CheckClient] = [:]
    private(set) var seeds: [Address] = []
    /// The layout the last answer gave (empty before one).
    private(set) var shards: [ClusterShard] = []
    /// Nodes are addressed by their TLS port when the backends speak TLS.
    private var useTLSPorts = false
    private var lastGood: Address?
    /// A round in progress: the nodes still to ask if the current one fails.
    private var candidates: [Address] = []
    private var asking = false
    /// A refresh was asked for while a round was under way: another round follows it (the
    /// round may have begun before what prompted the refresh, a -MOVED say).
    private var askAgain = false
    /// In a round, the best layout seen that serves fewer slots than the current one: the
    /// other nodes are asked too before it is believed (see `answered`).
    private var shortLayout: (source: Address, shards: [ClusterShard], served: Int)?
    /// SHARDS is unknown to this cluster (Redis < 7): SLOTS from then on.
    private var slotsOnly = false
    private var errors: [Address: String] = [:]
    /// The layout changed.
    var onChange: () -> Void = {}

    init(logger: Logger, makeClient: @escaping ClientFactory) {
        self.logger = logger
        self.makeClient = makeClient
    }

    func configure(seeds: [Address], tls: Bool) {
        self.seeds = seeds
        if tls != useTLSPorts {
            useTLSPorts = tls
            reset("backend TLS changed")
        }
    }

    /// Every node the layout names, masters first.
    var nodes: [Address] {
        var all: [Address] = []
        for shard in shards { all.append(address(of: shard.master)) }
        for shard in shards { all.append(contentsOf: shard.replicas.map(address(of:))) }
        return all
    }

    func address(of node: ClusterShard.Node) -> Address {
        if useTLSPorts, let port = node.tlsPort, port != 0 { return Address(host: node.address.host, port: port) }
        return node.address
    }

    func reset(_ why: String) {
        for client in clients.values { client.reset(why) }
        clients = [:]
        asking = false
        askAgain = false
        shortLayout = nil
        candidates = []
    }

    func stop(_ why: String) {
        reset(why)
        shards = []
        lastGood = nil
    }

    /// Reads the layout again now (unless a read is under way).
    func refresh() {
        guard !asking else {
            askAgain = true
            return
        }
        var order: [Address] = []
        for address in (lastGood.map { [$0] } ?? []) + seeds + nodes where !order.contains(address) { order.append(address) }
        candidates = order
        asking = true
        askNext()
    }

    private func askNext() {
        guard !candidates.isEmpty else {
            if let short = shortLayout {
                // Every node asked serves fewer slots than before: so be it.
                return accept(short.shards, from: short.source)
            }
            return endRound()
        }
        let address = candidates.removeFirst()
        let client = clients[address] ?? makeClient(address)
        clients[address] = client
        if client.pending > 0 { client.reset("no answer within cluster_refresh") }
        ask(client, at: address, shards: !slotsOnly)
    }

    private func ask(_ client: CheckClient, at address: Address, shards: Bool) {
        client.send(["CLUSTER", shards ? "SHARDS" : "SLOTS"]) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(.error(let bytes)):
                let text = String(decoding: bytes, as: UTF8.self)
                if shards && (text.contains("unknown subcommand") || text.contains("Unknown subcommand")) {
                    self.slotsOnly = true
                    return self.ask(client, at: address, shards: false)
                }
                self.failed(address, text)
            case .success(let reply):
                let layout = shards ? ClusterReplies.shards(reply) : ClusterReplies.slots(reply)
                guard let layout, !layout.isEmpty else { return self.failed(address, "no slot layout in the reply") }
                self.answered(address, layout)
            case .failure(let error):
                self.failed(address, "\(error)")
            }
        }
    }

    private func failed(_ address: Address, _ why: String) {
        if errors[address] != why {
            errors[address] = why
            logger.warning("cluster: \(address) gave no slot layout: \(why)")
        }
        if lastGood == address { lastGood = nil }
        askNext()
    }

    private func answered(_ source: Address, _ layout: [ClusterShard]) {
        errors[source] = nil
        // A layout that leaves slots unserved which the current one serves is what a node
        // says in the middle of a failover, before it has heard of the promotion (it knows no
        // master for the shard). The other nodes are asked as well; the fullest layout wins.
        let served = Self.served(layout)
        guard served < Self.served(shards) else { return accept(layout, from: source) }
        if served > shortLayout?.served ?? -1 { shortLayout = (source, layout, served) }
        askNext()
    }

    private static func served(_ layout: [ClusterShard]) -> Int {
        layout.reduce(0) { $0 + $1.slots.reduce(0) { $0 + $1.count } }
    }

    private func endRound() {
        asking = false
        candidates = []
        shortLayout = nil
        if askAgain {
            askAgain = false
            refresh()
        }
    }

    private func accept(_ layout: [ClusterShard], from source: Address) {
        lastGood = source
        endRound()
        // Shards in a stable order (by their first slot), so every refresh lists them alike.
        let sorted = layout.sorted { ($0.slots.map(\.lowerBound).min() ?? .max) < ($1.slots.map(\.lowerBound).min() ?? .max) }
        guard sorted != shards else { return }
        let served = Self.served(sorted)
        let summary = sorted.map { "\(address(of: $0.master)) +\($0.replicas.count)" }.joined(separator: ", ")
        logger.info("cluster: \(sorted.count) shard(s) serve \(served) of 16384 slots (layout from \(source)): \(summary)")
        shards = sorted
        onChange()
    }
}
