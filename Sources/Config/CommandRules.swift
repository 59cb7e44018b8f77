/// `commands: {deny: [...], allow: [...]}`: which commands an app may run. Entries are command
/// names (`flushall`, `config` for all its subcommands, `config|set` for one) and Redis ACL
/// categories (`@dangerous`, `@admin`, `@keyspace` … as the command table lists them, `@all`).
/// `deny` refuses what it names; `allow` names exceptions to `deny` (an allow-list is
/// `deny: ['@all']` plus `allow`).
public struct CommandRules: Sendable, Equatable {
    public var deny: [String]
    public var allow: [String]

    public init(deny: [String] = [], allow: [String] = []) {
        self.deny = deny.map { $0.lowercased() }
        self.allow = allow.map { $0.lowercased() }
    }

    /// Redis's ACL categories (`ACL CAT`).
    public static let categories: Set<String> = [
        "all", "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
        "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
        "connection", "transaction", "scripting",
    ]

    /// Whether the command `fullName` (`get`, `config|set`; lower case) in `categories` is refused.
    public func refuses(fullName: String, categories: [String]) -> Bool {
        deny.contains { Self.matches($0, fullName, categories) } && !allow.contains { Self.matches($0, fullName, categories) }
    }

    static func matches(_ entry: String, _ fullName: String, _ categories: [String]) -> Bool {
        if entry.hasPrefix("@") {
            let category = entry.dropFirst()
            return category == "all" || categories.contains { $0 == category }
        }
        if entry == fullName { return true }
        // `config` names every subcommand of CONFIG.
        guard let bar = fullName.firstIndex(of: "|") else { return false }
        return fullName[..<bar] == entry
    }
}
