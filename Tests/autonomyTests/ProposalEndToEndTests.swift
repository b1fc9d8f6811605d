import AutonomyCore
import Foundation
import GRDB
import Testing

extension Sandbox {
    /// `autonomy audit --json` at `offset` on the test clock.
    func audit(_ offset: String? = nil, _ extra: [String] = []) async throws -> JSONValue {
        let result = try await run(["audit", "--json"] + extra, environment: clock(offset))
        guard result.status == 0 else { throw CLIFailureInTest("audit: \(result.stderr)") }
        return try JSONValue.parse(result.stdout)
    }

    func clock(_ offset: String?) -> [String: String] {
        offset.map { ["AUTONOMY_TEST_CLOCK_OFFSET": $0] } ?? [:]
    }

    /// The task of the proposal with this action in an audit's report, and its status.
    func proposal(_ report: JSONValue, _ action: String) throws -> (task: Int64, status: String) {
        guard case .array(let items)? = report[path: "proposals"],
            let item = items.first(where: { $0[path: "action"] == .string(action) }),
            case .int(let task)? = item[path: "task"], let status = item[path: "status"]?.stringValue
        else { throw CLIFailureInTest("no \(action) proposal in \(report.canonicalText)") }
        return (task, status)
    }

    /// Approves (signed, as the operator) the pending request of `task`.
    func approveTask(_ task: Int64, _ offset: String? = nil) async throws {
        let listed = try JSONValue.parse(try await run(["approvals", "--json"], environment: clock(offset)).stdout)
        guard case .array(let items) = listed,
            case .int(let id)? = items.first(where: { $0[path: "task_id"] == .int(task) })?[path: "id"]
        else { throw CLIFailureInTest("no pending approval for task \(task): \(listed.canonicalText)") }
        let approved = try await run(["approve", "\(id)", "--note", "proposal"], environment: clock(offset))
        guard approved.status == 0 else { throw CLIFailureInTest("approve: \(approved.stderr)") }
    }

    func state(_ task: Int64) throws -> String {
        let queue = try DatabaseQueue(path: databasePath)
        return try queue.read { db in
            try String.fetchOne(db, sql: "SELECT state FROM tasks WHERE id = ?", arguments: [task]) ?? "none"
        }
    }

    /// The built-in verifier's outcome and evidence for a proposal task.
    func finding(_ task: Int64) throws -> (outcome: String, evidence: String)? {
        let queue = try DatabaseQueue(path: databasePath)
        return try queue.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT json_extract(l.detail, '$.outcome') AS outcome, COALESCE(n.text, json_extract(l.detail, '$.evidence')) AS evidence
                    FROM ledger l LEFT JOIN ledger_notes n ON n.ledger_id = l.id AND n.field = 'evidence'
                    WHERE l.task_id = ? AND l.event = 'verified' AND json_extract(l.detail, '$.verifier') = 'finding'
                    ORDER BY l.id DESC LIMIT 1
                    """, arguments: [task]
            ).map { (($0["outcome"] as String?) ?? "", ($0["evidence"] as String?) ?? "") }
        }
    }
}

/// Fix proposals end to end, with the built binary, a test clock and a ledger made by running
/// tasks: each catalog action, applied through a signed approval, does what it says and passes
/// its built-in verifier; a fix that does not fix fails; audits never duplicate a proposal.
@Suite struct ProposalEndToEndTests {
    static func config(
        types: String, notify: String = "", remediations: String = "{}", audit: String = #""cooldown": "1h""#
    ) -> String {
        """
        {"version": 1, \(notify)
         "approvals": { "allowed_signers": "allowed_signers" },
         "audit": { \(audit) },
         "remediations": \(remediations),
         "task_types": { \(types) }}
        """
    }

    @Test func retryDeadAndNotifyOwnerDoWhatTheySayAndAreNeverProposedTwice() async throws {
        let sandbox = try Sandbox(config: "{}")
        let script = try sandbox.alertLogger()
        try Self.config(
            types: """
                "flaky": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                           "handler": { "exec": { "argv": ["/bin/sh", "-c", "test -e fixed"] } } },
                "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
                """, notify: #""notify": {"command": ["\#(script)"]},"#
        ).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        _ = try await sandbox.run(["enqueue", "flaky", "--payload", #"{"n":1}"#])
        _ = try await sandbox.run(["enqueue", "report"])
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(1) == "dead" && sandbox.state(2) == "done")

        let first = try await sandbox.audit()
        let retry = try sandbox.proposal(first, "retry_dead")
        let notify = try sandbox.proposal(first, "notify_owner")
        #expect(retry.status == "proposed" && notify.status == "proposed")
        #expect(try sandbox.state(retry.task) == "awaiting_approval")
        // The healthy control type proposes nothing.
        #expect(first[path: "proposals"].map { "\($0)" }?.contains("report") == false)

        // Audit twice: the same proposals are still open, none is added.
        let second = try await sandbox.audit()
        #expect(try sandbox.proposal(second, "retry_dead") == (retry.task, "still_open"))
        #expect(try sandbox.proposal(second, "notify_owner") == (notify.task, "still_open"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 2)

        // Approved, retry_dead sends the dead task back; it runs again and (fixed now) succeeds.
        FileManager.default.createFile(atPath: sandbox.file("fixed"), contents: nil)
        try await sandbox.approveTask(retry.task)
        try await sandbox.approveTask(notify.task)
        let work = try await sandbox.run(["work-once", "--drain"])
        #expect(work.status == 0, "\(work.stderr)")
        #expect(try sandbox.state(retry.task) == "done" && sandbox.state(1) == "done")
        #expect(try sandbox.finding(retry.task)?.outcome == "pass")
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE task_id = 1 AND event = 'retried' AND json_extract(detail, '$.by') = 'proposal task \(retry.task)'"
            ) == 1)
        // notify_owner called the owner through the configured channel, with kinds, not texts.
        #expect(try sandbox.state(notify.task) == "done" && sandbox.finding(notify.task)?.outcome == "pass")
        let alerts = try sandbox.loggedAlerts()
        // Applied, the fix is not proposed again within audit.cooldown, whatever the window shows.
        let after = try await sandbox.audit()
        #expect(try sandbox.proposal(after, "retry_dead") == (retry.task, "cooling_down"))
        #expect(after[path: "proposals.0.ended"] == "done" || after[path: "proposals.1.ended"] == "done")
        let owner = try #require(alerts.first { $0[path: "event"] == "owner_needed" })
        #expect(owner[path: "type"] == "flaky" && owner[path: "owner"] == "ops")
        #expect(owner[path: "finding.kind"] == "dead_tasks" && owner[path: "proposal"] == .int(notify.task))
        #expect(!"\(owner)".contains("exited with status"))
    }

    @Test func aRejectedProposalWaitsOutTheCooldown() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "doomed": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                                "handler": { "exec": { "argv": ["/bin/false"] } } }
                    """))
        _ = try await sandbox.run(["enqueue", "doomed"])
        _ = try await sandbox.run(["work-once"])
        let retry = try sandbox.proposal(try await sandbox.audit(), "retry_dead")
        let listed = try JSONValue.parse(try await sandbox.run(["approvals", "--json"]).stdout)
        let id = try #require(listed[path: "0.id"])
        let rejected = try await sandbox.run(["reject", "\(id.canonicalText)", "--reason", "it will die again"])
        #expect(rejected.status == 0, "\(rejected.stderr)")
        #expect(try sandbox.state(retry.task) == "rejected")
        // Within audit.cooldown (1h here): not proposed again.
        #expect(try sandbox.proposal(try await sandbox.audit("30m"), "retry_dead") == (retry.task, "cooling_down"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'apply_remediation'") == 1)
        // After it, the finding proposes the fix again.
        let later = try sandbox.proposal(try await sandbox.audit("2h"), "retry_dead")
        #expect(later.status == "proposed" && later.task != retry.task)
    }

    @Test func pauseRemediateAndResumeAMissingHandlerAndAFixThatDidNotFixFails() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "broken": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["./bin/tool"] } } },
                    "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
                    """,
                remediations: """
                    { "install-tool": { "exec": { "argv": ["/bin/sh", "-c", "mkdir -p bin && cp /bin/true bin/tool"] },
                                        "findings": ["missing_handler"], "subjects": ["broken"] },
                      "shrug": { "exec": { "argv": ["/bin/true"] }, "findings": ["missing_handler"] } }
                    """))
        _ = try await sandbox.run(["enqueue", "report"])
        _ = try await sandbox.run(["work-once"])
        let report = try await sandbox.audit()
        let pause = try sandbox.proposal(report, "pause_type")
        guard case .array(let items)? = report[path: "proposals"] else { throw CLIFailureInTest("no proposals") }
        let remediations = items.filter { $0[path: "action"] == "run_remediation" }
        #expect(remediations.map { $0[path: "parameters.name"] } == ["install-tool", "shrug"])
        let install = try #require(remediations[0][path: "task"])
        let shrug = try #require(remediations[1][path: "task"])
        guard case .int(let installTask) = install, case .int(let shrugTask) = shrug else { return }

        // A command that exits 0 but leaves the handler missing: the finding still holds, so the
        // proposal fails (tried once), like any task whose evidence fails.
        try await sandbox.approveTask(shrugTask)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(shrugTask) == "dead")
        let failed = try #require(try sandbox.finding(shrugTask))
        #expect(failed.outcome == "fail" && failed.evidence.contains("the finding still holds"), "\(failed)")

        // pause_type: an override the worker applies; the type's tasks wait.
        try await sandbox.approveTask(pause.task)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(pause.task) == "done" && sandbox.finding(pause.task)?.outcome == "pass")
        let waiting = try await sandbox.run(["enqueue", "broken"])
        let waitingID = try #require(Int64(waiting.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(waitingID) == "queued")
        let status = try await sandbox.run(["status"])
        #expect(status.stdout.contains("override 1: pause broken since"), "\(status.stdout)")
        #expect(try await sandbox.run(["map"]).stdout.contains("OVERRIDE: pause"))
        #expect(try await sandbox.run(["config", "check"]).stdout.contains("override 1: pause broken"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'override_set'") == 1)

        // run_remediation installs the handler: the finding no longer holds.
        try await sandbox.approveTask(installTask)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(installTask) == "done")
        #expect(try sandbox.finding(installTask)?.outcome == "pass")
        #expect(try sandbox.state(waitingID) == "queued")  // still paused

        // The next audit sees the pause with nothing left to stop: resume_type.
        let resume = try sandbox.proposal(try await sandbox.audit(), "resume_type")
        #expect(resume.status == "proposed")
        try await sandbox.approveTask(resume.task)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(resume.task) == "done" && sandbox.finding(resume.task)?.outcome == "pass")
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'override_removed'") == 1)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(waitingID) == "done")
        #expect(try await sandbox.run(["overrides"]).stdout.hasPrefix("no override is in effect"))
    }

    @Test func aRemediationRunsOnlyTheCommandTheOperatorApproved() async throws {
        let remediations = """
            { "install": { "exec": { "argv": ["/bin/sh", "-c", "touch installed"] }, "findings": ["missing_handler"] } }
            """
        let types = """
            "broken": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["./bin/tool"] } } }
            """
        let sandbox = try Sandbox(config: Self.config(types: types, remediations: remediations))
        _ = try await sandbox.run(["enqueue", "broken"])
        let report = try await sandbox.audit()
        let install = try sandbox.proposal(report, "run_remediation")
        // The proposal carries the command: the operator sees and approves the argv itself.
        #expect(report[path: "proposals.1.parameters.argv"] == ["/bin/sh", "-c", "touch installed"], "\(report)")
        // The configuration changes after the proposal: the approved command is no longer the one
        // declared, so nothing runs.
        try Self.config(
            types: types, remediations: remediations.replacingOccurrences(of: "touch installed", with: "rm -rf .")
        )
        .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        try await sandbox.approveTask(install.task)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(install.task) == "dead")
        #expect(!FileManager.default.fileExists(atPath: sandbox.file("installed")))
        let shown = try await sandbox.run(["tasks", "show", "\(install.task)"])
        #expect(shown.stdout.contains("argv changed since it was proposed"), "\(shown.stdout)")
    }

    @Test func raiseTimeoutAfterTimeOutsAndRaiseMaxAttemptsAfterInconclusiveChecks() async throws {
        // A service the verifier asks, down: every answer is a 503, so no check can tell.
        let down = try LoopbackHTTPServer(statuses: Array(repeating: 503, count: 20))
        defer { down.stop() }
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "slow": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                              "handler": { "exec": { "argv": ["/bin/sleep", "2"], "timeout": "1s" } } },
                    "unsure": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                                "handler": { "exec": { "argv": ["/bin/true"] } },
                                "verify": [ { "http": { "url": "http://127.0.0.1:\(down.port)/", "timeout": "5s" } } ] }
                    """))
        _ = try await sandbox.run(["enqueue", "slow"])
        for _ in 0..<3 { _ = try await sandbox.run(["enqueue", "unsure"]) }
        _ = try await sandbox.run(["work-once", "--drain"])
        let report = try await sandbox.audit()
        let timeout = try sandbox.proposal(report, "raise_timeout")
        let attempts = try sandbox.proposal(report, "raise_max_attempts")
        try await sandbox.approveTask(timeout.task)
        try await sandbox.approveTask(attempts.task)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(timeout.task) == "done" && sandbox.finding(timeout.task)?.outcome == "pass")
        #expect(try sandbox.state(attempts.task) == "done" && sandbox.finding(attempts.task)?.outcome == "pass")
        let overrides = try JSONValue.parse(try await sandbox.run(["overrides", "--json"]).stdout)
        #expect(overrides[path: "0.effect"] == "timeout 1m" && overrides[path: "0.type"] == "slow")
        #expect(overrides[path: "1.effect"] == "max_attempts 3" && overrides[path: "1.type"] == "unsure")
        #expect(overrides[path: "0.proposal"] == .int(timeout.task))

        // The raised timeout applies: a task that sleeps past 1s now finishes.
        let slow = try await sandbox.run(["enqueue", "slow", "--payload", #"{"again":true}"#])
        let slowID = try #require(Int64(slow.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        // The raised attempts apply: a failed check is retried instead of dying at once.
        let unsure = try await sandbox.run(["enqueue", "unsure", "--payload", #"{"again":true}"#])
        let unsureID = try #require(Int64(unsure.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(slowID) == "done")
        #expect(try sandbox.state(unsureID) == "queued")
    }

    @Test func expireStaleApprovalsAndReleaseStuckSettleWhatWaits() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "mail": { "owner": "ops", "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                              "verify": [ { "json": { "path": "ok", "equals": true } } ] },
                    "crash": { "owner": "ops", "safety": "safe",
                               "handler": { "exec": { "argv": ["/bin/sh", "-c", "if [ ! -e crashed ]; then touch crashed; kill -KILL $PPID; sleep 5; fi"] } } }
                    """, audit: #""stale_approval": "1h""#))
        _ = try await sandbox.run(["enqueue", "mail", "--payload", #"{"to":"a@b.c"}"#])
        _ = try await sandbox.run(["enqueue", "crash"])
        // The worker dies under the crashing handler: its task stays running, its lease runs out.
        let died = try await sandbox.run(["work-once", "--drain"])
        #expect(died.status == 137, "\(died.stderr)")
        #expect(try sandbox.state(2) == "running")

        let report = try await sandbox.audit("2h")
        let expire = try sandbox.proposal(report, "expire_stale_approvals")
        let release = try sandbox.proposal(report, "release_stuck")
        try await sandbox.approveTask(expire.task, "2h")
        try await sandbox.approveTask(release.task, "2h")
        let work = try await sandbox.run(["work-once", "--drain"], environment: sandbox.clock("2h"))
        #expect(work.status == 0, "\(work.stderr)")
        // The request nobody decided expired with its task; the stuck task is free and ran.
        #expect(try sandbox.state(1) == "expired")
        #expect(try sandbox.state(expire.task) == "done" && sandbox.finding(expire.task)?.outcome == "pass")
        #expect(try sandbox.state(release.task) == "done" && sandbox.finding(release.task)?.outcome == "pass")
        #expect(try sandbox.state(2) == "queued")  // back after its backoff
        _ = try await sandbox.run(["work-once", "--drain"], environment: sandbox.clock("3h"))
        #expect(try sandbox.state(2) == "done")
    }

    @Test func aRaisedLeaseAfterRepeatedLeaseExpiry() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "crash": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 3, "backoff": "1s" },
                               "handler": { "exec": { "argv": ["/bin/sh", "-c", "kill -KILL $PPID; sleep 5"] } } }
                    """))
        _ = try await sandbox.run(["enqueue", "crash"])
        // Three workers die under it; five minutes on, the next finds the lease run out and sends
        // the task back (after its backoff), and a minute later one runs it again.
        for minutes in [0, 6, 12] {
            let run = try await sandbox.run(["work-once"], environment: sandbox.clock("\(minutes)m"))
            #expect(run.status == 137)
            let recovered = try await sandbox.run(["work-once"], environment: sandbox.clock("\(minutes + 5)m"))
            #expect(recovered.status == 0, "\(recovered.stderr)")
        }
        #expect(try sandbox.state(1) == "dead")
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'lease_expired'") == 3)
        let lease = try sandbox.proposal(try await sandbox.audit("18m"), "raise_lease")
        try await sandbox.approveTask(lease.task, "18m")
        _ = try await sandbox.run(["work-once"], environment: sandbox.clock("18m"))
        #expect(try sandbox.state(lease.task) == "done" && sandbox.finding(lease.task)?.outcome == "pass")
        let overrides = try JSONValue.parse(try await sandbox.run(["overrides", "--json"]).stdout)
        #expect(overrides[path: "0.effect"] == "lease 2m" && overrides[path: "0.type"] == .null)
        let check = try await sandbox.run(["config", "check"])
        #expect(check.stdout.contains("override 1: lease 2m (all types)"), "\(check.stdout)")
    }

    @Test func overridesAreRemovableWithALedgerRowAndProposalsCannotBeEnqueued() async throws {
        let sandbox = try Sandbox(
            config: Self.config(
                types: """
                    "broken": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["./missing"] } } }
                    """))
        _ = try await sandbox.run(["enqueue", "broken"])
        let pause = try sandbox.proposal(try await sandbox.audit(), "pause_type")
        try await sandbox.approveTask(pause.task)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(try sandbox.state(pause.task) == "done")

        let removed = try await sandbox.run(["overrides", "remove", "1", "--reason", "fixed by hand"])
        #expect(
            removed.status == 0 && removed.stdout.hasPrefix("removed override 1 (pause broken)"), "\(removed.stderr)")
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'override_removed' AND json_extract(detail, '$.by') = 'tester'"
            )
                == 1)
        let again = try await sandbox.run(["overrides", "remove", "1"])
        #expect(
            again.status == 1 && again.stderrLines == ["error: override 1 is no longer in effect (removed or expired)"])
        let unknown = try await sandbox.run(["overrides", "remove", "9"])
        #expect(unknown.status == 66 && unknown.stderrLines == ["error: no override 9 (see 'autonomy overrides')"])

        // Only audit makes proposals: no producer, operator or batch enqueues one.
        let before = try sandbox.snapshot()
        let forged = try await sandbox.run([
            "enqueue", "apply_remediation", "--payload",
            #"{"action":"run_remediation","parameters":{"name":"x"},"finding":{"kind":"missing_handler"}}"#,
        ])
        #expect(forged.status == 65)
        #expect(
            forged.stderrLines == [
                "error: apply_remediation tasks are fix proposals that only `autonomy audit` makes; they cannot be enqueued"
            ], "\(forged.stderr)")
        let batch = try await sandbox.run(
            ["enqueue", "--batch", "-"], stdin: #"{"type":"apply_remediation","payload":{}}"# + "\n")
        #expect(batch.status == 65)
        #expect(try sandbox.snapshot() == before)
    }
}

/// `audit.explain`: a free model's summary on top, from numbers and signatures only; never required.
@Suite struct AuditExplainEndToEndTests {
    static func config(models: String, cap: Double = 5) -> String {
        """
        {"version": 1, "audit": { "explain": true },
         "gateway": { "daily_cap_usd": \(cap), "soft_cap_ratio": 1.0, "models": [\(models)] },
         "task_types": {
           "doomed": { "owner": "ops", "safety": "safe", "retry": { "max_attempts": 1 },
                       "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo failing >&2; exit 3"] } } } }}
        """
    }

    static func model(_ name: String, _ server: LoopbackHTTPServer, tier: String, output: Double = 0) -> String {
        """
        {"name": "\(name)", "provider": "openai", "base_url": "http://127.0.0.1:\(server.port)/v1", "model": "\(name)-id",
         "tier": "\(tier)", "input_usd_per_million": 0, "output_usd_per_million": \(output), "max_tokens": 1000, "timeout": "10s"}
        """
    }

    @Test func aFreeModelSummarisesTheFindingsWithoutEverSeeingAPayload() async throws {
        let server = try LoopbackHTTPServer(defaultBody: completion("One type keeps dying: doomed. Approve the retry."))
        defer { server.stop() }
        let sandbox = try Sandbox(config: Self.config(models: Self.model("local", server, tier: "free")))
        _ = try await sandbox.run(["enqueue", "doomed", "--payload", #"{"customer":"PAYLOAD-SECRET-123"}"#])
        _ = try await sandbox.run(["work-once"])
        let audit = try await sandbox.run(["audit"])
        #expect(audit.status == 0, "\(audit.stderr)")
        #expect(
            audit.stdout.hasPrefix(
                "summary by local (a model's reading of the findings below): One type keeps dying: doomed. Approve the retry.\n\n2 findings"
            ), "\(audit.stdout)")
        let prompt = String(decoding: try #require(server.requests.first).body, as: UTF8.self)
        #expect(prompt.contains("dead_tasks") && prompt.contains("exited with status <n>"), "\(prompt)")
        #expect(!prompt.contains("PAYLOAD-SECRET-123") && !prompt.contains("customer"))
        let json = try await sandbox.audit()
        #expect(
            json[path: "explanation"]
                == "summary by local (a model's reading of the findings below): One type keeps dying: doomed. Approve the retry."
        )
        #expect(
            try sandbox.count("SELECT COUNT(*) FROM audit_runs WHERE explanation LIKE '%One type keeps dying%'") == 2)
    }

    @Test func atTheCapOrWithNoModelTheReportSaysSoAndGoesOn() async throws {
        let free = try LoopbackHTTPServer(defaultBody: completion("never asked"))
        let paid = try LoopbackHTTPServer(defaultBody: completion("spent", input: 0, output: 1000))
        defer {
            free.stop()
            paid.stop()
        }
        // One paid answer of 1000 tokens at $1000 per million spends the whole $1 cap.
        let sandbox = try Sandbox(
            config: Self.config(
                models: Self.model("local", free, tier: "free") + ","
                    + Self.model("cloud", paid, tier: "cheap", output: 1000),
                cap: 1))
        let spend = try await sandbox.run(["llm", "--tier", "cheap", "spend it"])
        #expect(spend.status == 0, "\(spend.stderr)")
        _ = try await sandbox.run(["enqueue", "doomed"])
        _ = try await sandbox.run(["work-once"])
        let capped = try await sandbox.run(["audit"])
        #expect(capped.status == 0)
        #expect(
            capped.stdout.hasPrefix(
                "no summary: the model budget is at its daily cap; the findings below are the report\n\n3 findings"),
            "\(capped.stdout)")
        #expect(free.requests.isEmpty)

        let none = try Sandbox(config: Self.config(models: ""))
        _ = try await none.run(["enqueue", "doomed"])
        _ = try await none.run(["work-once"])
        let unexplained = try await none.run(["audit"])
        #expect(unexplained.status == 0)
        #expect(
            unexplained.stdout.hasPrefix("no summary: no free model is configured (gateway.models, tier free)\n\n"),
            "\(unexplained.stdout)")
    }
}
