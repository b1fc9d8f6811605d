import Foundation
import GRDB

/// What a heal cycle decided about one proposal from its findings.
public struct HealDecision: Sendable, Encodable {
    public enum Status: String, Sendable, Encodable {
        /// Enqueued to run on its own now (its attempt is in the report's `attempts`).
        case applied
        /// `--dry-run`: it would have been applied.
        case wouldApply = "would_apply"
        /// Trusted, but a guardrail stopped it (the reason says which).
        case skipped
        /// No `heal.auto_apply` entry covers it: a human decides (`autonomy audit` proposes it).
        case notTrusted = "not_trusted"
        /// A proposal under the same key is still open.
        case open
        /// A human rejected the same action on the same target within `audit.cooldown`.
        case rejected
        /// `heal.enabled` is false: nothing is applied.
        case disabled
        /// Heal applied it before, and the finding has not come back since: the window still shows
        /// the failures from before the fix.
        case alreadyApplied = "already_applied"
    }

    public var status: Status
    public var action: String
    public var parameters: JSONValue
    public var finding: FindingKind
    @Nullable public var subject: String?
    /// The task it made, or the open one.
    @Nullable public var task: Int64?
    public var reason: String
    /// `raise_timeout(to=1m, type=send_email)`.
    public var summary: String

    enum CodingKeys: String, CodingKey { case status, action, parameters, finding, subject, task, reason }

    init(_ status: Status, _ proposal: Proposal, task: Int64? = nil, reason: String) {
        (self.status, self.task, self.reason) = (status, task, reason)
        (action, parameters, summary) = (proposal.action.name, proposal.action.parameters, proposal.action.summary)
        (finding, subject) = (proposal.finding.kind, proposal.finding.subject)
    }

    /// One line a person reads.
    public var line: String {
        let about = "for \(finding.rawValue)\(subject.map { " " + Visible.text($0) } ?? "")"
        let verb: String
        switch status {
        case .applied: verb = "applied on its own as task \(task ?? 0)"
        case .wouldApply: verb = "would apply on its own"
        case .skipped: verb = "skipped"
        case .notTrusted: verb = "not applied"
        case .open: verb = "not applied: task \(task ?? 0) is still open"
        case .rejected: verb = "not applied"
        case .disabled: verb = "not applied"
        case .alreadyApplied: verb = "not applied again"
        }
        return "\(summary) \(about): \(verb): \(Visible.text(reason))"
    }
}

/// How heal judged an automatic fix once it settled.
public struct HealJudgement: Sendable, Encodable {
    public enum Outcome: String, Sendable, Encodable {
        case fixed
        case didNotFix = "did_not_fix"
        /// The fix itself failed (its task is dead).
        case failed
        /// Nothing to judge it by in `heal.judge_within` (its type did not run), or it was cancelled.
        case noEvidence = "no_evidence"
    }

    public var task: Int64
    public var action: String
    public var target: String
    public var outcome: Outcome
    public var reason: String
    /// Overrides the fix made, removed because it did not help.
    public var reverted: [Int64] = []

    public var line: String {
        let undone = reverted.isEmpty ? "" : "; override \(reverted.map(String.init).joined(separator: ", ")) removed"
        return
            "task \(task) \(action) on \(Visible.text(target)): \(outcome.rawValue): \(Visible.text(reason))\(undone)"
    }
}

/// An open heal breaker: automatic fixes on its target wait for `heal reset` or `closes_at`.
public struct HealBreaker: Sendable, Encodable {
    public var id: Int64
    public var target: String
    public var openedAt: ISOTime
    public var closesAt: ISOTime
    public var reason: String

    enum CodingKeys: String, CodingKey {
        case id, target, reason
        case openedAt = "opened_at"
        case closesAt = "closes_at"
    }

    /// Why a target's breaker opens.
    static func reason(failures: Int, target: String, window: Interval) -> String {
        "\(failures) automatic fix\(failures == 1 ? "" : "es") on \(target) did not fix within \(window)"
    }

    /// The detail of its `heal_breaker_opened` ledger row.
    func openedDetail(failures: Int) -> JSONValue {
        [
            "breaker": .int(id), "target": .string(target), "failures": .int(Int64(failures)),
            "closes_at": .string(Timestamp.format(closesAt.milliseconds)),
        ]
    }

    public var line: String {
        "breaker \(id) open for \(Visible.text(target)) since \(Timestamp.format(openedAt.milliseconds)) until \(Timestamp.format(closesAt.milliseconds)): \(Visible.text(reason))"
    }
}

/// Whether too many types are failing at once.
public struct SystemicHealth: Sendable, Encodable {
    /// Types that ran or failed in the window, and those of them failing.
    public var active: [String]
    public var failing: [String]
    /// True while a systemic stop is in force (after this cycle).
    public var stopped: Bool
    /// `started` or `ended` when this cycle changed it.
    @Nullable public var change: String?

    /// More than `max_failing` of at least `min_types` active types are failing.
    var startsStop = false
    /// Half that or less is failing (or nothing is): a stop ends. Between the two a stop in force
    /// stays, so a count hovering at the threshold does not start and end it every cycle.
    var endsStop = false

    enum CodingKeys: String, CodingKey { case active, failing, stopped, change }

    /// Why a systemic stop starts, for its row.
    func stopReason(window: Interval) -> String {
        "\(failing.count) of \(active.count) active types are failing in the last \(window): \(failing.joined(separator: ", "))"
    }

    /// The detail of the `heal_stopped` and `heal_resumed` ledger rows.
    var ledgerDetail: JSONValue {
        ["failing": .array(failing.map { .string($0) }), "active": .int(Int64(active.count))]
    }
}

/// What one `autonomy heal` did, and did not do, and why.
public struct HealReport: Sendable, Encodable {
    public var enabled: Bool
    public var dryRun: Bool
    public var windowStart: ISOTime
    public var windowEnd: ISOTime
    /// The fast subset of the audit's checks, over `heal.window`.
    public var findings: [Finding] = []
    public var systemic: SystemicHealth
    public var judged: [HealJudgement] = []
    /// Breakers this cycle opened or closed (by cool-down), then all still open.
    public var breakersOpened: [HealBreaker] = []
    public var breakersClosed: [HealBreaker] = []
    public var breakersOpen: [HealBreaker] = []
    public var decisions: [HealDecision] = []
    /// Fix proposals due to run now (approved, or trusted): applied next, or, in a dry run, what would be.
    public var due: [Int64] = []
    /// The attempts that applied them.
    public var attempts: [AttemptReport] = []
    /// Due proposals the claim did not run: postponed by a guardrail, or sent to a human.
    public var notRun: [SkippedTask] = []

    enum CodingKeys: String, CodingKey {
        case enabled
        case dryRun = "dry_run"
        case windowStart = "window_start"
        case windowEnd = "window_end"
        case findings, systemic, judged
        case breakersOpened = "breakers_opened"
        case breakersClosed = "breakers_closed"
        case breakersOpen = "breakers_open"
        case decisions, due, attempts
        case notRun = "not_run"
    }

    /// The headline of the run a cycle saves when it enqueues a fix.
    func runHeadline(window: Interval) -> String {
        "heal cycle: \(findings.count) findings over the last \(window)"
    }
}

extension AutonomyStore {
    /// One heal cycle up to the point where fixes run: the fast checks over `heal.window`, the
    /// systemic health, the judgement of automatic fixes that settled (with their reverts, owner
    /// alerts and breakers), and a decision on every proposal the findings make. Trusted ones that
    /// every guardrail allows are enqueued; the caller then claims them (see `Healer`).
    ///
    /// Nothing is kept when heal is disabled or `dryRun`: the cycle runs as it would, then is
    /// rolled back, and the report says what would be done.
    public func healCycle(loaded file: LoadedConfiguration, now: Int64, dryRun: Bool) throws -> HealReport {
        let heal = file.configuration.heal
        let acting = heal.enabled && !dryRun
        var loaded = file
        loaded.configuration = file.configuration.applying(try overrides(now: now))
        let configuration = loaded.configuration
        let start = now - heal.window.milliseconds
        let (findings, systemic) = try read("heal: check the last window") { db in
            try healFindings(loaded, start: start, now: now, db: db)
        }
        var report = HealReport(
            enabled: heal.enabled, dryRun: dryRun, windowStart: ISOTime(start), windowEnd: ISOTime(now),
            findings: findings, systemic: systemic)
        let cycle: (Database) throws -> Void = { db in
            try self.closeCooledBreakers(&report, db: db, now: now)
            try self.recordSystemic(&report, configuration: configuration, db: db, now: now)
            try self.judgeSettled(&report, loaded: loaded, db: db, now: now)
            let rehearsed = try self.decide(&report, loaded: loaded, acting: acting, db: db, now: now, start: start)
            report.breakersOpen = try db.openBreakers(now: now)
            report.due = try Int64.fetchAll(
                db,
                sql:
                    "SELECT id FROM tasks WHERE type = ? AND state = 'queued' AND run_at <= ? ORDER BY priority DESC, id",
                arguments: [TaskType.remediationTypeName, now]
            ).filter { !rehearsed.contains($0) }
        }
        if acting {
            try write("heal", cycle)
        } else {
            try rehearse("heal (reporting only)", cycle)
        }
        return report
    }

    /// The fast subset of the audit's checks a heal cycle needs: failures and their signatures,
    /// dead tasks, stuck work, repeated lease expiries and inconclusive checks, handlers or models
    /// gone, and paused types; and how many of the active types are failing.
    private func healFindings(_ loaded: LoadedConfiguration, start: Int64, now: Int64, db: Database) throws -> (
        [Finding], SystemicHealth
    ) {
        // Every 15 minutes over the last hour: an hour's margin for a clock set back, not the
        // audit's day, or each cycle would read a day of rows (8x slower on a busy ledger).
        var facts = AuditFacts(
            tally: try LedgerTally.read([start - (now - start), start, now], db: db, margin: .hours(1)))
        try db.readErrors(into: &facts)
        try db.readStuck(loaded.configuration.audit, now: now, into: &facts)
        return Self.healFindings(loaded, facts, start: start)
    }

    /// The heal checks over what was read (`facts` over the window before `start` and the one
    /// from it), and the systemic health: pure, for both engines.
    static func healFindings(_ loaded: LoadedConfiguration, _ facts: AuditFacts, start: Int64) -> (
        [Finding], SystemicHealth
    ) {
        let configuration = loaded.configuration
        let tally = facts.tally
        var found = failures(facts, start: start)
        found += stuck(configuration.audit, facts) + repeated(tally.windows[1])
        found += configurationGaps(loaded).filter { [.missingHandler, .tierWithoutModel].contains($0.kind) }
        for pause in configuration.overrides where pause.kind == .pause {
            guard let type = pause.type else { continue }
            found.append(
                Finding(
                    .pausedType, .low, subject: type,
                    title: "\(type) is paused by override \(pause.id) since \(Timestamp.format(pause.createdAt))",
                    evidence: ["override": .int(pause.id), "since": .string(Timestamp.format(pause.createdAt))]))
        }
        // Something shared is broken when most of the types that ran are failing.
        var failed: [String: Int] = [:]
        for failure in tally.failures where failure.at >= start { failed[failure.type, default: 0] += 1 }
        var active: [String] = []
        var failing: [String] = []
        for name in configuration.taskTypes.keys.sorted() {
            let seen = tally.windows[1][name] ?? TypeTally()
            let failures = failed[name] ?? 0
            guard seen.runs > 0 || seen.done > 0 || failures > 0 else { continue }
            active.append(name)
            if failures >= 2, failures > seen.done { failing.append(name) }
        }
        let heal = configuration.heal
        var health = SystemicHealth(active: active, failing: failing, stopped: false)
        health.startsStop =
            active.count >= heal.systemicMinTypes
            && Double(failing.count) > Double(active.count) * heal.systemicMaxFailing
        health.endsStop =
            failing.isEmpty || Double(failing.count) <= Double(active.count) * heal.systemicMaxFailing / 2
        return (found.worstFirst(), health)
    }

    // MARK: - Breakers and the systemic stop

    private func closeCooledBreakers(_ report: inout HealReport, db: Database, now: Int64) throws {
        let cooled = try db.breakers(where: "closed_at IS NULL AND closes_at <= ?", [now])
        report.breakersClosed = cooled
        for breaker in cooled {
            try db.closeBreaker(breaker, by: "cool-down", at: breaker.closesAt.milliseconds, now: now)
        }
    }

    private func recordSystemic(
        _ report: inout HealReport, configuration: Configuration, db: Database, now: Int64
    ) throws {
        let stop = try Row.fetchOne(db, sql: "SELECT id FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1")
        var health = report.systemic
        health.stopped = stop != nil
        defer { report.systemic = health }
        if health.startsStop, stop == nil {
            (health.stopped, health.change) = (true, "started")
            let reason = health.stopReason(window: configuration.heal.window)
            try db.execute(sql: "INSERT INTO heal_stops (started_at, reason) VALUES (?, ?)", arguments: [now, reason])
            try db.appendLedger(.healStopped, at: now, taskID: nil, type: nil, detail: health.ledgerDetail)
            try db.queueNotification(.healStopped, taskID: nil, approvalID: nil, notify: configuration.notify, now: now)
        } else if health.endsStop, let stop {
            (health.stopped, health.change) = (false, "ended")
            let id: Int64 = try stop.decode(forColumn: "id")
            try db.execute(sql: "UPDATE heal_stops SET ended_at = ? WHERE id = ?", arguments: [now, id])
            try db.appendLedger(.healResumed, at: now, taskID: nil, type: nil, detail: health.ledgerDetail)
        }
    }

    // MARK: - Judging what settled

    /// Automatic fixes whose task ended and settled: did the finding come back?
    private func judgeSettled(
        _ report: inout HealReport, loaded: LoadedConfiguration, db: Database, now: Int64
    ) throws {
        let heal = loaded.configuration.heal
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT h.task_id, h.target, h.action, t.state, t.finished_at, t.payload, t.result, t.last_error
                FROM heal_actions h JOIN tasks t ON t.id = h.task_id
                WHERE h.automatic = 1 AND h.outcome IS NULL ORDER BY h.applied_at
                """)
        for row in rows {
            var judgement = HealJudgement(
                task: try row.decode(forColumn: "task_id"), action: try row.decode(forColumn: "action"),
                target: try row.decode(forColumn: "target"), outcome: .fixed, reason: "")
            let settled = SettledFix.of(
                state: try row.decode(forColumn: "state"), finished: try row.decode(forColumn: "finished_at"),
                payload: try row.decode(forColumn: "payload"), error: try row.decode(forColumn: "last_error"),
                heal: heal, now: now)
            switch settled {
            case .wait: continue
            case .judged(let outcome, let reason): (judgement.outcome, judgement.reason) = (outcome, reason)
            case .recurrence(let proposal, let since):
                guard
                    let (outcome, reason) = try recurrence(
                        proposal, since: since, result: try row.decode(forColumn: "result"), loaded: loaded,
                        heal: heal, db: db, now: now)
                else { continue }  // nothing to judge it by yet
                (judgement.outcome, judgement.reason) = (outcome, reason)
            }
            judgement.reverted = try settle(judgement, configuration: loaded.configuration, db: db, now: now)
            if let opened = try tripBreaker(
                judgement, heal: heal, db: db, notify: loaded.configuration.notify, now: now)
            {
                report.breakersOpened.append(opened)
            }
            report.judged.append(judgement)
        }
    }
    /// Whether the finding a fix answered came back after it, among attempts claimed after the fix;
    /// nil when there is nothing to judge it by yet.
    private func recurrence(
        _ proposal: Proposal, since applied: Int64, result: String?, loaded: LoadedConfiguration, heal: HealSettings,
        db: Database, now: Int64
    ) throws -> (HealJudgement.Outcome, String)? {
        let finding = proposal.finding
        let late = now >= applied + heal.judgeWithin.milliseconds
        if case .retryDead = proposal.action, !late {
            // The tasks it sent back settle first: one still retrying has not told yet.
            let sent = (try? result.map(JSONValue.parse))??[path: "retried"] ?? []
            let pending =
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT COUNT(*) FROM tasks WHERE id IN (SELECT value FROM json_each(?))
                          AND state NOT IN (\(TaskState.sqlList(TaskState.finalStates)))
                        """, arguments: [sent.canonicalText]) ?? 0
            if pending > 0 { return nil }
        }
        if finding.kind == .stuckTask {
            let stuck = try stuck(loaded.configuration.audit, now: now, db: db).first { $0.kind == .stuckTask }
            return stuck.map { (.didNotFix, "still: " + $0.title) } ?? (.fixed, "no task is stuck now")
        }
        guard let type = finding.subject else { return (.noEvidence, "the finding names no type to look at") }
        let events = Self.recurrenceEvents(finding.kind)
        // Events of attempts claimed after the fix: one already running when it was applied
        // still ran under the old settings.
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT f.task_id, n.text AS error, f.detail ->> '$.error_sha256' AS error_sha256 FROM ledger f
                LEFT JOIN ledger_notes n ON n.ledger_id = f.id AND n.field = 'error'
                WHERE f.type = ? AND f.at >= ? AND f.event IN (SELECT value FROM json_each(?))
                  AND (f.event != 'verified' OR f.detail ->> 'outcome' = 'inconclusive')
                  AND EXISTS (SELECT 1 FROM ledger c WHERE c.task_id = f.task_id AND c.event = 'claimed'
                              AND c.attempt = f.attempt AND c.at >= ?)
                ORDER BY f.id
                """,
            arguments: [type, applied, JSONValue.array(events.map { .string($0) }).canonicalText, applied])
        let seen = try rows.map {
            (
                task: try $0.decode(Int64?.self, forColumn: "task_id"),
                error: LedgerChain.heldNote(
                    (try? $0.decode(String?.self, forColumn: "error")) ?? nil,
                    chained: (try? $0.decode(String?.self, forColumn: "error_sha256")) ?? nil)
            )
        }
        if let recurred = Self.recurred(proposal, type: type, events: seen) { return recurred }
        // A pause is judged by the failures it stops; anything else needs the type to have run.
        if case .pauseType = proposal.action { return (.fixed, "no \(type) attempt failed since the pause") }
        let runs =
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM ledger WHERE type = ? AND event = 'claimed' AND at >= ?",
                arguments: [type, applied]) ?? 0
        return Self.judged(proposal, type: type, runs: runs, late: late, heal: heal)
    }

    /// The ledger events a fix's finding recurs by (`recurrence`).
    static func recurrenceEvents(_ kind: FindingKind) -> [String] {
        switch kind {
        case .deadTasks: return ["dead"]
        case .repeatedLeaseExpiry: return ["lease_expired"]
        case .inconclusiveVerifications: return ["verified"]
        default: return ["retry_scheduled", "dead"]
        }
    }

    /// Did not fix, when the finding's events (attempts claimed after the fix: their task and
    /// error) show it came back; else nil.
    static func recurred(_ proposal: Proposal, type: String, events: [(task: Int64?, error: String?)]) -> (
        HealJudgement.Outcome, String
    )? {
        let finding = proposal.finding
        var tasks: [Int64] = []
        let signature = finding.evidence[path: "signature"]?.stringValue
        // A raised timeout changes the unit in the message ("after 30s", then "after 1m"): any
        // time-out is the same failure coming back.
        let timeOut = "timed out after"
        func same(_ error: String) -> Bool {
            let seen = FailureSignature.of(error)
            return signature?.hasPrefix(timeOut) == true ? seen.hasPrefix(timeOut) : seen == signature
        }
        for event in events {
            if finding.kind == .failureSignature {
                guard let error = event.error, same(error) else { continue }
            }
            if let task = event.task { tasks.append(task) }
        }
        guard !tasks.isEmpty else { return nil }
        let what =
            finding.kind == .failureSignature
            ? "failed \(tasks.count)× again with \"\(signature ?? "")\""
            : "had \(tasks.count) more \(finding.kind.rawValue) event\(tasks.count == 1 ? "" : "s")"
        let examples = tasks.prefix(5).map(String.init).joined(separator: ", ")
        return (.didNotFix, "\(type) \(what) after the fix (tasks \(examples))")
    }

    /// A fix whose finding did not come back, judged by how often its type ran since (`runs`
    /// attempts claimed); nil while there is nothing to judge it by and `heal.judge_within` has
    /// not passed.
    static func judged(_ proposal: Proposal, type: String, runs: Int, late: Bool, heal: HealSettings) -> (
        HealJudgement.Outcome, String
    )? {
        if runs > 0 {
            return (
                .fixed, "\(runs) \(type) attempt\(runs == 1 ? "" : "s") since the fix, and the finding did not recur"
            )
        }
        guard late else { return nil }
        return (.noEvidence, "\(type) did not run within heal.judge_within (\(heal.judgeWithin)) of the fix")
    }

    /// Records a judgement; a fix that did not help has its overrides removed and its owner alerted.
    private func settle(_ judgement: HealJudgement, configuration: Configuration, db: Database, now: Int64) throws
        -> [Int64]
    {
        try db.execute(
            sql: "UPDATE heal_actions SET outcome = ?, judged_at = ?, reason = ? WHERE task_id = ?",
            arguments: [judgement.outcome.rawValue, now, judgement.reason, judgement.task])
        try db.appendLedger(
            .healJudged, at: now, taskID: judgement.task, type: TaskType.remediationTypeName,
            detail: judgement.ledgerDetail, notes: ["reason": judgement.reason])
        guard [.didNotFix, .failed].contains(judgement.outcome) else { return [] }
        var reverted: [Int64] = []
        for override in try db.activeOverrides(now: now) where override.proposal == judgement.task {
            try db.endOverride(
                override, by: "heal", reason: "the fix did not help: \(judgement.reason)", now: now)
            reverted.append(override.id)
        }
        try db.queueNotification(
            .ownerNeeded, taskID: judgement.task, approvalID: nil, notify: configuration.notify, now: now)
        return reverted
    }

    /// Opens the target's breaker when enough of its fixes failed within the breaker's window
    /// (counting only since it last closed).
    private func tripBreaker(
        _ judgement: HealJudgement, heal: HealSettings, db: Database, notify: NotifySettings, now: Int64
    ) throws -> HealBreaker? {
        guard [.didNotFix, .failed].contains(judgement.outcome) else { return nil }
        let target = judgement.target
        guard try db.breakers(where: "target = ? AND closed_at IS NULL AND closes_at > ?", [target, now]).isEmpty
        else { return nil }
        let lastClosed =
            try Int64.fetchOne(
                db, sql: "SELECT MAX(closed_at) FROM heal_breakers WHERE target = ? AND closed_at IS NOT NULL",
                arguments: [target]) ?? 0
        let failures =
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM heal_actions
                    WHERE target = ? AND outcome IN ('did_not_fix', 'failed') AND judged_at > ?
                    """, arguments: [target, max(now - heal.breakerWindow.milliseconds, lastClosed)]) ?? 0
        guard failures >= heal.breakerFailures else { return nil }
        let reason = HealBreaker.reason(failures: failures, target: target, window: heal.breakerWindow)
        try db.execute(
            sql: "INSERT INTO heal_breakers (target, opened_at, closes_at, reason) VALUES (?, ?, ?, ?)",
            arguments: [target, now, now + heal.breakerCooldown.milliseconds, reason])
        let breaker = HealBreaker(
            id: db.lastInsertedRowID, target: target, openedAt: ISOTime(now),
            closesAt: ISOTime(now + heal.breakerCooldown.milliseconds), reason: reason)
        try db.appendLedger(
            .healBreakerOpened, at: now, taskID: judgement.task, type: TaskType.remediationTypeName,
            detail: breaker.openedDetail(failures: failures))
        try db.queueNotification(.healBreakerOpened, taskID: judgement.task, approvalID: nil, notify: notify, now: now)
        return breaker
    }

    // MARK: - Deciding

    /// Decides on every proposal the findings make (`healPlan`) and writes what it calls for;
    /// returns the tasks enqueued only in a rehearsal.
    private func decide(
        _ report: inout HealReport, loaded: LoadedConfiguration, acting: Bool, db: Database, now: Int64,
        start: Int64
    ) throws -> [Int64] {
        let configuration = loaded.configuration
        let catalog = RemediationCatalog.proposals(for: report.findings, configuration: configuration, since: start)
        var histories: [String: ProposalHistory] = [:]
        for proposal in Self.trustedProposals(catalog, configuration: configuration)
        where histories[proposal.key] == nil {
            histories[proposal.key] = try history(of: proposal, loaded: loaded, db: db, now: now)
        }
        // Trusted proposals already due (the weekly audit's) are claimed first, by the same drain.
        let planned =
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM tasks t WHERE t.type = ? AND t.state = 'queued' AND t.run_at <= ?
                      AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.task_id = t.id AND a.state = 'approved')
                    """, arguments: [TaskType.remediationTypeName, now]) ?? 0
        let steps = Self.healPlan(
            &report, catalog: catalog, histories: histories, configuration: configuration, acting: acting,
            planned: planned, now: now)
        var saved: (run: Int64, findings: [Int64])?
        var rehearsed: [Int64] = []
        for step in steps {
            switch step {
            case .skip(let proposal, let refusal):
                try db.appendLedger(
                    .healSkipped, at: now, taskID: nil, type: proposal.action.type ?? proposal.finding.subject,
                    detail: refusal.skippedDetail(proposal), notes: ["reason": refusal.description])
            case .enqueue(var proposal, let decision):
                if saved == nil {
                    let headline = report.runHeadline(window: configuration.heal.window)
                    saved = try db.saveRun(report.findings, headline: headline, source: "heal", start: start, end: now)
                }
                guard let saved, let index = report.findings.firstIndex(of: proposal.finding) else { continue }
                (proposal.runID, proposal.findingID) = (saved.run, saved.findings[index])
                let outcome = try enqueue(
                    proposal, settings: configuration.audit, configuration: configuration, db: db, now: now,
                    source: "heal", cooldown: false)
                if let decision { report.decisions[decision].task = outcome.task }
                if !acting { rehearsed.append(outcome.task) }
            }
        }
        return rehearsed
    }

    /// What the cycle knows of a trusted proposal's key: open, rejected, applied before (and
    /// whether its finding came back since), and the guardrails' counts.
    private func history(of proposal: Proposal, loaded: LoadedConfiguration, db: Database, now: Int64) throws
        -> ProposalHistory
    {
        let configuration = loaded.configuration
        var history = ProposalHistory(
            guardrails: try db.guardrailFacts(proposal, heal: configuration.heal, now: now))
        history.open = try db.openProposal(key: proposal.key)
        history.ended = try db.endedProposal(
            key: proposal.key, in: [.rejected, .cancelled, .expired],
            since: now - configuration.audit.cooldown.milliseconds)
        if let last = try Row.fetchOne(
            db,
            sql: """
                SELECT h.task_id, h.applied_at, COALESCE(t.finished_at, h.applied_at) AS since, t.result
                FROM heal_actions h JOIN tasks t ON t.id = h.task_id
                WHERE h.key = ? AND h.automatic = 1 ORDER BY h.applied_at DESC LIMIT 1
                """, arguments: [proposal.key])
        {
            history.applied = (
                try last.decode(forColumn: "task_id"), try last.decode(forColumn: "applied_at"),
                try recurrence(
                    proposal, since: try last.decode(forColumn: "since"), result: try last.decode(forColumn: "result"),
                    loaded: loaded, heal: configuration.heal, db: db, now: now)
            )
        }
        return history
    }
}

extension Database {
    func breakers(where condition: String, _ arguments: StatementArguments) throws -> [HealBreaker] {
        try Row.fetchAll(
            self,
            sql: "SELECT id, target, opened_at, closes_at, reason FROM heal_breakers WHERE \(condition) ORDER BY id",
            arguments: arguments
        ).map { row in
            HealBreaker(
                id: try row.decode(forColumn: "id"), target: try row.decode(forColumn: "target"),
                openedAt: ISOTime(try row.decode(forColumn: "opened_at") as Int64),
                closesAt: ISOTime(try row.decode(forColumn: "closes_at") as Int64),
                reason: try row.decode(forColumn: "reason"))
        }
    }

    /// Automatic actions since then, per target and outcome (`pending` until judged).
    func healActivity(since: Int64) throws -> [String: [String: Int]] {
        var activity: [String: [String: Int]] = [:]
        for row in try Row.fetchAll(
            self,
            sql: """
                SELECT target, COALESCE(outcome, 'pending') AS outcome, COUNT(*) AS n FROM heal_actions
                WHERE automatic = 1 AND applied_at >= ? GROUP BY target, outcome
                """, arguments: [since])
        {
            activity[try row.decode(forColumn: "target"), default: [:]][try row.decode(forColumn: "outcome")] =
                try row.decode(forColumn: "n")
        }
        return activity
    }

    func openBreakers(now: Int64) throws -> [HealBreaker] {
        try breakers(where: "closed_at IS NULL AND closes_at > ?", [now])
    }

    func closeBreaker(_ breaker: HealBreaker, by actor: String, at time: Int64, now: Int64) throws {
        try execute(
            sql: "UPDATE heal_breakers SET closed_at = ?, closed_by = ? WHERE id = ?",
            arguments: [time, actor, breaker.id])
        // The ledger's rows are in time order: a cool-down that ended earlier is recorded now.
        try appendLedger(
            .healBreakerClosed, at: now, taskID: nil, type: nil,
            detail: [
                "breaker": .int(breaker.id), "target": .string(breaker.target), "by": .string(actor),
                "closed_at": .string(Timestamp.format(time)),
            ])
    }
}

/// `heal reset` on a target without an open breaker.
public struct NoOpenBreaker: Error, Sendable, CustomStringConvertible {
    public var target: String
    public var open: [String]
    public var description: String {
        "no heal breaker is open for \(Visible.text(target))"
            + (open.isEmpty ? "" : " (open: \(open.map(Visible.text).joined(separator: ", ")))")
    }
}

extension AutonomyStore {
    /// The breakers open now.
    public func openBreakers(now: Int64) throws -> [HealBreaker] {
        try read("read the heal breakers") { db in try db.openBreakers(now: now) }
    }

    /// Closes the target's open breaker (`heal reset`), with a ledger row naming who.
    ///
    /// - Throws: `NoOpenBreaker` (nothing changed) or `StoreError`.
    public func resetBreaker(target: String, by actor: String, now: Int64) throws -> [HealBreaker] {
        try write("reset a heal breaker") { db in
            let open = try db.openBreakers(now: now)
            let closing = open.filter { $0.target == target }
            guard !closing.isEmpty else { throw NoOpenBreaker(target: target, open: open.map(\.target)) }
            for breaker in closing { try db.closeBreaker(breaker, by: actor, at: now, now: now) }
            return closing
        }
    }

    /// What heal did in the last day, for `status` and `map`: automatic actions by outcome
    /// (`pending` until judged), per target.
    public func healActivity(since: Int64) throws -> [String: [String: Int]] {
        try read("read heal's last day") { db in try db.healActivity(since: since) }
    }
}

/// Runs heal cycles: decides (`healCycle`), then applies the fix proposals that are due (approved,
/// or trusted and allowed by every guardrail) through a worker that claims nothing else.
public struct Healer: Sendable {
    public let loaded: LoadedConfiguration
    public let options: Worker.Options
    /// One cycle's decisions (`healCycle`) on this store.
    private let cycle: @Sendable (_ dryRun: Bool) async throws -> HealReport
    /// A worker on this store, running `loaded`.
    private let worker: @Sendable (LoadedConfiguration) -> Worker

    public init(store: AutonomyStore, loaded: LoadedConfiguration, options: Worker.Options = Worker.Options()) {
        (self.loaded, self.options) = (loaded, options)
        cycle = { try store.healCycle(loaded: loaded, now: options.clock.now(), dryRun: $0) }
        worker = { Worker(store: store, loaded: $0, options: options) }
    }

    /// Heal on a PostgreSQL queue: one host's cycle decides for all, under the ledger's lock.
    public init(postgres: PostgresStore, loaded: LoadedConfiguration, options: Worker.Options = Worker.Options()) {
        (self.loaded, self.options) = (loaded, options)
        cycle = { try await postgres.healCycle(loaded: loaded, dryRun: $0) }
        worker = { Worker(postgres: postgres, loaded: $0, options: options) }
    }

    /// - Throws: `StoreError` when the database is unusable.
    public func run(dryRun: Bool) async throws -> HealReport {
        var report = try await cycle(dryRun)
        guard report.enabled, !dryRun else { return report }
        guard !report.due.isEmpty else {
            // The owners, breakers and stops this cycle alerted about.
            _ = try await options.alerts?.deliverDue()
            return report
        }
        var applying = loaded
        applying.configuration.claimOnly = [TaskType.remediationTypeName]
        let work = try await worker(applying).work(drain: .init(maxSeconds: 600, maxTasks: 50))
        (report.attempts, report.notRun) = (work.attempts, work.skipped)
        return report
    }
}
