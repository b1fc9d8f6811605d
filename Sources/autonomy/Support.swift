import ArgumentParser
import AutonomyCore
import Foundation
import Logging

/// Where the configuration and the database are; every subcommand takes these.
/// `QuickCommandLine` reads it too. An option added or renamed here must be added there
/// (`QuickCommandLineTests` fails until it is); one given a `transform` or another parsing
/// strategy must be left to the parser there.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The configuration file (default: $AUTONOMY_CONFIG, else ./autonomy.json, else built-in defaults).",
            valueName: "file"))
    var config: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The database file (default: $AUTONOMY_DATABASE, else the config's \"database\", else ./autonomy.db).",
            valueName: "file"))
    var database: String?

    /// Loads the configuration, printing its warnings to stderr.
    func loadConfiguration(quiet: Bool = false) throws -> LoadedConfiguration {
        let loaded = try ConfigLoader.load(explicitPath: config)
        if !quiet {
            for warning in loaded.warnings { printError("warning: \(warning)") }
        }
        return loaded
    }

    /// Opens the SQLite file an already loaded configuration names (commands call it on the
    /// SQLite side of `location`); a PostgreSQL URL is refused, changing nothing.
    func open(_ loaded: LoadedConfiguration, create: Bool = true) throws -> AutonomyStore {
        switch try location(loaded) {
        case .sqlite(let path):
            return try AutonomyStore(path: path, settings: loaded.configuration.store, create: create)
        case .postgres:
            throw StoreError.notOnPostgres("this command")
        }
    }

    /// Where the database is: `--database`, `$AUTONOMY_DATABASE`, the config's `database`.
    func location(_ loaded: LoadedConfiguration) throws -> DatabaseLocation {
        try ConfigLoader.databaseLocation(flag: database, loaded: loaded)
    }

    /// Runs `body` on a PostgreSQL connection, closed afterwards whatever happens.
    func withPostgres<T: Sendable>(
        _ url: PostgresURL, _ loaded: LoadedConfiguration, _ body: (PostgresStore) async throws -> T
    ) async throws -> T {
        let store = try await openPostgres(url, loaded)
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }

    /// Runs `sqlite` on the SQLite file the configuration names, or `postgres` on a connection to
    /// its PostgreSQL database (closed afterwards whatever happens).
    func onEither<T: Sendable>(
        _ loaded: LoadedConfiguration, create: Bool = true, sqlite: (AutonomyStore) async throws -> T,
        postgres: (PostgresStore) async throws -> T
    ) async throws -> T {
        switch try location(loaded) {
        case .sqlite: return try await sqlite(try open(loaded, create: create))
        case .postgres(let url): return try await withPostgres(url, loaded, postgres)
        }
    }

    /// Connects to a PostgreSQL database (migrating it if needed), with the password from
    /// `store.password_env`, `PGPASSWORD` or the password file.
    func openPostgres(_ url: PostgresURL, _ loaded: LoadedConfiguration) async throws -> PostgresStore {
        let password = try url.password(variable: loaded.configuration.store.passwordEnv)
        return try await PostgresStore.open(url, password: password, host: loaded.configuration.worker.hostName)
    }
}

/// A refusal the command itself decided on, with its exit code.
struct CLIFailure: Error {
    var message: String
    var code: ExitCode
    init(_ message: String, code: ExitCode) {
        self.message = message
        self.code = code
    }
}

extension ExitCode {
    /// The request is valid but the task's current state does not allow it.
    static let refused = ExitCode(1)
    static let usage = ExitCode(64)
    static let badInput = ExitCode(65)
    static let notFound = ExitCode(66)
    static let unavailable = ExitCode(69)
    static let internalError = ExitCode(70)
    static let cannotCreate = ExitCode(73)
    static let databaseUnusable = ExitCode(74)
    static let databaseBusy = ExitCode(75)
    /// Not permitted: an unsigned or wrongly signed decision, a producer asking beyond its rights.
    static let notPermitted = ExitCode(77)
    static let configError = ExitCode(78)

    /// The documented code for an error from the core; nil for errors the core does not raise.
    static func forCore(_ error: any Error) -> ExitCode? {
        switch error {
        case let error as QueueError:
            switch error {
            case .taskNotFound: return .notFound
            case .notCancellable, .notRetryable, .payloadPruned: return .refused
            default: return .badInput
            }
        case let error as StoreError:
            switch error {
            case .busy: return .databaseBusy
            case .missing: return .notFound
            case .notOnPostgres: return .unavailable
            default: return .databaseUnusable
            }
        case is ConfigError:
            return .configError
        case is ForeignSchema:
            return .databaseUnusable
        case is TransitionRefused:
            return .refused  // another process moved the task first
        case is NoVerifier:
            return .configError
        case let error as TrustError:
            switch error {
            case .rateLimited: return .databaseBusy  // EX_TEMPFAIL: try again later
            case .batchLine(_, let inner): return forCore(inner)
            case .signersUnusable: return .configError
            default: return .notPermitted
            }
        case let error as GateError:
            switch error {
            case .unreachable: return .unavailable
            default: return .usage
            }
        case let error as ApprovalError:
            switch error {
            case .notFound, .notPending: return .notFound
            case .missingReason: return .usage
            case .alreadyDecided, .expired, .taskNotWaiting, .invalidToken, .payloadAltered: return .refused
            }
        default:
            return nil
        }
    }
}

/// A line for the person (or the journal) reading stderr: under systemd, `error:` lines carry
/// priority 3 and `warning:` lines 4 (see `Journal`).
func printError(_ line: String) {
    Journal.write(line)
}

/// Where "now" comes from. Debug builds (the ones `swift test` runs) let end-to-end tests shift it
/// with `AUTONOMY_TEST_CLOCK_OFFSET` (e.g. "90s"), so a lease or an approval can expire without
/// waiting; a release build has no such hook. A shifted clock is announced on stderr every time.
func currentClock() throws -> any WallClock {
    #if AUTONOMY_TEST_HOOKS
        guard let text = ProcessEnvironment.variables["AUTONOMY_TEST_CLOCK_OFFSET"], !text.isEmpty else {
            return SystemClock()
        }
        let negative = text.hasPrefix("-")
        let body = negative || text.hasPrefix("+") ? String(text.dropFirst()) : text
        guard let interval = Interval(parsing: body), interval <= .days(3660) else {
            throw CLIFailure("AUTONOMY_TEST_CLOCK_OFFSET \"\(text)\" is not a duration such as \"90s\"", code: .usage)
        }
        printError("warning: AUTONOMY_TEST_CLOCK_OFFSET=\(text) shifts the clock; it is for tests only")
        return OffsetClock(offset: Interval(milliseconds: negative ? -interval.milliseconds : interval.milliseconds))
    #else
        return SystemClock()
    #endif
}

#if AUTONOMY_TEST_HOOKS
    /// A clock shifted by a fixed offset from the real one: debug builds use it when
    /// `AUTONOMY_TEST_CLOCK_OFFSET` is set, so end-to-end tests can let a lease expire without
    /// waiting. Release builds have no such clock.
    struct OffsetClock: WallClock {
        var offset: Interval
        func now() -> Int64 { SystemClock().now() + offset.milliseconds }
    }
#endif

/// Who is acting, as a label for cancel and retry: `--by`, else `AUTONOMY_OPERATOR`, else the
/// login user. (Decisions are signed instead: see `approve`.)
func operatorName(_ flag: String?) throws -> String {
    if let flag {
        let name = flag.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 }) else {
            throw CLIFailure("--by needs a name", code: .usage)
        }
        return name
    }
    if let name = ProcessEnvironment.variables["AUTONOMY_OPERATOR"], !name.isEmpty { return name }
    return try loginName()
}

/// Logs go to stderr, with their priority under the journal; `AUTONOMY_LOG_LEVEL` (trace …
/// critical, default warning) sets how much.
func makeLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { AutonomyLogHandler(label: $0) }
    logger.logLevel = configuredLogLevel
    return logger
}

/// `AUTONOMY_LOG_LEVEL`, read once; a value that is no level is said once, not ignored in silence.
private let configuredLogLevel: Logger.Level = {
    guard let text = ProcessEnvironment.variables["AUTONOMY_LOG_LEVEL"], !text.isEmpty else { return .warning }
    if let level = Logger.Level(rawValue: text.lowercased()) { return level }
    let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
    printError("warning: AUTONOMY_LOG_LEVEL=\(Visible.text(text)) is not a level (\(levels)); logging at warning")
    return .warning
}()

func printJSON(_ value: some Encodable) throws {
    print(try JSONOutput.text(value))
}

/// "3m12s ago", "in 10m".
func relative(_ time: Int64, now: Int64) -> String {
    let delta = Interval.between(now, time)
    return delta.milliseconds >= 0 ? "in \(delta)" : "\(Interval(milliseconds: -delta.milliseconds)) ago"
}

/// A time as the operator reads it: in the configured zone.
func display(_ time: Int64?, _ configuration: Configuration) -> String {
    guard let time else { return "-" }
    return Timestamp.format(time, timeZone: configuration.timezone)
}

/// Lays rows out in aligned columns.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
        for (index, cell) in row.enumerated() where index < widths.count {
            widths[index] = max(widths[index], cell.count)
        }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

extension TaskState: ExpressibleByArgument {}

/// `--payload JSON` or `--payload-file F|-`: how `enqueue` and `firewall check` take a payload.
/// `QuickCommandLine` reads it too. An option added or renamed here must be added there
/// (`QuickCommandLineTests` fails until it is); one given a `transform` or another parsing
/// strategy must be left to the parser there.
struct PayloadOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The payload, as JSON (default: {}).", valueName: "json"))
    var payload: String?

    @Option(
        name: .customLong("payload-file"),
        help: ArgumentHelp("Read the payload from a file, or '-' for stdin.", valueName: "file"))
    var payloadFile: String?

    var isEmpty: Bool { payload == nil && payloadFile == nil }

    func validate() throws {
        if payload != nil, payloadFile != nil { throw ValidationError("give --payload or --payload-file, not both") }
    }

    /// Puts the payload into `request`; a file is read as raw bytes and refused if not UTF-8 JSON.
    func apply(to request: inout EnqueueRequest) throws {
        request.payload = payload ?? "{}"
        if let payloadFile {
            try request.setPayload(json: readInput(payloadFile, what: "payload file", limit: InputLimit.payload))
        }
    }
}

/// A command's discussion as the parser should wrap it: the lines of each source paragraph joined
/// (the parser wraps them to the terminal; a break kept from the source splits sentences), a blank
/// line kept, and each "Example", command (`autonomy …`, `sudo …`) or indented line on a line of its own.
func prose(_ text: String) -> String {
    var lines: [String] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if let last = lines.last, !last.isEmpty, !line.isEmpty, !isVerbatim(Substring(last)), !isVerbatim(line) {
            lines[lines.count - 1] = last.hasSuffix(" ") ? last + line : last + " " + line
        } else {
            lines.append(String(line))
        }
    }
    return lines.joined(separator: "\n")
}

/// A line that keeps its own line: an example, a command, or an indented one.
private func isVerbatim(_ line: Substring) -> Bool {
    line.hasPrefix("Example") || line.hasPrefix(" ") || line.hasPrefix("autonomy ") || line.hasPrefix("sudo ")
}
