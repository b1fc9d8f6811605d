import Foundation
import GRDB

/// Why heal may not apply a fix on its own now. Checked in the claim's transaction, so two
/// processes claiming at once see each other's actions.
public enum HealRefusal: Sendable, Equatable, CustomStringConvertible {
    /// Too many types failing at once (since then): something shared is broken. `next` is when
    /// the next heal cycle looks again.
    case systemicStop(since: Int64, next: Int64)
    /// Fixes on this target did not fix; automatic ones wait for `heal reset` or the cool-down.
    case breakerOpen(target: String, until: Int64)
    /// `heal.max_actions` reached for the hour or the day.
    case rateLimit(count: Int, limit: Int, per: String, until: Int64)
    /// The same action on the same target ran on its own too recently.
    case backoff(until: Int64)

    /// When a passing refusal lifts (a claim then tries again); nil for an open breaker, which
    /// waits for a human.
    public var until: Int64? {
        switch self {
        case .systemicStop(_, let next): return next
        case .breakerOpen: return nil
        case .rateLimit(_, _, _, let until), .backoff(let until): return until
        }
    }

    /// Short and stable, for the ledger.
    public var code: String {
        switch self {
        case .systemicStop: return "systemic_stop"
        case .breakerOpen: return "breaker_open"
        case .rateLimit: return "rate_limit"
        case .backoff: return "backoff"
        }
    }

    public var description: String {
        switch self {
        case .systemicStop(let since, _):
            return "too many types are failing at once since \(Timestamp.format(since)): nothing automatic runs"
        case .breakerOpen(let target, let until):
            return
                "the breaker for \(target) is open until \(Timestamp.format(until)) (or `autonomy heal reset \(target)`)"
        case .rateLimit(let count, let limit, let per, _):
            return "\(count) automatic actions in the last \(per) reached heal.max_actions.per_\(per) (\(limit))"
        case .backoff(let until):
            return
                "the same action on the same target ran on its own recently: not again before \(Timestamp.format(until))"
        }
    }
}

extension HealRefusal {
    /// The ledger row's detail when a claim postpones a proposal to `until` (a passing refusal).
    func postponement(of proposal: Proposal, until: Int64) -> JSONValue {
        [
            "why": .string(code), "until": .string(Timestamp.format(until)), "action": .string(proposal.action.name),
            "target": .string(proposal.healTarget),
        ]
    }

    /// The rating of a proposal heal.auto_apply covers while its breaker is open: a human decides.
    var sendsToHuman: Rating {
        Rating(safety: .dangerous, reasons: ["heal.auto_apply covers it, but \(self): a human decides"])
    }
}

extension Proposal {
    /// What a breaker is kept for: the type it is about, else the system-wide finding's kind.
    public var healTarget: String { action.type ?? finding.subject ?? finding.kind.rawValue }
}

extension Database {
    /// Why an automatic fix may not run now, or nil when every guardrail allows it. `planned`
    /// counts actions this heal cycle already decided on but has not claimed yet.
    func healRefusal(_ proposal: Proposal, heal: HealSettings, now: Int64, planned: Int = 0) throws -> HealRefusal? {
        HealRefusal.evaluate(
            try guardrailFacts(proposal, heal: heal, now: now), target: proposal.healTarget, heal: heal, now: now,
            planned: planned)
    }

    /// The guardrails' counts for a proposal (`HealRefusal.evaluate`).
    func guardrailFacts(_ proposal: Proposal, heal: HealSettings, now: Int64) throws -> GuardrailFacts {
        func counted(_ sql: String, _ arguments: StatementArguments) throws -> (Int, Int64?) {
            let row = try Row.fetchOne(self, sql: sql, arguments: arguments)
            return (try row?.decode(Int.self, atIndex: 0) ?? 0, try row?.decode(Int64?.self, atIndex: 1) ?? nil)
        }
        let recent = "SELECT COUNT(*), MIN(applied_at) FROM heal_actions WHERE automatic = 1 AND applied_at > ?"
        return GuardrailFacts(
            stopSince: try Int64.fetchOne(
                self, sql: "SELECT started_at FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1"),
            breakerUntil: try Int64.fetchOne(
                self,
                sql:
                    "SELECT MAX(closes_at) FROM heal_breakers WHERE target = ? AND closed_at IS NULL AND closes_at > ?",
                arguments: [proposal.healTarget, now]),
            lastHour: try counted(recent, [now - Interval.hours(1).milliseconds]),
            lastDay: try counted(recent, [now - Interval.days(1).milliseconds]),
            sameKey: try counted(
                "SELECT COUNT(*), MAX(applied_at) FROM heal_actions WHERE automatic = 1 AND key = ? AND applied_at > ?",
                [proposal.key, now - heal.backoffMax.milliseconds]))
    }

    /// Records a claimed fix proposal: the action, its target, and whether it runs without a
    /// human (then with a `heal_applied` ledger row naming the entry that allowed it).
    func recordHealAction(task: Int64, payload: String, automatic: Bool, rating: Rating?, now: Int64) throws {
        guard let proposal = try? Proposal(payload: payload) else { return }  // the handler fails it
        try execute(
            sql: """
                INSERT OR REPLACE INTO heal_actions (task_id, key, target, action, automatic, applied_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
            arguments: [task, proposal.key, proposal.healTarget, proposal.action.name, automatic, now])
        guard automatic else { return }
        try appendLedger(
            .healApplied, at: now, taskID: task, type: TaskType.remediationTypeName,
            detail: [
                "action": .string(proposal.action.name), "target": .string(proposal.healTarget),
                "finding": .string(proposal.finding.kind.rawValue),
                "allowed_by": .string(rating?.reasons.first ?? "heal.auto_apply"),
            ])
    }
}

/// What becomes of a fix proposal the firewall let run on its own (`Firewall.admitTrustedFix`).
enum TrustedFix {
    /// Run it as `admission` says (or hold or block it), rated `rating` for the record.
    case admitted(Admission, rating: Rating?)
    /// A passing guardrail holds it: it waits until then, not for a human.
    case postponed(Proposal, HealRefusal, until: Int64)
}

extension Firewall {
    /// A fix proposal the firewall let run on its own (`heal.auto_apply` covers it), on both
    /// engines: a human's signed approval, if there is one, releases it (it is then not heal's own
    /// act); otherwise it runs only while every guardrail allows (`refusal`), waits while a passing
    /// one holds, and goes to a human, with a signed approval, while its target's breaker is open.
    static func admitTrustedFix(
        _ task: AdmissionCandidate, type: TaskType, verifier: DecisionVerifier, now: Int64,
        approval findApproval: (_ payloadSHA256: String) throws -> ApprovalEvidence?,
        refusal: (Proposal) throws -> HealRefusal?
    ) rethrows -> TrustedFix {
        let rating = (try? JSONValue.parse(task.payload)).map(type.rate)
        let approved = try admit(
            task, type: type, rating: Rating(safety: .dangerous, reasons: []), verifier: verifier, now: now,
            approval: findApproval)
        if case .run(let approval?, let signedBy) = approved {
            return .admitted(.run(approvalID: approval, signedBy: signedBy), rating: rating)
        }
        guard let proposal = try? Proposal(payload: task.payload), let refusal = try refusal(proposal) else {
            return .admitted(.run(approvalID: nil, signedBy: nil), rating: rating)
        }
        if let until = refusal.until { return .postponed(proposal, refusal, until: until) }
        let human = refusal.sendsToHuman
        return .admitted(
            try admit(task, type: type, rating: human, verifier: verifier, now: now, approval: findApproval),
            rating: human)
    }
}
