import ArgumentParser
import AutonomyCore
import Foundation

/// Who asked for what: `sources`, `subjects`, `subject NAME`.
struct SourcesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sources",
        abstract: "Every producer: its tasks, success rate, cost, dangerous requests and last activity.",
        discussion: prose(
            """
            A producer is a task's source: the gate's user, or the token's name over HTTP. Listed
            producers with no task yet are shown too. Example: autonomy sources --json
            """))

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        let loaded = try global.loadConfiguration()
        let sources: [SourceSummary]
        sources = try await global.onEither(
            loaded, create: false, sqlite: { try $0.sources(configuration: loaded.configuration) },
            postgres: { try await $0.sources(configuration: loaded.configuration) })
        if json { return try printJSON(sources) }
        if sources.isEmpty { return print("no producer yet (producers.users in the map)") }
        for source in sources {
            let rate = source.successRate.map { String(format: "%.0f%% ok", $0 * 100) } ?? "no result yet"
            let dangerous = source.dangerous.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
            print(
                "\(Visible.text(source.name))\(source.listed ? "" : " (not under producers)"): \(source.tasks) task\(source.tasks == 1 ? "" : "s"), \(rate), "
                    + String(format: "$%.2f", source.costUSD)
                    + (dangerous.isEmpty ? "" : "; dangerous: " + dangerous.joined(separator: ", "))
                    + (source.lastActivity.map { "; last \(Timestamp.format($0.milliseconds))" } ?? ""))
        }
    }
}

struct SubjectsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subjects",
        abstract: "Every subject (customer, contact, thread) tasks named, last touched first.",
        discussion: "Example: autonomy subjects --search acme")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false
    @Option(help: "Only subjects whose name holds this text (any case).") var search: String?
    @Option(parsing: .unconditional, help: "At most this many (1 to 10000).") var limit = 200

    func run() async throws {
        guard (1...10_000).contains(limit) else {
            throw CLIFailure("--limit \(limit) is not from 1 to 10000", code: .badInput)
        }
        let loaded = try global.loadConfiguration()
        let subjects: [SubjectSummary]
        subjects = try await global.onEither(
            loaded, create: false, sqlite: { try $0.subjects(search: search, limit: limit) },
            postgres: { try await $0.subjects(search: search, limit: limit) })
        if json { return try printJSON(subjects) }
        if subjects.isEmpty {
            return print(
                search == nil ? "no task names a subject yet" : "no subject holds \"\(Visible.text(search!))\"")
        }
        for subject in subjects {
            print(
                "\(Visible.text(subject.name)): \(subject.tasks) tasks (\(subject.done) done, \(subject.dead) dead), "
                    + String(format: "$%.2f", subject.costUSD) + ", "
                    + "\(subject.types.map(Visible.text).joined(separator: ", ")); last \(Timestamp.format(subject.last.milliseconds))"
            )
        }
    }
}

struct SubjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subject",
        abstract: "Everything done about one subject, in time order across types, with its cost.",
        discussion: prose(
            """
            What the operator reads before calling that customer. Exits 66 when no task names it.
            Example: autonomy subject "client X" --since 30d
            """))

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The subject, exactly as tasks name it.") var name: String
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Only tasks enqueued within this (such as 30d).", valueName: "duration"))
    var since: String?
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        let start = try windowStart(since, now: try currentClock().now())
        let loaded = try global.loadConfiguration()
        let found: SubjectHistory?
        found = try await global.onEither(
            loaded, create: false, sqlite: { try $0.subject(name, since: start) },
            postgres: { try await $0.subject(name, since: start) })
        guard let history = found else {
            throw CLIFailure(
                "no task names the subject \"\(Visible.text(name))\" (autonomy subjects lists them)", code: .notFound)
        }
        if json { return try printJSON(history) }
        print(
            "\(Visible.text(history.subject)): \(history.tasks.count) tasks, "
                + String(format: "$%.2f", history.costUSD)
                + (history.since.map { " since \(Timestamp.format($0.milliseconds))" } ?? ""))
        for task in history.tasks {
            print(
                "  \(Timestamp.format(task.createdAt.milliseconds))  #\(task.id) \(Visible.text(task.type)) \(task.state)"
                    + (task.source.map { " from \(Visible.text($0))" } ?? "")
                    + (task.costUSD > 0 ? String(format: " $%.2f", task.costUSD) : "")
                    + (task.decision.map { " (\(Visible.text($0)))" } ?? "")
                    + (task.lastError.map { ": \(Visible.text(String($0.prefix(120))))" } ?? ""))
        }
    }
}
