import Foundation

/// A length of time written the way operators write it: `"500ms"`, `"30s"`, `"5m"`, `"24h"`, `"7d"`,
/// or a sum such as `"1h30m"`. Held as whole milliseconds.
public struct Interval: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public static func seconds(_ value: Int64) -> Interval { Interval(milliseconds: value * 1000) }
    public static func minutes(_ value: Int64) -> Interval { .seconds(value * 60) }
    public static func hours(_ value: Int64) -> Interval { .minutes(value * 60) }
    public static func days(_ value: Int64) -> Interval { .hours(value * 24) }
    public static let zero = Interval(milliseconds: 0)

    /// The time from `start` to `end`, held within ±`Int64.max` ms instead of trapping: times
    /// read from rows that whoever can write the database may have set to anything.
    public static func between(_ start: Int64, _ end: Int64) -> Interval {
        let (value, overflow) = end.subtractingReportingOverflow(start)
        if overflow { return Interval(milliseconds: start < 0 ? .max : -.max) }
        return Interval(milliseconds: max(value, -.max))
    }

    public var seconds: Double { Double(milliseconds) / 1000 }
    public var duration: Duration { .milliseconds(milliseconds) }

    /// Parses `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"0"`; nil when the text is not such a length.
    public init?(parsing text: String) {
        let trimmed = text.trimmingBlanks
        if trimmed == "0" {
            self = .zero
            return
        }
        var total: Int64 = 0
        var number: Int64? = nil
        var index = trimmed.startIndex
        guard !trimmed.isEmpty else { return nil }
        while index < trimmed.endIndex {
            let character = trimmed[index]
            if let digit = character.wholeNumberValue, character.isASCII {
                let (times, overflow1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(Int64(digit))
                guard !overflow1, !overflow2 else { return nil }
                number = sum
                index = trimmed.index(after: index)
                continue
            }
            guard let value = number else { return nil }
            let rest = trimmed[index...]
            let unit: Int64
            if rest.hasPrefix("ms") {
                unit = 1
                index = trimmed.index(index, offsetBy: 2)
            } else {
                switch character {
                case "s": unit = 1000
                case "m": unit = 60_000
                case "h": unit = 3_600_000
                case "d": unit = 86_400_000
                case "w": unit = 7 * 86_400_000
                default: return nil
                }
                index = trimmed.index(after: index)
            }
            let (part, overflow1) = value.multipliedReportingOverflow(by: unit)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            guard !overflow1, !overflow2 else { return nil }
            total = sum
            number = nil
        }
        guard number == nil else { return nil }  // "30" without a unit is ambiguous
        self.milliseconds = total
    }

    /// A short human form: `"45s"`, `"3m12s"`, `"2h5m"`, `"3d4h"`, `"250ms"`.
    public var description: String {
        let ms = milliseconds
        if ms < 0 { return "-" + Interval(milliseconds: ms == .min ? .max : -ms).description }
        if ms < 1000 { return ms == 0 ? "0s" : "\(ms)ms" }
        let totalSeconds = ms / 1000
        let days = totalSeconds / 86_400
        let hours = (totalSeconds % 86_400) / 3600
        let minutes = (totalSeconds % 3600) / 60
        let seconds = totalSeconds % 60
        if days > 0 { return hours > 0 ? "\(days)d\(hours)h" : "\(days)d" }
        if hours > 0 { return minutes > 0 ? "\(hours)h\(minutes)m" : "\(hours)h" }
        if minutes > 0 { return seconds > 0 ? "\(minutes)m\(seconds)s" : "\(minutes)m" }
        return "\(seconds)s"
    }

    public static func < (lhs: Interval, rhs: Interval) -> Bool { lhs.milliseconds < rhs.milliseconds }

    /// Every unit written out (`"1d4h30m"`, `"90s"`, `"1500ms"`): `Interval(parsing:)` reads it
    /// back to the same value, which `description` does not promise.
    public var exactText: String {
        var rest = milliseconds
        guard rest > 0 else { return rest == 0 ? "0s" : "-" + Interval(milliseconds: -rest).exactText }
        var text = ""
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        where rest >= size {
            text += "\(rest / size)\(unit)"
            rest %= size
        }
        return text
    }
}

extension Duration {
    /// The whole milliseconds in this duration (rounded toward zero): the unit autonomy records.
    public var inMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension Interval: Decodable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Interval(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "expected a duration such as \"30s\", \"5m\", \"24h\" or \"7d\", got \"\(text)\"")
        }
        guard value <= Interval.days(3660) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected at most ten years")
        }
        self = value
    }
}

extension String {
    /// The text without the blanks around it: what `trimmingCharacters(in: .whitespaces)` leaves
    /// (the tab, Unicode's space separators and the zero-width space, not line breaks), without a
    /// first use of Foundation's character sets, which costs a fresh process more than the rest of
    /// reading its configuration.
    var trimmingBlanks: Substring {
        func blank(_ scalar: Unicode.Scalar) -> Bool {
            scalar == "\t" || scalar == "\u{200B}" || scalar.properties.generalCategory == .spaceSeparator
        }
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !blank($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !blank($0) })!
        return Substring(scalars[first...last])
    }
}
