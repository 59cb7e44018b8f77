import Config
import EventLoop
import RESP
import Routing

/// Commands the ambassador answers itself, with the bytes Redis would send (texts checked against
/// redis-server 7.0). Their replies still take their turn in the session's FIFO.
extension ClientSession {
    func answerLocally(_ kind: LocalKind, _ frame: RequestFrame) {
        let arguments = (0..<frame.argumentCount).map { argumentBytes($0, of: frame) }
        input.drop(frame.length, from: connection)
        if kind != .ambassador { showOnMonitors(arguments) }
        encoder.clear()
        encoder.protocolVersion = protocolVersion
        switch kind {
        case .ping:
            // PING's table arity is -1; Redis's pingCommand itself refuses more than one argument.
            guard arguments.count <= 2 else { return answerError("ERR wrong number of arguments for 'ping' command") }
            if arguments.count == 1 { encoder.simpleString("PONG") } else { encoder.bulk(arguments[1]) }
        case .echo:
            guard checkArity("echo", arguments) else { return }
            encoder.bulk(arguments[1])
        case .quit:
            encoder.simpleString("OK")
            answer(encoder.bytes)
            return closeAfterReplies()
        case .auth:
            guard checkArity("auth", arguments) else { return }
            guard arguments.count <= 3 else { return answerError("ERR syntax error") }
            let login = Login(user: arguments.count == 3 ? String(decoding: arguments[1], as: UTF8.self) : nil,
                              password: String(decoding: arguments.last!, as: UTF8.self))
            if proxy.passesLoginsThrough {
                // The master checks it; the session's next commands run as that user.
                return checkLogin(login) { session, error in
                    if let error { return error }
                    session.encoder.clear()
                    session.encoder.simpleString("OK")
                    return session.encoder.bytes
                }
            }
            if let error = authenticate(user: arguments.count == 3 ? arguments[1] : nil, password: arguments.last!) {
                return answerError(error)
            }
            user = login.user ?? "default"
            authenticated = true
            encoder.simpleString("OK")
        case .reset:
            guard checkArity("reset", arguments) else { return }
            reset()
            encoder.protocolVersion = 2
            encoder.simpleString("RESET")
        case .clientSetName:
            guard checkArity("client|setname", arguments) else { return }
            if let error = setName(arguments[2]) { return answerError(error) }
            encoder.simpleString("OK")
        case .clientGetName:
            guard checkArity("client|getname", arguments) else { return }
            if let name { encoder.bulk(name) } else { encoder.null() }
        case .clientSetInfo:
            guard checkArity("client|setinfo", arguments) else { return }
            encoder.simpleString("OK")
        case .clientID:
            guard checkArity("client|id", arguments) else { return }
            encoder.integer(id)
        case .ambassador:
            return ambassadorCommand(arguments)
        case .clientList:
            return clientList(arguments, queryBytes: frame.length)
        case .clientInfo:
            guard checkArity("client|info", arguments) else { return }
            return clientInfo(queryBytes: frame.length)
        case .clientKill:
            guard checkArity("client|kill", arguments) else { return }
            return clientKill(arguments)
        case .clientUnblock:
            guard checkArity("client|unblock", arguments) else { return }
            return clientUnblock(arguments)
        }
        answer(encoder.bytes)
    }

    /// SELECT: checked against the master's `databases`, then remembered; every later command of
    /// the session runs in that db wherever it is routed.
    func select(_ frame: RequestFrame) {
        let arguments = (0..<frame.argumentCount).map { argumentBytes($0, of: frame) }
        input.drop(frame.length, from: connection)
        // Redis shows a command once it ran: SELECT in the db it chose (or the same, refused).
        defer { showOnMonitors(arguments) }
        guard checkArity("select", arguments) else { return }
        guard let db = DecimalNumber.value(of: arguments[1]), db >= Int64(Int32.min), db <= Int64(Int32.max) else {
            return answerError("ERR value is not an integer or out of range")
        }
        if proxy.clustered && db != 0 { return answerError("ERR SELECT is not allowed in cluster mode") }
        guard db >= 0, db < Int64(proxy.databases) else { return answerError("ERR DB index is out of range") }
        self.db = Int(db)
        encoder.clear()
        encoder.simpleString("OK")
        answer(encoder.bytes)
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: negotiated here; the session's later
    /// commands use backend connections that speak the chosen protocol.
    func hello(_ frame: RequestFrame) {
        let arguments = (0..<frame.argumentCount).map { argumentBytes($0, of: frame) }
        input.drop(frame.length, from: connection)
        showOnMonitors(arguments)
        var version = protocolVersion
        if arguments.count >= 2 {
            guard let requested = DecimalNumber.value(of: arguments[1]), requested >= Int64(Int32.min), requested <= Int64(Int32.max) else {
                return answerError("ERR Protocol version is not an integer or out of range")
            }
            guard requested == 2 || requested == 3 else { return answerError("NOPROTO unsupported protocol version") }
            version = Int(requested)
        }
        var newName: [UInt8]?
        var login: Login?
        var index = 2
        while index < arguments.count {
            let option = String(decoding: arguments[index], as: UTF8.self)
            let more = arguments.count - index - 1
            if option.lowercased() == "auth" && more >= 2 {
                login = Login(user: String(decoding: arguments[index + 1], as: UTF8.self),
                              password: String(decoding: arguments[index + 2], as: UTF8.self))
                if !proxy.passesLoginsThrough,
                   let error = authenticate(user: arguments[index + 1], password: arguments[index + 2]) {
                    return answerError(error)
                }
                index += 3
            } else if option.lowercased() == "setname" && more >= 1 {
                newName = arguments[index + 1]
                index += 2
            } else {
                return answerError("ERR Syntax error in HELLO option '\(option)'")
            }
        }
        if let newName, setName(newName, apply: false) != nil { return answerError(setName(newName, apply: false)!) }
        if let login, proxy.passesLoginsThrough {
            return checkLogin(login) { session, error in
                if let error { return error }
                if let newName { _ = session.setName(newName) }
                return session.helloReply(version)
            }
        }
        if let login {
            user = login.user ?? "default"
            authenticated = true
        }
        guard authenticated else {
            return answerError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
        }
        if let newName { _ = setName(newName) }
        answer(helloReply(version))
    }

    /// HELLO's map, in `version`, which the session now speaks.
    func helloReply(_ version: Int) -> [UInt8] {
        protocolVersion = version
        encoder.clear()
        encoder.protocolVersion = version
        encoder.mapHeader(7)
        encoder.bulk("server"); encoder.bulk("redis")
        encoder.bulk("version"); encoder.bulk(proxy.masterVersion)
        encoder.bulk("proto"); encoder.integer(Int64(version))
        encoder.bulk("id"); encoder.integer(id)
        encoder.bulk("mode"); encoder.bulk("standalone")
        encoder.bulk("role"); encoder.bulk("master")
        encoder.bulk("modules"); encoder.arrayHeader(0)
        return encoder.bytes
    }

    /// AUTH passed through: a connection of its own (so no shared one changes user) asks the
    /// master; meanwhile nothing after it is dispatched. `reply` makes the answer from the
    /// master's error bytes (nil: accepted, the session is now that user).
    private func checkLogin(_ login: Login, reply: @escaping (ClientSession, [UInt8]?) -> [UInt8]) {
        awaitingLogin = true
        connection.pauseReading()
        let slot = enqueue(.master)
        group.master.checkLogin(login) { [weak self] bytes in
            guard let self, slot.session === self else { return }
            self.awaitingLogin = false
            let accepted = bytes == Array("+OK\r\n".utf8)
            if accepted { self.loggedIn(as: login) }
            let error: [UInt8]? = accepted ? nil
                : bytes.isEmpty ? Array("-ERR ambassador: the master could not be asked to check the login\r\n".utf8) : bytes
            let wasHead = self.replies.isHead(slot)
            self.fill(slot, with: reply(self, error), isError: error != nil)
            if !wasHead { self.scheduleResume() }  // read on, after this callback
        }
    }

    /// AUTH against the credentials the ambassador uses for its backends, so an app sees what the
    /// backend would tell it; nil when accepted, else the error Redis gives.
    private func authenticate(user: [UInt8]?, password: [UInt8]) -> String? {
        let config = proxy.config
        let userName = user.map { String(decoding: $0, as: UTF8.self) }
        if config.requiresClientAuth {
            // The ambassador's own client users (`clients`), not the backend's: a user not listed
            // (the default one included) is disabled, as in Redis's ACL.
            let name = userName ?? "default"
            guard let entry = config.clientUsers.first(where: { $0.name == name }),
                  Secret.equal(password, Array(entry.password.utf8)) else {
                return "WRONGPASS invalid username-password pair or user is disabled."
            }
            return nil
        }
        guard let expected = config.backendPassword else {
            // A server with no password: the default user takes anything, others do not exist.
            if userName == nil {
                return "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
            }
            return userName == "default" ? nil : "WRONGPASS invalid username-password pair or user is disabled."
        }
        let expectedUser = config.username ?? "default"
        if (userName ?? "default") == expectedUser && password == Array(expected.utf8) { return nil }
        return "WRONGPASS invalid username-password pair or user is disabled."
    }

    /// CLIENT SETNAME rules: printable ASCII without spaces; empty clears the name.
    func setName(_ candidate: [UInt8], apply: Bool = true) -> String? {
        if candidate.contains(where: { $0 < 33 || $0 > 126 }) {
            return "ERR Client names cannot contain spaces, newlines or special characters."
        }
        if apply { name = candidate.isEmpty ? nil : candidate }
        return nil
    }

    /// Redis's arity check and message for commands answered here.
    func checkArity(_ command: String, _ arguments: [[UInt8]]) -> Bool {
        guard let info = proxy.table.info(command), !info.acceptsArgumentCount(arguments.count) else { return true }
        answerError("ERR wrong number of arguments for '\(command)' command")
        return false
    }

    /// AMBASSADOR INFO: what this ambassador is doing, as a bulk string of `key:value` lines.
    private func ambassadorCommand(_ arguments: [[UInt8]]) {
        let sub = arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self).lowercased() : ""
        guard sub == "info", arguments.count == 2 else {
            let shown = arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self) : ""
            return answerError("ERR unknown subcommand '\(shown)'. Try AMBASSADOR INFO.")
        }
        encoder.bulk(proxy.infoText())
        answer(encoder.bytes)
    }

    // MARK: argument access

    /// Argument `index` of `frame`, copied out (local commands only; never on the forwarding path).
    func argumentBytes(_ index: Int, of frame: RequestFrame) -> [UInt8] {
        let range = parser.arguments[index]
        if frame.isInline {
            return Array(parser.inlineBytes[range.offset..<range.offset + range.count])
        }
        var bytes: [UInt8] = []
        connection.copyInput(from: pendingBytes + range.offset, count: range.count, into: &bytes)
        return bytes
    }

    /// Argument `index`, lower-cased, first 32 bytes: read in place, nothing allocated.
    func shortArgument(_ index: Int, of frame: RequestFrame) -> ShortBytes {
        let range = parser.arguments[index]
        var value = ShortBytes()
        if frame.isInline {
            for byte in parser.inlineBytes[range.offset..<range.offset + min(range.count, ShortBytes.capacity + 1)] {
                value.append(byte)
            }
            return value
        }
        var left = min(range.count, ShortBytes.capacity + 1)
        connection.withInputChunks(from: pendingBytes + range.offset) { chunk in
            let take = min(left, chunk.count)
            for i in 0..<take { value.append(chunk[i]) }
            left -= take
            return left > 0
        }
        return value
    }
}
