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

/// Conversions between epoch milliseconds and the ISO 8601 text operators read and type.
public enum Timestamp {
    /// `2026-12-01T09:00:00Z` (or with fractional seconds, or an offset) → epoch ms; nil when not a date.
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for options in [
            ISO8601DateFormatter.Options.withInternetDateTime,
            [.withInternetDateTime, .withFractionalSeconds],
        ] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: trimmed) {
                return Int64((date.timeIntervalSince1970 * 1000).rounded())
            }
        }
        return nil
    }

    /// Epoch ms → `2026-12-01T09:00:00Z` in UTC.
    public static func format(_ milliseconds: Int64) -> String { format(milliseconds, offset: 0) }

    /// Epoch ms → `2026-12-01T09:00:00Z` in UTC, or in `timeZone` with its offset.
    public static func format(_ milliseconds: Int64, timeZone: TimeZone) -> String {
        let seconds = milliseconds.floorDivided(by: 1000)
        return format(milliseconds, offset: timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(seconds))))
    }

    /// The one writer of the format, `offset` seconds east of UTC (`Z` for none, else `+hh:mm`),
    /// digit by digit: a claim's ledger row holds one, and so does each time in a `--json` output.
    /// A year outside 1000–9999 is written as its number, unpadded.
    private static func format(_ milliseconds: Int64, offset: Int) -> String {
        var time = time_t(Int(milliseconds.floorDivided(by: 1000)) + offset)
        var parts = tm()
        _ = gmtime_r(&time, &parts)  // never fails here: Int64 milliseconds stay within years ±3×10⁸
        let year = Int(parts.tm_year) + 1900
        let longYear = (1000...9999).contains(year) ? nil : Array(String(year).utf8)
        return String(unsafeUninitializedCapacity: (longYear?.count ?? 4) + 21) { text in
            var at = 0
            func put(_ value: Int, digits: Int) {
                var value = value
                for position in (at..<at + digits).reversed() {
                    text[position] = UInt8(truncatingIfNeeded: 0x30 + value % 10)
                    value /= 10
                }
                at += digits
            }
            func put(_ character: Unicode.Scalar) {
                text[at] = UInt8(ascii: character)
                at += 1
            }
            if let longYear {
                for byte in longYear {
                    text[at] = byte
                    at += 1
                }
            } else {
                put(year, digits: 4)
            }
            put("-")
            put(Int(parts.tm_mon) + 1, digits: 2)
            put("-")
            put(Int(parts.tm_mday), digits: 2)
            put("T")
            put(Int(parts.tm_hour), digits: 2)
            put(":")
            put(Int(parts.tm_min), digits: 2)
            put(":")
            put(Int(parts.tm_sec), digits: 2)
            if offset == 0 {
                put("Z")
            } else {
                let minutes = abs(offset) / 60
                put(offset < 0 ? "-" : "+")
                put(minutes / 60, digits: 2)
                put(":")
                put(minutes % 60, digits: 2)
            }
            return at
        }
    }
}

extension Int64 {
    /// Division rounding toward negative infinity, so times before 1970 format correctly.
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}

/// Calendar days in a time zone, as epoch milliseconds: the budget's day and the metrics' day.
public enum LocalDay {
    private static func calendar(_ zone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar
    }

    /// The start of the day holding `milliseconds`, in `zone` (01:00 on a day whose midnight is
    /// skipped by a clock change).
    public static func start(of milliseconds: Int64, in zone: TimeZone) -> Int64 {
        let start = calendar(zone).startOfDay(for: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
        return Int64((start.timeIntervalSince1970 * 1000).rounded())
    }

    /// The start of the next day, in `zone`: a day is 23, 24 or 25 hours long.
    public static func start(ofDayAfter milliseconds: Int64, in zone: TimeZone) -> Int64 {
        let calendar = calendar(zone)
        let today = calendar.startOfDay(for: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
        // A day after today's start, then back to that day's start: when today began at 01:00
        // (its midnight skipped), tomorrow still begins at its own midnight.
        let later = calendar.date(byAdding: .day, value: 1, to: today) ?? today.addingTimeInterval(86_400)
        let next = calendar.startOfDay(for: later)
        return Int64((next.timeIntervalSince1970 * 1000).rounded())
    }
}

/// Runs `body` with a time limit: its value, or nil when `timeout` passed first (then `body` is
/// cancelled). The one race between work and a timer; a program's run has its own, which signals
/// its process group (`ExecRunner.run`).
public func withDeadline<Value: Sendable>(
    _ timeout: Interval, _ body: @escaping @Sendable () async -> Value
) async -> Value? {
    await withTaskGroup(of: Value?.self) { group in
        group.addTask { await body() }
        group.addTask {
            try? await Task.sleep(for: timeout.duration)
            return nil  // the time is up (or the work finished and this was cancelled)
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
