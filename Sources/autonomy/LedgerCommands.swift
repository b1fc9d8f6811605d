import ArgumentParser
import AutonomyCore
import Foundation
import Synchronization

/// `--since 24h` as a time: now minus the duration.
func windowStart(_ text: String?, now: Int64, flag: String = "--since") throws -> Int64? {
    guard let text else { return nil }
    guard let interval = Interval(parsing: text), interval <= .days(36_600) else {
        throw CLIFailure("\(flag) \"\(text)\" is not a duration such as 24h, 7d or 30d", code: .badInput)
    }
    return now - interval.milliseconds
}

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Read, verify and export the append-only ledger of every move.",
        subcommands: [List.self, VerifyChain.self, Anchor.self, Export.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "Ledger rows, newest first.",
            discussion: "Example: autonomy ledger --type send_email --since 24h --event dead")

        @OptionGroup var global: GlobalOptions
        @Option(parsing: .unconditional, help: "Only this task's rows.") var task: Int64?
        @Option(help: "Only this task type's rows.") var type: String?
        @Option(help: "Only this event (enqueued, claimed, executed, verified, done, dead, ...).") var event: String?
        @Option(
            parsing: .unconditional, help: ArgumentHelp("Only rows newer than this, e.g. 24h.", valueName: "duration"))
        var since: String?
        @Option(parsing: .unconditional, help: "At most this many rows (default 100).") var limit: Int = 100
        @Flag(help: "Print as JSON.") var json = false

        func validate() throws {
            guard (1...1_000_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 1000000") }
            if let task, task < 1 { throw ValidationError("--task must be a task's id (1 or more)") }
            if let event, LedgerEvent(rawValue: event) == nil {
                throw ValidationError(
                    "no ledger event is called \(JSONValue.string(event).canonicalText); the events are: \(LedgerEvent.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
        }

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let now = try currentClock().now()
            let query = LedgerQuery(
                taskID: task, type: type, event: event, since: try windowStart(since, now: now), limit: limit)
            let entries: [LedgerEntry]
            entries = try await global.onEither(
                loaded, create: false, sqlite: { try $0.ledgerEntries(query) },
                postgres: { try await $0.ledgerEntries(query) })
            if json { return try printJSON(entries.map(LedgerEntryOutput.init)) }
            guard !entries.isEmpty else { return print("no ledger rows") }
            print(
                table(
                    ["ID", "AT", "TASK", "TYPE", "EVENT", "TRY", "DURATION", "DETAIL"],
                    entries.map { entry in
                        [
                            String(entry.id), display(entry.at, loaded.configuration),
                            entry.taskID.map(String.init) ?? "-",
                            entry.type ?? "-", entry.event, entry.attempt.map(String.init) ?? "",
                            entry.durationMs.map { Interval(milliseconds: $0).description } ?? "",
                            String((entry.detail?.canonicalText ?? "").prefix(90)),
                        ]
                    }))
        }
    }

    struct VerifyChain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract:
                "Check the ledger's hash chain and name the first broken row; with --anchors, against heads kept elsewhere.",
            discussion: prose(
                """
                A rewrite that re-hashes every later row keeps the chain whole; anchors kept outside the \
                database (the journal's "ledger head" lines, or 'autonomy ledger anchor' saved elsewhere) \
                still catch it. Exits 0 when everything holds, 1 when it does not.
                Examples: autonomy ledger verify
                          journalctl -o json MESSAGE_ID=\(LedgerAnchor.messageID) | autonomy ledger verify --anchors -
                """))

        @OptionGroup var global: GlobalOptions
        @Option(
            help: ArgumentHelp(
                "Anchors to check: 'id hash' lines or journalctl -o json output, from a file or '-' for stdin.",
                valueName: "file"))
        var anchors: String?
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            let anchorText = try anchors.map {
                String(decoding: try readInput($0, what: "anchors file", limit: InputLimit.batch), as: UTF8.self)
            }
            let parsed = anchorText.map(LedgerAnchor.parse)
            if let parsed, parsed.anchors.isEmpty {
                throw CLIFailure(
                    "no anchor found in \(anchors ?? "-") (expected 'id hash' lines or journalctl -o json)",
                    code: .badInput)
            }
            let loaded = try global.loadConfiguration()
            let report: ChainReport
            let checked: AnchorReport?
            (report, checked) = try await global.onEither(
                loaded, create: false,
                sqlite: { store in
                    (try store.verifyLedgerChain(), try parsed.map { try store.checkAnchors($0.anchors) })
                },
                postgres: { store in
                    let report = try await store.verifyLedgerChain()
                    guard let parsed else { return (report, nil) }
                    return (report, try await store.checkAnchors(parsed.anchors))
                })
            let failed = report.firstBroken != nil || !(checked?.mismatches.isEmpty ?? true)
            if json {
                struct Mismatch: Encodable {
                    var id: Int64
                    var problem: String
                }
                struct Output: Encodable {
                    var rows: Int
                    var ok: Bool
                    @Nullable var firstBrokenRow: Int64?
                    @Nullable var reason: String?
                    var lastHash: String
                    @Nullable var anchorsChecked: Int?
                    var anchorMismatches: [Mismatch]
                    enum CodingKeys: String, CodingKey {
                        case rows, ok
                        case firstBrokenRow = "first_broken_row"
                        case reason
                        case lastHash = "last_hash"
                        case anchorsChecked = "anchors_checked"
                        case anchorMismatches = "anchor_mismatches"
                    }
                }
                try printJSON(
                    Output(
                        rows: report.rows, ok: report.firstBroken == nil, firstBrokenRow: report.firstBroken?.id,
                        reason: report.firstBroken?.reason, lastHash: report.lastHash, anchorsChecked: checked?.checked,
                        anchorMismatches: (checked?.mismatches ?? []).map { Mismatch(id: $0.id, problem: $0.problem) }))
            } else {
                if let broken = report.firstBroken {
                    print("the chain is broken at row \(broken.id): \(broken.reason)")
                } else {
                    print("the chain holds: \(report.rows) rows, last hash \(report.lastHash)")
                }
                if let checked {
                    for mismatch in checked.mismatches { print("anchor mismatch: \(mismatch.problem)") }
                    if checked.mismatches.isEmpty { print("all \(checked.checked) anchors match") }
                }
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct Anchor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "anchor",
            abstract: "Print the ledger's head ('id hash') to keep somewhere the database's writers cannot reach.",
            discussion: "Example: autonomy ledger anchor >> /mnt/offsite/autonomy-anchors")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let found: LedgerAnchor?
            found = try await global.onEither(
                loaded, create: false, sqlite: { try $0.ledgerHead() }, postgres: { try await $0.ledgerHead() })
            guard let head = found else {
                throw CLIFailure("the ledger is empty: nothing to anchor yet", code: .notFound)
            }
            print("\(head.id) \(head.hash)")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write the ledger to stdout, oldest first, for outside tools.",
            discussion: "Example: autonomy ledger export --format csv --since 7d > ledger.csv")

        enum Format: String, ExpressibleByArgument, CaseIterable { case jsonl, csv }

        @OptionGroup var global: GlobalOptions
        @Option(help: "jsonl (one JSON object a line) or csv.") var format: Format = .jsonl
        @Option(
            parsing: .unconditional, help: ArgumentHelp("Only rows newer than this, e.g. 7d.", valueName: "duration"))
        var since: String?

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let query = LedgerQuery(since: try windowStart(since, now: try currentClock().now()))
            let output = Output(format == .csv ? LedgerEntry.csvHeader + "\n" : "")
            let csv = format == .csv
            let write: @Sendable (LedgerEntry) -> Void = { output.append((csv ? $0.csvLine : $0.canonicalLine) + "\n") }
            try await global.onEither(
                loaded, create: false, sqlite: { try $0.forEachLedgerEntry(query, write) },
                postgres: { try await $0.forEachLedgerEntry(query, write) })
            output.flush()
        }

        /// Standard output, written in blocks of 64 KB.
        final class Output: Sendable {
            private let buffer: Mutex<String>
            init(_ start: String) { buffer = Mutex(start) }

            func append(_ text: String) {
                buffer.withLock {
                    $0 += text
                    if $0.utf8.count > 1 << 16 {
                        FileHandle.standardOutput.write(Data(utf8: $0))
                        $0 = ""
                    }
                }
            }

            func flush() {
                buffer.withLock {
                    FileHandle.standardOutput.write(Data(utf8: $0))
                    $0 = ""
                }
            }
        }
    }
}

struct MapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "The declared system map beside what the ledger says: runs, success, durations, cost, shelfware.",
        discussion: "Example: autonomy map --since 30d",
        subcommands: [MapShow.self, MapCheck.self], defaultSubcommand: MapShow.self)
}

struct MapShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "The map with its figures (the default): as a table, JSON, or a Markdown document.",
        discussion: "Example: autonomy map --since 30d --markdown > MAP.md")

    @OptionGroup var global: GlobalOptions
    @Option(parsing: .unconditional, help: ArgumentHelp("The window (default 30d).", valueName: "duration")) var since:
        String = "30d"
    @Flag(help: "Print as JSON.") var json = false
    @Flag(help: "Print the map as a Markdown document, the index to keep beside the configuration.")
    var markdown = false

    func validate() throws {
        if json && markdown { throw ValidationError("--json and --markdown: choose one") }
    }

    func run() async throws {
        let file = try global.loadConfiguration()
        let now = try currentClock().now()
        let start = try windowStart(since, now: now) ?? now
        let loaded: LoadedConfiguration
        let report: SystemMapReport
        let heal: HealSummary
        let healLine: String
        switch try global.location(file) {
        case .sqlite:
            let store = try global.open(file, create: false)
            loaded = try store.applyingOverrides(to: file, now: now)
            report = try store.systemMap(configuration: loaded.configuration, since: start)
            heal = HealSummary(
                breakers: try store.openBreakers(now: now),
                lastDay: try store.healActivity(since: now - Interval.days(1).milliseconds))
            healLine = HealSummary.line(
                breakers: heal.breakers, lastDay: heal.lastDay, enabled: loaded.configuration.heal.enabled)
        case .postgres(let url):
            let store = try await global.openPostgres(url, file)
            do {
                loaded = try await store.applyingOverrides(to: file)
                report = try await store.systemMap(configuration: loaded.configuration, since: start)
                let summary = try await store.healSummary()
                heal = HealSummary(breakers: summary.breakers, lastDay: summary.lastDay)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
            healLine = HealSummary.line(
                breakers: heal.breakers, lastDay: heal.lastDay, enabled: loaded.configuration.heal.enabled)
        }
        if markdown {
            return print(
                MapDocument.markdown(report, loaded: loaded, since: since)
                    + "\n\n## Heal\n\n\(healLine)\n" + heal.breakers.map { "\n- " + $0.line }.joined())
        }
        if json {
            struct Output: Encodable {
                var since: ISOTime
                var types: [TypeStats]
                var components: [ComponentStats]
                var undeclaredTypes: [String]
                var overrides: [Override]
                var heal: HealSummary
                enum CodingKeys: String, CodingKey {
                    case since, types, components, overrides, heal
                    case undeclaredTypes = "undeclared_types"
                }
            }
            return try printJSON(
                Output(
                    since: ISOTime(start), types: report.types, components: report.components,
                    undeclaredTypes: report.undeclared, overrides: loaded.configuration.overrides, heal: heal))
        }
        print("since \(display(start, loaded.configuration)) (\(since))")
        print(
            table(
                [
                    "TYPE", "OWNER", "SAFETY", "RUNS", "DONE", "DEAD", "SUCCESS", "MEDIAN", "P95", "COST",
                    "LAST SUCCESS", "",
                ],
                report.types.map { type in
                    [
                        type.name, type.owner ?? "-", type.safety.rawValue + (type.hasVerifiers ? "" : " (unverified)"),
                        String(type.runs), String(type.done), String(type.dead),
                        type.successRate.map { String(format: "%.0f%%", $0 * 100) } ?? "-",
                        type.medianMs.map { Interval(milliseconds: $0).description } ?? "-",
                        type.p95Ms.map { Interval(milliseconds: $0).description } ?? "-",
                        String(format: "$%.2f", type.costUSD),
                        type.lastSuccess.map { display($0, loaded.configuration) } ?? "never",
                        ([
                            type.shelfware
                                ? (type.everSucceeded ? "SHELFWARE (none in window)" : "SHELFWARE (never)") : ""
                        ]
                            + type.overrides.map { "OVERRIDE: \($0)" }).filter { !$0.isEmpty }.joined(separator: "; "),
                    ]
                }))
        let hosts = Set(report.types.flatMap(\.hosts.keys)).sorted()
        if !hosts.isEmpty {
            print("\nattempts per host (PostgreSQL):")
            print(
                table(
                    ["TYPE"] + hosts.map(Visible.text),
                    report.types.filter { !$0.hosts.isEmpty }.map { type in
                        [type.name] + hosts.map { String(type.hosts[$0, default: 0]) }
                    }))
        }
        if !report.components.isEmpty {
            print("")
            print(
                table(
                    ["COMPONENT", "OWNER", "KIND", "TYPES", "RUNS", "DONE", "DEAD", "COST", ""],
                    report.components.map { c in
                        [
                            c.component.name, c.component.owner ?? "-", c.component.kind ?? "-",
                            c.component.taskTypes.joined(separator: ","), String(c.runs), String(c.done),
                            String(c.dead),
                            String(format: "$%.2f", c.costUSD), c.shelfware ? "SHELFWARE" : "",
                        ]
                    }))
        }
        if !report.undeclared.isEmpty {
            print("\nin the ledger but no longer declared: \(report.undeclared.joined(separator: ", "))")
        }
        if !loaded.configuration.overrides.isEmpty {
            print("\noverrides in effect ('autonomy overrides remove ID' ends one):")
            for override in loaded.configuration.overrides { print("  " + override.line) }
        }
        print("\nheal: " + healLine)
        for breaker in heal.breakers { print("  " + breaker.line) }
    }
}

/// The custodian alone, before a configuration is deployed.
struct MapCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the map alone: handlers missing here, tiers no model serves, owners, undeclared types.",
        discussion: prose(
            """
            Exits 1 when a gap is high or worse (the map would not work on this machine), 0 otherwise.
            Reads the ledger of the last audit.window too when the database exists.
            Example: autonomy map check --config /etc/autonomy/autonomy.json.new && mv ... (in a deploy script)
            """))

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        let loaded = try global.loadConfiguration()
        let findings: [Finding]
        switch try global.location(loaded) {
        case .sqlite(let path):
            let store = FileManager.default.fileExists(atPath: path) ? try global.open(loaded, create: false) : nil
            findings = try AutonomyStore.custodian(
                loaded, store: store, now: try currentClock().now(), window: loaded.configuration.audit.window)
        case .postgres(let url):
            // It reads only: no migration runs. Where the database cannot be read (no password in a
            // deploy script, a schema not made yet), the map is checked alone, as without a file.
            do {
                let password = try url.password(variable: loaded.configuration.store.passwordEnv)
                let store = try await PostgresStore.open(
                    url, password: password, host: loaded.configuration.worker.hostName, migrate: false)
                do {
                    findings = try await store.custodian(loaded, window: loaded.configuration.audit.window)
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
            } catch {
                printError("note: the ledger was not read (\(error)): the map is checked alone")
                findings = try AutonomyStore.custodian(
                    loaded, store: nil, now: try currentClock().now(), window: loaded.configuration.audit.window)
            }
        }
        if json {
            try printJSON(findings)
        } else if findings.isEmpty {
            print("the map holds: every handler is here, every tier has a model, everything has an owner")
        } else {
            for finding in findings { print(finding.line) }
        }
        if findings.contains(where: { $0.severity >= .high }) { throw ExitCode(1) }
    }
}

/// `map --markdown`: the map as a document an operator keeps next to the configuration.
enum MapDocument {
    static func markdown(_ report: SystemMapReport, loaded: LoadedConfiguration, since: String) -> String {
        let configuration = loaded.configuration
        func cell(_ text: String) -> String { Visible.text(text).replacingOccurrences(of: "|", with: "\\|") }
        func handler(_ type: TaskType) -> String {
            switch type.handler {
            case .exec(let exec): return "`" + cell(exec.argv.joined(separator: " ")) + "`"
            case .llm(let llm): return "llm, tier \(llm.tier.rawValue)"
            case .remediation: return "built in"
            }
        }
        var lines = [
            "# The system map", "",
            "From \(loaded.path.map { "`\(cell($0))`" } ?? "the built-in defaults"); figures over the last \(since).",
            "",
        ]
        if !report.components.isEmpty {
            lines += [
                "## Components", "", "| component | owner | kind | task types | runs | done | dead | shelfware |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c in report.components {
                lines.append(
                    "| \(cell(c.component.name)) | \(cell(c.component.owner ?? "—")) | \(cell(c.component.kind ?? "—")) | \(cell(c.component.taskTypes.joined(separator: ", "))) | \(c.runs) | \(c.done) | \(c.dead) | \(c.shelfware ? "yes" : "") |"
                )
            }
            lines.append("")
        }
        lines += [
            "## Task types", "",
            "| type | owner | safety | handler | verifiers | last success | success rate | runs | shelfware | overrides |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for stats in report.types {
            let type = configuration.taskTypes[stats.name]
            let verifiers = type.map { $0.verify.isEmpty ? "none (exit status only)" : "\($0.verify.count)" } ?? "—"
            lines.append(
                "| \(cell(stats.name)) | \(cell(stats.owner ?? "—")) | \(stats.safety.rawValue) | \(type.map(handler) ?? "—") | \(verifiers) | \(stats.lastSuccess.map { Timestamp.format($0, timeZone: configuration.timezone) } ?? "never") | \(stats.successRate.map { String(format: "%.0f%%", $0 * 100) } ?? "—") | \(stats.runs) | \(stats.shelfware ? (stats.everSucceeded ? "yes" : "yes, never succeeded") : "") | \(cell(stats.overrides.joined(separator: ", "))) |"
            )
        }
        if !report.undeclared.isEmpty {
            lines += [
                "", "In the ledger but no longer declared: \(report.undeclared.map(cell).joined(separator: ", ")).",
            ]
        }
        if !configuration.overrides.isEmpty {
            lines += ["", "## Overrides in effect", ""] + configuration.overrides.map { "- " + cell($0.line) }
        }
        return lines.joined(separator: "\n")
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print (or write atomically for node_exporter) the metrics in Prometheus text format.",
        discussion: "Example: autonomy metrics --textfile /var/lib/node_exporter/textfile/autonomy.prom")

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Write here (atomically) instead of stdout.", valueName: "path")) var textfile: String?

    func run() async throws {
        let loaded = try global.loadConfiguration()
        let text: String
        let now = try currentClock().now()
        text = try await global.onEither(
            loaded, create: false,
            sqlite: { try PrometheusMetrics.render(store: $0, configuration: loaded.configuration, now: now) },
            postgres: { try await $0.metrics(configuration: loaded.configuration) })
        if let textfile {
            do {
                try PrometheusMetrics.write(text, to: ConfigLoader.absolutePath(textfile))
            } catch {
                throw CLIFailure("\(error)", code: .cannotCreate)
            }
        } else {
            print(text, terminator: "")
        }
    }
}

struct Prune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Drop the payload and result of old finished tasks; the ledger keeps every row.",
        discussion: "Example: autonomy prune --finished-older-than 30d")

    @OptionGroup var global: GlobalOptions
    @Option(
        name: .customLong("finished-older-than"), parsing: .unconditional,
        help: ArgumentHelp("e.g. 30d", valueName: "duration"))
    var finishedOlderThan: String
    @Option(help: "Who prunes (default: $AUTONOMY_OPERATOR, else the login user).") var by: String?

    func run() async throws {
        let loaded = try global.loadConfiguration()
        let now = try currentClock().now()
        let actor = try operatorName(by)
        guard let cutoff = try windowStart(finishedOlderThan, now: now, flag: "--finished-older-than") else { return }
        let count: Int
        switch try global.location(loaded) {
        case .sqlite:
            count = try global.open(loaded, create: false).prune(finishedBefore: cutoff, by: actor, now: now)
        case .postgres(let url):
            // The age on the database's clock, as every time there.
            count = try await global.withPostgres(url, loaded) {
                try await $0.prune(olderThan: Interval(milliseconds: now - cutoff), by: actor)
            }
        }
        print("pruned \(count) finished task(s)")
    }
}
