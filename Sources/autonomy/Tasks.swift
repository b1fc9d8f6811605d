import ArgumentParser
import AutonomyCore
import Foundation

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List, show, cancel and retry tasks.",
        subcommands: [List.self, Show.self, Cancel.self, Retry.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List tasks, newest first.",
            discussion: "Example: autonomy tasks list --state dead --type send_email")

        @OptionGroup var global: GlobalOptions
        @Option(
            help: ArgumentHelp(
                "Only this state: \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "state"))
        var state: TaskState?
        @Option(help: "Only this task type.")
        var type: String?
        @Option(help: "At most this many (default 50).")
        var limit: Int = 50
        @Flag(help: "Print as JSON.")
        var json = false

        func validate() throws {
            guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 100000") }
        }

        func run() async throws {
            let (loaded, store) = try global.open(create: false)
            let tasks = try store.tasks(matching: TaskFilter(state: state, type: type, limit: limit))
            if json { return printJSON(.array(tasks.map(\.jsonValue))) }
            guard !tasks.isEmpty else { return print("no tasks") }
            let now = try currentClock().now()
            print(
                table(
                    ["ID", "STATE", "TYPE", "PRI", "TRIES", "RUN AT", "SUBJECT / LAST ERROR"],
                    tasks.map { task in
                        let runAt =
                            task.state == .queued
                            ? relative(task.runAt, now: now) : display(task.updatedAt, loaded.configuration)
                        let note = task.lastError.map { "! " + $0 } ?? task.subject ?? ""
                        return [
                            String(task.id), task.state.rawValue, task.type, String(task.priority),
                            String(task.attempts),
                            runAt, String(note.prefix(80)),
                        ]
                    }))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show one task: payload, attempts, result, last error, and its ledger rows.",
            discussion: "Example: autonomy tasks show 42")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The task id.")
        var id: Int64
        @Flag(help: "Print as JSON.")
        var json = false

        func run() async throws {
            let (loaded, store) = try global.open(create: false)
            guard let task = try store.task(id: id) else { throw QueueError.taskNotFound(id) }
            let ledger = try store.ledger(forTask: id)
            if json {
                var value = task.jsonValue.objectValue ?? [:]
                value["ledger"] = .array(ledger.map(\.jsonValue))
                return printJSON(.object(value))
            }
            let configuration = loaded.configuration
            let attemptLimit = task.attemptLimit(configuration.taskType(named: task.type))
            var lines = [
                "task \(task.id)  \(task.type)  \(task.state.rawValue)",
                "priority:  \(task.priority)",
                "attempts:  \(task.attempts) of \(attemptLimit)",
                "run at:    \(display(task.runAt, configuration))",
                "created:   \(display(task.createdAt, configuration))",
            ]
            if let source = task.source { lines.append("source:    \(source)") }
            if let subject = task.subject { lines.append("subject:   \(subject)") }
            if let key = task.idempotencyKey { lines.append("key:       \(key)") }
            if let finished = task.finishedAt { lines.append("finished:  \(display(finished, configuration))") }
            if let code = task.exitCode { lines.append("exit code: \(code)") }
            if let error = task.lastError { lines.append("last error: \(error)") }
            lines.append("payload (sha256 \(task.payloadSHA256)):")
            lines.append(indent((try? JSONValue.parse(task.payload))?.prettyText ?? task.payload))
            if let result = task.result {
                lines.append("result:")
                lines.append(indent((try? JSONValue.parse(result))?.prettyText ?? result))
            }
            if let tail = task.stderrTail, !tail.isEmpty {
                lines.append("stderr (tail):")
                lines.append(indent(tail))
            }
            lines.append("ledger:")
            for entry in ledger {
                let duration = entry.durationMs.map { " \(Interval(milliseconds: $0))" } ?? ""
                let attempt = entry.attempt.map { " #\($0)" } ?? ""
                let detail = entry.detail.map { " " + $0.canonicalText } ?? ""
                lines.append("  \(display(entry.at, configuration))  \(entry.event)\(attempt)\(duration)\(detail)")
            }
            print(lines.joined(separator: "\n"))
        }

        private func indent(_ text: String) -> String {
            text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cancel",
            abstract: "Cancel a task that has not started running.",
            discussion: "Example: autonomy tasks cancel 42 --reason 'sent by hand'")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The task id.")
        var id: Int64
        @Option(help: "Who cancels (default: $AUTONOMY_OPERATOR, else the login user).")
        var by: String?
        @Option(help: "Why, for the ledger.")
        var reason: String?

        func run() async throws {
            let (_, store) = try global.open(create: false)
            let task = try store.cancel(
                taskID: id, by: try operatorName(by), reason: reason, now: try currentClock().now())
            print("task \(task.id) cancelled")
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "retry",
            abstract: "Send a dead task back to the queue with a fresh set of attempts.",
            discussion: "Example: autonomy tasks retry 42")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The task id.")
        var id: Int64
        @Option(help: "Who retries (default: $AUTONOMY_OPERATOR, else the login user).")
        var by: String?

        func run() async throws {
            let (_, store) = try global.open(create: false)
            let task = try store.retry(taskID: id, by: try operatorName(by), now: try currentClock().now())
            print("task \(task.id) queued again")
        }
    }
}
