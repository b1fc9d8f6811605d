import AutonomyCore
import Foundation
import Synchronization

/// A clock that stands still until told to move.
public final class ManualClock: WallClock {
    private let current: Mutex<Int64>
    public init(_ start: Int64 = 1_767_225_600_000) { current = Mutex(start) }  // 2026-01-01T00:00:00Z
    public func now() -> Int64 { current.withLock { $0 } }
    public func advance(by interval: Interval) { current.withLock { $0 += interval.milliseconds } }
    public func set(_ value: Int64) { current.withLock { $0 = value } }
}

extension TaskRecord {
    /// A task that exists only in memory, being verified.
    public static func sample(type: String, payload: String, result: String? = nil, now: Int64) -> TaskRecord {
        .unsaved(type: type, payload: payload, result: result, now: now)
    }
}

/// True when `pid` is gone or a zombie: a process its parent (or init) has still to reap. An
/// orphan's reaping is up to whatever PID 1 is, so a test waits for this, not for `kill(pid, 0)`.
public func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
}
