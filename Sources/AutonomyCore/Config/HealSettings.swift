import Foundation

/// The self-healing executor (`autonomy heal`): off by default, and trusted one (finding kind,
/// action) pair at a time. A proposal that matches an `auto_apply` entry is rated safe by the
/// firewall, so it runs without a human; the guardrails below decide whether it runs now.
public struct HealSettings: Sendable {
    /// While false, `heal` only reports, and no proposal is ever rated safe.
    public var enabled = false
    /// The pairs the operator trusts heal to apply on its own.
    public var autoApply: [AutoApply] = []
    /// How far back a heal cycle looks for findings (a fast subset of the audit's checks).
    public var window: Interval = .hours(1)
    /// How long after an automatic fix its finding is looked at again.
    public var settle: Interval = .minutes(30)
    /// A fix with nothing to judge it by (its type did not run since) is left unjudged this long.
    public var judgeWithin: Interval = .days(1)
    /// After `breakerFailures` fixes on one target that did not fix within `breakerWindow`,
    /// automatic fixes on that target stop until `heal reset TARGET` or `breakerCooldown` passes.
    public var breakerFailures = 2
    public var breakerWindow: Interval = .days(1)
    public var breakerCooldown: Interval = .days(1)
    /// At most this many automatic actions per hour and per day, for all targets together.
    public var maxPerHour = 3
    public var maxPerDay = 10
    /// When more than this fraction of the types active in the window are failing, and at least
    /// `systemicMinTypes` are active, something shared is broken: nothing automatic runs.
    public var systemicMaxFailing = 0.5
    public var systemicMinTypes = 3
    /// The same action on the same target runs again no sooner than this, doubling with each
    /// automatic run in the last `backoffMax` up to it.
    public var backoff: Interval = .hours(1)
    public var backoffMax: Interval = .days(1)

    public init() {}

    /// The finding kinds a heal cycle checks, and the actions heal may ever apply on its own for
    /// each. `stale_approval` is not here: expiring approval requests decides on them, which heal
    /// never does.
    public static let trustable: [FindingKind: [String]] = [
        .failureSignature: ["raise_timeout", "run_remediation"],
        .deadTasks: ["retry_dead", "pause_type", "notify_owner", "run_remediation"],
        .repeatedLeaseExpiry: ["raise_lease", "run_remediation"],
        .inconclusiveVerifications: ["raise_max_attempts", "run_remediation"],
        .stuckTask: ["release_stuck", "run_remediation"],
        .missingHandler: ["pause_type", "run_remediation"],
        .tierWithoutModel: ["pause_type", "run_remediation"],
        .pausedType: ["resume_type", "run_remediation"],
    ]

    /// Findings about the system as a whole, not a type: their entries name no types.
    static let systemWide: Set<FindingKind> = [.stuckTask]

    /// How long the same action on the same target waits after `runs` automatic runs of it.
    public func backoff(afterRuns runs: Int) -> Interval {
        guard runs > 0 else { return .zero }
        let factor = Int64(1) << Int64(min(runs - 1, 20))
        return Interval(milliseconds: min(backoffMax.milliseconds, backoff.milliseconds * factor))
    }
}

/// One pair the operator trusts: proposals for this kind of finding, with this action, about one
/// of these types, run without approval.
public struct AutoApply: Sendable, Equatable {
    public var finding: FindingKind
    public var action: String
    /// The types it covers; empty for a finding about the system as a whole (`stuck_task`).
    public var types: [String]
    /// For `run_remediation`: the one declared remediation it trusts.
    public var remediation: String?

    public init(finding: FindingKind, action: String, types: [String], remediation: String? = nil) {
        (self.finding, self.action, self.types, self.remediation) = (finding, action, types, remediation)
    }

    /// `failure_signature → raise_timeout for send_email`.
    public var summary: String {
        "\(finding.rawValue) → \(action)\(remediation.map { " \($0)" } ?? "")"
            + (types.isEmpty ? "" : " for \(types.joined(separator: ", "))")
    }

    /// Whether this entry covers the proposal: its finding kind, its action, and the type both are
    /// about. A crafted payload whose action names another type than its finding matches nothing.
    func covers(_ proposal: Proposal) -> Bool {
        guard proposal.finding.kind == finding, proposal.action.name == action else { return false }
        if case .runRemediation(let name, _) = proposal.action, name != remediation { return false }
        guard let subject = proposal.finding.subject else { return types.isEmpty }
        if let type = proposal.action.type, type != subject { return false }
        return types.contains(subject)
    }
}

extension HealSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled
        case autoApply = "auto_apply"
        case window, settle
        case judgeWithin = "judge_within"
        case breaker
        case maxActions = "max_actions"
        case systemic, backoff
    }

    enum BreakerKeys: String, CodingKey, CaseIterable { case failures, window, cooldown }
    enum RateKeys: String, CodingKey, CaseIterable {
        case perHour = "per_hour"
        case perDay = "per_day"
    }
    enum SystemicKeys: String, CodingKey, CaseIterable {
        case maxFailing = "max_failing"
        case minTypes = "min_types"
    }
    enum BackoffKeys: String, CodingKey, CaseIterable { case initial, max }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        enabled = try container.decodeIfPresent(Bool.self, forKey: .enabled) ?? false
        autoApply = try container.decodeIfPresent([AutoApply].self, forKey: .autoApply) ?? []
        window = try container.interval(.window, default: window, from: .minutes(5), to: .days(7))
        settle = try container.interval(.settle, default: settle, from: .minutes(1), to: .days(7))
        judgeWithin = try container.interval(.judgeWithin, default: judgeWithin, from: .minutes(10), to: .days(30))
        if container.contains(.breaker) {
            let breaker = try container.nestedContainer(keyedBy: BreakerKeys.self, forKey: .breaker)
            breakerFailures = try breaker.decode(
                .failures, default: breakerFailures, in: 1...1000, expected: "expected 1 to 1000")
            breakerWindow = try breaker.interval(.window, default: breakerWindow, from: .minutes(10), to: .days(366))
            breakerCooldown = try breaker.interval(
                .cooldown, default: breakerCooldown, from: .minutes(10), to: .days(366))
        }
        if container.contains(.maxActions) {
            let rate = try container.nestedContainer(keyedBy: RateKeys.self, forKey: .maxActions)
            maxPerHour = try rate.decode(.perHour, default: maxPerHour, in: 0...10_000, expected: "expected 0 to 10000")
            maxPerDay = try rate.decode(.perDay, default: maxPerDay, in: 0...100_000, expected: "expected 0 to 100000")
        }
        if container.contains(.systemic) {
            let systemic = try container.nestedContainer(keyedBy: SystemicKeys.self, forKey: .systemic)
            systemicMaxFailing = try systemic.decode(
                .maxFailing, default: systemicMaxFailing, in: 0...1, expected: "expected a fraction from 0 to 1")
            systemicMinTypes = try systemic.decode(
                .minTypes, default: systemicMinTypes, in: 1...10_000, expected: "expected 1 to 10000")
        }
        if container.contains(.backoff) {
            let backoff = try container.nestedContainer(keyedBy: BackoffKeys.self, forKey: .backoff)
            self.backoff = try backoff.interval(.initial, default: self.backoff, from: .minutes(1), to: .days(30))
            backoffMax = try backoff.interval(.max, default: backoffMax, from: .minutes(1), to: .days(366))
            if backoffMax < self.backoff {
                throw DecodingError.dataCorruptedError(
                    forKey: .max, in: backoff, debugDescription: "must not be shorter than heal.backoff.initial")
            }
        }
    }

    /// Every `auto_apply` type must be declared, and so must a trusted remediation, for that
    /// finding kind: an entry that names what the map does not know would sit there until someone
    /// adds it.
    func checkTypes(
        declared: [String: TaskType], remediations: [String: RemediationCommand], path: [any CodingKey]
    ) throws {
        for (index, entry) in autoApply.enumerated() {
            if let name = entry.remediation, remediations[name]?.findings.contains(entry.finding) != true {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: path + [
                            CodingKeys.autoApply, ConfigKey(index: index), AutoApply.CodingKeys.remediation,
                        ],
                        debugDescription:
                            "\(name) is not declared under remediations for \(entry.finding.rawValue) findings"))
            }
            for type in entry.types where declared[type] == nil {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: path + [CodingKeys.autoApply, ConfigKey(index: index), AutoApply.CodingKeys.types],
                        debugDescription: "\(type) is not a declared task type"))
            }
        }
    }
}

extension AutoApply: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case finding, action, types, remediation }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kinds = HealSettings.trustable.keys.map(\.rawValue).sorted()
        guard let name = try container.decodeIfPresent(String.self, forKey: .finding) else {
            throw missingKey(
                CodingKeys.finding, at: decoder.codingPath,
                "missing: the finding kind (one of: \(kinds.joined(separator: ", ")))")
        }
        guard let kind = FindingKind(rawValue: name), let actions = HealSettings.trustable[kind] else {
            let why =
                name == FindingKind.staleApproval.rawValue
                ? "heal never acts on approval requests on its own" : "heal does not check \"\(name)\" findings"
            throw DecodingError.dataCorruptedError(
                forKey: .finding, in: container, debugDescription: "\(why) (one of: \(kinds.joined(separator: ", ")))")
        }
        guard let action = try container.decodeIfPresent(String.self, forKey: .action) else {
            throw missingKey(
                CodingKeys.action, at: decoder.codingPath,
                "missing: the action to trust for \(name) (one of: \(actions.joined(separator: ", ")))")
        }
        guard actions.contains(action) else {
            let why =
                RemediationAction.names.contains(action)
                ? "\(name) findings never propose \(action) on their own"
                : "\"\(action)\" is not in the catalog"
            throw DecodingError.dataCorruptedError(
                forKey: .action, in: container,
                debugDescription: "\(why) (for \(name): \(actions.joined(separator: ", ")))")
        }
        let types = try container.decodeIfPresent([String].self, forKey: .types) ?? []
        if HealSettings.systemWide.contains(kind) {
            guard types.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .types, in: container,
                    debugDescription: "\(name) findings are about the system, not a type: leave types out")
            }
        } else if types.isEmpty {
            throw DecodingError.dataCorruptedError(
                forKey: .types, in: container,
                debugDescription: "name the task types you trust this for, e.g. [\"send_email\"] (deny by default)")
        }
        let remediation = try container.decodeIfPresent(String.self, forKey: .remediation)
        if action == "run_remediation" {
            guard remediation != nil else {
                throw missingKey(
                    CodingKeys.remediation, at: decoder.codingPath,
                    "missing: the name of the one declared remediation this entry trusts")
            }
        } else if remediation != nil {
            throw DecodingError.dataCorruptedError(
                forKey: .remediation, in: container,
                debugDescription: "only a run_remediation entry names a remediation")
        }
        self.init(finding: kind, action: action, types: types, remediation: remediation)
    }
}
