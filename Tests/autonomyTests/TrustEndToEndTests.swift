import AutonomyCore
import Foundation
import GRDB
import Testing

/// Roles and trust with the built binary: only an operator's signature approves, producers reach
/// the queue only through the gate and only as themselves, and handlers get no secret they were
/// not given.
@Suite struct TrustEndToEndTests {
    static func config(producers: String = #"{ "users": {} }"#, extra: String = "") -> String {
        """
        {
          "version": 1,
          "approvals": { "allowed_signers": "allowed_signers" },
          "producers": \(producers),
          \(extra)
          "task_types": {
            "send_email": {
              "safety": "dangerous",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo \\"$AUTONOMY_TASK_ID\\" >> sent.txt"] } },
              "retry": { "max_attempts": 1 },
              "verify": [ { "file": { "path": "sent.txt", "non_empty": true } } ]
            },
            "send_sms": {
              "safety": "dangerous",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo \\"sms $AUTONOMY_TASK_ID\\" >> sent.txt"] } },
              "verify": [ { "file": { "path": "sent.txt", "non_empty": true } } ]
            },
            "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
          }
        }
        """
    }

    func sent(_ sandbox: Sandbox) -> [String] {
        ((try? String(contentsOfFile: sandbox.file("sent.txt"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    func heldReasons(_ sandbox: Sandbox) throws -> [String] {
        try DatabaseQueue(path: sandbox.databasePath).read { db in
            try String.fetchAll(db, sql: "SELECT json_extract(detail, '$.reason') FROM ledger WHERE event = 'held'")
        }
    }

    @Test func anApprovalForgedWithSQLDoesNotRunAndTheLedgerSaysWhy() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        try await DatabaseQueue(path: sandbox.databasePath).write { db in
            try db.execute(
                sql: """
                    UPDATE approvals SET state = 'approved', decided_by = 'elad', channel = 'cli', decided_at = 1;
                    UPDATE tasks SET state = 'queued';
                    """)
        }
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.status == 0)
        #expect(sent(sandbox).isEmpty)
        #expect(run.stdout.contains("awaiting_approval, not run: approval 1 is not a valid approval"))
        #expect(try heldReasons(sandbox).last?.contains("carries no operator's signature") == true)
        // The real operator's signed yes still works afterwards.
        let listed = try JSONValue.parse(try await sandbox.run(["approvals", "--json"]).stdout)
        guard case .array(let items) = listed, case .int(let id)? = items.first?[path: "id"] else {
            throw CLIFailureInTest("no new approval request")
        }
        #expect(try await sandbox.run(["approve", "\(id)"]).status == 0)
        _ = try await sandbox.run(["work-once", "--drain"])
        #expect(sent(sandbox) == ["1"])
    }

    @Test func approveWithNoKeyAWrongKeyOrAnUnlistedKeyIsRefused() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        let before = try sandbox.snapshot()
        let noKey = try await sandbox.run(["approve", "1"], environment: ["AUTONOMY_SIGNING_KEY": ""])
        #expect(noKey.status == 77 && noKey.stderr.contains("no signing key"), "\(noKey.stderr)")
        let notAKey = try await sandbox.run(["approve", "1", "--key", sandbox.configPath])
        #expect(notAKey.status == 77, "\(notAKey.stderr)")
        let stranger = OpenSSHEd25519Key(comment: "mallory")
        let strangerPath = sandbox.file("mallory_ed25519")
        try stranger.openSSHText.write(toFile: strangerPath, atomically: true, encoding: .utf8)
        let unlisted = try await sandbox.run(["approve", "1", "--key", strangerPath])
        #expect(
            unlisted.status == 77 && unlisted.stderr.contains("not allowed to sign decisions"), "\(unlisted.stderr)")
        let unlistedReject = try await sandbox.run(["reject", "1", "--reason", "no", "--key", strangerPath])
        #expect(unlistedReject.status == 77)
        for result in [noKey, notAKey, unlisted, unlistedReject] {
            #expect(result.stderrLines.count == 1 && result.stderrLines[0].hasPrefix("error: "))
        }
        #expect(try sandbox.snapshot() == before)
    }

    @Test func aSignedApprovalDoesNotReleaseATaskWhosePayloadOrTypeWasChangedAfterwards() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"d@e.f"}"#])
        #expect(try await sandbox.run(["approve", "1"]).status == 0)
        #expect(try await sandbox.run(["approve", "2"]).status == 0)
        let database = try DatabaseQueue(path: sandbox.databasePath)
        // The type is as immutable as the payload...
        #expect {
            try database.write { db in try db.execute(sql: "UPDATE tasks SET type = 'send_sms' WHERE id = 2") }
        } throws: { error in
            (error as? DatabaseError)?.message == "a task's type and payload cannot change after enqueue"
        }
        // ...so an attacker drops the guard first, and puts it back after (work-once refuses a
        // database whose triggers are not autonomy's own: this reaches the claim's own check).
        try await database.write { db in
            let guardText = try #require(
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
            defer { try? db.execute(sql: guardText) }
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(
                sql: #"UPDATE tasks SET payload = '{"to":"x@evil.org"}', payload_sha256 = ? WHERE id = 1"#,
                arguments: [#"{"to":"x@evil.org"}"#.sha256Hex])
            try db.execute(sql: "UPDATE tasks SET type = 'send_sms' WHERE id = 2")
            try db.execute(
                sql: "UPDATE approvals SET payload_sha256 = ? WHERE id = 1",
                arguments: [#"{"to":"x@evil.org"}"#.sha256Hex])
        }
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.status == 0)
        #expect(sent(sandbox).isEmpty, "\(run.stdout)")
        let reasons = try heldReasons(sandbox)
        #expect(reasons.contains { $0.contains("signed for another payload") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("signed for type send_email") }, "\(reasons)")
    }

    /// The payload rewritten under its old hash (the guard dropped and put back): `approvals show`
    /// says so and shows the hash of what it shows; `approve` signs nothing.
    @Test func aPayloadRewrittenUnderItsOldHashIsFlaggedAndCannotBeApproved() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"x@evil.org"}"#])
        let harmless = #"{"to":"friend@x.org"}"#
        try await DatabaseQueue(path: sandbox.databasePath).write { db in
            let guardText = try #require(
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: "UPDATE tasks SET payload = ? WHERE id = 1", arguments: [harmless])
            try db.execute(sql: guardText)
        }
        let shown = try await sandbox.run(["approvals", "show", "1"])
        #expect(shown.stdout.contains("ALTERED:") && shown.stdout.contains(harmless.sha256Hex), "\(shown.stdout)")
        #expect(!shown.stdout.contains(#"{"to":"x@evil.org"}"#.sha256Hex))
        let before = try sandbox.snapshot()
        let refused = try await sandbox.run(["approve", "1", "--yes"])
        #expect(refused.status == 1 && refused.stderrLines.count == 1, "\(refused.stderr)")
        #expect(refused.stderr.hasPrefix("error: ") && refused.stderr.contains("changed outside autonomy"))
        #expect(try sandbox.snapshot() == before)
    }

    /// Whoever can write the database can put any number in a time column: readers show it, they
    /// never trap on the arithmetic (the red team's `requested_at = INT64_MIN` took serve down).
    @Test func timesAnyoneCouldWriteIntoRowsNeverCrashAReader() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        _ = try await sandbox.run(["enqueue", "report"])
        _ = try await sandbox.run(["enqueue", "report", "--delay", "1h"])
        try await DatabaseQueue(path: sandbox.databasePath).write { db in
            try db.execute(
                sql: "UPDATE approvals SET requested_at = ?, expires_at = ? WHERE id = 1",
                arguments: [Int64.min, Int64.max])
            try db.execute(
                sql: "UPDATE tasks SET created_at = ?, run_at = ?, updated_at = ? WHERE id = 2",
                arguments: [Int64.min, Int64.min, Int64.min])
            try db.execute(
                sql: "UPDATE tasks SET created_at = ?, run_at = ?, updated_at = ? WHERE id = 3",
                arguments: [Int64.max, Int64.max, Int64.max])
        }
        for arguments in [
            ["status"], ["status", "--json"], ["tasks", "list"], ["tasks", "show", "2"], ["approvals"],
            ["approvals", "--json"], ["approvals", "show", "1"], ["metrics"], ["doctor"],
        ] {
            let result = try await sandbox.run(arguments)
            #expect(result.status < 64 || (64...78).contains(result.status), "\(arguments): \(result.stderr)")
            #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("runtime failure"))
        }
        #expect(Interval.between(.min, .max) == Interval(milliseconds: .max))
        #expect(Interval.between(.max, .min) == Interval(milliseconds: -.max))
        #expect(Interval(milliseconds: .min).description.hasPrefix("-"))
    }

    @Test func approveShowsTheWholePayloadAndSignsOnlyTheHashTheOperatorSaw() async throws {
        let sandbox = try Sandbox(config: Self.config())
        let payload = #"{"a_note":"\#(String(repeating: "x", count: 300))","to":"attacker@evil.org"}"#
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", payload])
        let listed = try await sandbox.run(["approvals"])
        let hash = payload.sha256Hex
        #expect(listed.stdout.contains(String(hash.prefix(12))))
        let wrong = try await sandbox.run(["approve", "1", "--sha256", "000000"])
        #expect(wrong.status == 77 && wrong.stderr.contains("it changed since you looked"), "\(wrong.stderr)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'") == 1)
        let right = try await sandbox.run(["approve", "1", "--sha256", String(hash.prefix(8))])
        #expect(right.status == 0, "\(right.stderr)")
        // The operator saw everything signed: the whole payload, not a summary cut before "to".
        #expect(right.stderr.contains("attacker@evil.org") && right.stderr.contains(hash))
        #expect(right.stderr.contains("signing as elad"))
    }

    @Test func aSubjectThatCouldHideTextFromTheOperatorIsRefused() async throws {
        let sandbox = try Sandbox(config: Self.config())
        for subject in ["invoice \u{202E}gpj.exe", "a\u{9B}31mred", "zero\u{200B}width"] {
            let result = try await sandbox.run(["enqueue", "report", "--subject", subject])
            #expect(result.status == 65 && result.stderr.contains("invisible formatting"), "\(result.stderr)")
        }
    }

    @Test func anApprovalOlderThanItsWindowDoesNotRun() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        #expect(try await sandbox.run(["approve", "1"]).status == 0)
        let later = try await sandbox.run(["work-once", "--drain"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "25h"])
        #expect(later.status == 0)
        #expect(sent(sandbox).isEmpty)
        #expect(try heldReasons(sandbox).last?.contains("approvals.run_within") == true)
    }

    @Test func aHandlerSeesNoSecretItsTypeDidNotPass() async throws {
        let dump = #"["/bin/sh", "-c", "env > \"env-$AUTONOMY_TASK_TYPE.txt\""]"#
        let sandbox = try Sandbox(
            config: """
                {
                  "version": 1,
                  "gateway": { "models": [ { "name": "gpt", "base_url": "http://127.0.0.1:9", "model": "m",
                               "api_key_env": "OPENAI_API_KEY", "tier": "cheap",
                               "input_usd_per_million": 1, "output_usd_per_million": 1 } ] },
                  "task_types": {
                    "plain": { "safety": "safe", "handler": { "exec": { "argv": \(dump) } } },
                    "needs_key": { "safety": "safe",
                                   "handler": { "exec": { "argv": \(dump), "pass_env": ["OPENAI_API_KEY"] } } }
                  }
                }
                """)
        _ = try await sandbox.run(["enqueue", "plain"])
        _ = try await sandbox.run(["enqueue", "needs_key"])
        let secrets = ["OPENAI_API_KEY": "sk-test-secret", "DEPLOY_TOKEN": "tok-secret", "TZ": "UTC"]
        #expect(try await sandbox.run(["work-once", "--drain"], environment: secrets).status == 0)
        let plain = try String(contentsOfFile: sandbox.file("env-plain.txt"), encoding: .utf8)
        #expect(!plain.contains("sk-test-secret") && !plain.contains("tok-secret"))
        #expect(plain.contains("PATH=") && plain.contains("TZ=UTC") && plain.contains("AUTONOMY_TASK_ID="))
        let passed = try String(contentsOfFile: sandbox.file("env-needs_key.txt"), encoding: .utf8)
        #expect(passed.contains("OPENAI_API_KEY=sk-test-secret") && !passed.contains("tok-secret"))
    }

    @Test func aConfigurationOthersCanWriteIsRefused() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        chmod(sandbox.configPath, 0o666)
        let before = try sandbox.snapshot()
        for arguments in [["work-once"], ["approve", "1"], ["reject", "1", "--reason", "no"]] {
            let result = try await sandbox.run(arguments)
            #expect(result.status == 78, "\(arguments): \(result.stderr)")
            #expect(result.stderrLines.last?.contains("chmod go-w") == true, "\(arguments): \(result.stderr)")
        }
        let gate = try await sandbox.exchangeWithGate(Array(#"{"verb":"status"}"#.utf8) + [10])
        #expect(gate.answer?.exit == 69 && gate.status == 78, "\(gate.raw) \(gate.stderr)")
        #expect(try sandbox.snapshot() == before)
        chmod(sandbox.configPath, 0o644)
        #expect(try await sandbox.run(["work-once"]).status == 0)
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a file to another user; skipped"))
    func aConfigurationFileSomeoneElseLeftInTheFolderIsNotUsed() async throws {
        let sandbox = try Sandbox(config: Self.config())
        chown(sandbox.configPath, 65534, 65534)
        let result = try await sandbox.run(["status"], environment: ["AUTONOMY_CONFIG": ""])
        #expect(result.status == 78 && result.stderr.contains("is not yours"), "\(result.stderr)")
        // Where the gate is, a file dropped in a shared folder does not stop a producer's commands.
        let other = try Sandbox(config: GateEndToEndTests.config())
        let gate = try GateListener(sandbox: other)
        defer { gate.stop() }
        let routed = try await sandbox.run(
            ["enqueue", "report"],
            environment: ["AUTONOMY_CONFIG": "", "AUTONOMY_DATABASE": "", "AUTONOMY_GATE": gate.socketPath])
        #expect(routed.status == 0 && routed.stdout == "1\n", "\(routed.stderr)")
    }
}

/// The local entry gate, driven as systemd drives it: one `autonomy gate` per connection.
@Suite struct GateEndToEndTests {
    static func config(types: String = #"["report"]"#, limits: String = "") -> String {
        TrustEndToEndTests.config(
            producers: #"{ "users": { "\#(currentUserName)": { "types": \#(types)\#(limits) } } }"#)
    }

    @Test func aProducerIsRefusedATypeItIsNotAllowedAndItsSourceIsWhoItIs() async throws {
        let sandbox = try Sandbox(config: Self.config())
        var refused = GateRequest(verb: .enqueue)
        refused.type = "send_email"
        let no = try await sandbox.exchangeWithGate(refused)
        #expect(no.exit == 77 && no.stderr.contains("may not enqueue send_email"), "\(no.stderr)")
        var forged = GateRequest(verb: .enqueue)
        (forged.type, forged.source) = ("report", "sales-bot")
        let notYou = try await sandbox.exchangeWithGate(forged)
        #expect(notYou.exit == 77 && notYou.stderr.contains("the source is who you are (\(currentUserName))"))
        var allowed = GateRequest(verb: .enqueue)
        (allowed.type, allowed.json) = ("report", true)
        let yes = try await sandbox.exchangeWithGate(allowed)
        #expect(yes.exit == 0, "\(yes.stderr)")
        #expect(try JSONValue.parse(yes.stdout)[path: "source"] == .string(currentUserName))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks") == 1)
    }

    @Test func aProducerWithoutReadAllCannotDecideThroughTheGate() async throws {
        let sandbox = try Sandbox(config: Self.config(types: #"["send_email"]"#))
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", "{}"])
        var prepare = GateRequest(verb: .prepareDecision)
        (prepare.id, prepare.decision, prepare.publicKey) = (1, "approve", sandbox.operatorKey.publicKey.openSSH)
        let answer = try await sandbox.exchangeWithGate(prepare)
        #expect(answer.exit == 77 && answer.statement == nil && !answer.stderr.contains("send_email"))
    }

    @Test func aUserTheConfigurationDoesNotListIsRefused() async throws {
        let sandbox = try Sandbox(config: TrustEndToEndTests.config())
        let answer = try await sandbox.exchangeWithGate(GateRequest(verb: .status))
        #expect(answer.exit == 77 && answer.stderr.contains("is not a producer here"))
    }

    @Test func badRequestsGetAnErrorAnswerAndChangeNothing() async throws {
        let sandbox = try Sandbox(config: Self.config())
        _ = try await sandbox.run(["enqueue", "report"])
        let before = try sandbox.snapshot()
        let garbage = try await sandbox.exchangeWithGate(Array("\u{1}\u{2}garbage\n".utf8))
        #expect(garbage.answer?.exit == 64 && garbage.answer?.stderr.contains("not JSON") == true, "\(garbage.raw)")
        let unknown = try await sandbox.exchangeWithGate(Array(#"{"verb":"drop_table"}"#.utf8) + [10])
        #expect(unknown.answer?.stderr.contains("unknown verb \"drop_table\"") == true, "\(unknown.raw)")
        // A producer's text never forges a line of the journal.
        let forging = try await sandbox.exchangeWithGate(
            Array(#"{"verb":"x\ngate: root (uid 0, pid 1): enqueue: exit 0"}"#.utf8) + [10])
        #expect(forging.stderr.split(separator: "\n").count == 1, "\(forging.stderr)")
        let halfClosed = try await sandbox.exchangeWithGate(Array(#"{"verb":"enqueue","type":"rep"#.utf8))
        #expect(halfClosed.answer?.exit == 64, "\(halfClosed.raw)")
        let empty = try await sandbox.exchangeWithGate([])
        #expect(empty.answer?.stderr.contains("closed before a whole request") == true, "\(empty.raw)")
        let huge =
            [UInt8](#"{"verb":"enqueue","type":"report","payload":""#.utf8)
            + [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 20) + [UInt8](#""}"#.utf8) + [10]
        let tooBig = try await sandbox.exchangeWithGate(huge)
        #expect(tooBig.answer?.stderr.contains("the request is over") == true, "\(tooBig.raw.prefix(300))")
        for result in [garbage, unknown, halfClosed, empty, tooBig] {
            #expect(result.status == 0)  // a producer's garbage never fails the unit
            #expect(result.answer?.stderr.split(separator: "\n").count == 1)
        }
        #expect(try sandbox.snapshot() == before)
    }

    @Test func theGateIsStartedOnlyOnASocket() async throws {
        let sandbox = try Sandbox(config: Self.config())
        let result = try await sandbox.run(["gate"])
        #expect(result.status == 64 && result.stderr.contains("not a Unix socket"), "\(result.stderr)")
    }

    @Test func theCommandsSayTheSameThroughTheGateAsDirectly() async throws {
        let sandbox = try Sandbox(config: Self.config(types: #"["*"]"#, limits: #", "read_all": true"#))
        let gate = try GateListener(sandbox: sandbox)
        defer { gate.stop() }
        let via = ["--gate", gate.socketPath]
        // An undeclared type is the one answer that differs: the operator is told what is declared,
        // a producer only that it may not (it learns nothing of the map).
        let undeclared = try await sandbox.run(["enqueue", "wire_money"] + via)
        #expect(undeclared.status == 77 && undeclared.stderr.contains("may not enqueue wire_money tasks"))
        #expect(!undeclared.stderr.contains("send_email"), "\(undeclared.stderr)")
        #expect(try await sandbox.run(["enqueue", "wire_money"]).stderr.contains("declared: report, send_email"))
        for arguments in [
            ["enqueue", "report", "--payload", "{oops"],
            ["enqueue", "report", "--delay", "soon"],
            ["tasks", "show", "99"], ["approve", "99"], ["reject", "99", "--reason", "no"],
        ] {
            let direct = try await sandbox.run(arguments)
            let gated = try await sandbox.run(arguments + via)
            #expect(direct.status == gated.status, "\(arguments)")
            #expect(direct.stderr == gated.stderr, "\(arguments): \(direct.stderr) | \(gated.stderr)")
            #expect(direct.status != 0 && gated.stderrLines.count == 1)
        }
        let enqueued = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#] + via)
        #expect(enqueued.status == 0 && enqueued.stdout == "1\n", "\(enqueued.stderr)")
        #expect(enqueued.stderr.contains("waits for an operator's approval"))
        let listed = try await sandbox.run(["tasks", "list"] + via)
        #expect(listed.stdout.contains("send_email"))
        // An operator decides through the gate: the key signs here, the gate checks and records.
        let approved = try await sandbox.run(["approve", "1", "--note", "ok"] + via)
        #expect(approved.status == 0 && approved.stdout.contains("approved by elad"), "\(approved.stderr)")
        let again = try await sandbox.run(["approve", "1"] + via)
        #expect(again.status == 1 && again.stderr.contains("already decided"))
        #expect(try await sandbox.run(["work-once"]).status == 0)
        #expect(
            try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done' AND source = '\(currentUserName)'") == 1)
        #expect(gate.log.contains { $0.contains("gate: \(currentUserName) (uid") && $0.contains("enqueue: exit 0") })
    }

    @Test func aProducerOverItsHourlyLimitIsToldWhenToTryAgain() async throws {
        let sandbox = try Sandbox(config: Self.config(limits: #", "max_per_hour": 2"#))
        var request = GateRequest(verb: .enqueue)
        request.type = "report"
        #expect(try await sandbox.exchangeWithGate(request).exit == 0)
        #expect(try await sandbox.exchangeWithGate(request).exit == 0)
        let third = try await sandbox.exchangeWithGate(request)
        #expect(third.exit == 75 && third.stderr.contains("try again in"), "\(third.stderr)")
    }

    /// The kernel, not the request, says who connected: a second Unix user is seen as itself.
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first(where: FileManager.default.isExecutableFile)

    @Test(
        .enabled(
            if: geteuid() == 0 && setpriv != nil && getpwuid(65534) != nil,
            "needs root, setpriv and a user 65534 to connect as a second user; skipped"))
    func anotherUserIsSeenAsItselfAndSeesOnlyItsOwnTasks() async throws {
        let setpriv = try #require(Self.setpriv)
        let nobody = String(cString: try #require(getpwuid(65534)).pointee.pw_name)
        let sandbox = try Sandbox(
            config: TrustEndToEndTests.config(
                producers:
                    #"{ "users": { "\#(nobody)": { "types": ["report"] }, "\#(currentUserName)": { "types": ["report"] } } }"#
            ))
        _ = try await sandbox.run(["enqueue", "report", "--subject", "root's own"])
        chmod(sandbox.path, 0o755)
        let gate = try GateListener(sandbox: sandbox)
        defer { gate.stop() }
        func asNobody(_ arguments: [String]) async throws -> CLIResult {
            try await sandbox.run(
                ["--reuid=65534", "--regid=65534", "--clear-groups", autonomyBinary] + arguments
                    + ["--gate", gate.socketPath], executable: setpriv)
        }
        let probe = try await asNobody(["status"])
        guard probe.status == 0 else {
            Issue.record("the built binary cannot be run as \(nobody) here: \(probe.stderr)")
            return
        }
        let enqueued = try await asNobody(["enqueue", "report", "--json"])
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        #expect(try JSONValue.parse(enqueued.stdout)[path: "source"] == .string(nobody))
        let forged = try await asNobody(["enqueue", "report", "--source", currentUserName])
        #expect(forged.status == 77)
        let mine = try await asNobody(["tasks", "list", "--json"])
        guard case .array(let tasks) = try JSONValue.parse(mine.stdout) else { throw CLIFailureInTest("no list") }
        #expect(tasks.count == 1 && tasks[0][path: "source"] == .string(nobody))
        let others = try await asNobody(["tasks", "show", "1"])
        #expect(others.status == 66)  // root's task: for nobody, it does not exist
    }
}

@Suite struct SecretsAtRestEndToEndTests {
    @Test func aSecretAHandlerPrintsNeverReachesTheDatabase() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "task_types": {"leaky": {"safety": "safe", "retry": {"max_attempts": 1},
                  "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo \\"key=$OPENAI_API_KEY\\"; echo \\"denied for $OPENAI_API_KEY\\" >&2; exit 1"],
                                       "pass_env": ["OPENAI_API_KEY"]}}}}}
                """)
        _ = try await sandbox.run(["enqueue", "leaky"])
        _ = try await sandbox.run(["work-once"], environment: ["OPENAI_API_KEY": "sk-test-secret-42"])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: sandbox.databasePath))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: sandbox.databasePath + "-wal"))) ?? Data()
        #expect(
            bytes.range(of: Data("sk-test-secret-42".utf8)) == nil
                && wal.range(of: Data("sk-test-secret-42".utf8)) == nil)
        let shown = try await sandbox.run(["tasks", "show", "1"])
        #expect(shown.stdout.contains("[redacted OPENAI_API_KEY]"), "\(shown.stdout)")
    }
}
