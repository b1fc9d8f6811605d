import Foundation
import GRDB
import GRDBSQLite
import Synchronization

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
    /// Rows before this one (a page's cursor: newest first, the next page starts below its last).
    public var before: Int64?
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
        if let before {
            conditions.append("id < ?")
            _ = arguments.append(contentsOf: [before])
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return (filter, arguments)
    }
}

extension AutonomyStore {
    /// Walks the whole ledger and recomputes every hash: an edited row shows as a hash mismatch at
    /// that row, a deleted one as a broken link (or a gap) at the row after it.
    ///
    /// A long ledger is checked in two halves at once, on two connections (two cores): the second
    /// half starts from the hash the first half's last row stores, which the first half recomputes.
    /// Rows never change once written, so both see the same rows up to the last one counted.
    ///
    /// It reads on connections of its own, so a caller may go on reading the store meanwhile.
    public func verifyLedgerChain(splittingAbove threshold: Int64 = 200_000) throws -> ChainReport {
        let path = self.path
        @Sendable func connection() throws -> DatabaseQueue {
            var configuration = GRDB.Configuration()
            configuration.readonly = true
            return try DatabaseQueue(path: path, configuration: configuration)
        }
        do {
            let reader = try connection()
            let split = try reader.read { db -> (id: Int64, hash: String, last: Int64)? in
                // One seek each (MIN and MAX side by side in one SELECT scan the ledger).
                guard
                    let bounds = try Row.fetchOne(
                        db, sql: "SELECT (SELECT MIN(id) FROM ledger), (SELECT MAX(id) FROM ledger)"),
                    // Ids start at 1; a ledger edited to hold others is checked in one pass.
                    let first = bounds[0] as Int64?, let last = bounds[1] as Int64?, first >= 1,
                    last - first >= threshold
                else { return nil }
                return try Row.fetchOne(
                    db, sql: "SELECT id, hash FROM ledger WHERE id >= ? ORDER BY id LIMIT 1",
                    arguments: [first + (last - first) / 2]
                ).map { (id: $0[0], hash: ($0[1] as String?) ?? "", last: last) }
            }
            guard let split else {
                return try reader.read { db in
                    try Self.verifyNotes(db, Self.verifyChain(db, after: nil, through: .max))
                }
            }
            let secondHalf = inBackground {
                try connection().read { db in
                    try Self.verifyChain(db, after: (split.id, split.hash), through: split.last)
                }
            }
            let firstHalf = try reader.read { db in try Self.verifyChain(db, after: nil, through: split.id) }
            let second = try secondHalf()
            guard firstHalf.firstBroken == nil else { return firstHalf }
            let whole = ChainReport(
                rows: firstHalf.rows + second.rows, firstBroken: second.firstBroken, lastHash: second.lastHash)
            return try reader.read { db in try Self.verifyNotes(db, whole) }
        } catch {
            throw StoreError.wrap(error, path: path, operation: "verify the ledger")
        }
    }

    /// Once the chain holds: every note kept beside it (`ledger_notes`) against the SHA-256 its row
    /// carries, so an edited, added or moved note is found as an edited row is.
    static func verifyNotes(_ db: Database, _ chain: ChainReport) throws -> ChainReport {
        guard chain.firstBroken == nil else { return chain }
        // Only a field name of letters and `_` makes a JSON path; any other is a note never written.
        let cursor = try Row.fetchCursor(
            db,
            sql: """
                SELECT n.ledger_id, n.field, n.text, l.id IS NOT NULL,
                       CASE WHEN typeof(n.field) = 'text' AND n.field <> '' AND n.field NOT GLOB '*[^a-z_]*'
                            AND json_valid(l.detail)
                            THEN json_extract(l.detail, '$.' || n.field || '_sha256') END,
                       typeof(n.ledger_id) = 'integer' AND typeof(n.field) = 'text' AND typeof(n.text) = 'text'
                FROM ledger_notes n LEFT JOIN ledger l ON l.id = n.ledger_id
                ORDER BY n.ledger_id, n.field
                """)
        func broken(_ id: Int64, _ reason: String) -> ChainReport {
            var report = chain
            report.firstBroken = .init(id: id, reason: reason)
            return report
        }
        while let row = try cursor.next() {
            // A value of another type than autonomy writes is an edit, reported, never a trap.
            guard try row.decode(Bool.self, atIndex: 5) else {
                let id = (try? row.decode(Int64?.self, atIndex: 0)).flatMap { $0 } ?? 0
                return broken(id, "a note beside it holds a value of the wrong type (it was edited or added)")
            }
            let (id, field, text) = (
                try row.decode(Int64.self, atIndex: 0), try row.decode(String.self, atIndex: 1),
                try row.decode(String.self, atIndex: 2)
            )
            if let reason = LedgerChain.brokenNote(
                field: field, text: text, chained: try? row.decode(String?.self, atIndex: 4),
                rowExists: try row.decode(Bool.self, atIndex: 3))
            {
                return broken(id, reason)
            }
        }
        return chain
    }

    /// Checks the rows after `start` (the genesis when nil) up to `last`, each against the one before.
    /// Columns are read through the SQLite C API, as the bytes SQLite holds: this loop runs for every
    /// row of the ledger, and strings or `Data` per field cost more than the hashing.
    static func verifyChain(_ db: Database, after start: (id: Int64, hash: String)?, through last: Int64) throws
        -> ChainReport
    {
        var previous = Array((start?.hash ?? LedgerChain.genesis).utf8)
        var expectedID: Int64 = (start?.id ?? 0) + 1
        var rows = 0
        var input = LedgerChain.Input()
        let statement = try db.makeStatement(
            sql: """
                SELECT id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, prev_hash, hash
                FROM ledger WHERE id > ? AND id <= ? ORDER BY id
                """)
        let cursor = try Row.fetchCursor(statement, arguments: [start?.id ?? Int64.min, last])
        let raw = statement.sqliteStatement
        func report(broken: (id: Int64, reason: String)?) -> ChainReport {
            ChainReport(
                rows: rows, firstBroken: broken.map { .init(id: $0.id, reason: $0.reason) },
                lastHash: String(decoding: previous, as: UTF8.self))
        }
        // A column of the wrong storage class is an edit like any other, found at its row.
        func integer(_ index: Int32) -> Int64?? {
            switch sqlite3_column_type(raw, index) {
            case SQLITE_NULL: return .some(nil)
            case SQLITE_INTEGER: return sqlite3_column_int64(raw, index)
            default: return nil
            }
        }
        func text(_ index: Int32) -> UnsafeRawBufferPointer?? {
            switch sqlite3_column_type(raw, index) {
            case SQLITE_NULL: return .some(nil)
            case SQLITE_TEXT:
                let pointer = sqlite3_column_text(raw, index)
                return UnsafeRawBufferPointer(start: pointer, count: Int(sqlite3_column_bytes(raw, index)))
            default: return nil
            }
        }
        var recomputed = [UInt8](repeating: 0, count: 64)
        func same(_ stored: UnsafeRawBufferPointer, _ hex: [UInt8]) -> Bool {
            stored.count == hex.count
                && hex.withUnsafeBytes { memcmp($0.baseAddress!, stored.baseAddress!, $0.count) == 0 }
        }
        while try cursor.next() != nil {
            rows += 1
            let id = sqlite3_column_int64(raw, 0)
            let costType = sqlite3_column_type(raw, 7)
            guard sqlite3_column_type(raw, 0) == SQLITE_INTEGER, let at = integer(1), let at, let task = integer(2),
                let type = text(3), let event = text(4), let event, let attempt = integer(5),
                let duration = integer(6),
                costType == SQLITE_NULL || costType == SQLITE_FLOAT || costType == SQLITE_INTEGER,
                let detail = text(8), let prevHash = text(9), let prevHash, let hash = text(10), let hash
            else {
                return report(broken: (id, "a field holds a value of the wrong type (it was edited)"))
            }
            input.start(previous: previous)
            input.integer(id)
            input.integer(at)
            input.integer(task)
            input.text(raw: type)
            input.text(raw: event)
            input.integer(attempt)
            input.integer(duration)
            input.real(costType == SQLITE_NULL ? nil : sqlite3_column_double(raw, 7))
            input.text(raw: detail)
            input.digestHex(into: &recomputed)
            if id != expectedID { return report(broken: (id, "rows \(expectedID)…\(id - 1) are missing (deleted)")) }
            guard same(prevHash, previous) else {
                return report(broken: (id, "it does not chain to the row before it (that row was changed or deleted)"))
            }
            guard same(hash, recomputed) else {
                return report(broken: (id, "its content does not match its hash (it was edited)"))
            }
            swap(&previous, &recomputed)
            expectedID = id + 1
        }
        return report(broken: nil)
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
