import Foundation
import PostgresNIO

// The heal cycle on PostgreSQL (`AutonomyStore.healCycle`): the same checks over every host's
// rows, the same judgements, breakers, systemic stop and decisions, on the database's clock. The
// analysis is shared (`AutonomyStore.healFindings`, `recurred`, `judged`, `HealRefusal`); what is
// written once per engine is how each step reads and writes its rows.

extension PostgresStore {
    /// A rehearsed cycle (heal disabled, or `--dry-run`): its report, and its transaction rolled back.
    private struct Rehearsal: Error {
        var report: HealReport
    }

    /// One heal cycle up to the point where fixes run (see `AutonomyStore.healCycle`). The window
    /// is read first, without the ledger's lock; the cycle then runs in one transaction holding it,
    /// so two hosts' cycles never decide at once. Nothing is kept when heal is disabled or `dryRun`.
    public func healCycle(loaded file: LoadedConfiguration, dryRun: Bool) async throws -> HealReport {
        let heal = file.configuration.heal
        let acting = heal.enabled && !dryRun
        let (loaded, findings, systemic, now) = try await read("heal: check the last window") { transaction in
            let now = transaction.now
            var loaded = file
            loaded.configuration = file.configuration.applying(try await transaction.activeOverrides())
            let start = now - heal.window.milliseconds
            var facts = AuditFacts(tally: try await transaction.tally([start - (now - start), start, now]))
            try await transaction.readErrors(into: &facts)
            try await transaction.readStuck(loaded.configuration.audit, into: &facts)
            let (findings, systemic) = AutonomyStore.healFindings(loaded, facts, start: start)
            return (loaded, findings, systemic, now)
        }
        let start = now - heal.window.milliseconds
        do {
            return try await write("heal") { transaction in
                var report = HealReport(
                    enabled: heal.enabled, dryRun: dryRun, windowStart: ISOTime(start), windowEnd: ISOTime(now),
                    findings: findings, systemic: systemic)
                report.breakersClosed = try await transaction.breakers(open: false)
                for breaker in report.breakersClosed {
                    try await transaction.closeBreaker(breaker, by: "cool-down", at: breaker.closesAt.milliseconds)
                }
                try await transaction.recordSystemic(&report, configuration: loaded.configuration)
                try await transaction.judgeSettled(&report, loaded: loaded)
                let rehearsed = try await self.decide(
                    &report, loaded: loaded, acting: acting, start: start, transaction)
                report.breakersOpen = try await transaction.breakers(open: true)
                report.due = try await transaction.rows(
                    """
                    SELECT id FROM tasks WHERE type = \(TaskType.remediationTypeName) AND state = 'queued'
                      AND run_at <= \(transaction.now) ORDER BY priority DESC, id
                    """
                ).map { try $0.decode(Int64.self) }.filter { !rehearsed.contains($0) }
                guard acting else { throw Rehearsal(report: report) }
                return report
            }
        } catch let rehearsal as Rehearsal {
            return rehearsal.report
        }
    }

    /// Decides on every proposal the findings make (`AutonomyStore.healPlan`) and writes what it
    /// calls for; returns the tasks enqueued only in a rehearsal.
    private func decide(
        _ report: inout HealReport, loaded: LoadedConfiguration, acting: Bool, start: Int64,
        _ transaction: PostgresTransaction
    ) async throws -> [Int64] {
        let configuration = loaded.configuration
        let now = transaction.now
        let catalog = RemediationCatalog.proposals(for: report.findings, configuration: configuration, since: start)
        var histories: [String: ProposalHistory] = [:]
        for proposal in AutonomyStore.trustedProposals(catalog, configuration: configuration)
        where histories[proposal.key] == nil {
            histories[proposal.key] = try await transaction.history(of: proposal, loaded: loaded)
        }
        // Trusted proposals already due (the weekly audit's) are claimed first, by the same drain.
        let planned =
            try await transaction.rows(
                """
                SELECT count(*)::bigint FROM tasks t WHERE t.type = \(TaskType.remediationTypeName)
                  AND t.state = 'queued' AND t.run_at <= \(now)
                  AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.task_id = t.id AND a.state = 'approved')
                """
            ).first?.decode(Int.self) ?? 0
        let steps = AutonomyStore.healPlan(
            &report, catalog: catalog, histories: histories, configuration: configuration, acting: acting,
            planned: planned, now: now)
        var saved: (run: Int64, findings: [Int64])?
        var rehearsed: [Int64] = []
        for step in steps {
            switch step {
            case .skip(let proposal, let refusal):
                try await transaction.appendLedger(
                    .healSkipped, taskID: nil, type: proposal.action.type ?? proposal.finding.subject,
                    detail: refusal.skippedDetail(proposal), notes: ["reason": refusal.description])
            case .enqueue(var proposal, let decision):
                if saved == nil {
                    let headline = report.runHeadline(window: configuration.heal.window)
                    saved = try await transaction.saveRun(
                        report.findings, headline: headline, source: "heal", start: start, end: now)
                }
                guard let saved, let index = report.findings.firstIndex(of: proposal.finding) else { continue }
                (proposal.runID, proposal.findingID) = (saved.run, saved.findings[index])
                let outcome = try await enqueue(
                    proposal, configuration: configuration, transaction, source: "heal", cooldown: false)
                if let decision { report.decisions[decision].task = outcome.task }
                if !acting { rehearsed.append(outcome.task) }
            }
        }
        return rehearsed
    }
}

extension PostgresTransaction {
    /// What the cycle knows of a trusted proposal's key (`AutonomyStore.history`).
    nonisolated(nonsending) func history(of proposal: Proposal, loaded: LoadedConfiguration) async throws
        -> ProposalHistory
    {
        let configuration = loaded.configuration
        var history = ProposalHistory(guardrails: try await guardrailFacts(proposal, heal: configuration.heal))
        history.open = try await openProposal(key: proposal.key)
        history.ended = try await endedProposal(
            key: proposal.key, in: [.rejected, .cancelled, .expired],
            since: now - configuration.audit.cooldown.milliseconds)
        if let (task, applied, since, result) = try await rows(
            """
            SELECT h.task_id, h.applied_at, coalesce(t.finished_at, h.applied_at), t.result
            FROM heal_actions h JOIN tasks t ON t.id = h.task_id
            WHERE h.key = \(proposal.key) AND h.automatic = 1 ORDER BY h.applied_at DESC LIMIT 1
            """
        ).first?.decode((Int64, Int64, Int64, String?).self) {
            history.applied = (
                task, applied,
                try await recurrence(proposal, since: since, result: result, loaded: loaded, heal: configuration.heal)
            )
        }
        return history
    }

    /// The error notes of the tally's failed attempts (`Database.readErrors`).
    nonisolated(nonsending) func readErrors(into facts: inout AuditFacts) async throws {
        let failed = facts.tally.failures.map(\.ledgerID)
        for row in try await rows(
            """
            SELECT n.ledger_id, n.text, l.detail::jsonb ->> 'error_sha256' FROM ledger_notes n
            JOIN ledger l ON l.id = n.ledger_id WHERE n.ledger_id = ANY(\(failed)) AND n.field = 'error'
            """)
        {
            let (id, text, chained) = try row.decode((Int64, String, String?).self)
            if let text = LedgerChain.heldNote(text, chained: chained) { facts.errors[id] = text }
        }
    }

    /// Starts or ends the systemic stop as the cycle's health says (`AutonomyStore.recordSystemic`).
    nonisolated(nonsending) func recordSystemic(_ report: inout HealReport, configuration: Configuration)
        async throws
    {
        let stop = try await rows("SELECT id FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1").first?
            .decode(Int64.self)
        var health = report.systemic
        health.stopped = stop != nil
        if health.startsStop, stop == nil {
            (health.stopped, health.change) = (true, "started")
            let reason = health.stopReason(window: configuration.heal.window)
            try await query("INSERT INTO heal_stops (started_at, reason) VALUES (\(now), \(reason))")
            try await appendLedger(.healStopped, taskID: nil, type: nil, detail: health.ledgerDetail)
            try await queueNotification(.healStopped, taskID: nil, notify: configuration.notify)
        } else if health.endsStop, let stop {
            (health.stopped, health.change) = (false, "ended")
            try await query("UPDATE heal_stops SET ended_at = \(now) WHERE id = \(stop)")
            try await appendLedger(.healResumed, taskID: nil, type: nil, detail: health.ledgerDetail)
        }
        report.systemic = health
    }

    /// Judges the automatic fixes whose task ended and settled (`AutonomyStore.judgeSettled`).
    nonisolated(nonsending) func judgeSettled(_ report: inout HealReport, loaded: LoadedConfiguration) async throws {
        let heal = loaded.configuration.heal
        let settled = try await rows(
            """
            SELECT h.task_id, h.target, h.action, t.state, t.finished_at, t.payload, t.result, t.last_error
            FROM heal_actions h JOIN tasks t ON t.id = h.task_id
            WHERE h.automatic = 1 AND h.outcome IS NULL ORDER BY h.applied_at
            """)
        for row in settled {
            let (task, target, action, stateName, finished, payload, result, error) = try row.decode(
                (Int64, String, String, String, Int64?, String, String?, String?).self)
            guard let state = TaskState(rawValue: stateName) else { continue }
            var judgement = HealJudgement(task: task, action: action, target: target, outcome: .fixed, reason: "")
            switch SettledFix.of(state: state, finished: finished, payload: payload, error: error, heal: heal, now: now)
            {
            case .wait: continue
            case .judged(let outcome, let reason): (judgement.outcome, judgement.reason) = (outcome, reason)
            case .recurrence(let proposal, let since):
                guard
                    let (outcome, reason) = try await recurrence(
                        proposal, since: since, result: result, loaded: loaded, heal: heal)
                else { continue }  // nothing to judge it by yet
                (judgement.outcome, judgement.reason) = (outcome, reason)
            }
            judgement.reverted = try await settle(judgement, configuration: loaded.configuration)
            if let opened = try await tripBreaker(judgement, heal: heal, notify: loaded.configuration.notify) {
                report.breakersOpened.append(opened)
            }
            report.judged.append(judgement)
        }
    }

    /// Whether the finding a fix answered came back after it (`AutonomyStore.recurrence`).
    nonisolated(nonsending) func recurrence(
        _ proposal: Proposal, since applied: Int64, result: String?, loaded: LoadedConfiguration, heal: HealSettings
    ) async throws -> (HealJudgement.Outcome, String)? {
        let finding = proposal.finding
        let late = now >= applied + heal.judgeWithin.milliseconds
        if case .retryDead = proposal.action, !late {
            // The tasks it sent back settle first: one still retrying has not told yet.
            var sent: [Int64] = []
            if case .array(let items)? = (try? result.map(JSONValue.parse))??[path: "retried"] {
                for case .int(let id) in items { sent.append(id) }
            }
            let pending =
                try await rows(
                    """
                    SELECT count(*)::bigint FROM tasks WHERE id = ANY(\(sent)::bigint[])
                      AND NOT (state = ANY(\(TaskState.finalStates.map(\.rawValue))::text[]))
                    """
                ).first?.decode(Int.self) ?? 0
            if pending > 0 { return nil }
        }
        if finding.kind == .stuckTask {
            var facts = AuditFacts(tally: LedgerTally(windows: [[:]]))
            try await readStuck(loaded.configuration.audit, into: &facts)
            let stuck = AutonomyStore.stuck(loaded.configuration.audit, facts).first { $0.kind == .stuckTask }
            return stuck.map { (.didNotFix, "still: " + $0.title) } ?? (.fixed, "no task is stuck now")
        }
        guard let type = finding.subject else { return (.noEvidence, "the finding names no type to look at") }
        // Events of attempts claimed after the fix: one already running when it was applied
        // still ran under the old settings.
        let seen = try await rows(
            """
            SELECT f.task_id, n.text, f.detail::jsonb ->> 'error_sha256' FROM ledger f
            LEFT JOIN ledger_notes n ON n.ledger_id = f.id AND n.field = 'error'
            WHERE f.type = \(type) AND f.at >= \(applied)
              AND f.event = ANY(\(AutonomyStore.recurrenceEvents(finding.kind))::text[])
              AND (f.event <> 'verified' OR f.detail::jsonb ->> 'outcome' = 'inconclusive')
              AND EXISTS (SELECT 1 FROM ledger c WHERE c.task_id = f.task_id AND c.event = 'claimed'
                          AND c.attempt = f.attempt AND c.at >= \(applied))
            ORDER BY f.id
            """
        ).map { row -> (task: Int64?, error: String?) in
            let (task, error, chained) = try row.decode((Int64?, String?, String?).self)
            return (task, LedgerChain.heldNote(error, chained: chained))
        }
        if let recurred = AutonomyStore.recurred(proposal, type: type, events: seen) { return recurred }
        // A pause is judged by the failures it stops; anything else needs the type to have run.
        if case .pauseType = proposal.action { return (.fixed, "no \(type) attempt failed since the pause") }
        let runs =
            try await rows(
                "SELECT count(*)::bigint FROM ledger WHERE type = \(type) AND event = 'claimed' AND at >= \(applied)"
            ).first?.decode(Int.self) ?? 0
        return AutonomyStore.judged(proposal, type: type, runs: runs, late: late, heal: heal)
    }

    /// Records a judgement; a fix that did not help has its overrides removed and its owner alerted.
    private nonisolated(nonsending) func settle(_ judgement: HealJudgement, configuration: Configuration)
        async throws -> [Int64]
    {
        try await query(
            """
            UPDATE heal_actions SET outcome = \(judgement.outcome.rawValue), judged_at = \(now),
                reason = \(judgement.reason)
            WHERE task_id = \(judgement.task)
            """)
        try await appendLedger(
            .healJudged, taskID: judgement.task, type: TaskType.remediationTypeName, detail: judgement.ledgerDetail,
            notes: ["reason": judgement.reason])
        guard [.didNotFix, .failed].contains(judgement.outcome) else { return [] }
        var reverted: [Int64] = []
        for override in try await activeOverrides() where override.proposal == judgement.task {
            try await endOverride(override, by: "heal", reason: "the fix did not help: \(judgement.reason)")
            reverted.append(override.id)
        }
        try await queueNotification(.ownerNeeded, taskID: judgement.task, notify: configuration.notify)
        return reverted
    }

    /// Opens the target's breaker when enough of its fixes failed within the breaker's window
    /// (counting only since it last closed).
    private nonisolated(nonsending) func tripBreaker(
        _ judgement: HealJudgement, heal: HealSettings, notify: NotifySettings
    ) async throws -> HealBreaker? {
        guard [.didNotFix, .failed].contains(judgement.outcome) else { return nil }
        let target = judgement.target
        guard try await breakers(open: true, target: target).isEmpty else { return nil }
        let lastClosed =
            try await rows(
                "SELECT max(closed_at) FROM heal_breakers WHERE target = \(target) AND closed_at IS NOT NULL"
            ).first?.decode(Int64?.self) ?? nil
        let failures =
            try await rows(
                """
                SELECT count(*)::bigint FROM heal_actions
                WHERE target = \(target) AND outcome IN ('did_not_fix', 'failed')
                  AND judged_at > \(max(now - heal.breakerWindow.milliseconds, lastClosed ?? 0))
                """
            ).first?.decode(Int.self) ?? 0
        guard failures >= heal.breakerFailures else { return nil }
        let reason = HealBreaker.reason(failures: failures, target: target, window: heal.breakerWindow)
        let closes = now + heal.breakerCooldown.milliseconds
        guard
            let id = try await rows(
                """
                INSERT INTO heal_breakers (target, opened_at, closes_at, reason)
                VALUES (\(target), \(now), \(closes), \(reason)) RETURNING id
                """
            ).first?.decode(Int64.self)
        else { throw StoreError.failed(path: "", operation: "open a heal breaker", reason: "no row came back") }
        let breaker = HealBreaker(
            id: id, target: target, openedAt: ISOTime(now), closesAt: ISOTime(closes), reason: reason)
        try await appendLedger(
            .healBreakerOpened, taskID: judgement.task, type: TaskType.remediationTypeName,
            detail: breaker.openedDetail(failures: failures))
        try await queueNotification(.healBreakerOpened, taskID: judgement.task, notify: notify)
        return breaker
    }
}
