import Foundation
import Synchronization

/// Runs `body` on a thread of its own, at once; the function returned waits for it to end and
/// returns what it returned (or throws what it threw). For CPU-bound work beside the caller's:
/// the ledger's two halves, the chain beside the audit's reading.
func inBackground<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> () throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Thread {
        let outcome = Result { try body() }
        result.withLock { $0 = outcome }
        done.signal()
    }.start()
    return {
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
