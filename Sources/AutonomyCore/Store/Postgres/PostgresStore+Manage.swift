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
    /// - Throws: `QueueError.taskNotFound`, `QueueError.notRetryable`.
    public func retry(taskID: Int64, by actor: String) async throws -> TaskRecord {
        try await write("retry a task") { transaction in
            guard let task = try await transaction.task(id: taskID, locking: true) else {
                throw QueueError.taskNotFound(taskID)
            }
            guard task.state == .dead else { throw QueueError.notRetryable(id: taskID, state: task.state) }
            try await transaction.supersedeApprovals(
                taskID: task.id, typeName: task.type, states: [.pending, .approved],
                reason: "the task was retried by \(actor)")
            return try await transaction.transition(
                task.id, .retry, changing: [.freshStart, .runAt(transaction.now)], attempt: task.attempts,
                detail: ["by": .string(actor), "previous_attempts": .int(Int64(task.attempts))])
        }
    }
}
