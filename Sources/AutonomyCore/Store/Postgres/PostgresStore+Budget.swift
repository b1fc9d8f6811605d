import Foundation
import PostgresNIO

/// The model gateway's budget on PostgreSQL: one cap for every host. A reservation locks the
/// budget's row (`SELECT … FOR UPDATE`) before it adds up the window's spend and the open
/// reservations, so callers on several hosts are checked one after another and never pass the
/// cap together. Times are the database's clock (the `now` arguments are not used), so hosts
/// whose clocks disagree still agree on the day.
extension PostgresStore: BudgetStore {
    public func committedUSD(settings: GatewaySettings, timeZone: TimeZone, now: Int64) async throws -> Double {
        try await read("read the budget") { transaction in
            try await transaction.committedUSD(
                window: settings.window.bounds(transaction.now, timeZone), now: transaction.now)
        }
    }

    public func reserve(
        model: ModelSettings, amountUSD: Double, taskID: Int64?, settings: GatewaySettings, timeZone: TimeZone,
        now: Int64, timeout: Interval
    ) async throws -> Int64? {
        try await write("reserve a model call", ledger: false) { transaction in
            // The row is put back if someone deleted it: without it, nothing would be locked.
            try await transaction.query("INSERT INTO budget (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
            try await transaction.query("SELECT id FROM budget WHERE id = 1 FOR UPDATE")
            // The clock once the lock is ours: what settled while this waited counts in the window.
            let now = try await PostgresStore.now(transaction.connection, logger: transaction.logger)
            if amountUSD > 0 {  // a free call is recorded, never refused
                let committed = try await transaction.committedUSD(
                    window: settings.window.bounds(now, timeZone), now: now)
                guard committed + amountUSD <= settings.dailyCapUSD + 1e-12 else { return nil }
            }
            let inserted = try await transaction.rows(
                """
                INSERT INTO llm_calls (task_id, model, tier, state, reserved_usd, started_at, expires_at)
                VALUES (\(taskID), \(model.name), \(model.tier.rawValue), 'reserved', \(amountUSD), \(now),
                        \(now + timeout.milliseconds))
                RETURNING id
                """)
            return try inserted.first?.decode(Int64.self)
        }
    }

    public func settle(
        callID: Int64, costUSD: Double?, inputTokens: Int?, outputTokens: Int?, latencyMs: Int64, outcome: String?,
        charged: Bool, now: Int64
    ) async throws {
        try await write("settle a model call") { transaction in
            // A call charged as abandoned (its caller was too slow to settle) keeps that charge.
            guard
                let (taskID, model, tier, reserved) = try await transaction.rows(
                    """
                    SELECT task_id, model, tier, reserved_usd FROM llm_calls
                    WHERE id = \(callID) AND state = 'reserved' AND expires_at > \(transaction.now) FOR UPDATE
                    """
                ).first?.decode((Int64?, String, String, Double).self)
            else { return }
            let cost = charged ? (costUSD ?? reserved) : 0
            try await transaction.query(
                """
                UPDATE llm_calls SET state = \(charged ? "settled" : "released"), cost_usd = \(cost),
                                     input_tokens = \(inputTokens), output_tokens = \(outputTokens),
                                     latency_ms = \(latencyMs), outcome = \(outcome ?? "ok"),
                                     finished_at = \(transaction.now)
                WHERE id = \(callID)
                """)
            guard let taskID else { return }
            try await transaction.appendLedger(
                .llmCall, taskID: taskID, type: try await transaction.task(id: taskID)?.type, durationMs: latencyMs,
                costUSD: cost,
                detail: AutonomyStore.settledCallDetail(
                    callID: callID, model: model, tier: tier, inputTokens: inputTokens, outputTokens: outputTokens,
                    outcome: outcome, charged: charged, costKnown: costUSD != nil))
        }
    }

    public func lastCallTier(taskID: Int64) async throws -> ModelTier? {
        try await read("read the last model call") { transaction in
            try await transaction.rows(
                """
                SELECT tier FROM llm_calls WHERE task_id = \(taskID) AND state = 'settled' ORDER BY id DESC LIMIT 1
                """
            ).first.flatMap { ModelTier(rawValue: try $0.decode(String.self)) }
        }
    }
}

extension PostgresTransaction {
    /// Settled calls started in the window, reservations in it that timed out unsettled (at their
    /// full amount), and the open reservations: what a new reservation is checked against.
    nonisolated(nonsending) func committedUSD(window: (start: Int64, end: Int64), now: Int64) async throws
        -> Double
    {
        let (spent, reserved) = try await spentAndReservedUSD(window: window, now: now)
        return spent + reserved
    }

    /// The window's spend (settled calls, and reservations in it that timed out unsettled, at their
    /// full amount) and the open reservations, as `AutonomyStore.spentUSD` and `reservedUSD` count them.
    nonisolated(nonsending) func spentAndReservedUSD(window: (start: Int64, end: Int64), now: Int64) async throws
        -> (spent: Double, reserved: Double)
    {
        let rows = try await rows(
            """
            SELECT
              (SELECT coalesce(sum(CASE WHEN state = 'settled' THEN cost_usd ELSE reserved_usd END), 0)
               FROM llm_calls WHERE started_at >= \(window.start) AND started_at < \(window.end)
                 AND (state = 'settled' OR (state = 'reserved' AND expires_at <= \(now)))),
              (SELECT coalesce(sum(reserved_usd), 0) FROM llm_calls WHERE state = 'reserved' AND expires_at > \(now))
            """)
        return try rows.first?.decode((Double, Double).self) ?? (0, 0)
    }

    /// Charges the reservations whose callers never settled them, at their full amount, with a
    /// ledger row each (`Database.chargeAbandonedReservations`).
    nonisolated(nonsending) func chargeAbandonedReservations() async throws {
        let abandoned = try await rows(
            """
            SELECT id, task_id, model, tier, reserved_usd FROM llm_calls
            WHERE state = 'reserved' AND expires_at <= \(now) ORDER BY id FOR UPDATE SKIP LOCKED
            """)
        for row in abandoned {
            let (id, taskID, model, tier, reserved) = try row.decode((Int64, Int64?, String, String, Double).self)
            try await query(
                """
                UPDATE llm_calls SET state = 'settled', cost_usd = reserved_usd, finished_at = \(now),
                                     outcome = 'abandoned: its caller never settled it'
                WHERE id = \(id)
                """)
            var type: String?
            if let taskID { type = try await task(id: taskID)?.type }
            try await appendLedger(
                .llmCall, taskID: taskID, type: type, costUSD: reserved,
                detail: [
                    "call_id": .int(id), "model": .string(model), "tier": .string(tier), "outcome": "abandoned",
                    "charged": "the reservation (its caller never settled it)",
                ])
        }
    }
}

extension PostgresStore {
    /// The window's spend, open reservations, per-model breakdown and the last seven days
    /// (`AutonomyStore.budget`), on the database's clock.
    public func budget(settings: GatewaySettings, timeZone: TimeZone) async throws -> BudgetStatus {
        try await read("read the budget") { transaction in
            let now = transaction.now
            let window = settings.window.bounds(now, timeZone)
            let (spent, reserved) = try await transaction.spentAndReservedUSD(window: window, now: now)
            var perModel: [(model: String, calls: Int, inputTokens: Int, outputTokens: Int, costUSD: Double)] = []
            for try await row in try await transaction.query(
                """
                SELECT model, count(*)::bigint, coalesce(sum(input_tokens), 0)::bigint,
                       coalesce(sum(output_tokens), 0)::bigint, coalesce(sum(cost_usd), 0)
                FROM llm_calls WHERE started_at >= \(window.start) GROUP BY model ORDER BY model
                """
            ).decode((String, Int, Int, Int, Double).self) {
                perModel.append((row.0, row.1, row.2, row.3, row.4))
            }
            var days: [(day: Int64, costUSD: Double)] = []
            var start = window.start
            for _ in 0..<7 {
                let previous = LocalDay.start(of: start - 1, in: timeZone)
                let cost =
                    try await transaction.rows(
                        """
                        SELECT coalesce(sum(cost_usd), 0) FROM llm_calls
                        WHERE state = 'settled' AND started_at >= \(previous) AND started_at < \(start)
                        """
                    ).first?.decode(Double.self) ?? 0
                days.insert((previous, cost), at: 0)
                start = previous
            }
            return BudgetStatus(
                dayStart: window.start, capUSD: settings.dailyCapUSD,
                softCapUSD: settings.dailyCapUSD * settings.softCapRatio, spentUSD: spent, reservedUSD: reserved,
                perModel: perModel, lastDays: days)
        }
    }
}
