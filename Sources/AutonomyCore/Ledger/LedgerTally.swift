import Foundation
import GRDB
import GRDBSQLite

/// What one pass over the ledger saw of one type in one window.
struct TypeTally {
    var runs = 0
    var done = 0
    var dead = 0
    var checks = 0
    /// Checks that did not pass (failed, broken or inconclusive).
    var failedChecks = 0
    var costUSD = 0.0
    /// Handler durations of the window's attempts, unsorted.
    var durations: [Int64] = []
    var leaseExpired = 0
    var inconclusive = 0
    /// The last task of each, to point at.
    var lastLeaseExpiredTask: Int64?
    var lastInconclusiveTask: Int64?
    /// Per verifier kind: its checks, how many passed, and the last task it checked.
    var verifiers: [String: (checks: Int, passes: Int, lastTask: Int64?)] = [:]
    /// Attempts run per host (PostgreSQL, where each `executed` row names its host).
    var hosts: [String: Int] = [:]
}

/// A failed attempt's row (`dead` or `retry_scheduled`), whose error text is in `ledger_notes`.
struct FailureRow {
    var ledgerID: Int64
    var at: Int64
    var type: String
    var taskID: Int64?
    var dead: Bool
}

/// The ledger read once, in consecutive windows: the map's and the audit's figures for every type
/// at once. A single sequential pass over the rows of the windows costs less than the several
/// index walks per type it replaces, and it does not grow with the number of types.
struct LedgerTally {
    /// Per window, in order: the figures of every type seen in it.
    var windows: [[String: TypeTally]]
    /// Failed attempts in every window, in ledger order.
    var failures: [FailureRow] = []
    /// In the last window: tasks deferred by the budget (to a later time), and alerts that failed
    /// per channel.
    var deferred = 0
    var notifyFailed: [String: Int] = [:]

    /// One ledger row as the tally reads it.
    struct Seen {
        var id: Int64
        var at: Int64
        var type: String?
        var event: String
        var task: Int64?
        var duration: Int64?
        var cost: Double?
        /// A check's outcome; nil for other events.
        var outcome: String?
        /// A check's verifier, or a failed alert's channel.
        var label: String?
        /// The host an `executed` row names (PostgreSQL only).
        var host: String? = nil
    }

    /// Reads the rows with `bounds[0] <= at < bounds.last`, split at each inner bound. Columns are
    /// read through the SQLite C API: this loop runs for every row of the windows.
    /// `margin` is how far a clock set back may be trusted to have gone (see `firstLedgerID`).
    static func read(_ bounds: [Int64], db: Database, margin: Interval = .days(1)) throws -> LedgerTally {
        precondition(bounds.count >= 2, "a tally needs at least one window")
        var tally = LedgerTally(windows: Array(repeating: [:], count: bounds.count - 1))
        let statement = try db.cachedStatement(
            sql: """
                SELECT id, at, type, event, task_id, duration_ms, cost_usd,
                  CASE event WHEN 'verified' THEN detail ->> 'outcome' END,
                  CASE event WHEN 'verified' THEN detail ->> 'verifier' WHEN 'notify_failed' THEN detail ->> 'channel'
                             WHEN 'deferred' THEN detail ->> 'until' END
                FROM ledger NOT INDEXED WHERE id >= ? AND at >= ? AND at < ?
                  AND (event IN ('executed', 'done', 'dead', 'retry_scheduled', 'verified', 'lease_expired', 'deferred',
                                 'notify_failed') OR cost_usd IS NOT NULL)
                """)
        let from = try db.firstLedgerID(near: bounds[0], margin: margin)
        let cursor = try Row.fetchCursor(statement, arguments: [from, bounds[0], bounds[bounds.count - 1]])
        let raw = statement.sqliteStatement
        func integer(_ index: Int32) -> Int64? {
            sqlite3_column_type(raw, index) == SQLITE_NULL ? nil : sqlite3_column_int64(raw, index)
        }
        func text(_ index: Int32) -> String? {
            guard let pointer = sqlite3_column_text(raw, index) else { return nil }
            return String(
                decoding: UnsafeRawBufferPointer(start: pointer, count: Int(sqlite3_column_bytes(raw, index))),
                as: UTF8.self)
        }
        while try cursor.next() != nil {
            let row = Seen(
                id: sqlite3_column_int64(raw, 0), at: sqlite3_column_int64(raw, 1), type: text(2), event: text(3) ?? "",
                task: integer(4), duration: integer(5),
                cost: sqlite3_column_type(raw, 6) == SQLITE_NULL ? nil : sqlite3_column_double(raw, 6),
                outcome: text(7), label: text(8))
            tally.add(row, bounds: bounds)
        }
        return tally
    }

    /// Counts one row of `bounds[0] <= at < bounds.last` (in ledger order) into its window.
    mutating func add(_ row: Seen, bounds: [Int64]) {
        let last = bounds.count - 2
        var window = 0
        while window < last, row.at >= bounds[window + 1] { window += 1 }
        // An alert's failure, whether or not it was about a task of some type.
        if window == last, row.event == LedgerEvent.notifyFailed.rawValue {
            notifyFailed[row.label ?? "?", default: 0] += 1
        }
        guard let type = row.type else { return }
        // In place: a copy of a type's tally would copy its durations on every row.
        Self.count(row, into: &windows[window][type, default: TypeTally()])
        switch row.event {
        case LedgerEvent.dead.rawValue, LedgerEvent.retryScheduled.rawValue:
            failures.append(
                FailureRow(
                    ledgerID: row.id, at: row.at, type: type, taskID: row.task,
                    dead: row.event == LedgerEvent.dead.rawValue))
        case LedgerEvent.deferred.rawValue where window == last:
            // The budget's, which wait for a later day; not a task given back for now (the worker
            // was stopped, or could not write its payload file).
            if let until = row.label.flatMap(Timestamp.parse), until > row.at { deferred += 1 }
        default:
            break
        }
    }

    private static func count(_ row: Seen, into figures: inout TypeTally) {
        if let cost = row.cost { figures.costUSD += cost }
        switch row.event {
        case LedgerEvent.executed.rawValue:
            figures.runs += 1
            if let duration = row.duration { figures.durations.append(duration) }
            if let host = row.host { figures.hosts[host, default: 0] += 1 }
        case LedgerEvent.done.rawValue:
            figures.done += 1
        case LedgerEvent.dead.rawValue:
            figures.dead += 1
        case LedgerEvent.verified.rawValue:
            figures.checks += 1
            if row.outcome != CheckOutcome.pass.rawValue { figures.failedChecks += 1 }
            if row.outcome == CheckOutcome.inconclusive.rawValue {
                figures.inconclusive += 1
                figures.lastInconclusiveTask = row.task ?? figures.lastInconclusiveTask
            }
            let verifier = row.label ?? "?"
            var seen = figures.verifiers[verifier] ?? (0, 0, nil)
            seen.checks += 1
            if row.outcome == CheckOutcome.pass.rawValue { seen.passes += 1 }
            seen.lastTask = row.task ?? seen.lastTask
            figures.verifiers[verifier] = seen
        case LedgerEvent.leaseExpired.rawValue:
            figures.leaseExpired += 1
            figures.lastLeaseExpiredTask = row.task ?? figures.lastLeaseExpiredTask
        default:
            break
        }
    }
}

extension TypeStats {
    /// A declared type's figures from its tally; `lastSuccess` is its last ever.
    init(_ type: TaskType, _ tally: TypeTally?, lastSuccess: Int64?, since: Int64) {
        let tally = tally ?? TypeTally()
        let durations = tally.durations.sorted()
        func percentile(_ fraction: Double) -> Int64? {
            guard !durations.isEmpty else { return nil }
            let rank = Int((fraction * Double(durations.count)).rounded(.up)) - 1
            return durations[min(max(rank, 0), durations.count - 1)]
        }
        let finished = tally.done + tally.dead
        self.init(
            name: type.name, owner: type.owner, safety: type.safety, hasVerifiers: !type.verify.isEmpty,
            runs: tally.runs, done: tally.done, dead: tally.dead,
            successRate: finished > 0 ? Double(tally.done) / Double(finished) : nil,
            medianMs: percentile(0.5), p95Ms: percentile(0.95), costUSD: tally.costUSD, lastSuccess: lastSuccess,
            everSucceeded: lastSuccess != nil, verificationFailures: tally.failedChecks, checks: tally.checks,
            hosts: tally.hosts)
        lastSuccessInWindow = (lastSuccess ?? Int64.min) >= since
    }
}

extension Database {
    /// When a type last succeeded, ever: one seek in the (type, event, at) index.
    func lastSuccess(of type: String) throws -> Int64? {
        try Int64.fetchOne(
            cachedStatement(sql: "SELECT MAX(at) FROM ledger WHERE type = ? AND event = 'done'"), arguments: [type])
    }
}

extension Database {
    /// Every type the ledger names, ever. The (type, event, at) index makes each next distinct type
    /// one seek.
    func typesInLedger() throws -> [String] {
        var seen: [String] = []
        var next = try String.fetchOne(self, sql: "SELECT MIN(type) FROM ledger WHERE type IS NOT NULL")
        while let type = next {
            seen.append(type)
            next = try String.fetchOne(
                cachedStatement(sql: "SELECT MIN(type) FROM ledger WHERE type > ?"), arguments: [type])
        }
        return seen
    }

    /// Whether the ledger has a row of `type` at or after `since`.
    func ledgerHasRows(of type: String, since: Int64) throws -> Bool {
        try Bool.fetchOne(
            cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM ledger WHERE type = ? AND at >= ?)"),
            arguments: [type, since]) ?? false
    }
}

extension Database {
    /// Where a pass over the rows at or after `time` may start: rows are appended as time goes, so
    /// the first row at or after `margin` (a day) before `time` is found by halving the id range
    /// (each step one seek by id), and the pass reads from there with `at` as its filter. The
    /// margin covers a clock set back (NTP, a host's drift); a clock set back by more than that can
    /// hide rows from a window that starts before the step.
    func firstLedgerID(near time: Int64, margin: Interval = .days(1)) throws -> Int64 {
        let (target, overflow) = time.subtractingReportingOverflow(margin.milliseconds)
        guard !overflow,
            // Two subqueries: SQLite answers MIN and MAX with one seek each only when each is alone
            // in its SELECT; together they scan the whole ledger.
            let bounds = try Row.fetchOne(
                self, sql: "SELECT (SELECT MIN(id) FROM ledger), (SELECT MAX(id) FROM ledger)"),
            var low = bounds[0] as Int64?, var high = bounds[1] as Int64?, low >= 1
        else { return .min }
        let probe = try cachedStatement(sql: "SELECT id, at FROM ledger WHERE id >= ? ORDER BY id LIMIT 1")
        while low < high {
            let middle = low + (high - low) / 2
            guard let row = try Row.fetchOne(probe, arguments: [middle]) else { break }
            let (id, at): (Int64, Int64) = (row[0], row[1])
            if at < target { low = id + 1 } else { high = middle }
        }
        return low
    }
}
