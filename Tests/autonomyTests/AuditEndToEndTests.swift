import AutonomyCore
import Foundation
import Testing

/// `autonomy audit` as a script or a timer runs it.
@Suite struct AuditEndToEndTests {
    static let config = """
        {"version": 1,
         "task_types": {
           "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
           "doomed": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/false"] } },
                       "retry": { "max_attempts": 1 } }
         }}
        """

    @Test func anAuditPrintsItsFindingsWorstFirstSavesTheRunAndFailsOnlyWhenAsked() async throws {
        let sandbox = try Sandbox(config: Self.config)
        // The queue is older than the window (its first row 8 days back): a type unused in the
        // window is then a finding.
        _ = try await sandbox.run(["enqueue", "report"], environment: sandbox.clock("-8d"))
        _ = try await sandbox.run(["enqueue", "doomed"])
        #expect(try await sandbox.run(["work-once", "--drain"]).status == 0)

        let text = try await sandbox.run(["audit", "--no-proposals"])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(
            lines.first?.hasPrefix("3 findings over the last 7d (1 high, 1 medium, 1 low); worst: 1 doomed task died")
                == true, "\(text.stdout)")
        // Worst first: the dead task, its error's signature (new in this window), then doomed never done.
        #expect(lines.count == 4 && lines[1].hasPrefix("HIGH     dead_tasks: 1 doomed task died"), "\(text.stdout)")
        #expect(lines[2].hasPrefix(#"MEDIUM   failure_signature: doomed failed 1× with "exited with status <n>"#))
        #expect(lines[3].hasPrefix("LOW      shelfware: doomed is declared but was never done in this window"))

        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 0)

        let json = try JSONValue.parse(try await sandbox.run(["audit", "--json"]).stdout)
        #expect(json[path: "run_id"] == .int(2))
        // The dead task proposes sending it back; nothing else here has a catalog fix (no alert
        // channel to call an owner with).
        #expect(json[path: "proposals.0.action"] == "retry_dead" && json[path: "proposals.0.status"] == "proposed")
        #expect(json[path: "proposals.0.parameters.type"] == "doomed" && json[path: "proposals.0.task"] == .int(3))
        #expect(json[path: "proposals.1"] == nil, "\(json)")
        guard case .array(let findings)? = json[path: "findings"] else { throw CLIFailureInTest("no findings") }
        #expect(findings.map { $0[path: "kind"] } == ["dead_tasks", "failure_signature", "shelfware"])
        #expect(findings[0][path: "tasks"] == [2] && findings[0][path: "evidence.dead"] == .int(1))

        let markdown = try await sandbox.run(["audit", "--markdown"])
        #expect(markdown.stdout.contains("| high | `dead_tasks` | 1 doomed task died"), "\(markdown.stdout)")
        #expect(markdown.stdout.contains("- task 3: retry_dead(since="), "\(markdown.stdout)")
        #expect(markdown.stdout.contains("for dead_tasks doomed: still open, not proposed again"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM audit_runs") == 3)
        #expect(try sandbox.count("SELECT COUNT(*) FROM findings WHERE kind = 'dead_tasks'") == 3)
        #expect(try sandbox.count("SELECT COUNT(*) FROM findings") == 9)

        // For CI-style use: exit 1 only when a finding is that severe.
        #expect(try await sandbox.run(["audit", "--fail-on", "high"]).status == 1)
        #expect(try await sandbox.run(["audit", "--fail-on", "critical"]).status == 0)
    }

    @Test func aBadWindowIsRefusedWithOneLineAndNoRun() async throws {
        let sandbox = try Sandbox(config: Self.config)
        _ = try await sandbox.run(["enqueue", "report"])
        let result = try await sandbox.run(["audit", "--window", "soon"])
        #expect(
            result.status == 65
                && result.stderrLines == [#"error: --window "soon" is not a duration from 1h to 366d, such as 7d"#])
        #expect(try sandbox.count("SELECT COUNT(*) FROM audit_runs") == 0)
        // A reader: no database yet is exit 66, and none is created.
        let fresh = try Sandbox(config: Self.config)
        #expect(try await fresh.run(["audit"]).status == 66)
        #expect(!FileManager.default.fileExists(atPath: fresh.databasePath))
    }
}

/// The custodian before a deploy, and the map as a document.
@Suite struct MapCheckEndToEndTests {
    @Test func mapCheckFailsOnAGapThatBreaksTheMapHereAndPassesOtherwise() async throws {
        let sandbox = try Sandbox(config: AuditEndToEndTests.config)
        let good = try await sandbox.run(["map", "check"])
        #expect(good.status == 0 && good.stdout.hasPrefix("the map holds"), "\(good.stdout)\(good.stderr)")
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))  // it creates no database
        let next = sandbox.file("next.json")
        try #"""
        {"version": 1, "task_types": {
           "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["./bin/report"] } } },
           "summarise": { "safety": "safe", "handler": { "llm": { "prompt": "hi", "tier": "cheap" } } } }}
        """#.write(toFile: next, atomically: true, encoding: .utf8)
        let bad = try await sandbox.run(["map", "check", "--config", next])
        #expect(bad.status == 1)
        #expect(
            bad.stdout.split(separator: "\n").map(String.init) == [
                "HIGH     missing_handler: report's handler ./bin/report is missing or not executable here",
                "HIGH     tier_without_model: summarise asks for the cheap tier, which no model serves",
                "LOW      no_owner: task type summarise has no owner",
            ], "\(bad.stdout)")
    }

    @Test func mapMarkdownIsTheIndexOfTypesAndTheirFigures() async throws {
        let sandbox = try Sandbox(config: AuditEndToEndTests.config)
        _ = try await sandbox.run(["enqueue", "report"])
        _ = try await sandbox.run(["work-once"])
        let document = try await sandbox.run(["map", "--markdown"])
        #expect(document.status == 0)
        let lines = document.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "# The system map")
        #expect(
            lines.contains {
                $0.hasPrefix("| report | ops | safe | `/bin/true` | none (exit status only) | 20")
                    && $0.hasSuffix("| 100% | 1 |  |  |")
            }, "\(document.stdout)")
        #expect(
            lines.contains {
                $0.hasPrefix("| doomed | ops | safe | `/bin/false` |") && $0.hasSuffix("| yes, never succeeded |  |")
            })
    }
}

/// `audit --notify`, as the weekly timer runs it: the operator hears counts and kinds, not texts.
@Suite struct AuditAlertEndToEndTests {
    @Test func anAuditWithNotifyAlertsWithCountsAndKindsOnly() async throws {
        let sandbox = try Sandbox(config: "{}")
        let script = try sandbox.alertLogger()
        try AuditEndToEndTests.config.replacingOccurrences(
            of: #"{"version": 1,"#, with: #"{"version": 1, "notify": {"command": ["\#(script)"]},"#
        ).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        _ = try await sandbox.run(["enqueue", "doomed"], environment: sandbox.clock("-8d"))
        _ = try await sandbox.run(["work-once"])
        let before = try sandbox.loggedAlerts().count
        let audit = try await sandbox.run(["audit", "--notify"])
        #expect(audit.status == 0 && audit.stderr.isEmpty, "\(audit.stderr)")
        let alerts = Array(try sandbox.loggedAlerts().dropFirst(before))
        let added = alerts.map(\.canonicalText).joined(separator: "\n")
        // The approval requests of the proposals it made (retry the dead task, call the owners of
        // the type that died and of the one never done), then the report.
        #expect(
            alerts.map { $0[path: "event"] } == [
                "approval_needed", "approval_needed", "approval_needed", "audit_report",
            ], "\(added)")
        #expect(alerts.prefix(3).allSatisfy { $0[path: "task.type"] == "apply_remediation" })
        #expect(alerts[0][path: "text"]?.stringValue?.contains("retry_dead(since=") == true)
        #expect(alerts[1][path: "text"]?.stringValue?.contains("notify_owner(type=doomed) for dead_tasks") == true)
        #expect(alerts[2][path: "text"]?.stringValue?.contains("notify_owner(type=report) for shelfware") == true)
        let alert = alerts[3]
        #expect(
            alert[path: "event"] == "audit_report" && alert[path: "run_id"] == .int(1) && alert[path: "worst"] == "high"
        )
        #expect(alert[path: "text"] == "audit: 4 findings (1 high, 1 medium, 2 low) — see: autonomy audit", "\(added)")
        // Never the findings' texts: a signature quotes an error a handler printed.
        #expect(!added.contains("exited with status"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'notified'") >= 1)
    }
}
