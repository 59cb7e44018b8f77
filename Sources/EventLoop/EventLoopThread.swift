import Foundation
import Synchronization

/// An event loop running on a thread of its own, for workers and tests.
public final class EventLoopThread: Sendable {
    /// Reaches the loop from any thread.
    public let handle: EventLoopHandle
    private let finished: DispatchSemaphore

    private init(handle: EventLoopHandle, finished: DispatchSemaphore) {
        self.handle = handle
        self.finished = finished
    }

    /// Creates a loop on a new thread, runs `setup` on it first, then runs the loop until stopped.
    public static func start(name: String = "event-loop",
                             setup: @escaping @Sendable (EventLoop) -> Void = { _ in })
        throws(SocketError) -> EventLoopThread
    {
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<EventLoopHandle, SocketError>?>(nil)
        let thread = Thread {
            let loop: EventLoop
            do throws(SocketError) {
                loop = try EventLoop()
            } catch {
                outcome.withLock { $0 = .failure(error) }
                started.signal()
                finished.signal()
                return
            }
            outcome.withLock { $0 = .success(loop.handle) }
            setup(loop)
            started.signal()
            loop.run()
            finished.signal()
        }
        thread.name = name
        thread.start()
        started.wait()
        switch outcome.withLock({ $0 })! {
        case .success(let handle): return EventLoopThread(handle: handle, finished: finished)
        case .failure(let error): throw error
        }
    }

    /// Waits until the loop's `run()` has returned.
    public func join() {
        finished.wait()
        finished.signal()  // later joins return at once
    }
}
