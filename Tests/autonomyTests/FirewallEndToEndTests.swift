import AutonomyCore
import Foundation
import GRDB
import Testing

/// The red team: with the built binary, nothing dangerous runs without a human's yes for exactly
/// its payload.
@Suite struct FirewallEndToEndTests {
    static func config(notify: String = #""notify": {}"#, emailSafety: String = "dangerous") -> String {
        """
        {
          "version": 1,
          \(notify),
          "approvals": { "base_url": "https://ops.example.com/autonomy", "allowed_signers": "allowed_signers" },
          "task_types": {
            "send_email": {
              "safety": "\(emailSafety)",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo \\"$AUTONOMY_TASK_ID\\" >> sent.txt"] } },
              "retry": { "max_attempts": 1 },
              "verify": [ { "file": { "path": "sent.txt", "non_empty": true } } ]
            }
          }
        }
        """
    }

    func sent(_ sandbox: Sandbox) -> [String] {
        ((try? String(contentsOfFile: sandbox.file("sent.txt"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    func approvalID(_ sandbox: Sandbox) async throws -> Int64 {
        let listed = try JSONValue.parse(try await sandbox.run(["approvals", "--json"]).stdout)
        guard case .array(let items) = listed, case .int(let id)? = items.first?[path: "id"] else {
            throw CLIFailureInTest("no pending approval")
        }
        return id
    }

    @Test func aDangerousTaskRunsOnlyAfterApproval() async throws {
        let sandbox = try Sandbox(config: Self.config())
        let enqueued = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        #expect(enqueued.stderr.contains("waits for an operator's approval"))
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox).isEmpty)
        let id = try await approvalID(sandbox)
        let approved = try await sandbox.run(["approve", "\(id)", "--note", "ok"])
        #expect(approved.status == 0, "\(approved.stderr)")
        let twice = try await sandbox.run(["approve", "\(id)"])
        #expect(twice.status == 1 && twice.stderr.contains("already decided: approved by elad"))
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox) == ["1"])
        let shown = try await sandbox.run(["tasks", "show", "1"])
        #expect(shown.stdout.contains("approval_decided") && shown.stdout.contains(#""by":"elad""#))
    }

    @Test func aRejectedTaskNeverRuns() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        let id = try await approvalID(sandbox)
        let rejected = try await sandbox.run(["reject", "\(id)", "--reason", "not this client"])
        #expect(rejected.status == 0, "\(rejected.stderr)")
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox).isEmpty)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'rejected'") == 1)
    }

    @Test func anExpiredApprovalNeverRuns() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        let id = try await approvalID(sandbox)
        let later = ["AUTONOMY_TEST_CLOCK_OFFSET": "25h"]
        let run = try await sandbox.run(["work-once", "--drain"], environment: later)
        #expect(run.stdout.contains("approval request \(id) expired"))
        let late = try await sandbox.run(["approve", "\(id)"], environment: later)
        #expect(late.status == 1 && late.stderr.contains("has expired"))
        _ = try await sandbox.run(["work-once", "--drain"], environment: later)
        #expect(sent(sandbox).isEmpty)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'expired'") == 1)
    }

    @Test func aPayloadChangedAfterApprovalIsHeld() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        let id = try await approvalID(sandbox)
        _ = try await sandbox.run(["approve", "\(id)"])
        let database = try DatabaseQueue(path: sandbox.databasePath)
        try await database.write { db in
            let guardText = try #require(
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: #"UPDATE tasks SET payload = '{"to":"attacker@evil.org"}' WHERE id = 1"#)
            // With the guard left out, work-once would refuse the whole database; put back, the
            // schema looks untouched and the claim's own check has to catch it.
            try db.execute(sql: guardText)
        }
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.stdout.contains("awaiting_approval, not run: the payload changed"))
        #expect(sent(sandbox).isEmpty)
        #expect(try await approvalID(sandbox) != id)
    }

    @Test func aDatabaseWithATriggerAutonomyDidNotMakeRunsNothing() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        _ = try await sandbox.run(["approve", "\(try await approvalID(sandbox))"])
        let database = try DatabaseQueue(path: sandbox.databasePath)
        try await database.write { db in
            // Swaps the approved payload as the claim starts it (the red team's attack).
            try db.execute(
                sql: #"""
                    CREATE TRIGGER swap BEFORE UPDATE OF state ON tasks WHEN NEW.state = 'running' BEGIN
                      UPDATE tasks SET payload = '{"to":"attacker@evil.org"}' WHERE id = NEW.id;
                    END
                    """#)
        }
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.status == 74)
        #expect(run.stderr.contains("not made by autonomy: trigger swap"), "\(run.stderr)")
        #expect(sent(sandbox).isEmpty)
        let doctor = try await sandbox.run(["doctor"])
        #expect(
            doctor.status == 1 && doctor.stdout.contains("not made by autonomy: trigger swap"), "\(doctor.stdout)")
    }

    @Test func aTypeReRatedDangerousAfterEnqueueIsHeld() async throws {
        let sandbox = try Sandbox(config: Self.config(emailSafety: "safe"))
        let enqueued = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        #expect(enqueued.status == 0 && !enqueued.stderr.contains("approval"))
        try Self.config(emailSafety: "dangerous").write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox).isEmpty)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'awaiting_approval'") == 1)
    }

    @Test func anUndeclaredTypeInsertedBySQLIsBlocked() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", "{}"])
        let database = try DatabaseQueue(path: sandbox.databasePath)
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, created_at, updated_at)
                    VALUES ('wire_money', 'queued', 100, 0, '{}', 'x', 0, 0)
                    """)
        }
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.stdout.contains("wire_money): blocked"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'wire_money' AND state = 'blocked'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE type = 'wire_money' AND event = 'blocked'") == 1)
    }

    @Test func alertsReachANotifyCommand() async throws {
        let sandbox = try Sandbox(config: "{}")
        let script = sandbox.file("notify.sh")
        try
            "#!/bin/sh\ncat > \"$(dirname \"$0\")/alert.json\"\necho \"$AUTONOMY_NOTIFY_TEXT\" > \"$(dirname \"$0\")/alert.txt\"\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        try Self.config(notify: #""notify": {"command": ["\#(script)"]}"#)
            .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#, "--subject", "invoice"])
        let alert = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: sandbox.file("alert.json"))))
        #expect(alert[path: "event"] == "approval_needed")
        #expect(alert[path: "task.subject"] == "invoice")
        let text = try String(contentsOfFile: sandbox.file("alert.txt"), encoding: .utf8)
        #expect(text.contains("approval needed: task 1 send_email") && text.contains("autonomy approve 1"))
        let test = try await sandbox.run(["notify", "test"])
        #expect(test.status == 0 && test.stdout.contains("command: delivered"))
    }

    @Test func aFailingWebhookIsRetriedAndTheTaskIsNeverBlocked() async throws {
        let server = try LoopbackHTTPServer(statuses: [500])
        defer { server.stop() }
        let sandbox = try Sandbox(
            config: Self.config(
                notify: #""notify": {"webhook": {"url": "\#(server.url)", "secret_env": "HOOK_SECRET"}}"#,
                emailSafety: "safe"))
        let secret = ["HOOK_SECRET": "s3cret"]
        let enqueued = try await sandbox.run(
            ["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#],
            environment: secret)
        #expect(enqueued.status == 0)
        // The webhook answers 500 the first time: the failure is recorded, nothing else is held up.
        let first = try await sandbox.run(["notify", "test"], environment: secret)
        #expect(first.status == 69 && first.stdout.contains("webhook: failed: the webhook answered HTTP 500"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'notify_failed'") == 1)
        // The next work-once after the backoff delivers it; the queue was never held up.
        let later = try await sandbox.run(
            ["work-once", "--drain"],
            environment: secret.merging(
                ["AUTONOMY_TEST_CLOCK_OFFSET": "2m"]) { $1 })
        #expect(later.stdout.contains("alert test via webhook: delivered"), "\(later.stdout)")
        #expect(sent(sandbox) == ["1"])
        let delivered = try #require(server.requests.last)
        #expect(delivered.method == "POST" && delivered.headers["x-autonomy-event"] == "test")
        let timestamp = try #require(delivered.headers["x-autonomy-timestamp"])
        #expect(abs((Int64(timestamp) ?? 0) - Int64(Date().timeIntervalSince1970)) < 120)
        // Independently of the code under test: HMAC-SHA256 over "TIMESTAMP.BODY", with openssl.
        let independent = try #require(
            try hmacWithOpenSSL(Data((timestamp + ".").utf8) + delivered.body, key: "s3cret"),
            "openssl is needed (apt-get install openssl)")
        #expect(independent.count == 64)
        #expect(delivered.headers["x-autonomy-signature"] == "sha256=" + independent)
        #expect(server.requests.count == 2)
    }
}

extension FirewallEndToEndTests {
    /// The link an operator receives, opened and then replayed: the binary writes the alert, the
    /// core functions the dashboard will call decide by it.
    @Test func aLinkDecidesOnceAndAReplayedOrWrongTokenIsRefused() async throws {
        let sandbox = try Sandbox(config: "{}")
        let script = sandbox.file("notify.sh")
        try "#!/bin/sh\ncat > \"$(dirname \"$0\")/alert.json\"\n".write(
            toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        try Self.config(notify: #""notify": {"command": ["\#(script)"]}"#)
            .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        let alert = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: sandbox.file("alert.json"))))
        let link = try #require(alert[path: "approval.links.approve"]?.stringValue)
        let token = try #require(URLComponents(string: link)?.fragment.map { String($0.dropFirst("t=".count)) })
        let store = try AutonomyStore(path: sandbox.databasePath)
        let now = SystemClock().now()
        #expect(try store.pendingApproval(token: token, now: now).task.id == 1)  // opening the link decides nothing
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'awaiting_approval'") == 1)
        // The web server will sign with its own key; here the operator's key stands in for it.
        let approvals = try #require(try ConfigLoader.load(explicitPath: sandbox.configPath).configuration.approvals)
        let verifier = DecisionVerifier(settings: approvals)
        let statement = try store.decisionStatement(
            approvalID: 1, .approve(note: nil), signerKey: sandbox.operatorKey.publicKey, verifier: verifier,
            settings: approvals, now: now
        ).text
        let signed = SignedDecision(
            statement: statement, signature: try DecisionSigner.native(sandbox.operatorKey).sign(statement))
        #expect(throws: ApprovalError.invalidToken) {
            try store.decide(token: "wrong", signed, verifier: verifier, now: now)
        }
        _ = try store.decide(token: token, signed, verifier: verifier, now: now)
        #expect(throws: ApprovalError.invalidToken) {
            try store.decide(token: token, signed, verifier: verifier, now: now)
        }
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox) == ["1"])
        let decided = try JSONValue.parse(try await sandbox.run(["tasks", "show", "1", "--json"]).stdout)
        guard case .array(let ledger)? = decided[path: "ledger"] else { throw CLIFailureInTest("no ledger") }
        #expect(ledger.contains { $0[path: "event"] == "approval_decided" && $0[path: "detail.channel"] == "link" })
    }

    @Test func aWebhookThatRedirectsOrStallsItsBodyIsAFailureWithinItsTimeout() async throws {
        let redirecting = try LoopbackHTTPServer(
            statuses: [307], extraHeaders: "Location: http://127.0.0.1:9/elsewhere\r\n")
        defer { redirecting.stop() }
        let sandbox = try Sandbox(
            // The answer comes at once: a long time-out, so a loaded machine never turns it into one.
            config: Self.config(notify: #""notify": {"webhook": {"url": "\#(redirecting.url)", "timeout": "30s"}}"#))
        let redirected = try await sandbox.run(["notify", "test"])
        #expect(
            redirected.status == 69 && redirected.stdout.contains("HTTP 307: redirects are not followed"),
            "\(redirected.stdout)\(redirected.stderr)")
        let stalling = try LoopbackHTTPServer(stallBody: .seconds(5))
        defer { stalling.stop() }
        try Self.config(notify: #""notify": {"webhook": {"url": "\#(stalling.url)", "timeout": "1s"}}"#)
            .write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        let stalled = try await sandbox.run(["notify", "test"])
        #expect(stalled.status == 69 && stalled.stdout.contains("did not answer within 1s"), "\(stalled.stdout)")
    }

    /// A webhook that answers slowly delays no task: the queue runs first, the alert after.
    @Test func aSlowWebhookNeverHoldsUpTheQueue() async throws {
        // The webhook answers after 60 s; its time-out is 1 s. Nothing may wait for the answer. (The
        // bounds are far from both: a loaded machine took 21.6 s against a bound of 20 s once.)
        let server = try LoopbackHTTPServer(delay: .seconds(60))
        defer { server.stop() }
        let sandbox = try Sandbox(
            config: Self.config(
                notify: #""notify": {"webhook": {"url": "\#(server.url)", "timeout": "1s"}}"#))
        let clock = ContinuousClock()
        let enqueueTook = try await clock.measure {
            _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])  // its alert times out
        }
        #expect(enqueueTook < .seconds(45), "enqueue waited \(enqueueTook) for a webhook with a 1 s time-out")
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'notify_failed'") == 1)
        let id = try await approvalID(sandbox)
        _ = try await sandbox.run(["approve", "\(id)"])
        var run = CLIResult(status: -1, stdout: "", stderr: "")
        let workTook = try await clock.measure {
            run = try await sandbox.run(["work-once", "--drain"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "2m"])
        }
        #expect(run.status == 0)
        #expect(workTook < .seconds(45), "work-once waited \(workTook) for the webhook")
        #expect(sent(sandbox) == ["1"])  // the approved task ran although alerts were failing
        // In order: the alert failed, the operator decided, the task was claimed and done, and no
        // alert is left waiting for the decided request.
        let order = try ["notify_failed", "approval_decided", "claimed", "done"].map {
            try sandbox.count("SELECT MIN(id) FROM ledger WHERE event = '\($0)'")
        }
        #expect(order.allSatisfy { $0 > 0 } && order == order.sorted(), "\(order)")
        let approvalAlert = try #require(server.requests.first)
        #expect(approvalAlert.headers["x-autonomy-event"] == "approval_needed")
        let body = try JSONValue.parse(approvalAlert.body)
        #expect(body[path: "approval.links.approve"]?.stringValue?.contains("#t=") == true)
    }
}

struct CLIFailureInTest: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// HMAC-SHA256 as `openssl dgst` computes it: an implementation that is not the one under test.
func hmacWithOpenSSL(_ data: Data, key: String) throws -> String? {
    let openssl = ["/usr/bin/openssl", "/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let openssl else { return nil }
    let digest = Tool.run(openssl, ["dgst", "-sha256", "-hmac", key, "-r"], input: Array(data), timeout: .seconds(60))
    guard digest.passed else { throw CLIFailureInTest("openssl dgst failed: \(digest.detail)") }
    return String(digest.stdout.prefix { $0.isHexDigit })
}
