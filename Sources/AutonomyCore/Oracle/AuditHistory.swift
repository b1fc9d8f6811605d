import Foundation
import GRDB

/// Past audits as the dashboard lists them: each run's headline, its findings, and the fix
/// proposals it made with where each stands now.
public struct AuditRun: Sendable {
    public struct Found: Sendable {
        public var kind: String
        public var severity: String
        public var subject: String?
        public var title: String
    }

    public struct Proposed: Sendable {
        public var taskID: Int64
        public var action: String
        /// The proposal task's state now (`awaiting_approval`, `done`, `rejected`, …).
        public var state: String
    }

    public var id: Int64
    public var at: Int64
    public var windowStart: Int64
    public var windowEnd: Int64
    public var headline: String
    public var worst: String?
    public var findings: [Found]
    public var proposals: [Proposed]
}

extension AutonomyStore {
    /// The last `limit` audits (the weekly Oracle's, not heal's cycles), newest first.
    public func auditRuns(limit: Int = 20) throws -> [AuditRun] {
        try read("read the audits") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, at, window_start, window_end, headline, worst FROM audit_runs
                    WHERE source = 'audit' ORDER BY id DESC LIMIT ?
                    """, arguments: [limit]
            ).map { row in
                let id: Int64 = row["id"]
                let findings = try Row.fetchAll(
                    db, sql: "SELECT kind, severity, subject, title FROM findings WHERE run_id = ? ORDER BY id",
                    arguments: [id]
                ).map {
                    AuditRun.Found(
                        kind: $0["kind"], severity: $0["severity"], subject: $0["subject"], title: $0["title"])
                }
                let proposals = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT p.task_id AS task_id, p.action AS action, t.state AS state
                        FROM proposals p JOIN tasks t ON t.id = p.task_id WHERE p.run_id = ? ORDER BY p.task_id
                        """, arguments: [id]
                ).map { AuditRun.Proposed(taskID: $0["task_id"], action: $0["action"], state: $0["state"]) }
                return AuditRun(
                    id: id, at: row["at"], windowStart: row["window_start"], windowEnd: row["window_end"],
                    headline: row["headline"], worst: row["worst"], findings: findings, proposals: proposals)
            }
        }
    }

    /// Open model-call reservations (calls under way), newest first.
    public func openReservations(now: Int64) throws -> [(
        id: Int64, model: String, reservedUSD: Double, taskID: Int64?, since: Int64
    )] {
        try read("read the reservations") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, model, reserved_usd, task_id, started_at FROM llm_calls INDEXED BY llm_calls_open
                    WHERE state = 'reserved' AND expires_at > ? ORDER BY id DESC LIMIT 100
                    """, arguments: [now]
            ).map {
                (
                    id: $0["id"], model: $0["model"], reservedUSD: $0["reserved_usd"], taskID: $0["task_id"],
                    since: $0["started_at"]
                )
            }
        }
    }
}
