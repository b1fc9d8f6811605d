import Foundation
import GRDB

/// Today's money, as the gateway and `autonomy budget` see it.
public struct BudgetStatus: Sendable {
    /// Where the cap's window starts (midnight, or 24 hours ago).
    public var dayStart: Int64
    public var capUSD: Double
    public var softCapUSD: Double
    /// Settled calls in the window, and reservations their callers never settled (charged in full).
    public var spentUSD: Double
    /// Open reservations (calls under way) that have not timed out.
    public var reservedUSD: Double
    public var perModel: [(model: String, calls: Int, inputTokens: Int, outputTokens: Int, costUSD: Double)]
    /// The last seven days, oldest first: (day start, spent).
    public var lastDays: [(day: Int64, costUSD: Double)]

    public var committedUSD: Double { spentUSD + reservedUSD }
}

extension AutonomyStore {
    /// Reserves a paid call's worst-case cost in one IMMEDIATE transaction against today's spend
    /// plus the open reservations. Nil when it would pass the cap (nothing is written then).
    public func reserve(
        model: ModelSettings, amountUSD: Double, taskID: Int64?, capUSD: Double, window: (start: Int64, end: Int64),
        now: Int64, timeout: Interval
    ) throws -> Int64? {
        try write("reserve a model call") { db in
            try db.chargeAbandonedReservations(now: now)
            if amountUSD > 0 {  // a free call is recorded, never refused
                let committed = try committedUSD(db: db, window: window, now: now)
                guard committed + amountUSD <= capUSD + 1e-12 else { return nil }
            }
            try db.execute(
                sql: """
                    INSERT INTO llm_calls (task_id, model, tier, state, reserved_usd, started_at, expires_at)
                    VALUES (?, ?, ?, 'reserved', ?, ?, ?)
                    """,
                arguments: [taskID, model.name, model.tier.rawValue, amountUSD, now, now + timeout.milliseconds])
            return db.lastInsertedRowID
        }
    }

    /// Settles a call at its real cost (or, without usage, at its reservation) and records it in
    /// the task's ledger with that cost. With `charged` false the call is released at no cost.
    public func settle(
        callID: Int64, costUSD: Double?, inputTokens: Int?, outputTokens: Int?, latencyMs: Int64, outcome: String?,
        charged: Bool, now: Int64
    ) throws {
        try write("settle a model call") { db in
            // A call charged as abandoned (its caller was too slow to settle) keeps that charge.
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT task_id, model, tier, reserved_usd FROM llm_calls WHERE id = ? AND state = 'reserved'",
                    arguments: [callID])
            else { return }
            let taskID: Int64? = try row.decode(forColumn: "task_id")
            let model: String = try row.decode(forColumn: "model")
            let tier: String = try row.decode(forColumn: "tier")
            let reserved: Double = try row.decode(forColumn: "reserved_usd")
            let cost = charged ? (costUSD ?? reserved) : 0
            try db.execute(
                sql: """
                    UPDATE llm_calls SET state = ?, cost_usd = ?, input_tokens = ?, output_tokens = ?, latency_ms = ?,
                                         outcome = ?, finished_at = ?
                    WHERE id = ?
                    """,
                arguments: [
                    charged ? "settled" : "released", cost, inputTokens, outputTokens, latencyMs,
                    outcome ?? "ok", now, callID,
                ])
            if let taskID {
                let type = try String.fetchOne(db, sql: "SELECT type FROM tasks WHERE id = ?", arguments: [taskID])
                try db.appendLedger(
                    .llmCall, at: now, taskID: taskID, type: type, durationMs: latencyMs, costUSD: cost,
                    detailText: Self.settledCallDetail(
                        callID: callID, model: model, tier: tier, inputTokens: inputTokens, outputTokens: outputTokens,
                        outcome: outcome, charged: charged, costKnown: costUSD != nil
                    ).canonicalText)
            }
        }
    }

    /// A settled call's ledger detail, the same on both engines.
    static func settledCallDetail(
        callID: Int64, model: String, tier: String, inputTokens: Int?, outputTokens: Int?, outcome: String?,
        charged: Bool, costKnown: Bool
    ) -> JSONValue {
        [
            "call_id": .int(callID), "model": .string(model), "tier": .string(tier),
            "input_tokens": inputTokens.map { .int(Int64($0)) } ?? .null,
            "output_tokens": outputTokens.map { .int(Int64($0)) } ?? .null, "outcome": .string(outcome ?? "ok"),
            "charged": .string(!charged ? "nothing" : costKnown ? "usage" : "the reservation (no usage known)"),
        ]
    }

    /// The tier of the last successful call made for a task (for escalation).
    public func lastCallTier(taskID: Int64) throws -> ModelTier? {
        try read("read the last model call") { db in
            try String.fetchOne(
                db, sql: "SELECT tier FROM llm_calls WHERE task_id = ? AND state = 'settled' ORDER BY id DESC LIMIT 1",
                arguments: [taskID]
            ).flatMap(ModelTier.init(rawValue:))
        }
    }

    /// The window's spend (abandoned reservations included), open reservations, per-model
    /// breakdown and the last seven days.
    public func budget(settings: GatewaySettings, timeZone: TimeZone, now: Int64) throws -> BudgetStatus {
        let window = settings.window.bounds(now, timeZone)
        let dayStart = window.start
        return try read("read the budget") { db in
            let spent = try Self.spentUSD(db: db, window: window, now: now)
            let reserved = try Self.reservedUSD(db: db, now: now)
            let perModel = try Row.fetchAll(
                db,
                sql: """
                    SELECT model, COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                           COALESCE(SUM(cost_usd), 0)
                    FROM llm_calls WHERE started_at >= ? GROUP BY model ORDER BY model
                    """, arguments: [dayStart]
            ).map {
                (
                    model: try $0.decode(String.self, atIndex: 0), calls: try $0.decode(Int.self, atIndex: 1),
                    inputTokens: try $0.decode(Int.self, atIndex: 2), outputTokens: try $0.decode(Int.self, atIndex: 3),
                    costUSD: try $0.decode(Double.self, atIndex: 4)
                )
            }
            var days: [(day: Int64, costUSD: Double)] = []
            var start = dayStart
            for _ in 0..<7 {
                let previous = LocalDay.start(of: start - 1, in: timeZone)
                let end = start
                start = previous
                let cost =
                    try Double.fetchOne(
                        db,
                        sql: """
                            SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls
                            WHERE state = 'settled' AND started_at >= ? AND started_at < ?
                            """, arguments: [previous, end]) ?? 0
                days.insert((previous, cost), at: 0)
            }
            return BudgetStatus(
                dayStart: dayStart, capUSD: settings.dailyCapUSD,
                softCapUSD: settings.dailyCapUSD * settings.softCapRatio,
                spentUSD: spent, reservedUSD: reserved, perModel: perModel, lastDays: days)
        }
    }

    private func committedUSD(db: Database, window: (start: Int64, end: Int64), now: Int64) throws -> Double {
        try Self.spentUSD(db: db, window: window, now: now) + Self.reservedUSD(db: db, now: now)
    }

    /// Settled calls started in `[start, end)`, and expired reservations nobody settled (counted at
    /// their full reservation, whether or not they were charged yet).
    static func spentUSD(db: Database, window: (start: Int64, end: Int64), now: Int64) throws -> Double {
        try Double.fetchOne(
            db,
            sql: """
                SELECT COALESCE(SUM(CASE WHEN state = 'settled' THEN cost_usd ELSE reserved_usd END), 0)
                FROM llm_calls INDEXED BY llm_calls_started
                WHERE started_at >= ? AND started_at < ?
                  AND (state = 'settled' OR (state = 'reserved' AND expires_at <= ?))
                """, arguments: [window.start, window.end, now]) ?? 0
    }

    /// Charges the reservations whose callers never settled them (killed mid-call, or settling gave
    /// up): the provider may have done the work, so they cost their full reservation, with a ledger
    /// row. Runs in `reserve` and in work-once's housekeeping.
    public func chargeAbandonedReservations(now: Int64) throws {
        try write("charge abandoned reservations") { db in try db.chargeAbandonedReservations(now: now) }
    }

    /// Open reservations that have not timed out; one whose process died is released by its timeout.
    static func reservedUSD(db: Database, now: Int64) throws -> Double {
        try Double.fetchOne(
            db,
            sql: """
                SELECT COALESCE(SUM(reserved_usd), 0) FROM llm_calls INDEXED BY llm_calls_open
                WHERE state = 'reserved' AND expires_at > ?
                """, arguments: [now]) ?? 0
    }
}

extension Database {
    func chargeAbandonedReservations(now: Int64) throws {
        let abandoned = try Row.fetchAll(
            cachedStatement(
                sql: """
                    SELECT id, task_id, model, tier, reserved_usd FROM llm_calls INDEXED BY llm_calls_open
                    WHERE state = 'reserved' AND expires_at <= ?
                    """), arguments: [now])
        for row in abandoned {
            let id: Int64 = try row.decode(forColumn: "id")
            let taskID: Int64? = try row.decode(forColumn: "task_id")
            let reserved: Double = try row.decode(forColumn: "reserved_usd")
            try execute(
                sql: """
                    UPDATE llm_calls SET state = 'settled', cost_usd = reserved_usd, finished_at = ?,
                                         outcome = 'abandoned: its caller never settled it'
                    WHERE id = ? AND state = 'reserved'
                    """, arguments: [now, id])
            let type = try taskID.flatMap {
                try String.fetchOne(self, sql: "SELECT type FROM tasks WHERE id = ?", arguments: [$0])
            }
            try appendLedger(
                .llmCall, at: now, taskID: taskID, type: type, costUSD: reserved,
                detailText: JSONValue.object([
                    "call_id": .int(id), "model": .string(try row.decode(forColumn: "model")),
                    "tier": .string(try row.decode(forColumn: "tier")),
                    "outcome": "abandoned", "charged": "the reservation (its caller never settled it)",
                ]).canonicalText)
        }
    }
}
