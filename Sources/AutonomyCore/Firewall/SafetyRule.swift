import Foundation

/// A rule that rates a task by its payload: "send_email is safe when `to` ends with our domain".
///
/// A rule names a JSON path into the payload, one matcher, and the rating it gives when the value
/// there matches. When rules match, the most restrictive of their ratings wins; when none matches,
/// the type's own `safety` applies. A path that is missing, or holds an array or object, matches
/// nothing, so it falls back to the type's rating.
public struct SafetyRule: Sendable {
    public var path: String
    public var matcher: Matcher
    public var safety: Safety
    /// Compare strings without regard to case (equals, one_of, suffix; regex uses its own flags).
    public var ignoreCase: Bool

    public enum Matcher: Sendable {
        case equals(JSONValue)
        case oneOf([JSONValue])
        case suffix(String)
        case regex(String, CompiledRegex)
    }

    public init(path: String, matcher: Matcher, safety: Safety, ignoreCase: Bool = false) {
        self.path = path
        self.matcher = matcher
        self.safety = safety
        self.ignoreCase = ignoreCase
    }

    /// Whether the payload's value at `path` matches.
    public func matches(_ payload: JSONValue) -> Bool {
        guard let value = payload[path: path] else { return false }
        switch (matcher, value) {
        case (.equals(let expected), _):
            return same(value, expected)
        case (.oneOf(let choices), _):
            return choices.contains { same(value, $0) }
        case (.suffix(let suffix), .string(let text)):
            return ignoreCase ? text.lowercased().hasSuffix(suffix.lowercased()) : text.hasSuffix(suffix)
        case (.regex(_, let regex), .string(let text)):
            return (try? regex.regex.wholeMatch(in: text)) != nil
        default:
            return false
        }
    }

    private func same(_ value: JSONValue, _ expected: JSONValue) -> Bool {
        if ignoreCase, case .string(let left) = value, case .string(let right) = expected {
            return left.lowercased() == right.lowercased()
        }
        return value == expected
    }

    /// How the rule reads in an explanation: `to ends with "@example.com"`.
    public var summary: String {
        let condition: String
        switch matcher {
        case .equals(let value): condition = "equals \(value.canonicalText)"
        case .oneOf(let values): condition = "is one of \(JSONValue.array(values).canonicalText)"
        case .suffix(let suffix): condition = "ends with \(JSONValue.string(suffix).canonicalText)"
        case .regex(let pattern, _): condition = "matches /\(pattern)/"
        }
        return "\(path) \(condition)\(ignoreCase ? " (ignoring case)" : "")"
    }
}

/// A compiled pattern. `Regex` is an immutable value that is safe to share across threads, but it
/// is not marked `Sendable`.
public struct CompiledRegex: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
}

/// How the firewall rates one task, and why.
public struct Rating: Sendable, Equatable {
    public var safety: Safety
    /// One sentence per reason, for `firewall check`, the ledger and approval requests.
    public var reasons: [String]
}

extension TaskType {
    /// Rates a payload: the most restrictive matching rule, else the type's own rating.
    public func rate(_ payload: JSONValue) -> Rating {
        let matched = rules.filter { $0.matches(payload) }
        guard !matched.isEmpty else {
            let base =
                safetyDefaulted
                ? "the type has no safety rating, so it is dangerous"
                : "the type is rated \(safety.rawValue)"
            let note = rules.isEmpty ? "" : " (no rule matched)"
            return Rating(safety: safety, reasons: [base + note])
        }
        let safety: Safety = matched.contains { $0.safety == .dangerous } ? .dangerous : .safe
        let reasons = matched.map { "rule: \($0.summary) → \($0.safety.rawValue)" }
        return Rating(safety: safety, reasons: reasons)
    }
}
