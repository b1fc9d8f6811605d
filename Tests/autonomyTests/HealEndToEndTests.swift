import AutonomyCore
import Foundation
import GRDB
import Testing

extension JSONValue {
    /// The elements of an array; nil for anything else.
    fileprivate var items: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}

extension Sandbox {
    /// `autonomy heal --json` (plus `extra`) at `offset` on the test clock.
    func heal(_ offset: String? = nil, _ extra: [String] = []) async throws -> JSONValue {
        let result = try await run(["heal", "--json"] + extra, environment: clock(offset))
        guard result.status == 0 else { throw CLIFailureInTest("heal: \(result.stderr)") }
        return try JSONValue.parse(result.stdout)
    }

    /// Every row of every table, as text: equal dumps mean nothing at all was written.
    func dump() throws -> String {
        let queue = try DatabaseQueue(path: databasePath)
        return try queue.read { db in
            var lines: [String] = []
            for table in try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            {
                lines.append("== \(table)")
                lines += try Row.fetchAll(db, sql: "SELECT * FROM \"\(table)\"").map(\.description)
            }
            return lines.joined(separator: "\n")
        }
    }

    /// The decision about `action` in a heal report.
    func decision(_ report: JSONValue, _ action: String) throws -> JSONValue {
        guard case .array(let items)? = report[path: "decisions"],
            let item = items.first(where: { $0[path: "action"] == .string(action) })
        else { throw CLIFailureInTest("no \(action) decision in \(report.canonicalText)") }
        return item
    }

    func enqueued(_ arguments: [String], _ offset: String? = nil) async throws -> Int64 {
        let result = try await run(["enqueue"] + arguments, environment: clock(offset))
        guard result.status == 0, let id = Int64(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw CLIFailureInTest("enqueue: \(result.stderr)")
        }
        return id
    }
}

/// `autonomy heal` end to end, with the built binary and a test clock: a trusted fix runs on its
/// own and is judged after it settles; each guardrail stops what it should; disabled or dry, heal
/// writes nothing; and it never approves, rejects, changes a rule or runs an undeclared command.
@Suite struct HealEndToEndTests {
    static func config(
        types: String, heal: String, notify: String = "", remediations: String = "{}", audit: String = ""
    ) -> String {
        """
        {"version": 1, \(notify)
         "approvals": { "allowed_signers": "allowed_signers" },
         "audit": { \(audit) },
         "heal": { \(heal) },
         "remediations": \(remediations),
         "task_types": { \(types) }}
        """
    }

    static let slow = """
        "slow": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                  "handler": { "exec": { "argv": ["/bin/sleep", "2"], "timeout": "1s" } } }
        """

    static func doomed(_ name: String) -> String {
        """
        "\(name)": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                     "handler": { "exec": { "argv": ["/bin/false"] } } }
        """
    }

    static let trustTimeouts = #"{ "finding": "failure_signature", "action": "raise_timeout", "types": ["slow"] }"#

    static func trustRetries(_ types: [String]) -> String {
        #"{ "finding": "dead_tasks", "action": "retry_dead", "types": \#(JSONValue.array(types.map { .string($0) }).canonicalText) }"#
    }

    // MARK: - Off and dry

    @Test func disabledHealOnlyReportsAndWritesNothing() async throws {
        let sandbox = try Sandbox(
            config: Self.config(types: Self.slow, heal: #""enabled": false, "auto_apply": [\#(Self.trustTimeouts)]"#))
        // Not even a database: it only reads.
        let none = try await sandbox.run(["heal"])
        #expect(none.status == 66 && !FileManager.default.fileExists(atPath: sandbox.databasePath), "\(none.stderr)")
        _ = try await sandbox.run(["enqueue", "slow"])
        _ = try await sandbox.run(["work-once"])
        let config = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
        let before = try sandbox.dump()
        let text = try await sandbox.run(["heal"])
        #expect(text.status == 0 && text.stdout.contains("heal is disabled"), "\(text.stdout)\(text.stderr)")
        let report = try await sandbox.heal()
        #expect(report[path: "enabled"] == false)
        #expect(try sandbox.decision(report, "raise_timeout")[path: "status"] == "disabled")
        #expect(try sandbox.dump() == before)
        #expect(try String(contentsOfFile: sandbox.configPath, encoding: .utf8) == config)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 0)
    }

    @Test func aDryRunWritesNothingAndSaysWhatTheRealRunThenDoes() async throws {
        let sandbox = try Sandbox(
            config: Self.config(types: Self.slow, heal: #""enabled": true, "auto_apply": [\#(Self.trustTimeouts)]"#))
        _ = try await sandbox.run(["enqueue", "slow"])
        _ = try await sandbox.run(["work-once"])
        let before = try sandbox.dump()
        let dry = try await sandbox.heal(nil, ["--dry-run"])
        #expect(dry[path: "dry_run"] == true)
        #expect(try sandbox.decision(dry, "raise_timeout")[path: "status"] == "would_apply")
        #expect(try sandbox.dump() == before)
        let real = try await sandbox.heal()
        #expect(try sandbox.decision(real, "raise_timeout")[path: "status"] == "applied")
        #expect(try sandbox.dump() != before)
    }

    // MARK: - The worked example

    @Test func aTrustedFixRunsOnItsOwnIsJudgedFixedAndIsNotAppliedAgain() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: Self.slow,
                heal: #""enabled": true, "settle": "5m", "auto_apply": [\#(Self.trustTimeouts)]"#))
        _ = try await sandbox.run(["enqueue", "slow"])
        _ = try await sandbox.run(["work-once"])
        #expect(try sandbox.state(1) == "dead")
        let declared = try [sandbox.configPath, sandbox.file("allowed_signers")].map {
            try String(contentsOfFile: $0, encoding: .utf8)
        }

        let first = try await sandbox.heal()
        let applied = try sandbox.decision(first, "raise_timeout")
        #expect(applied[path: "status"] == "applied" && applied[path: "parameters.to"] == "1m")
        guard case .int(let fix)? = applied[path: "task"] else { throw CLIFailureInTest("no task") }
        // Applied there and then, with no approval, and the firewall's reason in the ledger.
        #expect(first[path: "attempts.0.id"] == .int(fix) && first[path: "attempts.0.state"] == "done")
        #expect(try sandbox.count("SELECT COUNT(*) FROM approvals") == 0)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE task_id = \(fix) AND event = 'heal_applied' AND json_extract(detail, '$.allowed_by') LIKE 'heal.auto_apply[0]%'"
            ) == 1)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE task_id = \(fix) AND event = 'claimed' AND json_extract(detail, '$.approval_id') IS NULL"
            ) == 1)
        let overrides = try JSONValue.parse(try await sandbox.run(["overrides", "--json"]).stdout)
        #expect(overrides[path: "0.effect"] == "timeout 1m" && overrides[path: "0.proposal"] == .int(fix))

        // The next occurrence runs under the raised timeout and succeeds.
        let again = try await sandbox.enqueued(["slow", "--payload", #"{"again":true}"#])
        _ = try await sandbox.run(["work-once"])
        #expect(try sandbox.state(again) == "done")

        // Before it settled, nothing is judged; after, it is judged fixed and not applied again,
        // though the window still shows the old failures.
        let early = try await sandbox.heal("1m")
        #expect(early[path: "judged"] == .array([]))
        let settled = try await sandbox.heal("10m")
        #expect(settled[path: "judged.0.outcome"] == "fixed" && settled[path: "judged.0.task"] == .int(fix))
        #expect(try sandbox.decision(settled, "raise_timeout")[path: "status"] == "already_applied")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 1)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_judged' AND json_extract(detail, '$.outcome') = 'fixed'"
            ) == 1)

        // The fix lives in an override: the map and the signers on disk are as the operator wrote them.
        #expect(
            try [sandbox.configPath, sandbox.file("allowed_signers")].map {
                try String(contentsOfFile: $0, encoding: .utf8)
            } == declared)

        // Visible: status, map and metrics.
        let status = try await sandbox.run(["status"])
        #expect(status.stdout.contains("heal: enabled; last day: 1 automatic action (fixed 1); no breaker open"))
        let map = try JSONValue.parse(try await sandbox.run(["map", "--json"]).stdout)
        #expect(map[path: "heal.last_day.slow.fixed"] == 1)
        let metrics = try await sandbox.run(["metrics"]).stdout
        #expect(metrics.contains(#"autonomy_heal_actions_total{action="raise_timeout",outcome="applied"} 1"#))
        #expect(metrics.contains(#"autonomy_heal_actions_total{action="raise_timeout",outcome="fixed"} 1"#))
    }

    // MARK: - A fix that did not help: revert, owner, backoff, breaker

    @Test func aFixThatDidNotHelpIsRevertedTheOwnerIsCalledAndTheBreakerOpens() async throws {
        // The service the verifier asks is down: every check is inconclusive, whatever the attempts.
        let down = try LoopbackHTTPServer(statuses: Array(repeating: 503, count: 60))
        defer { down.stop() }
        let sandbox = try Sandbox(config: "{}")
        let script = try sandbox.alertLogger()
        try Self.config(
            types: """
                "unsure": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1, "backoff": "1s", "jitter": 0 },
                            "handler": { "exec": { "argv": ["/bin/true"] } },
                            "verify": [ { "http": { "url": "http://127.0.0.1:\(down.port)/", "timeout": "5s" } } ] }
                """,
            heal: """
                "enabled": true, "window": "1d", "settle": "5m",
                "auto_apply": [{ "finding": "inconclusive_verifications", "action": "raise_max_attempts", "types": ["unsure"] }]
                """, notify: #""notify": {"command": ["\#(script)"]},"#
        ).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        for n in 0..<3 { _ = try await sandbox.enqueued(["unsure", "--payload", #"{"n":\#(n)}"#]) }
        _ = try await sandbox.run(["work-once", "--drain"])

        let first = try await sandbox.heal()
        guard case .int(let fix)? = try sandbox.decision(first, "raise_max_attempts")[path: "task"] else {
            throw CLIFailureInTest("not applied: \(first.canonicalText)")
        }
        #expect(try sandbox.count("SELECT COUNT(*) FROM overrides WHERE removed_at IS NULL") == 1)
        // It did not help: the next task's check is inconclusive again.
        _ = try await sandbox.enqueued(["unsure", "--payload", #"{"n":9}"#], "1m")
        _ = try await sandbox.run(["work-once"], environment: sandbox.clock("1m"))

        let judged = try await sandbox.heal("10m")
        #expect(judged[path: "judged.0.outcome"] == "did_not_fix", "\(judged.canonicalText)")
        #expect(judged[path: "judged.0.reverted"] == .array([1]))
        #expect(try sandbox.count("SELECT COUNT(*) FROM overrides WHERE removed_at IS NULL") == 0)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'override_removed' AND json_extract(detail, '$.by') = 'heal'"
            )
                == 1)
        // The owner is called; one failure is not yet enough for the breaker (2 by default), and
        // the same fix waits out its backoff.
        #expect(
            try sandbox.loggedAlerts().contains { $0[path: "event"] == "owner_needed" && $0[path: "type"] == "unsure" })
        #expect(judged[path: "breakers_opened"] == .array([]))
        let backoff = try sandbox.decision(judged, "raise_max_attempts")
        #expect(backoff[path: "status"] == "skipped")
        #expect(backoff[path: "reason"]?.stringValue?.contains("not again before") == true)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_skipped' AND json_extract(detail, '$.why') = 'backoff'"
            )
                == 1)

        // After the backoff it is tried again, fails again, and the breaker opens.
        let second = try await sandbox.heal("75m")
        #expect(
            try sandbox.decision(second, "raise_max_attempts")[path: "status"] == "applied", "\(second.canonicalText)")
        _ = try await sandbox.enqueued(["unsure", "--payload", #"{"n":10}"#], "76m")
        _ = try await sandbox.run(["work-once", "--drain"], environment: sandbox.clock("76m"))
        let tripped = try await sandbox.heal("90m")
        #expect(tripped[path: "judged.0.outcome"] == "did_not_fix")
        #expect(tripped[path: "breakers_opened.0.target"] == "unsure")
        let refused = try sandbox.decision(tripped, "raise_max_attempts")
        #expect(refused[path: "status"] == "skipped")
        #expect(refused[path: "reason"]?.stringValue?.contains("breaker for unsure is open") == true)
        #expect(try sandbox.loggedAlerts().contains { $0[path: "event"] == "heal_breaker_opened" })
        let metrics = try await sandbox.run(["metrics"], environment: sandbox.clock("90m")).stdout
        #expect(metrics.contains(#"autonomy_heal_breaker_open{target="unsure"} 1"#))
        #expect(metrics.contains(#"autonomy_heal_actions_total{action="raise_max_attempts",outcome="did_not_fix"} 2"#))
        let status = try await sandbox.run(["status"], environment: sandbox.clock("90m"))
        #expect(status.stdout.contains("1 breaker open") && status.stdout.contains("breaker 1 open for unsure"))

        // Only the operator closes it early; a second reset finds nothing open.
        let reset = try await sandbox.run(["heal", "reset", "unsure"], environment: sandbox.clock("91m"))
        #expect(reset.status == 0 && reset.stdout.contains("closed breaker 1"), "\(reset.stderr)")
        let again = try await sandbox.run(["heal", "reset", "unsure"], environment: sandbox.clock("91m"))
        #expect(again.status == 66 && again.stderr.contains("no heal breaker is open for unsure"))
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_breaker_closed' AND json_extract(detail, '$.by') = 'tester'"
            ) == 1)
        let after = try await sandbox.heal("92m")
        #expect(after[path: "breakers_open"] == .array([]))
    }

    // MARK: - Breaker cool-down, rate limits, systemic stop

    @Test func anOpenBreakerClosesAfterItsCoolDown() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: Self.doomed("doomed"),
                heal: """
                    "enabled": true, "window": "1d", "settle": "5m",
                    "breaker": { "failures": 1, "cooldown": "1h" },
                    "auto_apply": [\(Self.trustRetries(["doomed"]))]
                    """, audit: #""cooldown": "0s""#))
        _ = try await sandbox.run(["enqueue", "doomed"])
        _ = try await sandbox.run(["work-once"])
        _ = try await sandbox.heal()
        // retry_dead sent the task back; it dies again: the fix did not fix.
        _ = try await sandbox.run(["work-once"], environment: sandbox.clock("1m"))
        let tripped = try await sandbox.heal("10m")
        #expect(tripped[path: "breakers_opened.0.target"] == "doomed", "\(tripped.canonicalText)")
        let open = try await sandbox.heal("30m")
        #expect(open[path: "breakers_open.0.target"] == "doomed")
        #expect(try sandbox.decision(open, "retry_dead")[path: "status"] == "skipped")
        // The weekly audit's proposal is covered, but the breaker is open: it waits for a human,
        // and a human's signed yes releases it, as the human's act, not heal's.
        let audit = try await sandbox.audit("31m")
        let proposed = try sandbox.proposal(audit, "retry_dead")
        _ = try await sandbox.run(["work-once"], environment: sandbox.clock("31m"))
        #expect(try sandbox.state(proposed.task) == "awaiting_approval")
        try await sandbox.approveTask(proposed.task, "32m")
        _ = try await sandbox.run(["work-once", "--drain"], environment: sandbox.clock("32m"))
        #expect(try sandbox.state(proposed.task) == "done")
        #expect(try sandbox.count("SELECT automatic FROM heal_actions WHERE task_id = \(proposed.task)") == 0)
        #expect(
            try sandbox.count("SELECT COUNT(*) FROM approvals WHERE task_id = \(proposed.task) AND used_at IS NOT NULL")
                == 1)
        let cooled = try await sandbox.heal("80m")
        #expect(cooled[path: "breakers_closed.0.target"] == "doomed")
        #expect(cooled[path: "breakers_open"] == .array([]))
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_breaker_closed' AND json_extract(detail, '$.by') = 'cool-down'"
            ) == 1)
        #expect(try sandbox.decision(cooled, "retry_dead")[path: "status"] == "applied", "\(cooled.canonicalText)")
    }

    @Test func atMostNAutomaticActionsPerHourAndPerDay() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: [Self.doomed("a"), Self.doomed("b"), Self.doomed("c")].joined(separator: ","),
                heal: """
                    "enabled": true, "window": "1d", "max_actions": { "per_hour": 1, "per_day": 2 },
                    "systemic": { "min_types": 10 },
                    "auto_apply": [\(Self.trustRetries(["a", "b", "c"]))]
                    """))
        for type in ["a", "b", "c"] { _ = try await sandbox.run(["enqueue", type]) }
        _ = try await sandbox.run(["work-once", "--drain"])
        let first = try await sandbox.heal()
        let statuses = try ["a", "b", "c"].map { type -> String in
            guard case .array(let items)? = first[path: "decisions"],
                let item = items.first(where: { $0[path: "subject"] == .string(type) })
            else { return "none" }
            return item[path: "status"]?.stringValue ?? "none"
        }
        #expect(statuses == ["applied", "skipped", "skipped"], "\(first.canonicalText)")
        #expect("\(first)".contains("reached heal.max_actions.per_hour (1)"))
        // An hour on, the hourly count is spent again; the day allows one more, then no more.
        let later = try await sandbox.heal("61m")
        let applied = try #require(later[path: "decisions"]?.items).filter { $0[path: "status"] == "applied" }
        #expect(applied.count == 1, "\(later.canonicalText)")
        let evening = try await sandbox.heal("3h")
        #expect("\(evening)".contains("reached heal.max_actions.per_day (2)"), "\(evening.canonicalText)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM heal_actions WHERE automatic = 1") == 2)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_skipped' AND json_extract(detail, '$.why') = 'rate_limit'"
            ) >= 3)
    }

    @Test func whenMostTypesFailAtOnceNothingAutomaticRunsAndOneAlertSaysSo() async throws {
        let sandbox = try Sandbox(config: "{}")
        let script = try sandbox.alertLogger()
        try Self.config(
            types: [
                Self.doomed("a"), Self.doomed("b"), Self.doomed("c"),
                #""fine": {"owner": "ops", "safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}"#,
            ]
            .joined(separator: ","),
            heal: """
                "enabled": true, "systemic": { "max_failing": 0.5, "min_types": 3 },
                "auto_apply": [\(Self.trustRetries(["a", "b", "c"]))]
                """, notify: #""notify": {"command": ["\#(script)"]},"#
        ).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        for type in ["a", "a", "b", "b", "c", "c", "fine"] { _ = try await sandbox.run(["enqueue", type]) }
        _ = try await sandbox.run(["work-once", "--drain"])

        let stopped = try await sandbox.heal()
        #expect(stopped[path: "systemic.stopped"] == true && stopped[path: "systemic.change"] == "started")
        #expect(stopped[path: "systemic.failing"] == ["a", "b", "c"])
        let decisions = try #require(stopped[path: "decisions"]?.items).filter { $0[path: "action"] == "retry_dead" }
        #expect(decisions.count == 3 && decisions.allSatisfy { $0[path: "status"] == "skipped" })
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 0)
        _ = try await sandbox.heal("15m")
        #expect(try sandbox.loggedAlerts().filter { $0[path: "event"] == "heal_stopped" }.count == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'heal_stopped'") == 1)

        // The weekly audit's proposals are covered by auto_apply, but the claim checks the
        // guardrails too: during the stop they wait (for the next cycle, not for a human, and
        // with no alert of their own).
        _ = try await sandbox.run(["audit", "--json"], environment: sandbox.clock("16m"))
        _ = try await sandbox.run(["work-once", "--drain"], environment: sandbox.clock("16m"))
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation' AND state = 'queued' AND payload LIKE '%retry_dead%'"
            ) == 3)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'heal_skipped' AND task_id IS NOT NULL AND json_extract(detail, '$.why') = 'systemic_stop'"
            ) == 3)
        #expect(try sandbox.count("SELECT COUNT(*) FROM heal_actions") == 0)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM approvals a JOIN tasks t ON t.id = a.task_id WHERE t.payload LIKE '%retry_dead%'")
                == 0)

        // Once the window holds no failures, the stop ends.
        let resumed = try await sandbox.heal("2h")
        #expect(resumed[path: "systemic.change"] == "ended" && resumed[path: "systemic.stopped"] == false)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'heal_resumed'") == 1)
    }

    // MARK: - What heal can never do

    @Test func healNeverApprovesRejectsOrActsOutsideAutoApply() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: [
                    Self.doomed("doomed"), Self.doomed("other"),
                    #""mail": {"owner": "ops", "safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}}, "verify": [{"json": {"path": "ok", "equals": true}}]}"#,
                ].joined(separator: ","),
                heal: #""enabled": true, "auto_apply": [\#(Self.trustRetries(["doomed"]))]"#))
        _ = try await sandbox.run(["enqueue", "mail", "--payload", #"{"to":"a@b.c"}"#])
        _ = try await sandbox.run(["enqueue", "doomed"])
        _ = try await sandbox.run(["enqueue", "other"])
        _ = try await sandbox.run(["work-once", "--drain"])
        // The weekly audit's proposal for `other` waits for a human, as does the mail.
        _ = try await sandbox.run(["audit", "--json"])
        let pending = try sandbox.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'")
        #expect(pending >= 2)

        let report = try await sandbox.heal()
        let decisions = try #require(report[path: "decisions"]?.items)
        let others = decisions.filter { $0[path: "subject"] == "other" }
        #expect(
            others.count == 1 && others.allSatisfy { $0[path: "status"] == "not_trusted" }, "\(report.canonicalText)")
        // The audit's retry of `doomed` is covered: heal applied it, without an approval.
        #expect(
            try sandbox.count(
                """
                SELECT COUNT(*) FROM tasks t JOIN ledger l ON l.task_id = t.id AND l.event = 'claimed'
                WHERE t.type = 'apply_remediation' AND t.state = 'done' AND t.payload LIKE '%"doomed"%'
                  AND json_extract(l.detail, '$.approval_id') IS NULL
                """) == 1)
        // Nothing decided on anyone's behalf: the same requests pend, no decision was recorded,
        // and no proposal about `other` ran.
        #expect(try sandbox.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'") == pending)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'approval_decided'") == 0)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation' AND state = 'done' AND payload LIKE '%\"other\"%'"
            ) == 0)
        #expect(try sandbox.state(1) == "awaiting_approval")
    }

    @Test func healNeverRunsACommandTheConfigurationDoesNotDeclare() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: Self.doomed("doomed"),
                heal:
                    #""enabled": true, "auto_apply": [{"finding": "dead_tasks", "action": "run_remediation", "remediation": "fix", "types": ["doomed"]}]"#,
                remediations:
                    #"{"fix": {"exec": {"argv": ["/bin/sh", "-c", "touch declared-ran"]}, "findings": ["dead_tasks"]}}"#
            ))
        _ = try await sandbox.run(["enqueue", "doomed"])
        _ = try await sandbox.run(["work-once"])
        let report = try await sandbox.heal()
        #expect(try sandbox.decision(report, "run_remediation")[path: "status"] == "applied", "\(report.canonicalText)")
        #expect(FileManager.default.fileExists(atPath: sandbox.file("declared-ran")))

        // Someone with the database writes a proposal of another command, covered by the same
        // entry: the firewall does not rate it safe, and it waits for a human instead of running.
        let queue = try DatabaseQueue(path: sandbox.databasePath)
        let forged = try await queue.write { db -> Int64 in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE type = 'apply_remediation'") else {
                throw CLIFailureInTest("no proposal to copy")
            }
            let payload = (row["payload"] as String).replacingOccurrences(
                of: "touch declared-ran", with: "touch evil-ran")
            try db.execute(
                sql: """
                    INSERT INTO tasks (type, payload, payload_sha256, state, priority, run_at, attempts, max_attempts,
                                       created_at, updated_at, source, subject)
                    SELECT type, ?, ?, 'queued', priority, run_at, 0, max_attempts, created_at, updated_at, source, subject
                    FROM tasks WHERE id = ?
                    """, arguments: [payload, payload.sha256Hex, row["id"] as Int64])
            return db.lastInsertedRowID
        }
        let heal = try await sandbox.heal("1m")
        #expect(heal[path: "attempts"] == .array([]))
        #expect(try sandbox.state(forged) == "awaiting_approval")
        #expect(!FileManager.default.fileExists(atPath: sandbox.file("evil-ran")))
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM approvals WHERE task_id = \(forged) AND reason LIKE '%not the one remediations.fix declares%'"
            ) == 1)
    }

    @Test func autoApplyCannotNameARatingRuleProducerSignerTheCapOrApprovals() async throws {
        let sandbox = try Sandbox(config: "{}")
        let refused: [(String, String)] = [
            (
                #"{"finding": "dead_tasks", "action": "set_safety", "types": ["t"]}"#,
                "\"set_safety\" is not in the catalog"
            ),
            (
                #"{"finding": "days_at_cap", "action": "raise_budget", "types": ["t"]}"#,
                "heal does not check \"days_at_cap\""
            ),
            (
                #"{"finding": "stale_approval", "action": "expire_stale_approvals"}"#,
                "heal never acts on approval requests"
            ),
            (
                #"{"finding": "dead_tasks", "action": "raise_lease", "types": ["t"]}"#,
                "dead_tasks findings never propose raise_lease"
            ),
            (#"{"finding": "dead_tasks", "action": "retry_dead"}"#, "name the task types you trust this for"),
            (
                #"{"finding": "dead_tasks", "action": "retry_dead", "types": ["nope"]}"#,
                "nope is not a declared task type"
            ),
        ]
        for (entry, message) in refused {
            try Self.config(types: Self.doomed("t"), heal: #""enabled": true, "auto_apply": [\#(entry)]"#)
                .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let check = try await sandbox.run(["config", "check"])
            #expect(check.status == 78, "\(entry): \(check.stdout)")
            #expect(check.stderr.contains("heal.auto_apply") && check.stderr.contains(message), "\(check.stderr)")
        }
        // Nor can anyone enqueue a proposal of their own, trusted or not.
        try Self.config(
            types: Self.doomed("t"), heal: #""enabled": true, "auto_apply": [\#(Self.trustRetries(["t"]))]"#
        )
        .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        let forged = try await sandbox.run([
            "enqueue", "apply_remediation", "--payload",
            #"{"action":"retry_dead","parameters":{"type":"t","since":"2026-01-01T00:00:00Z"},"finding":{"kind":"dead_tasks","subject":"t"}}"#,
        ])
        #expect(forged.status == 65 && forged.stderr.contains("cannot be enqueued"), "\(forged.stderr)")
    }
}
