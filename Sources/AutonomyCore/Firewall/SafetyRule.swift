import Foundation

/// A rule that rates a task by its payload: "send_email is safe when `to` ends with our domain and
/// the payload has no other fields than these", or "dangerous when `cc` is a rival's address".
///
/// A **deny** rule (`"safety": "dangerous"`) makes a payload dangerous when the value at its path
/// matches; over an array, any element matching is enough, and it ignores case unless told not to.
/// A **safe** rule makes a payload of a dangerous type safe only when every value at its path
/// satisfies it (each element of an array, and at least one), none of them holds a control
/// character or a separator the rule does not expect (`,`, `;`, whitespace), and the payload has no
/// field beyond `only_keys` (or, without it, beyond the fields the type's rules name). A deny rule
/// that matches always wins.
public struct SafetyRule: Sendable {
    public var path: String
    public var matcher: Matcher
    public var safety: Safety
    /// Compare strings without regard to case. Deny rules do by default; safe rules do not.
    public var ignoreCase: Bool
    /// For a safe rule: the only top-level fields a payload may have for the rule to make it safe.
    public var onlyKeys: [String]?

    public enum Matcher: Sendable {
        case equals(JSONValue)
        case oneOf([JSONValue])
        case suffix(String)
        case regex(String, CompiledRegex)
    }

    /// Strings longer than this never satisfy a safe rule, and always match a deny rule: a pattern
    /// runs on bounded input only.
    public static let maxMatchedLength = 4096

    public init(
        path: String, matcher: Matcher, safety: Safety, ignoreCase: Bool? = nil, onlyKeys: [String]? = nil
    ) {
        self.path = path
        self.matcher = matcher
        self.safety = safety
        self.ignoreCase = ignoreCase ?? (safety == .dangerous)
        self.onlyKeys = onlyKeys
    }

    /// For a deny rule: whether any value at `path` (any element of an array) matches. Text is
    /// matched as a person reads it too: without its invisible characters (zero-width, soft
    /// hyphen, variation selectors) and the spaces around it, so "refund " and "ref\u{AD}und" are
    /// refunds. A control character other than a line break or a tab counts as a match (it fails
    /// safe).
    public func denies(_ payload: JSONValue) -> Bool {
        guard let value = payload[path: path] else { return false }
        return Self.leaves(of: value).contains { leaf in
            guard case .string(let text) = leaf else { return matches(leaf) }
            if text.utf8.count > Self.maxMatchedLength || text.unicodeScalars.contains(where: Self.isStrayControl) {
                return true
            }
            if matches(leaf) { return true }
            let read = Self.withoutInvisible(text).trimmingCharacters(in: .whitespacesAndNewlines)
            return read != text && matches(.string(read))
        }
    }

    /// A control character other than a line break or a tab.
    static func isStrayControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.generalCategory == .control && scalar != "\n" && scalar != "\t" && scalar != "\r"
    }

    /// A character that shows nothing of itself: format (zero-width, bidi controls, soft hyphen)
    /// or default-ignorable (variation selectors, U+034F, the Hangul fillers).
    static func isInvisible(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value >= 0x80
            && (scalar.properties.generalCategory == .format || scalar.properties.isDefaultIgnorableCodePoint)
    }

    static func withoutInvisible(_ text: String) -> String {
        var visible = String.UnicodeScalarView()
        visible.append(contentsOf: text.unicodeScalars.lazy.filter { !isInvisible($0) })
        return String(visible)
    }

    /// For a safe rule: nil when it makes `payload` safe, else why not. `known` are the top-level
    /// fields the type's rules name, used when the rule gives no `only_keys`.
    ///
    /// Text is looked at code point by code point: a mark joined to a comma or an "@" (",\u{FE0F}")
    /// makes one character of the two, which a look at characters would not see as a separator.
    public func allowanceProblem(_ payload: JSONValue, known: Set<String>) -> String? {
        guard case .object(let fields) = payload else { return "the payload is not an object" }
        let allowed = onlyKeys.map(Set.init) ?? known
        if let extra = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            return "\(Self.quoted(extra)) is a field the rule on \(path) does not allow"
        }
        guard let value = payload[path: path] else { return "\(path) is missing" }
        let leaves = Self.leaves(of: value)
        guard !leaves.isEmpty else { return "\(path) is empty" }
        let own = ownText.unicodeScalars
        let isAddress = own.contains("@")
        let allowedAts: Int
        if case .suffix(let suffix) = matcher {
            allowedAts = suffix.unicodeScalars.lazy.filter { $0 == "@" }.count
        } else {
            allowedAts = 1
        }
        for leaf in leaves {
            if case .string(let text) = leaf {
                guard text.utf8.count <= Self.maxMatchedLength else { return "\(path) is too long to check" }
                let scalars = text.unicodeScalars
                if scalars.contains(where: { $0.properties.generalCategory == .control || Self.isInvisible($0) }) {
                    return "\(path) holds a control or invisible character"
                }
                if let separator = scalars.first(where: {
                    Self.isSeparator($0, inAddress: isAddress) && !own.contains($0)
                }) {
                    return "\(path) holds \(Self.quoted(String(separator))), which the rule does not expect"
                }
                // "x@evil.com@ourcompany.com" ends with the domain, but a mail program sends to
                // evil.com: a rule about an address allows one "@" (a suffix, as many as its own text
                // has), however many its regex lists (".+@ourcompany\\.com|.+@partner\\.com").
                if isAddress, scalars.lazy.filter({ $0 == "@" }).count > allowedAts {
                    return "\(path) holds more than one \"@\", which the rule does not expect"
                }
            }
            guard matches(leaf) else { return "\(path) has a value the rule does not allow" }
        }
        return nil
    }

    /// Whether one value matches the matcher.
    func matches(_ value: JSONValue) -> Bool {
        switch (matcher, value) {
        case (.equals(let expected), _):
            return same(value, expected)
        case (.oneOf(let choices), _):
            return choices.contains { same(value, $0) }
        case (.suffix(let suffix), .string(let text)):
            return ignoreCase ? text.lowercased().hasSuffix(suffix.lowercased()) : text.hasSuffix(suffix)
        case (.regex(_, let compiled), .string(let text)):
            let regex = ignoreCase ? compiled.regex.ignoresCase() : compiled.regex
            return (try? regex.wholeMatch(in: text)) != nil
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

    /// The values a rule looks at: the value itself, or every element of an array (nested too).
    static func leaves(of value: JSONValue) -> [JSONValue] {
        guard case .array(let elements) = value else { return [value] }
        return elements.flatMap(leaves)
    }

    /// What splits one value into several: commas, semicolons, white space; and, in a rule about a
    /// mail address (its text has an "@"), what makes an address mean another: quoting, comments,
    /// routes and groups (`"<x@evil.com>@ourcompany.com"` is delivered to evil.com).
    static func isSeparator(_ scalar: Unicode.Scalar, inAddress: Bool) -> Bool {
        scalar == "," || scalar == ";" || scalar.properties.isWhitespace
            || (inAddress && "<>()\"[]:\\".unicodeScalars.contains(scalar))
    }

    /// The rule's own text: a separator it holds is one it expects (a rule about "New York"
    /// expects a space).
    private var ownText: String {
        switch matcher {
        case .suffix(let text), .regex(let text, _): return text
        case .equals(let value): return value.canonicalText
        case .oneOf(let values): return values.map(\.canonicalText).joined()
        }
    }

    private static func quoted(_ text: String) -> String { JSONValue.string(text).canonicalText }

    /// Whether the rule compares text at all (case matters only then).
    private var comparesText: Bool {
        func isText(_ value: JSONValue) -> Bool { if case .string = value { return true } else { return false } }
        switch matcher {
        case .suffix, .regex: return true
        case .equals(let value): return isText(value)
        case .oneOf(let values): return values.contains(where: isText)
        }
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
        let keys = onlyKeys.map { " with no field but \($0.joined(separator: ", "))" } ?? ""
        return "\(path) \(condition)\(ignoreCase && comparesText ? " (ignoring case)" : "")\(keys)"
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
    /// Whether a rule of this type matches with a pattern (which never runs inside a write
    /// transaction: the worker rates such payloads before it claims them).
    public var ratesWithPatterns: Bool {
        rules.contains { if case .regex = $0.matcher { return true } else { return false } }
    }

    /// The top-level payload fields this type's rules name.
    public var fieldsRulesName: Set<String> {
        Set(rules.map { String($0.path.split(separator: ".").first ?? Substring($0.path)) })
    }

    /// Rates a payload: dangerous when a deny rule matches; else the type's own rating, unless the
    /// type is dangerous and a safe rule allows the payload as a whole.
    public func rate(_ payload: JSONValue) -> Rating {
        if handler.isBuiltIn { return rateProposal(payload) }
        let denying = rules.filter { $0.safety == .dangerous && $0.denies(payload) }
        if !denying.isEmpty {
            return Rating(safety: .dangerous, reasons: denying.map { "rule: \($0.summary) → dangerous" })
        }
        let base =
            safetyDefaulted
            ? "the type has no safety rating, so it is dangerous" : "the type is rated \(safety.rawValue)"
        if safety == .safe {
            let denyRules = rules.contains { $0.safety == .dangerous }
            return Rating(safety: .safe, reasons: [base + (denyRules ? " (no deny rule matched)" : "")])
        }
        let known = fieldsRulesName
        var notes: [String] = []
        for rule in rules where rule.safety == .safe {
            guard let problem = rule.allowanceProblem(payload, known: known) else {
                return Rating(safety: .safe, reasons: ["rule: \(rule.summary) → safe"])
            }
            notes.append("rule on \(rule.path) does not apply: \(problem)")
        }
        return Rating(
            safety: .dangerous, reasons: [base + (notes.isEmpty ? "" : " (" + notes.joined(separator: "; ") + ")")])
    }
}

extension TaskType {
    /// A fix proposal is dangerous, unless heal is enabled and one of its `auto_apply` entries
    /// covers the proposal's finding kind, action and type; a `run_remediation` proposal must also
    /// carry exactly the argv the configuration declares for that remediation. The guardrails
    /// (breaker, rate, backoff, systemic stop) are checked when it is claimed.
    func rateProposal(_ payload: JSONValue) -> Rating {
        let human = "a fix proposal: a human approves it"
        let proposal: Proposal
        do {
            proposal = try Proposal(value: payload)
        } catch {
            return Rating(safety: .dangerous, reasons: ["\(human) (\(error))"])
        }
        guard !autoApply.isEmpty else {
            return Rating(safety: .dangerous, reasons: ["\(human) (heal.auto_apply is empty or heal is disabled)"])
        }
        guard let index = autoApply.firstIndex(where: { $0.covers(proposal) }) else {
            let about = proposal.finding.subject.map { " about \($0)" } ?? ""
            return Rating(
                safety: .dangerous,
                reasons: [
                    "\(human) (no heal.auto_apply entry covers \(proposal.finding.kind.rawValue) → \(proposal.action.name)\(about))"
                ])
        }
        if case .runRemediation(let name, let argv) = proposal.action, declaredRemediations[name] != argv {
            return Rating(
                safety: .dangerous,
                reasons: ["\(human) (its command is not the one remediations.\(name) declares)"])
        }
        return Rating(
            safety: .safe, reasons: ["heal.auto_apply[\(index)]: \(autoApply[index].summary) → safe"])
    }
}

extension SafetyRule: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, equals
        case oneOf = "one_of"
        case suffix, regex, safety
        case ignoreCase = "ignore_case"
        case onlyKeys = "only_keys"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = try container.decode(String.self, forKey: .path)
        guard !path.isEmpty, !path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty)
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .path, in: container,
                debugDescription: "expected a dotted path such as \"to\" or \"meta.channel\"")
        }
        var matchers: [Matcher] = []
        if container.contains(.equals) {
            matchers.append(.equals(try container.decode(JSONValue.self, forKey: .equals)))
        }
        if let choices = try container.decodeIfPresent([JSONValue].self, forKey: .oneOf) {
            matchers.append(.oneOf(choices))
        }
        if let suffix = try container.decodeIfPresent(String.self, forKey: .suffix) {
            guard !suffix.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .suffix, in: container, debugDescription: "expected a non-empty string")
            }
            matchers.append(.suffix(suffix))
        }
        if let pattern = try container.decodeIfPresent(String.self, forKey: .regex) {
            do {
                matchers.append(.regex(pattern, CompiledRegex(regex: try Regex(pattern))))
            } catch {
                throw DecodingError.dataCorruptedError(
                    forKey: .regex, in: container, debugDescription: "not a valid regular expression: \(error)")
            }
        }
        guard matchers.count == 1, let matcher = matchers.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected exactly one of \"equals\", \"one_of\", \"suffix\", \"regex\""))
        }
        guard container.contains(.safety) else {
            throw missingKey(
                CodingKeys.safety, at: decoder.codingPath,
                "missing: the rating this rule gives, \"safe\" or \"dangerous\"")
        }
        let safety = try container.decode(Safety.self, forKey: .safety)
        let onlyKeys = try container.decodeIfPresent([String].self, forKey: .onlyKeys)
        if onlyKeys != nil, safety == .dangerous {
            throw DecodingError.dataCorruptedError(
                forKey: .onlyKeys, in: container, debugDescription: "only a \"safe\" rule takes only_keys")
        }
        if let onlyKeys, !onlyKeys.contains(String(path.split(separator: ".").first ?? "")) {
            throw DecodingError.dataCorruptedError(
                forKey: .onlyKeys, in: container, debugDescription: "must include the rule's own field")
        }
        self.init(
            path: path, matcher: matcher, safety: safety,
            ignoreCase: try container.decodeIfPresent(Bool.self, forKey: .ignoreCase), onlyKeys: onlyKeys)
    }
}
