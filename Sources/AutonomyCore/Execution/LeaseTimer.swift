import Foundation
import Synchronization
import SystemShims

/// One timer for the whole process, on a thread of its own, that calls back when a lease is due for
/// renewal (or must be given up). Scheduling a renewal wakes nobody unless it falls before the
/// thread's next wake-up: a draining worker schedules one per task, each seconds away, and a task of
/// its own per attempt to sleep until then cost more context switches than the attempt's child
/// (`bench/peers`: 16 switches a task with one, 8 without).
final class LeaseTimer: Sendable {
    static let shared = LeaseTimer()

    /// How long the thread sleeps with nothing due, and how long it stays with nothing scheduled.
    private static let idleWake = Duration.milliseconds(250)
    private static let idleExit = Duration.seconds(10)

    private struct State {
        var due: [ObjectIdentifier: (at: ContinuousClock.Instant, fire: @Sendable () -> Void)] = [:]
        /// When the thread will next look; nil when it is not running.
        var wakeAt: ContinuousClock.Instant?
        var wakeDescriptor: Int32 = -1
    }
    private let state = Mutex(State())

    /// Calls `fire` (on the timer's thread: it must return at once) at `instant`, in place of what
    /// `owner` had scheduled.
    func schedule(_ owner: AnyObject, at instant: ContinuousClock.Instant, fire: @escaping @Sendable () -> Void) {
        let start = state.withLock { state -> Bool in
            state.due[ObjectIdentifier(owner)] = (instant, fire)
            guard let wakeAt = state.wakeAt else {
                state.wakeAt = instant
                return true
            }
            if instant < wakeAt {
                state.wakeAt = instant
                // Under the lock, so the thread cannot have closed it (it leaves only with nothing due).
                if state.wakeDescriptor >= 0 {
                    var one: UInt64 = 1
                    _ = withUnsafeBytes(of: &one) { write(state.wakeDescriptor, $0.baseAddress, 8) }
                }
            }
            return false
        }
        if start, !startThread() {
            // No thread to be had: what is scheduled waits as tasks of their own.
            let stranded = state.withLock { state in
                defer {
                    state.due = [:]
                    state.wakeAt = nil
                }
                return Array(state.due.values)
            }
            for entry in stranded {
                Task {
                    try? await Task.sleep(until: entry.at, clock: .continuous)
                    entry.fire()
                }
            }
        }
    }

    /// Forgets what `owner` scheduled.
    func cancel(_ owner: AnyObject) {
        _ = state.withLock { $0.due.removeValue(forKey: ObjectIdentifier(owner)) }
    }

    private func startThread() -> Bool {
        let descriptor = autonomy_eventfd()
        guard descriptor >= 0 else { return false }
        state.withLock { $0.wakeDescriptor = descriptor }
        guard DetachedThread.start({ self.run() }) == nil else {
            state.withLock { $0.wakeDescriptor = -1 }
            close(descriptor)
            return false
        }
        return true
    }

    private func run() {
        var idleSince: ContinuousClock.Instant?
        while true {
            let now = ContinuousClock.now
            let (fire, sleep, descriptor) = state.withLock {
                state -> ([@Sendable () -> Void], Duration?, Int32) in
                var fire: [@Sendable () -> Void] = []
                for (key, entry) in state.due where entry.at <= now {
                    fire.append(entry.fire)
                    state.due.removeValue(forKey: key)
                }
                if !state.due.isEmpty || !fire.isEmpty {
                    idleSince = nil
                } else if let since = idleSince {
                    if now - since >= Self.idleExit {
                        state.wakeAt = nil
                        defer { state.wakeDescriptor = -1 }
                        return ([], nil, state.wakeDescriptor)
                    }
                } else {
                    idleSince = now
                }
                let next = min(state.due.values.map(\.at).min() ?? now + Self.idleWake, now + Self.idleWake)
                state.wakeAt = next
                return (fire, next - now, state.wakeDescriptor)
            }
            for call in fire { call() }
            guard let sleep else {
                close(descriptor)
                return
            }
            var wait = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
            if poll(&wait, 1, ChildProcess.milliseconds(sleep)) > 0 {
                var count: UInt64 = 0
                _ = withUnsafeMutableBytes(of: &count) { read(descriptor, $0.baseAddress, 8) }
            }
        }
    }
}
