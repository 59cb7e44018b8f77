internal import CBufferPool
internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif
import Synchronization

/// Work a callback hands to `EventLoop.runAfterCallback`.
public protocol DeferredWork: AnyObject {
    func runDeferred()
}

/// One libevent event base, driven by exactly one thread.
///
/// Everything created on a loop (connections, listeners, timers) must be used on that loop's thread
/// only; that is a runtime invariant, not one the type system proves (LIBEVENT-NOTES.md). Other
/// threads talk to a loop through its `handle`.
///
/// Output written during one loop iteration is flushed once at the end of that iteration
/// (`scheduleFlush`), so commands from many clients bound for one backend coalesce into one write.
public final class EventLoop {
    let base: OpaquePointer
    private let mailbox: Mailbox
    private var wakeEvent: OpaquePointer?
    private var flushEvent: OpaquePointer?
    private var flushScheduled = false
    private var dirty: [Connection] = []
    /// Whatever the loop's owner keeps alive for as long as the loop lives (a worker's proxy).
    public var context: AnyObject?
    /// Scratch vectors for reads and peeks, reused by every connection of this loop.
    let iovecs: UnsafeMutablePointer<iovec>
    /// Room `recv(MSG_TRUNC)` is given when skipping input (the kernel writes nothing there).
    let scratch: UnsafeMutableRawPointer
    static let scratchSize = 64 * 1024
    static let iovecCapacity = 16
    /// Running totals of bytes read and written on this loop, for metrics: app connections
    /// (accepted) and backends (connected out).
    public internal(set) var clientBytesIn = 0
    public internal(set) var clientBytesOut = 0
    public internal(set) var backendBytesIn = 0
    public internal(set) var backendBytesOut = 0

    /// libevent's allocations go through a per-thread block pool (see `ra_install_buffer_pool`),
    /// installed once, before the first libevent allocation of the process.
    private static let bufferPool: Void = ra_install_buffer_pool()

    /// Frees the blocks this thread's buffer pool keeps and returns glibc's free memory to the
    /// kernel (`malloc_trim`). For a loop gone quiet after a burst; call it on the loop's thread.
    public func releaseIdleMemory() {
        let kept = Self.freedMemorySettings.withLock { $0 }
        ra_release_idle_memory(kept.trimThreshold, kept.topPad)
    }

    /// The process's malloc heap: bytes in use, and bytes free inside its arenas (not given back).
    public static func heapUsage() -> (inUse: Int, free: Int) {
        var inUse = 0, free = 0
        ra_heap_usage(&inUse, &free)
        return (inUse, free)
    }

    /// What `keepFreedMemory` set (0: glibc's defaults), for `releaseIdleMemory` to restore.
    private static let freedMemorySettings = Mutex<(trimThreshold: Int32, topPad: Int32)>((0, 0))

    public init() throws(SocketError) {
        Self.bufferPool
        // A peer that closes while we write would otherwise kill the process (LIBEVENT-NOTES.md #4).
        signal(SIGPIPE, SIG_IGN)
        let config = event_config_new()
        // One base per thread, nothing shared: no locking inside libevent.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue))
        // Without it libevent's clock is CLOCK_MONOTONIC_COARSE, which ticks every 4 ms here: the
        // latency histogram saw 97% of commands take 0 µs and the rest 4 ms. The precise clock
        // is one vDSO read per loop iteration.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_PRECISE_TIMER.rawValue))
        let base = event_base_new_with_config(config)
        event_config_free(config)
        guard let base else { throw SocketError(.socket, detail: "event_base_new failed") }
        self.base = base
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else {
            event_base_free(base)
            throw SocketError(.socket, code: errno, detail: "eventfd failed")
        }
        mailbox = Mailbox(fd: fd)
        iovecs = .allocate(capacity: Self.iovecCapacity)
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 16)
        dirty.reserveCapacity(64)
        deferred.reserveCapacity(64)
        let context = Unmanaged.passUnretained(self).toOpaque()
        wakeEvent = event_new(base, fd, Int16(EV_READ | EV_PERSIST), { _, _, ctx in
            let loop = Unmanaged<EventLoop>.fromOpaque(ctx!).takeUnretainedValue()
            loop.callback { loop.drainMailbox() }
        }, context)
        event_add(wakeEvent, nil)
        flushEvent = event_new(base, -1, 0, { _, _, ctx in
            let loop = Unmanaged<EventLoop>.fromOpaque(ctx!).takeUnretainedValue()
            loop.callback { loop.flushDirty() }
        }, context)
    }

    deinit {
        if let wakeEvent { event_free(wakeEvent) }
        if let flushEvent { event_free(flushEvent) }
        mailbox.close()
        iovecs.deallocate()
        scratch.deallocate()
        event_base_free(base)
    }

    /// Runs until `stop()` is called or nothing is left to wait for.
    public func run() {
        // The pause is short: without this the kernel may stretch a sleep by its default
        // timer slack of 50 µs (a 20 µs pause slept about 70).
        ra_set_timer_slack(1_000)
        // One pass at a time (EVLOOP_ONCE: wait for events, run every callback they activate,
        // the end-of-iteration flush included), so a pause can come between passes.
        while event_base_loop(base, EVLOOP_ONCE) == 0 {
            if event_base_got_break(base) != 0 || event_base_got_exit(base) != 0 { break }
            if pauseMicroseconds > 0 && passCallbacks >= Self.busyPass {
                pauses &+= 1
                usleep(pauseMicroseconds)
            }
            passCallbacks = 0
        }
    }

    /// `loop_pause`: how long the loop waits after a busy pass (one that ran `busyPass` callbacks
    /// or more) before it looks for events again, so more of them are ready per wake-up. A
    /// quiet loop (an app's few connections taking turns) never waits: one client's round trip
    /// costs nothing more. 0 (the default): never. Set from the loop's own thread.
    public var pauseMicroseconds: UInt32 = 0

    /// Callbacks run in the current pass (sockets ready, timers, the flush).
    private var passCallbacks = 0
    /// A pass that ran at least this many callbacks was busy: only then does `loop_pause` wait.
    /// One client's request and reply each take a pass of two (its socket, the flush).
    public static let busyPass = 8
    /// Pauses taken so far (for metrics).
    public private(set) var pauses = 0

    /// Makes `run()` return after the callbacks already running finish.
    public func stop() {
        event_base_loopbreak(base)
    }

    /// The loop's cached time of the current iteration, in seconds since the epoch.
    public var now: Double {
        var tv = timeval()
        event_base_gettimeofday_cached(base, &tv)
        return Double(tv.tv_sec) + Double(tv.tv_usec) / 1_000_000
    }

    /// The loop's cached time in microseconds: one clock read per iteration, for latencies.
    ///
    /// Read from libevent at most once per callback (`callback(_:)` forgets it before and after):
    /// libevent's own cache holds for a whole iteration, so within one callback the value is the
    /// same, and the data path asks for it two or three times per command (measured: 130
    /// instructions per request for the libevent calls).
    public var nowMicroseconds: Int {
        if clockCache != 0 { return clockCache }
        var tv = timeval()
        event_base_gettimeofday_cached(base, &tv)
        let now = tv.tv_sec &* 1_000_000 &+ tv.tv_usec
        if inCallback { clockCache = now }
        return now
    }

    private var clockCache = 0
    private var inCallback = false
    private var deferred: [any DeferredWork] = []

    /// Runs one libevent callback's Swift side. Every trampoline into Swift goes through here:
    /// the body, then the work it deferred (`runAfterCallback`), in the order deferred.
    @inline(__always)
    func callback(_ body: () -> Void) {
        inCallback = true
        clockCache = 0
        passCallbacks &+= 1
        body()
        if !deferred.isEmpty { runDeferred() }
        inCallback = false
        clockCache = 0
    }

    private func runDeferred() {
        var index = 0
        while index < deferred.count {  // deferred work may defer more: it runs too
            deferred[index].runDeferred()
            index += 1
        }
        deferred.removeAll(keepingCapacity: true)
    }

    /// Runs `work` once the current callback's own work is done, before the loop goes on (at
    /// once outside a callback). What a callback sets in motion elsewhere — a session resuming
    /// its input after a backend delivered its replies — then never runs inside the code that
    /// caused it.
    public func runAfterCallback(_ work: any DeferredWork) {
        guard inCallback else { return work.runDeferred() }
        deferred.append(work)
    }

    /// The wall clock now, not the iteration's cached time (seconds since the epoch).
    public static var wallClock: Double {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return Double(tv.tv_sec) + Double(tv.tv_usec) / 1_000_000
    }

    /// A thread-safe way to reach this loop from other threads.
    public var handle: EventLoopHandle { EventLoopHandle(mailbox: mailbox) }

    // MARK: deferred flush

    /// Queues `connection` to be written out at the end of this loop iteration.
    func markDirty(_ connection: Connection) {
        dirty.append(connection)
        if !flushScheduled {
            flushScheduled = true
            // Active events run FIFO within a priority, so this runs after every I/O callback
            // already activated in this iteration.
            event_active(flushEvent, 0, 0)
        }
    }

    private func flushDirty() {
        flushScheduled = false
        // A flush may mark connections dirty again (a close that completes), so walk by index.
        var index = 0
        while index < dirty.count {
            dirty[index].flushNow()
            index += 1
        }
        dirty.removeAll(keepingCapacity: true)
    }

    // MARK: cross-thread mailbox

    private func drainMailbox() {
        for work in mailbox.take() { work(self) }
    }
}

/// The part of a loop other threads may hold: post work to it, or stop it.
public struct EventLoopHandle: Sendable {
    let mailbox: Mailbox

    /// Runs `work` on the loop's thread during one of its next iterations.
    public func post(_ work: @escaping @Sendable (EventLoop) -> Void) {
        mailbox.put(work)
    }

    /// Stops the loop from any thread.
    public func stop() {
        post { $0.stop() }
    }
}

/// A locked queue plus an eventfd that wakes the loop. Mutex-guarded, so Sendable.
final class Mailbox: Sendable {
    private let queue = Mutex<[@Sendable (EventLoop) -> Void]>([])
    private let fd: Int32

    init(fd: Int32) { self.fd = fd }

    func put(_ work: @escaping @Sendable (EventLoop) -> Void) {
        let wasEmpty = queue.withLock { queue in
            queue.append(work)
            return queue.count == 1
        }
        if wasEmpty {
            var one: UInt64 = 1
            _ = write(fd, &one, 8)
        }
    }

    func take() -> [@Sendable (EventLoop) -> Void] {
        var counter: UInt64 = 0
        _ = read(fd, &counter, 8)
        return queue.withLock { queue in
            let taken = queue
            queue.removeAll()
            return taken
        }
    }

    func close() { _ = Glibc.close(fd) }
}

extension EventLoop {
    /// Tells glibc to keep up to `trimThreshold` bytes of freed heap instead of returning it to
    /// the kernel at 128 KiB, growing by `topPad` at a time. Each read buffer (a 16 KiB libevent
    /// chain) is freed once its request has moved on, so a busy loop crossed the default line
    /// every iteration: measured at 50 clients without pipelining, ~1 brk per loop iteration and
    /// 0.4-0.5 page faults per request; with 8 MiB / 1 MiB both are 0. Call once at start-up.
    public static func keepFreedMemory(trimThreshold: Int32 = 8 << 20, topPad: Int32 = 1 << 20) {
        freedMemorySettings.withLock { $0 = (trimThreshold, topPad) }
        ra_keep_freed_memory(trimThreshold, topPad)
    }

    /// Unblocks every signal on the calling thread. A process inherits its parent's signal mask,
    /// and a parent thread from libdispatch blocks them all: started from there, SIGTERM and SIGHUP
    /// would never reach the loop's signal handlers. Call once at start-up, before any thread.
    public static func unblockAllSignals() {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
    }
}
