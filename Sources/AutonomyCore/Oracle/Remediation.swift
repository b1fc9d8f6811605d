import Foundation

/// One action of the fixed catalog. A proposal carries exactly one; nothing outside the catalog is
/// ever proposed or applied, and every parameter is checked before anything is done.
public enum RemediationAction: Sendable, Equatable {
    /// Send the type's tasks that died since `since` back to the queue (a dangerous one asks again).
    case retryDead(type: String, since: Int64)
    /// Claim none of the type's tasks until resumed (an override).
    case pauseType(type: String, for: Interval?)
    case resumeType(type: String)
    case raiseTimeout(type: String, to: Interval, for: Interval?)
    /// The worker's lease, for every type.
    case raiseLease(to: Interval, for: Interval?)
    case raiseMaxAttempts(type: String, to: Int, for: Interval?)
    /// Expire pending approval requests older than this (their tasks expire with them).
    case expireStaleApprovals(olderThan: Interval)
    /// Settle a task whose worker died, as work-once's recovery does (verified first if it can be).
    case releaseStuck(task: Int64)
    /// A command the configuration declares under `remediations`: argv, no shell, a timeout. The
    /// argv is part of the proposal, so the operator approves the command itself; it runs only if
    /// the configuration still declares exactly that argv.
    case runRemediation(name: String, argv: [String])
    /// Alert the configured channels that the type's owner is needed.
    case notifyOwner(type: String)

    /// The catalog's names, as payloads and the README write them.
    public static let names = [
        "retry_dead", "pause_type", "resume_type", "raise_timeout", "raise_lease", "raise_max_attempts",
        "expire_stale_approvals", "release_stuck", "run_remediation", "notify_owner",
    ]

    public var name: String {
        switch self {
        case .retryDead: return "retry_dead"
        case .pauseType: return "pause_type"
        case .resumeType: return "resume_type"
        case .raiseTimeout: return "raise_timeout"
        case .raiseLease: return "raise_lease"
        case .raiseMaxAttempts: return "raise_max_attempts"
        case .expireStaleApprovals: return "expire_stale_approvals"
        case .releaseStuck: return "release_stuck"
        case .runRemediation: return "run_remediation"
        case .notifyOwner: return "notify_owner"
        }
    }

    /// What it acts on: a type, a task, a remediation, or the worker or approvals as a whole.
    public var target: String {
        switch self {
        case .retryDead(let type, _), .pauseType(let type, _), .resumeType(let type), .raiseTimeout(let type, _, _),
            .raiseMaxAttempts(let type, _, _), .notifyOwner(let type):
            return type
        case .raiseLease: return "worker"
        case .expireStaleApprovals: return "approvals"
        case .releaseStuck(let task): return "task \(task)"
        case .runRemediation(let name, _): return name
        }
    }

    /// The type it is about, if any.
    public var type: String? {
        switch self {
        case .retryDead(let type, _), .pauseType(let type, _), .resumeType(let type), .raiseTimeout(let type, _, _),
            .raiseMaxAttempts(let type, _, _), .notifyOwner(let type):
            return type
        default: return nil
        }
    }

    public var parameters: JSONValue {
        func lasting(_ fields: [String: JSONValue], _ duration: Interval?) -> JSONValue {
            var fields = fields
            if let duration { fields["for"] = .string(duration.exactText) }
            return .object(fields)
        }
        switch self {
        case .retryDead(let type, let since): return ["type": .string(type), "since": .string(Timestamp.format(since))]
        case .pauseType(let type, let duration): return lasting(["type": .string(type)], duration)
        case .resumeType(let type), .notifyOwner(let type): return ["type": .string(type)]
        case .raiseTimeout(let type, let to, let duration):
            return lasting(["type": .string(type), "to": .string(to.exactText)], duration)
        case .raiseLease(let to, let duration): return lasting(["to": .string(to.exactText)], duration)
        case .raiseMaxAttempts(let type, let to, let duration):
            return lasting(["type": .string(type), "to": .int(Int64(to))], duration)
        case .expireStaleApprovals(let olderThan): return ["older_than": .string(olderThan.exactText)]
        case .releaseStuck(let task): return ["task": .int(task)]
        case .runRemediation(let name, let argv):
            return ["name": .string(name), "argv": .array(argv.map { .string($0) })]
        }
    }

    /// `pause_type(type=send_email)`: how listings show it.
    public var summary: String {
        let fields = (parameters.objectValue ?? [:]).sorted { $0.key < $1.key }.map { key, value in
            "\(key)=\(value.stringValue ?? value.canonicalText)"
        }
        return "\(name)(\(fields.joined(separator: ", ")))"
    }

    /// Bounds every parameter is held to, whoever wrote the payload.
    static let timeoutRange = Interval.seconds(1)...Interval.days(1)
    static let leaseRange = Interval.seconds(10)...Interval.days(1)
    static let attemptsRange = 1...1000

    /// Reads an action from its name and parameters, refusing anything outside the catalog.
    public init(name: String, parameters: JSONValue) throws(RemediationError) {
        guard case .object(let fields) = parameters else { throw .invalid("parameters must be an object") }
        let allowed: Set<String>
        switch name {
        case "retry_dead": allowed = ["type", "since"]
        case "pause_type": allowed = ["type", "for"]
        case "resume_type", "notify_owner": allowed = ["type"]
        case "raise_timeout", "raise_max_attempts": allowed = ["type", "to", "for"]
        case "raise_lease": allowed = ["to", "for"]
        case "expire_stale_approvals": allowed = ["older_than"]
        case "release_stuck": allowed = ["task"]
        case "run_remediation": allowed = ["name", "argv"]
        default:
            throw .invalid(
                "\"\(Visible.text(name))\" is not in the catalog (\(Self.names.joined(separator: ", ")))")
        }
        if let extra = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw .invalid("\(name) takes no parameter \"\(Visible.text(extra))\"")
        }
        func text(_ key: String) throws(RemediationError) -> String {
            guard let value = fields[key]?.stringValue else { throw .invalid("\(name) needs \"\(key)\" as a string") }
            return value
        }
        func type() throws(RemediationError) -> String {
            let value = try text("type")
            guard TaskType.isValidName(value) else {
                throw .invalid("\(name): \"\(Visible.text(value))\" is no type name")
            }
            return value
        }
        func interval(_ key: String, in range: ClosedRange<Interval>) throws(RemediationError) -> Interval {
            guard let value = Interval(parsing: try text(key)), range.contains(value) else {
                throw .invalid("\(name) needs \"\(key)\" as a duration from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        func duration() throws(RemediationError) -> Interval? {
            fields["for"] == nil ? nil : try interval("for", in: Interval.minutes(1)...Interval.days(366))
        }
        func integer(_ key: String, in range: ClosedRange<Int64>) throws(RemediationError) -> Int64 {
            guard case .int(let value)? = fields[key], range.contains(value) else {
                throw .invalid(
                    "\(name) needs \"\(key)\" as a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        switch name {
        case "retry_dead":
            guard let since = Timestamp.parse(try text("since")) else {
                throw .invalid("retry_dead needs \"since\" as a time")
            }
            self = .retryDead(type: try type(), since: since)
        case "pause_type": self = .pauseType(type: try type(), for: try duration())
        case "resume_type": self = .resumeType(type: try type())
        case "notify_owner": self = .notifyOwner(type: try type())
        case "raise_timeout":
            self = .raiseTimeout(type: try type(), to: try interval("to", in: Self.timeoutRange), for: try duration())
        case "raise_lease": self = .raiseLease(to: try interval("to", in: Self.leaseRange), for: try duration())
        case "raise_max_attempts":
            let to = try integer("to", in: Int64(Self.attemptsRange.lowerBound)...Int64(Self.attemptsRange.upperBound))
            self = .raiseMaxAttempts(type: try type(), to: Int(to), for: try duration())
        case "expire_stale_approvals":
            self = .expireStaleApprovals(
                olderThan: try interval("older_than", in: Interval.minutes(1)...Interval.days(3660)))
        case "release_stuck": self = .releaseStuck(task: try integer("task", in: 1...Int64.max))
        default:
            let remediation = try text("name")
            guard TaskType.isValidName(remediation) else {
                throw .invalid("run_remediation: \"\(Visible.text(remediation))\" is no remediation name")
            }
            guard case .array(let items)? = fields["argv"], (1...64).contains(items.count) else {
                throw .invalid("run_remediation needs \"argv\" as 1 to 64 strings")
            }
            let argv = items.compactMap(\.stringValue)
            guard argv.count == items.count, !argv[0].isEmpty, argv.allSatisfy({ !$0.contains("\u{0}") }) else {
                throw .invalid("run_remediation needs \"argv\" as 1 to 64 strings")
            }
            self = .runRemediation(name: remediation, argv: argv)
        }
    }
}

/// A proposal's payload or parameters that the catalog refuses.
public enum RemediationError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): return "not a valid proposal: \(reason)"
        }
    }
}

/// A fix proposal: one catalog action, the finding it answers, and that finding's evidence. It
/// is the payload of an `apply_remediation` task, which the firewall rates dangerous.
public struct Proposal: Sendable, Equatable {
    public var action: RemediationAction
    public var finding: Finding
    /// The audit run and finding row it came from; nil before they are saved.
    public var runID: Int64?
    public var findingID: Int64?

    public init(action: RemediationAction, finding: Finding, runID: Int64? = nil, findingID: Int64? = nil) {
        (self.action, self.finding, self.runID, self.findingID) = (action, finding, runID, findingID)
    }

    /// The action and what it acts on, never the time nor which finding asked: an open proposal
    /// under the same key is not proposed twice (two findings asking for the same fix are one), and
    /// one that ended (rejected, applied, failed, expired) waits out the cooldown.
    public var key: String { action.name + "|" + action.target }

    /// The task's payload, canonical: what the operator approves.
    public var payload: JSONValue {
        [
            "action": .string(action.name),
            "parameters": action.parameters,
            "finding": .object([
                "kind": .string(finding.kind.rawValue),
                "severity": .string(finding.severity.rawValue),
                "subject": finding.subject.map { .string($0) } ?? .null,
                "title": .string(finding.title),
                "evidence": finding.storedEvidence,
                "audit_run": runID.map { .int($0) } ?? .null,
                "finding_id": findingID.map { .int($0) } ?? .null,
            ]),
        ]
    }

    /// Reads a proposal back from a task's payload.
    public init(payload text: String) throws(RemediationError) {
        guard let payload = try? JSONValue.parse(text) else { throw .invalid("the payload is not a JSON object") }
        try self.init(value: payload)
    }

    /// Reads a proposal back from a parsed payload.
    public init(value payload: JSONValue) throws(RemediationError) {
        guard case .object(let fields) = payload else { throw .invalid("the payload is not a JSON object") }
        if let extra = fields.keys.sorted().first(where: { !["action", "parameters", "finding"].contains($0) }) {
            throw .invalid("unexpected field \"\(Visible.text(extra))\"")
        }
        guard let name = fields["action"]?.stringValue else { throw .invalid("no action") }
        action = try RemediationAction(name: name, parameters: fields["parameters"] ?? [:])
        guard case .object(let finding)? = fields["finding"], let kindName = finding["kind"]?.stringValue,
            let kind = FindingKind(rawValue: kindName)
        else { throw .invalid("the finding needs a known kind") }
        var evidence = finding["evidence"]?.objectValue ?? [:]
        let tasks = evidence.removeValue(forKey: "tasks").flatMap { value -> [Int64]? in
            guard case .array(let items) = value else { return nil }
            return items.compactMap { if case .int(let id) = $0 { return id } else { return nil } }
        }
        self.finding = Finding(
            kind, Severity(rawValue: finding["severity"]?.stringValue ?? "") ?? .info,
            subject: finding["subject"]?.stringValue, title: finding["title"]?.stringValue ?? "",
            evidence: .object(evidence), tasks: tasks ?? [])
        if case .int(let run)? = finding["audit_run"] { runID = run }
        if case .int(let id)? = finding["finding_id"] { findingID = id }
    }
}

extension TaskType {
    /// The name of the built-in type whose tasks are fix proposals.
    public static let remediationTypeName = "apply_remediation"

    /// The built-in type of fix proposals: dangerous (a human approves each, signed), applied by a
    /// built-in handler and checked by a built-in verifier that re-evaluates the finding. Tried
    /// once: a fix that did not fix is not retried blindly.
    public static func applyRemediation(
        _ audit: AuditSettings, heal: HealSettings = HealSettings(), remediations: [String: RemediationCommand] = [:]
    ) -> TaskType {
        var type = TaskType(name: remediationTypeName, handler: .remediation)
        type.description = "A fix proposal from `autonomy audit`: one catalog action, approved by a human"
        type.owner = "operator"
        type.safety = .dangerous
        type.safetyDefaulted = false
        type.verify = [Verifier(kind: .finding)]
        type.retry.maxAttempts = 1
        type.timeout = .minutes(30)
        type.approvalExpiresAfter = audit.proposalsExpireAfter
        type.priority = 100
        if heal.enabled {
            type.autoApply = heal.autoApply
            type.declaredRemediations = remediations.mapValues(\.exec.argv)
        }
        return type
    }
}

/// The fixed catalog: which actions a finding may propose. Pure: the same findings, configuration
/// and overrides give the same proposals.
public enum RemediationCatalog {
    /// `configuration` is the one in effect (overrides applied): a raise starts from what runs now.
    public static func proposals(for findings: [Finding], configuration: Configuration, since: Int64) -> [Proposal] {
        let audit = configuration.audit
        let lasting = audit.overridesExpireAfter
        // A type whose handler or model is missing gains nothing from retries or resumption.
        let broken = Set(
            findings.filter { [.missingHandler, .tierWithoutModel].contains($0.kind) }.compactMap(\.subject))
        var proposals: [Proposal] = []
        var seen: Set<String> = []
        // One action on one target per run, for the worst finding that asks for it.
        func propose(_ action: RemediationAction, for finding: Finding) {
            if seen.insert(action.name + "|" + action.target).inserted {
                proposals.append(Proposal(action: action, finding: finding))
            }
        }
        func declared(_ name: String?) -> TaskType? { name.flatMap { configuration.taskTypes[$0] } }
        func notifyOwner(_ finding: Finding) {
            if let type = declared(finding.subject), type.owner != nil, !configuration.notify.channels.isEmpty {
                propose(.notifyOwner(type: type.name), for: finding)
            }
        }
        for finding in findings {
            let type = declared(finding.subject)
            switch finding.kind {
            case .deadTasks:
                guard let type else { break }
                if broken.contains(type.name) {
                    propose(.pauseType(type: type.name, for: lasting), for: finding)
                } else {
                    propose(.retryDead(type: type.name, since: since), for: finding)
                }
                notifyOwner(finding)
            case .missingHandler, .tierWithoutModel:
                if let type { propose(.pauseType(type: type.name, for: lasting), for: finding) }
            case .slower:
                guard let type, case .int(let p95)? = finding.evidence[path: "p95_ms"] else { break }
                let timeout = type.effectiveTimeout(configuration.worker)
                if Double(p95) >= Double(timeout.milliseconds) * 0.5,
                    let action = raisedTimeout(type, timeout, lasting)
                {
                    propose(action, for: finding)
                } else {
                    notifyOwner(finding)
                }
            case .failureSignature:
                guard let type, finding.evidence[path: "signature"]?.stringValue?.hasPrefix("timed out after") == true
                else {
                    break
                }
                if let action = raisedTimeout(type, type.effectiveTimeout(configuration.worker), lasting) {
                    propose(action, for: finding)
                }
            case .repeatedLeaseExpiry:
                let lease = configuration.worker.lease
                let to = min(RemediationAction.leaseRange.upperBound, Interval(milliseconds: lease.milliseconds * 2))
                if to > lease { propose(.raiseLease(to: to, for: lasting), for: finding) }
            case .inconclusiveVerifications:
                guard let type else { break }
                let to = min(RemediationAction.attemptsRange.upperBound, type.effectiveMaxAttempts + 2)
                if to > type.effectiveMaxAttempts {
                    propose(.raiseMaxAttempts(type: type.name, to: to, for: lasting), for: finding)
                }
            case .staleApproval:
                propose(.expireStaleApprovals(olderThan: audit.staleApproval), for: finding)
            case .stuckTask:
                // Recovery settles every stuck task at once: one proposal, named by the oldest.
                if let oldest = finding.tasks.first { propose(.releaseStuck(task: oldest), for: finding) }
            case .pausedType:
                if let type, !broken.contains(type.name) { propose(.resumeType(type: type.name), for: finding) }
            case .successRateDrop, .stoppedRunning, .costRise, .verificationFailuresRise, .verifierNeverPasses,
                .shelfware:
                notifyOwner(finding)
            case .ledgerBroken, .undeclaredType, .noOwner, .componentNamesUndeclaredType, .daysAtCap, .deferrals,
                .alertsFailing, .verifierNeverFails:
                break
            }
            // The operator's own fixes, declared for this kind of finding.
            for (name, remediation) in configuration.remediations.sorted(by: { $0.key < $1.key })
            where remediation.findings.contains(finding.kind)
                && (remediation.subjects.isEmpty || finding.subject.map(remediation.subjects.contains) == true)
            {
                propose(.runRemediation(name: name, argv: remediation.exec.argv), for: finding)
            }
        }
        return proposals
    }

    /// Twice the timeout, in whole minutes, within the catalog's bound; nil when it cannot rise.
    private static func raisedTimeout(_ type: TaskType, _ timeout: Interval, _ lasting: Interval?) -> RemediationAction?
    {
        let doubled = Interval(milliseconds: ((timeout.milliseconds * 2 + 59_999) / 60_000) * 60_000)
        let to = min(RemediationAction.timeoutRange.upperBound, doubled)
        return to > timeout ? .raiseTimeout(type: type.name, to: to, for: lasting) : nil
    }
}
