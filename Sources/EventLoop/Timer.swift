internal import CLibevent

/// A one-shot or repeating timer on a loop. The owner keeps it alive; deinit cancels it.
public final class Timer {
    private var event: OpaquePointer?
    private let repeating: Bool
    private let action: () -> Void
    private unowned let loop: EventLoop

    public init(loop: EventLoop, repeating: Bool = false, action: @escaping () -> Void) {
        self.repeating = repeating
        self.action = action
        self.loop = loop
        event = event_new(loop.base, -1, repeating ? Int16(EV_PERSIST) : 0, { _, _, ctx in
            let timer = Unmanaged<Timer>.fromOpaque(ctx!).takeUnretainedValue()
            timer.loop.callback { timer.action() }
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if let event { event_free(event) } }

    /// Fires after `seconds` (and then every `seconds` when repeating). Re-arming resets it.
    public func schedule(after seconds: Double) {
        var tv = timeval(seconds: seconds)
        event_add(event, &tv)
    }

    public func cancel() { event_del(event) }

    public var isScheduled: Bool { event_pending(event, Int16(EV_TIMEOUT), nil) != 0 }
}

/// Runs `action` on the loop whenever the process receives `signal` (SIGHUP, SIGTERM, …).
/// Only one loop of a process should watch a given signal.
public final class SignalHandler {
    private var event: OpaquePointer?
    private let action: () -> Void
    private unowned let loop: EventLoop

    public init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) {
        self.action = action
        self.loop = loop
        event = ra_evsignal_new(loop.base, signal, { _, _, ctx in
            let handler = Unmanaged<SignalHandler>.fromOpaque(ctx!).takeUnretainedValue()
            handler.loop.callback { handler.action() }
        }, Unmanaged.passUnretained(self).toOpaque())
        event_add(event, nil)
    }

    deinit { if let event { event_free(event) } }
}

/// `Timer` for modules that also import Foundation (whose `Timer` would be ambiguous; the module
/// and the class are both named EventLoop, so `EventLoop.Timer` cannot qualify it).
public typealias LoopTimer = Timer
