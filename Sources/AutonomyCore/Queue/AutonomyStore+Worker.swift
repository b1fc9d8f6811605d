import Foundation
import GRDB

/// A task this worker holds a lease on.
public struct ClaimedTask: Sendable {
    public var task: TaskRecord
    public var type: TaskType
    /// Proves the lease is this worker's: every later write checks it.
    public var leaseToken: String
    /// The attempt's `executed` row is in the ledger already (`markVerifying` wrote it): recording
    /// the attempt writes no second one. Known to this worker alone, never read from the database,
    /// which a handler can write.
    public var executedRecorded = false

    public init(task: TaskRecord, type: TaskType, leaseToken: String) {
        (self.task, self.type, self.leaseToken) = (task, type, leaseToken)
    }
}

/// A task the claim step did not run, and why.
public struct SkippedTask: Sendable, Equatable, Encodable {
    public var id: Int64
    public var type: String
    public var newState: TaskState
    public var reason: String

    enum CodingKeys: String, CodingKey {
        case id, type
        case newState = "state"
        case reason
    }
}

/// What the claim step found.
public struct ClaimStep: Sendable {
    public var claimed: ClaimedTask?
    /// Tasks moved aside instead of run (undeclared type, dangerous type without approval).
    public var skipped: [SkippedTask]
    /// The next task's type rates payloads with patterns, which never run inside the claim's write
    /// transaction: rate this one outside it, then claim again with the rating.
    public var needsRating: RatingCandidate?

    public init(claimed: ClaimedTask?, skipped: [SkippedTask], needsRating: RatingCandidate? = nil) {
        self.claimed = claimed
        self.skipped = skipped
        self.needsRating = needsRating
    }
}

/// A queued task whose payload a caller rates outside the write transaction.
public struct RatingCandidate: Sendable {
    public var id: Int64
    public var typeName: String
    public var payload: String
}

/// A rating made outside the claim's transaction, valid only for the payload it was made on.
public struct PrecomputedRating: Sendable {
    public var payloadSHA256: String
    public var rating: Rating
    public init(payloadSHA256: String, rating: Rating) {
        self.payloadSHA256 = payloadSHA256
        self.rating = rating
    }
}

/// Where a task went after an attempt or a recovery.
public struct TaskOutcome: Sendable, Equatable {
    public var id: Int64
    public var type: String
    public var attempt: Int
    public var state: TaskState
    /// When the next attempt may start, for a task sent back to the queue.
    public var nextRunAt: Int64?
    public var error: String?
}

extension AutonomyStore {
    /// What recovery found: tasks settled at once, and tasks to verify before anything is retried.
    public struct Recovery: Sendable {
        /// Sent back to the queue with backoff, or dead (their type has no verifier to ask).
        public var settled: [TaskOutcome] = []
        /// Leased to this worker in `verifying` (one per call; call again for the next): its
        /// evidence decides whether it already succeeded (then it is done and never run again).
        public var toVerify: [ClaimedTask] = []
    }

    /// Takes over every task whose lease ran out (its worker died while executing or verifying).
    /// A task whose type declares verifiers is leased to this worker for verification first; any
    /// other goes back to the queue with backoff, or to `dead` when it has no attempts left.
    public func recoverExpiredLeases(
        configuration: Configuration, now: Int64, lease: Interval = .seconds(60), random: @Sendable () -> Double
    ) throws -> Recovery {
        try write("recover expired leases") { db in
            let expired = try TaskRecord.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT \(TaskRecord.columns) FROM tasks
                        WHERE state IN ('running', 'verifying') AND lease_expires_at < ?
                        ORDER BY id
                        """), arguments: [now])
            var recovery = Recovery()
            for task in expired {
                let type = configuration.taskType(named: task.type)
                if let type, !type.verify.isEmpty {
                    // One at a time: a task waits for its verification with its lease expired, where
                    // any worker may take it, rather than under a lease nobody renews.
                    guard recovery.toVerify.isEmpty else { continue }
                    try db.appendLedger(
                        .leaseExpired, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
                        detail: ["state": .string(task.state.rawValue)])
                    let token = randomToken()
                    let claimed = try db.transitionReturningTask(
                        task.id, .verify, at: now,
                        changing: [.lease(token: token, expiresAt: now + lease.milliseconds)], attempt: task.attempts,
                        detail: ["why": "its worker died: the evidence decides before anything is run again"])
                    recovery.toVerify.append(ClaimedTask(task: claimed, type: type, leaseToken: token))
                    continue
                }
                try db.appendLedger(
                    .leaseExpired, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
                    detail: ["state": .string(task.state.rawValue)])
                let error =
                    "the worker running attempt \(task.attempts) stopped renewing its lease (it died or was killed)"
                recovery.settled.append(
                    try settleFailure(
                        task, type: type, error: error, db: db, notify: configuration.notify, now: now, random: random))
            }
            return recovery
        }
    }

    /// Records the verdict on a task recovered from a dead worker: done (its handler is not run
    /// again), or back to the queue / dead. Nil when the lease was lost meanwhile.
    public func recordRecovery(
        _ claimed: ClaimedTask, checks: [CheckResult], notify: NotifySettings, now: Int64,
        random: @Sendable () -> Double
    ) throws -> TaskOutcome? {
        try write("record a recovery") { db in
            let task = claimed.task
            guard try holdsLease(claimed, db: db) else {
                try db.appendLedger(
                    .leaseLost, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
                    detail: ["during": "verification after a dead worker"])
                return nil
            }
            try db.recordChecks(checks, task: task, notify: notify, now: now)
            switch Verdict.combine(checks) {
            case .passed(let evidence):
                return try finish(
                    task, evidence: "verified after its worker died, so not run again: " + evidence, verified: true,
                    db: db, now: now)
            case .failed(let reason):
                return try settleFailure(
                    task, type: claimed.type, error: "its worker died and " + reason, db: db, notify: notify, now: now,
                    random: random)
            }
        }
    }

    /// Marks a task whose handler ended well as being verified: its `executed` row, then
    /// `verifying`, so the ledger reads in the order things happened. The handler's result is saved
    /// with it, so a worker that dies while verifying leaves the evidence and the outcome to the
    /// next one.
    public func markVerifying(_ claimed: ClaimedTask, outcome: HandlerOutcome, now: Int64) throws -> Bool {
        try write("mark a task verifying") { db in
            guard try holdsLease(claimed, db: db) else { return false }  // the lease is another worker's now
            try db.appendExecuted(claimed.task, outcome: outcome, at: now)
            try db.transition(
                claimed.task.id, .verify, at: now, lease: claimed.leaseToken, changing: [outcome.change],
                attempt: claimed.task.attempts, type: claimed.task.type)
            return true
        }
    }

    func holdsLease(_ claimed: ClaimedTask, db: Database) throws -> Bool {
        let statement = try db.cachedStatement(sql: "SELECT state, lease_token FROM tasks WHERE id = ?")
        let held = try statement.first(binding: [.integer(claimed.task.id)]) { row in
            let (state, token) = (try row.text(0), try row.optionalText(1))
            return TaskState.leased.contains { $0.rawValue == state } && token == claimed.leaseToken
        }
        return held ?? false
    }

    /// Marks a task done. Evidence from verifiers is free text, kept apart from the chain; a bare
    /// exit status is our own words and stays in the row (no extra write on the drain's hot path).
    private func finish(
        _ task: TaskRecord, outcome: HandlerOutcome? = nil, evidence: String, verified: Bool, db: Database, now: Int64
    ) throws -> TaskOutcome {
        try db.transition(
            task.id, .succeed, at: now, changing: outcome.map { [$0.change] } ?? [], attempt: task.attempts,
            durationMs: Interval.between(task.startedAt ?? now, now).milliseconds,
            detail: verified ? [:] : ["evidence": .string(evidence)],
            notes: ["evidence": verified ? evidence : nil], type: task.type)
        return TaskOutcome(id: task.id, type: task.type, attempt: task.attempts, state: .done)
    }

    /// Claims the next runnable task (highest priority, then earliest run_at, then lowest id) under a
    /// lease, in one IMMEDIATE transaction, so no two workers ever hold the same attempt.
    ///
    /// On the way the firewall is checked again: a task whose type the map no longer declares is
    /// blocked; one that needs a human's yes for its current payload and has none is held for
    /// approval. Neither is ever run.
    ///
    /// A payload whose type rates with patterns is rated outside the transaction: without a
    /// rating in `ratings` for it as it stands, the step returns it in `needsRating` (unless
    /// `rateInline`, the last resort for a payload that keeps changing).
    public func claimNext(
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String,
        ratings: [Int64: PrecomputedRating] = [:], rateInline: Bool = false
    ) throws -> ClaimStep {
        try write("claim a task") { db in
            try claimNext(
                db: db, configuration: configuration, now: now, lease: lease, leaseToken: leaseToken, ratings: ratings,
                rateInline: rateInline)
        }
    }

    private func claimNext(
        db: Database, configuration: Configuration, now: Int64, lease: Interval, leaseToken: String,
        ratings: [Int64: PrecomputedRating] = [:], rateInline: Bool = false
    ) throws -> ClaimStep {
        var skipped: [SkippedTask] = []
        // Highest priority first, then earliest run_at, then lowest id. The walk goes priority level
        // by priority level, each a seek in the claim index, so a mass of tasks scheduled for later
        // at a high priority never makes a claim scan them. INDEXED BY keeps the planner on the claim
        // index whatever its statistics say (without them it prefers the state index and scans).
        // Paused types (overrides), and those worker.types or run_on leave to other hosts, are
        // skipped by a second form, so the usual claim pays nothing.
        let paused = configuration.skippedTypes
        let only = configuration.claimOnly.map { $0.filter { !paused.contains($0) } }
        let next = try db.cachedStatement(
            sql: only != nil ? Self.claimOnlySQL : paused.isEmpty ? Self.claimSQL : Self.claimSkippingPausedSQL)
        let details = try db.cachedStatement(
            sql: "SELECT type, payload, payload_sha256, attempts FROM tasks WHERE id = ?")
        let verifier = DecisionVerifier(settings: configuration.approvals)
        // The types the second form lists (only these, or all but these), as one JSON array.
        let listed = only ?? (paused.isEmpty ? nil : Array(paused))
        let arguments: [BoundValue] =
            [.integer(now)] + (listed.map { [.text(JSONValue.array($0.map { .string($0) }).canonicalText)] } ?? [])
        while let id = try next.first(binding: arguments, { try $0.optionalInteger(0) }) ?? nil,
            let row = try details.first(binding: [.integer(id)], { try AdmissionRow(columns: $0) })
        {
            let typeName = row.type
            guard let type = configuration.taskType(named: typeName) else {
                let reason = "task type \"\(typeName)\" is not declared in the configuration"
                try block(taskID: id, type: typeName, reason: reason, db: db, now: now)
                skipped.append(SkippedTask(id: id, type: typeName, newState: .blocked, reason: reason))
                continue
            }
            let approvalID: Int64?
            let signer: String?
            let candidate = AdmissionCandidate(
                id: id, typeName: typeName, payload: row.payload, storedSHA256: row.payloadSHA256,
                attempts: row.attempts)
            var rating: Rating?
            if type.ratesWithPatterns, !rateInline {
                // A pattern never runs while this transaction holds the write lock.
                guard let made = ratings[id], made.payloadSHA256 == candidate.payload.sha256Hex else {
                    return ClaimStep(
                        claimed: nil, skipped: skipped,
                        needsRating: RatingCandidate(id: id, typeName: typeName, payload: candidate.payload))
                }
                rating = made.rating
            }
            var admission = try Firewall.admit(
                candidate, type: type, rating: rating, verifier: verifier, now: now,
                approval: { try db.approvalEvidence(taskID: id, payloadSHA256: $0) })
            if type.handler.isBuiltIn, admission == .run(approvalID: nil, signedBy: nil) {
                let fix = try Firewall.admitTrustedFix(
                    candidate, type: type, verifier: verifier, now: now,
                    approval: { try db.approvalEvidence(taskID: id, payloadSHA256: $0) },
                    refusal: { try db.healRefusal($0, heal: configuration.heal, now: now) })
                switch fix {
                case .admitted(let admitted, let rated): (admission, rating) = (admitted, rated)
                case .postponed(let proposal, let refusal, let until):
                    try db.transition(
                        id, .postpone, at: now, changing: [.runAt(until)],
                        detail: refusal.postponement(of: proposal, until: until),
                        notes: ["reason": refusal.description],
                        type: typeName)
                    skipped.append(SkippedTask(id: id, type: typeName, newState: .queued, reason: refusal.description))
                    continue
                }
            }
            switch admission {
            case .run(let allowing, let signedBy):
                (approvalID, signer) = (allowing, signedBy)
            case .block(let reason):
                try block(taskID: id, type: typeName, reason: reason, db: db, now: now)
                skipped.append(SkippedTask(id: id, type: typeName, newState: .blocked, reason: reason))
                continue
            case .hold(let reason, let hash):
                try db.transition(
                    id, .hold, at: now, detail: ["reason": .string(reason), "payload_sha256": .string(hash)],
                    type: typeName)
                // An approval that no longer releases the task (another payload, an invalid or
                // outdated signature) is withdrawn, so nothing can use it later.
                try db.supersedeApprovals(
                    taskID: id, typeName: typeName, states: [.approved], unusedOnly: true, reason: reason, now: now)
                try db.requestApproval(
                    taskID: id, typeName: typeName, type: type, payloadSHA256: hash, reason: reason,
                    notify: configuration.notify, now: now)
                skipped.append(SkippedTask(id: id, type: typeName, newState: .awaitingApproval, reason: reason))
                continue
            }
            var detail: [String: JSONValue] = [
                "lease_expires_at": .string(Timestamp.format(now + lease.milliseconds)),
                "approval_id": approvalID.map { .int($0) } ?? .null,
            ]
            if let signer { detail["approved_by"] = .string(signer) }
            let task = try db.transitionReturningTask(
                id, .claim, at: now, changing: [.lease(token: leaseToken, expiresAt: now + lease.milliseconds)],
                attempt: candidate.attempts + 1, detail: .object(detail))
            try candidate.confirm(task, database: path)
            if let approvalID {
                try db.run(
                    sql: "UPDATE approvals SET used_at = ? WHERE id = ? AND used_at IS NULL",
                    arguments: [now, approvalID])
            }
            if type.handler.isBuiltIn {
                try db.recordHealAction(
                    task: id, payload: candidate.payload, automatic: approvalID == nil, rating: rating, now: now)
            }
            return ClaimStep(
                claimed: ClaimedTask(task: task, type: type, leaseToken: leaseToken), skipped: skipped)
        }
        return ClaimStep(claimed: nil, skipped: skipped)
    }

    private static func claimQuery(skipping: String) -> String {
        """
        WITH RECURSIVE level(priority) AS (
            SELECT MAX(priority) FROM tasks INDEXED BY tasks_claim_order WHERE state = 'queued'
            UNION ALL
            SELECT (
                SELECT MAX(priority) FROM tasks INDEXED BY tasks_claim_order
                WHERE state = 'queued' AND priority < level.priority)
            FROM level WHERE level.priority IS NOT NULL
        )
        SELECT (SELECT id FROM tasks INDEXED BY tasks_claim_order
                WHERE state = 'queued' AND priority = level.priority AND run_at <= ? \(skipping)
                ORDER BY run_at, id LIMIT 1) AS id
        FROM level WHERE level.priority IS NOT NULL AND id IS NOT NULL
        LIMIT 1
        """
    }

    /// Made once: a draining worker claims for every task.
    private static let claimSQL = claimQuery(skipping: "")
    private static let claimSkippingPausedSQL = claimQuery(skipping: "AND type NOT IN (SELECT value FROM json_each(?))")
    private static let claimOnlySQL = claimQuery(skipping: "AND type IN (SELECT value FROM json_each(?))")

    private func block(taskID: Int64, type: String, reason: String, db: Database, now: Int64) throws {
        try db.transition(
            taskID, .block, at: now, changing: [.lastError(reason)], detail: ["reason": .string(reason)], type: type)
    }

    /// Gives a claimed task back to the queue until `until`, without counting the attempt: its paid
    /// model is out of budget for the day, the worker was stopped before it started it, or the
    /// worker cannot write its payload file.
    public func deferTask(_ claimed: ClaimedTask, until: Int64, reason: String, now: Int64) throws -> TaskOutcome? {
        try write("defer a task") { db in
            do {
                try db.transition(
                    claimed.task.id, .giveBack, at: now, lease: claimed.leaseToken,
                    changing: [.uncountAttempt, .runAt(until)], attempt: claimed.task.attempts,
                    detail: ["reason": .string(reason), "until": .string(Timestamp.format(until))],
                    type: claimed.task.type)
            } catch is TransitionRefused {
                return nil  // the lease is another worker's now
            }
            return TaskOutcome(
                id: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts, state: .queued,
                nextRunAt: until, error: reason)
        }
    }

    /// Pushes a held lease forward. False when the lease is no longer this worker's.
    public func extendLease(taskID: Int64, leaseToken: String, until: Int64, now: Int64) throws
        -> Bool
    {
        try write("extend a lease") { db in
            try db.run(
                sql: """
                    UPDATE tasks SET lease_expires_at = ?, updated_at = ?
                    WHERE id = ? AND lease_token = ? AND state IN ('running', 'verifying')
                    """, arguments: [until, now, taskID, leaseToken])
            return db.changesCount == 1
        }
    }

    /// Records an attempt's end and its verdict in one transaction: `done`, back to the queue with
    /// backoff, or `dead`. Returns nil, and records `lease_lost`, when the lease is no longer this
    /// worker's (another worker recovered the task; its outcome is the one that counts).
    public func recordAttempt(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult] = [],
        notify: NotifySettings = NotifySettings(), now: Int64, random: @Sendable () -> Double
    ) throws -> TaskOutcome? {
        try write("record an attempt") { db in
            try recordAttempt(
                db: db, claimed, outcome: outcome, verdict: verdict, checks: checks, notify: notify, now: now,
                random: random)
        }
    }

    /// Records an attempt and claims the next task in the same transaction: a draining worker
    /// pays for one commit per task instead of two. The claim runs in a savepoint: when it fails,
    /// the attempt is still recorded, and the step is nil (claim on its own, to see the error).
    public func recordAttemptAndClaimNext(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult] = [],
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String, random: @Sendable () -> Double
    ) throws -> (TaskOutcome?, ClaimStep?) {
        try write("record an attempt and claim the next task") { db in
            let recorded = try recordAttempt(
                db: db, claimed, outcome: outcome, verdict: verdict, checks: checks, notify: configuration.notify,
                now: now, random: random)
            // A savepoint from the statement cache: this runs once per task of a drain.
            try db.run(sql: "SAVEPOINT claim")
            do {
                let next = try claimNext(
                    db: db, configuration: configuration, now: now, lease: lease, leaseToken: leaseToken)
                try db.run(sql: "RELEASE claim")
                return (recorded, next)
            } catch {
                // SQLite rolled the whole transaction back by itself (a full disk): there is no
                // savepoint to go back to, and this error is the one to report.
                guard db.isInsideTransaction else { throw error }
                try db.run(sql: "ROLLBACK TO claim")
                try db.run(sql: "RELEASE claim")
                LedgerTail.forget(db)  // its rows were rolled back with the savepoint
                return (recorded, nil)
            }
        }
    }

    private func recordAttempt(
        db: Database, _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult],
        notify: NotifySettings, now: Int64, random: @Sendable () -> Double
    ) throws -> TaskOutcome? {
        let task = claimed.task
        guard try holdsLease(claimed, db: db) else {
            let state = try String.fetchOne(db, sql: "SELECT state FROM tasks WHERE id = ?", arguments: [task.id])
            try db.appendLedger(
                .leaseLost, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
                durationMs: outcome.durationMs,
                detail: [
                    "exit_code": outcome.exitCode.map { .int(Int64($0)) } ?? .null,
                    "state_now": state.map { .string($0) } ?? .null,
                ])
            return nil
        }
        // A verified attempt's row was written when its checks began.
        if !claimed.executedRecorded { try db.appendExecuted(task, outcome: outcome, at: now) }
        try db.recordChecks(checks, task: task, notify: notify, now: now)
        switch verdict {
        case .passed(let evidence):
            return try finish(task, outcome: outcome, evidence: evidence, verified: !checks.isEmpty, db: db, now: now)
        case .failed(let reason):
            return try settleFailure(
                task, outcome: outcome, type: claimed.type, error: reason, db: db, notify: notify, now: now,
                random: random)
        }
    }

    /// After a failed attempt: back to the queue after the policy's backoff, or dead when no
    /// attempts are left. Runs inside the caller's transaction.
    private func settleFailure(
        _ task: TaskRecord, outcome: HandlerOutcome? = nil, type: TaskType?, error: String, db: Database,
        notify: NotifySettings, now: Int64, random: @Sendable () -> Double
    ) throws -> TaskOutcome {
        let limit = task.attemptLimit(type)
        let kept = outcome.map { [$0.change] } ?? []
        if task.attempts >= limit {
            try db.transition(
                task.id, .die, at: now, changing: kept + [.lastError(error)], attempt: task.attempts,
                detail: ["attempts": .int(Int64(task.attempts))], notes: ["error": error], notify: notify,
                type: task.type)
            return TaskOutcome(
                id: task.id, type: task.type, attempt: task.attempts, state: .dead, error: error)
        }
        let delay = (type?.retry ?? RetryPolicy()).delay(afterAttempt: task.attempts, unit: random())
        let nextRunAt = now + delay.milliseconds
        try db.transition(
            task.id, .retryLater, at: now, changing: kept + [.runAt(nextRunAt), .lastError(error)],
            attempt: task.attempts,
            detail: [
                "delay_ms": .int(delay.milliseconds), "next_run_at": .string(Timestamp.format(nextRunAt)),
            ], notes: ["error": error], type: task.type)
        return TaskOutcome(
            id: task.id, type: task.type, attempt: task.attempts, state: .queued,
            nextRunAt: nextRunAt, error: error)
    }
}

/// What a claim reads of a candidate before admitting it: `SELECT type, payload, payload_sha256,
/// attempts`.
private struct AdmissionRow {
    let type: String
    let payload: String
    let payloadSHA256: String
    let attempts: Int

    init(columns row: StoredColumns) throws {
        (type, payload, payloadSHA256, attempts) = (try row.text(0), try row.text(1), try row.text(2), try row.int(3))
    }
}

extension Database {
    /// The handler's outcome in the chain: its exit, how much it printed, its error apart.
    func appendExecuted(_ task: TaskRecord, outcome: HandlerOutcome, at now: Int64) throws {
        try appendLedger(
            .executed, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
            durationMs: outcome.durationMs,
            detail: .object(outcome.executedDetail), notes: ["error": outcome.errorSummary])
    }
}

extension HandlerOutcome {
    /// The `executed` row's detail, on either engine: the exit, and how much the handler printed.
    var executedDetail: [String: JSONValue] {
        [
            "exit_code": exitCode.map { .int(Int64($0)) } ?? .null,
            "stdout_bytes": .int(Int64(stdout.utf8.count)),
            "stdout_truncated": .bool(stdoutTruncated),
        ]
    }
}
