import Foundation
import GRDB
import PostgresNIO

/// What `export --to postgres://…` copied.
public struct ExportReport: Sendable {
    /// Rows copied, per table, in the order they were copied.
    public var tables: [(name: String, rows: Int)]
    /// The PostgreSQL ledger, checked after the copy: the same rows and the same last hash.
    public var chain: ChainReport
    /// Tables with rows that stay behind (credentials, issued again on PostgreSQL).
    public var leftBehind: [(name: String, rows: Int)]
}

/// A copy that cannot be made, with what to do about it.
public struct ExportError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension PostgresStore {
    /// The tables `export` copies, in an order that keeps references valid, with their columns.
    static let exportedTables: [(name: String, columns: [String], identity: Bool)] = [
        ("tasks", TaskRecord.columns.components(separatedBy: ", "), true),
        (
            "ledger",
            [
                "id", "at", "task_id", "type", "event", "attempt", "duration_ms", "cost_usd", "detail", "prev_hash",
                "hash",
            ],
            false
        ),
        ("ledger_notes", ["ledger_id", "field", "task_id", "text"], false),
        (
            "approvals",
            [
                "id", "task_id", "payload_sha256", "state", "reason", "requested_at", "expires_at", "decided_at",
                "decided_by", "decision_note", "channel", "used_at", "statement", "signature", "signer_key",
            ], true
        ),
        ("approval_tokens", ["token_sha256", "approval_id", "issued_at", "issued_via"], false),
        (
            "notifications",
            [
                "id", "event", "channel", "task_id", "approval_id", "created_at", "attempts", "next_attempt_at",
                "delivered_at", "last_error",
            ], true
        ),
        (
            "llm_calls",
            [
                "id", "task_id", "model", "tier", "state", "reserved_usd", "cost_usd", "input_tokens", "output_tokens",
                "latency_ms", "outcome", "started_at", "expires_at", "finished_at",
            ], true
        ),
        (
            "audit_runs",
            ["id", "at", "window_start", "window_end", "headline", "worst", "explanation", "source"], true
        ),
        ("findings", ["id", "run_id", "kind", "severity", "subject", "title", "evidence"], true),
        ("proposals", ["task_id", "key", "action", "run_id", "finding_id"], false),
        (
            "overrides",
            [
                "id", "kind", "type", "value", "reason", "task_id", "created_at", "expires_at", "removed_at",
                "removed_by",
            ],
            true
        ),
        (
            "heal_actions",
            ["task_id", "key", "target", "action", "automatic", "applied_at", "outcome", "judged_at", "reason"], false
        ),
        ("heal_breakers", ["id", "target", "opened_at", "closes_at", "reason", "closed_at", "closed_by"], true),
        ("heal_stops", ["id", "started_at", "reason", "ended_at"], true),
    ]

    /// The primary key of each copied table without an `id`.
    static let primaryKeys = [
        "ledger_notes": ["ledger_id", "field"], "approval_tokens": ["token_sha256"], "proposals": ["task_id"],
        "heal_actions": ["task_id"],
    ]

    /// The SQLite tables `export` leaves behind: credentials, which are issued again rather than
    /// copied.
    static let keptInSQLite = ["producer_tokens", "operator_sessions"]

    /// Copies an SQLite queue into this (empty) database in one transaction: tasks, their ledger
    /// (ids, hashes and all, so the chain holds as it did), notes, approvals with their tokens,
    /// alerts, the model calls behind the budget, the audits' history, fix proposals, overrides
    /// and heal's state (its actions, breakers and stops). Refused, with nothing written, when this
    /// database already holds tasks or ledger rows, when a task is running on SQLite, or when the
    /// SQLite queue changes while it is copied.
    public func importing(from source: AutonomyStore, now: Int64) async throws -> ExportReport {
        let (before, running, counts, leftBehind, version) = try source.read("prepare the export") { db in
            let head = try Row.fetchOne(db, sql: "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1").map {
                LedgerAnchor(id: $0[0], hash: $0[1])
            }
            let running = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM tasks WHERE state IN ('running', 'verifying')")
            var counts: [String: Int] = [:]
            for table in Self.exportedTables {
                counts[table.name] = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table.name)") ?? 0
            }
            var leftBehind: [(String, Int)] = []
            for table in Self.keptInSQLite where try db.tableExists(table) {
                let rows = try Int.fetchOne(db, sql: "SELECT count(*) FROM \(table)") ?? 0
                if rows > 0 { leftBehind.append((table, rows)) }
            }
            let version = try Int.fetchOne(db, sql: "PRAGMA data_version")
            return (head, running ?? 0, counts, leftBehind, version)
        }
        if running > 0 {
            throw ExportError(
                description:
                    "\(running) task(s) are running on the SQLite queue: stop the worker (systemctl stop autonomy-worker.timer) and let them end, then export"
            )
        }
        // Any commit by another process changes SQLite's data_version (read above, with the
        // counts): the copy is of one moment.
        var copied: [(name: String, rows: Int)] = []
        let chain = try await write("export into PostgreSQL") { transaction in
            for table in ["tasks", "ledger"] {
                for try await count in try await transaction.query(
                    PostgresQuery(unsafeSQL: "SELECT count(*)::bigint FROM \(table)")
                ).decode(Int.self) where count > 0 {
                    throw ExportError(
                        description:
                            "\(self.url) already holds \(table) rows: export only into a new, empty database (nothing was written)"
                    )
                }
            }
            for table in Self.exportedTables {
                let rows = try await self.copy(table.name, columns: table.columns, from: source, transaction)
                copied.append((table.name, rows))
                if table.identity {
                    try await transaction.query(
                        PostgresQuery(
                            unsafeSQL: """
                                SELECT setval(pg_get_serial_sequence('\(table.name)', 'id'),
                                              coalesce((SELECT max(id) FROM \(table.name)), 0) + 1, false)
                                """))
                }
            }
            let after = try source.read("read the data version") { db in
                (
                    try Int.fetchOne(db, sql: "PRAGMA data_version"),
                    try Row.fetchOne(db, sql: "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1").map {
                        LedgerAnchor(id: $0[0], hash: $0[1])
                    }
                )
            }
            guard after.0 == version, after.1 == before, copied.allSatisfy({ counts[$0.name] == $0.rows }) else {
                throw ExportError(
                    description:
                        "the SQLite queue changed during the export: stop its producers and timers, then export again (nothing was written)"
                )
            }
            // The copy's chain is checked before it is committed: a failed check writes nothing.
            let chain = try await Self.verifyChain(transaction)
            guard chain.firstBroken == nil, chain.lastHash == (before?.hash ?? LedgerChain.genesis) else {
                throw ExportError(
                    description:
                        "the copied ledger does not verify (\(chain.firstBroken?.reason ?? "its last hash differs")); check the SQLite ledger with 'autonomy ledger verify' (nothing was written)"
                )
            }
            return chain
        }
        return ExportReport(tables: copied, chain: chain, leftBehind: leftBehind)
    }

    /// Copies one table in batches of rows, each value bound as SQLite holds it.
    private func copy(
        _ table: String, columns: [String], from source: AutonomyStore, _ transaction: PostgresTransaction
    ) async throws -> Int {
        let perBatch = min(1_000, Int(UInt16.max) / columns.count)
        // Each batch starts after the last one's key (the table's primary key, in its order).
        let key = Self.primaryKeys[table] ?? ["id"]
        var after: [DatabaseValue]?
        var copied = 0
        while true {
            let batch = try source.read("read \(table) for the export") { db in
                let tuple = "(" + key.joined(separator: ", ") + ")"
                let condition =
                    after == nil ? "" : "WHERE \(tuple) > (" + key.map { _ in "?" }.joined(separator: ", ") + ")"
                return try Row.fetchAll(
                    db,
                    sql: """
                        SELECT \(columns.joined(separator: ", ")) FROM \(table) \(condition)
                        ORDER BY \(key.joined(separator: ", ")) LIMIT \(perBatch)
                        """, arguments: StatementArguments(after ?? []))
            }
            guard let last = batch.last else { return copied }
            after = key.map { last[$0] as DatabaseValue }
            var bindings = PostgresBindings()
            var tuples: [String] = []
            for row in batch {
                var placeholders: [String] = []
                for column in columns {
                    switch row[column] as DatabaseValue? {
                    case nil: bindings.appendNull()
                    case let value?:
                        switch value.storage {
                        case .null: bindings.appendNull()
                        case .int64(let number): bindings.append(number)
                        case .double(let number): bindings.append(number)
                        case .string(let text): bindings.append(text)
                        case .blob:
                            throw ExportError(
                                description: "\(table).\(column) holds binary data, which autonomy never writes there")
                        }
                    }
                    placeholders.append("$\(bindings.count)")
                }
                tuples.append("(" + placeholders.joined(separator: ", ") + ")")
            }
            try await transaction.query(
                PostgresQuery(
                    unsafeSQL:
                        "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES \(tuples.joined(separator: ", "))",
                    binds: bindings))
            copied += batch.count
        }
    }
}
