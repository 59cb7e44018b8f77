import RESP

/// Where a command's keys are, as Redis finds them to check a command's slots in a cluster
/// (`getKeysFromCommand`): the legacy first/last/step positions of the command table, and for
/// the commands whose keys move (`movablekeys`) the rules of Redis's own `*GetKeys` functions
/// (db.c), written out here. Pure, never allocates: the slot routing of Redis Cluster and the
/// `app` read-your-writes mode rest on it.
/// Which of Redis's getkeys functions finds a movable-keys command's keys: decided once, when
/// the table is built, so finding the keys compares no names.
enum MovableKeys: Sendable {
    /// `genericGetKeys`: keys counted by argument `number`, the first at `first`; the
    /// destination at `store` (0: none).
    case numbered(store: Int, number: Int, first: Int)
    case sort, sortReadOnly, migrate, georadius, streams

    init?(command name: String) {
        switch name {
        case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "blmpop", "bzmpop":
            self = .numbered(store: 0, number: 2, first: 3)
        case "zunionstore", "zinterstore", "zdiffstore":
            self = .numbered(store: 1, number: 2, first: 3)
        case "zunion", "zinter", "zdiff", "sintercard", "zintercard", "lmpop", "zmpop":
            self = .numbered(store: 0, number: 1, first: 2)
        case "sort": self = .sort
        case "sort_ro": self = .sortReadOnly
        case "migrate": self = .migrate
        case "georadius", "georadiusbymember": self = .georadius
        case "xread", "xreadgroup": self = .streams
        default: return nil
        }
    }
}

/// Where a command's keys are, as a trivially copyable value (`CommandTable` keeps one per
/// entry: finding a command's keys on the per-command path takes no reference counts).
public struct KeyRule: Sendable {
    /// The legacy positions (see `CommandInfo.firstKey`); 0: none.
    let firstKey: Int32
    let lastKey: Int32
    let keyStep: Int32
    let movableKeys: MovableKeys?

    /// The command may have keys.
    public var hasKeys: Bool { firstKey > 0 || movableKeys != nil }
    /// Its one key is argument 1 (GET, SET, HGET, INCR …).
    public var isFirstArgumentOnly: Bool { firstKey == 1 && lastKey == 1 && movableKeys == nil }

    init(_ info: CommandInfo) {
        firstKey = Int32(info.firstKey)
        lastKey = Int32(info.lastKey)
        keyStep = Int32(info.keyStep)
        movableKeys = info.movableKeys
    }

    /// No key.
    public static let none = KeyRule()
    private init() {
        (firstKey, lastKey, keyStep, movableKeys) = (0, 0, 0, nil)
    }
}

extension CommandInfo {
    /// See `KeyRule.visitKeys`.
    public func visitKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        KeyRule(self).visitKeys(arguments, visit)
    }

    public var keyRule: KeyRule { KeyRule(self) }
}

extension KeyRule {
    /// Calls `visit` with the argument index of each of the command's keys, in Redis's order.
    /// Arguments that would make the command fail (a numkeys out of range, XREAD without
    /// STREAMS) yield no key, as in Redis, which then reports the error itself. A movable-keys
    /// command this code does not know (a newer Redis) gives its table positions.
    @inline(__always)
    public func visitKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        switch movableKeys {
        case nil:
            guard firstKey > 0, keyStep > 0 else { return }
            let count = arguments.count
            let last = lastKey < 0 ? count + Int(lastKey) : min(Int(lastKey), count - 1)
            var index = Int(firstKey)
            while index <= last && index < count {
                visit(index)
                index += Int(keyStep)
            }
        case .numbered(let store, let number, let first)?:
            Self.numberedKeys(store: store, number: number, first: first, arguments, visit)
        case .sort?:
            Self.sortKeys(arguments, visit)
        case .sortReadOnly?:
            if arguments.count > 1 { visit(1) }
        case .migrate?:
            Self.migrateKeys(arguments, visit)
        case .georadius?:
            Self.georadiusKeys(arguments, visit)
        case .streams?:
            Self.streamKeys(arguments, visit)
        }
    }

    /// COMMAND [destination] numkeys key … (`genericGetKeys`): `numkeys` read as C's atoi
    /// reads it; out of range (below 1, or more keys than arguments), no key at all.
    private static func numberedKeys(store: Int, number: Int, first: Int, _ arguments: some CommandArguments,
                                     _ visit: (Int) -> Void) {
        guard number < arguments.count else { return }
        let count = atoi(arguments.shortArgument(number))
        guard count >= 1, count <= arguments.count - first else { return }
        for index in first..<(first + count) { visit(index) }
        if store > 0 { visit(store) }
    }

    /// SORT key … [STORE destination] (`sortGetKeys`): the sorted key, and the destination of
    /// the last STORE. LIMIT's two arguments and BY's and GET's one are skipped; STORE's is
    /// not (it is read as an option name next, as Redis does).
    private static func sortKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        guard arguments.count > 1 else { return }
        visit(1)
        var store: Int?
        var i = 2
        while i < arguments.count {
            let word = arguments.shortArgument(i)
            if word == Words.limit {
                i += 2
            } else if word == Words.get || word == Words.by {
                i += 1
            } else if word == Words.store && i + 1 < arguments.count {
                store = i + 1
            }
            i += 1
        }
        if let store { visit(store) }
    }

    /// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS …]
    /// (`migrateGetKeys`): the keys after KEYS when the key argument is empty (none when it is
    /// not: a syntax error), else the key argument.
    private static func migrateKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        guard arguments.count > 3 else { return }
        if arguments.count > 6 {
            var i = 6
            while i < arguments.count {
                let word = arguments.shortArgument(i)
                if word == Words.keys {
                    if arguments.shortArgument(3).isEmpty {
                        for index in (i + 1)..<arguments.count { visit(index) }
                    }
                    return
                }
                if word == Words.auth { i += 1 } else if word == Words.auth2 { i += 2 }
                i += 1
            }
        }
        visit(3)
    }

    /// GEORADIUS key … [STORE key | STOREDIST key] (`georadiusGetKeys`): the key, and the
    /// destination of the last STORE or STOREDIST from argument 5 on.
    private static func georadiusKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        guard arguments.count > 1 else { return }
        var stored: Int?
        var i = 5
        while i < arguments.count {
            let word = arguments.shortArgument(i)
            if (word == Words.store || word == Words.storedist) && i + 1 < arguments.count {
                stored = i + 1
                i += 1
            }
            i += 1
        }
        visit(1)
        if let stored { visit(stored) }
    }

    /// XREAD/XREADGROUP … STREAMS key … id … (`xreadGetKeys`): the options before STREAMS are
    /// skipped by name (BLOCK, COUNT, GROUP, NOACK); anything else, or an odd number of
    /// arguments after STREAMS, yields no key.
    private static func streamKeys(_ arguments: some CommandArguments, _ visit: (Int) -> Void) {
        var i = 1
        while i < arguments.count {
            let word = arguments.shortArgument(i)
            if word == Words.block || word == Words.count {
                i += 1
            } else if word == Words.group {
                i += 2
            } else if word == Words.streams {
                let remaining = arguments.count - i - 1
                guard remaining > 0, remaining % 2 == 0 else { return }
                for index in (i + 1)...(i + remaining / 2) { visit(index) }
                return
            } else if word != Words.noack {
                return
            }
            i += 1
        }
    }

    /// C's `atoi`: leading spaces, a sign, then digits up to the first other byte; 0 when none.
    static func atoi(_ value: ShortBytes) -> Int {
        var i = 0
        while i < value.count, i < ShortBytes.capacity, value[i] == 0x20 || (0x09...0x0d).contains(value[i]) { i += 1 }
        var negative = false
        if i < value.count, i < ShortBytes.capacity, value[i] == UInt8(ascii: "-") || value[i] == UInt8(ascii: "+") {
            negative = value[i] == UInt8(ascii: "-")
            i += 1
        }
        var number = 0
        while i < value.count, i < ShortBytes.capacity, value[i] >= 0x30, value[i] <= 0x39, number < Int(Int32.max) {
            number = number * 10 + Int(value[i] - 0x30)
            i += 1
        }
        return negative ? -number : number
    }

    private enum Words {
        static let limit = ShortBytes("limit")
        static let get = ShortBytes("get")
        static let by = ShortBytes("by")
        static let store = ShortBytes("store")
        static let storedist = ShortBytes("storedist")
        static let keys = ShortBytes("keys")
        static let auth = ShortBytes("auth")
        static let auth2 = ShortBytes("auth2")
        static let block = ShortBytes("block")
        static let count = ShortBytes("count")
        static let group = ShortBytes("group")
        static let streams = ShortBytes("streams")
        static let noack = ShortBytes("noack")
    }
}
