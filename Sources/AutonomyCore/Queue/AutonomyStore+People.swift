import Foundation
import GRDB

/// Who asked for what: every producer (`source`) and every subject (the customer, contact or
/// thread a task concerns), with what their tasks did and cost. `autonomy sources`, `subjects`,
/// `subject NAME` and the dashboard's pages read these.
public struct SourceSummary: Encodable, Sendable, Equatable {
    public var name: String
    /// Listed under `producers.users` now (a producer since removed still shows its history).
    public var listed: Bool
    public var tasks: Int
    /// Every state, zero or not.
    public var byState: [String: Int]
    /// Done out of done and dead; nil before any task of its finished either way.
    @Nullable public var successRate: Double?
    public var costUSD: Double
    /// Its tasks' approval requests, by how they ended (`pending`, `approved`, `rejected`, …).
    public var dangerous: [String: Int]
    @Nullable public var lastActivity: ISOTime?

    enum CodingKeys: String, CodingKey {
        case name, listed, tasks, dangerous
        case byState = "by_state"
        case successRate = "success_rate"
        case costUSD = "cost_usd"
        case lastActivity = "last_activity"
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.name == rhs.name && lhs.tasks == rhs.tasks && lhs.byState == rhs.byState
            && lhs.successRate == rhs.successRate && lhs.costUSD == rhs.costUSD && lhs.dangerous == rhs.dangerous
            && lhs.lastActivity?.milliseconds == rhs.lastActivity?.milliseconds
    }
}

extension SourceSummary {
    /// A producer with nothing counted yet.
    init(empty name: String, configuration: Configuration) {
        self.init(
            name: name, listed: configuration.producers.users[name] != nil, tasks: 0,
            byState: Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0.rawValue, 0) }),
            successRate: nil, costUSD: 0, dangerous: [:], lastActivity: nil)
    }

    /// The counted producers and every one listed now, with their success rates, last active first.
    static func finished(_ counted: [String: SourceSummary], configuration: Configuration) -> [SourceSummary] {
        var summaries = counted
        for name in configuration.producers.users.keys where summaries[name] == nil {
            summaries[name] = SourceSummary(empty: name, configuration: configuration)
        }
        return summaries.values.map { entry in
            var entry = entry
            let (done, dead) = (entry.byState["done", default: 0], entry.byState["dead", default: 0])
            entry.successRate = done + dead == 0 ? nil : Double(done) / Double(done + dead)
            return entry
        }.sorted {
            ($0.lastActivity?.milliseconds ?? 0, $1.name) > ($1.lastActivity?.milliseconds ?? 0, $0.name)
        }
    }
}

public struct SubjectSummary: Encodable, Sendable {
    public var name: String
    public var tasks: Int
    public var done: Int
    public var dead: Int
    /// The types of its tasks, sorted.
    public var types: [String]
    public var costUSD: Double
    public var first: ISOTime
    public var last: ISOTime

    enum CodingKeys: String, CodingKey {
        case name, tasks, done, dead, types, first, last
        case costUSD = "cost_usd"
    }
}

/// Everything done about one subject, in time order across types: what the operator opens before
/// calling that customer.
public struct SubjectHistory: Encodable, Sendable {
    public struct Entry: Encodable, Sendable {
        public var id: Int64
        public var type: String
        public var state: String
        @Nullable public var source: String?
        public var createdAt: ISOTime
        @Nullable public var finishedAt: ISOTime?
        public var costUSD: Double
        /// The last approval request's end and who decided, for a dangerous task.
        @Nullable public var decision: String?
        @Nullable public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case id, type, state, source, decision
            case createdAt = "created_at"
            case finishedAt = "finished_at"
            case costUSD = "cost_usd"
            case lastError = "last_error"
        }
    }

    public var subject: String
    @Nullable public var since: ISOTime?
    /// Every task about it in the window; `tasks` may list only the most recent of them.
    public var total: Int
    public var tasks: [Entry]
    /// The cost of all `total` tasks.
    public var costUSD: Double

    enum CodingKeys: String, CodingKey {
        case subject, since, total, tasks
        case costUSD = "cost_usd"
    }
}

extension AutonomyStore {
    /// Every producer that enqueued something, and every one listed now, busiest last-active first.
    public func sources(configuration: Configuration) throws -> [SourceSummary] {
        try read("read the sources") { db in
            var summaries: [String: SourceSummary] = [:]
            func summary(_ name: String) -> SourceSummary {
                summaries[name] ?? SourceSummary(empty: name, configuration: configuration)
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT source, state, COUNT(*) AS n, MAX(updated_at) AS last FROM tasks INDEXED BY tasks_source_state
                    WHERE source IS NOT NULL GROUP BY source, state
                    """)
            {
                let name: String = row["source"]
                var entry = summary(name)
                let count: Int = row["n"]
                entry.byState[row["state"], default: 0] += count
                entry.tasks += count
                let last: Int64 = row["last"]
                entry.lastActivity = ISOTime(max(last, entry.lastActivity?.milliseconds ?? 0))
                summaries[name] = entry
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT t.source AS source, SUM(c.cost_usd) AS cost FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                    WHERE t.source IS NOT NULL GROUP BY t.source
                    """)
            {
                var entry = summary(row["source"])
                entry.costUSD = row["cost"] ?? 0
                summaries[entry.name] = entry
            }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT t.source AS source, a.state AS state, COUNT(*) AS n FROM approvals a JOIN tasks t ON t.id = a.task_id
                    WHERE t.source IS NOT NULL GROUP BY t.source, a.state
                    """)
            {
                var entry = summary(row["source"])
                entry.dangerous[row["state"]] = row["n"]
                summaries[entry.name] = entry
            }
            return SourceSummary.finished(summaries, configuration: configuration)
        }
    }

    /// The subjects, last touched first; with `search`, those whose name holds it (any case).
    public func subjects(search: String? = nil, limit: Int = 200) throws -> [SubjectSummary] {
        try read("read the subjects") { db in
            let filter = search.map { _ in "AND instr(lower(subject), lower(?)) > 0" } ?? ""
            var costs: [String: Double] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT t.subject AS subject, SUM(c.cost_usd) AS cost FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                    WHERE t.subject IS NOT NULL GROUP BY t.subject
                    """)
            {
                costs[row["subject"]] = row["cost"] ?? 0
            }
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT subject, COUNT(*) AS n, SUM(state = 'done') AS done, SUM(state = 'dead') AS dead,
                           MIN(created_at) AS first, MAX(updated_at) AS last, group_concat(DISTINCT type) AS types
                    FROM tasks INDEXED BY tasks_subject WHERE subject IS NOT NULL \(filter)
                    GROUP BY subject ORDER BY last DESC, subject LIMIT ?
                    """, arguments: StatementArguments((search.map { [$0] } ?? []) + [limit])
            ).map { row in
                let name: String = row["subject"]
                let types: String = row["types"] ?? ""
                return SubjectSummary(
                    name: name, tasks: row["n"], done: row["done"], dead: row["dead"],
                    types: types.split(separator: ",").map(String.init).sorted(), costUSD: costs[name] ?? 0,
                    first: ISOTime(row["first"] as Int64), last: ISOTime(row["last"] as Int64))
            }
        }
    }

    /// Every task about `subject` (since `since`, if given; with `limit`, the most recent that
    /// many), oldest first, with its cost and, for a dangerous one, how its request ended. Nil when
    /// no task names that subject.
    public func subject(_ name: String, since: Int64? = nil, limit: Int? = nil) throws -> SubjectHistory? {
        try read("read a subject") { db in
            let totals = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) AS n, (SELECT SUM(c.cost_usd) FROM llm_calls c JOIN tasks t ON t.id = c.task_id
                                            WHERE t.subject = ?1 AND t.created_at >= ?2) AS cost
                    FROM tasks INDEXED BY tasks_subject WHERE subject = ?1 AND created_at >= ?2
                    """, arguments: [name, since ?? 0])
            let tasks = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM (
                    SELECT t.id AS id, t.type AS type, t.state AS state, t.source AS source, t.created_at AS created_at,
                           t.finished_at AS finished_at, t.last_error AS last_error,
                           (SELECT SUM(cost_usd) FROM llm_calls WHERE task_id = t.id) AS cost,
                           (SELECT a.state || ifnull(' by ' || a.decided_by, '') FROM approvals a
                             WHERE a.task_id = t.id ORDER BY a.id DESC LIMIT 1) AS decision
                    FROM tasks t INDEXED BY tasks_subject
                    WHERE t.subject = ? AND t.created_at >= ? ORDER BY t.created_at DESC, t.id DESC LIMIT ?
                    ) ORDER BY created_at, id
                    """, arguments: [name, since ?? 0, limit ?? -1]
            ).map { row in
                SubjectHistory.Entry(
                    id: row["id"], type: row["type"], state: row["state"], source: row["source"],
                    createdAt: ISOTime(row["created_at"] as Int64), finishedAt: ISOTime(row["finished_at"] as Int64?),
                    costUSD: row["cost"] ?? 0, decision: row["decision"], lastError: row["last_error"])
            }
            guard !tasks.isEmpty || since != nil else { return nil }
            if tasks.isEmpty,
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM tasks WHERE subject = ?)", arguments: [name])
                    != true
            {
                return nil
            }
            return SubjectHistory(
                subject: name, since: since.map { ISOTime($0) }, total: totals?["n"] ?? tasks.count, tasks: tasks,
                costUSD: totals?["cost"] ?? 0)
        }
    }
}
