import Foundation

// What a heal cycle decides, as pure functions of what it read: the same for both engines, which
// differ only in how they read the facts (`ProposalHistory`, `GuardrailFacts`) and write the steps.

/// The guardrails' counts for one proposal, as they stand in the reading transaction.
struct GuardrailFacts: Sendable {
    /// The systemic stop in force, since then.
    var stopSince: Int64?
    /// The latest end of an open breaker on the proposal's target.
    var breakerUntil: Int64?
    /// Automatic actions in the last hour and the last day, with the oldest of each.
    var lastHour: (count: Int, oldest: Int64?)
    var lastDay: (count: Int, oldest: Int64?)
    /// Automatic actions under the same key within `heal.backoff_max`, and the latest.
    var sameKey: (runs: Int, last: Int64?)
}

extension HealRefusal {
    /// Why an automatic fix may not run now, or nil when every guardrail allows it. `planned`
    /// counts actions this heal cycle already decided on but has not claimed yet.
    static func evaluate(
        _ facts: GuardrailFacts, target: String, heal: HealSettings, now: Int64, planned: Int = 0
    ) -> HealRefusal? {
        if let since = facts.stopSince {
            return .systemicStop(since: since, next: now + Interval.minutes(15).milliseconds)
        }
        if let until = facts.breakerUntil { return .breakerOpen(target: target, until: until) }
        // Counted over the last hour and day; the limit lifts when the oldest counted action leaves.
        let limits = [
            (Interval.hours(1), heal.maxPerHour, "hour", facts.lastHour),
            (Interval.days(1), heal.maxPerDay, "day", facts.lastDay),
        ]
        for (window, limit, per, seen) in limits where seen.count + planned >= limit {
            return .rateLimit(
                count: seen.count + planned, limit: limit, per: per,
                until: max((seen.oldest ?? now) + window.milliseconds, now + Interval.minutes(1).milliseconds))
        }
        if let last = facts.sameKey.last {
            let until = last + heal.backoff(afterRuns: facts.sameKey.runs).milliseconds
            if until > now { return .backoff(until: until) }
        }
        return nil
    }

    /// The detail of the `heal_skipped` ledger row.
    func skippedDetail(_ proposal: Proposal) -> JSONValue {
        [
            "action": .string(proposal.action.name), "target": .string(proposal.healTarget),
            "finding": .string(proposal.finding.kind.rawValue), "why": .string(code),
        ]
    }
}

/// What a heal cycle read about one proposal's key before deciding on it.
struct ProposalHistory: Sendable {
    /// The proposal still open under the key.
    var open: Int64?
    /// One a human rejected (or let expire, or cancelled) within `audit.cooldown`.
    var ended: (task: Int64, state: TaskState)?
    /// The last automatic action under the key, and whether its finding came back since (nil:
    /// nothing to judge it by yet).
    var applied: (task: Int64, at: Int64, judged: (HealJudgement.Outcome, String)?)?
    var guardrails: GuardrailFacts
}

/// One write a heal cycle's decisions call for, in order.
enum HealStep {
    /// A guardrail stopped a trusted proposal: a `heal_skipped` ledger row.
    case skip(Proposal, HealRefusal)
    /// Enqueue it; the decision at this index (none in a rehearsal) gets its task.
    case enqueue(Proposal, decision: Int?)
}

/// How a settled automatic fix is judged from its task, before any look at the ledger.
enum SettledFix {
    /// Not settled yet: judged by a later cycle.
    case wait
    case judged(HealJudgement.Outcome, String)
    /// Done and settled: judged by whether its finding came back since `since`.
    case recurrence(Proposal, since: Int64)

    static func of(
        state: TaskState, finished: Int64?, payload: String, error: String?, heal: HealSettings, now: Int64
    ) -> SettledFix {
        switch state {
        case .done:
            guard let finished, finished + heal.settle.milliseconds <= now else { return .wait }
            guard let proposal = try? Proposal(payload: payload) else {
                return .judged(.noEvidence, "its payload was pruned")
            }
            // An alert calls a human; it fixes nothing, so it is not judged as a fix.
            if case .notifyOwner = proposal.action {
                return .judged(.noEvidence, "notify_owner calls a human: not judged")
            }
            // From when the fix finished: attempts claimed while it ran still had the old settings.
            return .recurrence(proposal, since: finished)
        case .dead:
            // The signature, not the text: a command's error may quote what it printed.
            return .judged(.failed, "the fix itself failed: \(error.map(FailureSignature.of) ?? "no error recorded")")
        case .cancelled, .rejected, .expired, .blocked:
            return .judged(.noEvidence, "it ended \(state.rawValue)")
        case .queued, .awaitingApproval, .running, .verifying:
            return .wait
        }
    }
}

extension HealJudgement {
    /// The detail of its `heal_judged` ledger row.
    var ledgerDetail: JSONValue {
        ["action": .string(action), "target": .string(target), "outcome": .string(outcome.rawValue)]
    }
}

extension AutonomyStore {
    /// The proposals whose history a cycle reads: trusted by `heal.auto_apply` while heal is on.
    /// The others are decided without it (`healPlan`).
    static func trustedProposals(_ catalog: [Proposal], configuration: Configuration) -> [Proposal] {
        guard configuration.heal.enabled, let builtIn = configuration.taskType(named: TaskType.remediationTypeName)
        else { return [] }
        return catalog.filter { builtIn.rate($0.payload).safety == .safe }
    }

    /// Decides on every proposal of `catalog` (one per key: `RemediationCatalog.proposals`) from
    /// what was read (`histories`, by key), adding a decision for each to `report`, and returns the
    /// writes, in order. `planned` counts trusted proposals already due.
    static func healPlan(
        _ report: inout HealReport, catalog: [Proposal], histories: [String: ProposalHistory],
        configuration: Configuration, acting: Bool, planned: Int, now: Int64
    ) -> [HealStep] {
        let heal = configuration.heal
        // What the firewall would say with heal on, to tell a disabled heal what it would do.
        var trusting = configuration
        trusting.heal.enabled = true
        guard let builtIn = trusting.taskType(named: TaskType.remediationTypeName) else { return [] }
        var planned = planned
        var steps: [HealStep] = []
        for proposal in catalog {
            let rating = builtIn.rate(proposal.payload)
            guard rating.safety == .safe else {
                report.decisions.append(
                    HealDecision(
                        .notTrusted, proposal,
                        reason: (rating.reasons.first ?? "") + "; `autonomy audit` proposes it for approval"))
                continue
            }
            guard heal.enabled else {
                report.decisions.append(
                    HealDecision(
                        .disabled, proposal,
                        reason: "heal.enabled is false (\(rating.reasons.first ?? "auto_apply covers it"))"))
                continue
            }
            guard let history = histories[proposal.key] else { continue }
            if let open = history.open {
                report.decisions.append(HealDecision(.open, proposal, task: open, reason: "one at a time"))
                continue
            }
            // A human said no (or let it go): that stands for audit.cooldown.
            if let ended = history.ended {
                report.decisions.append(
                    HealDecision(
                        .rejected, proposal, task: ended.task,
                        reason:
                            "task \(ended.task) was \(ended.state.rawValue) within audit.cooldown (\(configuration.audit.cooldown))"
                    ))
                continue
            }
            // Applied before: again only if the finding came back after it (a fix that did not help).
            if let applied = history.applied, applied.judged?.0 != .didNotFix {
                let since =
                    applied.judged == nil ? "what it did has not settled yet" : "the finding has not come back since"
                report.decisions.append(
                    HealDecision(
                        .alreadyApplied, proposal, task: applied.task,
                        reason: "task \(applied.task) applied it at \(Timestamp.format(applied.at)), and \(since)"))
                continue
            }
            if let refusal = HealRefusal.evaluate(
                history.guardrails, target: proposal.healTarget, heal: heal, now: now, planned: planned)
            {
                report.decisions.append(HealDecision(.skipped, proposal, reason: refusal.description))
                steps.append(.skip(proposal, refusal))
                continue
            }
            planned += 1
            // Rehearsed, the task is rolled back: its id would be another, so none is told.
            report.decisions.append(
                HealDecision(acting ? .applied : .wouldApply, proposal, reason: rating.reasons.first ?? ""))
            steps.append(.enqueue(proposal, decision: acting ? report.decisions.count - 1 : nil))
        }
        return steps
    }
}
