import ArgumentParser
import AutonomyCore
import Foundation

struct HealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heal",
        abstract: "The self-healing executor: apply the fixes the operator trusts, within guardrails.",
        discussion: prose(
            """
            Off by default (heal.enabled). A cycle checks the last heal.window (1h), judges the
            automatic fixes that settled, and applies the fix proposals that are due: approved ones,
            and those a heal.auto_apply entry covers and every guardrail allows (breaker per target,
            hourly and daily limit, backoff, systemic stop). It never approves or rejects anything.
            The systemd timer runs it every 15 minutes.
            Example: autonomy heal --dry-run
            """),
        subcommands: [Run.self, Reset.self], defaultSubcommand: Run.self)

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run", abstract: "One heal cycle (the default).",
            discussion: prose(
                """
                Exits 0 when the cycle ran, whatever it found. While heal.enabled is false it only
                reports, as --dry-run does: nothing is written.
                Example: autonomy heal --json
                """))

        @OptionGroup var global: GlobalOptions
        @Flag(name: .customLong("dry-run"), help: "Change nothing; say what would be done.") var dryRun = false
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            // It may run remediation commands: never by rules someone else could have written.
            let loaded = try global.loadConfiguration()
            try loaded.requireTrusted()
            let clock = try currentClock()
            var options = Worker.Options()
            options.clock = clock
            options.logger = makeLogger("autonomy.heal")
            func environment(_ database: String) -> [String: String] {
                var environment = ["AUTONOMY_DATABASE": database]
                if let path = loaded.path { environment["AUTONOMY_CONFIG"] = path }
                return environment
            }
            let report = try await global.onEither(
                loaded, create: false,
                sqlite: { store in
                    try store.requireOwnSchema()
                    options.handlerEnvironment = environment(store.path)
                    options.alerts = AlertDelivery(store: store, configuration: loaded.configuration, clock: clock)
                    let before = try store.ledgerHead()
                    let report = try await Healer(store: store, loaded: loaded, options: options).run(dryRun: dryRun)
                    anchorLedgerHead(try store.ledgerHead(), before: before)
                    return report
                },
                postgres: { store in
                    // The URL holds no password: a nested autonomy call needs its own.
                    options.handlerEnvironment = environment(store.url.description)
                    options.alerts = AlertDelivery(store: store, configuration: loaded.configuration, clock: clock)
                    let before = try await store.ledgerHead()
                    let report = try await Healer(postgres: store, loaded: loaded, options: options).run(dryRun: dryRun)
                    anchorLedgerHead(try await store.ledgerHead(), before: before)
                    return report
                })
            if json { return try printJSON(report) }
            print(Self.text(report))
        }

        static func text(_ report: HealReport) -> String {
            var lines: [String] = []
            let mode =
                !report.enabled
                ? "heal is disabled (heal.enabled: false): reporting only, nothing was changed"
                : report.dryRun ? "dry run: nothing was changed" : "heal cycle"
            lines.append(
                "\(mode); window \(Timestamp.format(report.windowStart.milliseconds)) to \(Timestamp.format(report.windowEnd.milliseconds))"
            )
            let health = report.systemic
            let systemic =
                "\(health.failing.count) of \(health.active.count) active types failing"
                + (health.failing.isEmpty ? "" : " (\(health.failing.joined(separator: ", ")))")
            switch (health.stopped, health.change) {
            case (true, "started"?):
                lines.append(
                    "SYSTEMIC STOP \(report.enabled && !report.dryRun ? "started" : "would start"): \(systemic): nothing automatic runs"
                )
            case (true, _): lines.append("SYSTEMIC STOP in force: \(systemic): nothing automatic runs")
            case (false, "ended"?):
                lines.append("systemic stop \(report.enabled && !report.dryRun ? "ended" : "would end"): \(systemic)")
            default: lines.append("systemic: \(systemic)")
            }
            lines.append(report.findings.isEmpty ? "no finding in the window" : "findings:")
            lines += report.findings.map { "  " + $0.line }
            if !report.judged.isEmpty {
                lines.append("fixes judged after settling:")
                lines += report.judged.map { "  " + $0.line }
            }
            for breaker in report.breakersOpened { lines.append("breaker opened: " + breaker.line) }
            for breaker in report.breakersClosed { lines.append("breaker closed (cool-down): " + breaker.line) }
            let opened = Set(report.breakersOpened.map(\.id))
            for breaker in report.breakersOpen where !opened.contains(breaker.id) { lines.append(breaker.line) }
            if !report.decisions.isEmpty {
                lines.append("decisions:")
                lines += report.decisions.map { "  " + $0.line }
            }
            if report.attempts.isEmpty, !report.due.isEmpty {
                let ids = report.due.map(String.init).joined(separator: ", ")
                lines.append(
                    report.enabled
                        ? "fix proposals due, to apply: tasks \(ids)"
                        : "fix proposals due: tasks \(ids) (work-once applies the approved ones)")
            }
            for skipped in report.notRun {
                lines.append(
                    "not applied: task \(skipped.id): \(skipped.newState.rawValue): \(Visible.text(skipped.reason))")
            }
            for attempt in report.attempts {
                let state = attempt.outcome?.state.rawValue ?? "lease lost"
                let error = attempt.outcome?.error.map { " — \(Visible.text($0))" } ?? ""
                lines.append("applied task \(attempt.taskID): \(state)\(error)")
            }
            return lines.joined(separator: "\n")
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset", abstract: "Close a target's open breaker: automatic fixes on it may run again.",
            discussion: prose(
                """
                Exits 66 when no breaker is open for the target (the open ones are named).
                Example: autonomy heal reset send_email
                """))

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The breaker's target: a task type, or the finding kind of a system-wide one.")
        var target: String
        @Option(help: "Who resets it (default: $AUTONOMY_OPERATOR, else the login user).") var by: String?

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let actor = try operatorName(by)
            let now = try currentClock().now()
            do {
                let closed = try await global.onEither(
                    loaded, create: false, sqlite: { try $0.resetBreaker(target: target, by: actor, now: now) },
                    postgres: { try await $0.resetBreaker(target: target, by: actor) })
                for breaker in closed {
                    print(
                        "closed breaker \(breaker.id) for \(Visible.text(breaker.target)): automatic fixes on it may run again"
                    )
                }
            } catch let error as NoOpenBreaker {
                throw CLIFailure(error.description, code: .notFound)
            }
        }
    }
}
