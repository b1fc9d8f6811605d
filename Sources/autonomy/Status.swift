import ArgumentParser
import AutonomyCore
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The queue at a glance: counts by state and type, waiting times, dead tasks.",
        discussion: "Example: autonomy status")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print as JSON.")
    var json = false

    func run() async throws {
        let (loaded, store) = try global.open(create: false)
        let now = try currentClock().now()
        let status = try store.status(now: now)
        let configuration = loaded.configuration
        if json { return printJSON(jsonValue(status, now: now)) }

        print("database: \(store.path)")
        print("config:   \(loaded.path ?? "built-in defaults (no task types: every task is refused)")")
        let states = TaskState.allCases.filter { status.counts[$0, default: 0] > 0 }
        print(
            "tasks:    "
                + (states.isEmpty
                    ? "none"
                    : states.map { "\($0.rawValue) \(status.counts[$0, default: 0])" }.joined(separator: " · ")))
        if let oldest = status.oldestRunnable {
            print(
                "oldest runnable: task \(oldest.id) (\(oldest.type)), waiting \(Interval(milliseconds: now - oldest.since))"
            )
        } else {
            print("oldest runnable: none")
        }
        if let next = status.nextScheduled {
            print(
                "next scheduled:  task \(next.id) (\(next.type)) at \(display(next.runAt, configuration)) (\(relative(next.runAt, now: now)))"
            )
        }
        if status.expiredLeases > 0 {
            print("expired leases:  \(status.expiredLeases) (their worker died; the next work-once recovers them)")
        }
        if !status.countsByType.isEmpty {
            print("")
            let columns: [TaskState] = [.queued, .awaitingApproval, .running, .done, .dead]
            let rows = status.countsByType.keys.sorted().map { type -> [String] in
                let counts = status.countsByType[type, default: [:]]
                let other = counts.filter { !columns.contains($0.key) }.values.reduce(0, +)
                let declared = configuration.taskTypes[type] == nil ? " (undeclared)" : ""
                return [type + declared] + columns.map { String(counts[$0, default: 0]) } + [String(other)]
            }
            print(table(["TYPE", "QUEUED", "AWAITING", "RUNNING", "DONE", "DEAD", "OTHER"], rows))
        }
        if !status.recentDead.isEmpty {
            print("\ndead tasks (most recent first; 'autonomy tasks retry ID' sends one back):")
            for task in status.recentDead {
                print("  \(task.id)  \(task.type)  \(display(task.finishedAt, configuration))  \(task.lastError ?? "")")
            }
        }
    }

    private func jsonValue(_ status: QueueStatus, now: Int64) -> JSONValue {
        .object([
            "counts": .object(
                Dictionary(
                    uniqueKeysWithValues: TaskState.allCases.map {
                        ($0.rawValue, JSONValue.int(Int64(status.counts[$0, default: 0])))
                    })),
            "by_type": .object(
                status.countsByType.mapValues { counts in
                    .object(
                        Dictionary(
                            uniqueKeysWithValues: counts.map { ($0.key.rawValue, JSONValue.int(Int64($0.value))) }))
                }),
            "oldest_runnable": status.oldestRunnable.map {
                .object([
                    "id": .int($0.id), "type": .string($0.type), "since": .string(Timestamp.format($0.since)),
                    "age_seconds": .int((now - $0.since) / 1000),
                ])
            } ?? .null,
            "next_scheduled": status.nextScheduled.map {
                .object([
                    "id": .int($0.id), "type": .string($0.type), "run_at": .string(Timestamp.format($0.runAt)),
                ])
            } ?? .null,
            "expired_leases": .int(Int64(status.expiredLeases)),
            "dead": .array(
                status.recentDead.map {
                    .object([
                        "id": .int($0.id), "type": .string($0.type),
                        "finished_at": $0.finishedAt.map { .string(Timestamp.format($0)) } ?? .null,
                        "last_error": $0.lastError.map { .string($0) } ?? .null,
                    ])
                }),
        ])
    }
}
