import RESP
import Routing
import Testing

@Suite struct ClassifyTests {
    let table = CommandTable.redis

    /// Each command (with the arguments that matter) and where it must run. More than 60, chosen
    /// for the cases proxies get wrong: `_RO` variants, flags that contradict intuition (SORT and
    /// GEORADIUS are writes), options that change the class (XREAD BLOCK), subcommands.
    static let pinned: [([String], CommandClass)] = [
        // Plain reads and writes.
        (["GET", "k"], .read), (["SET", "k", "v"], .write), (["MGET", "a", "b"], .read),
        (["MSET", "a", "1"], .write), (["INCR", "k"], .write), (["STRLEN", "k"], .read),
        (["GETRANGE", "k", "0", "1"], .read), (["GETDEL", "k"], .write), (["GETEX", "k"], .write),
        (["EXISTS", "k"], .read), (["TTL", "k"], .read), (["TYPE", "k"], .read),
        (["DEL", "k"], .write), (["UNLINK", "k"], .write), (["EXPIRE", "k", "1"], .write),
        (["HGETALL", "h"], .read), (["HSET", "h", "f", "v"], .write), (["LRANGE", "l", "0", "-1"], .read),
        (["LPUSH", "l", "x"], .write), (["SMEMBERS", "s"], .read), (["SADD", "s", "x"], .write),
        (["ZRANGE", "z", "0", "-1"], .read), (["ZADD", "z", "1", "m"], .write), (["ZSCORE", "z", "m"], .read),
        (["PFCOUNT", "p"], .master), (["PFADD", "p", "x"], .write),
        (["XRANGE", "s", "-", "+"], .read), (["XADD", "s", "*", "f", "v"], .write), (["XLEN", "s"], .read),
        // Read-only variants next to their writing originals.
        (["SORT", "l"], .write), (["SORT_RO", "l"], .read),
        (["GEORADIUS", "g", "0", "0", "1", "km"], .write), (["GEORADIUS_RO", "g", "0", "0", "1", "km"], .read),
        (["GEORADIUSBYMEMBER", "g", "m", "1", "km"], .write), (["GEORADIUSBYMEMBER_RO", "g", "m", "1", "km"], .read),
        (["BITFIELD", "b", "GET", "u8", "0"], .write), (["BITFIELD_RO", "b", "GET", "u8", "0"], .read),
        (["EVAL", "return 1", "0"], .write), (["EVAL_RO", "return 1", "0"], .read),
        (["EVALSHA", "abc", "0"], .write), (["EVALSHA_RO", "abc", "0"], .read),
        (["FCALL", "f", "0"], .write), (["FCALL_RO", "f", "0"], .read),
        // Keyspace-wide reads and server commands.
        (["KEYS", "*"], .read), (["SCAN", "0"], .read), (["HSCAN", "h", "0"], .read),
        (["DBSIZE"], .read), (["RANDOMKEY"], .read), (["TIME"], .master), (["INFO"], .master),
        (["INFO", "replication"], .master), (["COMMAND"], .master), (["COMMAND", "COUNT"], .master),
        (["CONFIG", "GET", "save"], .master), (["CONFIG", "SET", "x", "y"], .master),
        (["FLUSHALL"], .write), (["FLUSHDB"], .write), (["SWAPDB", "0", "1"], .write),
        (["MOVE", "k", "1"], .write), (["COPY", "a", "b"], .write), (["PUBLISH", "c", "m"], .write),
        (["SCRIPT", "LOAD", "return 1"], .master), (["SCRIPT", "EXISTS", "abc"], .master),
        (["SCRIPT", "KILL"], .master), (["FUNCTION", "KILL"], .master), (["SHUTDOWN", "NOSAVE"], .master),
        (["FUNCTION", "LOAD", "x"], .write), (["SCRIPT", "FLUSH"], .master),
        (["OBJECT", "ENCODING", "k"], .master), (["OBJECT", "FREQ", "k"], .master), (["TOUCH", "k"], .master),
        (["MEMORY", "USAGE", "k"], .read), (["CLIENT", "LIST"], .local(.clientList)), (["CLIENT", "KILL", "ID", "1"], .local(.clientKill)),
        (["CLIENT", "INFO"], .local(.clientInfo)), (["CLIENT", "UNBLOCK", "1"], .local(.clientUnblock)),
        (["CLIENT", "PAUSE", "10"], .master),
        (["LASTSAVE"], .master), (["ROLE"], .master),
        // Stateful: transactions, blocking, pub/sub, monitor, connection state.
        (["MULTI"], .stateful(.transaction)), (["EXEC"], .stateful(.transaction)),
        (["DISCARD"], .stateful(.transaction)), (["WATCH", "k"], .stateful(.transaction)),
        (["UNWATCH"], .stateful(.transaction)),
        (["BLPOP", "l", "0"], .stateful(.blocking)), (["BRPOP", "l", "0"], .stateful(.blocking)),
        (["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"], .stateful(.blocking)),
        (["BLMPOP", "0", "1", "l", "LEFT"], .stateful(.blocking)),
        (["BRPOPLPUSH", "a", "b", "0"], .stateful(.blocking)),
        (["BZPOPMIN", "z", "0"], .stateful(.blocking)), (["BZPOPMAX", "z", "0"], .stateful(.blocking)),
        (["BZMPOP", "0", "1", "z", "MIN"], .stateful(.blocking)),
        (["WAIT", "1", "0"], .stateful(.blocking)),
        (["XREAD", "STREAMS", "s", "0"], .read),
        (["XREAD", "COUNT", "10", "STREAMS", "s", "0"], .read),
        (["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], .stateful(.blocking)),
        (["xread", "count", "5", "block", "100", "streams", "s", "$"], .stateful(.blocking)),
        (["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"], .write),
        (["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"], .stateful(.blocking)),
        (["SUBSCRIBE", "c"], .stateful(.pubsub)), (["PSUBSCRIBE", "c*"], .stateful(.pubsub)),
        (["SSUBSCRIBE", "c"], .stateful(.pubsub)), (["UNSUBSCRIBE"], .stateful(.pubsub)),
        (["PUNSUBSCRIBE"], .stateful(.pubsub)),
        (["MONITOR"], .stateful(.monitor)),
        (["CLIENT", "TRACKING", "ON"], .stateful(.clientState)),
        (["CLIENT", "REPLY", "OFF"], .stateful(.clientState)), (["CLIENT", "REPLY", "SKIP"], .stateful(.clientState)),
        (["CLIENT", "CACHING", "YES"], .stateful(.clientState)),
        (["SELECT", "1"], .stateful(.dbSelect)), (["HELLO", "3"], .stateful(.protocolVersion)),
        // Answered by the ambassador.
        (["PING"], .local(.ping)), (["ECHO", "x"], .local(.echo)), (["QUIT"], .local(.quit)),
        (["AUTH", "pw"], .local(.auth)), (["RESET"], .local(.reset)),
        (["CLIENT", "SETNAME", "app"], .local(.clientSetName)), (["CLIENT", "GETNAME"], .local(.clientGetName)),
        (["CLIENT", "ID"], .local(.clientID)),
        (["AMBASSADOR", "INFO"], .local(.ambassador)),
        // Unknown: to the master, never a replica.
        (["NOSUCHCOMMAND"], .unknown), (["JSON.GET", "k"], .unknown), (["FT.SEARCH", "i", "q"], .unknown),
    ]

    @Test func pinnedCommandsClassifyAsRedisMetadataSays() {
        #expect(Self.pinned.count >= 60)
        for (arguments, expected) in Self.pinned {
            #expect(table.classify(arguments) == expected, "\(arguments.joined(separator: " "))")
        }
    }

    @Test func clientSetInfoIsLocalWhereRedisHasIt() {
        // CLIENT SETINFO arrived in Redis 7.2. Where the table knows it, the ambassador answers it;
        // against an older table it goes to the master, which gives its own (error) answer.
        let expected: CommandClass = table.info("client|setinfo") == nil ? .master : .local(.clientSetInfo)
        #expect(table.classify(["CLIENT", "SETINFO", "lib-name", "x"]) == expected)
    }

    /// The commands after which a session reads from the master (see `ClientSession.readsFromMaster`):
    /// Redis's admin commands, not CONFIG GET, and no data command.
    @Test func serverInspectionIsTheAdminCommandsButConfigGet() {
        for arguments in [["CONFIG", "SET", "x", "y"], ["CONFIG", "RESETSTAT"], ["SLOWLOG", "GET"], ["SLOWLOG", "RESET"],
                          ["LATENCY", "LATEST"], ["DEBUG", "SLEEP", "0"], ["ACL", "SETUSER", "u"]] {
            #expect(table.command(arguments).inspectsServer, "\(arguments)")
        }
        for arguments in [["CONFIG", "GET", "maxmemory"], ["GET", "k"], ["SET", "k", "v"], ["INFO"], ["PUBLISH", "c", "m"],
                          ["EVAL", "return 1", "0"], ["NOSUCHCOMMAND"]] {
            #expect(!table.command(arguments).inspectsServer, "\(arguments)")
        }
    }

    @Test func classificationIgnoresCase() {
        #expect(table.classify(["get", "k"]) == .read)
        #expect(table.classify(["GeT", "k"]) == .read)
        #expect(table.classify(["config", "get", "x"]) == .master)
        #expect(table.classify(["Client", "SetName", "x"]) == .local(.clientSetName))
    }

    @Test func unknownCommandsRunOnTheMasterNeverAReplica() {
        for arguments in [["NOSUCH"], [String(repeating: "g", count: 40)], ["GETX", "k"], ["GE"]] {
            let kind = table.classify(arguments)
            #expect(kind == .unknown, "\(arguments)")
            #expect(kind.runsOnMaster)
        }
        #expect(!CommandClass.read.runsOnMaster)
        #expect(CommandClass.write.runsOnMaster)
    }

    @Test func blockOptionIsFoundOnlyWhereRedisReadsIt() {
        // A consumer group or consumer named "block" is not the BLOCK option.
        #expect(table.classify(["XREADGROUP", "GROUP", "block", "block", "STREAMS", "s", ">"]) == .write)
        // COUNT's value is skipped even when it spells "block".
        #expect(table.classify(["XREAD", "COUNT", "block", "STREAMS", "s", "0"]) == .read)
        // A stream named "block" after STREAMS is a key, not an option.
        #expect(table.classify(["XREAD", "STREAMS", "block", "0"]) == .read)
        // BLOCK with no value is a syntax error for Redis, not a blocking call.
        #expect(table.classify(["XREAD", "BLOCK"]) == .read)
    }

    @Test func unknownSubcommandFallsBackToTheContainer() {
        // Redis answers these with its own error; the ambassador just must not send them to a replica.
        #expect(table.classify(["CONFIG", "NOSUCH"]) == .master)
        #expect(table.classify(["CLIENT"]) == .master)
        #expect(table.classify(["OBJECT", "NOSUCH", "k"]) == .master)
    }

    @Test func metadataHasArityKeysAndSubcommands() throws {
        let get = try #require(table.info("get"))
        #expect(get.arity == 2)
        #expect(get.flags.contains([.readonly, .fast]))
        #expect(Array(get.keyIndexes(argumentCount: 2)) == [1])
        #expect(get.acceptsArgumentCount(2) && !get.acceptsArgumentCount(3))
        let mset = try #require(table.info("mset"))
        #expect(Array(mset.keyIndexes(argumentCount: 7)) == [1, 3, 5])
        let del = try #require(table.info("DEL"))
        #expect(Array(del.keyIndexes(argumentCount: 4)) == [1, 2, 3])
        #expect(del.acceptsArgumentCount(5) && !del.acceptsArgumentCount(1))
        let configGet = try #require(table.info("config|get"))
        #expect(configGet.name == "config|get")
        #expect(configGet.flags.contains(.admin))
        #expect(table.info("client|setname")?.group == "connection")
        #expect(table.info("object|encoding")?.flags.contains(.readonly) == true)
        #expect(table.info("xread")?.flags.contains([.readonly, .blocking, .movableKeys]) == true)
        #expect(table.info("nosuch") == nil)
        #expect(table.info("config|nosuch") == nil)
        #expect(CommandTable.generatedFromRedisVersion.hasPrefix("7."))
    }

    @Test func learnedModuleCommandsExtendTheTable() {
        let module = CommandInfo(name: "json.get", arity: -2, flags: [.readonly, .module], firstKey: 1,
                                 lastKey: 1, keyStep: 1, group: "module", aclCategories: ["read"])
        let extended = table.adding([module])
        #expect(extended.classify(["JSON.GET", "k"]) == .read)
        #expect(extended.classify(["GET", "k"]) == .read)
        #expect(table.classify(["JSON.GET", "k"]) == .unknown)
    }

    @Test func parsedFramesClassifyWithoutStrings() throws {
        // The hot path: classify straight from the parser's frame and captured arguments.
        var parser = RequestParser()
        let bytes = Array("*4\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n$0\r\n\r\n*2\r\n$3\r\nget\r\n$1\r\nk\r\n".utf8)
        var index = 0
        let first = try #require(try parser.parse(bytes.span, from: &index))
        #expect(table.classify(first, arguments: ArgumentList(["CLIENT", "REPLY", "OFF", ""])) == .stateful(.clientState))
        let second = try #require(try parser.parse(bytes.span, from: &index))
        #expect(table.classify(second, arguments: ArgumentList(["get", "k"])) == .read)
    }
    /// The commands the ambassador answers itself are refused by a busy Redis exactly when the
    /// table lacks `allow_busy` for them (QUIT, AUTH, RESET have it; PING, ECHO, CLIENT ID … not).
    @Test func localCommandsRefusedWhileBusyFollowTheTable() {
        var seen = 0
        for info in table.infos.flatMap({ [$0] + $0.subcommands }) {
            let arguments = info.name.split(separator: "|").map(String.init)
            guard case .local(let kind) = table.classify(arguments + ["x"]), kind != .ambassador else { continue }
            seen += 1
            #expect(kind.refusedWhileBusy == !info.flags.contains(.allowBusy), "\(info.name)")
        }
        #expect(seen >= 12)
    }
}
