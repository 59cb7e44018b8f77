import Routing
import Testing

/// `CommandRouter`: what an unpinned session does with each kind of command, in every session
/// state, without a socket; and the verbs the table finds with the class.
@Suite struct CommandRouterTests {
    struct State: DispatchContext, CustomStringConvertible {
        var repliesOwed: Bool
        var passesLoginsThrough: Bool
        var masterConfirmed: Bool
        var masterWritable: Bool
        var hasWriteConnection: Bool
        var pinsTools: Bool

        /// Every combination (the master cannot take a pinning command it is not confirmed for).
        static var all: [State] {
            var states: [State] = []
            for bits in 0..<64 {
                let state = State(repliesOwed: bits & 1 != 0, passesLoginsThrough: bits & 2 != 0,
                                  masterConfirmed: bits & 4 != 0, masterWritable: bits & 8 != 0,
                                  hasWriteConnection: bits & 16 != 0, pinsTools: bits & 32 != 0)
                if state.masterWritable && !state.masterConfirmed { continue }
                states.append(state)
            }
            return states
        }

        var description: String {
            "owed \(repliesOwed) logins \(passesLoginsThrough) confirmed \(masterConfirmed) writable \(masterWritable) writeConn \(hasWriteConnection) tools \(pinsTools)"
        }
    }

    static let table = CommandTable.redis

    /// Commands of every class and the verbs that change what happens.
    static let commands: [[String]] = [
        ["GET", "k"], ["SCAN", "0"], ["HSCAN", "h", "7"], ["EVALSHA_RO", "x", "0"], ["SET", "k", "v"],
        ["EVAL", "return 1", "0"], ["INFO"], ["SCRIPT", "KILL"], ["SHUTDOWN", "NOSAVE"], ["FUNCTION", "KILL"],
        ["SCRIPT", "LOAD", "return 1"], ["NOSUCHCOMMAND"], ["WAITAOF", "1", "0", "0"], ["WAIT", "1", "0"],
        ["BLPOP", "l", "0"], ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], ["XREAD", "STREAMS", "s", "0"],
        ["MULTI"], ["WATCH", "k"], ["SUBSCRIBE", "c"], ["MONITOR"], ["CLIENT", "TRACKING", "on"],
        ["SELECT", "1"], ["HELLO", "3"], ["AUTH", "p"], ["PING"], ["CLIENT", "ID"], ["QUIT"], ["RESET"],
        ["CONFIG", "SET", "maxmemory", "0"], ["CONFIG", "GET", "maxmemory"], ["SLOWLOG", "GET"], ["DEBUG", "SLEEP", "0"],
        ["CLIENT", "PAUSE", "10"], ["LATENCY", "RESET"],
    ]

    @Test func everyCommandInEveryStateGoesWhereItMay() {
        var cases = 0
        for arguments in Self.commands {
            var command = Self.table.command(arguments)
            // The session's own fallback for a table that predates WAITAOF (Redis before 7.2).
            if command.kind == .unknown && command.verb == .wait { command.kind = .stateful(.blocking) }
            for state in State.all {
                cases += 1
                let route = CommandRouter.route(command, state)
                let what = "\(arguments) with \(state): \(route)"
                // A tool's session is pinned from its first admin command of the master class on
                // (not for SHUTDOWN, which must reach a busy master at once), as any pin is taken.
                let pinsTool = command.kind == .master && command.inspectsServer && command.verb != .urgent && state.pinsTools
                switch command.kind {
                case _ where pinsTool:
                    #expect(route == (state.repliesOwed ? .barrier : !state.masterWritable ? .hold : .pin(.clientState)), "\(what)")
                case .read:
                    #expect(route == .read, "\(what)")
                case .write, .unknown:
                    #expect(route == (state.masterConfirmed ? .master(write: true, urgent: false) : .hold), "\(what)")
                case .master:
                    #expect(route == (state.masterConfirmed ? .master(write: false, urgent: command.verb == .urgent) : .hold), "\(what)")
                case .local(let local):
                    let barrier = local == .auth && state.repliesOwed && state.passesLoginsThrough
                    #expect(route == (barrier ? .barrier : .local(local)), "\(what)")
                case .stateful(.dbSelect):
                    #expect(route == (state.repliesOwed ? .barrier : .select), "\(what)")
                case .stateful(.protocolVersion):
                    #expect(route == (state.repliesOwed && state.passesLoginsThrough ? .barrier : .hello), "\(what)")
                case .stateful(let kind):
                    // Never pinned while earlier replies are owed: Redis would see them out of order.
                    if state.repliesOwed {
                        #expect(route == .barrier, "\(what)")
                    } else if !state.masterWritable {
                        #expect(route == .hold, "\(what)")
                    } else if command.verb == .wait && state.hasWriteConnection {
                        #expect(route == .waitOnWriteConnection, "\(what)")
                    } else {
                        #expect(route == .pin(kind), "\(what)")
                    }
                }
            }
        }
        #expect(cases == Self.commands.count * State.all.count)
        #expect(State.all.count == 48)
        // The admin commands listed are pinned where tools are; CONFIG GET (apps run it) is not.
        let tools = Self.commands.filter {
            let command = Self.table.command($0)
            return command.inspectsServer && command.kind == .master
        }.map { $0.prefix(2).joined(separator: " ") }
        #expect(tools == ["SHUTDOWN NOSAVE", "CONFIG SET", "SLOWLOG GET", "DEBUG SLEEP", "CLIENT PAUSE", "LATENCY RESET"])
    }

    @Test func urgentCommandsAreTheOnesABusyServerTakes() {
        for arguments in [["SCRIPT", "KILL"], ["FUNCTION", "KILL"], ["SHUTDOWN"], ["shutdown", "nosave"]] {
            #expect(Self.table.command(arguments) == Command(.master, .urgent), "\(arguments)")
        }
        for arguments in [["SCRIPT", "LOAD", "x"], ["FUNCTION", "LIST"], ["INFO"], ["DEBUG", "SLEEP", "1"]] {
            #expect(Self.table.command(arguments).verb == .none, "\(arguments)")
        }
    }

    @Test func verbsTheSessionNeeds() {
        let expected: [([String], Verb)] = [
            (["MULTI"], .multi), (["EXEC"], .exec), (["DISCARD"], .discard), (["WATCH", "k"], .watch),
            (["UNWATCH"], .unwatch), (["SELECT", "1"], .select), (["HELLO"], .hello), (["WAIT", "1", "0"], .wait),
            (["SCAN", "0"], .scan(cursorArgument: 1)), (["SSCAN", "s", "0"], .scan(cursorArgument: 2)),
            (["HSCAN", "h", "0"], .scan(cursorArgument: 2)), (["ZSCAN", "z", "0"], .scan(cursorArgument: 2)),
            (["EVALSHA_RO", "x", "0"], .evalshaRO),
            (["SUBSCRIBE", "c"], .subscription(.channels, subscribe: true)),
            (["UNSUBSCRIBE"], .subscription(.channels, subscribe: false)),
            (["PSUBSCRIBE", "p*"], .subscription(.patterns, subscribe: true)),
            (["PUNSUBSCRIBE"], .subscription(.patterns, subscribe: false)),
            (["SSUBSCRIBE", "s"], .subscription(.shardChannels, subscribe: true)),
            (["SUNSUBSCRIBE"], .subscription(.shardChannels, subscribe: false)),
            (["CLIENT", "TRACKING", "on"], .clientTracking), (["CLIENT", "REPLY", "off"], .clientReply),
            (["CLIENT", "LIST"], .none), (["GET", "k"], .none), (["waitaof", "1", "0", "0"], .wait),
        ]
        for (arguments, verb) in expected {
            #expect(Self.table.command(arguments).verb == verb, "\(arguments)")
        }
        // The class is what classify says, verb or not.
        for arguments in Self.commands {
            #expect(Self.table.command(arguments).kind == Self.table.classify(arguments), "\(arguments)")
        }
    }
}
