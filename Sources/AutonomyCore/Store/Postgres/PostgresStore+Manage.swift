import Foundation
import PostgresNIO

extension PostgresStore {
    /// Cancels a task that has not started running (`AutonomyStore.cancel`), withdrawing its
    /// approval requests.
    ///
    /// - Throws: `QueueError.taskNotFound`, `QueueError.notCancellable`.
    public func cancel(taskID: Int64, by actor: String, reason: String?) async throws -> TaskRecord {
        try await write("cancel a task") { transaction in
            guard let task = try await transaction.task(id: taskID, locking: true) else {
                throw QueueError.taskNotFound(taskID)
            }
            guard task.state.isCancellable else { throw QueueError.notCancellable(id: taskID, state: task.state) }
            try await transaction.supersedeApprovals(
                taskID: taskID, typeName: task.type, states: [.pending, .approved],
                reason: "the task was cancelled by \(actor)")
            return try await transaction.transition(
                taskID, .cancel,
                changing: [.lastError("cancelled by \(actor)" + (reason.map { ": \($0)" } ?? ""))],
                attempt: task.attempts,
                detail: [
                    "by": .string(actor), "reason": reason.map { .string($0) } ?? .null,
                    "from": .string(task.state.rawValue),
                ])
        }
    }

    /// Sends a dead task back to the queue with a fresh set of attempts (`AutonomyStore.retry`);
    /// running it again asks for a human's yes anew.
    ///
    /// - Throws: `QueueError.taskNotFound`, `QueueError.notRetryable`, `QueueError.payloadPruned`.
    public func retry(taskID: Int64, by actor: String) async throws -> TaskRecord {
        try await write("retry a task") { transaction in
            guard let task = try await transaction.task(id: taskID, locking: true) else {
                throw QueueError.taskNotFound(taskID)
            }
            guard task.state == .dead else { throw QueueError.notRetryable(id: taskID, state: task.state) }
            guard !task.payloadPruned else {
                throw QueueError.payloadPruned(id: taskID)
            }
            try await transaction.supersedeApprovals(
                taskID: task.id, typeName: task.type, states: [.pending, .approved],
                reason: "the task was retried by \(actor)")
            return try await transaction.transition(
                task.id, .retry, changing: [.freshStart, .runAt(transaction.now)], attempt: task.attempts,
                detail: ["by": .string(actor), "previous_attempts": .int(Int64(task.attempts))])
        }
    }
}

extension PostgresStore {
    /// Drops the payload, result and notes of tasks that finished `olderThan` ago on the database's
    /// clock (`AutonomyStore.prune`); the ledger keeps every row, and one more says so.
    public func prune(olderThan: Interval, by actor: String) async throws -> Int {
        try await write("prune finished tasks") { transaction in
            let cutoff = transaction.now - olderThan.milliseconds
            let pruned = try await transaction.rows(
                """
                UPDATE tasks SET payload = '', result = NULL, stderr_tail = NULL, last_error = NULL,
                                 updated_at = \(transaction.now)
                WHERE state = ANY(\(TaskState.finalStates.map(\.rawValue))::text[])
                  AND finished_at < \(cutoff) AND payload <> ''
                RETURNING id
                """
            ).count
            try await transaction.query(
                """
                DELETE FROM ledger_notes WHERE task_id IN (
                    SELECT id FROM tasks WHERE payload = '' AND finished_at < \(cutoff)
                      AND state = ANY(\(TaskState.finalStates.map(\.rawValue))::text[]))
                """)
            if pruned > 0 {
                try await transaction.appendLedger(
                    .pruned, taskID: nil, type: nil,
                    detail: [
                        "tasks": .int(Int64(pruned)), "finished_before": .string(Timestamp.format(cutoff)),
                        "by": .string(actor),
                    ])
            }
            return pruned
        }
    }
}

extension PostgresStore {
    /// `AutonomyStore.applyReverification` on PostgreSQL: the checks go to the ledger; the task
    /// moves only if nothing else moved it since it was read.
    public func applyReverification(
        _ task: TaskRecord, checks: [CheckResult], reopen: Bool, by actor: String, notify: NotifySettings, now: Int64
    ) async throws -> Reverification {
        try await write("record a re-verification") { transaction in
            guard let current = try await transaction.task(id: task.id, locking: true) else {
                throw QueueError.taskNotFound(task.id)
            }
            try await self.recordChecks(checks, task: current, notify: notify, transaction)
            guard current.state == task.state, current.updatedAt == task.updatedAt else {
                return .unchanged(current.state)
            }
            let failedBefore = current.state == .dead || (current.state == .queued && current.lastError != nil)
            switch Verdict.combine(checks) {
            case .passed(let evidence) where failedBefore:
                try await transaction.transition(
                    current.id, .foundDone, attempt: current.attempts,
                    detail: [
                        "evidence": .string("found on a re-check by \(actor): " + evidence),
                        "was": .string(current.state.rawValue),
                    ])
                return .nowDone
            case .failed(let reason) where current.state == .done && reopen && Verdict.disproves(checks):
                try await transaction.transition(
                    current.id, .reopen,
                    // It finished when it was done; a reopened task keeps that time (and its retention).
                    changing: [.lastError("reopened by \(actor): " + reason), .finishedAt(current.finishedAt)],
                    attempt: current.attempts,
                    detail: ["error": .string("reopened by \(actor): " + reason), "was": "done"], notify: notify)
                return .reopened
            default:
                return .unchanged(current.state)
            }
        }
    }
}
