import EventLoop
import RESP
import Routing

/// MONITOR shows what Redis runs; what the ambassador answers itself (SELECT, HELLO, AUTH,
/// CLIENT SETNAME, ID, LIST …) Redis never sees. So the ambassador writes those lines to the
/// sessions that monitor, as Redis would: `+<time> [<db> <client address>] "name" "arg" …`,
/// arguments quoted and escaped as Redis does, AUTH's arguments and HELLO's AUTH pair shown as
/// "(redacted)", and nothing for commands Redis refuses before running them (a wrong number of
/// arguments) or never shows (admin ones). (PING and ECHO go to Redis while anyone
/// monitors.) With several workers, a worker's monitors see its own sessions' lines.
extension ClientSession {
    /// `arguments` (the command name first) ran here: each monitoring session gets its line.
    func showOnMonitors(_ arguments: [[UInt8]]) {
        guard Self.monitors.load(ordering: .relaxed) > 0, let first = arguments.first else { return }
        let name = String(decoding: first, as: UTF8.self).lowercased()
        var info = proxy.table.info(name)
        if let parent = info, !parent.subcommands.isEmpty, arguments.count > 1 {
            info = proxy.table.info("\(name)|\(String(decoding: arguments[1], as: UTF8.self).lowercased())") ?? parent
        }
        guard let info, info.acceptsArgumentCount(arguments.count),
              !info.flags.contains(.admin), !info.flags.contains(.skipMonitor) else { return }
        let monitors = proxy.monitoringSessions
        guard !monitors.isEmpty else { return }
        let line = Self.monitorLine(arguments, redacting: Self.redacted(name, arguments), db: db,
                                    client: connection.peerAddress, microseconds: proxy.loop.nowMicroseconds)
        for monitor in monitors { monitor.connection.write(line) }
    }

    /// Which arguments Redis shows as "(redacted)": AUTH's, and the user and password after
    /// HELLO's AUTH.
    static func redacted(_ name: String, _ arguments: [[UInt8]]) -> Set<Int> {
        switch name {
        case "auth":
            return Set(1..<arguments.count)
        case "hello":
            var index = 2
            while index < arguments.count {
                if String(decoding: arguments[index], as: UTF8.self).lowercased() == "auth" && index + 2 < arguments.count {
                    return [index + 1, index + 2]
                }
                index += 1
            }
            return []
        default:
            return []
        }
    }

    /// A MONITOR line as Redis's `replicationFeedMonitors` writes it.
    static func monitorLine(_ arguments: [[UInt8]], redacting redacted: Set<Int>, db: Int, client: String, microseconds: Int) -> [UInt8] {
        var line = Array("+\(microseconds / 1_000_000).".utf8)
        let fraction = String(microseconds % 1_000_000)
        line += Array((String(repeating: "0", count: 6 - fraction.utf8.count) + fraction).utf8)
        line += Array(" [\(db) \(client)] ".utf8)
        line += monitorArguments(arguments, redacting: redacted)
        line += Array("\r\n".utf8)
        return line
    }

    /// A MONITOR line's arguments: `"name" "arg" …`, quoted and escaped as Redis does.
    static func monitorArguments(_ arguments: [[UInt8]], redacting redacted: Set<Int>) -> [UInt8] {
        var line: [UInt8] = []
        let hex = Array("0123456789abcdef".utf8)
        for (index, argument) in arguments.enumerated() {
            if index > 0 { line.append(UInt8(ascii: " ")) }
            line.append(UInt8(ascii: "\""))
            for byte in redacted.contains(index) ? Array("(redacted)".utf8) : argument {
                switch byte {
                case UInt8(ascii: "\\"), UInt8(ascii: "\""): line += [UInt8(ascii: "\\"), byte]
                case UInt8(ascii: "\n"): line += Array("\\n".utf8)
                case UInt8(ascii: "\r"): line += Array("\\r".utf8)
                case UInt8(ascii: "\t"): line += Array("\\t".utf8)
                case 7: line += Array("\\a".utf8)
                case 8: line += Array("\\b".utf8)
                case 32...126: line.append(byte)
                default: line += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
                }
            }
            line.append(UInt8(ascii: "\""))
        }
        return line
    }
}
