import RESP
import Routing
import Testing
import TestSupport

/// The committed table must say what the installed redis-server says: a newer Redis that changes a
/// command's read/write flags fails here until the table is regenerated.
@Suite struct GeneratedTableTests {
    @Test func tableMatchesTheInstalledRedisServer() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let client = try server.client()
        guard case .array(let commands?) = try client.command(["COMMAND"]) else {
            Issue.record("COMMAND did not return an array")
            return
        }
        #expect(commands.count > 200)
        let info = try client.command(["INFO", "server"]).text ?? ""
        let version = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("redis_version:") }
            .map { String($0.dropFirst("redis_version:".count)) }
        let sameVersion = version == CommandTable.generatedFromRedisVersion
        let table = CommandTable.redis
        var checked = 0
        func check(_ entry: RESPValue) {
            guard case .array(let fields?) = entry, fields.count >= 10,
                  let name = fields[0].text, case .integer(let arity) = fields[1],
                  case .array(let flagValues?) = fields[2],
                  case .integer(let first) = fields[3], case .integer(let last) = fields[4],
                  case .integer(let step) = fields[5] else {
                Issue.record("unexpected COMMAND entry \(entry)")
                return
            }
            let flags = Set(flagValues.compactMap(\.text))
            guard let info = table.info(name) else {
                // A command newer than the table: an error only when the versions match.
                #expect(!sameVersion, "\(name) missing from the generated table")
                return
            }
            checked += 1
            #expect(info.flags.contains(.readonly) == flags.contains("readonly"), "\(name) readonly")
            #expect(info.flags.contains(.write) == flags.contains("write"), "\(name) write")
            #expect(info.flags.contains(.blocking) == flags.contains("blocking"), "\(name) blocking")
            if sameVersion {
                #expect(info.arity == Int(arity), "\(name) arity")
                #expect(info.firstKey == Int(first) && info.lastKey == Int(last) && info.keyStep == Int(step),
                        "\(name) key positions")
            }
            if case .array(let subcommands?) = fields[9] { subcommands.forEach(check) }
        }
        commands.forEach(check)
        #expect(checked > 300, "commands and subcommands compared: \(checked)")
    }
}
