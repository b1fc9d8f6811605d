import Foundation

/// How bad a finding is. Reports list the worst first.
public enum Severity: String, Sendable, Codable, CaseIterable, Comparable {
    case critical, high, medium, low, info

    private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    /// `critical` is the greatest.
    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank > rhs.rank }
}

/// What kind of thing an audit found.
public enum FindingKind: String, Sendable, Codable, CaseIterable {
    /// `ledger verify` fails: the record itself cannot be trusted.
    case ledgerBroken = "ledger_broken"
    case successRateDrop = "success_rate_drop"
    case slower
    case costRise = "cost_rise"
    /// It used to run; in this window it did not run at all.
    case stoppedRunning = "stopped_running"
    case verificationFailuresRise = "verification_failures_rise"
    /// One normalised error, grouped per type.
    case failureSignature = "failure_signature"
    case deadTasks = "dead_tasks"
    case staleApproval = "stale_approval"
    /// Running or verifying, its lease run out, nobody has taken it over.
    case stuckTask = "stuck_task"
    /// A handler that keeps outliving its lease.
    case repeatedLeaseExpiry = "repeated_lease_expiry"
    case inconclusiveVerifications = "inconclusive_verifications"
    case shelfware
    case undeclaredType = "undeclared_type"
    case missingHandler = "missing_handler"
    case noOwner = "no_owner"
    case componentNamesUndeclaredType = "component_names_undeclared_type"
    case tierWithoutModel = "tier_without_model"
    /// A verifier whose checks all failed: it cannot tell success from failure.
    case verifierNeverPasses = "verifier_never_passes"
    /// A verifier that passed every one of at least `min_sample` checks: can it fail at all?
    case verifierNeverFails = "verifier_never_fails"
    case daysAtCap = "days_at_cap"
    case deferrals
    case alertsFailing = "alerts_failing"
    /// An override pauses the type: its tasks wait.
    case pausedType = "paused_type"
}

/// One thing an audit found, with the numbers behind it and the tasks or ledger rows to look at.
public struct Finding: Sendable, Equatable, Encodable {
    public var kind: FindingKind
    public var severity: Severity
    /// The type, component, channel or signature it is about; nil for the system as a whole.
    @Nullable public var subject: String?
    /// One line a person reads.
    public var title: String
    /// Numbers, signatures, ids: never a payload.
    public var evidence: JSONValue
    /// Tasks to look at (a few examples).
    public var tasks: [Int64]

    public init(
        _ kind: FindingKind, _ severity: Severity, subject: String?, title: String, evidence: JSONValue = [:],
        tasks: [Int64] = []
    ) {
        (self.kind, self.severity, self.subject, self.title, self.evidence, self.tasks) =
            (kind, severity, subject, title, evidence, tasks)
    }
}

extension Finding {
    /// The evidence as it is stored and proposed: its numbers, and the tasks behind it.
    var storedEvidence: JSONValue {
        var evidence = self.evidence.objectValue ?? [:]
        evidence["tasks"] = .array(tasks.map { .int($0) })
        return .object(evidence)
    }
}

extension [Finding] {
    /// Worst first; then by kind and subject, so equal reports print alike.
    public func worstFirst() -> [Finding] {
        sorted {
            ($0.severity, $1.kind.rawValue, $1.subject ?? "") > ($1.severity, $0.kind.rawValue, $0.subject ?? "")
        }
    }
}

extension Finding {
    /// One line a person reads: `HIGH     dead_tasks: …  (tasks 2, 3)`.
    public var line: String {
        let tasks = self.tasks.isEmpty ? "" : "  (tasks \(self.tasks.map(String.init).joined(separator: ", ")))"
        let level = severity.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)
        return "\(level) \(kind.rawValue): \(Visible.text(title))\(tasks)"
    }
}

/// What one audit found, worst first.
public struct AuditReport: Sendable, Encodable {
    /// The saved run's id.
    public var runID: Int64
    public var windowStart: ISOTime
    public var windowEnd: ISOTime
    public var headline: String
    public var findings: [Finding]
    /// What the audit proposed, or found already proposed.
    public var proposals: [ProposalOutcome] = []
    /// A plain-language summary from the model gateway (`audit.explain`), or why there is none.
    @Nullable public var explanation: String? = nil

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case windowStart = "window_start"
        case windowEnd = "window_end"
        case headline, explanation, findings, proposals
    }

    /// The most severe finding's severity; nil when nothing was found.
    public var worst: Severity? { findings.map(\.severity).max() }
}

/// Error text with what varies between occurrences (numbers, ids, paths, times, hex) replaced by
/// placeholders, so the same failure groups under one signature.
public enum FailureSignature {
    public static func of(_ text: String) -> String {
        normalise(firstLine(text))
    }

    /// The same, remembering signatures in `memo`: every rule treats all digits alike, so two
    /// lines that differ only in their digits have one signature, and an audit over thousands of
    /// failures normalises each shape once.
    static func of(_ text: String, memo: inout [String: String]) -> String {
        let line = firstLine(text)
        let shape = String(decoding: line.utf8.map { $0 >= 0x30 && $0 <= 0x39 ? 0x30 : $0 }, as: UTF8.self)
        if let known = memo[shape] { return known }
        let signature = normalise(line)
        memo[shape] = signature
        return signature
    }

    private static func firstLine(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.count > 300 ? String(line.prefix(300)) : line
    }

    private static func normalise(_ text: String) -> String {
        var line = text
        for (pattern, placeholder) in rules {
            line = pattern.stringByReplacingMatches(
                in: line, range: NSRange(line.startIndex..., in: line), withTemplate: placeholder)
        }
        return line.trimmingCharacters(in: .whitespaces)
    }

    /// Compiled once: an audit normalises every failed attempt's error in its window.
    private static let rules: [(NSRegularExpression, String)] = [
        (#"[a-z][a-z0-9+.-]*://[^\s"'<>]+"#, "<url>"),
        (#"\d{4}-\d{2}-\d{2}[T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?"#, "<time>"),
        (#"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"#, "<id>"),
        (#"(/[A-Za-z0-9._-]+)+/?"#, "<path>"),
        (#"\b(0x)?[0-9a-fA-F]{8,}\b"#, "<hex>"),
        (#"\d+"#, "<n>"),
    ].compactMap { pattern, placeholder in
        // Literals: one that did not compile would drop its rule, which the signature tests catch.
        (try? NSRegularExpression(pattern: pattern)).map { ($0, placeholder) }
    }
}

/// One proposal of an audit: enqueued now, or left alone because it is still open or was
/// rejected within the cooldown.
public struct ProposalOutcome: Sendable, Encodable {
    public enum Status: String, Sendable, Encodable {
        case proposed
        case stillOpen = "still_open"
        case coolingDown = "cooling_down"
    }

    public var status: Status
    /// The new task, the open one, or the one that ended within the cooldown.
    public var task: Int64
    public var action: String
    public var parameters: JSONValue
    public var finding: FindingKind
    @Nullable public var subject: String?
    /// How the earlier proposal ended, when it is cooling down.
    @Nullable public var ended: TaskState?
    /// `retry_dead(since=…, type=doomed)`.
    public var summary: String

    enum CodingKeys: String, CodingKey {
        case status, task, action, parameters, finding, subject, ended
    }

    public init(_ proposal: Proposal, task: Int64, status: Status, ended: TaskState? = nil) {
        (self.status, self.task, self.action, self.parameters, self.ended) =
            (status, task, proposal.action.name, proposal.action.parameters, ended)
        (finding, subject, summary) = (proposal.finding.kind, proposal.finding.subject, proposal.action.summary)
    }

    /// One line a person reads.
    public var line: String {
        let about = "for \(finding.rawValue)\(subject.map { " " + Visible.text($0) } ?? "")"
        switch status {
        case .proposed:
            return "task \(task): \(summary) \(about): awaiting approval (autonomy approvals)"
        case .stillOpen:
            return "task \(task): \(summary) \(about): still open, not proposed again"
        case .coolingDown:
            return
                "task \(task): \(summary) \(about): \(ended?.rawValue ?? "ended") within audit.cooldown, not proposed again"
        }
    }
}
