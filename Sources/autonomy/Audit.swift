import ArgumentParser
import AutonomyCore
import Foundation

extension Severity: ExpressibleByArgument {}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The Oracle: what drifted, broke, got stuck or left the map over the last window.",
        discussion: prose(
            """
            Compares the window (default audit.window, 7d) with the one before it, and saves the run.
            Exits 0 when it ran, whatever it found; with --fail-on, 1 when a finding is that severe.
            With --notify, the operator is alerted with the findings' counts and kinds (never their text).
            Findings propose fixes from a fixed catalog as apply_remediation tasks, each waiting for a
            signed approval (autonomy approvals); --no-proposals only reports.
            With audit.explain, a free model writes a short summary at the top (never required).
            Example: autonomy audit --window 7d --markdown
            """))

    @OptionGroup var global: GlobalOptions
    @Option(
        parsing: .unconditional, help: ArgumentHelp("The window to read (default audit.window).", valueName: "duration")
    )
    var window: String?
    @Flag(help: "Print as JSON.") var json = false
    @Flag(help: "Print as Markdown.") var markdown = false
    @Option(
        name: .customLong("fail-on"),
        help: ArgumentHelp("Exit 1 when a finding is this severe or worse.", valueName: "critical|high|medium|low|info")
    )
    var failOn: Severity?
    @Flag(help: "Alert the operator (notify channels) with the findings' counts and kinds.")
    var notify = false
    @Flag(name: .customLong("no-proposals"), help: "Report only: enqueue no fix proposals.")
    var noProposals = false

    func validate() throws {
        if json && markdown { throw ValidationError("--json and --markdown: choose one") }
    }

    func run() async throws {
        let length: Interval? = try window.map { text in
            guard let interval = Interval(parsing: text), interval >= .hours(1), interval <= .days(366) else {
                throw CLIFailure("--window \"\(text)\" is not a duration from 1h to 366d, such as 7d", code: .badInput)
            }
            return interval
        }
        let loaded = try global.loadConfiguration()
        let clock = try currentClock()
        let report = try await global.onEither(
            loaded, create: false, sqlite: { try await audit(loaded, store: $0, clock: clock, length) },
            postgres: { try await audit(loaded, store: $0, clock: clock, length) })
        if let failOn, let worst = report.worst, worst >= failOn { throw ExitCode(1) }
    }

    /// Runs the audit on an SQLite file, alerts and prints.
    private func audit(_ loaded: LoadedConfiguration, store: AutonomyStore, clock: any WallClock, _ length: Interval?)
        async throws -> AuditReport
    {
        var report = try store.audit(
            loaded: loaded, now: clock.now(), window: length, notify: notify, propose: !noProposals)
        if loaded.configuration.audit.explain {
            report.explanation = await store.explain(
                report, gateway: ModelGateway(store: store, configuration: loaded.configuration, clock: clock))
        }
        try await deliver(report, loaded, store: store, clock: clock)
        return report
    }

    /// Runs the audit on PostgreSQL (every host's rows), alerts and prints.
    private func audit(_ loaded: LoadedConfiguration, store: PostgresStore, clock: any WallClock, _ length: Interval?)
        async throws -> AuditReport
    {
        var report = try await store.audit(loaded: loaded, window: length, notify: notify, propose: !noProposals)
        if loaded.configuration.audit.explain {
            let gateway = ModelGateway(store: store, configuration: loaded.configuration, clock: clock)
            let committed = try? await store.budget(
                settings: loaded.configuration.gateway, timeZone: loaded.configuration.timezone
            ).committedUSD
            let text = await AutonomyStore.explanation(report, gateway: gateway, committedUSD: committed)
            try? await store.saveExplanation(text, runID: report.runID)
            report.explanation = text
        }
        try await deliver(report, loaded, store: store, clock: clock)
        return report
    }

    /// Sends the report's alert (with --notify), then prints the report.
    private func deliver(
        _ report: AuditReport, _ loaded: LoadedConfiguration, store: any NotificationStore, clock: any WallClock
    ) async throws {
        if notify {
            if loaded.configuration.notify.channels.isEmpty {
                printError("warning: --notify, but no notify channel is configured (notify.command or notify.webhook)")
            }
            // A failure changes nothing: the alert stays queued and work-once retries it.
            let delivery = AlertDelivery(store: store, configuration: loaded.configuration, clock: clock)
            for delivered in (try? await delivery.deliverDue(budget: .seconds(30))) ?? [] {
                if let error = delivered.error {
                    printError(
                        "warning: alert via \(delivered.channel.rawValue) failed: \(error) (work-once retries it)")
                }
            }
        }
        if json {
            try printJSON(report)
        } else if markdown {
            print(Self.markdown(report))
        } else {
            if let explanation = report.explanation { print(Visible.lines(explanation), terminator: "\n\n") }
            print(report.headline)
            for finding in report.findings { print(finding.line) }
            if !report.proposals.isEmpty {
                print("\nProposals (approve or reject each: autonomy approvals):")
                for proposal in report.proposals { print("  " + proposal.line) }
            }
        }
    }

    static func markdown(_ report: AuditReport) -> String {
        var lines = ["# Audit \(report.runID)", ""]
        if let explanation = report.explanation {
            lines += Visible.lines(explanation).split(separator: "\n").map { "> " + $0 } + [""]
        }
        lines += ["**\(Visible.text(report.headline))**", ""]
        if !report.findings.isEmpty { lines += ["| severity | kind | finding | tasks |", "|---|---|---|---|"] }
        for finding in report.findings {
            let title = Visible.text(finding.title).replacingOccurrences(of: "|", with: "\\|")
            lines.append(
                "| \(finding.severity.rawValue) | `\(finding.kind.rawValue)` | \(title) | \(finding.tasks.map(String.init).joined(separator: ", ")) |"
            )
        }
        if !report.proposals.isEmpty {
            lines += ["", "## Proposals", ""]
            lines += report.proposals.map { "- " + Visible.text($0.line).replacingOccurrences(of: "|", with: "\\|") }
        }
        return lines.joined(separator: "\n")
    }
}
