import GRDB

/// The queue at a glance, for `autonomy status`.
public struct QueueStatus: Sendable {
    public var counts: [TaskState: Int]
    /// Per type, per state.
    public var countsByType: [String: [TaskState: Int]]
    /// The runnable task that has waited longest, and since when (its run_at).
    public var oldestRunnable: (id: Int64, type: String, since: Int64)?
    /// The next task that is waiting for its time to come.
    public var nextScheduled: (id: Int64, type: String, runAt: Int64)?
    /// The most recent dead tasks (up to 10).
    public var recentDead: [TaskRecord]
    /// Tasks whose lease has run out: their worker died; the next work-once recovers them.
    public var expiredLeases: Int
    /// The overrides in effect (none for a producer's view).
    public var overrides: [Override] = []
    /// Heal's open breakers, and its automatic actions of the last day per target and outcome
    /// (none for a producer's view).
    public var breakers: [HealBreaker] = []
    public var healLastDay: [String: [String: Int]] = [:]
    /// Which host holds or last ran tasks (PostgreSQL, several hosts; empty on SQLite).
    public var hosts: [HostActivity] = []
}

/// One host's share of a PostgreSQL queue.
public struct HostActivity: Sendable, Equatable {
    public var host: String
    /// Tasks it holds a lease on now.
    public var running: Int
    /// Tasks it ran that ended done or dead.
    public var finished: Int
    /// Its latest claim or outcome (epoch ms).
    public var lastSeen: Int64
}

/// Filters for `autonomy tasks list`.
public struct TaskFilter: Sendable {
    public var state: TaskState?
    public var type: String?
    /// Only the tasks of this producer.
    public var source: String?
    public var limit: Int
    public init(state: TaskState? = nil, type: String? = nil, source: String? = nil, limit: Int = 50) {
        self.state = state
        self.type = type
        self.source = source
        self.limit = limit
    }
}

extension AutonomyStore {
    public func task(id: Int64) throws -> TaskRecord? {
        try read("read a task") { db in
            try db.task(id: id)
        }
    }

    /// Tasks matching the filter, newest first.
    public func tasks(matching filter: TaskFilter) throws -> [TaskRecord] {
        try read("list tasks") { db in
            var conditions: [String] = []
            var arguments: StatementArguments = []
            if let state = filter.state {
                conditions.append("state = ?")
                _ = arguments.append(contentsOf: [state.rawValue])
            }
            if let type = filter.type {
                conditions.append("type = ?")
                _ = arguments.append(contentsOf: [type])
            }
            if let source = filter.source {
                conditions.append("source = ?")
                _ = arguments.append(contentsOf: [source])
            }
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            _ = arguments.append(contentsOf: [filter.limit])
            return try TaskRecord.fetchAll(
                db, sql: "SELECT \(TaskRecord.columns) FROM tasks \(whereClause) ORDER BY id DESC LIMIT ?",
                arguments: arguments)
        }
    }

    /// Cancels a task that has not started running.
    ///
    /// - Throws: `QueueError.taskNotFound`, `QueueError.notCancellable`.
    public func cancel(taskID: Int64, by actor: String, reason: String?, now: Int64) throws -> TaskRecord {
        try write("cancel a task") { db in
            guard
                let task = try db.task(id: taskID)
            else {
                throw QueueError.taskNotFound(taskID)
            }
            guard task.state.isCancellable else { throw QueueError.notCancellable(id: taskID, state: task.state) }
            try db.supersedeApprovals(
                taskID: taskID, typeName: task.type, states: [.pending, .approved],
                reason: "the task was cancelled by \(actor)", now: now)
            return try db.transitionReturningTask(
                taskID, .cancel, at: now,
                changing: [.lastError("cancelled by \(actor)" + (reason.map { ": \($0)" } ?? ""))],
                attempt: task.attempts,
                detail: [
                    "by": .string(actor), "reason": reason.map { .string($0) } ?? .null,
                    "from": .string(task.state.rawValue),
                ])
        }
    }

    /// Sends a dead task back to the queue with a fresh set of attempts.
    ///
    /// - Throws: `QueueError.taskNotFound`, `QueueError.notRetryable`, `QueueError.payloadPruned`.
    public func retry(taskID: Int64, by actor: String, now: Int64) throws -> TaskRecord {
        try write("retry a task") { db in
            guard
                let task = try db.task(id: taskID)
            else {
                throw QueueError.taskNotFound(taskID)
            }
            guard task.state == .dead else { throw QueueError.notRetryable(id: taskID, state: task.state) }
            guard !task.payloadPruned else {
                throw QueueError.payloadPruned(id: taskID)
            }
            return try db.retryDead(task, by: actor, now: now)
        }
    }

    /// Counts and ages for `autonomy status`, from one consistent snapshot; with `source`, of that
    /// producer's tasks only.
    public func status(now: Int64, source: String? = nil) throws -> QueueStatus {
        try read("read the queue status") { db in
            let mine = source == nil ? "" : "AND source = ?"
            func arguments(_ values: DatabaseValueConvertible...) -> StatementArguments {
                StatementArguments(values + (source.map { [$0] } ?? []))
            }
            var counts: [TaskState: Int] = [:]
            var byType: [String: [TaskState: Int]] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT type, state, COUNT(*) AS n FROM tasks WHERE 1 \(mine) GROUP BY type, state",
                arguments: arguments())
            {
                let type: String = try row.decode(forColumn: "type")
                let state: TaskState = try row.decode(forColumn: "state")
                let count: Int = try row.decode(forColumn: "n")
                counts[state, default: 0] += count
                byType[type, default: [:]][state, default: 0] += count
            }
            let oldest = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, type, run_at FROM tasks WHERE state = 'queued' AND run_at <= ? \(mine)
                    ORDER BY run_at, id LIMIT 1
                    """, arguments: arguments(now)
            ).map {
                (
                    id: try $0.decode(Int64.self, forColumn: "id"), type: try $0.decode(String.self, forColumn: "type"),
                    since: try $0.decode(Int64.self, forColumn: "run_at")
                )
            }
            let next = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, type, run_at FROM tasks WHERE state = 'queued' AND run_at > ? \(mine)
                    ORDER BY run_at, id LIMIT 1
                    """, arguments: arguments(now)
            ).map {
                (
                    id: try $0.decode(Int64.self, forColumn: "id"), type: try $0.decode(String.self, forColumn: "type"),
                    runAt: try $0.decode(Int64.self, forColumn: "run_at")
                )
            }
            let dead = try TaskRecord.fetchAll(
                db,
                sql: """
                    SELECT \(TaskRecord.columns) FROM tasks WHERE state = 'dead' \(mine)
                    ORDER BY finished_at DESC, id DESC LIMIT 10
                    """, arguments: arguments())
            let expired =
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT COUNT(*) FROM tasks WHERE state IN ('running', 'verifying') AND lease_expires_at < ? \(mine)
                        """, arguments: arguments(now)) ?? 0
            var status = QueueStatus(
                counts: counts, countsByType: byType, oldestRunnable: oldest, nextScheduled: next,
                recentDead: dead, expiredLeases: expired)
            if source == nil {
                status.overrides = try db.activeOverrides(now: now)
                status.breakers = try db.openBreakers(now: now)
                status.healLastDay = try db.healActivity(since: now - Interval.days(1).milliseconds)
            }
            return status
        }
    }
}

extension Database {
    /// Sends a dead task back to the queue with a fresh set of attempts; running it again asks for
    /// a human's yes anew.
    @discardableResult
    func retryDead(_ task: TaskRecord, by actor: String, now: Int64) throws -> TaskRecord {
        try supersedeApprovals(
            taskID: task.id, typeName: task.type, states: [.pending, .approved],
            reason: "the task was retried by \(actor)", now: now)
        return try transitionReturningTask(
            task.id, .retry, at: now, changing: [.freshStart, .runAt(now)], attempt: task.attempts,
            detail: ["by": .string(actor), "previous_attempts": .int(Int64(task.attempts))])
    }
}
