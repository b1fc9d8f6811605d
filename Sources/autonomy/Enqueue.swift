import ArgumentParser
import AutonomyCore
import Foundation

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Add a task to the queue (or a batch of them).",
        discussion: """
            Prints the new task's id. The same --key again prints the existing id and creates nothing.
            A dangerous type's task waits for approval.
            Examples:
              autonomy enqueue daily_report --payload '{"day":"2026-11-24"}'
              autonomy enqueue send_email --payload-file mail.json --key order-1234 --source sales-bot
              autonomy enqueue --batch tasks.jsonl
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "A task type declared in the configuration.")
    var type: String?

    @OptionGroup var payloadOptions: PayloadOptions

    @Option(help: "Higher runs first (default: the type's priority).")
    var priority: Int?

    @Option(help: ArgumentHelp("Run no sooner than this from now, e.g. 10m.", valueName: "duration"))
    var delay: String?

    @Option(
        name: .customLong("run-at"),
        help: ArgumentHelp("Run no sooner than this time, e.g. 2026-12-01T09:00:00Z.", valueName: "time"))
    var runAt: String?

    @Option(name: .customLong("max-attempts"), help: "Attempts in all (default: the type's retry.max_attempts).")
    var maxAttempts: Int?

    @Option(help: ArgumentHelp("An idempotency key: the same key again returns the existing task.", valueName: "key"))
    var key: String?

    @Option(help: "Who is asking (a bridge, an agent, a script).")
    var source: String?

    @Option(help: "A short line shown in listings and approval requests.")
    var subject: String?

    @Option(
        help: ArgumentHelp(
            "JSON Lines of tasks, from a file or '-' for stdin; all are enqueued, or none.", valueName: "file"))
    var batch: String?

    @Flag(help: "Print the whole task (an array of them with --batch) as JSON.")
    var json = false

    func validate() throws {
        if batch != nil {
            guard type == nil, payloadOptions.isEmpty, priority == nil, delay == nil, runAt == nil,
                maxAttempts == nil, key == nil, source == nil, subject == nil
            else {
                throw ValidationError("--batch takes its tasks from the file: give no type or task options with it")
            }
            return
        }
        guard type != nil else { throw ValidationError("give a task type, or --batch FILE") }
        if delay != nil, runAt != nil { throw ValidationError("give --delay or --run-at, not both") }
    }

    func run() async throws {
        if let batch { return try await runBatch(batch) }
        var request = EnqueueRequest(
            type: type ?? "", priority: priority,
            maxAttempts: maxAttempts, key: key, source: source, subject: subject)
        try payloadOptions.apply(to: &request)
        if let delay {
            guard let interval = Interval(parsing: delay) else {
                throw CLIFailure("--delay \"\(delay)\" is not a duration such as 30s, 10m, 24h or 7d", code: .badInput)
            }
            request.delay = interval
        }
        if let runAt {
            guard let time = Timestamp.parse(runAt) else {
                throw CLIFailure("--run-at \"\(runAt)\" is not a time such as 2026-12-01T09:00:00Z", code: .badInput)
            }
            request.runAt = time
        }
        let (loaded, store) = try global.open()
        let outcome = try store.enqueue(request, configuration: loaded.configuration, now: try currentClock().now())
        if case .created(let task) = outcome, task.state == .awaitingApproval {
            printError("note: task \(task.id) (\(task.type)) is rated dangerous: it waits for an operator's approval")
        }
        if case .existing(let task) = outcome {
            printError(
                "note: idempotency key \"\(key ?? "")\" already names task \(task.id) (\(task.state.rawValue)); nothing enqueued"
            )
        }
        if json { printJSON(outcome.task.jsonValue) } else { print(outcome.task.id) }
        await alertNow(store: store, configuration: loaded.configuration, tasks: [outcome.task.id])
    }

    /// The task is stored; now tell the operator at once about what needs them. A failure here
    /// changes nothing: work-once retries the alert.
    private func alertNow(store: AutonomyStore, configuration: Configuration, tasks: [Int64]) async {
        guard !configuration.notify.channels.isEmpty else { return }
        do {
            let delivery = AlertDelivery(store: store, configuration: configuration, clock: try currentClock())
            for report in try await delivery.deliverDue(budget: .seconds(30), tasks: Set(tasks)) {
                if let error = report.error {
                    printError("warning: alert via \(report.channel.rawValue) failed: \(error) (work-once retries it)")
                }
            }
        } catch {
            printError("warning: alerts not sent now: \(error) (work-once retries them)")
        }
    }

    private func runBatch(_ source: String) async throws {
        let data = try readInput(source, what: "batch file")
        let (loaded, store) = try global.open()
        let result = try store.enqueueBatch(
            jsonLines: data, configuration: loaded.configuration, now: try currentClock().now(), keepTasks: json)
        if json {
            printJSON(.array(result.tasks.map(\.jsonValue)))
        } else {
            var text = ""
            text.reserveCapacity(result.ids.count * 8)
            for id in result.ids { text += "\(id)\n" }
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        await alertNow(store: store, configuration: loaded.configuration, tasks: result.ids)
        if result.existing > 0 {
            printError(
                "note: \(result.existing) of \(result.ids.count) tasks already existed under their keys; \(result.ids.count - result.existing) enqueued"
            )
        }
    }
}

/// Reads a file, or stdin for "-".
func readInput(_ path: String, what: String) throws -> Data {
    if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
    guard let data = FileManager.default.contents(atPath: path) else {
        let exists = FileManager.default.fileExists(atPath: path)
        throw CLIFailure(
            exists ? "cannot read the \(what) \(path) (check its permissions)" : "no such \(what): \(path)",
            code: .notFound)
    }
    return data
}
