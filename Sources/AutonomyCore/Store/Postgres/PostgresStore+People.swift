import Foundation
import PostgresNIO

/// Who asked for what, on PostgreSQL: `AutonomyStore.sources`, `subjects` and `subject` with the
/// same figures, in one snapshot each.
extension PostgresStore {
    public func sources(configuration: Configuration) async throws -> [SourceSummary] {
        try await read("read the sources") { transaction in
            var summaries: [String: SourceSummary] = [:]
            func summary(_ name: String) -> SourceSummary {
                summaries[name] ?? SourceSummary(empty: name, configuration: configuration)
            }
            for try await (name, state, count, last) in try await transaction.query(
                """
                SELECT source, state, count(*)::bigint, max(updated_at) FROM tasks
                WHERE source IS NOT NULL GROUP BY source, state
                """
            ).decode((String, String, Int, Int64).self) {
                var entry = summary(name)
                entry.byState[state, default: 0] += count
                entry.tasks += count
                entry.lastActivity = ISOTime(max(last, entry.lastActivity?.milliseconds ?? 0))
                summaries[name] = entry
            }
            for try await (name, cost) in try await transaction.query(
                """
                SELECT t.source, coalesce(sum(c.cost_usd), 0) FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                WHERE t.source IS NOT NULL GROUP BY t.source
                """
            ).decode((String, Double).self) {
                var entry = summary(name)
                entry.costUSD = cost
                summaries[name] = entry
            }
            for try await (name, state, count) in try await transaction.query(
                """
                SELECT t.source, a.state, count(*)::bigint FROM approvals a JOIN tasks t ON t.id = a.task_id
                WHERE t.source IS NOT NULL GROUP BY t.source, a.state
                """
            ).decode((String, String, Int).self) {
                var entry = summary(name)
                entry.dangerous[state] = count
                summaries[name] = entry
            }
            return SourceSummary.finished(summaries, configuration: configuration)
        }
    }

    public func subjects(search: String? = nil, limit: Int = 200) async throws -> [SubjectSummary] {
        try await read("read the subjects") { transaction in
            var costs: [String: Double] = [:]
            for try await (subject, cost) in try await transaction.query(
                """
                SELECT t.subject, coalesce(sum(c.cost_usd), 0) FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                WHERE t.subject IS NOT NULL GROUP BY t.subject
                """
            ).decode((String, Double).self) {
                costs[subject] = cost
            }
            var subjects: [SubjectSummary] = []
            for try await (name, count, done, dead, first, last, types) in try await transaction.query(
                """
                SELECT subject, count(*)::bigint, count(*) FILTER (WHERE state = 'done')::bigint,
                       count(*) FILTER (WHERE state = 'dead')::bigint, min(created_at), max(updated_at),
                       array_agg(DISTINCT type)
                FROM tasks WHERE subject IS NOT NULL
                  AND (\(search)::text IS NULL OR strpos(lower(subject), lower(\(search))) > 0)
                GROUP BY subject ORDER BY max(updated_at) DESC, subject LIMIT \(limit)
                """
            ).decode((String, Int, Int, Int, Int64, Int64, [String]).self) {
                subjects.append(
                    SubjectSummary(
                        name: name, tasks: count, done: done, dead: dead, types: types.sorted(),
                        costUSD: costs[name] ?? 0, first: ISOTime(first), last: ISOTime(last)))
            }
            return subjects
        }
    }

    public func subject(_ name: String, since: Int64? = nil, limit: Int? = nil) async throws -> SubjectHistory? {
        try await read("read a subject") { transaction in
            let from = since ?? 0
            let (total, cost) =
                try await transaction.rows(
                    """
                    SELECT count(*)::bigint,
                           (SELECT coalesce(sum(c.cost_usd), 0) FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                            WHERE t.subject = \(name) AND t.created_at >= \(from))
                    FROM tasks WHERE subject = \(name) AND created_at >= \(from)
                    """
                ).first?.decode((Int, Double).self) ?? (0, 0)
            var entries: [SubjectHistory.Entry] = []
            for try await row in try await transaction.query(
                """
                SELECT * FROM (
                  SELECT t.id, t.type, t.state, t.source, t.created_at, t.finished_at, t.last_error,
                         (SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE task_id = t.id),
                         (SELECT a.state || coalesce(' by ' || a.decided_by, '') FROM approvals a
                           WHERE a.task_id = t.id ORDER BY a.id DESC LIMIT 1)
                  FROM tasks t WHERE t.subject = \(name) AND t.created_at >= \(from)
                  ORDER BY t.created_at DESC, t.id DESC LIMIT \(limit.map(Int64.init))
                ) AS recent ORDER BY 5, 1
                """
            ).decode((Int64, String, String, String?, Int64, Int64?, String?, Double, String?).self) {
                entries.append(
                    SubjectHistory.Entry(
                        id: row.0, type: row.1, state: row.2, source: row.3, createdAt: ISOTime(row.4),
                        finishedAt: ISOTime(row.5), costUSD: row.7, decision: row.8, lastError: row.6))
            }
            guard !entries.isEmpty || since != nil else { return nil }
            if entries.isEmpty,
                try await transaction.rows("SELECT 1 FROM tasks WHERE subject = \(name) LIMIT 1").isEmpty
            {
                return nil
            }
            return SubjectHistory(
                subject: name, since: since.map { ISOTime($0) }, total: total, tasks: entries, costUSD: cost)
        }
    }
}
