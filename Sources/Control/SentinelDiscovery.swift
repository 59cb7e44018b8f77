import Config
import EventLoop
import Logging
import RESP

/// `discovery: sentinel`: asks every sentinel each round for the master's address and its
/// replicas, keeps one connection per sentinel subscribed to `+switch-master`, and says what
/// the majority of those answering name (`SentinelReplies.vote`). The health checker then
/// confirms the master with ROLE before any write goes there.
final class SentinelDiscovery {
    typealias ClientFactory = (_ address: Address, _ subscription: Bool) -> CheckClient
    private let makeClient: ClientFactory
    private var logger: Logger
    /// A client per sentinel for the queries, one subscribed to +switch-master, and what each
    /// sentinel last said.
    private var clients: [Address: CheckClient] = [:]
    private var subscribers: [Address: CheckClient] = [:]
    private var answers: [Address: (master: Address, replicas: [Address])] = [:]
    /// The last error each sentinel answered (logged when it changes).
    private var errors: [Address: String] = [:]
    private(set) var master: Address?
    private(set) var replicas: [Address] = []
    /// The group changed (a new master or replica list): check the new nodes, and at once the
    /// master a `+switch-master` announced (`switched`).
    var onChange: (_ switched: Address?) -> Void = { _ in }

    init(logger: Logger, makeClient: @escaping ClientFactory) {
        self.logger = logger
        self.makeClient = makeClient
    }

    /// Sentinel connections log in once, when they connect: after a change of the sentinels'
    /// credentials (or discovery mode) every connection starts again.
    func reset(_ why: String) {
        for client in Array(clients.values) + Array(subscribers.values) {
            client.onClose = nil
            client.reset(why)
        }
        clients = [:]
        subscribers = [:]
        errors = [:]
    }

    /// Forgets everything (discovery is no longer sentinel).
    func stop(_ why: String) {
        reset(why)
        answers = [:]
        master = nil
        replicas = []
    }

    /// Drops the sentinels no longer configured.
    func keep(only sentinels: [Address]) {
        for address in Array(clients.keys) where !sentinels.contains(address) {
            clients[address]?.reset("left the config")
            clients[address] = nil
            subscribers[address]?.onClose = nil
            subscribers[address]?.reset("left the config")
            subscribers[address] = nil
            answers[address] = nil
        }
    }

    /// One round: every sentinel is asked again (and subscribed, if it is not).
    func ask(_ sentinels: [Address], name: String) {
        for address in sentinels {
            let client = clients[address] ?? makeClient(address, false)
            clients[address] = client
            if client.pending > 0 { client.reset("no answer within health_interval") }
            var named: Address?
            client.send(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]) { [weak self] result in
                guard let self else { return }
                if case .success(let reply) = result, let found = SentinelReplies.masterAddress(reply) {
                    named = found
                    self.errors[address] = nil
                } else if case .success(.error(let bytes)) = result {
                    // NOAUTH, WRONGPASS, an unknown master_name: said once per sentinel and text.
                    let text = String(decoding: bytes, as: UTF8.self)
                    if self.errors[address] != text {
                        self.errors[address] = text
                        self.logger.error("sentinel \(address) answered: \(text)")
                    }
                }
            }
            client.send(["SENTINEL", "REPLICAS", name]) { [weak self] result in
                guard let self else { return }
                guard let named, case .success(let reply) = result, let replicas = SentinelReplies.replicas(reply) else {
                    self.answers[address] = nil
                    return
                }
                self.answers[address] = (named, replicas)
                self.tally()
            }
            subscribe(address, name: name)
        }
    }

    /// A failover is seen at once, not at the next round.
    private func subscribe(_ address: Address, name: String) {
        guard subscribers[address] == nil else { return }
        let client = makeClient(address, true)
        subscribers[address] = client
        client.onClose = { [weak self] in self?.subscribers[address] = nil }
        client.onMessage = { [weak self] message in
            guard let self, let announced = SentinelReplies.switchedMaster(message, name: name) else { return }
            self.logger.warning("sentinel \(address): +switch-master \(name) → \(announced)")
            self.master = announced
            self.replicas.removeAll { $0 == announced }
            self.onChange(announced)
        }
        client.send(["SUBSCRIBE", "+switch-master"]) { _ in }
    }

    private func tally() {
        guard let (master, replicas) = SentinelReplies.vote(answers),
              master != self.master || replicas != self.replicas else { return }
        if master != self.master { logger.info("sentinels name \(master) as master of the group") }
        self.master = master
        self.replicas = replicas
        onChange(nil)
    }
}
