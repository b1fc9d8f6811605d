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
            discussion: prose(
                """
                Through the gate, a producer sees its own tasks only.
                Example: autonomy tasks list --state dead --type send_email
                """))

        @OptionGroup var global: GlobalOptions
        @OptionGroup var gate: GateOptions
        @Option(
            help: ArgumentHelp(
                "Only this state: \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "state"))
        var state: TaskState?
        @Option(help: "Only this task type.")
        var type: String?
        @Option(parsing: .unconditional, help: "At most this many (default 50).")
        var limit: Int = 50
        @Flag(help: "Print as JSON.")
        var json = false

        func validate() throws {
            guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 100000") }
        }

        func run() async throws {
            var request = GateRequest(verb: .tasksList)
            (request.state, request.type, request.limit, request.json) = (state?.rawValue, type, limit, json)
            try await perform(request, global, gate)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show one task: payload, attempts, result, last error, and its ledger rows.",
            discussion: "Example: autonomy tasks show 42")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var gate: GateOptions
        @Argument(help: "The task id.")
        var id: Int64
        @Flag(help: "Print as JSON.")
        var json = false

        func run() async throws {
            var request = GateRequest(verb: .tasksShow)
            (request.id, request.json) = (id, json)
            try await perform(request, global, gate)
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
            let actor = try operatorName(by)
            let loaded = try global.loadConfiguration()
            let task: TaskRecord
            let now = try currentClock().now()
            task = try await global.onEither(
                loaded, create: false, sqlite: { try $0.cancel(taskID: id, by: actor, reason: reason, now: now) },
                postgres: { try await $0.cancel(taskID: id, by: actor, reason: reason) })
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
            let actor = try operatorName(by)
            let loaded = try global.loadConfiguration()
            let task: TaskRecord
            let now = try currentClock().now()
            task = try await global.onEither(
                loaded, create: false, sqlite: { try $0.retry(taskID: id, by: actor, now: now) },
                postgres: { try await $0.retry(taskID: id, by: actor) })
            print("task \(task.id) queued again")
        }
    }
}
