import GRDB

/// What `autonomy verify ID` did with a task's fresh evidence.
public enum Reverification: Sendable, Equatable {
    /// A failed or dead task whose evidence now passes became done.
    case nowDone
    /// A done task whose evidence no longer passes was reopened (as dead) with `--reopen`.
    case reopened
    /// The evidence was recorded; the task's state did not change.
    case unchanged(TaskState)
}

extension AutonomyStore {
    /// Records a re-check of a task's evidence (a ledger row per verifier) and acts on it: a failed
    /// (waiting to retry) or dead task whose evidence passes becomes done; a done task that a
    /// verifier finds undone (a failed check, not one that could not tell or could not run) becomes
    /// dead only with `reopen`. Nothing changes if the task moved meanwhile.
    public func applyReverification(
        _ task: TaskRecord, checks: [CheckResult], reopen: Bool, by actor: String, notify: NotifySettings, now: Int64
    ) throws -> Reverification {
        try write("record a re-verification") { db in
            guard
                let current = try db.task(id: task.id)
            else { throw QueueError.taskNotFound(task.id) }
            try db.recordChecks(checks, task: current, notify: notify, now: now)
            guard current.state == task.state, current.updatedAt == task.updatedAt else {
                return .unchanged(current.state)
            }
            let verdict = Verdict.combine(checks)
            let failedBefore = current.state == .dead || (current.state == .queued && current.lastError != nil)
            switch verdict {
            case .passed(let evidence) where failedBefore:
                try db.transition(
                    current.id, .foundDone, at: now, attempt: current.attempts,
                    detail: [
                        "evidence": .string("found on a re-check by \(actor): " + evidence),
                        "was": .string(current.state.rawValue),
                    ])
                return .nowDone
            case .failed(let reason) where current.state == .done && reopen && Verdict.disproves(checks):
                try db.transition(
                    current.id, .reopen, at: now,
                    // It finished when it was done; a reopened task keeps that time (and its retention).
                    changing: [.lastError("reopened by \(actor): " + reason), .finishedAt(current.finishedAt)],
                    attempt: current.attempts,
                    detail: ["error": .string("reopened by \(actor): " + reason), "was": "done"],
                    notify: notify)
                return .reopened
            default:
                return .unchanged(current.state)
            }
        }
    }
}
