import Foundation
import GRDB

/// The queue, approvals, outcomes, verification, durations, cost and shelfware in the Prometheus
/// text exposition format, for node_exporter's textfile collector.
public enum PrometheusMetrics {
    /// What the metrics are made of, read from either store.
    struct Figures {
        var status: QueueStatus
        var map: SystemMapReport
        var pending: Int
        var outcomes: [(type: String, outcome: String, count: Int)]
        var failures: [(type: String, count: Int)]
        var costToday: Double
        var actions: [(action: String, outcome: String, count: Int)] = []
        var breakers: [HealBreaker] = []
    }

    /// Renders the metrics as of `now`; durations and shelfware look back over `window`.
    public static func render(
        store: AutonomyStore, configuration: Configuration, now: Int64, window: Interval = .hours(24)
    ) throws -> String {
        let status = try store.status(now: now)
        let map = try store.systemMap(configuration: configuration, since: now - window.milliseconds)
        let (pending, outcomes, failures, costToday) = try store.read("read metrics") { db in
            (
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM approvals WHERE state = 'pending'") ?? 0,
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT type, event, COUNT(*) FROM ledger WHERE event IN ('done', 'dead') AND type IS NOT NULL
                        GROUP BY type, event
                        """
                ).map {
                    (
                        type: try $0.decode(String.self, atIndex: 0), outcome: try $0.decode(String.self, atIndex: 1),
                        count: try $0.decode(Int.self, atIndex: 2)
                    )
                },
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT type, COUNT(*) FROM ledger WHERE event = 'verified' AND type IS NOT NULL
                          AND json_extract(detail, '$.outcome') != 'pass'
                        GROUP BY type
                        """
                ).map { (type: try $0.decode(String.self, atIndex: 0), count: try $0.decode(Int.self, atIndex: 1)) },
                try Double.fetchOne(
                    db,
                    sql:
                        "SELECT SUM(cost_usd) FROM llm_calls WHERE started_at >= ? AND started_at < ? AND state = 'settled'",
                    arguments: [
                        LocalDay.start(of: now, in: configuration.timezone),
                        LocalDay.start(ofDayAfter: now, in: configuration.timezone),
                    ]
                ) ?? 0
            )
        }
        let (actions, breakers) = try store.read("read heal's metrics") { db in
            (
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT action, 'applied', COUNT(*) FROM heal_actions WHERE automatic = 1 GROUP BY action
                        UNION ALL
                        SELECT action, outcome, COUNT(*) FROM heal_actions
                        WHERE automatic = 1 AND outcome IS NOT NULL GROUP BY action, outcome
                        ORDER BY 1, 2
                        """
                ).map {
                    (
                        action: try $0.decode(String.self, atIndex: 0), outcome: try $0.decode(String.self, atIndex: 1),
                        count: try $0.decode(Int.self, atIndex: 2)
                    )
                },
                try db.openBreakers(now: now)
            )
        }
        return render(
            Figures(
                status: status, map: map, pending: pending, outcomes: outcomes, failures: failures,
                costToday: costToday, actions: actions, breakers: breakers), now: now, window: window)
    }

    /// The exposition text of `figures`.
    static func render(_ figures: Figures, now: Int64, window: Interval) -> String {
        let (status, map, pending) = (figures.status, figures.map, figures.pending)
        let (outcomes, failures, costToday) = (figures.outcomes, figures.failures, figures.costToday)
        var text = ""
        func family(
            _ name: String, _ kind: String, _ help: String, _ samples: [(labels: [(String, String)], value: String)]
        ) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(kind)\n"
            for sample in samples {
                let labels =
                    sample.labels.isEmpty
                    ? "" : "{" + sample.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                text += "\(name)\(labels) \(sample.value)\n"
            }
        }
        family(
            "autonomy_tasks", "gauge", "Tasks in the queue by state.",
            TaskState.allCases.map { ([("state", $0.rawValue)], String(status.counts[$0, default: 0])) })
        family(
            "autonomy_approvals_pending", "gauge", "Approval requests waiting for a decision.",
            [([], String(pending))])
        family(
            "autonomy_oldest_runnable_age_seconds", "gauge", "How long the oldest runnable task has waited.",
            [
                (
                    [],
                    String(
                        status.oldestRunnable.map { max(0, Interval.between($0.since, now).milliseconds) / 1000 } ?? 0)
                )
            ])
        family(
            "autonomy_tasks_finished_total", "counter", "Tasks finished, by type and outcome.",
            outcomes.map { ([("type", $0.type), ("outcome", $0.outcome)], String($0.count)) })
        family(
            "autonomy_verification_failures_total", "counter", "Verifier checks that did not pass, by type.",
            failures.map { ([("type", $0.type)], String($0.count)) })
        var durations: [(labels: [(String, String)], value: String)] = []
        for type in map.types {
            if let median = type.medianMs {
                durations.append(([("type", type.name), ("quantile", "0.5")], seconds(median)))
            }
            if let p95 = type.p95Ms {
                durations.append(([("type", type.name), ("quantile", "0.95")], seconds(p95)))
            }
        }
        family(
            "autonomy_task_duration_seconds", "gauge",
            "Handler run time over the last \(window), by type and quantile.", durations)
        family(
            "autonomy_cost_usd_today", "gauge", "Money spent today (in the configured time zone).",
            [([], String(costToday))])
        family(
            "autonomy_shelfware_types", "gauge",
            "Declared task types without a verified success in the last \(window).",
            [([], String(map.types.filter(\.shelfware).count))])
        let (actions, breakers) = (figures.actions, figures.breakers)
        family(
            "autonomy_heal_actions_total", "counter",
            "Fixes heal applied on its own by action (outcome applied), and how they were judged after settling.",
            actions.map { ([("action", $0.action), ("outcome", $0.outcome)], String($0.count)) })
        family(
            "autonomy_heal_breaker_open", "gauge", "1 for each target whose heal breaker is open.",
            Set(breakers.map(\.target)).sorted().map { ([("target", $0)], "1") })
        return text
    }

    /// The metrics file could not be written.
    public struct WriteError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "cannot write \(path): \(reason)" }
    }

    /// Writes the metrics to `path` atomically (a temporary file renamed over it), readable by
    /// node_exporter.
    public static func write(_ text: String, to path: String) throws(WriteError) {
        let folder = (path as NSString).deletingLastPathComponent
        let temporary = (folder.isEmpty ? "." : folder) + "/.\((path as NSString).lastPathComponent).\(getpid()).tmp"
        guard
            FileManager.default.createFile(
                atPath: temporary, contents: Data(utf8: text), attributes: [.posixPermissions: 0o644])
        else { throw WriteError(path: path, reason: "the folder does not exist or is not writable") }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WriteError(path: path, reason: reason)
        }
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func seconds(_ milliseconds: Int64) -> String {
        String(format: "%.3f", Double(milliseconds) / 1000)
    }
}
