/// What a session does with a command while it is not pinned — the decision of
/// `ClientSession.dispatch`, as a pure function of the command (class and verb) and the
/// session's state. A read then goes through `ReadRouter` (policy, balance, read-your-writes).
///
///     AUTH / HELLO while replies are owed, logins passed through to Redis ──▶ barrier
///     local (PING, CLIENT ID …) ─────────────────────────────────────────────▶ local
///     SELECT: replies owed ─▶ barrier; else ───────────────────────────────────▶ select
///     HELLO ─────────────────────────────────────────────────────────────────▶ hello
///     other stateful: replies owed ─▶ barrier; master cannot take it ─▶ hold;
///                     WAIT after a write of the session's ─▶ waitOnWriteConnection; else ─▶ pin
///     read ──────────────────────────────────────────────────────────────────▶ read
///     write / unknown: no confirmed master ─▶ hold; else ──────────────────────▶ master(write)
///     master (INFO, SCRIPT KILL …): no confirmed master ─▶ hold; else ──────────▶ master(urgent?)
///     master, an admin command (CONFIG SET, SLOWLOG, DEBUG …; not SHUTDOWN) where tools are pinned:
///                     replies owed ─▶ barrier; master cannot take it ─▶ hold; else ─▶ pin
///
/// A *barrier* waits, reading paused, until every earlier reply is in: the command changes the
/// connection it runs on or who the session is, and Redis must see the session's commands in
/// order. *hold* waits for a confirmed master, up to failover_hold.
public enum CommandRouter {
    public enum Route: Hashable, Sendable {
        case barrier
        case local(LocalKind)
        case select
        case hello
        case hold
        case pin(StatefulKind)
        case waitOnWriteConnection
        case read
        case master(write: Bool, urgent: Bool)
    }

    @inlinable @inline(__always)
    public static func route(_ command: Command, _ session: some DispatchContext) -> Route {
        if session.repliesOwed, session.passesLoginsThrough, logsIn(command.kind) { return .barrier }
        switch command.kind {
        case .local(let local):
            return .local(local)
        case .stateful(.dbSelect):
            return session.repliesOwed ? .barrier : .select
        case .stateful(.protocolVersion):
            return .hello
        case .stateful(let state):
            if session.repliesOwed { return .barrier }
            if !session.masterWritable { return .hold }
            if state == .blocking, command.verb == .wait, session.hasWriteConnection { return .waitOnWriteConnection }
            return .pin(state)
        case .read:
            return .read
        case .write, .unknown:
            return session.masterConfirmed ? .master(write: true, urgent: false) : .hold
        case .master:
            if command.inspectsServer && command.verb != .urgent && session.pinsTools { return pinTool(session) }
            return session.masterConfirmed ? .master(write: false, urgent: command.verb == .urgent) : .hold
        }
    }

    /// A tool's session (it configures or inspects the server) runs on a dedicated master
    /// connection from its first admin command on, as a direct client on its own connection:
    /// the slow log and CLIENT LIST name it, its commands run in its order. Taken like any pin.
    @inlinable
    static func pinTool(_ session: some DispatchContext) -> Route {
        if session.repliesOwed { return .barrier }
        if !session.masterWritable { return .hold }
        return .pin(.clientState)
    }

    /// AUTH and HELLO (which may carry AUTH). A switch, not `==`: this runs for every command.
    @inlinable @inline(__always)
    static func logsIn(_ kind: CommandClass) -> Bool {
        switch kind {
        case .local(.auth), .stateful(.protocolVersion): return true
        default: return false
        }
    }
}

/// The session's state as `CommandRouter` reads it (each property computed on access, so what a
/// command does not need is never looked up).
public protocol DispatchContext {
    /// Replies to earlier commands are still owed to the client.
    var repliesOwed: Bool { get }
    /// The ambassador has no backend credentials: the app's AUTH goes to Redis, and the
    /// session's next commands run as the user it names.
    var passesLoginsThrough: Bool { get }
    /// A node is confirmed master.
    var masterConfirmed: Bool { get }
    /// The master can take a command that pins the session (confirmed, reachable).
    var masterWritable: Bool { get }
    /// The shared master connection the session's last write went out on is still there (a
    /// WAIT counts that connection's writes).
    var hasWriteConnection: Bool { get }
    /// An admin command pins the session (`pinTool`): one master, not a cluster's shards.
    var pinsTools: Bool { get }
}
