import Foundation
import GRDB

/// What `ledger verify` found.
public struct ChainReport: Sendable, Equatable {
    public var rows: Int
    /// The first row that does not hold, and why; nil when the whole chain holds.
    public var firstBroken: BrokenRow?
    public var lastHash: String

    public struct BrokenRow: Sendable, Equatable {
        public var id: Int64
        public var reason: String
    }
}

/// Which ledger rows to list or export.
public struct LedgerQuery: Sendable {
    public var taskID: Int64?
    public var type: String?
    public var event: String?
    /// Rows at or after this time (epoch ms).
    public var since: Int64?
    public var limit: Int?
    public init(taskID: Int64? = nil, type: String? = nil, event: String? = nil, since: Int64? = nil, limit: Int? = nil)
    {
        self.taskID = taskID
        self.type = type
        self.event = event
        self.since = since
        self.limit = limit
    }

    var sql: (String, StatementArguments) {
        var conditions: [String] = []
        var arguments = StatementArguments()
        if let taskID {
            conditions.append("task_id = ?")
            _ = arguments.append(contentsOf: [taskID])
        }
        if let type {
            conditions.append("type = ?")
            _ = arguments.append(contentsOf: [type])
        }
        if let event {
            conditions.append("event = ?")
            _ = arguments.append(contentsOf: [event])
        }
        if let since {
            conditions.append("at >= ?")
            _ = arguments.append(contentsOf: [since])
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return (filter, arguments)
    }
}

extension AutonomyStore {
    /// Walks the whole ledger and recomputes every hash: an edited row shows as a hash mismatch at
    /// that row, a deleted one as a broken link (or a gap) at the row after it.
    public func verifyLedgerChain() throws -> ChainReport {
        try read("verify the ledger") { db in
            var previous = LedgerChain.genesis
            var expectedID: Int64 = 1
            var rows = 0
            let cursor = try Row.fetchCursor(
                db,
                sql: """
                    SELECT id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, prev_hash, hash
                    FROM ledger ORDER BY id
                    """)
            while let row = try cursor.next() {
                rows += 1
                let id: Int64 = (try? row.decode(atIndex: 0)) ?? expectedID
                func broken(_ reason: String) -> ChainReport {
                    ChainReport(rows: rows, firstBroken: .init(id: id, reason: reason), lastHash: previous)
                }
                // By position: this loop reads every row of the ledger. A field of the wrong type
                // is an edit like any other, found at its row.
                let prevHash: String
                let hash: String
                let recomputed: String
                do {
                    prevHash = try row.decode(atIndex: 9)
                    hash = try row.decode(atIndex: 10)
                    recomputed = LedgerChain.hash(
                        previous: previous, id: try row.decode(atIndex: 0), at: try row.decode(atIndex: 1),
                        taskID: try row.decode(atIndex: 2), type: try row.decode(atIndex: 3),
                        event: try row.decode(atIndex: 4), attempt: try row.decode(atIndex: 5),
                        durationMs: try row.decode(atIndex: 6), costUSD: try row.decode(atIndex: 7),
                        detail: try row.decode(atIndex: 8))
                } catch {
                    return broken("a field holds a value of the wrong type (it was edited)")
                }
                if id != expectedID {
                    return broken("rows \(expectedID)…\(id - 1) are missing (deleted)")
                }
                if prevHash != previous {
                    return broken("it does not chain to the row before it (that row was changed or deleted)")
                }
                if recomputed != hash { return broken("its content does not match its hash (it was edited)") }
                previous = hash
                expectedID = id + 1
            }
            return ChainReport(rows: rows, firstBroken: nil, lastHash: previous)
        }
    }

    /// Ledger rows matching the query, newest first (at most `limit`).
    public func ledgerEntries(_ query: LedgerQuery) throws -> [LedgerEntry] {
        try read("read the ledger") { db in
            let (filter, arguments) = query.sql
            let limit = query.limit.map { " LIMIT \($0)" } ?? ""
            return try LedgerEntry.fetchAll(
                db, sql: "SELECT \(LedgerEntry.selection) FROM ledger\(filter) ORDER BY id DESC\(limit)",
                arguments: arguments)
        }
    }

    /// Streams matching rows, oldest first, to `body` (for exports of any size).
    public func forEachLedgerEntry(_ query: LedgerQuery, _ body: (LedgerEntry) throws -> Void) throws {
        try read("export the ledger") { db in
            let (filter, arguments) = query.sql
            let cursor = try LedgerEntry.fetchCursor(
                db, sql: "SELECT \(LedgerEntry.selection) FROM ledger\(filter) ORDER BY id", arguments: arguments)
            while let entry = try cursor.next() { try body(entry) }
        }
    }

    /// Drops the bulky and free-text fields (payload, result, stderr, last error, and the ledger's
    /// notes about them) of tasks that finished before `cutoff`. Ledger rows are never touched (they
    /// keep each note's length and hash); one row records the pruning itself.
    ///
    /// - Returns: how many tasks were pruned.
    public func prune(finishedBefore cutoff: Int64, by actor: String, now: Int64) throws -> Int {
        try write("prune finished tasks") { db in
            try db.execute(
                sql: """
                    UPDATE tasks SET payload = '', result = NULL, stderr_tail = NULL, last_error = NULL, updated_at = ?
                    WHERE state IN (\(TaskState.sqlList(TaskState.finalStates)))
                      AND finished_at < ? AND payload != ''
                    """, arguments: [now, cutoff])
            let pruned = db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM ledger_notes WHERE task_id IN (
                        SELECT id FROM tasks WHERE payload = '' AND finished_at < ?
                          AND state IN (\(TaskState.sqlList(TaskState.finalStates))))
                    """, arguments: [cutoff])
            if pruned > 0 {
                try db.appendLedger(
                    .pruned, at: now, taskID: nil, type: nil,
                    detail: [
                        "tasks": .int(Int64(pruned)), "finished_before": .string(Timestamp.format(cutoff)),
                        "by": .string(actor),
                    ])
            }
            return pruned
        }
    }
}

extension LedgerEntry {
    /// One CSV line (RFC 4180 quoting), in `csvHeader`'s column order.
    public var csvLine: String {
        func field(_ text: String?) -> String {
            guard let text else { return "" }
            if text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
                return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            }
            return text
        }
        var fields: [String] = [String(id), Timestamp.format(at)]
        fields.append(taskID.map { String($0) } ?? "")
        fields.append(field(type))
        fields.append(field(event))
        fields.append(attempt.map { String($0) } ?? "")
        fields.append(durationMs.map { String($0) } ?? "")
        fields.append(costUSD.map { String($0) } ?? "")
        fields.append(field(detail?.canonicalText))
        return fields.joined(separator: ",")
    }

    public static let csvHeader = "id,at,task_id,type,event,attempt,duration_ms,cost_usd,detail"
}
