import RESP

/// Where a command may run, as far as the command alone tells (the session's state and the
/// topology are the router's business).
public enum CommandClass: Hashable, Sendable {
    /// Read-only (`readonly` and not `write` in Redis's flags): may be served by a replica.
    case read
    /// Must run on the master and may change data (`write` or `may_replicate` in Redis's flags):
    /// writes and scripts (`EVAL`, `FCALL`). Read-your-writes and WAIT count them.
    case write
    /// Must run on the master but changes no data: server, admin and connection commands
    /// (`INFO`, `CONFIG`, `SCRIPT LOAD`, `SCRIPT KILL`, `TIME`, `SHUTDOWN` …).
    case master
    /// Changes or depends on the state of the connection it runs on.
    case stateful(StatefulKind)
    /// Answered by the ambassador itself.
    case local(LocalKind)
    /// Not in the table (a module command, or a typo): sent to the master, never to a replica,
    /// where Redis gives its own answer (including `-ERR unknown command`).
    case unknown

    /// Unknown commands are routed like writes.
    public var runsOnMaster: Bool { self != .read }
}

public enum StatefulKind: Hashable, Sendable {
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    case transaction
    /// Commands that can wait: BLPOP & co, XREAD/XREADGROUP with BLOCK, and WAIT (which also
    /// counts acknowledgements of writes made on the same connection).
    case blocking
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs: the connection enters pub/sub mode.
    case pubsub
    /// MONITOR, SYNC, PSYNC: the connection becomes a stream.
    case monitor
    /// CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO / REPLY / NO-EVICT / NO-TOUCH.
    case clientState
    /// SELECT.
    case dbSelect
    /// HELLO (protocol version, and optionally AUTH and SETNAME).
    case protocolVersion
}

/// The commands a session treats apart from the rest of their class — a transaction's verbs, the
/// SCAN family's cursor, WAIT, what a busy server still takes — found with the class in the same
/// table lookup (`CommandTable.command(_:arguments:)`), so the session compares no names.
public enum Verb: Hashable, Sendable {
    case none
    case multi, exec, discard, watch, unwatch
    case select, hello
    /// WAIT and WAITAOF: run on the connection of the session's writes.
    case wait
    /// SCAN (cursor at argument 1), SSCAN / HSCAN / ZSCAN (argument 2): a walk stays on its node.
    case scan(cursorArgument: Int)
    /// EVALSHA_RO: -NOSCRIPT on a replica is retried elsewhere.
    case evalshaRO
    /// SCRIPT KILL, FUNCTION KILL, SHUTDOWN: sent on a connection with nothing in flight.
    case urgent
    /// SUBSCRIBE … SUNSUBSCRIBE: which set of names, and whether they are added.
    case subscription(Subscriptions, subscribe: Bool)
    /// CLIENT TRACKING and CLIENT REPLY: they make a pinned connection relay.
    case clientTracking, clientReply

    public enum Subscriptions: Hashable, Sendable { case channels, patterns, shardChannels }

    /// The verb of the command (or `parent|subcommand`) called `name`.
    public init(command name: String) {
        switch name {
        case "multi": self = .multi
        case "exec": self = .exec
        case "discard": self = .discard
        case "watch": self = .watch
        case "unwatch": self = .unwatch
        case "select": self = .select
        case "hello": self = .hello
        case "wait", "waitaof": self = .wait
        case "scan": self = .scan(cursorArgument: 1)
        case "sscan", "hscan", "zscan": self = .scan(cursorArgument: 2)
        case "evalsha_ro": self = .evalshaRO
        case "script|kill", "function|kill", "shutdown": self = .urgent
        case "subscribe": self = .subscription(.channels, subscribe: true)
        case "unsubscribe": self = .subscription(.channels, subscribe: false)
        case "psubscribe": self = .subscription(.patterns, subscribe: true)
        case "punsubscribe": self = .subscription(.patterns, subscribe: false)
        case "ssubscribe": self = .subscription(.shardChannels, subscribe: true)
        case "sunsubscribe": self = .subscription(.shardChannels, subscribe: false)
        case "client|tracking": self = .clientTracking
        case "client|reply": self = .clientReply
        default: self = .none
        }
    }

    /// WAITAOF where the table predates it (Redis before 7.2): known by name.
    static let waitaof = ShortBytes("waitaof")
}

/// A command's class and verb, from one lookup, and which table entry it is (for its keys,
/// `CommandTable.keys(of:)`). Two commands are equal when their class and verb are.
public struct Command: Hashable, Sendable {
    public var kind: CommandClass
    public var verb: Verb
    /// Its one key is argument 1 (GET, SET, HGET, INCR …): Redis Cluster's common case, known
    /// without a look at `keys(of:)`.
    public var keyIsFirstArgument: Bool
    /// The table entry (-1: an unknown command).
    var entry: Int32
    /// It configures or inspects the server (see `CommandTable.inspects(_:)`).
    public var inspectsServer = false

    public init(_ kind: CommandClass, _ verb: Verb = .none) {
        self.init(kind, verb, entry: -1, keyIsFirstArgument: false)
    }

    init(_ kind: CommandClass, _ verb: Verb, entry: Int32, keyIsFirstArgument: Bool) {
        self.kind = kind
        self.verb = verb
        self.entry = entry
        self.keyIsFirstArgument = keyIsFirstArgument
    }

    public static func == (left: Command, right: Command) -> Bool { left.kind == right.kind && left.verb == right.verb }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(verb)
    }
}

public enum LocalKind: Hashable, Sendable {
    case ping, echo, quit, auth, reset
    case clientSetName, clientGetName, clientSetInfo, clientID
    /// CLIENT LIST, INFO, KILL, UNBLOCK: about the app's connections, not the ambassador's.
    case clientList, clientInfo, clientKill, clientUnblock
    /// The ambassador's own command (`AMBASSADOR INFO|CONFIG|RELOAD`).
    case ambassador

    /// Whether a busy Redis (a script or function run past `busy-reply-threshold`) refuses it
    /// with -BUSY: all but QUIT, AUTH and RESET, the table's `allow_busy` commands here (and the
    /// ambassador's own command, which Redis never sees).
    public var refusedWhileBusy: Bool {
        switch self {
        case .quit, .auth, .reset, .ambassador: false
        default: true
        }
    }
}

/// The arguments of a request, as `classify` reads them: lower-cased, first 32 bytes each.
/// The proxy reads them from the client's input buffer; tests from an array.
public protocol CommandArguments {
    /// Number of arguments, the command name included.
    var count: Int { get }
    /// Argument `index` (0 is the command name).
    func shortArgument(_ index: Int) -> ShortBytes
}

extension CommandTable {
    /// Classifies a request from its parsed frame. Only XREAD and XREADGROUP look past the first
    /// argument (for BLOCK); every other command is one table lookup.
    @inline(__always)
    public func classify(_ frame: RequestFrame, arguments: some CommandArguments) -> CommandClass {
        command(frame, arguments: arguments).kind
    }

    /// The class and the verb of a request. A command the table does not know is `.unknown`
    /// (WAITAOF on a table that predates it: `.unknown` with verb `.wait`).
    @inline(__always)
    public func command(_ frame: RequestFrame, arguments: some CommandArguments) -> Command {
        guard var index = find(frame.name) else {
            return Command(.unknown, frame.name == Verb.waitaof ? .wait : .none)
        }
        if frame.argumentCount > 1, let sub = findSubcommand(frame.firstArgument, of: index) { index = sub }
        let entry = entries[index]
        var command: Command
        switch entry.rule {
        case .fixed(let kind):
            command = Command(kind, entry.verb, entry: Int32(truncatingIfNeeded: index), keyIsFirstArgument: entry.keys.isFirstArgumentOnly)
        case .streamRead(let withoutBlock, let isGroup):
            command = Command(Self.hasBlockOption(arguments, isGroup: isGroup) ? .stateful(.blocking) : withoutBlock, entry.verb,
                              entry: Int32(truncatingIfNeeded: index), keyIsFirstArgument: entry.keys.isFirstArgumentOnly)
        }
        command.inspectsServer = entry.inspects
        return command
    }

    /// The class and verb of a command given as its arguments; for tests.
    public func command(_ arguments: [String]) -> Command {
        let list = ArgumentList(arguments)
        var frame = RequestFrame(length: 0, argumentCount: arguments.count, name: ShortBytes(),
                                 firstArgument: ShortBytes(), isInline: false)
        if arguments.count > 0 { frame.name = list.shortArgument(0) }
        if arguments.count > 1 { frame.firstArgument = list.shortArgument(1) }
        return command(frame, arguments: list)
    }

    /// Classifies a command given as its arguments (`["XREAD", "BLOCK", "0", …]`); for tests and
    /// configuration.
    public func classify(_ arguments: [String]) -> CommandClass {
        command(arguments).kind
    }

    /// Redis's `xreadCommand` option loop: BLOCK before STREAMS makes the call blocking; the
    /// values of COUNT, BLOCK and GROUP are skipped so a group or consumer named "block" is not
    /// mistaken for the option.
    static func hasBlockOption(_ arguments: some CommandArguments, isGroup: Bool) -> Bool {
        var i = 1
        let count = arguments.count
        while i < count {
            let more = count - i - 1
            let option = arguments.shortArgument(i)
            if option == Keyword.block && more > 0 { return true }
            if option == Keyword.streams && more > 0 { return false }
            if option == Keyword.count && more > 0 { i += 2; continue }
            if isGroup && option == Keyword.group && more >= 2 { i += 3; continue }
            i += 1
        }
        return false
    }

    /// The fixed class of a command, from its name where Redis's flags do not say enough, else from
    /// its flags.
    static func rule(for command: CommandInfo) -> Rule {
        switch command.name {
        case "multi", "exec", "discard", "watch", "unwatch":
            return .fixed(.stateful(.transaction))
        case "wait", "waitaof":
            return .fixed(.stateful(.blocking))
        case "xread":
            return .streamRead(withoutBlock: .read, isGroup: false)
        case "xreadgroup":
            return .streamRead(withoutBlock: .write, isGroup: true)
        case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
            return .fixed(.stateful(.pubsub))
        case "monitor", "sync", "psync":
            return .fixed(.stateful(.monitor))
        case "client|tracking", "client|caching", "client|getredir", "client|trackinginfo",
             "client|reply", "client|no-evict", "client|no-touch":
            return .fixed(.stateful(.clientState))
        case "select":
            return .fixed(.stateful(.dbSelect))
        case "hello":
            return .fixed(.stateful(.protocolVersion))
        case "ping": return .fixed(.local(.ping))
        case "echo": return .fixed(.local(.echo))
        case "quit": return .fixed(.local(.quit))
        case "auth": return .fixed(.local(.auth))
        case "reset": return .fixed(.local(.reset))
        case "client|setname": return .fixed(.local(.clientSetName))
        case "client|getname": return .fixed(.local(.clientGetName))
        case "client|setinfo": return .fixed(.local(.clientSetInfo))
        case "client|id": return .fixed(.local(.clientID))
        case "client|list": return .fixed(.local(.clientList))
        case "client|info": return .fixed(.local(.clientInfo))
        case "client|kill": return .fixed(.local(.clientKill))
        case "client|unblock": return .fixed(.local(.clientUnblock))
        case "ambassador": return .fixed(.local(.ambassador))
        // May write or replicate, though COMMAND does not list may_replicate for them.
        case "eval", "evalsha", "fcall", "publish", "spublish": return .fixed(.write)
        // A key's access time and LFU counter are each node's own: TOUCH and OBJECT act on the
        // master's (where CONFIG SET maxmemory-policy applies), as on one Redis, not on a
        // replica's copy that the app's TOUCH never reached. PFCOUNT may store the count it
        // computed in the key (Redis pauses it with the writes): the master's too.
        case "touch", "object|idletime", "object|freq", "object|encoding", "object|refcount", "pfcount":
            return .fixed(.master)
        default:
            if command.flags.contains(.blocking) { return .fixed(.stateful(.blocking)) }
            if command.flags.contains(.readonly) && !command.flags.contains(.write) { return .fixed(.read) }
            if command.flags.contains(.write) || command.flags.contains(.mayReplicate) { return .fixed(.write) }
            return .fixed(.master)
        }
    }
}

extension CommandTable {
    /// The class of a command the table does not know (a module's, or one renamed with
    /// `rename-command`), from the flags the master reports for it in `COMMAND INFO`.
    public static func classify(flags: [String]) -> CommandClass {
        let set = Set(flags.map { $0.lowercased() })
        if set.contains("blocking") { return .stateful(.blocking) }
        if set.contains("readonly") && !set.contains("write") { return .read }
        if set.contains("write") || set.contains("may_replicate") { return .write }
        if set.contains("pubsub") { return .write }  // PUBLISH renamed: may be replicated
        return .master
    }
}

/// Keywords compared against arguments, packed once.
enum Keyword {
    static let block = ShortBytes("block")
    static let streams = ShortBytes("streams")
    static let count = ShortBytes("count")
    static let group = ShortBytes("group")
}

/// `CommandArguments` over an array of strings.
public struct ArgumentList: CommandArguments, Sendable {
    public let arguments: [String]
    public init(_ arguments: [String]) { self.arguments = arguments }
    public var count: Int { arguments.count }
    public func shortArgument(_ index: Int) -> ShortBytes { ShortBytes(arguments[index]) }
}
