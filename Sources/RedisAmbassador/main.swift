import ArgumentParser
import Routing

/// The `redis-ambassador` command line. The proxy itself (`--config`, `--listen`/`--master`)
/// arrives with the core issue; today the binary reports what it was built with.
struct RedisAmbassadorCommand: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "redis-ambassador",
        abstract: "A Redis-aware ambassador proxy: writes to the master, reads from replicas.",
        version: "redis-ambassador \(version) (command table from redis-server \(CommandTable.generatedFromRedisVersion))"
    )

    @Flag(name: .long, help: "Print the commands of the built-in command table with their class, then exit.")
    var listCommands = false

    func run() throws {
        guard listCommands else {
            throw ValidationError("nothing to run yet: use --version or --list-commands")
        }
        let table = CommandTable.redis
        for info in table.infos {
            let words = info.name.split(separator: "|").map(String.init)
            print("\(info.name)\t\(table.classify(words))")
        }
    }
}

RedisAmbassadorCommand.main()
