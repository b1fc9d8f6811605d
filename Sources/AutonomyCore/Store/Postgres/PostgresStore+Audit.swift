import Foundation
import PostgresNIO

// The Oracle on PostgreSQL: the same facts (`AuditFacts`), read from every host's rows, and the
// same analysis; runs, findings and fix proposals saved as on SQLite.

extension PostgresStore {
    /// `AutonomyStore.audit` on PostgreSQL, over the window ending at the database's clock, with
    /// `notify` queuing the `audit_report` alert in the transaction that saves the run, and with
    /// `propose` the findings' fix proposals (each waiting for a signed approval, unless still
    /// open under the same key or ended within `audit.cooldown`).
    public func audit(
        loaded file: LoadedConfiguration, window: Interval? = nil, notify: Bool = false, propose: Bool = true
    ) async throws -> AuditReport {
        let length = (window ?? file.configuration.audit.window).milliseconds
        let (facts, overrides, now) = try await read("audit") { transaction in
            let now = transaction.now
            // The map as the worker runs it: a raise starts from the raised value.
            let overrides = try await transaction.activeOverrides()
            let configuration = file.configuration.applying(overrides)
            return (
                try await transaction.auditFacts(configuration, windows: [now - 2 * length, now - length, now]),
                overrides, now
            )
        }
        var loaded = file
        loaded.configuration = file.configuration.applying(overrides)
        let configuration = loaded.configuration
        let start = now - length
        var findings = AutonomyStore.findings(loaded, facts, start: start)
        findings += AutonomyStore.chainFindings(try await verifyLedgerChain())
        findings += AutonomyStore.pauses(overrides)
        findings = findings.worstFirst()
        let headline = AutonomyStore.headline(findings, window: Interval(milliseconds: length))
        let catalog =
            propose ? RemediationCatalog.proposals(for: findings, configuration: configuration, since: start) : []
        let (runID, proposals) = try await write("save an audit", ledger: !catalog.isEmpty) { transaction in
            let (run, ids) = try await transaction.saveRun(
                findings, headline: headline, source: "audit", start: start, end: now)
            var proposals: [ProposalOutcome] = []
            for var proposal in catalog {
                guard let index = findings.firstIndex(of: proposal.finding) else { continue }
                (proposal.runID, proposal.findingID) = (run, ids[index])
                proposals.append(try await self.enqueue(proposal, configuration: configuration, transaction))
            }
            if notify {
                try await transaction.queueNotification(.auditReport, taskID: nil, notify: configuration.notify)
            }
            return (run, proposals)
        }
        return AuditReport(
            runID: runID, windowStart: ISOTime(start), windowEnd: ISOTime(now), headline: headline, findings: findings,
            proposals: proposals)
    }

    /// The custodian (`map check`): the map against itself and this machine, and against every
    /// host's ledger of the last `window`.
    public func custodian(_ loaded: LoadedConfiguration, window: Interval) async throws -> [Finding] {
        let configuration = loaded.configuration
        let (tally, undeclared) = try await read("check the map") { transaction in
            let start = transaction.now - window.milliseconds
            let tally = try await transaction.tally([start, transaction.now])
            return (tally, try await transaction.undeclaredTypes(configuration, since: start))
        }
        return
            (AutonomyStore.configurationGaps(loaded)
            + AutonomyStore.ledgerGaps(configuration, tally.windows[0], undeclared: undeclared)).worstFirst()
    }

    /// Saves a model's summary of a run (`audit.explain`).
    public func saveExplanation(_ text: String, runID: Int64) async throws {
        try await write("save the audit's summary", ledger: false) { transaction in
            try await transaction.query("UPDATE audit_runs SET explanation = \(text) WHERE id = \(runID)")
        }
    }

    /// The last `limit` audits, newest first, with the proposals each made (`AutonomyStore.auditRuns`).
    public func auditRuns(limit: Int) async throws -> [AuditRun] {
        try await read("read the audits") { transaction in
            var runs: [AuditRun] = []
            for row in try await transaction.rows(
                """
                SELECT id, at, window_start, window_end, headline, worst FROM audit_runs
                WHERE source = 'audit' ORDER BY id DESC LIMIT \(limit)
                """)
            {
                let (id, at, start, end, headline, worst) = try row.decode(
                    (Int64, Int64, Int64, Int64, String, String?).self)
                let findings = try await transaction.rows(
                    "SELECT kind, severity, subject, title FROM findings WHERE run_id = \(id) ORDER BY id"
                ).map {
                    let (kind, severity, subject, title) = try $0.decode((String, String, String?, String).self)
                    return AuditRun.Found(kind: kind, severity: severity, subject: subject, title: title)
                }
                let proposals = try await transaction.rows(
                    """
                    SELECT p.task_id, p.action, t.state FROM proposals p JOIN tasks t ON t.id = p.task_id
                    WHERE p.run_id = \(id) ORDER BY p.task_id
                    """
                ).map {
                    let (task, action, state) = try $0.decode((Int64, String, String).self)
                    return AuditRun.Proposed(taskID: task, action: action, state: state)
                }
                runs.append(
                    AuditRun(
                        id: id, at: at, windowStart: start, windowEnd: end, headline: headline, worst: worst,
                        findings: findings, proposals: proposals))
            }
            return runs
        }
    }
}

extension PostgresTransaction {
    /// Stale approval requests (fix proposals aside) and tasks whose lease ran out, as they stand
    /// now (`Database.readStuck`).
    nonisolated(nonsending) func readStuck(_ settings: AuditSettings, into facts: inout AuditFacts) async throws {
        facts.staleApprovals = try await rows(
            """
            SELECT a.task_id, a.requested_at FROM approvals a JOIN tasks t ON t.id = a.task_id
            WHERE a.state = 'pending' AND a.requested_at <= \(now - settings.staleApproval.milliseconds)
              AND t.type <> \(TaskType.remediationTypeName)
            ORDER BY a.requested_at
            """
        ).map { try $0.decode((Int64, Int64).self) }.map { (taskID: $0.0, requestedAt: $0.1) }
        facts.stuckTasks = try await rows(
            """
            SELECT id, lease_expires_at FROM tasks
            WHERE state IN ('running', 'verifying') AND lease_expires_at < \(now) ORDER BY lease_expires_at
            """
        ).map { try $0.decode((Int64, Int64).self) }.map { (id: $0.0, leaseExpiresAt: $0.1) }
    }

    /// The facts of an audit over `windows` (`Database.auditFacts` on SQLite).
    nonisolated(nonsending) func auditFacts(_ configuration: Configuration, windows: [Int64]) async throws
        -> AuditFacts
    {
        let start = windows[1]
        var facts = AuditFacts(tally: try await tally(windows))
        facts.ledgerBegan =
            try await rows("SELECT at FROM ledger ORDER BY id LIMIT 1").first?.decode(Int64.self) ?? windows.last
        facts.lastSuccess = try await lastSuccess(of: configuration.taskTypes.keys)
        try await readErrors(into: &facts)
        try await readStuck(configuration.audit, into: &facts)
        facts.undeclaredTypes = try await undeclaredTypes(configuration, since: start)
        if configuration.gateway.dailyCapUSD > 0 {
            for day in AuditFacts.days(from: start, to: now, in: configuration.timezone) {
                let spent =
                    try await rows(
                        """
                        SELECT coalesce(sum(cost_usd), 0) FROM llm_calls
                        WHERE state = 'settled' AND started_at >= \(day.start) AND started_at < \(day.end)
                        """
                    ).first?.decode(Double.self) ?? 0
                facts.spentPerDay.append((day.start, spent))
            }
        }
        for row in try await rows(
            "SELECT channel, count(*)::bigint FROM notifications WHERE delivered_at IS NULL GROUP BY channel")
        {
            let (channel, count) = try row.decode((String, Int).self)
            facts.undelivered[channel] = count
        }
        return facts
    }

    /// Each type's last success, ever: one seek per type down the (type, event, at) index.
    nonisolated(nonsending) func lastSuccess(of types: some Sequence<String>) async throws -> [String: Int64] {
        var found: [String: Int64] = [:]
        for type in types {
            let at = try await rows("SELECT max(at) FROM ledger WHERE type = \(type) AND event = 'done'").first?
                .decode(Int64?.self)
            if let at = at ?? nil { found[type] = at }
        }
        return found
    }

    /// The types the ledger has rows of since `since` that the map does not declare.
    nonisolated(nonsending) func undeclaredTypes(_ configuration: Configuration, since: Int64) async throws
        -> [String]
    {
        try await rows("SELECT DISTINCT type FROM ledger WHERE type IS NOT NULL AND at >= \(since) ORDER BY type")
            .map { try $0.decode(String.self) }.filter { configuration.taskType(named: $0) == nil }
    }

    /// Saves a run and its findings; the run's id and each finding's, in order.
    nonisolated(nonsending) func saveRun(
        _ findings: [Finding], headline: String, source: String, start: Int64, end: Int64
    ) async throws -> (Int64, [Int64]) {
        guard
            let run = try await rows(
                """
                INSERT INTO audit_runs (at, window_start, window_end, headline, worst, source)
                VALUES (\(end), \(start), \(end), \(headline), \(findings.map(\.severity).max()?.rawValue), \(source))
                RETURNING id
                """
            ).first?.decode(Int64.self)
        else { throw StoreError.failed(path: "", operation: "save an audit", reason: "no row came back") }
        var ids: [Int64] = []
        for finding in findings {
            let id = try await rows(
                """
                INSERT INTO findings (run_id, kind, severity, subject, title, evidence)
                VALUES (\(run), \(finding.kind.rawValue), \(finding.severity.rawValue), \(finding.subject),
                        \(finding.title), \(finding.storedEvidence.canonicalText))
                RETURNING id
                """
            ).first?.decode(Int64.self)
            ids.append(id ?? 0)
        }
        return (run, ids)
    }

    /// The last saved audit, as its alert tells of it.
    nonisolated(nonsending) func latestAudit() async throws -> AuditSummary? {
        guard
            let (id, start, end) = try await rows(
                "SELECT id, window_start, window_end FROM audit_runs WHERE source = 'audit' ORDER BY id DESC LIMIT 1"
            ).first?.decode((Int64, Int64, Int64).self)
        else { return nil }
        var summary = AuditSummary(id: id, windowStart: start, windowEnd: end, counts: [:], kinds: [])
        for row in try await rows("SELECT kind, severity FROM findings WHERE run_id = \(id) ORDER BY id") {
            let (kind, severity) = try row.decode((String, String).self)
            if let level = Severity(rawValue: severity) { summary.counts[level, default: 0] += 1 }
            summary.kinds.append((kind, severity))
        }
        return summary
    }
}
