import Foundation
import GRDB

/// What applying and checking a fix proposal needs of a store (`Remediator`). `AutonomyStore` and
/// `PostgresStore` both provide it, each change in one transaction with its ledger rows. On
/// PostgreSQL `now` is not used: times are the database's clock.
public protocol RemediationStore: Sendable {
    /// The overrides in effect, oldest first.
    func overrides(now: Int64) async throws -> [Override]
    func task(id: Int64) async throws -> TaskRecord?
    /// The ledger's first row whose hash does not hold, if any.
    func firstBrokenLedgerRow() async throws -> Int64?

    /// Adds an override made by the proposal `proposal`, ending any active one of the same kind on
    /// the same type.
    func setOverride(
        _ kind: Override.Kind, type: String?, value: Int64?, reason: String, proposal: Int64, lasting: Interval?,
        now: Int64
    ) async throws -> Override
    /// Ends the pauses of a type; their ids.
    func endPauses(of type: String, by actor: String, reason: String, now: Int64) async throws -> [Int64]
    /// Sends the dead tasks of a type that died at or after `since` back to the queue (at most
    /// 1,000), each asking a human anew where it must; those whose payload was pruned stay.
    func retryDead(type: String, since: Int64, by actor: String, now: Int64) async throws -> (
        retried: [Int64], pruned: [Int64]
    )
    /// Expires the pending requests (fix proposals aside) asked more than `olderThan` ago.
    func expireStaleApprovals(olderThan: Interval, now: Int64) async throws -> [Int64]
    /// Queues the `owner_needed` alert about a proposal.
    func notifyOwner(proposal task: Int64, notify: NotifySettings, now: Int64) async throws

    /// How many of these tasks are dead.
    func countDead(_ ids: [Int64]) async throws -> Int
    /// How many requests (fix proposals aside) have been pending longer than `olderThan`.
    func countStaleApprovals(olderThan: Interval, now: Int64) async throws -> Int
    /// Whether the task is still running or verifying under a lease that ran out.
    func heldPastLease(task: Int64, now: Int64) async throws -> Bool
    /// The stale-approval and stuck-task findings as they stand now.
    func stuckFindings(_ settings: AuditSettings, now: Int64) async throws -> [Finding]
}

extension AutonomyStore: RemediationStore {
    public func firstBrokenLedgerRow() throws -> Int64? { try verifyLedgerChain().firstBroken?.id }

    public func setOverride(
        _ kind: Override.Kind, type: String?, value: Int64?, reason: String, proposal: Int64, lasting: Interval?,
        now: Int64
    ) throws -> Override {
        try write("apply a proposal") { db in
            try db.setOverride(
                kind, type: type, value: value, reason: reason, proposal: proposal, lasting: lasting, now: now)
        }
    }

    public func endPauses(of type: String, by actor: String, reason: String, now: Int64) throws -> [Int64] {
        try write("apply a proposal") { db in
            let pauses = try db.activeOverrides(now: now).filter { $0.kind == .pause && $0.type == type }
            for pause in pauses { try db.endOverride(pause, by: actor, reason: reason, now: now) }
            return pauses.map(\.id)
        }
    }

    public func retryDead(type: String, since: Int64, by actor: String, now: Int64) throws -> (
        retried: [Int64], pruned: [Int64]
    ) {
        try write("retry dead tasks") { db in
            let dead = try TaskRecord.fetchAll(
                db,
                sql: """
                    SELECT \(TaskRecord.columns) FROM tasks
                    WHERE state = 'dead' AND type = ? AND finished_at >= ? ORDER BY id LIMIT 1000
                    """, arguments: [type, since])
            var sent: (retried: [Int64], pruned: [Int64]) = ([], [])
            for task in dead {
                if task.payloadPruned {
                    sent.pruned.append(task.id)
                } else {
                    try db.retryDead(task, by: actor, now: now)
                    sent.retried.append(task.id)
                }
            }
            return sent
        }
    }

    public func expireStaleApprovals(olderThan: Interval, now: Int64) throws -> [Int64] {
        try write("expire stale approvals") { db in
            try db.expireApprovals(now: now, requestedBefore: now - olderThan.milliseconds).map(\.id)
        }
    }

    public func notifyOwner(proposal task: Int64, notify: NotifySettings, now: Int64) throws {
        try write("notify an owner") { db in
            try db.queueNotification(.ownerNeeded, taskID: task, approvalID: nil, notify: notify, now: now)
        }
    }

    public func countDead(_ ids: [Int64]) throws -> Int {
        try read("check a proposal") { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM tasks WHERE state = 'dead' AND id IN (SELECT value FROM json_each(?))",
                arguments: [JSONValue.array(ids.map { .int($0) }).canonicalText]) ?? 0
        }
    }

    public func countStaleApprovals(olderThan: Interval, now: Int64) throws -> Int {
        try read("check a proposal") { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM approvals WHERE state = 'pending' AND requested_at <= ?
                      AND \(Database.notAProposal)
                    """, arguments: [now - olderThan.milliseconds]) ?? 0
        }
    }

    public func heldPastLease(task: Int64, now: Int64) throws -> Bool {
        try read("check a proposal") { db in
            try Bool.fetchOne(
                db,
                sql: """
                    SELECT EXISTS (SELECT 1 FROM tasks WHERE id = ? AND state IN ('running', 'verifying')
                                   AND lease_expires_at < ?)
                    """, arguments: [task, now]) ?? false
        }
    }

    public func stuckFindings(_ settings: AuditSettings, now: Int64) throws -> [Finding] {
        try read("check a finding") { db in try stuck(settings, now: now, db: db) }
    }
}
