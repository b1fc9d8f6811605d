import Foundation
import Synchronization

/// Where "now" comes from. The worker, the queue and the firewall read time only through this,
/// so tests can move time forward instead of sleeping.
public protocol WallClock: Sendable {
    /// Milliseconds since 1970-01-01 UTC.
    func now() -> Int64
}

/// The real clock.
public struct SystemClock: WallClock {
    public init() {}
    public func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}

/// A clock that stands still until told to move; for tests.
public final class ManualClock: WallClock {
    private let current: Mutex<Int64>
    public init(_ start: Int64 = 1_767_225_600_000) { current = Mutex(start) }  // 2026-01-01T00:00:00Z
    public func now() -> Int64 { current.withLock { $0 } }
    public func advance(by interval: Interval) { current.withLock { $0 += interval.milliseconds } }
    public func set(_ value: Int64) { current.withLock { $0 = value } }
}

/// A clock shifted by a fixed offset from the real one. The binary uses it when
/// `AUTONOMY_CLOCK_OFFSET` is set, so end-to-end tests can let a lease expire without waiting.
public struct OffsetClock: WallClock {
    public var offset: Interval
    public init(offset: Interval) { self.offset = offset }
    public func now() -> Int64 { SystemClock().now() + offset.milliseconds }
}

/// Conversions between epoch milliseconds and the ISO 8601 text operators read and type.
public enum Timestamp {
    /// `2026-12-01T09:00:00Z` (or with fractional seconds, or an offset) → epoch ms; nil when not a date.
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for options in [ISO8601DateFormatter.Options.withInternetDateTime,
                        [.withInternetDateTime, .withFractionalSeconds]] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: trimmed) {
                return Int64((date.timeIntervalSince1970 * 1000).rounded())
            }
        }
        return nil
    }

    /// Epoch ms → `2026-12-01T09:00:00Z` in UTC, or in `timeZone` with its offset.
    public static func format(_ milliseconds: Int64, timeZone: TimeZone = .gmt) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = timeZone
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}
