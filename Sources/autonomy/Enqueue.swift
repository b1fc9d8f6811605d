import ArgumentParser
import AutonomyCore
import Foundation

/// `QuickCommandLine` reads it too. An option added or renamed here must be added there
/// (`QuickCommandLineTests` fails until it is); one given a `transform` or another parsing
/// strategy must be left to the parser there.
struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Add a task to the queue (or a batch of them).",
        discussion: prose(
            """
            Prints the new task's id. The same --key again prints the existing id and creates nothing.
            A dangerous type's task waits for approval.
            Examples:
              autonomy enqueue daily_report --payload '{"day":"2026-11-24"}'
              autonomy enqueue send_email --payload-file mail.json --key order-1234 --source sales-bot
              autonomy enqueue --batch tasks.jsonl
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var gate: GateOptions

    @Argument(help: "A task type declared in the configuration.")
    var type: String?

    @OptionGroup var payloadOptions: PayloadOptions

    /// Unconditional, so that `--priority -5` is a value and not an unknown option.
    @Option(parsing: .unconditional, help: "Higher runs first; may be negative (default: the type's priority).")
    var priority: Int?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Run no sooner than this from now, e.g. 10m.", valueName: "duration"))
    var delay: String?

    @Option(
        name: .customLong("run-at"), parsing: .unconditional,
        help: ArgumentHelp("Run no sooner than this time, e.g. 2026-12-01T09:00:00Z.", valueName: "time"))
    var runAt: String?

    @Option(
        name: .customLong("max-attempts"), parsing: .unconditional,
        help: "Attempts in all (default: the type's retry.max_attempts).")
    var maxAttempts: Int?

    @Option(help: ArgumentHelp("An idempotency key: the same key again returns the existing task.", valueName: "key"))
    var key: String?

    @Option(help: "Who is asking (a bridge, an agent, a script); through the gate, always the caller's Unix user.")
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
        var request = GateRequest(verb: .enqueue)
        request.json = json
        if let batch {
            request.batch = try readInput(batch, what: "batch file", limit: InputLimit.batch)
        } else {
            request.type = type
            request.payload = payloadOptions.payload
            if let file = payloadOptions.payloadFile {
                request.payloadBytes = try readInput(file, what: "payload file", limit: InputLimit.payload)
            }
            (request.priority, request.maxAttempts) = (priority, maxAttempts)
            (request.delay, request.runAt) = (delay, runAt)
            (request.key, request.source, request.subject) = (key, source, subject)
        }
        try await perform(request, global, gate, create: true)
    }
}

/// The most a command reads from one input: a payload may be at most 64 MiB (the largest
/// `queue.max_payload_bytes`), a batch at most 256 MiB. `/dev/zero` is refused, not swallowed.
enum InputLimit {
    static let payload = 64 << 20
    static let batch = 256 << 20
    static let prompt = 16 << 20
}

/// Reads a file, or stdin for "-", up to `limit` bytes; one byte more is refused.
func readInput(_ path: String, what: String, limit: Int) throws -> Data {
    let handle: FileHandle
    if path == "-" {
        handle = FileHandle.standardInput
    } else {
        var folder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &folder), folder.boolValue {
            throw CLIFailure("the \(what) \(path) is a folder, not a file", code: .notFound)
        }
        guard let opened = FileHandle(forReadingAtPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw CLIFailure(
                exists ? "cannot read the \(what) \(path) (check its permissions)" : "no such \(what): \(path)",
                code: .notFound)
        }
        handle = opened
    }
    var data = Data()
    while data.count <= limit {
        let chunk: Data
        do {
            chunk = try handle.read(upToCount: min(1 << 20, limit + 1 - data.count)) ?? Data()
        } catch {
            throw CLIFailure("cannot read the \(what) \(path): \(error.localizedDescription)", code: .notFound)
        }
        if chunk.isEmpty { return data }
        data.append(chunk)
    }
    throw CLIFailure("the \(what) is over \(limit >> 20) MiB; nothing was read further", code: .badInput)
}
