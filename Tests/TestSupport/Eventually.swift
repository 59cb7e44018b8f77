import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Polls `condition` every 20 ms until it holds; false once `timeout` seconds have passed (after
/// one last try). The one way tests wait for something that will happen, instead of a sleep.
@discardableResult
public func eventually(_ timeout: Double, every interval: Double = 0.02, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(useconds_t(interval * 1_000_000))
    }
    return try condition()
}
