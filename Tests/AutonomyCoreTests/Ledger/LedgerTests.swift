import Foundation
import GRDB
import Synchronization
import Testing

@testable import AutonomyCore

@Suite struct LedgerChainTests {
    func runSomeTasks(_ fixture: Fixture) async throws {
        for index in 0..<3 { try fixture.enqueue("report", #"{"n":\#(index)}"#) }
        try fixture.enqueue("once")
        _ = try await fixture.worker(ScriptedRunner([.exited(0), .exited(1), .exited(0), .exited(1)]))
            .work(drain: .init(maxSeconds: 600))
    }

    func dropGuards(_ fixture: Fixture) throws {
        try fixture.store.write("drop the guards") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_update; DROP TRIGGER ledger_no_delete")
        }
    }

    @Test func theChainHoldsAfterARealRun() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        let report = try fixture.store.verifyLedgerChain()
        #expect(report.firstBroken == nil)
        #expect(report.rows == (try fixture.count("SELECT COUNT(*) FROM ledger")))
        #expect(report.rows > 10)
        let last = try fixture.store.read("last") { db in
            try String.fetchOne(db, sql: "SELECT hash FROM ledger ORDER BY id DESC LIMIT 1")
        }
        #expect(report.lastHash == last)
    }

    /// A long ledger is checked in two halves at once: the halves must meet exactly, whichever row
    /// is touched.
    @Test(arguments: [0, 5, 6, 7, 9, 10, 12, 15]) func theTwoHalvesFindWhatOnePassFinds(_ edited: Int64) async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        let rows = try fixture.count("SELECT COUNT(*) FROM ledger")
        let whole = try fixture.store.verifyLedgerChain(splittingAbove: .max)
        #expect(try fixture.store.verifyLedgerChain(splittingAbove: 4) == whole)
        #expect(whole.firstBroken == nil && whole.rows == rows && rows > 15)
        guard edited > 0 else { return }
        try dropGuards(fixture)
        try fixture.store.write("edit") { db in
            if edited == 7 {
                try db.execute(sql: "DELETE FROM ledger WHERE id = ?", arguments: [edited])
            } else {
                try db.execute(sql: #"UPDATE ledger SET detail = '{"forged":1}' WHERE id = ?"#, arguments: [edited])
            }
        }
        let single = try fixture.store.verifyLedgerChain(splittingAbove: .max)
        let split = try fixture.store.verifyLedgerChain(splittingAbove: 4)
        #expect(single.firstBroken?.id == (edited == 7 ? 8 : edited))
        #expect(split.firstBroken == single.firstBroken, "\(split) \(single)")
    }

    @Test(arguments: ["at = 'yesterday'", "attempt = 'one'", "detail = x'7b7d'", "task_id = 1.5", "duration_ms = 2.5"])
    func aFieldOfTheWrongStorageClassIsAnEdit(_ edit: String) async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        try dropGuards(fixture)
        try fixture.store.write("edit") { db in try db.execute(sql: "UPDATE ledger SET \(edit) WHERE id = 6") }
        let report = try fixture.store.verifyLedgerChain()
        #expect(report.firstBroken?.id == 6, "\(edit)")
        #expect(report.firstBroken?.reason == "a field holds a value of the wrong type (it was edited)", "\(edit)")
    }

    @Test func aForgedShortHashAnywhereIsAnEditNotACrash() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        try dropGuards(fixture)
        try fixture.store.write("edit") { db in
            try db.execute(sql: "UPDATE ledger SET hash = 'x', prev_hash = 'x' WHERE id BETWEEN 6 AND 12")
        }
        let single = try fixture.store.verifyLedgerChain(splittingAbove: .max)
        #expect(single.firstBroken?.id == 6)
        #expect(try fixture.store.verifyLedgerChain(splittingAbove: 4) == single)
    }

    /// A window's pass starts near its first row, found by halving the ids: never after it, even
    /// with a clock set back by less than the day's margin.
    @Test func aWindowStartsNoLaterThanItsFirstRow() throws {
        let fixture = try Fixture()
        let hour = Interval.hours(1).milliseconds
        // 200 rows an hour apart, with one step back of 20 hours at row 120.
        let times = (Int64(0)..<200).map { $0 * hour - ($0 >= 120 ? 20 * hour : 0) }
        try fixture.store.write("rows") { db in
            for at in times { try db.appendLedger(.pruned, at: at, taskID: nil, type: nil, detailText: nil) }
        }
        try fixture.store.read("probe") { db in
            for step in Int64(0)...28 {
                let since = step * 7 * hour
                let start = try db.firstLedgerID(near: since)
                let first = times.firstIndex { $0 >= since }.map { Int64($0) + 1 } ?? Int64(times.count + 1)
                #expect(start <= first, "window from hour \(since / hour): starts at \(start), first row \(first)")
            }
            #expect(try db.firstLedgerID(near: 150 * hour) > 100)  // it does skip what is long past
        }
    }

    @Test func anEditedRowIsFoundAtThatRow() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        try dropGuards(fixture)
        try fixture.store.write("edit") { db in
            try db.execute(sql: #"UPDATE ledger SET detail = '{"evidence":"forged"}' WHERE id = 5"#)
        }
        let report = try fixture.store.verifyLedgerChain()
        #expect(report.firstBroken?.id == 5)
        #expect(report.firstBroken?.reason.contains("edited") == true)
    }

    @Test func anEditThatAlsoRewritesTheHashIsFoundAtTheNextRow() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        try dropGuards(fixture)
        try fixture.store.write("forge") { db in
            let row = try #require(try Row.fetchOne(db, sql: "SELECT * FROM ledger WHERE id = 5"))
            let forged = LedgerChain.hash(
                previous: row["prev_hash"], id: 5, at: row["at"], taskID: row["task_id"], type: row["type"],
                event: "done", attempt: row["attempt"], durationMs: row["duration_ms"], costUSD: row["cost_usd"],
                detail: row["detail"])
            try db.execute(sql: "UPDATE ledger SET event = 'done', hash = ? WHERE id = 5", arguments: [forged])
        }
        #expect(try fixture.store.verifyLedgerChain().firstBroken?.id == 6)
    }

    @Test func aDeletedRowIsFoundWhereItWas() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        try dropGuards(fixture)
        try fixture.store.write("delete") { db in try db.execute(sql: "DELETE FROM ledger WHERE id = 4") }
        let report = try fixture.store.verifyLedgerChain()
        #expect(report.firstBroken?.id == 5)
        #expect(report.firstBroken?.reason.contains("missing") == true)
    }

    @Test func pruningDropsBulkyFieldsButNeverTheLedger() async throws {
        let fixture = try Fixture()
        try await runSomeTasks(fixture)
        let rowsBefore = try fixture.count("SELECT COUNT(*) FROM ledger")
        fixture.clock.advance(by: .days(31))
        let pruned = try fixture.store.prune(
            finishedBefore: fixture.clock.now() - Interval.days(30).milliseconds,
            by: "ops", now: fixture.clock.now())
        #expect(pruned == 3)  // two done and one dead; the task waiting to retry is not finished
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE payload = '' AND result IS NULL") == 3)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger") == rowsBefore + 1)
        #expect(try fixture.store.verifyLedgerChain().firstBroken == nil)
        let dead = try #require(try fixture.store.tasks(matching: TaskFilter(state: .dead)).first)
        #expect(throws: QueueError.self) {
            try fixture.store.retry(taskID: dead.id, by: "ops", now: fixture.clock.now())
        }
        // The payload of an unfinished task still cannot be touched.
        let live = try fixture.enqueue("report", #"{"n":99}"#)
        #expect {
            try fixture.store.write("tamper") { db in
                try db.execute(sql: "UPDATE tasks SET payload = '' WHERE id = ?", arguments: [live.id])
            }
        } throws: { error in
            error is StoreError && "\(error)".contains("cannot change after enqueue")
        }
    }
}

@Suite struct SystemMapTests {
    static let map = """
        {
          "version": 1,
          "task_types": {
            "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                        "verify": [ { "json": { "path": "ok", "equals": true } } ],
                        "retry": { "max_attempts": 1 } },
            "idle": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
          },
          "components": [ { "name": "reports", "owner": "ops", "kind": "script", "task_types": ["report"] } ]
        }
        """

    /// A runner whose result fails the `ok == true` check until told otherwise.
    final class Toggle: HandlerRunner {
        let good = Mutex(false)
        func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
            HandlerOutcome(
                status: .exited(0), stdout: good.withLock { $0 } ? #"{"ok":true}"# : #"{"ok":false}"#,
                durationMs: 40)
        }
    }

    @Test func aTypeThatOnlyFailsVerificationIsShelfwareUntilOneVerifiedSuccess() async throws {
        let fixture = try Fixture(map: Self.map)
        let runner = Toggle()
        try fixture.enqueue("report", #"{"n":1}"#)
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        var report = try fixture.store.systemMap(configuration: fixture.configuration, since: 0)
        var stats = try #require(report.types.first { $0.name == "report" })
        #expect(stats.runs == 1 && stats.dead == 1 && stats.done == 0)
        #expect(stats.shelfware && !stats.everSucceeded)
        #expect(stats.verificationFailures == 1)
        #expect(report.components.first?.shelfware == true)
        #expect(report.types.first { $0.name == "idle" }?.shelfware == true)  // declared, never run

        runner.good.withLock { $0 = true }
        try fixture.enqueue("report", #"{"n":2}"#)
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        report = try fixture.store.systemMap(configuration: fixture.configuration, since: 0)
        stats = try #require(report.types.first { $0.name == "report" })
        #expect(!stats.shelfware && stats.everSucceeded)
        #expect(stats.successRate == 0.5)
        #expect(stats.medianMs == 40 && stats.p95Ms == 40)
        #expect(report.components.first?.shelfware == false)
        // Outside the window it is shelfware again (but it did succeed once).
        let later = try fixture.store.systemMap(configuration: fixture.configuration, since: fixture.clock.now() + 1)
        let old = try #require(later.types.first { $0.name == "report" })
        #expect(old.shelfware && old.everSucceeded)
    }

    @Test func typesTheMapNoLongerDeclaresAreListed() throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        let smaller = try loadMap(#"{"version": 1, "task_types": {}}"#)
        let report = try fixture.store.systemMap(configuration: smaller.configuration, since: 0)
        #expect(report.undeclared == ["report"])
    }
}

@Suite struct MetricsTests {
    /// A strict check of the Prometheus text exposition format: every sample belongs to a family
    /// declared by HELP and TYPE, names and labels are well formed, values are numbers.
    static func problems(in text: String) -> [String] {
        var problems: [String] = []
        var declared: [String: String] = [:]
        let name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
        let label = "[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\\\\n]|\\\\[\\\\\"n])*\""
        let sample = try! Regex("^(\(name))(\\{\(label)(,\(label))*\\})? (-?[0-9.eE+-]+|NaN|\\+Inf|-Inf)$")
        let help = try! Regex("^# HELP (\(name)) .+$")
        let type = try! Regex("^# TYPE (\(name)) (counter|gauge|summary|histogram|untyped)$")
        guard text.hasSuffix("\n") else { return ["the text does not end with a newline"] }
        for line in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(line)
            if let match = try? type.wholeMatch(in: line) {
                declared[String(match.output[1].substring ?? "")] = String(match.output[2].substring ?? "")
            } else if (try? help.wholeMatch(in: line)) != nil {
                continue
            } else if let match = try? sample.wholeMatch(in: line) {
                let family = String(match.output[1].substring ?? "")
                if declared[family] == nil { problems.append("no TYPE before \(family)") }
            } else {
                problems.append("malformed line: \(line)")
            }
        }
        return problems
    }

    @Test func theCheckerCatchesMalformedLines() {
        #expect(Self.problems(in: "# TYPE a gauge\na 1\n").isEmpty)
        #expect(!Self.problems(in: "# TYPE a gauge\na{x=\"1} 1\n").isEmpty)
        #expect(!Self.problems(in: "a 1\n").isEmpty)
        #expect(!Self.problems(in: "# TYPE a gauge\na one\n").isEmpty)
    }

    @Test func theMetricsAreValidPrometheusText() async throws {
        let fixture = try Fixture()
        try fixture.enqueue("report", #"{"n":1}"#)
        try fixture.enqueue("once")
        try fixture.enqueue("send_email", #"{"to":"a\"b@c.d"}"#)
        _ = try await fixture.worker(ScriptedRunner([.exited(0), .exited(1)])).work(drain: .init(maxSeconds: 600))
        let text = try PrometheusMetrics.render(
            store: fixture.store, configuration: fixture.configuration,
            now: fixture.clock.now())
        #expect(Self.problems(in: text) == [])
        #expect(text.contains("autonomy_tasks{state=\"done\"} 1"))
        #expect(text.contains("autonomy_tasks{state=\"dead\"} 1"))
        #expect(text.contains("autonomy_approvals_pending 1"))
        #expect(text.contains("autonomy_tasks_finished_total{type=\"once\",outcome=\"dead\"} 1"))
        #expect(text.contains("autonomy_shelfware_types "))
        #expect(PrometheusMetrics.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")

        let folder = try TemporaryFolder()
        let path = folder.file("autonomy.prom")
        try PrometheusMetrics.write(text, to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["autonomy.prom"])  // no leftovers
    }
}

@Suite struct LedgerAnchorTests {
    /// The red team's attack: drop the triggers, edit a row, re-hash every later row. The chain
    /// holds again; an anchor kept elsewhere does not.
    @Test func aLedgerRewrittenWholeFailsItsAnchors() async throws {
        let fixture = try Fixture()
        for n in 0..<3 { try fixture.enqueue("report", #"{"n":\#(n)}"#) }
        let anchor = try #require(try fixture.store.ledgerHead())
        try fixture.store.write("rewrite") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_update")
            try db.execute(sql: #"UPDATE ledger SET detail = '{"forged":true}' WHERE id = 1"#)
            var previous = LedgerChain.genesis
            for row in try Row.fetchAll(
                db,
                sql:
                    "SELECT id, at, task_id, type, event, attempt, duration_ms, cost_usd, detail FROM ledger ORDER BY id"
            ) {
                let hash = LedgerChain.hash(
                    previous: previous, id: row[0], at: row[1], taskID: row[2], type: row[3], event: row[4],
                    attempt: row[5], durationMs: row[6], costUSD: row[7], detail: row[8])
                try db.execute(
                    sql: "UPDATE ledger SET prev_hash = ?, hash = ? WHERE id = ?",
                    arguments: [previous, hash, row[0] as Int64])
                previous = hash
            }
        }
        #expect(try fixture.store.verifyLedgerChain().firstBroken == nil)  // the chain alone cannot tell
        let report = try fixture.store.checkAnchors([anchor])
        #expect(report.mismatches.count == 1 && report.mismatches[0].problem.contains("rewritten"))
    }

    @Test func anchorsReadFromLinesAndFromTheJournal() {
        let hash = String(repeating: "ab", count: 32)
        let text = """
            # kept offsite
            12 \(hash)
            {"MESSAGE":"ledger head: row 13 hash \(hash)","MESSAGE_ID":"\(LedgerAnchor.messageID)"}
            {"AUTONOMY_LEDGER_ID":"14","AUTONOMY_LEDGER_HASH":"\(hash)","MESSAGE":"x"}
            {"MESSAGE":"something else"}
            nonsense
            """
        let parsed = LedgerAnchor.parse(text)
        #expect(parsed.anchors.map(\.id) == [12, 13, 14])
        #expect(parsed.skipped == 2)
    }
}

@Suite struct LedgerNotesTests {
    /// What a handler or a verifier wrote is free text: the chained row keeps its length and hash,
    /// the text itself is shown until prune takes it with its task.
    @Test func freeTextStaysOutOfTheChainAndGoesWithPrune() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("once")
        let runner = ScriptedRunner([.exited(3)])
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        let raw = try fixture.store.read("raw") { db in
            try String.fetchAll(
                db, sql: "SELECT detail FROM ledger WHERE task_id = ? AND detail IS NOT NULL", arguments: [task.id])
        }
        #expect(!raw.joined().contains("boom"))  // ScriptedRunner's stderr
        #expect(raw.contains { $0.contains("error_sha256") && $0.contains("error_bytes") })
        let shown = try fixture.store.ledger(forTask: task.id)
        #expect(
            shown.contains { $0.event == "dead" && $0.detail?[path: "error"]?.stringValue?.contains("boom") == true })
        fixture.clock.advance(by: .days(2))
        #expect(try fixture.store.prune(finishedBefore: fixture.clock.now(), by: "ops", now: fixture.clock.now()) == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger_notes") == 0)
        #expect(try fixture.store.ledger(forTask: task.id).allSatisfy { $0.detail?[path: "error"] == nil })
        #expect(try fixture.store.verifyLedgerChain().firstBroken == nil)
    }

    /// The red team's edit: `ledger_notes` has no guard of its own, so its text is checked against
    /// the hash the chained row holds. An edited, added or stray note breaks `ledger verify` at its
    /// row, is not shown, and proposes nothing to the audit.
    @Test(arguments: [
        ("UPDATE ledger_notes SET text = 'disk full (operator: ignore)' WHERE field = 'error'", "was edited"),
        ("INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (1, 'error', 1, 'planted')", "was added"),
        ("INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (999, 'error', 1, 'x')", "does not exist"),
        ("INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (1, 'a b', 1, 'x')", "was added"),
        ("INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (1, X'FF', 1, 'x')", "wrong type"),
        ("UPDATE ledger_notes SET text = X'00FF' WHERE field = 'error'", "wrong type"),
        (
            "UPDATE ledger_notes SET ledger_id = 'one' WHERE field = 'error' AND ledger_id = (SELECT MIN(ledger_id) FROM ledger_notes)",
            "wrong type"
        ),
    ])
    func aNoteWrittenBesideTheChainIsFoundAndNotShown(_ edit: String, _ found: String) async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("once")
        _ = try await fixture.worker(ScriptedRunner([.exited(3)])).work(drain: .init(maxSeconds: 600))
        func auditedErrors() throws -> [String] {
            try fixture.store.read("facts") { db in
                var facts = AuditFacts(tally: try LedgerTally.read([0, 0, fixture.clock.now() + 1], db: db))
                try db.readErrors(into: &facts)
                return Array(facts.errors.values)
            }
        }
        #expect(try fixture.store.verifyLedgerChain().firstBroken == nil)
        #expect(try auditedErrors().contains { $0.contains("boom") })
        try fixture.store.write("tamper") { db in try db.execute(sql: edit) }
        let broken = try #require(try fixture.store.verifyLedgerChain().firstBroken)
        #expect(broken.reason.contains(found), "\(broken.reason)")
        let shown = try fixture.store.ledger(forTask: task.id).compactMap { $0.detail?[path: "error"]?.stringValue }
        #expect(!shown.contains { $0.contains("operator: ignore") || $0 == "planted" })
        #expect(shown.allSatisfy { $0.contains("boom") || $0 == LedgerChain.alteredNote }, "\(shown)")
        if found == "was edited" {
            #expect(shown.contains(LedgerChain.alteredNote))
            #expect(try auditedErrors().isEmpty)
        }
    }

    /// A note named like a field the row chains never hides that field; a NUL in a note (a
    /// verifier's evidence may hold one) is kept as U+FFFD, so the chain and the note still agree.
    @Test func aStrayNoteHidesNoChainedFieldAndANulIsNoFalseAlarm() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("once")
        try fixture.store.write("notes") { db in
            try db.appendLedger(
                .verified, at: 5, taskID: task.id, type: "once", detail: ["outcome": "fail"],
                notes: ["evidence": "line\0more"])
            try db.execute(
                sql: "INSERT INTO ledger_notes (ledger_id, field, task_id, text) VALUES (1, 'state', ?, 'forged')",
                arguments: [task.id])
        }
        let rows = try fixture.store.ledger(forTask: task.id)
        #expect(rows.first { $0.event == "enqueued" }?.detail?[path: "state"] == "queued")
        let evidence = rows.first { $0.event == "verified" }?.detail?[path: "evidence"]?.stringValue
        #expect(evidence == "line\u{FFFD}more")
        let broken = try #require(try fixture.store.verifyLedgerChain().firstBroken)
        #expect(broken.id == 1 && broken.reason.contains("state note"), "\(broken)")
    }

    @Test func theConfiguredSecretsAreRedactedFromWhatIsStored() {
        var configuration = AutonomyCore.Configuration()
        var type = TaskType(name: "t", handler: .exec(ExecHandler(argv: ["x"], passEnv: ["DEPLOY_TOKEN"])))
        type.safety = .safe
        configuration.taskTypes["t"] = type
        let redactor = SecretRedactor(
            configuration: configuration, environment: ["DEPLOY_TOKEN": "tok-123456", "OTHER": "visible-value"])
        let outcome = redactor.redact(
            HandlerOutcome(status: .exited(1), stdout: "using tok-123456", stderrTail: "auth tok-123456 failed"))
        #expect(outcome.stdout == "using [redacted DEPLOY_TOKEN]")
        #expect(outcome.stderrTail == "auth [redacted DEPLOY_TOKEN] failed")
        #expect(redactor.redact("visible-value") == "visible-value")
    }
}

extension LedgerNotesTests {
    func redactor(_ secret: String) -> SecretRedactor {
        var configuration = AutonomyCore.Configuration()
        var type = TaskType(name: "t", handler: .exec(ExecHandler(argv: ["x"], passEnv: ["S"])))
        type.safety = .safe
        configuration.taskTypes["t"] = type
        return SecretRedactor(configuration: configuration, environment: ["S": secret])
    }

    /// The red team's escapes: the stored result is the output's JSON re-written, which decodes
    /// `\u0068`; and encoders escape `<>&` (Go), `/` (PHP) and non-ASCII (Python) on their own.
    @Test(arguments: [
        #"{"s":"\u0068unter2-topsecret"}"#, #"{"s":"hunter2\u002dtopsecret"}"#, #"{"s":"hunter2-topsecret"}"#,
    ])
    func aSecretEscapedInJSONIsRedactedFromTheStoredResult(_ printed: String) throws {
        let outcome = redactor("hunter2-topsecret").redact(HandlerOutcome(status: .exited(0), stdout: printed))
        let stored = try #require(outcome.resultJSON)
        #expect(!stored.contains("hunter2-topsecret") && stored.contains("[redacted S]"), "\(stored)")
    }

    @Test(arguments: [
        ("p<ss&w0rd>é/x", #"p\u003css\u0026w0rd\u003eé/x"#), ("p<ss&w0rd>é/x", #"p<ss&w0rd>\u00e9/x"#),
        ("p<ss&w0rd>é/x", #"p<ss&w0rd>é\/x"#), ("p<ss&w0rd>é/x", #"p\u003Css\u0026w0rd\u003Eé/x"#),
        // Go also escapes `"` and `\` as JSON does; PHP escapes `/` and what is not ASCII at once.
        (#"p"ss<w0rd"#, #"p\"ss\u003cw0rd"#), ("a/b-é-key", #"a\/b-\u00e9-key"#),
    ])
    func aSecretAsEncodersEscapeItIsRedactedFromTextThatIsNotJSON(_ secret: String, _ printed: String) {
        let outcome = redactor(secret).redact(
            HandlerOutcome(status: .exited(1), stdout: "token: \(printed) (cut", stdoutTruncated: true))
        #expect(outcome.stdout == "token: [redacted S] (cut", "\(outcome.stdout)")
    }

    /// A cut at the output limits leaves the start (stdout) or the end (stderr) of a secret: that
    /// piece goes too. Uncut output that merely ends like one is left alone.
    @Test func thePieceOfASecretACutLeavesIsRedacted() {
        let redactor = redactor("hunter2-topsecret")
        let cut = redactor.redact(
            HandlerOutcome(
                status: .exited(1), stdout: "AAAA hunter", stdoutTruncated: true, stderrTail: "psecret BBB failed",
                stderrTruncated: true))
        #expect(cut.stdout == "AAAA [redacted S, cut]")
        #expect(cut.stderrTail == "[redacted S, cut] BBB failed")
        #expect(cut.errorSummary?.contains("psecret") == false)
        let whole = redactor.redact(
            HandlerOutcome(status: .exited(1), stdout: "the hunter", stderrTail: "secret ok"))
        #expect(whole.stdout == "the hunter" && whole.stderrTail == "secret ok")
        // Three characters at a cut are ordinary text (`sk-`, `htt`): left alone.
        let short = redactor.redact(HandlerOutcome(status: .exited(1), stdout: "a hun", stdoutTruncated: true))
        #expect(short.stdout == "a hun")
        // A long key (a PEM block) cut in its middle: found in one pass over it.
        let key = "-----BEGIN KEY-----" + String(repeating: "Zm9v", count: 1_500) + "-----END KEY-----"
        let long = self.redactor(key).redact(
            HandlerOutcome(status: .exited(1), stdout: "key: " + String(key.prefix(3_000)), stdoutTruncated: true))
        #expect(long.stdout == "key: [redacted S, cut]")
    }
}

@Suite struct LedgerTailTests {
    /// The transaction's remembered tail never points at a row whose insert failed.
    @Test func aFailedAppendLeavesTheTailAtTheLastWrittenRow() throws {
        let fixture = try Fixture()
        try fixture.store.write("append") { db in
            try db.appendLedger(.pruned, at: 1, taskID: nil, type: nil, detailText: nil)
            let written = try #require(LedgerTail.remembered(for: db))
            #expect(written.0 == 1)
            // A row slipped in under the tail: the next append's id is taken, and its insert fails.
            try db.execute(
                sql: "INSERT INTO ledger (id, at, event, prev_hash, hash) VALUES (2, 2, 'pruned', 'x', 'y')")
            #expect(throws: DatabaseError.self) {
                try db.appendLedger(.pruned, at: 3, taskID: nil, type: nil, detailText: nil)
            }
            #expect(LedgerTail.remembered(for: db)?.0 == 1 && LedgerTail.remembered(for: db)?.1 == written.1)
        }
    }
}
