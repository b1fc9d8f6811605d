import Foundation
import PostgresNIO

// Fix proposals, the overrides approved ones make, and heal's guardrails on PostgreSQL: the same
// rows, rules and ledger events as on SQLite (`Audit.swift`, `Overrides.swift`,
// `HealGuardrails.swift`), every time on the database's clock.

extension Override {
    init(postgres row: PostgresRow) throws {
        let (id, kind, type, value, reason, proposal, created, expires) = try row.decode(
            (Int64, String, String?, Int64?, String, Int64?, Int64, Int64?).self)
        guard let kind = Kind(rawValue: kind) else {
            throw StoreError.failed(path: "", operation: "read an override", reason: "unknown kind \(kind)")
        }
        self.init(
            id: id, kind: kind, type: type, value: value, reason: reason, proposal: proposal, createdAt: created,
            expiresAt: expires)
    }
}

extension PostgresTransaction {
    /// The overrides in effect on the database's clock, oldest first.
    nonisolated(nonsending) func activeOverrides() async throws -> [Override] {
        try await rows(
            """
            SELECT \(unescaped: Override.columns) FROM overrides
            WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > \(now)) ORDER BY id
            """
        ).map(Override.init(postgres:))
    }

    /// `Database.setOverride`: ends any active one of the same kind on the same type, then adds it,
    /// with a ledger row for each.
    nonisolated(nonsending) func setOverride(
        _ kind: Override.Kind, type: String?, value: Int64?, reason: String, proposal: Int64?, lasting: Interval?
    ) async throws -> Override {
        for previous in try await activeOverrides() where previous.kind == kind && previous.type == type {
            try await endOverride(previous, by: "autonomy", reason: "replaced by a newer override")
        }
        let expiresAt = lasting.map { now + $0.milliseconds }
        guard
            let row = try await rows(
                """
                INSERT INTO overrides (kind, type, value, reason, task_id, created_at, expires_at)
                VALUES (\(kind.rawValue), \(type), \(value), \(reason), \(proposal), \(now), \(expiresAt))
                RETURNING \(unescaped: Override.columns)
                """
            ).first
        else { throw StoreError.failed(path: "", operation: "add an override", reason: "no row came back") }
        let made = try Override(postgres: row)
        try await appendLedger(
            .overrideSet, taskID: proposal, type: type,
            detail: [
                "override": .int(made.id), "kind": .string(kind.rawValue), "value": value.map { .int($0) } ?? .null,
                "expires_at": expiresAt.map { .string(Timestamp.format($0)) } ?? .null,
            ], notes: ["reason": reason])
        return made
    }

    nonisolated(nonsending) func endOverride(_ override: Override, by actor: String, reason: String?) async throws {
        try await query("UPDATE overrides SET removed_at = \(now), removed_by = \(actor) WHERE id = \(override.id)")
        try await appendLedger(
            .overrideRemoved, taskID: override.proposal, type: override.type,
            detail: ["override": .int(override.id), "kind": .string(override.kind.rawValue), "by": .string(actor)],
            notes: ["reason": reason])
    }

    /// The open proposal under this key, if any: one at a time.
    nonisolated(nonsending) func openProposal(key: String) async throws -> Int64? {
        try await rows(
            """
            SELECT t.id FROM proposals p JOIN tasks t ON t.id = p.task_id
            WHERE p.key = \(key) AND NOT (t.state = ANY(\(TaskState.finalStates.map(\.rawValue))::text[]))
            ORDER BY t.id LIMIT 1
            """
        ).first?.decode(Int64.self)
    }

    /// The latest proposal under this key that ended in one of `states` at or after `since`.
    nonisolated(nonsending) func endedProposal(key: String, in states: [TaskState], since: Int64) async throws -> (
        task: Int64, state: TaskState
    )? {
        guard
            let (id, state) = try await rows(
                """
                SELECT t.id, t.state FROM proposals p JOIN tasks t ON t.id = p.task_id
                WHERE p.key = \(key) AND t.state = ANY(\(states.map(\.rawValue))::text[]) AND t.finished_at >= \(since)
                ORDER BY t.id DESC LIMIT 1
                """
            ).first?.decode((Int64, String).self),
            let ended = TaskState(rawValue: state)
        else { return nil }
        return (id, ended)
    }

    /// `Database.healRefusal` on PostgreSQL: why an automatic fix may not run now, or nil.
    nonisolated(nonsending) func healRefusal(_ proposal: Proposal, heal: HealSettings, planned: Int = 0) async throws
        -> HealRefusal?
    {
        HealRefusal.evaluate(
            try await guardrailFacts(proposal, heal: heal), target: proposal.healTarget, heal: heal, now: now,
            planned: planned)
    }

    /// The guardrails' counts for a proposal (`Database.guardrailFacts`).
    nonisolated(nonsending) func guardrailFacts(_ proposal: Proposal, heal: HealSettings) async throws
        -> GuardrailFacts
    {
        var facts = GuardrailFacts(lastHour: (0, nil), lastDay: (0, nil), sameKey: (0, nil))
        facts.stopSince = try await rows(
            "SELECT started_at FROM heal_stops WHERE ended_at IS NULL ORDER BY id LIMIT 1"
        ).first?.decode(Int64.self)
        facts.breakerUntil =
            try await rows(
                """
                SELECT max(closes_at) FROM heal_breakers
                WHERE target = \(proposal.healTarget) AND closed_at IS NULL AND closes_at > \(now)
                """
            ).first?.decode(Int64?.self) ?? nil
        for (window, count) in [(Interval.hours(1), \GuardrailFacts.lastHour), (.days(1), \.lastDay)] {
            facts[keyPath: count] =
                try await rows(
                    """
                    SELECT count(*)::bigint, min(applied_at) FROM heal_actions
                    WHERE automatic = 1 AND applied_at > \(now - window.milliseconds)
                    """
                ).first?.decode((Int, Int64?).self) ?? (0, nil)
        }
        facts.sameKey =
            try await rows(
                """
                SELECT count(*)::bigint, max(applied_at) FROM heal_actions
                WHERE automatic = 1 AND key = \(proposal.key) AND applied_at > \(now - heal.backoffMax.milliseconds)
                """
            ).first?.decode((Int, Int64?).self) ?? (0, nil)
        return facts
    }

    /// `Database.recordHealAction`: a claimed fix proposal, and, when it runs without a human, the
    /// `heal_applied` row naming the entry that allowed it.
    nonisolated(nonsending) func recordHealAction(task: Int64, payload: String, automatic: Bool, rating: Rating?)
        async throws
    {
        guard let proposal = try? Proposal(payload: payload) else { return }  // the handler fails it
        try await query(
            """
            INSERT INTO heal_actions (task_id, key, target, action, automatic, applied_at)
            VALUES (\(task), \(proposal.key), \(proposal.healTarget), \(proposal.action.name), \(automatic ? 1 : 0),
                    \(now))
            ON CONFLICT (task_id) DO UPDATE SET key = excluded.key, target = excluded.target,
                action = excluded.action, automatic = excluded.automatic, applied_at = excluded.applied_at,
                outcome = NULL, judged_at = NULL, reason = NULL
            """)
        guard automatic else { return }
        try await appendLedger(
            .healApplied, taskID: task, type: TaskType.remediationTypeName,
            detail: [
                "action": .string(proposal.action.name), "target": .string(proposal.healTarget),
                "finding": .string(proposal.finding.kind.rawValue),
                "allowed_by": .string(rating?.reasons.first ?? "heal.auto_apply"),
            ])
    }
}

extension PostgresStore {
    /// Enqueues one proposal, unless one under its key is still open or ended within the cooldown
    /// (`AutonomyStore.enqueue(_:settings:…)`).
    func enqueue(
        _ proposal: Proposal, configuration: Configuration, _ transaction: PostgresTransaction,
        source: String = "audit", cooldown: Bool = true
    ) async throws -> ProposalOutcome {
        if let open = try await transaction.openProposal(key: proposal.key) {
            return ProposalOutcome(proposal, task: open, status: .stillOpen)
        }
        if cooldown,
            let recent = try await transaction.endedProposal(
                key: proposal.key, in: TaskState.finalStates,
                since: transaction.now - configuration.audit.cooldown.milliseconds)
        {
            return ProposalOutcome(proposal, task: recent.task, status: .coolingDown, ended: recent.state)
        }
        let request = EnqueueRequest(
            type: TaskType.remediationTypeName, payload: proposal.payload.canonicalText, source: source,
            subject: "\(proposal.action.summary) for \(proposal.finding.kind.rawValue)")
        let task = try await insert(
            try request.prepare(configuration, now: transaction.now, proposal: true), configuration: configuration,
            producer: nil, transaction
        ).task
        try await transaction.query(
            """
            INSERT INTO proposals (task_id, key, action, run_id, finding_id)
            VALUES (\(task.id), \(proposal.key), \(proposal.action.name), \(proposal.runID), \(proposal.findingID))
            """)
        return ProposalOutcome(proposal, task: task.id, status: .proposed)
    }

    /// The overrides in effect now, oldest first (on the database's clock; `now` is not used).
    public func overrides(now: Int64) async throws -> [Override] {
        try await read("read the overrides") { try await $0.activeOverrides() }
    }

    /// Ends an override now (`autonomy overrides remove`), with a ledger row naming who and why.
    ///
    /// - Throws: `OverrideError` (nothing changed) or `StoreError`.
    public func removeOverride(id: Int64, by actor: String, reason: String?) async throws -> Override {
        try await write("remove an override") { transaction in
            guard
                let row = try await transaction.rows(
                    """
                    SELECT \(unescaped: Override.columns), removed_at FROM overrides WHERE id = \(id) FOR UPDATE
                    """
                ).first
            else { throw OverrideError.notFound(id) }
            let override = try Override(postgres: row)
            let removedAt = try row.decode(
                (Int64, String, String?, Int64?, String, Int64?, Int64, Int64?, Int64?).self
            ).8
            guard removedAt == nil, override.expiresAt.map({ $0 > transaction.now }) ?? true else {
                throw OverrideError.notActive(id)
            }
            try await transaction.endOverride(override, by: actor, reason: reason)
            return override
        }
    }
}

extension PostgresStore: RemediationStore {
    public func firstBrokenLedgerRow() async throws -> Int64? { try await verifyLedgerChain().firstBroken?.id }

    public func setOverride(
        _ kind: Override.Kind, type: String?, value: Int64?, reason: String, proposal: Int64, lasting: Interval?,
        now: Int64
    ) async throws -> Override {
        try await write("apply a proposal") { transaction in
            try await transaction.setOverride(
                kind, type: type, value: value, reason: reason, proposal: proposal, lasting: lasting)
        }
    }

    public func endPauses(of type: String, by actor: String, reason: String, now: Int64) async throws -> [Int64] {
        try await write("apply a proposal") { transaction in
            let pauses = try await transaction.activeOverrides().filter { $0.kind == .pause && $0.type == type }
            for pause in pauses { try await transaction.endOverride(pause, by: actor, reason: reason) }
            return pauses.map(\.id)
        }
    }

    public func retryDead(type: String, since: Int64, by actor: String, now: Int64) async throws -> (
        retried: [Int64], pruned: [Int64]
    ) {
        try await write("retry dead tasks") { transaction in
            let dead = try await transaction.rows(
                """
                SELECT \(unescaped: TaskRecord.columns) FROM tasks
                WHERE state = 'dead' AND type = \(type) AND finished_at >= \(since) ORDER BY id LIMIT 1000
                FOR UPDATE
                """
            ).map(TaskRecord.init(postgres:))
            var sent: (retried: [Int64], pruned: [Int64]) = ([], [])
            for task in dead {
                guard !task.payloadPruned else {
                    sent.pruned.append(task.id)
                    continue
                }
                try await transaction.supersedeApprovals(
                    taskID: task.id, typeName: task.type, states: [.pending, .approved],
                    reason: "the task was retried by \(actor)")
                try await transaction.transition(
                    task.id, .retry, changing: [.freshStart, .runAt(transaction.now)], attempt: task.attempts,
                    detail: ["by": .string(actor), "previous_attempts": .int(Int64(task.attempts))])
                sent.retried.append(task.id)
            }
            return sent
        }
    }

    public func expireStaleApprovals(olderThan: Interval, now: Int64) async throws -> [Int64] {
        try await write("expire stale approvals") { transaction in
            try await transaction.expireApprovals(requestedBefore: transaction.now - olderThan.milliseconds).map(\.id)
        }
    }

    public func notifyOwner(proposal task: Int64, notify: NotifySettings, now: Int64) async throws {
        try await write("notify an owner", ledger: false) { transaction in
            try await transaction.queueNotification(.ownerNeeded, taskID: task, notify: notify)
        }
    }

    public func countDead(_ ids: [Int64]) async throws -> Int {
        try await read("check a proposal") { transaction in
            try await transaction.rows(
                "SELECT count(*)::bigint FROM tasks WHERE state = 'dead' AND id = ANY(\(ids)::bigint[])"
            ).first?.decode(Int.self) ?? 0
        }
    }

    public func countStaleApprovals(olderThan: Interval, now: Int64) async throws -> Int {
        try await read("check a proposal") { transaction in
            var facts = AuditFacts(tally: LedgerTally(windows: [[:]]))
            var settings = AuditSettings()
            settings.staleApproval = olderThan
            try await transaction.readStuck(settings, into: &facts)
            return facts.staleApprovals.count
        }
    }

    public func heldPastLease(task: Int64, now: Int64) async throws -> Bool {
        try await read("check a proposal") { transaction in
            try await !transaction.rows(
                """
                SELECT 1 FROM tasks WHERE id = \(task) AND state IN ('running', 'verifying')
                  AND lease_expires_at < \(transaction.now)
                """
            ).isEmpty
        }
    }

    public func stuckFindings(_ settings: AuditSettings, now: Int64) async throws -> [Finding] {
        try await read("check a finding") { transaction in
            var facts = AuditFacts(tally: LedgerTally(windows: [[:]]))
            try await transaction.readStuck(settings, into: &facts)
            return AutonomyStore.stuck(settings, facts)
        }
    }
}

extension PostgresTransaction {
    nonisolated(nonsending) func breakers(open: Bool, target: String? = nil) async throws -> [HealBreaker] {
        try await rows(
            """
            SELECT id, target, opened_at, closes_at, reason FROM heal_breakers
            WHERE closed_at IS NULL AND (closes_at > \(now)) = \(open) AND (\(target)::text IS NULL OR target = \(target))
            ORDER BY id
            """
        ).map {
            let (id, target, opened, closes, reason) = try $0.decode((Int64, String, Int64, Int64, String).self)
            return HealBreaker(
                id: id, target: target, openedAt: ISOTime(opened), closesAt: ISOTime(closes), reason: reason)
        }
    }

    /// `Database.closeBreaker`: closed at `time` (a cool-down's end, or now), recorded now.
    nonisolated(nonsending) func closeBreaker(_ breaker: HealBreaker, by actor: String, at time: Int64) async throws {
        try await query("UPDATE heal_breakers SET closed_at = \(time), closed_by = \(actor) WHERE id = \(breaker.id)")
        try await appendLedger(
            .healBreakerClosed, taskID: nil, type: nil,
            detail: [
                "breaker": .int(breaker.id), "target": .string(breaker.target), "by": .string(actor),
                "closed_at": .string(Timestamp.format(time)),
            ])
    }
}

extension PostgresStore {
    /// The breakers open now.
    public func openBreakers() async throws -> [HealBreaker] {
        try await read("read the heal breakers") { try await $0.breakers(open: true) }
    }

    /// Closes the target's open breaker (`heal reset`), with a ledger row naming who.
    ///
    /// - Throws: `NoOpenBreaker` (nothing changed) or `StoreError`.
    public func resetBreaker(target: String, by actor: String) async throws -> [HealBreaker] {
        try await write("reset a heal breaker") { transaction in
            let open = try await transaction.breakers(open: true)
            let closing = open.filter { $0.target == target }
            guard !closing.isEmpty else { throw NoOpenBreaker(target: target, open: open.map(\.target)) }
            for breaker in closing { try await transaction.closeBreaker(breaker, by: actor, at: transaction.now) }
            return closing
        }
    }
}

extension PostgresTransaction {
    /// `Database.healActivity`: automatic actions since then, per target and outcome (`pending`
    /// until judged).
    nonisolated(nonsending) func healActivity(since: Int64) async throws -> [String: [String: Int]] {
        var activity: [String: [String: Int]] = [:]
        for row in try await rows(
            """
            SELECT target, coalesce(outcome, 'pending'), count(*)::bigint FROM heal_actions
            WHERE automatic = 1 AND applied_at >= \(since) GROUP BY target, outcome
            """)
        {
            let (target, outcome, count) = try row.decode((String, String, Int).self)
            activity[target, default: [:]][outcome] = count
        }
        return activity
    }
}

extension PostgresStore {
    /// `loaded` with the active overrides applied: what a worker runs.
    public func applyingOverrides(to loaded: LoadedConfiguration) async throws -> LoadedConfiguration {
        var loaded = loaded
        loaded.configuration = loaded.configuration.applying(try await overrides(now: 0))
        return loaded
    }

    /// What heal did and holds, for `map`: the open breakers, and the last day's automatic
    /// actions per target and outcome.
    public func healSummary() async throws -> (breakers: [HealBreaker], lastDay: [String: [String: Int]]) {
        try await read("read heal's last day") { transaction in
            (
                try await transaction.breakers(open: true),
                try await transaction.healActivity(since: transaction.now - Interval.days(1).milliseconds)
            )
        }
    }
}
