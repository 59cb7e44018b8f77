import RESP

/// The command table: generated from Redis's own `COMMAND` output (`CommandTable+Generated.swift`),
/// looked up by the packed lower-case name the request parser captured.
///
/// Rich metadata (`CommandInfo`, with Strings and arrays) is for configuration, logs and tests.
/// The per-command path touches only `entries`: trivially copyable values with each command's
/// classification computed once when the table is built, so a lookup allocates nothing and takes
/// no reference counts.
public final class CommandTable: Sendable {
    /// One command or subcommand, as the hot path needs it.
    struct Entry: Sendable {
        var key: ShortBytes
        var rule: Rule
        var verb: Verb
        /// Where this command's subcommands sit in `entries` (count 0: none).
        var subcommandStart: Int32
        var subcommandCount: Int32
        /// Index into `infos`.
        var info: Int32
        /// Where its keys are (Redis Cluster routing).
        var keys: KeyRule
        /// Configures or inspects the server itself (see `inspects(_:)`).
        var inspects = false
    }

    /// How a command is classified: fixed, or decided by its arguments.
    enum Rule: Sendable, Equatable {
        case fixed(CommandClass)
        /// XREAD / XREADGROUP: blocking with a BLOCK option, else read / write.
        case streamRead(withoutBlock: CommandClass, isGroup: Bool)
    }

    /// Top-level commands first (addressed by `slots`), then each command's subcommands.
    let entries: [Entry]
    let topLevelCount: Int
    /// Full metadata, indexed by `Entry.info`.
    public let infos: [CommandInfo]
    /// Open addressing: slot → entry index + 1 (0 = empty). Power-of-two size.
    private let slots: [Int32]
    private let mask: Int

    public init(commands: [CommandInfo]) {
        var infos: [CommandInfo] = []
        var entries: [Entry] = []
        for command in commands {
            infos.append(command)
            entries.append(Entry(key: command.key, rule: Self.rule(for: command), verb: Verb(command: command.name), subcommandStart: 0,
                                 subcommandCount: Int32(command.subcommands.count), info: Int32(infos.count - 1),
                                 keys: command.keyRule, inspects: Self.inspects(command)))
        }
        topLevelCount = entries.count
        for index in 0..<commands.count where !commands[index].subcommands.isEmpty {
            entries[index].subcommandStart = Int32(entries.count)
            for sub in commands[index].subcommands {
                infos.append(sub)
                entries.append(Entry(key: sub.key, rule: Self.rule(for: sub), verb: Verb(command: sub.name), subcommandStart: 0,
                                     subcommandCount: 0, info: Int32(infos.count - 1), keys: sub.keyRule, inspects: Self.inspects(sub)))
            }
        }
        var size = 16
        while size < topLevelCount * 3 { size <<= 1 }
        var slots = [Int32](repeating: 0, count: size)
        for index in 0..<topLevelCount {
            var slot = Int(truncatingIfNeeded: entries[index].key.hashValue64) & (size - 1)
            while slots[slot] != 0 {
                precondition(entries[Int(slots[slot]) - 1].key != entries[index].key, "duplicate command \(commands[index].name)")
                slot = (slot + 1) & (size - 1)
            }
            slots[slot] = Int32(index + 1)
        }
        self.entries = entries
        self.infos = infos
        self.slots = slots
        mask = size - 1
    }

    /// The table generated from redis-server (see `generatedFromRedisVersion`), plus the
    /// ambassador's own `AMBASSADOR` command.
    public static let redis = CommandTable(commands: generatedCommands + [ambassadorCommand])

    /// `AMBASSADOR INFO|CONFIG|RELOAD`: answered by the ambassador itself, never forwarded.
    static let ambassadorCommand = CommandInfo(
        name: "ambassador", arity: -2, flags: [.admin, .noScript, .loading, .stale], firstKey: 0,
        lastKey: 0, keyStep: 0, group: "ambassador", aclCategories: ["admin", "slow"])

    /// A new table with `extra` commands added or replacing same-named ones (module commands
    /// learned from the master's `COMMAND` at start-up).
    public func adding(_ extra: [CommandInfo]) -> CommandTable {
        let names = Set(extra.map(\.name))
        return CommandTable(commands: Array(infos[0..<topLevelCount]).filter { !names.contains($0.name) } + extra)
    }

    /// Whether a command configures or inspects the server itself (`Command.inspectsServer`):
    /// Redis's admin commands (CONFIG SET and RESETSTAT, SLOWLOG, LATENCY, DEBUG, ACL …), except
    /// CONFIG GET, which apps run to learn a setting.
    static func inspects(_ info: CommandInfo) -> Bool {
        info.flags.contains(.admin) && info.name != "config|get"
    }

    /// Where the keys of `command` (classified by this table) are; `.none` for an unknown one.
    @inline(__always)
    public func keys(of command: Command) -> KeyRule {
        command.entry >= 0 ? entries[Int(command.entry)].keys : .none
    }

    /// Where the keys of the command named `name` (subcommand `firstArgument`) are; `.none`
    /// for an unknown command. One lookup, no reference counts.
    @inline(__always)
    public func keyRule(name: ShortBytes, firstArgument: ShortBytes, argumentCount: Int) -> KeyRule {
        guard var index = find(name) else { return .none }
        if argumentCount > 1, let sub = findSubcommand(firstArgument, of: index) { index = sub }
        return entries[index].keys
    }

    /// The entry index of the command called `name` (lower-cased by the parser), or nil.
    @inline(__always)
    func find(_ name: ShortBytes) -> Int? {
        guard !name.isTruncated, !name.isEmpty else { return nil }
        var slot = Int(truncatingIfNeeded: name.hashValue64) & mask
        while true {
            let entry = Int(slots[slot])
            if entry == 0 { return nil }
            if entries[entry - 1].key == name { return entry - 1 }
            slot = (slot + 1) & mask
        }
    }

    /// The entry index of subcommand `sub` of entry `parent`, or nil.
    @inline(__always)
    func findSubcommand(_ sub: ShortBytes, of parent: Int) -> Int? {
        let start = Int(entries[parent].subcommandStart)
        let count = Int(entries[parent].subcommandCount)
        guard count > 0, !sub.isTruncated else { return nil }
        for index in start..<start + count where entries[index].key == sub { return index }
        return nil
    }

    /// Metadata of a command given as text (`"get"`, `"config|get"`, any case), or nil.
    public func info(_ name: String) -> CommandInfo? {
        let parts = name.split(separator: "|", maxSplits: 1)
        guard let first = parts.first, var index = find(ShortBytes(first)) else { return nil }
        if parts.count == 2 {
            guard let sub = findSubcommand(ShortBytes(parts[1]), of: index) else { return nil }
            index = sub
        }
        return infos[Int(entries[index].info)]
    }

    /// Metadata of the command (and subcommand, when it has them) that `name` and `firstArgument`
    /// name; nil for an unknown command.
    public func info(name: ShortBytes, firstArgument: ShortBytes) -> CommandInfo? {
        guard var index = find(name) else { return nil }
        if let sub = findSubcommand(firstArgument, of: index) { index = sub }
        return infos[Int(entries[index].info)]
    }
}
