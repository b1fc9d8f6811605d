import Foundation
import PostgresNIO

extension PostgresTransaction {
    /// Moves a task along one edge of the life cycle (`TaskTransition`), as `Database.transition`
    /// does on SQLite: the same table, the same columns (`TaskTransition.assignments`), the state
    /// (and with `lease`, the lease) checked in the `UPDATE` itself, and the ledger row written
    /// with it. Throws `TransitionRefused` with nothing changed when the task is elsewhere.
    @discardableResult
    nonisolated(nonsending) func transition(
        _ taskID: Int64, _ transition: TaskTransition, lease: String? = nil, changing changes: [TaskChange] = [],
        attempt: Int? = nil, durationMs: Int64? = nil, detail: JSONValue? = nil, notes: [String: String?] = [:],
        host: String? = nil, notify: NotifySettings? = nil
    ) async throws -> TaskRecord {
        var bindings = PostgresBindings()
        var sets: [String] = []
        for assignment in transition.assignments(changes, at: now) {
            switch assignment.value {
            case .expression(let expression):
                sets.append("\(assignment.column) = \(expression)")
            case .integer(let number):
                bindings.append(number)
                sets.append("\(assignment.column) = $\(bindings.count)")
            case .text(let text):
                bindings.append(text)
                sets.append("\(assignment.column) = $\(bindings.count)")
            }
        }
        if let host {
            bindings.append(host)
            sets.append("host = $\(bindings.count)")
        }
        bindings.append(taskID)
        var condition = "id = $\(bindings.count) AND state IN (\(TaskState.sqlList(transition.from)))"
        if let lease {
            bindings.append(lease)
            condition += " AND lease_token = $\(bindings.count)"
        }
        let updated = try await rows(
            PostgresQuery(
                unsafeSQL: """
                    UPDATE tasks SET \(sets.joined(separator: ", ")) WHERE \(condition)
                    RETURNING \(TaskRecord.columns)
                    """, binds: bindings))
        guard let row = updated.first else {
            var found: TaskState?
            for try await state in try await query("SELECT state FROM tasks WHERE id = \(taskID)").decode(String.self) {
                found = TaskState(rawValue: state)
            }
            throw TransitionRefused(
                taskID: taskID, transition: transition.name, expected: transition.from, found: found)
        }
        let task = try TaskRecord(postgres: row)
        try await appendLedger(
            transition.event, taskID: taskID, type: task.type, attempt: attempt, durationMs: durationMs, detail: detail,
            notes: notes)
        if let alert = transition.alert {
            guard let notify else { throw MissingAlertSettings(transition: transition.name) }
            try await queueNotification(alert, taskID: taskID, notify: notify)
        }
        return task
    }
}

extension TaskRecord {
    /// A row selected with `TaskRecord.columns`, in that order.
    init(postgres row: PostgresRow) throws {
        let cells = row.makeRandomAccess()
        func value<T: PostgresDecodable>(_ column: Int, _: T.Type = T.self) throws -> T {
            try cells[column].decode(T.self)
        }
        let stateName: String = try value(2)
        guard let state = TaskState(rawValue: stateName) else {
            throw StoreError.failed(
                path: "", operation: "read a task", reason: "a task is in the unknown state \"\(stateName.prefix(40))\""
            )
        }
        self.init(
            id: try value(0), type: try value(1), state: state, priority: try value(3), runAt: try value(4),
            payload: try value(5), payloadSHA256: try value(6), idempotencyKey: try value(7), source: try value(8),
            subject: try value(9), attempts: try value(10), maxAttempts: try value(11), leaseToken: try value(12),
            leaseExpiresAt: try value(13), createdAt: try value(14), updatedAt: try value(15),
            startedAt: try value(16), finishedAt: try value(17), exitCode: try value(18), result: try value(19),
            lastError: try value(20), stderrTail: try value(21))
    }
}

extension PostgresStore {
    /// Adds one task, or returns the one its idempotency key already names: `AutonomyStore.enqueue`
    /// on PostgreSQL, with the same checks (`EnqueueRequest.prepare`) and ledger rows. The time is
    /// the database's.
    ///
    /// With `producer` (a caller through the gate), the task's source is the producer's name, its
    /// type must be one the producer may enqueue, and the producer's hourly limits apply.
    public func enqueue(
        _ request: EnqueueRequest, configuration: Configuration, producer: ProducerPolicy? = nil
    ) async throws -> EnqueueOutcome {
        // Checked and rated before the transaction: no pattern runs while the ledger's lock is held.
        let now = try await databaseNow()
        let task = try request.on(behalfOf: producer, configuration, now: now).prepare(configuration, now: now)
        return try await write("enqueue") { transaction in
            try await self.insert(task, configuration: configuration, producer: producer, transaction)
        }
    }

    /// The hourly limits a task counts against: the caller's through the gate, else those of the
    /// producer a trusted caller names as the source. Nil when none apply.
    private static func limits(
        of request: EnqueueRequest, producer: ProducerPolicy?, _ configuration: Configuration
    ) -> ProducerPolicy? {
        let policy =
            producer
            ?? request.source.flatMap { source in
                configuration.producers.users[source].map { ProducerPolicy(name: source, rule: $0) }
            }
        guard let policy, policy.rule.maxPerHour != nil || policy.rule.maxDangerousPerHour != nil else { return nil }
        return policy
    }

    func insert(
        _ task: PreparedTask, configuration: Configuration, producer: ProducerPolicy?,
        _ transaction: PostgresTransaction
    ) async throws -> EnqueueOutcome {
        let request = task.request
        if let key = request.key {
            let existing = try await transaction.rows(
                """
                SELECT \(unescaped: TaskRecord.columns) FROM tasks
                WHERE idempotency_key = \(key) AND coalesce(source, '') = \(request.source ?? "")
                """)
            if let row = existing.first {
                let found = try TaskRecord(postgres: row)
                guard found.type == request.type, found.payloadSHA256 == task.payloadSHA256 else {
                    throw QueueError.keyConflict(key: key, existingID: found.id)
                }
                return .existing(found)
            }
        }
        let now = transaction.now
        // A producer's hourly limits hold whichever way its tasks arrive, as on SQLite.
        if let limited = Self.limits(of: request, producer: producer, configuration) {
            try await checkLimits(of: limited, dangerous: task.state == .awaitingApproval, transaction)
        }
        let inserted = try await transaction.rows(
            """
            INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, idempotency_key, source,
                               subject, max_attempts, created_at, updated_at)
            VALUES (\(request.type), \(task.state.rawValue), \(task.priority), \(task.runAt), \(task.payload),
                    \(task.payloadSHA256), \(request.key), \(request.source), \(request.subject),
                    \(request.maxAttempts), \(now), \(now))
            RETURNING \(unescaped: TaskRecord.columns)
            """)
        guard let row = inserted.first else {
            throw StoreError.failed(path: url.description, operation: "enqueue", reason: "no row came back")
        }
        let created = try TaskRecord(postgres: row)
        try await transaction.appendLedger(
            .enqueued, taskID: created.id, type: request.type,
            detail: [
                "payload_sha256": .string(task.payloadSHA256),
                "source": request.source.map { .string($0) } ?? .null,
                "state": .string(task.state.rawValue),
            ])
        if task.state == .awaitingApproval {
            // Asked at once, so the operator is alerted at once.
            let reason = "rated dangerous: " + task.rating.reasons.joined(separator: "; ")
            try await transaction.appendLedger(
                .held, taskID: created.id, type: request.type,
                detail: ["reason": .string(reason), "payload_sha256": .string(task.payloadSHA256)])
            try await transaction.requestApproval(
                taskID: created.id, typeName: request.type, type: task.type, payloadSHA256: task.payloadSHA256,
                reason: reason, notify: configuration.notify)
        }
        return .created(created)
    }

    /// Refuses a producer's task over its hourly limits (`Database.checkLimits` on SQLite): all its
    /// tasks, and apart from them those that waited for approval at enqueue.
    private func checkLimits(of producer: ProducerPolicy, dangerous: Bool, _ transaction: PostgresTransaction)
        async throws
    {
        let now = transaction.now
        let since = now - Interval.hours(1).milliseconds
        func check(_ limit: Int?, isDangerous: Bool) async throws {
            guard let limit else { return }
            let held =
                isDangerous ? "AND EXISTS (SELECT 1 FROM ledger l WHERE l.task_id = t.id AND l.event = 'held')" : ""
            var bindings = PostgresBindings()
            bindings.append(producer.name)
            bindings.append(since)
            var count = 0
            var oldest = now
            for try await (n, first) in try await transaction.query(
                PostgresQuery(
                    unsafeSQL: """
                        SELECT count(*)::bigint, min(t.created_at) FROM tasks t
                        WHERE t.source = $1 AND t.created_at > $2 \(held)
                        """, binds: bindings)
            ).decode((Int, Int64?).self) {
                (count, oldest) = (n, first ?? now)
            }
            guard count >= limit else { return }
            throw TrustError.rateLimited(
                producer: producer.name, limit: limit, dangerous: isDangerous,
                retryAfterSeconds: max(1, (oldest + Interval.hours(1).milliseconds - now + 999) / 1000))
        }
        try await check(producer.rule.maxPerHour, isDangerous: false)
        if dangerous { try await check(producer.rule.maxDangerousPerHour, isDangerous: true) }
    }
}

extension PostgresStore: WorkerStore {
    /// Expires the approval requests whose time ran out (on the database's clock).
    /// Expires the approval requests whose time ran out and charges the model reservations nobody
    /// settled (on the database's clock).
    public func housekeeping(now: Int64) async throws -> [ApprovalRecord] {
        try await write("housekeeping") { transaction in
            try await transaction.chargeAbandonedReservations()
            return try await transaction.expireApprovals()
        }
    }

    /// Claims the next runnable task (highest priority, then earliest `run_at`, then lowest id)
    /// under a lease measured on the database's clock (`now` is not used). The row is taken
    /// `FOR UPDATE SKIP LOCKED`: a task another host is deciding on is passed over, never waited
    /// for, never taken twice.
    ///
    /// Types other hosts run are passed over (`Configuration.skippedTypes`). The firewall
    /// is checked again on the way, as on SQLite: an undeclared type is blocked, a payload that
    /// needs a human's signed approval runs only with one (checked again here: the signature, the
    /// payload's hash, the attempt and the window), else it is held and a request opened; a fix proposal heal.auto_apply covers runs on its own only
    /// while every guardrail allows (`healRefusal`). A payload whose type
    /// rates with patterns is rated outside the transaction, as on SQLite (`needsRating`): no
    /// pattern runs while every host's writes wait on the ledger's lock.
    public func claimNext(
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String,
        ratings: [Int64: PrecomputedRating], rateInline: Bool
    ) async throws -> ClaimStep {
        try await write("claim a task") { transaction in
            try await self.claimNext(
                transaction, configuration: configuration, lease: lease, leaseToken: leaseToken, ratings: ratings,
                rateInline: rateInline)
        }
    }

    private func claimNext(
        _ transaction: PostgresTransaction, configuration: Configuration, lease: Interval, leaseToken: String,
        ratings: [Int64: PrecomputedRating] = [:], rateInline: Bool = false
    ) async throws -> ClaimStep {
        let now = transaction.now
        let paused = configuration.skippedTypes
        let only = configuration.claimOnly.map { $0.filter { !paused.contains($0) } }
        var skipped: [SkippedTask] = []
        let verifier = DecisionVerifier(settings: configuration.approvals)
        while true {
            let next = try await transaction.rows(
                """
                SELECT id, type, payload, payload_sha256, attempts FROM tasks
                WHERE state = 'queued' AND run_at <= \(now)
                  AND (\(only)::text[] IS NULL OR type = ANY(\(only)::text[]))
                  AND NOT (type = ANY(\(paused)::text[]))
                ORDER BY priority DESC, run_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
                """)
            guard let row = next.first else { return ClaimStep(claimed: nil, skipped: skipped) }
            let (id, typeName, payload, storedSHA256, attempts) = try row.decode(
                (Int64, String, String, String, Int).self)
            let declared = configuration.taskType(named: typeName)
            var refusal: String?
            switch declared?.handler {
            case nil: refusal = "task type \"\(typeName)\" is not declared in the configuration"
            case .llm?, .exec?, .remediation?: break
            }
            guard let type = declared, refusal == nil else {
                let reason = refusal ?? ""
                try await transaction.transition(
                    id, .block, changing: [.lastError(reason)], detail: ["reason": .string(reason)])
                skipped.append(SkippedTask(id: id, type: typeName, newState: .blocked, reason: reason))
                continue
            }
            let candidate = AdmissionCandidate(
                id: id, typeName: typeName, payload: payload, storedSHA256: storedSHA256, attempts: attempts)
            var rating: Rating?
            if type.ratesWithPatterns, !rateInline {
                guard let made = ratings[id], made.payloadSHA256 == payload.sha256Hex else {
                    return ClaimStep(
                        claimed: nil, skipped: skipped,
                        needsRating: RatingCandidate(id: id, typeName: typeName, payload: payload))
                }
                rating = made.rating
            }
            // The approval is looked up only for a task that needs one (the firewall is pure: asked
            // again with what was found).
            var admission = Firewall.admit(
                candidate, type: type, rating: rating, verifier: verifier, now: now, approval: { _ in nil })
            if case .hold = admission,
                let evidence = try await transaction.approvalEvidence(taskID: id, payloadSHA256: payload.sha256Hex)
            {
                admission = Firewall.admit(
                    candidate, type: type, rating: rating, verifier: verifier, now: now,
                    approval: { $0 == evidence.approval.payloadSHA256 ? evidence : nil })
            }
            if type.handler.isBuiltIn, admission == .run(approvalID: nil, signedBy: nil) {
                // The approval and the guardrails are read first (the decision is `admitTrustedFix`'s).
                let evidence = try await transaction.approvalEvidence(taskID: id, payloadSHA256: payload.sha256Hex)
                var refusal: HealRefusal?
                if let proposal = try? Proposal(payload: payload) {
                    refusal = try await transaction.healRefusal(proposal, heal: configuration.heal)
                }
                let fix = Firewall.admitTrustedFix(
                    candidate, type: type, verifier: verifier, now: now,
                    approval: { $0 == evidence?.approval.payloadSHA256 ? evidence : nil }, refusal: { _ in refusal })
                switch fix {
                case .admitted(let admitted, let rated): (admission, rating) = (admitted, rated)
                case .postponed(let proposal, let refusal, let until):
                    try await transaction.transition(
                        id, .postpone, changing: [.runAt(until)],
                        detail: refusal.postponement(of: proposal, until: until), notes: ["reason": refusal.description]
                    )
                    skipped.append(SkippedTask(id: id, type: typeName, newState: .queued, reason: refusal.description))
                    continue
                }
            }
            switch admission {
            case .run(let approvalID, let signedBy):
                let expires = now + lease.milliseconds
                var detail: [String: JSONValue] = [
                    "lease_expires_at": .string(Timestamp.format(expires)),
                    "approval_id": approvalID.map { .int($0) } ?? .null, "host": .string(host),
                ]
                if let signedBy { detail["approved_by"] = .string(signedBy) }
                let task = try await transaction.transition(
                    id, .claim, changing: [.lease(token: leaseToken, expiresAt: expires)], attempt: attempts + 1,
                    detail: .object(detail), host: host)
                try candidate.confirm(task, database: url.description)
                if let approvalID {
                    try await transaction.query(
                        "UPDATE approvals SET used_at = \(now) WHERE id = \(approvalID) AND used_at IS NULL")
                }
                if type.handler.isBuiltIn {
                    try await transaction.recordHealAction(
                        task: id, payload: payload, automatic: approvalID == nil, rating: rating)
                }
                return ClaimStep(claimed: ClaimedTask(task: task, type: type, leaseToken: leaseToken), skipped: skipped)
            case .block(let reason):
                try await transaction.transition(
                    id, .block, changing: [.lastError(reason)], detail: ["reason": .string(reason)])
                skipped.append(SkippedTask(id: id, type: typeName, newState: .blocked, reason: reason))
            case .hold(let reason, let hash):
                try await transaction.transition(
                    id, .hold, detail: ["reason": .string(reason), "payload_sha256": .string(hash)])
                // An approval that no longer releases the task is withdrawn, so nothing can use it later.
                try await transaction.supersedeApprovals(
                    taskID: id, typeName: typeName, states: [.approved], unusedOnly: true, reason: reason)
                try await transaction.requestApproval(
                    taskID: id, typeName: typeName, type: type, payloadSHA256: hash, reason: reason,
                    notify: configuration.notify)
                skipped.append(SkippedTask(id: id, type: typeName, newState: .awaitingApproval, reason: reason))
            }
        }
    }

    /// Pushes a held lease forward by `until - now` on the database's clock. False when the lease
    /// is no longer this worker's.
    public func extendLease(taskID: Int64, leaseToken: String, until: Int64, now: Int64) async throws -> Bool {
        try await write("extend a lease", ledger: false) { transaction in
            let updated = try await transaction.rows(
                """
                UPDATE tasks SET lease_expires_at = \(transaction.now + (until - now)), updated_at = \(transaction.now)
                WHERE id = \(taskID) AND lease_token = \(leaseToken) AND state IN ('running', 'verifying')
                RETURNING id
                """)
            return !updated.isEmpty
        }
    }

    /// Marks a task whose handler ended as being verified, with its result (see `AutonomyStore`).
    public func markVerifying(_ claimed: ClaimedTask, outcome: HandlerOutcome, now: Int64) async throws -> Bool {
        try await write("mark a task verifying") { transaction in
            // Its `executed` row first, then `verifying`: the ledger in the order things happened.
            guard try await holdsLease(claimed, transaction) != nil else { return false }
            try await appendExecuted(claimed.task, outcome: outcome, transaction)
            try await transaction.transition(
                claimed.task.id, .verify, lease: claimed.leaseToken, changing: [outcome.change],
                attempt: claimed.task.attempts, detail: ["host": .string(host)])
            return true
        }
    }

    /// Gives a claimed task back to the queue until `until` without counting the attempt, as
    /// `AutonomyStore.deferTask` does.
    public func deferTask(_ claimed: ClaimedTask, until: Int64, reason: String, now: Int64) async throws
        -> TaskOutcome?
    {
        try await write("defer a task") { transaction in
            do {
                try await transaction.transition(
                    claimed.task.id, .giveBack, lease: claimed.leaseToken,
                    changing: [.uncountAttempt, .runAt(until)], attempt: claimed.task.attempts,
                    detail: ["reason": .string(reason), "until": .string(Timestamp.format(until))])
            } catch is TransitionRefused {
                return nil
            }
            return TaskOutcome(
                id: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts, state: .queued,
                nextRunAt: until, error: reason)
        }
    }

    /// Records an attempt's end and its verdict in one transaction, as `AutonomyStore.recordAttempt`
    /// does: `executed`, the checks, then `done`, back to the queue after the backoff, or `dead`;
    /// each row names this host. Nil, with `lease_lost`, when the lease is no longer this worker's.
    public func recordAttempt(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult],
        notify: NotifySettings, now: Int64, random: @Sendable () -> Double
    ) async throws -> TaskOutcome? {
        try await write("record an attempt") { transaction in
            try await self.recordAttempt(
                transaction, claimed, outcome: outcome, verdict: verdict, checks: checks, notify: notify,
                random: random)
        }
    }

    /// The same, then the next claim in the same transaction (one commit per task while draining).
    /// The claim runs in a savepoint: when it fails, the attempt is still recorded.
    public func recordAttemptAndClaimNext(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult],
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String, random: @Sendable () -> Double
    ) async throws -> (TaskOutcome?, ClaimStep?) {
        try await write("record an attempt and claim the next task") { transaction in
            let recorded = try await self.recordAttempt(
                transaction, claimed, outcome: outcome, verdict: verdict, checks: checks,
                notify: configuration.notify, random: random)
            try await transaction.query("SAVEPOINT claim")
            let tail = transaction.ledgerTail
            do {
                let next = try await self.claimNext(
                    transaction, configuration: configuration, lease: lease, leaseToken: leaseToken)
                try await transaction.query("RELEASE SAVEPOINT claim")
                return (recorded, next)
            } catch {
                try await transaction.query("ROLLBACK TO SAVEPOINT claim")
                transaction.ledgerTail = tail  // its rows were rolled back with the savepoint
                return (recorded, nil)
            }
        }
    }

    private func recordAttempt(
        _ transaction: PostgresTransaction, _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict,
        checks: [CheckResult], notify: NotifySettings, random: @Sendable () -> Double
    ) async throws -> TaskOutcome? {
        let task = claimed.task
        guard try await holdsLease(claimed, transaction) != nil else {
            let current = try await transaction.rows("SELECT state FROM tasks WHERE id = \(task.id)").first
            try await transaction.appendLedger(
                .leaseLost, taskID: task.id, type: task.type, attempt: task.attempts, durationMs: outcome.durationMs,
                detail: [
                    "exit_code": outcome.exitCode.map { .int(Int64($0)) } ?? .null,
                    "state_now": try current.map { .string(try $0.decode(String.self)) } ?? .null,
                    "host": .string(host),
                ])
            return nil
        }
        // A verified attempt's row was written when its checks began.
        if !claimed.executedRecorded { try await appendExecuted(task, outcome: outcome, transaction) }
        try await recordChecks(checks, task: task, notify: notify, transaction)
        switch verdict {
        case .passed(let evidence):
            return try await finish(
                task, outcome: outcome, evidence: evidence, verified: !checks.isEmpty, transaction)
        case .failed(let reason):
            return try await settleFailure(
                task, outcome: outcome, type: claimed.type, error: reason, notify: notify, transaction, random: random)
        }
    }

    /// The handler's outcome in the chain: its exit, how much it printed, its error apart.
    private func appendExecuted(_ task: TaskRecord, outcome: HandlerOutcome, _ transaction: PostgresTransaction)
        async throws
    {
        try await transaction.appendLedger(
            .executed, taskID: task.id, type: task.type, attempt: task.attempts, durationMs: outcome.durationMs,
            detail: .object(outcome.executedDetail.merging(["host": .string(host)]) { $1 }),
            notes: ["error": outcome.errorSummary])
    }

    /// The task's state when this worker still holds its lease (locked for this transaction), nil otherwise.
    private func holdsLease(_ claimed: ClaimedTask, _ transaction: PostgresTransaction) async throws -> String? {
        let rows = try await transaction.rows(
            "SELECT state, lease_token FROM tasks WHERE id = \(claimed.task.id) FOR UPDATE")
        guard let (state, token) = try rows.first?.decode((String, String?).self),
            TaskState.leased.map(\.rawValue).contains(state), token == claimed.leaseToken
        else { return nil }
        return state
    }

    private func finish(
        _ task: TaskRecord, outcome: HandlerOutcome? = nil, evidence: String, verified: Bool,
        _ transaction: PostgresTransaction
    ) async throws -> TaskOutcome {
        var detail: [String: JSONValue] = ["host": .string(host)]
        if !verified { detail["evidence"] = .string(evidence) }
        try await transaction.transition(
            task.id, .succeed, changing: outcome.map { [$0.change] } ?? [], attempt: task.attempts,
            durationMs: Interval.between(task.startedAt ?? transaction.now, transaction.now).milliseconds,
            detail: .object(detail),
            notes: ["evidence": verified ? evidence : nil])
        return TaskOutcome(id: task.id, type: task.type, attempt: task.attempts, state: .done)
    }

    /// Each verifier's check as a ledger row (its evidence a note beside it), and an alert when
    /// one could not decide: what `Database.recordChecks` writes on SQLite.
    func recordChecks(
        _ checks: [CheckResult], task: TaskRecord, notify: NotifySettings, _ transaction: PostgresTransaction
    ) async throws {
        for check in checks {
            try await transaction.appendLedger(
                .verified, taskID: task.id, type: task.type, attempt: task.attempts, durationMs: check.durationMs,
                detail: [
                    "index": .int(Int64(check.index)), "verifier": .string(check.verifier),
                    "outcome": .string(check.outcome.rawValue), "duration_ms": .int(check.durationMs),
                    "looks": .int(Int64(check.looks)),
                ], notes: ["evidence": check.evidence])
        }
        if checks.contains(where: { $0.outcome == .inconclusive }) {
            try await transaction.queueNotification(.verificationInconclusive, taskID: task.id, notify: notify)
        }
    }

    /// Takes over every task whose lease ran out on the database's clock (its host died or was
    /// cut off). A type with verifiers is leased to this worker for verification first (one per
    /// call), so a task that already succeeded is never run again; any other goes back to the
    /// queue after the backoff, or to dead.
    public func recoverExpiredLeases(
        configuration: Configuration, now: Int64, lease: Interval, random: @Sendable () -> Double
    ) async throws -> AutonomyStore.Recovery {
        // Only declared types: a host that does not know a type cannot judge its tasks. Of the types
        // other hosts run, only those without verifiers (whose recovery judges nothing: back to the
        // queue, or dead); the others wait for a host that runs their verifiers.
        let declared = Array(configuration.taskTypes.keys) + [TaskType.remediationTypeName]
        let elsewhere = Set(configuration.typesRunElsewhere)
        return try await write("recover expired leases") { transaction in
            let expired = try await transaction.rows(
                """
                SELECT \(unescaped: TaskRecord.columns) FROM tasks
                WHERE state IN ('running', 'verifying') AND lease_expires_at < \(transaction.now)
                  AND type = ANY(\(declared)::text[])
                ORDER BY id FOR UPDATE SKIP LOCKED
                """)
            var recovery = AutonomyStore.Recovery()
            for row in expired {
                let task = try TaskRecord(postgres: row)
                guard let type = configuration.taskType(named: task.type),
                    !elsewhere.contains(task.type) || type.verify.isEmpty
                else { continue }
                if !type.verify.isEmpty {
                    guard recovery.toVerify.isEmpty else { continue }
                    try await transaction.appendLedger(
                        .leaseExpired, taskID: task.id, type: task.type, attempt: task.attempts,
                        detail: ["state": .string(task.state.rawValue), "host": .string(host)])
                    let token = randomToken()
                    let claimed = try await transaction.transition(
                        task.id, .verify,
                        changing: [.lease(token: token, expiresAt: transaction.now + lease.milliseconds)],
                        attempt: task.attempts,
                        detail: [
                            "why": "its worker died: the evidence decides before anything is run again",
                            "host": .string(host),
                        ], host: host)
                    recovery.toVerify.append(ClaimedTask(task: claimed, type: type, leaseToken: token))
                    continue
                }
                try await transaction.appendLedger(
                    .leaseExpired, taskID: task.id, type: task.type, attempt: task.attempts,
                    detail: ["state": .string(task.state.rawValue), "host": .string(host)])
                let error =
                    "the worker running attempt \(task.attempts) stopped renewing its lease (it died or was killed)"
                recovery.settled.append(
                    try await settleFailure(
                        task, type: type, error: error, notify: configuration.notify, transaction, random: random))
            }
            return recovery
        }
    }

    /// Records the verdict on a task recovered from a dead host's worker: done (never run again),
    /// or back to the queue / dead. Nil when the lease was lost meanwhile.
    public func recordRecovery(
        _ claimed: ClaimedTask, checks: [CheckResult], notify: NotifySettings, now: Int64,
        random: @Sendable () -> Double
    ) async throws -> TaskOutcome? {
        try await write("record a recovery") { transaction in
            let task = claimed.task
            guard try await holdsLease(claimed, transaction) != nil else {
                try await transaction.appendLedger(
                    .leaseLost, taskID: task.id, type: task.type, attempt: task.attempts,
                    detail: ["during": "verification after a dead worker", "host": .string(host)])
                return nil
            }
            try await recordChecks(checks, task: task, notify: notify, transaction)
            switch Verdict.combine(checks) {
            case .passed(let evidence):
                return try await finish(
                    task, evidence: "verified after its worker died, so not run again: " + evidence, verified: true,
                    transaction)
            case .failed(let reason):
                return try await settleFailure(
                    task, type: claimed.type, error: "its worker died and " + reason, notify: notify, transaction,
                    random: random)
            }
        }
    }

    private func settleFailure(
        _ task: TaskRecord, outcome: HandlerOutcome? = nil, type: TaskType?, error: String, notify: NotifySettings,
        _ transaction: PostgresTransaction, random: @Sendable () -> Double
    ) async throws -> TaskOutcome {
        let kept = outcome.map { [$0.change] } ?? []
        if task.attempts >= task.attemptLimit(type) {
            try await transaction.transition(
                task.id, .die, changing: kept + [.lastError(error)], attempt: task.attempts,
                detail: ["attempts": .int(Int64(task.attempts)), "host": .string(host)], notes: ["error": error],
                notify: notify)
            return TaskOutcome(id: task.id, type: task.type, attempt: task.attempts, state: .dead, error: error)
        }
        let delay = (type?.retry ?? RetryPolicy()).delay(afterAttempt: task.attempts, unit: random())
        let nextRunAt = transaction.now + delay.milliseconds
        try await transaction.transition(
            task.id, .retryLater, changing: kept + [.runAt(nextRunAt), .lastError(error)], attempt: task.attempts,
            detail: [
                "delay_ms": .int(delay.milliseconds), "next_run_at": .string(Timestamp.format(nextRunAt)),
                "host": .string(host),
            ], notes: ["error": error])
        return TaskOutcome(
            id: task.id, type: task.type, attempt: task.attempts, state: .queued, nextRunAt: nextRunAt, error: error)
    }
}

extension PostgresTransaction {
    /// Queues an alert for each configured channel, as on SQLite (delivered from the same table).
    nonisolated(nonsending) func queueNotification(
        _ event: NotificationEvent, taskID: Int64?, approvalID: Int64? = nil, notify: NotifySettings
    ) async throws {
        for channel in notify.channels {
            try await query(
                """
                INSERT INTO notifications (event, channel, task_id, approval_id, created_at, next_attempt_at)
                VALUES (\(event.rawValue), \(channel.rawValue), \(taskID), \(approvalID), \(now), \(now))
                """)
        }
    }
}

extension PostgresStore {
    /// One task as it stands.
    public func task(id: Int64) async throws -> TaskRecord? {
        try await read("read a task") { transaction in
            try await transaction.rows("SELECT \(unescaped: TaskRecord.columns) FROM tasks WHERE id = \(id)").first
                .map(TaskRecord.init(postgres:))
        }
    }

    /// What `status` shows, as `AutonomyStore.status` reads it, with the hosts that hold or ran
    /// tasks. Times are the database's.
    public func status(source: String? = nil) async throws -> (status: QueueStatus, now: Int64) {
        try await read("read the queue status") { transaction in
            let now = transaction.now
            var counts: [TaskState: Int] = [:]
            var byType: [String: [TaskState: Int]] = [:]
            for try await (type, stateName, count) in try await transaction.query(
                """
                SELECT type, state, count(*)::bigint FROM tasks
                WHERE (\(source)::text IS NULL OR source = \(source)) GROUP BY type, state
                """
            ).decode((String, String, Int).self) {
                guard let state = TaskState(rawValue: stateName) else { continue }
                counts[state, default: 0] += count
                byType[type, default: [:]][state, default: 0] += count
            }
            func first(_ condition: String) async throws -> (Int64, String, Int64)? {
                var bindings = PostgresBindings()
                bindings.append(now)
                bindings.append(source)
                for try await row in try await transaction.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT id, type, run_at FROM tasks
                            WHERE state = 'queued' AND \(condition) AND ($2::text IS NULL OR source = $2)
                            ORDER BY run_at, id LIMIT 1
                            """, binds: bindings)
                ).decode((Int64, String, Int64).self) {
                    return row
                }
                return nil
            }
            let oldest = try await first("run_at <= $1")
            let next = try await first("run_at > $1")
            let dead = try await transaction.rows(
                """
                SELECT \(unescaped: TaskRecord.columns) FROM tasks
                WHERE state = 'dead' AND (\(source)::text IS NULL OR source = \(source))
                ORDER BY finished_at DESC, id DESC LIMIT 10
                """
            ).map(TaskRecord.init(postgres:))
            var expired = 0
            for try await count in try await transaction.query(
                """
                SELECT count(*)::bigint FROM tasks WHERE state IN ('running', 'verifying') AND lease_expires_at < \(now)
                  AND (\(source)::text IS NULL OR source = \(source))
                """
            ).decode(Int.self) {
                expired = count
            }
            var hosts: [HostActivity] = []
            if source == nil {
                for try await (host, running, finished, lastSeen) in try await transaction.query(
                    """
                    SELECT host,
                           count(*) FILTER (WHERE state IN ('running', 'verifying'))::bigint,
                           count(*) FILTER (WHERE state IN ('done', 'dead'))::bigint,
                           max(updated_at)
                    FROM tasks WHERE host IS NOT NULL GROUP BY host ORDER BY host
                    """
                ).decode((String, Int, Int, Int64).self) {
                    hosts.append(HostActivity(host: host, running: running, finished: finished, lastSeen: lastSeen))
                }
            }
            var status = QueueStatus(
                counts: counts, countsByType: byType,
                oldestRunnable: oldest.map { (id: $0.0, type: $0.1, since: $0.2) },
                nextScheduled: next.map { (id: $0.0, type: $0.1, runAt: $0.2) }, recentDead: dead,
                expiredLeases: expired)
            status.hosts = hosts
            if source == nil {
                status.overrides = try await transaction.activeOverrides()
                status.breakers = try await transaction.breakers(open: true)
                status.healLastDay = try await transaction.healActivity(since: now - Interval.days(1).milliseconds)
            }
            return (status, now)
        }
    }

    /// Adds every task of a batch in one transaction: all of them, or (on any error) none.
    ///
    /// - Throws: `QueueError.batchLine` naming the first refused request by its line in `lines`
    ///   (else its position, 1-based), or `StoreError`.
    public func enqueueBatch(
        _ requests: [EnqueueRequest], lines: [Int]? = nil, configuration: Configuration,
        producer: ProducerPolicy? = nil
    ) async throws -> [EnqueueOutcome] {
        func line(_ index: Int) -> Int { lines.map { $0[index] } ?? index + 1 }
        let now = try await databaseNow()
        var prepared: [PreparedTask] = []
        prepared.reserveCapacity(requests.count)
        for (index, request) in requests.enumerated() {
            do {
                prepared.append(
                    try request.on(behalfOf: producer, configuration, now: now).prepare(configuration, now: now))
            } catch let error as TrustError {
                throw TrustError.batchLine(line(index), error)
            } catch let error as QueueError {
                throw QueueError.batchLine(line(index), error)
            }
        }
        // A batch of plain tasks (no key to look up, no producer's limit, nothing held) goes in a
        // few statements: its rows and their ledger rows in bulk.
        let plain = prepared.allSatisfy { task in
            task.request.key == nil && task.state != .awaitingApproval
                && Self.limits(of: task.request, producer: producer, configuration) == nil
        }
        if plain {
            return try await write("enqueue a batch") { transaction in
                var outcomes: [EnqueueOutcome] = []
                outcomes.reserveCapacity(prepared.count)
                var start = 0
                while start < prepared.count {
                    let chunk = prepared[start..<min(start + 5000, prepared.count)]
                    outcomes += try await self.insertPlain(chunk, transaction)
                    start += chunk.count
                }
                return outcomes
            }
        }
        return try await write("enqueue a batch") { transaction in
            var outcomes: [EnqueueOutcome] = []
            outcomes.reserveCapacity(prepared.count)
            for (index, task) in prepared.enumerated() {
                do {
                    outcomes.append(
                        try await self.insert(task, configuration: configuration, producer: producer, transaction))
                } catch let error as QueueError {
                    throw QueueError.batchLine(line(index), error)
                } catch let error as TrustError {
                    throw TrustError.batchLine(line(index), error)
                }
            }
            return outcomes
        }
    }

    /// Inserts tasks that need no lookup or check in one statement, with their `enqueued` rows:
    /// ids are drawn from the table's sequence first, so each row and its ledger row are paired.
    private func insertPlain(_ tasks: ArraySlice<PreparedTask>, _ transaction: PostgresTransaction) async throws
        -> [EnqueueOutcome]
    {
        let now = transaction.now
        var ids: [Int64] = []
        ids.reserveCapacity(tasks.count)
        for try await id in try await transaction.query(
            "SELECT nextval(pg_get_serial_sequence('tasks', 'id')) FROM generate_series(1, \(tasks.count))"
        ).decode(Int64.self) {
            ids.append(id)
        }
        ids.sort()
        guard ids.count == tasks.count else {
            throw StoreError.failed(path: url.description, operation: "enqueue a batch", reason: "no ids came back")
        }
        // A nullable column travels as its values and a mask of which are there.
        let requests = tasks.map(\.request)
        try await transaction.query(
            """
            INSERT INTO tasks (id, type, state, priority, run_at, payload, payload_sha256, source, subject,
                               max_attempts, created_at, updated_at)
            SELECT r.id, r.type, 'queued', r.priority, r.run_at, r.payload, r.sha,
                   CASE WHEN r.has_source THEN r.source END, CASE WHEN r.has_subject THEN r.subject END,
                   CASE WHEN r.has_max THEN r.max_attempts END, \(now), \(now)
            FROM unnest(\(ids)::bigint[], \(requests.map(\.type))::text[], \(tasks.map { Int64($0.priority) })::bigint[],
                        \(tasks.map(\.runAt))::bigint[], \(tasks.map(\.payload))::text[],
                        \(tasks.map(\.payloadSHA256))::text[], \(requests.map { $0.source ?? "" })::text[],
                        \(requests.map { $0.source != nil })::boolean[], \(requests.map { $0.subject ?? "" })::text[],
                        \(requests.map { $0.subject != nil })::boolean[],
                        \(requests.map { Int64($0.maxAttempts ?? 0) })::bigint[],
                        \(requests.map { $0.maxAttempts != nil })::boolean[])
                 AS r(id, type, priority, run_at, payload, sha, source, has_source, subject, has_subject,
                      max_attempts, has_max)
            """)
        try await transaction.appendLedger(
            .enqueued,
            rows: zip(ids, tasks).map { id, task in
                (
                    id, task.request.type,
                    JSONValue.object([
                        "payload_sha256": .string(task.payloadSHA256),
                        "source": task.request.source.map { .string($0) } ?? .null, "state": "queued",
                    ]).canonicalText
                )
            })
        return zip(ids, tasks).map { id, task in
            .created(
                TaskRecord(
                    id: id, type: task.request.type, state: .queued, priority: task.priority, runAt: task.runAt,
                    payload: task.payload, payloadSHA256: task.payloadSHA256, idempotencyKey: nil,
                    source: task.request.source, subject: task.request.subject, attempts: 0,
                    maxAttempts: task.request.maxAttempts, leaseToken: nil, leaseExpiresAt: nil, createdAt: now,
                    updatedAt: now, startedAt: nil, finishedAt: nil, exitCode: nil, result: nil, lastError: nil,
                    stderrTail: nil))
        }
    }

    /// How many tasks are in each state.
    public func stateCounts() async throws -> [TaskState: Int] {
        try await read("count tasks") { transaction in
            var counts: [TaskState: Int] = [:]
            for try await (state, count) in try await transaction.query(
                "SELECT state, count(*) FROM tasks GROUP BY state"
            ).decode((String, Int).self) {
                if let state = TaskState(rawValue: state) { counts[state] = count }
            }
            return counts
        }
    }
}

extension PostgresStore {
    /// The newest tasks first, filtered (`AutonomyStore.tasks(matching:)`).
    public func tasks(matching filter: TaskFilter) async throws -> [TaskRecord] {
        try await read("list tasks") { transaction in
            try await transaction.rows(
                """
                SELECT \(unescaped: TaskRecord.columns) FROM tasks
                WHERE (\(filter.state?.rawValue)::text IS NULL OR state = \(filter.state?.rawValue))
                  AND (\(filter.type)::text IS NULL OR type = \(filter.type))
                  AND (\(filter.source)::text IS NULL OR source = \(filter.source))
                ORDER BY id DESC LIMIT \(filter.limit)
                """
            ).map(TaskRecord.init(postgres:))
        }
    }
}
