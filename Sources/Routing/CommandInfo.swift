import RESP

/// Command flags as Redis reports them in `COMMAND INFO` (Redis's `CMD_*` flags).
public struct CommandFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let write = CommandFlags(rawValue: 1 << 0)
    public static let readonly = CommandFlags(rawValue: 1 << 1)
    public static let denyOOM = CommandFlags(rawValue: 1 << 2)
    public static let module = CommandFlags(rawValue: 1 << 3)
    public static let admin = CommandFlags(rawValue: 1 << 4)
    public static let pubsub = CommandFlags(rawValue: 1 << 5)
    public static let noScript = CommandFlags(rawValue: 1 << 6)
    public static let blocking = CommandFlags(rawValue: 1 << 7)
    public static let loading = CommandFlags(rawValue: 1 << 8)
    public static let stale = CommandFlags(rawValue: 1 << 9)
    public static let skipMonitor = CommandFlags(rawValue: 1 << 10)
    public static let skipSlowlog = CommandFlags(rawValue: 1 << 11)
    public static let asking = CommandFlags(rawValue: 1 << 12)
    public static let fast = CommandFlags(rawValue: 1 << 13)
    public static let noAuth = CommandFlags(rawValue: 1 << 14)
    public static let mayReplicate = CommandFlags(rawValue: 1 << 15)
    public static let sentinel = CommandFlags(rawValue: 1 << 16)
    public static let onlySentinel = CommandFlags(rawValue: 1 << 17)
    public static let noMandatoryKeys = CommandFlags(rawValue: 1 << 18)
    public static let noPropagate = CommandFlags(rawValue: 1 << 19)
    public static let noMulti = CommandFlags(rawValue: 1 << 20)
    public static let allowBusy = CommandFlags(rawValue: 1 << 21)
    public static let movableKeys = CommandFlags(rawValue: 1 << 22)
    public static let noAsyncLoading = CommandFlags(rawValue: 1 << 23)
}

/// One command or subcommand of the table: what `COMMAND INFO` says about it.
public struct CommandInfo: Sendable {
    /// Lower case; subcommands as `parent|sub` (`config|get`).
    public let name: String
    /// Redis's arity: N means exactly N arguments (name included), -N at least N.
    public let arity: Int
    public let flags: CommandFlags
    /// Legacy key positions (1-based argument index of the first and last key, and the step);
    /// 0 when the command has no fixed key positions (see `movableKeys`). A negative `lastKey`
    /// counts from the end (-1 is the last argument).
    public let firstKey: Int
    public let lastKey: Int
    public let keyStep: Int
    /// The documentation group (`string`, `list`, `server` …).
    public let group: String
    public let aclCategories: [String]
    public let subcommands: [CommandInfo]
    /// The packed lower-case name used for lookups (the part after `|` for a subcommand).
    public let key: ShortBytes
    /// How `visitKeys` finds the keys of a `movableKeys` command (nil: the table's positions).
    let movableKeys: MovableKeys?

    public init(name: String, arity: Int, flags: CommandFlags, firstKey: Int, lastKey: Int,
                keyStep: Int, group: String, aclCategories: [String], subcommands: [CommandInfo] = []) {
        self.name = name
        self.arity = arity
        self.flags = flags
        self.firstKey = firstKey
        self.lastKey = lastKey
        self.keyStep = keyStep
        self.group = group
        self.aclCategories = aclCategories
        self.subcommands = subcommands
        let short = name.split(separator: "|").last.map(String.init) ?? name
        self.key = ShortBytes(short)
        movableKeys = flags.contains(.movableKeys) ? MovableKeys(command: name) : nil
    }

    /// Whether `argumentCount` arguments (name included) satisfy the arity.
    public func acceptsArgumentCount(_ argumentCount: Int) -> Bool {
        arity >= 0 ? argumentCount == arity : argumentCount >= -arity
    }

    /// The 0-based argument indexes holding keys for a command of `argumentCount` arguments,
    /// from the legacy key positions. Empty for keyless commands; for `movableKeys` commands the
    /// positions depend on the arguments and this gives only the fixed part.
    public func keyIndexes(argumentCount: Int) -> StrideThrough<Int> {
        guard firstKey > 0, keyStep > 0 else { return stride(from: 0, through: -1, by: 1) }
        let last = lastKey < 0 ? argumentCount + lastKey : min(lastKey, argumentCount - 1)
        return stride(from: firstKey, through: last, by: keyStep)
    }
}
