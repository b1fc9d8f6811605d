import Foundation
import GRDB

/// The whole system at a glance, for the dashboard's first page: what needs the operator, how the
/// queue stands, what it did and spent, and what the Oracle, heal and the alerts say. Every part
/// is read through an index or over the last day only, so it stays fast on a large database.
public struct Overview: Sendable {
    /// One hour of the last day: tasks finished done, and dead.
    public struct Hour: Sendable, Equatable {
        public var start: Int64
        public var done: Int
        public var dead: Int
    }

    /// An alert that has not gone out: it failed at least once and is retried.
    public struct FailedAlert: Sendable, Equatable {
        public var id: Int64
        public var event: String
        public var channel: String
        public var taskID: Int64?
        public var attempts: Int
        public var lastError: String?
        public var createdAt: Int64
    }

    /// The last audit: when, its headline and its worst finding.
    public struct AuditHeadline: Sendable, Equatable {
        public var id: Int64
        public var at: Int64
        public var headline: String
        public var worst: String?
    }

    /// Requests waiting for a human, the oldest `AutonomyStore.overviewApprovals` (fix proposals
    /// among them); `status.counts[.awaitingApproval]` says how many wait in all.
    public var approvals: [PendingApproval]
    public var status: QueueStatus
    /// The last 24 hours, oldest first.
    public var hours: [Hour]
    public var budget: BudgetStatus
    /// Declared types with no success in `shelfwareAfter` (or ever), sorted.
    public var shelfware: [String]
    public var lastAudit: AuditHeadline?
    public var failedAlerts: [FailedAlert]

    /// The fix proposals among the waiting requests.
    public var proposals: [PendingApproval] { approvals.filter { $0.task.type == TaskType.remediationTypeName } }
    /// The requests about tasks a producer asked for.
    public var requests: [PendingApproval] { approvals.filter { $0.task.type != TaskType.remediationTypeName } }
}

extension AutonomyStore {
    /// How long a declared type may go without a success before the overview calls it shelfware.
    public static let shelfwareAfter = Interval.days(30)
    /// How many waiting requests the overview lists (the oldest); the rest are counted.
    public static let overviewApprovals = 25

    /// The overview as of `now`. It expires the requests whose time is up, as `approvals` does.
    public func overview(configuration: Configuration, now: Int64) throws -> Overview {
        let approvals = try pendingApprovals(now: now, limit: Self.overviewApprovals)
        let status = try status(now: now)
        let budget = try budget(settings: configuration.gateway, timeZone: configuration.timezone, now: now)
        return try read("read the overview") { db in
            let first = now - Interval.hours(24).milliseconds
            var hours = (0..<24).map { Overview.Hour(start: first + Int64($0) * 3_600_000, done: 0, dead: 0) }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT (finished_at - ?) / 3600000 AS hour, state, COUNT(*) AS n FROM tasks
                    WHERE finished_at > ? AND state IN ('done', 'dead') GROUP BY hour, state
                    """, arguments: [first, first])
            {
                let hour: Int = row["hour"]
                guard hours.indices.contains(hour) else { continue }
                if (row["state"] as String) == "done" {
                    hours[hour].done = row["n"]
                } else {
                    hours[hour].dead = row["n"]
                }
            }
            let shelfware = try db.shelfware(configuration, now: now)
            let lastAudit = try Row.fetchOne(
                db,
                sql: "SELECT id, at, headline, worst FROM audit_runs WHERE source = 'audit' ORDER BY id DESC LIMIT 1"
            ).map { Overview.AuditHeadline(id: $0["id"], at: $0["at"], headline: $0["headline"], worst: $0["worst"]) }
            let failedAlerts = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, event, channel, task_id, attempts, last_error, created_at
                    FROM notifications INDEXED BY notifications_due
                    WHERE delivered_at IS NULL AND attempts > 0 ORDER BY id LIMIT 20
                    """
            ).map {
                Overview.FailedAlert(
                    id: $0["id"], event: $0["event"], channel: $0["channel"], taskID: $0["task_id"],
                    attempts: $0["attempts"], lastError: $0["last_error"], createdAt: $0["created_at"])
            }
            return Overview(
                approvals: approvals, status: status, hours: hours, budget: budget, shelfware: shelfware,
                lastAudit: lastAudit, failedAlerts: failedAlerts)
        }
    }
}

extension Database {
    /// The declared types (fix proposals aside) with no success in `shelfwareAfter`, or ever, sorted.
    func shelfware(_ configuration: Configuration, now: Int64) throws -> [String] {
        try configuration.shelfware(now: now) { try lastSuccess(of: $0) }
    }
}

extension Configuration {
    /// The declared types (fix proposals aside) whose last success (`lastSuccess`) is older than
    /// `AutonomyStore.shelfwareAfter`, or that never succeeded, sorted: either engine's reading.
    func shelfware(now: Int64, lastSuccess: (String) throws -> Int64?) rethrows -> [String] {
        let cutoff = now - AutonomyStore.shelfwareAfter.milliseconds
        return try taskTypes.keys.sorted().filter { name in
            guard name != TaskType.remediationTypeName else { return false }
            return try (lastSuccess(name) ?? .min) < cutoff
        }
    }
}
