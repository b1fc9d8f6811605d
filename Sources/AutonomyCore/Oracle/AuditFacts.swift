import Foundation
import GRDB

/// What an audit reads from the database, by either engine; what it finds in them
/// (`AutonomyStore.findings`) is the same pure analysis on both.
struct AuditFacts: Sendable {
    /// The window before and the audited one, in one pass over their ledger rows.
    var tally: LedgerTally
    /// Each type's last success, ever.
    var lastSuccess: [String: Int64] = [:]
    /// The error text of each failed attempt's row in the tally, by ledger id (a pruned task's is gone).
    var errors: [Int64: String] = [:]
    /// Pending requests (fix proposals aside) older than `audit.stale_approval`, the oldest first.
    var staleApprovals: [(taskID: Int64, requestedAt: Int64)] = []
    /// Running or verifying tasks whose lease ran out, the oldest lease first.
    var stuckTasks: [(id: Int64, leaseExpiresAt: Int64)] = []
    /// Types the ledger has rows of since the window's start that the map does not declare.
    var undeclaredTypes: [String] = []
    /// The settled model spend of each local day the window touches.
    var spentPerDay: [(day: Int64, spentUSD: Double)] = []
    /// Alerts not delivered yet, per channel.
    var undelivered: [String: Int] = [:]
    /// When the ledger's first row was written (the audit's time if it has none); nil when not read.
    /// A queue younger than the window has no history to call a type unused by.
    var ledgerBegan: Int64?

    /// The local days from the one holding `start` up to `end`: each day's start and the next's.
    static func days(from start: Int64, to end: Int64, in timeZone: TimeZone) -> [(start: Int64, end: Int64)] {
        var days: [(Int64, Int64)] = []
        var day = LocalDay.start(of: start, in: timeZone)
        while day < end {
            let next = LocalDay.start(ofDayAfter: day, in: timeZone)
            days.append((day, next))
            day = next
        }
        return days
    }
}

extension Database {
    /// The facts of an audit over `windows` (the window before, then the audited one).
    func auditFacts(_ configuration: Configuration, windows: [Int64], now: Int64) throws -> AuditFacts {
        let start = windows[1]
        var facts = AuditFacts(tally: try LedgerTally.read(windows, db: self))
        facts.ledgerBegan = try Int64.fetchOne(self, sql: "SELECT at FROM ledger ORDER BY id LIMIT 1") ?? now
        for name in configuration.taskTypes.keys {
            if let at = try lastSuccess(of: name) { facts.lastSuccess[name] = at }
        }
        try readErrors(into: &facts)
        try readStuck(configuration.audit, now: now, into: &facts)
        facts.undeclaredTypes = try undeclaredTypes(configuration, since: start)
        if configuration.gateway.dailyCapUSD > 0 {
            for day in AuditFacts.days(from: start, to: now, in: configuration.timezone) {
                let spent =
                    try Double.fetchOne(
                        self,
                        sql:
                            "SELECT SUM(cost_usd) FROM llm_calls WHERE state = 'settled' AND started_at >= ? AND started_at < ?",
                        arguments: [day.start, day.end]) ?? 0
                facts.spentPerDay.append((day.start, spent))
            }
        }
        for channel in facts.tally.notifyFailed.keys {
            facts.undelivered[channel] =
                try Int.fetchOne(
                    self, sql: "SELECT COUNT(*) FROM notifications WHERE channel = ? AND delivered_at IS NULL",
                    arguments: [channel]) ?? 0
        }
        return facts
    }

    /// The error text of each failed attempt in the tally: only a note that matches the hash its
    /// row holds (one written into the database by hand proposes nothing).
    func readErrors(into facts: inout AuditFacts) throws {
        let note = try cachedStatement(
            sql: """
                SELECT n.text, l.detail ->> '$.error_sha256' FROM ledger_notes n JOIN ledger l ON l.id = n.ledger_id
                WHERE n.ledger_id = ? AND n.field = 'error'
                """)
        for failure in facts.tally.failures {
            // Decoded with `try?`: a value of another type (an edit) is no note, never a trap.
            if let row = try Row.fetchOne(note, arguments: [failure.ledgerID]),
                let text = LedgerChain.heldNote(
                    (try? row.decode(String?.self, atIndex: 0)) ?? nil,
                    chained: (try? row.decode(String?.self, atIndex: 1)) ?? nil)
            {
                facts.errors[failure.ledgerID] = text
            }
        }
    }

    /// Stale approval requests and tasks whose lease ran out, as they stand now.
    func readStuck(_ settings: AuditSettings, now: Int64, into facts: inout AuditFacts) throws {
        facts.staleApprovals = try Row.fetchAll(
            self,
            sql: """
                SELECT a.task_id, a.requested_at FROM approvals a
                WHERE a.state = 'pending' AND a.requested_at <= ? AND a.\(Database.notAProposal)
                ORDER BY a.requested_at
                """, arguments: [now - settings.staleApproval.milliseconds]
        ).map { (try $0.decode(forColumn: "task_id"), try $0.decode(forColumn: "requested_at")) }
        facts.stuckTasks = try Row.fetchAll(
            self,
            sql: """
                SELECT id, lease_expires_at FROM tasks
                WHERE state IN ('running', 'verifying') AND lease_expires_at < ? ORDER BY lease_expires_at
                """, arguments: [now]
        ).map { (try $0.decode(forColumn: "id"), try $0.decode(forColumn: "lease_expires_at")) }
    }

    /// The types the ledger has rows of since `since` that the map does not declare.
    func undeclaredTypes(_ configuration: Configuration, since: Int64) throws -> [String] {
        try typesInLedger().filter { type in
            try configuration.taskType(named: type) == nil && ledgerHasRows(of: type, since: since)
        }
    }
}
