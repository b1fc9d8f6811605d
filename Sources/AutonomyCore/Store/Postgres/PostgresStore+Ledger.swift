import Foundation
import PostgresNIO

extension PostgresTransaction {
    /// Appends a ledger row chained to the newest one, as `Database.appendLedger` does on SQLite
    /// (the same hash, the same notes). The caller's transaction holds the ledger's advisory lock
    /// (`PostgresStore.write`), so the newest row cannot change under it.
    @discardableResult
    nonisolated(nonsending) func appendLedger(
        _ event: LedgerEvent, taskID: Int64?, type: String?, attempt: Int? = nil, durationMs: Int64? = nil,
        costUSD: Double? = nil, detail: JSONValue? = nil, notes: [String: String?] = [:]
    ) async throws -> Int64 {
        let (detail, kept) = LedgerChain.fingerprinting(notes, into: detail)
        let (lastID, lastHash) = try await newestLedgerRow()
        let id = lastID + 1
        let detailText = detail?.canonicalText
        let hash = LedgerChain.hash(
            previous: lastHash, id: id, at: now, taskID: taskID, type: type, event: event.rawValue, attempt: attempt,
            durationMs: durationMs, costUSD: costUSD, detail: detailText)
        try await query(
            """
            INSERT INTO ledger (id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, prev_hash, hash)
            VALUES (\(id), \(now), \(taskID), \(type), \(event.rawValue), \(attempt), \(durationMs), \(costUSD),
                    \(detailText), \(lastHash), \(hash))
            """)
        ledgerTail = (id, hash)
        for (field, text) in kept {
            try await query(
                "INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (\(id), \(field), \(taskID), \(text))"
            )
        }
        return id
    }

    /// Appends many rows of one event at once, each about a task and with its detail, chained in
    /// order (one statement: the batch enqueue's ledger). No notes.
    nonisolated(nonsending) func appendLedger(
        _ event: LedgerEvent, rows: [(taskID: Int64, type: String, detail: String)]
    ) async throws {
        guard !rows.isEmpty else { return }
        var (lastID, lastHash) = try await newestLedgerRow()
        var ids: [Int64] = []
        var hashes: [String] = []
        var previous: [String] = []
        ids.reserveCapacity(rows.count)
        hashes.reserveCapacity(rows.count)
        previous.reserveCapacity(rows.count)
        for row in rows {
            lastID += 1
            let hash = LedgerChain.hash(
                previous: lastHash, id: lastID, at: now, taskID: row.taskID, type: row.type, event: event.rawValue,
                attempt: nil, durationMs: nil, costUSD: nil, detail: row.detail)
            ids.append(lastID)
            previous.append(lastHash)
            hashes.append(hash)
            lastHash = hash
        }
        try await query(
            """
            INSERT INTO ledger (id, at, task_id, type, event, detail, prev_hash, hash)
            SELECT r.id, \(now), r.task_id, r.type, \(event.rawValue), r.detail, r.prev_hash, r.hash
            FROM unnest(\(ids)::bigint[], \(rows.map(\.taskID))::bigint[], \(rows.map(\.type))::text[],
                        \(rows.map(\.detail))::text[], \(previous)::text[], \(hashes)::text[])
                 AS r(id, task_id, type, detail, prev_hash, hash)
            """)
        ledgerTail = (lastID, lastHash)
    }

    private nonisolated(nonsending) func newestLedgerRow() async throws -> (Int64, String) {
        if let ledgerTail { return ledgerTail }
        for try await row in try await query("SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1").decode(
            (Int64, String).self)
        {
            return row
        }
        return (0, LedgerChain.genesis)
    }
}

extension PostgresStore {
    /// Walks the whole ledger and recomputes every hash, as `AutonomyStore.verifyLedgerChain`
    /// does: an edited row shows as a mismatch at that row, a deleted one as a gap.
    public func verifyLedgerChain() async throws -> ChainReport {
        try await read("verify the ledger") { transaction in
            try await Self.verifyNotes(transaction, Self.verifyChain(transaction))
        }
    }

    /// Once the chain holds: every note against the SHA-256 its row carries, as on SQLite.
    nonisolated(nonsending) static func verifyNotes(_ transaction: PostgresTransaction, _ chain: ChainReport)
        async throws -> ChainReport
    {
        guard chain.firstBroken == nil else { return chain }
        let sequence = try await transaction.query(
            """
            SELECT n.ledger_id, n.field, n.text, l.id IS NOT NULL,
                   CASE WHEN l.detail IS NOT NULL THEN l.detail::jsonb ->> (n.field || '_sha256') END
            FROM ledger_notes n LEFT JOIN ledger l ON l.id = n.ledger_id
            ORDER BY n.ledger_id, n.field
            """)
        for try await (id, field, text, exists, chained) in sequence.decode(
            (Int64, String, String?, Bool, String?).self)
        {
            if let reason = LedgerChain.brokenNote(
                field: field, text: text ?? "", chained: chained, rowExists: exists)
            {
                var report = chain
                report.firstBroken = .init(id: id, reason: reason)
                return report
            }
        }
        return chain
    }

    /// The same walk, inside a transaction under way (`export` checks its copy before committing).
    /// With `start`, from the row after it (whose hash it gives), as `doctor` checks the newest rows.
    nonisolated(nonsending) static func verifyChain(
        _ transaction: PostgresTransaction, after start: (id: Int64, hash: String)? = nil
    ) async throws -> ChainReport {
        var previous = start?.hash ?? LedgerChain.genesis
        var expectedID: Int64 = (start?.id ?? 0) + 1
        var rows = 0
        func report(_ broken: ChainReport.BrokenRow?) -> ChainReport {
            ChainReport(rows: rows, firstBroken: broken, lastHash: previous)
        }
        let sequence = try await transaction.query(
            """
            SELECT id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail, prev_hash, hash
            FROM ledger WHERE id > \(start?.id ?? 0) ORDER BY id
            """)
        for try await row in sequence.decode(
            (Int64, Int64, Int64?, String?, String, Int?, Int64?, Double?, String?, String, String).self)
        {
            let (id, at, task, type, event, attempt, duration, cost, detail, prevHash, hash) = row
            rows += 1
            if id != expectedID {
                return report(.init(id: id, reason: "rows \(expectedID)…\(id - 1) are missing (deleted)"))
            }
            guard prevHash == previous else {
                return report(
                    .init(id: id, reason: "it does not chain to the row before it (that row was changed or deleted)"))
            }
            let recomputed = LedgerChain.hash(
                previous: previous, id: id, at: at, taskID: task, type: type, event: event, attempt: attempt,
                durationMs: duration, costUSD: cost, detail: detail)
            guard recomputed == hash else {
                return report(.init(id: id, reason: "its content does not match its hash (it was edited)"))
            }
            previous = hash
            expectedID = id + 1
        }
        return report(nil)
    }

    /// The newest ledger row's id and hash; nil for an empty ledger.
    public func ledgerHead() async throws -> LedgerAnchor? {
        try await read("read the ledger's head") { transaction in
            for try await (id, hash) in try await transaction.query(
                "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1"
            ).decode((Int64, String).self) {
                return LedgerAnchor(id: id, hash: hash)
            }
            return nil
        }
    }

    /// Checks each anchor against the ledger: the row must exist and carry that hash.
    public func checkAnchors(_ anchors: [LedgerAnchor]) async throws -> AnchorReport {
        try await read("check the ledger against anchors") { transaction in
            var found: [Int64: String] = [:]
            for try await (id, hash) in try await transaction.query(
                "SELECT id, hash FROM ledger WHERE id = ANY(\(anchors.map(\.id)))"
            ).decode((Int64, String).self) {
                found[id] = hash
            }
            return AnchorReport(anchors, found: found)
        }
    }

    /// A task's ledger rows, oldest first; each claim and outcome names its host in its detail.
    public func ledger(forTask taskID: Int64) async throws -> [LedgerEntry] {
        var entries: [LedgerEntry] = []
        try await forEach(LedgerQuery(taskID: taskID), newestFirst: false) { entries.append($0) }
        return entries
    }

    /// Ledger rows matching the query (`AutonomyStore.ledgerEntries`): newest first, at most `limit`.
    public func ledgerEntries(_ query: LedgerQuery) async throws -> [LedgerEntry] {
        var entries: [LedgerEntry] = []
        try await forEach(query, newestFirst: true) { entries.append($0) }
        return entries
    }

    /// Streams matching rows, oldest first, to `body` (`ledger export` of any size).
    public func forEachLedgerEntry(_ query: LedgerQuery, _ body: @Sendable (LedgerEntry) throws -> Void)
        async throws
    {
        try await forEach(query, newestFirst: false, body)
    }

    private func forEach(_ query: LedgerQuery, newestFirst: Bool, _ body: (LedgerEntry) throws -> Void)
        async throws
    {
        try await read("read the ledger") { transaction in
            let order = newestFirst ? "DESC" : "ASC"
            let rows = try await transaction.query(
                """
                SELECT id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail,
                       (SELECT json_object_agg(field, text)::text FROM ledger_notes WHERE ledger_id = ledger.id)
                FROM ledger
                WHERE (\(query.taskID)::bigint IS NULL OR task_id = \(query.taskID))
                  AND (\(query.type)::text IS NULL OR type = \(query.type))
                  AND (\(query.event)::text IS NULL OR event = \(query.event))
                  AND (\(query.since)::bigint IS NULL OR at >= \(query.since))
                  AND (\(query.before)::bigint IS NULL OR id < \(query.before))
                ORDER BY id \(unescaped: order) LIMIT \(query.limit.map(Int64.init))
                """)
            for try await row in rows.decode(
                (Int64, Int64, Int64?, String?, String, Int?, Int64?, Double?, String?, String?).self)
            {
                // The notes' text (a handler's error, a verifier's evidence) back in its place.
                try body(
                    LedgerEntry(
                        id: row.0, at: row.1, taskID: row.2, type: row.3, event: row.4, attempt: row.5,
                        durationMs: row.6, costUSD: row.7, detail: LedgerEntry.detail(row.8, notes: row.9)))
            }
        }
    }
}
