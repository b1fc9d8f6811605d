import Foundation
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

extension EnqueueRequest {
    /// The request as a producer may make it: of a type it is allowed and the map declares, from its
    /// own name. Its priority and attempts may lower the type's, never raise them, and it runs no
    /// sooner than now: one producer cannot put its work ahead of everyone's (a high priority, a
    /// time long past), or keep a failing handler retrying past what the operator set.
    func on(behalfOf producer: ProducerPolicy?, _ configuration: Configuration, now: Int64) throws(TrustError)
        -> EnqueueRequest
    {
        guard let producer else { return self }
        // An undeclared type is refused as one it may not ask for: a producer learns nothing of
        // the map (the error for an operator lists what is declared).
        guard producer.allows(type: type), configuration.taskType(named: type) != nil else {
            throw .typeNotAllowed(producer: producer.name, type: type, allowed: producer.rule.types)
        }
        if let source, source != producer.name { throw .sourceForged(claimed: source, actual: producer.name) }
        var request = self
        request.source = producer.name
        if let declared = configuration.taskType(named: type) {
            request.priority = priority.map { min($0, declared.priority) }
            request.maxAttempts = maxAttempts.map { min($0, declared.effectiveMaxAttempts) }
        }
        request.runAt = runAt.map { max($0, now) }
        return request
    }
}

extension Database {
    /// Refuses a producer's task over its hourly limits: all its tasks, and apart from them its
    /// dangerous ones (each asks an operator), so one agent cannot flood the operator.
    func checkLimits(of producer: ProducerPolicy, dangerous: Bool, now: Int64) throws {
        let since = now - Interval.hours(1).milliseconds
        func check(_ limit: Int?, isDangerous: Bool, _ sql: String) throws {
            guard let limit else { return }
            // A count that cannot be read fails the enqueue rather than letting the task past its
            // limit (and the write transaction it runs in must not go on after a failed statement).
            let row = try Row.fetchOne(cachedStatement(sql: sql), arguments: [producer.name, since])
            let count: Int = row?[0] ?? 0
            guard count >= limit else { return }
            let oldest: Int64 = row?[1] ?? now
            throw TrustError.rateLimited(
                producer: producer.name, limit: limit, dangerous: isDangerous,
                retryAfterSeconds: max(1, (oldest + Interval.hours(1).milliseconds - now + 999) / 1000))
        }
        try check(
            producer.rule.maxPerHour, isDangerous: false,
            "SELECT COUNT(*), MIN(created_at) FROM tasks INDEXED BY tasks_source WHERE source = ? AND created_at > ?")
        if dangerous {
            try check(
                producer.rule.maxDangerousPerHour, isDangerous: true,
                """
                SELECT COUNT(*), MIN(a.requested_at) FROM approvals a JOIN tasks t ON t.id = a.task_id
                WHERE t.source = ? AND a.requested_at > ?
                """)
        }
    }
}

extension AutonomyStore {
    /// Adds one task, or returns the task its idempotency key already names.
    ///
    /// A dangerous type's task enters `awaiting_approval`; a safe one is `queued`.
    /// - Throws: `QueueError` (nothing written) or `StoreError`.
    /// With `producer` (a caller through the gate), the task's source is the producer's name, its
    /// type must be one the producer may enqueue, and the producer's hourly limits apply.
    /// - Throws: `QueueError` or `TrustError` (nothing written), or `StoreError`.
    public func enqueue(
        _ request: EnqueueRequest, configuration: Configuration, now: Int64, producer: ProducerPolicy? = nil
    ) throws -> EnqueueOutcome {
        let prepared = try request.on(behalfOf: producer, configuration, now: now).prepare(configuration, now: now)
        return try write("enqueue") { db in
            try insert(prepared, db: db, configuration: configuration, now: now, producer: producer)
        }
    }

    /// Adds every task of a batch in one transaction: all of them, or (on any error) none.
    ///
    /// - Throws: `QueueError.batchLine` naming the first refused request (1-based), or `StoreError`.
    public func enqueueBatch(
        _ requests: [EnqueueRequest], configuration: Configuration, now: Int64
    ) throws -> [EnqueueOutcome] {
        try write("enqueue a batch") { db in
            var outcomes: [EnqueueOutcome] = []
            outcomes.reserveCapacity(requests.count)
            for (index, request) in requests.enumerated() {
                outcomes.append(
                    try insert(request, position: index + 1, db: db, configuration: configuration, now: now))
            }
            return outcomes
        }
    }

    /// What `enqueue --batch` did.
    public struct BatchResult: Sendable {
        /// Every task's id, in input order (existing ones included).
        public var ids: [Int64] = []
        /// How many lines named a task that already existed under its idempotency key.
        public var existing = 0
        /// The tasks themselves, when asked for.
        public var tasks: [TaskRecord] = []
    }

    /// Adds the tasks of JSON Lines input (see `EnqueueRequest.parseBatch` for a line's shape) in one
    /// transaction, streaming: all of them, or (on any error) none.
    ///
    /// - Throws: `QueueError.batchLine` naming the first refused line, or `StoreError`.
    public func enqueueBatch(
        jsonLines data: Data, configuration: Configuration, now: Int64, keepTasks: Bool = false,
        producer: ProducerPolicy? = nil
    ) throws -> BatchResult {
        try write("enqueue a batch") { db in
            var result = BatchResult()
            try EnqueueRequest.forEachBatchLine(in: data) { line, request in
                let outcome = try insert(
                    request, position: line, db: db, configuration: configuration, now: now, producer: producer)
                result.ids.append(outcome.task.id)
                if case .existing = outcome { result.existing += 1 }
                if keepTasks { result.tasks.append(outcome.task) }
            }
            return result
        }
    }

    private func insert(
        _ request: EnqueueRequest, position: Int, db: Database, configuration: Configuration, now: Int64,
        producer: ProducerPolicy? = nil
    ) throws -> EnqueueOutcome {
        do {
            return try insert(
                try request.on(behalfOf: producer, configuration, now: now).prepare(configuration, now: now), db: db,
                configuration: configuration, now: now, producer: producer)
        } catch let error as QueueError {
            throw QueueError.batchLine(position, error)
        } catch let error as TrustError {
            throw TrustError.batchLine(position, error)
        }
    }

    func insert(
        _ task: PreparedTask, db: Database, configuration: Configuration, now: Int64, producer: ProducerPolicy? = nil
    ) throws -> EnqueueOutcome {
        let notify = configuration.notify
        let request = task.request
        if let key = request.key,
            let existing = try TaskRecord.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT \(TaskRecord.columns) FROM tasks WHERE idempotency_key = ? AND ifnull(source, '') = ?
                        """),
                arguments: [key, request.source ?? ""])
        {
            guard existing.type == request.type, existing.payloadSHA256 == task.payloadSHA256 else {
                throw QueueError.keyConflict(key: key, existingID: existing.id)
            }
            return .existing(existing)
        }
        // A producer's hourly limits hold whichever way its tasks arrive: through the gate, or from a
        // trusted caller that names it as the source.
        let limited =
            producer
            ?? request.source.flatMap { source in
                configuration.producers.users[source].map { ProducerPolicy(name: source, rule: $0) }
            }
        if let limited { try db.checkLimits(of: limited, dangerous: task.state == .awaitingApproval, now: now) }
        let statement = try db.cachedStatement(
            sql: """
                INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, idempotency_key,
                                   source, subject, max_attempts, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        try statement.run(binding: [
            .text(request.type), .text(task.state.rawValue), .integer(Int64(task.priority)), .integer(task.runAt),
            .text(task.payload), .text(task.payloadSHA256), .text(request.key), .text(request.source),
            .text(request.subject), .integer(request.maxAttempts.map(Int64.init)), .integer(now), .integer(now),
        ])
        let id = db.lastInsertedRowID
        // The same canonical text JSONValue would write, without building a dictionary per task.
        let source = request.source.map { JSONValue.string($0).canonicalText } ?? "null"
        try db.appendLedger(
            .enqueued, at: now, taskID: id, type: request.type,
            detailText:
                #"{"payload_sha256":"\#(task.payloadSHA256)","source":\#(source),"state":"\#(task.state.rawValue)"}"#)
        if task.state == .awaitingApproval {
            // Asked at once, so the operator is alerted at once.
            let reason = "rated dangerous: " + task.rating.reasons.joined(separator: "; ")
            try db.appendLedger(
                .held, at: now, taskID: id, type: request.type,
                detail: ["reason": .string(reason), "payload_sha256": .string(task.payloadSHA256)])
            try db.requestApproval(
                taskID: id, typeName: request.type, type: task.type, payloadSHA256: task.payloadSHA256,
                reason: reason, notify: notify, now: now)
        }
        return .created(
            TaskRecord(
                id: id, type: request.type, state: task.state, priority: task.priority, runAt: task.runAt,
                payload: task.payload, payloadSHA256: task.payloadSHA256, idempotencyKey: request.key,
                source: request.source, subject: request.subject, attempts: 0, maxAttempts: request.maxAttempts,
                leaseToken: nil, leaseExpiresAt: nil, createdAt: now, updatedAt: now, startedAt: nil,
                finishedAt: nil, exitCode: nil, result: nil, lastError: nil, stderrTail: nil))
    }
}
