internal import CLibevent
#if canImport(Glibc)
internal import Glibc
#endif
import Synchronization

/// An event loop running on a thread of its own (a POSIX thread: Foundation's `Thread` is not
/// worth its memory in a sidecar), for workers, the control plane and tests.
public final class EventLoopThread: Sendable {
    /// Reaches the loop from any thread.
    public let handle: EventLoopHandle
    private let thread: Mutex<pthread_t?>

    private init(handle: EventLoopHandle, thread: pthread_t) {
        self.handle = handle
        self.thread = Mutex(thread)
    }

    /// What the new thread runs, and how it reports that its loop exists.
    private final class Start: @unchecked Sendable {
        let name: String
        let setup: @Sendable (EventLoop) -> Void
        var outcome: Result<EventLoopHandle, SocketError>?  // under `lock`
        var signal = pthread_cond_t()
        var lock = pthread_mutex_t()

        init(name: String, setup: @escaping @Sendable (EventLoop) -> Void) {
            self.name = name
            self.setup = setup
            pthread_mutex_init(&lock, nil)
            pthread_cond_init(&signal, nil)
        }

        deinit {
            pthread_cond_destroy(&signal)
            pthread_mutex_destroy(&lock)
        }

        func report(_ result: Result<EventLoopHandle, SocketError>) {
            pthread_mutex_lock(&lock)
            outcome = result
            pthread_cond_signal(&signal)
            pthread_mutex_unlock(&lock)
        }

        func awaitReport() -> Result<EventLoopHandle, SocketError> {
            pthread_mutex_lock(&lock)
            defer { pthread_mutex_unlock(&lock) }
            while true {
                if let outcome { return outcome }
                pthread_cond_wait(&signal, &lock)
            }
        }

        func run() {
            _ = pthread_setname_np(pthread_self(), String(name.prefix(15)))
            let loop: EventLoop
            do throws(SocketError) {
                loop = try EventLoop()
            } catch {
                report(.failure(error))
                return
            }
            let handle = loop.handle
            setup(loop)
            report(.success(handle))
            loop.run()
        }
    }

    /// Creates a loop on a new thread, runs `setup` on it first, then runs the loop until stopped.
    public static func start(name: String = "event-loop",
                             setup: @escaping @Sendable (EventLoop) -> Void = { _ in })
        throws(SocketError) -> EventLoopThread
    {
        let start = Start(name: name, setup: setup)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(start).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            start.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw SocketError(.socket, detail: "cannot start thread \(name): \(String(cString: strerror(rc)))")
        }
        switch start.awaitReport() {
        case .success(let handle): return EventLoopThread(handle: handle, thread: thread)
        case .failure(let error):
            pthread_join(thread, nil)
            throw error
        }
    }

    /// Waits until the loop's `run()` has returned (later calls return at once).
    public func join() {
        guard let thread = self.thread.withLock({ value -> pthread_t? in defer { value = nil }; return value }) else { return }
        pthread_join(thread, nil)
    }
}
