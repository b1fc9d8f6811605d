import Foundation
import PostgresNIO

extension PostgresStore {
    /// The system map since `since` (`AutonomyStore.systemMap`): the same tally of the ledger,
    /// with the attempts each host ran per type.
    public func systemMap(configuration: Configuration, since: Int64) async throws -> SystemMapReport {
        try await read("build the system map") { transaction in
            let tally = try await transaction.tally([since, .max])
            // Every type the ledger names, one index seek each (`Database.typesInLedger` on
            // SQLite), and each one's last success down the (type, event, at) index.
            let seen = try await transaction.rows(
                """
                WITH RECURSIVE seen(type) AS (
                    SELECT min(type) FROM ledger
                    UNION ALL
                    SELECT (SELECT min(type) FROM ledger WHERE type > seen.type) FROM seen WHERE seen.type IS NOT NULL)
                SELECT type FROM seen WHERE type IS NOT NULL
                """
            ).map { try $0.decode(String.self) }
            let lastSuccess = try await transaction.lastSuccess(
                of: Set(seen).union(configuration.taskTypes.keys))
            return SystemMapReport(
                configuration: configuration, since: since, tally: tally, lastSuccess: { lastSuccess[$0] }, seen: seen)
        }
    }
}

extension PostgresTransaction {
    /// The ledger's rows in consecutive windows (`bounds[0] <= at < bounds.last`), read once
    /// (`LedgerTally.read` on SQLite), with the host each attempt ran on.
    nonisolated(nonsending) func tally(_ bounds: [Int64]) async throws -> LedgerTally {
        var tally = LedgerTally(windows: Array(repeating: [:], count: bounds.count - 1))
        for try await row in try await query(
            """
            SELECT id, at, type, event, task_id, duration_ms, cost_usd,
              CASE event WHEN 'verified' THEN detail::jsonb ->> 'outcome' END,
              CASE event WHEN 'verified' THEN detail::jsonb ->> 'verifier'
                         WHEN 'notify_failed' THEN detail::jsonb ->> 'channel'
                         WHEN 'deferred' THEN detail::jsonb ->> 'until' END,
              CASE event WHEN 'executed' THEN detail::jsonb ->> 'host' END
            FROM ledger WHERE at >= \(bounds[0]) AND at < \(bounds[bounds.count - 1])
              AND (event IN ('executed', 'done', 'dead', 'retry_scheduled', 'verified', 'lease_expired', 'deferred',
                             'notify_failed') OR cost_usd IS NOT NULL)
            ORDER BY id
            """
        ).decode((Int64, Int64, String?, String, Int64?, Int64?, Double?, String?, String?, String?).self) {
            tally.add(
                LedgerTally.Seen(
                    id: row.0, at: row.1, type: row.2, event: row.3, task: row.4, duration: row.5, cost: row.6,
                    outcome: row.7, label: row.8, host: row.9), bounds: bounds)
        }
        return tally
    }
}

extension PostgresStore {
    /// The Prometheus metrics as of the database's clock (`PrometheusMetrics.render`).
    public func metrics(configuration: Configuration, window: Interval = .hours(24)) async throws -> String {
        let (status, now) = try await status()
        let map = try await systemMap(configuration: configuration, since: now - window.milliseconds)
        let figures = try await read("read metrics") { transaction in
            let pending =
                try await transaction.rows("SELECT count(*)::bigint FROM approvals WHERE state = 'pending'").first?
                .decode(Int.self) ?? 0
            var outcomes: [(type: String, outcome: String, count: Int)] = []
            for try await row in try await transaction.query(
                """
                SELECT type, event, count(*)::bigint FROM ledger WHERE event IN ('done', 'dead') AND type IS NOT NULL
                GROUP BY type, event ORDER BY 1, 2
                """
            ).decode((String, String, Int).self) {
                outcomes.append(row)
            }
            var failures: [(type: String, count: Int)] = []
            for try await row in try await transaction.query(
                """
                SELECT type, count(*)::bigint FROM ledger WHERE event = 'verified' AND type IS NOT NULL
                  AND detail::jsonb ->> 'outcome' <> 'pass'
                GROUP BY type ORDER BY 1
                """
            ).decode((String, Int).self) {
                failures.append(row)
            }
            let costToday =
                try await transaction.rows(
                    """
                    SELECT coalesce(sum(cost_usd), 0) FROM llm_calls
                    WHERE started_at >= \(LocalDay.start(of: now, in: configuration.timezone))
                      AND started_at < \(LocalDay.start(ofDayAfter: now, in: configuration.timezone))
                      AND state = 'settled'
                    """
                ).first?.decode(Double.self) ?? 0
            var actions: [(action: String, outcome: String, count: Int)] = []
            for try await row in try await transaction.query(
                """
                SELECT action, 'applied', count(*)::bigint FROM heal_actions WHERE automatic = 1 GROUP BY action
                UNION ALL
                SELECT action, outcome, count(*)::bigint FROM heal_actions
                WHERE automatic = 1 AND outcome IS NOT NULL GROUP BY action, outcome
                ORDER BY 1, 2
                """
            ).decode((String, String, Int).self) {
                actions.append(row)
            }
            return PrometheusMetrics.Figures(
                status: status, map: map, pending: pending, outcomes: outcomes, failures: failures,
                costToday: costToday, actions: actions, breakers: try await transaction.breakers(open: true))
        }
        return PrometheusMetrics.render(figures, now: now, window: window)
    }
}
