import EventLoop
import RESP
import Routing

/// CLIENT LIST, INFO, KILL and UNBLOCK about the app's own connections: each app connection is
/// one client, with the id CLIENT ID and HELLO give it, its name, db, flags and last command —
/// not the ambassador's pooled backend connections (which Redis would list instead).
///
/// What cannot be the same as direct: the memory and buffer fields (qbuf, qbuf-free, argv-mem,
/// multi-mem, rbs, rbp, obl, oll, omem, tot-mem) describe Redis's own buffers; they are written
/// as 0 (rbs: the ambassador's read chunk). `fd` is the ambassador's socket. With several
/// workers, each lists and kills only its own worker's connections.
extension ClientSession {
    /// One CLIENT LIST line, in Redis 7's field order.
    /// `queryBytes`: what Redis would still hold in the client's query buffer — the command
    /// being answered, for the caller's own line (CLIENT INFO, or its CLIENT LIST line).
    func clientLine(now: Int, queryBytes: Int = 0) -> String {
        var flags = ""
        if isInMulti { flags += "x" }
        if isBlocked { flags += "b" }
        if !channels.isEmpty || !patterns.isEmpty || !shardChannels.isEmpty { flags += "P" }
        if tracking { flags += "t" }
        if connection.isUnixSocket { flags += "U" }
        if flags.isEmpty { flags = "N" }
        let name = self.name.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let age = (now - createdAt) / 1_000_000
        let idle = (now - lastCommandAt) / 1_000_000
        return "id=\(id) addr=\(connection.peerAddress) laddr=\(connection.localAddress) fd=\(connection.descriptor) "
            + "name=\(name) age=\(age) idle=\(idle) flags=\(flags) db=\(db) sub=\(channels.count) psub=\(patterns.count) "
            + "ssub=\(shardChannels.count) multi=\(isInMulti ? queued : -1) qbuf=\(queryBytes) qbuf-free=0 argv-mem=0 multi-mem=0 "
            + "rbs=\(connection.readChunkSize) rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=\(commandName) "
            + "user=\(user) redir=\(trackingRedirect) resp=\(protocolVersion)"
    }

    /// The last command as CLIENT LIST writes it: `get`, `client|list`.
    var commandName: String {
        let name = lastCommand.description.lowercased()
        guard !(proxy.table.info(name)?.subcommands.isEmpty ?? true), lastArgument.count > 0 else { return name }
        let sub = lastArgument.description.lowercased()
        return proxy.table.info("\(name)|\(sub)") != nil ? "\(name)|\(sub)" : name
    }

    /// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …]
    func clientList(_ arguments: [[UInt8]], queryBytes: Int) {
        var wantedIDs: Set<Int64>?
        var type: String?
        var index = 2
        while index < arguments.count {
            let option = String(decoding: arguments[index], as: UTF8.self).lowercased()
            if option == "type" && index + 1 < arguments.count {
                let value = String(decoding: arguments[index + 1], as: UTF8.self).lowercased()
                guard ["normal", "master", "replica", "slave", "pubsub"].contains(value) else {
                    return answerError("ERR Unknown client type '\(String(decoding: arguments[index + 1], as: UTF8.self))'")
                }
                type = value
                index += 2
            } else if option == "id" && index + 1 < arguments.count {
                var ids = Set<Int64>()
                index += 1
                while index < arguments.count {
                    guard let id = DecimalNumber.value(of: arguments[index]), id > 0 else {
                        return answerError("ERR Invalid client ID")
                    }
                    ids.insert(id)
                    index += 1
                }
                wantedIDs = ids
            } else {
                return answerError("ERR syntax error")
            }
        }
        let now = proxy.loop.nowMicroseconds
        let lines = proxy.allSessions.sorted { $0.id < $1.id }.filter { session in
            if let wantedIDs, !wantedIDs.contains(session.id) { return false }
            switch type {
            case "master", "replica", "slave": return false
            case "pubsub": return !session.channels.isEmpty || !session.patterns.isEmpty || !session.shardChannels.isEmpty
            case "normal": return session.channels.isEmpty && session.patterns.isEmpty && session.shardChannels.isEmpty
            default: return true
            }
        }.map { $0.clientLine(now: now, queryBytes: $0 === self ? queryBytes : 0) + "\n" }
        encoder.clear()
        encoder.protocolVersion = protocolVersion
        encoder.verbatimOrBulk(lines.joined())
        answer(encoder.bytes)
    }

    func clientInfo(queryBytes: Int) {
        encoder.clear()
        encoder.protocolVersion = protocolVersion
        encoder.verbatimOrBulk(clientLine(now: proxy.loop.nowMicroseconds, queryBytes: queryBytes) + "\n")
        answer(encoder.bytes)
    }

    /// CLIENT KILL addr:port (the old form: OK or an error), or CLIENT KILL with filters
    /// ID, ADDR, LADDR, USER, SKIPME, TYPE, MAXAGE (the number of clients killed).
    func clientKill(_ arguments: [[UInt8]]) {
        let sessions = proxy.allSessions
        if arguments.count == 3 {
            let address = String(decoding: arguments[2], as: UTF8.self)
            guard let target = sessions.first(where: { $0.connection.peerAddress == address }) else {
                return answerError("ERR No such client")
            }
            encoder.clear()
            encoder.simpleString("OK")
            answer(encoder.bytes)
            return kill(target)
        }
        var id: Int64?, address: String?, localAddress: String?, user: String?, type: String?, maxAge: Int64?
        var skipMe = true
        var index = 2
        // The first argument Redis would refuse (it parses in order and stops there); a USER
        // before it is looked up first, as Redis looks it up while parsing.
        var refusal: String?
        parsing: while index + 1 < arguments.count {
            let option = String(decoding: arguments[index], as: UTF8.self).lowercased()
            let value = String(decoding: arguments[index + 1], as: UTF8.self)
            switch option {
            case "id":
                guard let number = DecimalNumber.value(of: arguments[index + 1]), number > 0 else {
                    refusal = "ERR client-id should be greater than 0"
                    break parsing
                }
                id = number
            case "addr": address = value
            case "laddr": localAddress = value
            case "user":
                if user == nil { user = value }
            case "type":
                let lower = value.lowercased()
                guard ["normal", "master", "replica", "slave", "pubsub"].contains(lower) else {
                    refusal = "ERR Unknown client type '\(value)'"
                    break parsing
                }
                type = lower
            case "skipme":
                switch value.lowercased() {
                case "yes": skipMe = true
                case "no": skipMe = false
                default:
                    refusal = "ERR syntax error"
                    break parsing
                }
            case "maxage" where proxy.masterIsAtLeast(7, 4):
                guard let number = DecimalNumber.value(of: arguments[index + 1]) else {
                    refusal = "ERR value is not an integer or out of range"
                    break parsing
                }
                maxAge = number
            default:
                // MAXAGE before Redis 7.4 too: an unknown filter.
                refusal = "ERR syntax error"
                break parsing
            }
            index += 2
        }
        if refusal == nil && index != arguments.count { refusal = "ERR syntax error" }
        let filter = { [unowned self] (session: ClientSession) -> Bool in
            if let id, session.id != id { return false }
            if let address, session.connection.peerAddress != address { return false }
            if let localAddress, session.connection.localAddress != localAddress { return false }
            if let user, session.user != user { return false }
            if let maxAge, maxAge > 0, Int64((self.proxy.loop.nowMicroseconds - session.createdAt) / 1_000_000) <= maxAge { return false }
            switch type {
            case "master", "replica", "slave": return false
            case "pubsub": if session.channels.isEmpty && session.patterns.isEmpty && session.shardChannels.isEmpty { return false }
            case "normal": if !(session.channels.isEmpty && session.patterns.isEmpty && session.shardChannels.isEmpty) { return false }
            default: break
            }
            return !(skipMe && session === self)
        }
        guard let user else {
            if let refusal { return answerError(refusal) }
            return killMatching(filter, into: nil)
        }
        // Redis refuses a user it does not know: the master is asked (ACL GETUSER answers nil for
        // one it does not have); the answer, and the kill, come in this request's turn.
        let slot = enqueue(.master)
        askMaster(["ACL", "GETUSER", user], for: slot) { session, bytes in
            if Self.nilReplies.contains(where: { bytes.starts(with: $0) }) {
                return session.fail(slot, "ERR No such user '\(user)'")
            }
            if let refusal { return session.fail(slot, refusal) }
            session.killMatching(filter, into: slot)
        }
    }

    private static let nilReplies = [Array("$-1\r\n".utf8), Array("*-1\r\n".utf8), Array("_\r\n".utf8)]

    /// Kills the sessions `filter` picks and answers how many (into `slot` when the answer waited).
    private func killMatching(_ filter: (ClientSession) -> Bool, into slot: Slot?) {
        let targets = proxy.allSessions.filter(filter)
        encoder.clear()
        encoder.integer(Int64(targets.count))
        if let slot {
            fill(slot, with: encoder.bytes, isError: false)
        } else {
            answer(encoder.bytes)
        }
        targets.forEach(kill)
    }

    /// Closes `target`: at once for another client (what it had not been sent is dropped, as
    /// Redis frees it), after this reply for the caller itself.
    private func kill(_ target: ClientSession) {
        if target === self { return closeAfterReplies() }
        target.connection.close(flush: false)
    }

    /// CLIENT UNBLOCK id [TIMEOUT|ERROR]: the app client's blocking command runs on a dedicated
    /// connection; Redis is asked to unblock that connection, and answers.
    func clientUnblock(_ arguments: [[UInt8]]) {
        guard let id = DecimalNumber.value(of: arguments[2]) else {
            return answerError("ERR value is not an integer or out of range")
        }
        var mode = "TIMEOUT"
        if arguments.count == 4 {
            mode = String(decoding: arguments[3], as: UTF8.self).uppercased()
            guard mode == "TIMEOUT" || mode == "ERROR" else {
                return answerError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
            }
        } else if arguments.count > 4 {
            return answerError("ERR syntax error")
        }
        guard let target = proxy.session(id: id), target.isBlocked, let dedicated = target.pinnedConnection else {
            encoder.clear()
            encoder.integer(0)
            return answer(encoder.bytes)
        }
        // A connection opened for this command may still be learning its Redis id: wait for it.
        let slot = enqueue(.master)
        dedicated.whenIdentified { [weak self] in
            guard let self, slot.session === self else { return }
            guard let backendID = dedicated.redisClientID else {
                return self.fail(slot, "ERR ambassador: the blocked client's connection has no id")
            }
            self.askMaster(["CLIENT", "UNBLOCK", String(backendID), mode], into: slot)
        }
    }

}
