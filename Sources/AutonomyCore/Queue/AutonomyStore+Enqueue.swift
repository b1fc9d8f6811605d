import GRDB

/// The result of an enqueue: a new task, or the one an idempotency key already named.
public enum EnqueueOutcome: Sendable, Equatable {
    case created(TaskRecord)
    case existing(TaskRecord)

    public var task: TaskRecord {
        switch self {
        case .created(let task), .existing(let task): return task
        }
    }
}

extension AutonomyStore {
    /// Adds one task, or returns the task its idempotency key already names.
    ///
    /// A dangerous type's task enters `awaiting_approval`; a safe one is `queued`.
    /// - Throws: `QueueError` (nothing written) or `StoreError`.
    public func enqueue(_ request: EnqueueRequest, configuration: Configuration, now: Int64) throws -> EnqueueOutcome {
        let prepared = try request.prepare(configuration, now: now)
        return try write("enqueue") { db in try insert(prepared, db: db, now: now) }
    }

    /// Adds every task of a batch in one transaction: all of them, or (on any error) none.
    ///
    /// - Throws: `QueueError.batchLine` naming the first refused line (1-based), or `StoreError`.
    public func enqueueBatch(
        _ requests: [EnqueueRequest], lineNumbers: [Int]? = nil, configuration: Configuration, now: Int64
    ) throws -> [EnqueueOutcome] {
        var prepared: [PreparedTask] = []
        prepared.reserveCapacity(requests.count)
        for (index, request) in requests.enumerated() {
            do {
                prepared.append(try request.prepare(configuration, now: now))
            } catch {
                throw QueueError.batchLine(lineNumbers?[index] ?? index + 1, error)
            }
        }
        return try write("enqueue a batch") { db in
            var outcomes: [EnqueueOutcome] = []
            outcomes.reserveCapacity(prepared.count)
            for (index, task) in prepared.enumerated() {
                do {
                    outcomes.append(try insert(task, db: db, now: now))
                } catch let error as QueueError {
                    throw QueueError.batchLine(lineNumbers?[index] ?? index + 1, error)
                }
            }
            return outcomes
        }
    }

    private func insert(_ task: PreparedTask, db: Database, now: Int64) throws -> EnqueueOutcome {
        let request = task.request
        if let key = request.key,
           let existing = try TaskRecord.fetchOne(
               db.cachedStatement(sql: "SELECT * FROM tasks WHERE idempotency_key = ?"), arguments: [key]) {
            guard existing.type == request.type, existing.payloadSHA256 == task.payloadSHA256 else {
                throw QueueError.keyConflict(key: key, existingID: existing.id)
            }
            return .existing(existing)
        }
        let statement = try db.cachedStatement(sql: """
            INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, idempotency_key,
                               source, subject, max_attempts, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try statement.execute(arguments: [
            request.type, task.state.rawValue, task.priority, task.runAt, task.payload, task.payloadSHA256,
            request.key, request.source, request.subject, request.maxAttempts, now, now,
        ])
        let id = db.lastInsertedRowID
        try db.appendLedger(.enqueued, at: now, taskID: id, type: request.type, detail: .object([
            "payload_sha256": .string(task.payloadSHA256), "source": request.source.map { .string($0) } ?? .null,
            "state": .string(task.state.rawValue),
        ]))
        if task.state == .awaitingApproval {
            try db.appendLedger(.held, at: now, taskID: id, type: request.type, detail: [
                "reason": "the type is rated dangerous: it needs an approval",
            ])
        }
        return .created(TaskRecord(
            id: id, type: request.type, state: task.state, priority: task.priority, runAt: task.runAt,
            payload: task.payload, payloadSHA256: task.payloadSHA256, idempotencyKey: request.key,
            source: request.source, subject: request.subject, attempts: 0, maxAttempts: request.maxAttempts,
            leaseToken: nil, leaseExpiresAt: nil, createdAt: now, updatedAt: now, startedAt: nil,
            finishedAt: nil, exitCode: nil, result: nil, lastError: nil, stderrTail: nil))
    }
}
