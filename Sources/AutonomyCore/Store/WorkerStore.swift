/// What the worker needs of a store: claim, lease, record, recover. `AutonomyStore` (SQLite, one
/// machine) and `PostgresStore` (several machines, one queue) both provide it, each in one
/// transaction per call, with the same life cycle (`TaskTransition`) and the same ledger rows.
///
/// Times: SQLite stores take `now` from the caller's clock; PostgreSQL takes every time from the
/// database's clock (a lease's length is `until - now`), so hosts with skewed clocks agree.
public protocol WorkerStore: Sendable {
    /// Before a run: approvals whose window closed, model reservations a dead worker left open.
    func housekeeping(now: Int64) async throws -> [ApprovalRecord]

    func recoverExpiredLeases(
        configuration: Configuration, now: Int64, lease: Interval, random: @Sendable () -> Double
    ) async throws -> AutonomyStore.Recovery

    func recordRecovery(
        _ claimed: ClaimedTask, checks: [CheckResult], notify: NotifySettings, now: Int64,
        random: @Sendable () -> Double
    ) async throws -> TaskOutcome?

    func claimNext(
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String,
        ratings: [Int64: PrecomputedRating], rateInline: Bool
    ) async throws -> ClaimStep

    func deferTask(_ claimed: ClaimedTask, until: Int64, reason: String, now: Int64) async throws -> TaskOutcome?

    func markVerifying(_ claimed: ClaimedTask, outcome: HandlerOutcome, now: Int64) async throws -> Bool

    func recordAttempt(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult],
        notify: NotifySettings, now: Int64, random: @Sendable () -> Double
    ) async throws -> TaskOutcome?

    func recordAttemptAndClaimNext(
        _ claimed: ClaimedTask, outcome: HandlerOutcome, verdict: Verdict, checks: [CheckResult],
        configuration: Configuration, now: Int64, lease: Interval, leaseToken: String, random: @Sendable () -> Double
    ) async throws -> (TaskOutcome?, ClaimStep?)

    func extendLease(taskID: Int64, leaseToken: String, until: Int64, now: Int64) async throws -> Bool

    /// The operator's and heal's overrides in force (paused types, raised limits).
    func overrides(now: Int64) async throws -> [Override]

    /// One task as it stands.
    func task(id: Int64) async throws -> TaskRecord?

    /// Records a re-check of a task's evidence (`verify ID`): done when a failed task's evidence
    /// passes, reopened (dead) when a done task's fails and `reopen` is asked.
    func applyReverification(
        _ task: TaskRecord, checks: [CheckResult], reopen: Bool, by actor: String, notify: NotifySettings, now: Int64
    ) async throws -> Reverification
}

extension AutonomyStore: WorkerStore {
    public func housekeeping(now: Int64) throws -> [ApprovalRecord] {
        let expired = try expireApprovals(now: now)
        try chargeAbandonedReservations(now: now)
        return expired
    }
}
