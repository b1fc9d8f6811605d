import Foundation
import GRDB

extension AutonomyStore {
    /// The Oracle: reads the ledger and the map for the window ending `now` and the window
    /// before it, finds what drifted, broke, got stuck or no longer matches the map, and saves the
    /// run with its findings (`audit_runs`, `findings`). Findings come worst first.
    ///
    /// With `notify`, an `audit_report` alert is queued in the same transaction, for every
    /// configured channel (deliver it with `AlertDelivery`).
    ///
    /// With `propose`, the findings' fix proposals from the fixed catalog are enqueued in the same
    /// transaction as `apply_remediation` tasks (dangerous: each waits for a signed approval),
    /// except those still open under the same key and those rejected within `audit.cooldown`.
    public func audit(
        loaded file: LoadedConfiguration, now: Int64, window: Interval? = nil, notify: Bool = false,
        propose: Bool = true
    ) throws -> AuditReport {
        let overrides = try overrides(now: now)
        // The map as the worker runs it: a raise starts from the raised value.
        var loaded = file
        loaded.configuration = file.configuration.applying(overrides)
        let configuration = loaded.configuration
        let settings = configuration.audit
        let length = (window ?? settings.window).milliseconds
        let (start, previous) = (now - length, now - 2 * length)
        var findings: [Finding] = []
        // The chain is checked on connections of its own while the windows are read.
        let store = self
        let verifying = inBackground { try store.verifyLedgerChain() }
        let facts = try read("audit") { db in
            try db.auditFacts(configuration, windows: [previous, start, now], now: now)
        }
        findings += Self.findings(loaded, facts, start: start)
        findings += Self.chainFindings(try verifying())
        findings += Self.pauses(overrides)
        findings = findings.worstFirst()
        let headline = Self.headline(findings, window: Interval(milliseconds: length))
        let catalog =
            propose ? RemediationCatalog.proposals(for: findings, configuration: configuration, since: start) : []
        let (runID, proposals) = try write("save an audit") { db in
            let (run, ids) = try db.saveRun(
                findings, headline: headline, source: "audit", start: start, end: now)
            var proposals: [ProposalOutcome] = []
            for var proposal in catalog {
                guard let index = findings.firstIndex(of: proposal.finding) else { continue }
                (proposal.runID, proposal.findingID) = (run, ids[index])
                proposals.append(
                    try enqueue(proposal, settings: settings, configuration: configuration, db: db, now: now))
            }
            if notify {
                try db.queueNotification(
                    .auditReport, taskID: nil, approvalID: nil, notify: configuration.notify, now: now)
            }
            return (run, proposals)
        }
        return AuditReport(
            runID: runID, windowStart: ISOTime(start), windowEnd: ISOTime(now), headline: headline, findings: findings,
            proposals: proposals)
    }

    /// A finding for each type an override pauses.
    static func pauses(_ overrides: [Override]) -> [Finding] {
        overrides.filter { $0.kind == .pause }.compactMap { pause in
            pause.type.map { type in
                Finding(
                    .pausedType, .low, subject: type,
                    title:
                        "\(type) is paused by override \(pause.id) since \(Timestamp.format(pause.createdAt)): its tasks wait",
                    evidence: ["override": .int(pause.id), "since": .string(Timestamp.format(pause.createdAt))])
            }
        }
    }

    /// Enqueues one proposal, unless one under its key is still open or ended within the
    /// cooldown; says which. Heal passes `cooldown: false`: it has its own backoff, and checks for
    /// a human's rejection itself.
    func enqueue(
        _ proposal: Proposal, settings: AuditSettings, configuration: Configuration, db: Database, now: Int64,
        source: String = "audit", cooldown: Bool = true
    ) throws -> ProposalOutcome {
        if let open = try db.openProposal(key: proposal.key) {
            return ProposalOutcome(proposal, task: open, status: .stillOpen)
        }
        // Rejected, applied, failed, cancelled or expired: within the cooldown the same action on
        // the same target waits, whatever the window still shows.
        if cooldown,
            let recent = try db.endedProposal(
                key: proposal.key, in: TaskState.finalStates, since: now - settings.cooldown.milliseconds)
        {
            return ProposalOutcome(proposal, task: recent.task, status: .coolingDown, ended: recent.state)
        }
        let request = EnqueueRequest(
            type: TaskType.remediationTypeName, payload: proposal.payload.canonicalText, source: source,
            subject: "\(proposal.action.summary) for \(proposal.finding.kind.rawValue)")
        let task = try insert(
            try request.prepare(configuration, now: now, proposal: true), db: db, configuration: configuration,
            now: now
        ).task
        try db.execute(
            sql: "INSERT INTO proposals (task_id, key, action, run_id, finding_id) VALUES (?, ?, ?, ?, ?)",
            arguments: [task.id, proposal.key, proposal.action.name, proposal.runID, proposal.findingID])
        return ProposalOutcome(proposal, task: task.id, status: .proposed)
    }

    static func headline(_ findings: [Finding], window: Interval) -> String {
        guard let worst = findings.first else { return "all clear over the last \(window): nothing drifted or broke" }
        let counts = Severity.allCases.compactMap { severity -> String? in
            let count = findings.filter { $0.severity == severity }.count
            return count > 0 ? "\(count) \(severity.rawValue)" : nil
        }
        let noun = findings.count == 1 ? "finding" : "findings"
        return
            "\(findings.count) \(noun) over the last \(window) (\(counts.joined(separator: ", "))); worst: \(worst.title)"
    }

    // MARK: - Drift

    /// Everything an audit finds in what it read and in the map, the chain and overrides aside:
    /// the same analysis whichever engine read the facts.
    static func findings(_ loaded: LoadedConfiguration, _ facts: AuditFacts, start: Int64) -> [Finding] {
        let configuration = loaded.configuration
        let tally = facts.tally
        return drift(configuration, facts, start: start) + failures(facts, start: start)
            + stuck(configuration.audit, facts) + repeated(tally.windows[1]) + configurationGaps(loaded)
            + ledgerGaps(configuration, tally.windows[1], undeclared: facts.undeclaredTypes)
            + budget(configuration, facts) + alerts(facts)
    }

    /// A broken hash chain is the worst finding there is.
    static func chainFindings(_ chain: ChainReport) -> [Finding] {
        guard let broken = chain.firstBroken else { return [] }
        return [
            Finding(
                .ledgerBroken, .critical, subject: nil,
                title: "the ledger's hash chain is broken at row \(broken.id): \(broken.reason)",
                evidence: ["row": .int(broken.id), "rows": .int(Int64(chain.rows))])
        ]
    }

    private static func drift(_ configuration: Configuration, _ facts: AuditFacts, start: Int64) -> [Finding] {
        let tally = facts.tally
        let thresholds = configuration.audit.thresholds
        let minimum = configuration.audit.minSample
        var found: [Finding] = []
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) {
            let name = type.name
            let lastSuccess = facts.lastSuccess[name]
            let now = TypeStats(type, tally.windows[1][name], lastSuccess: lastSuccess, since: start)
            let before = TypeStats(type, tally.windows[0][name], lastSuccess: lastSuccess, since: .min)
            // Unused in the window only means something once the queue is older than the window.
            if now.shelfware, facts.ledgerBegan.map({ $0 <= start }) ?? true {
                let since =
                    now.lastSuccess.map { "its last success was \(Timestamp.format($0))" } ?? "it has never succeeded"
                found.append(
                    Finding(
                        .shelfware, .low, subject: name,
                        title: "\(name) is declared but was never done in this window; \(since)",
                        evidence: ["last_success": now.lastSuccess.map { .string(Timestamp.format($0)) } ?? .null]))
            }
            func evidence(_ fields: [String: JSONValue]) -> JSONValue {
                .object(fields.merging(["min_sample": .int(Int64(minimum))]) { new, _ in new })
            }
            if before.runs >= minimum, now.runs == 0 {
                found.append(
                    Finding(
                        .stoppedRunning, .high, subject: name,
                        title: "\(name) ran \(before.runs) times in the window before and not once in this one",
                        evidence: evidence(["runs_before": .int(Int64(before.runs)), "runs": 0])))
            }
            if before.done + before.dead >= minimum, now.done + now.dead >= minimum, let was = before.successRate,
                let rate = now.successRate, was - rate > thresholds.successRateDrop
            {
                found.append(
                    Finding(
                        .successRateDrop, .high, subject: name,
                        title: "\(name) succeeds \(Self.percent(rate)) of the time, down from \(Self.percent(was))",
                        evidence: evidence([
                            "success_rate": .double(rate), "success_rate_before": .double(was),
                            "done": .int(Int64(now.done)), "dead": .int(Int64(now.dead)),
                            "done_before": .int(Int64(before.done)), "dead_before": .int(Int64(before.dead)),
                        ])))
            }
            if before.runs >= minimum, now.runs >= minimum, let was = before.p95Ms, let p95 = now.p95Ms, was > 0,
                Double(p95) > Double(was) * (1 + thresholds.p95Rise)
            {
                found.append(
                    Finding(
                        .slower, .medium, subject: name,
                        title:
                            "\(name)'s p95 duration rose from \(Interval(milliseconds: was)) to \(Interval(milliseconds: p95))",
                        evidence: evidence(["p95_ms": .int(p95), "p95_ms_before": .int(was)])))
            }
            if before.runs >= minimum, now.runs >= minimum, before.costUSD > 0,
                now.costUSD > before.costUSD * (1 + thresholds.costRise)
            {
                found.append(
                    Finding(
                        .costRise, .medium, subject: name,
                        title: String(
                            format: "%@ cost $%.4f, up from $%.4f in the window before", name, now.costUSD,
                            before.costUSD),
                        evidence: evidence([
                            "cost_usd": .double(now.costUSD), "cost_usd_before": .double(before.costUSD),
                        ])
                    ))
            }
            if before.checks >= minimum, now.checks >= minimum, now.verificationFailures >= 3,
                Double(now.verificationFailures)
                    > Double(before.verificationFailures) * (1 + thresholds.verificationFailuresRise)
            {
                found.append(
                    Finding(
                        .verificationFailuresRise, .medium, subject: name,
                        title:
                            "\(name)'s verifiers failed \(now.verificationFailures) of \(now.checks) checks, against \(before.verificationFailures) of \(before.checks) before",
                        evidence: evidence([
                            "failed_checks": .int(Int64(now.verificationFailures)), "checks": .int(Int64(now.checks)),
                            "failed_checks_before": .int(Int64(before.verificationFailures)),
                            "checks_before": .int(Int64(before.checks)),
                        ])))
            }
        }
        return found
    }

    static func percent(_ rate: Double) -> String { String(format: "%.0f%%", rate * 100) }

    // MARK: - Failures

    private struct Signature {
        var count = 0
        var first = Int64.max
        var last = Int64.min
        var example: Int64?
    }

    /// Errors of failed attempts (kept beside the chain until pruned), grouped per type by signature.
    static func failures(_ facts: AuditFacts, start: Int64) -> [Finding] {
        var now: [String: [String: Signature]] = [:]
        var before: Set<String> = []
        var deadByType: [String: (count: Int, tasks: [Int64], signatures: [String: Int])] = [:]
        var memo: [String: String] = [:]
        for failure in facts.tally.failures {
            // A pruned task's error text is gone: it has no signature to count under.
            guard let text = facts.errors[failure.ledgerID] else { continue }
            let (type, at) = (failure.type, failure.at)
            let signature = FailureSignature.of(text, memo: &memo)
            guard at >= start else {
                before.insert(type + "\u{0}" + signature)
                continue
            }
            let task = failure.taskID
            var entry = now[type, default: [:]][signature, default: Signature()]
            entry.count += 1
            entry.first = min(entry.first, at)
            entry.last = max(entry.last, at)
            entry.example = entry.example ?? task
            now[type, default: [:]][signature] = entry
            if failure.dead {
                var dead = deadByType[type, default: (0, [], [:])]
                dead.count += 1
                if let task, dead.tasks.count < 5 { dead.tasks.append(task) }
                dead.signatures[signature, default: 0] += 1
                deadByType[type] = dead
            }
        }
        var found: [Finding] = []
        for (type, signatures) in now {
            let top = signatures.sorted { ($0.value.count, $1.key) > ($1.value.count, $0.key) }.prefix(5)
            for (signature, entry) in top {
                let isNew = !before.contains(type + "\u{0}" + signature)
                found.append(
                    Finding(
                        .failureSignature, isNew ? .medium : .low, subject: type,
                        title:
                            "\(type) failed \(entry.count)× with \"\(signature)\"\(isNew ? " (new in this window)" : "")",
                        evidence: [
                            "signature": .string(signature), "count": .int(Int64(entry.count)), "new": .bool(isNew),
                            "first_seen": .string(Timestamp.format(entry.first)),
                            "last_seen": .string(Timestamp.format(entry.last)),
                        ], tasks: entry.example.map { [$0] } ?? []))
            }
        }
        for (type, dead) in deadByType {
            let signature = dead.signatures.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key ?? ""
            found.append(
                Finding(
                    .deadTasks, .high, subject: type,
                    title:
                        "\(dead.count) \(type) task\(dead.count == 1 ? "" : "s") died, most often with \"\(signature)\"",
                    evidence: ["dead": .int(Int64(dead.count)), "signature": .string(signature)], tasks: dead.tasks))
        }
        return found
    }

    // MARK: - Stuck work

    /// Approvals nobody decided in time, and tasks whose worker died with nobody taking them over:
    /// the state as it is now.
    func stuck(_ settings: AuditSettings, now: Int64, db: Database) throws -> [Finding] {
        var facts = AuditFacts(tally: LedgerTally(windows: [[:]]))
        try db.readStuck(settings, now: now, into: &facts)
        return Self.stuck(settings, facts)
    }

    static func stuck(_ settings: AuditSettings, _ facts: AuditFacts) -> [Finding] {
        var found: [Finding] = []
        let stale = facts.staleApprovals
        if let oldest = stale.first {
            let since = oldest.requestedAt
            found.append(
                Finding(
                    .staleApproval, .medium, subject: nil,
                    title:
                        "\(stale.count) approval request\(stale.count == 1 ? " has" : "s have") waited over \(settings.staleApproval) (the oldest since \(Timestamp.format(since)))",
                    evidence: ["pending": .int(Int64(stale.count)), "oldest": .string(Timestamp.format(since))],
                    tasks: stale.prefix(5).map(\.taskID)))
        }
        let stuckTasks = facts.stuckTasks
        if let first = stuckTasks.first {
            let since = first.leaseExpiresAt
            found.append(
                Finding(
                    .stuckTask, .high, subject: nil,
                    title:
                        "\(stuckTasks.count) task\(stuckTasks.count == 1 ? " is" : "s are") running or verifying with a lease run out since \(Timestamp.format(since)): is work-once running?",
                    evidence: [
                        "stuck": .int(Int64(stuckTasks.count)), "oldest_lease": .string(Timestamp.format(since)),
                    ],
                    tasks: stuckTasks.prefix(5).map(\.id)))
        }
        return found
    }

    /// Per type, three or more in the window: a handler that keeps outliving its lease, and
    /// verifiers that keep being unable to tell.
    static func repeated(_ window: [String: TypeTally]) -> [Finding] {
        var found: [Finding] = []
        for (type, tally) in window.sorted(by: { $0.key < $1.key }) {
            if tally.leaseExpired >= 3 {
                found.append(
                    Finding(
                        .repeatedLeaseExpiry, .medium, subject: type,
                        title: "\(type) outlived its lease \(tally.leaseExpired) times: raise its timeout or the lease",
                        evidence: ["count": .int(Int64(tally.leaseExpired))],
                        tasks: tally.lastLeaseExpiredTask.map { [$0] } ?? []))
            }
            if tally.inconclusive >= 3 {
                found.append(
                    Finding(
                        .inconclusiveVerifications, .medium, subject: type,
                        title:
                            "\(type)'s verifiers could not tell \(tally.inconclusive) times (a service down, a time-out)",
                        evidence: ["count": .int(Int64(tally.inconclusive))],
                        tasks: tally.lastInconclusiveTask.map { [$0] } ?? []))
            }
        }
        return found
    }

    // MARK: - The map

    /// The custodian alone (`map check`): the map against itself and this machine and, when the
    /// database exists, against the ledger of the window. Worst first; nothing is saved.
    public static func custodian(
        _ loaded: LoadedConfiguration, store: AutonomyStore?, now: Int64, window: Interval
    ) throws -> [Finding] {
        var found = configurationGaps(loaded)
        if let store {
            found += try store.read("check the map") { db in
                let start = now - window.milliseconds
                return ledgerGaps(
                    loaded.configuration, try LedgerTally.read([start, now], db: db).windows[0],
                    undeclared: try db.undeclaredTypes(loaded.configuration, since: start))
            }
        }
        return found.worstFirst()
    }

    /// The map against the ledger of a window: types it no longer declares, verifiers that never pass.
    static func ledgerGaps(_ configuration: Configuration, _ window: [String: TypeTally], undeclared: [String])
        -> [Finding]
    {
        var found: [Finding] = []
        for type in undeclared {
            found.append(
                Finding(
                    .undeclaredType, .medium, subject: type,
                    title: "\(type) is in the ledger but the map no longer declares it (its tasks are blocked)"))
        }
        for (type, tally) in window.sorted(by: { $0.key < $1.key }) {
            for (verifier, seen) in tally.verifiers.sorted(by: { $0.key < $1.key })
            where seen.checks >= 3 && seen.passes == 0 {
                found.append(
                    Finding(
                        .verifierNeverPasses, .medium, subject: type,
                        title:
                            "\(type)'s \(verifier) verifier failed all \(seen.checks) of its checks: it cannot tell success",
                        evidence: ["verifier": .string(verifier), "checks": .int(Int64(seen.checks))],
                        tasks: seen.lastTask.map { [$0] } ?? []))
            }
            // The other half of evidence that cannot tell: a check that never fails proves nothing
            // unless it can. Worth a look, not an alarm.
            let minimum = configuration.audit.minSample
            for (verifier, seen) in tally.verifiers.sorted(by: { $0.key < $1.key })
            where seen.checks >= minimum && seen.passes == seen.checks {
                found.append(
                    Finding(
                        .verifierNeverFails, .info, subject: type,
                        title:
                            "\(type)'s \(verifier) verifier passed all \(seen.checks) of its checks: make sure it can fail",
                        evidence: [
                            "verifier": .string(verifier), "checks": .int(Int64(seen.checks)),
                            "min_sample": .int(Int64(minimum)),
                        ], tasks: seen.lastTask.map { [$0] } ?? []))
            }
        }
        return found
    }

    /// The map against itself and this machine: handlers that are not here, tiers no model serves,
    /// owners missing, components naming types the map does not declare. A handler is looked for
    /// only where it runs: not for the types this host leaves to others (`worker.types`, `run_on`),
    /// whose handlers may well live on their hosts alone. (On PostgreSQL a finding here would pause
    /// the type for every host.)
    static func configurationGaps(_ loaded: LoadedConfiguration) -> [Finding] {
        let configuration = loaded.configuration
        var found: [Finding] = []
        let tiers = Set(configuration.gateway.models.map(\.tier.rawValue))
        let elsewhere = Set(configuration.typesRunElsewhere)
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) {
            switch type.handler {
            case .exec(let handler) where !elsewhere.contains(type.name):
                let program = handler.argv[0]
                let path = ExecRunner.locate(
                    program, base: loaded.baseDirectory,
                    searchPath: handler.env["PATH"] ?? ProcessEnvironment.variables["PATH"])
                if path.map({ access($0, X_OK) != 0 }) ?? true {
                    found.append(
                        Finding(
                            .missingHandler, .high, subject: type.name,
                            title: "\(type.name)'s handler \(program) is missing or not executable here",
                            evidence: ["program": .string(program)]))
                }
            case .llm(let handler):
                if handler.tier != .auto, !tiers.contains(handler.tier.rawValue) {
                    found.append(
                        Finding(
                            .tierWithoutModel, .high, subject: type.name,
                            title: "\(type.name) asks for the \(handler.tier.rawValue) tier, which no model serves",
                            evidence: ["tier": .string(handler.tier.rawValue)]))
                } else if handler.tier == .auto, configuration.gateway.models.isEmpty {
                    found.append(
                        Finding(
                            .tierWithoutModel, .high, subject: type.name,
                            title: "\(type.name) is an llm type, and no model is configured",
                            evidence: ["tier": "auto"]))
                }
            case .exec, .remediation:
                break
            }
            if type.owner == nil {
                found.append(Finding(.noOwner, .low, subject: type.name, title: "task type \(type.name) has no owner"))
            }
        }
        for component in configuration.components {
            if component.owner == nil {
                found.append(
                    Finding(.noOwner, .low, subject: component.name, title: "component \(component.name) has no owner"))
            }
            for type in component.taskTypes where configuration.taskTypes[type] == nil {
                found.append(
                    Finding(
                        .componentNamesUndeclaredType, .medium, subject: component.name,
                        title: "component \(component.name) names \(type), which the map does not declare",
                        evidence: ["type": .string(type)]))
            }
        }
        return found
    }

    // MARK: - Budget and alerts

    private static func budget(_ configuration: Configuration, _ facts: AuditFacts) -> [Finding] {
        let cap = configuration.gateway.dailyCapUSD
        guard cap > 0 else { return [] }
        let days = facts.spentPerDay.filter { $0.spentUSD >= cap * 0.999 }.map {
            String(Timestamp.format($0.day, timeZone: configuration.timezone).prefix(10))
        }
        guard !days.isEmpty else { return [] }
        return [
            Finding(
                .daysAtCap, .medium, subject: nil,
                title: "the model budget reached its cap on \(days.count) day\(days.count == 1 ? "" : "s")",
                evidence: ["days": .array(days.map { .string($0) }), "cap_usd": .double(cap)])
        ]
    }

    /// Tasks the budget deferred, and alert channels that failed, in the window.
    private static func alerts(_ facts: AuditFacts) -> [Finding] {
        let tally = facts.tally
        var found: [Finding] = []
        if tally.deferred > 0 {
            found.append(
                Finding(
                    .deferrals, .low, subject: nil,
                    title:
                        "\(tally.deferred) task\(tally.deferred == 1 ? " was" : "s were") deferred to the next day by the budget",
                    evidence: ["deferred": .int(Int64(tally.deferred))]))
        }
        for (channel, count) in tally.notifyFailed.sorted(by: { $0.key < $1.key }) {
            let waiting = facts.undelivered[channel, default: 0]
            found.append(
                Finding(
                    .alertsFailing, waiting > 0 ? .high : .medium, subject: channel,
                    title:
                        "alerts via \(channel) failed \(count) times; \(waiting) still wait\(waiting == 1 ? "s" : "") to be delivered",
                    evidence: ["failures": .int(Int64(count)), "undelivered": .int(Int64(waiting))]))
        }
        return found
    }
}

extension Database {
    /// The open proposal under this key, if any: one at a time.
    func openProposal(key: String) throws -> Int64? {
        try Int64.fetchOne(
            self,
            sql: """
                SELECT t.id FROM proposals p JOIN tasks t ON t.id = p.task_id
                WHERE p.key = ? AND t.state NOT IN (\(TaskState.sqlList(TaskState.finalStates))) ORDER BY t.id LIMIT 1
                """, arguments: [key])
    }

    /// The latest proposal under this key that ended in one of `states` at or after `since`.
    func endedProposal(key: String, in states: [TaskState], since: Int64) throws -> (task: Int64, state: TaskState)? {
        try Row.fetchOne(
            self,
            sql: """
                SELECT t.id, t.state FROM proposals p JOIN tasks t ON t.id = p.task_id
                WHERE p.key = ? AND t.state IN (\(TaskState.sqlList(states))) AND t.finished_at >= ?
                ORDER BY t.id DESC LIMIT 1
                """, arguments: [key, since]
        ).map { (try $0.decode(forColumn: "id"), try $0.decode(forColumn: "state")) }
    }

    /// Saves a run (an audit's, or a heal cycle's that proposed fixes) and its findings; returns
    /// the run's id and each finding's, in order.
    func saveRun(_ findings: [Finding], headline: String, source: String, start: Int64, end: Int64) throws -> (
        Int64, [Int64]
    ) {
        try execute(
            sql: """
                INSERT INTO audit_runs (at, window_start, window_end, headline, worst, source) VALUES (?, ?, ?, ?, ?, ?)
                """,
            arguments: [end, start, end, headline, findings.map(\.severity).max()?.rawValue, source])
        let run = lastInsertedRowID
        var ids: [Int64] = []
        for finding in findings {
            try execute(
                sql: """
                    INSERT INTO findings (run_id, kind, severity, subject, title, evidence) VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    run, finding.kind.rawValue, finding.severity.rawValue, finding.subject, finding.title,
                    finding.storedEvidence.canonicalText,
                ])
            ids.append(lastInsertedRowID)
        }
        return (run, ids)
    }
}

/// The last saved audit, as an alert tells of it.
struct AuditSummary {
    var id: Int64
    var windowStart: Int64
    var windowEnd: Int64
    var counts: [Severity: Int]
    /// Kind and severity of each finding, worst first.
    var kinds: [(kind: String, severity: String)]
}

extension AutonomyStore {
    func latestAudit() throws -> AuditSummary? {
        try read("read the last audit") { db in
            guard
                let run = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT id, window_start, window_end FROM audit_runs WHERE source = 'audit' ORDER BY id DESC LIMIT 1"
                )
            else { return nil }
            let id: Int64 = try run.decode(forColumn: "id")
            var summary = AuditSummary(
                id: id, windowStart: try run.decode(forColumn: "window_start"),
                windowEnd: try run.decode(forColumn: "window_end"), counts: [:], kinds: [])
            for row in try Row.fetchAll(
                db, sql: "SELECT kind, severity FROM findings WHERE run_id = ? ORDER BY id", arguments: [id])
            {
                let severity: String = try row.decode(forColumn: "severity")
                if let level = Severity(rawValue: severity) { summary.counts[level, default: 0] += 1 }
                summary.kinds.append((try row.decode(forColumn: "kind"), severity))
            }
            return summary
        }
    }
}
