import Foundation
import PostgresNIO

extension PostgresStore {
    /// The system map since `since` (`AutonomyStore.systemMap`): the same tally of the ledger,
    /// with the attempts each host ran per type.
    public func systemMap(configuration: Configuration, since: Int64) async throws -> SystemMapReport {
        try await read("build the system map") { transaction in
            let bounds: [Int64] = [since, .max]
            var tally = LedgerTally(windows: [[:]])
            for try await row in try await transaction.query(
                """
                SELECT id, at, type, event, task_id, duration_ms, cost_usd,
                  CASE event WHEN 'verified' THEN detail::jsonb ->> 'outcome' END,
                  CASE event WHEN 'verified' THEN detail::jsonb ->> 'verifier'
                             WHEN 'notify_failed' THEN detail::jsonb ->> 'channel' END,
                  CASE event WHEN 'executed' THEN detail::jsonb ->> 'host' END
                FROM ledger WHERE at >= \(since)
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
            var lastSuccess: [String: Int64] = [:]
            for try await (type, at) in try await transaction.query(
                "SELECT type, max(at) FROM ledger WHERE event = 'done' AND type IS NOT NULL GROUP BY type"
            ).decode((String, Int64).self) {
                lastSuccess[type] = at
            }
            var seen: [String] = []
            for try await type in try await transaction.query(
                "SELECT DISTINCT type FROM ledger WHERE type IS NOT NULL ORDER BY type"
            ).decode(String.self) {
                seen.append(type)
            }
            return SystemMapReport(
                configuration: configuration, since: since, tally: tally, lastSuccess: { lastSuccess[$0] }, seen: seen)
        }
    }
}
