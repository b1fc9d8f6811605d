import AutonomyTestSupport
import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// A map whose `checked` type passes verification when `marker` exists.
func verifiedMap(marker: String = "/nonexistent/marker") -> String {
    """
    {
      "version": 1,
      "notify": { "command": ["/bin/true"] },
      "task_types": {
        "report": {
          "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
          "verify": [ { "json": { "path": "sent", "equals": true } } ],
          "retry": { "max_attempts": 2, "backoff": "0s", "jitter": 0 }
        },
        "checked": {
          "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
          "verify": [ { "command": { "argv": ["/usr/bin/test", "-f", "\(marker)"] } } ],
          "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
        }
      }
    }
    """
}

@Suite struct VerificationTests {
    @Test func aHandlerThatExitsZeroWhileItsVerifierFailsIsRetriedThenDead() async throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("report")
        let runner = ScriptedRunner()  // exits 0 with {"ok":true}: no "sent"
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.count == 2)
        #expect(report.attempts.map { $0.outcome?.state } == [.queued, .dead])
        let stored = try #require(try fixture.store.task(id: task.id))
        #expect(stored.state == .dead)
        #expect(stored.lastError == "verifier 1 (json) failed: sent is missing")
        let events = try fixture.store.ledger(forTask: task.id).map(\.event)
        #expect(events.filter { $0 == "verifying" }.count == 2 && events.filter { $0 == "verified" }.count == 2)
        #expect(!events.contains("done"))
    }

    @Test func aDeadWorkersTaskWhoseEvidencePassesIsDoneAndNotRunAgain() async throws {
        let folder = try TemporaryFolder()
        let marker = try folder.write("sent.marker", "sent")
        let fixture = try Fixture(map: verifiedMap(marker: marker))
        let task = try fixture.enqueue("checked")
        _ = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(),
            lease: .seconds(60), leaseToken: "dead-worker")
        fixture.clock.advance(by: .seconds(61))
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)  // the handler was not run again
        #expect(report.recovered.map(\.state) == [.done])
        #expect(try fixture.store.task(id: task.id)?.state == .done)
        let done = try #require(try fixture.store.ledger(forTask: task.id).last)
        #expect(done.event == "done")
        #expect(done.detail?[path: "evidence"]?.stringValue?.hasPrefix("verified after its worker died") == true)
    }

    @Test func aWorkerThatDiesWhileVerifyingLeavesTheResultToTheNext() async throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("report")
        let claimed = try #require(
            try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "w"
            ).claimed)
        #expect(
            try fixture.store.markVerifying(
                claimed, outcome: HandlerOutcome(status: .exited(0), stdout: #"{"sent":true}"#),
                now: fixture.clock.now()))
        fixture.clock.advance(by: .seconds(61))  // it died
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: nil)
        #expect(runner.calls.isEmpty)
        #expect(report.recovered.map(\.state) == [.done])
        #expect(try fixture.store.task(id: task.id)?.state == .done)
    }

    @Test func anEarlierAttemptsResultIsNeverEvidenceForALaterOne() async throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("report")
        let first = try #require(
            try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "a"
            ).claimed)
        // Attempt 1 printed the evidence but exited 1: it is retried, its result kept for diagnosis.
        _ = try fixture.store.recordAttempt(
            first, outcome: HandlerOutcome(status: .exited(1), stdout: #"{"sent":true}"#),
            verdict: .failed(reason: "exit 1"),
            now: fixture.clock.now(), random: { 0 })
        #expect(try fixture.store.task(id: task.id)?.result == #"{"sent":true}"#)
        // Attempt 2's worker dies at once: its recovery must not see attempt 1's result.
        let second = try #require(
            try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "b"
            ).claimed)
        #expect(second.task.result == nil)
        fixture.clock.advance(by: .seconds(61))
        let report = try await fixture.worker(ScriptedRunner([.exited(1)])).work(drain: nil)
        #expect(report.recovered.map(\.state) == [.dead])  // the evidence check failed; no attempts left
    }

    @Test func aDeadWorkersTaskWithoutEvidenceIsRetried() async throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("checked")
        _ = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(),
            lease: .seconds(60), leaseToken: "dead-worker")
        fixture.clock.advance(by: .seconds(61))
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: nil)
        #expect(report.recovered.map(\.state) == [.queued])
        #expect(runner.calls.map(\.task.id) == [task.id])  // then run again, as attempt 2
        #expect(runner.calls.first?.attempt == 2)
    }

    @Test func anInconclusiveCheckCountsAsFailedAndAlertsTheOperator() async throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("report")
        let step = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(),
            lease: .seconds(60), leaseToken: "w")
        let claimed = try #require(step.claimed)
        let check = CheckResult(
            index: 0, verifier: "http", outcome: .inconclusive, evidence: "HTTP 503", durationMs: 3,
            looks: 3)
        let recorded = try fixture.store.recordAttempt(
            claimed, outcome: HandlerOutcome(status: .exited(0)), verdict: .combine([check]), checks: [check],
            notify: fixture.configuration.notify, now: fixture.clock.now(), random: { 0 })
        #expect(recorded?.state == .queued)
        #expect(recorded?.error == "verifier 1 (http) could not tell after 3 look(s): HTTP 503")
        #expect(
            try fixture.count(
                "SELECT COUNT(*) FROM notifications WHERE event = 'verification_inconclusive' AND task_id = \(task.id)")
                == 1)
    }

    @Test func reverifyingSettlesFailedTasksAndReopensDoneOnesOnlyWhenAsked() throws {
        let fixture = try Fixture(map: verifiedMap())
        let task = try fixture.enqueue("report")
        try fixture.store.write("make it dead") { db in
            try db.execute(sql: "UPDATE tasks SET state = 'dead', last_error = 'x' WHERE id = ?", arguments: [task.id])
        }
        let dead = try #require(try fixture.store.task(id: task.id))
        let pass = [
            CheckResult(index: 0, verifier: "json", outcome: .pass, evidence: "sent = true", durationMs: 1, looks: 1)
        ]
        let fail = [
            CheckResult(
                index: 0, verifier: "json", outcome: .fail, evidence: "sent is missing", durationMs: 1, looks: 1)
        ]
        #expect(
            try fixture.store.applyReverification(
                dead, checks: pass, reopen: false, by: "ops", notify: .init(),
                now: fixture.clock.now()) == .nowDone)
        let done = try #require(try fixture.store.task(id: task.id))
        #expect(done.state == .done)
        #expect(
            try fixture.store.applyReverification(
                done, checks: fail, reopen: false, by: "ops", notify: .init(),
                now: fixture.clock.now()) == .unchanged(.done))
        fixture.clock.advance(by: .hours(1))
        // A check that could not tell or could not run proves nothing: the task stays done.
        for outcome in [CheckOutcome.inconclusive, .error] {
            let unsure = [
                CheckResult(
                    index: 0, verifier: "http", outcome: outcome, evidence: "no answer", durationMs: 1, looks: 3)
            ]
            #expect(
                try fixture.store.applyReverification(
                    done, checks: unsure, reopen: true, by: "ops", notify: .init(),
                    now: fixture.clock.now()) == .unchanged(.done))
        }
        #expect(try #require(try fixture.store.task(id: task.id)).state == .done)
        #expect(
            try fixture.store.applyReverification(
                done, checks: fail, reopen: true, by: "ops", notify: .init(),
                now: fixture.clock.now()) == .reopened)
        let reopened = try #require(try fixture.store.task(id: task.id))
        #expect(reopened.state == .dead && reopened.lastError?.hasPrefix("reopened by ops") == true)
        // It finished when it was done: reopening keeps that time (and so its retention).
        #expect(reopened.finishedAt == done.finishedAt && done.finishedAt != nil)
    }
}

@Suite struct VerifierCheckTests {
    func subject(payload: String = "{}", result: JSONValue? = nil, startedAt: Int64 = 0) -> VerificationSubject {
        VerificationSubject(
            task: TaskRecord.sample(type: "t", payload: payload, result: result?.canonicalText, now: 0),
            result: result, attemptStartedAt: startedAt)
    }

    func run(_ verifier: String, _ subject: VerificationSubject, base: String = "/") async throws -> CheckResult {
        let map = try loadMap(
            """
            {"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}}, "verify": [\(verifier)]}}}
            """)
        let type = try #require(map.configuration.taskTypes["t"])
        let runner = VerificationRunner(
            runner: ExecRunner(settings: WorkerSettings()), baseDirectory: base, pause: { _ in })
        return try #require(await runner.verify(subject, with: type.verify).first)
    }

    @Test func jsonAssertionsNeedEvidence() async throws {
        let result: JSONValue = ["sent_to": "a@b.c", "count": 3, "tags": [], "id": "INV-42"]
        #expect(
            try await run(#"{"json": {"path": "sent_to", "non_empty": true}}"#, subject(result: result)).outcome
                == .pass)
        #expect(
            try await run(#"{"json": {"path": "count", "min": 1, "max": 5}}"#, subject(result: result)).outcome == .pass
        )
        #expect(try await run(#"{"json": {"path": "count", "min": 4}}"#, subject(result: result)).outcome == .fail)
        #expect(
            try await run(#"{"json": {"path": "tags", "non_empty": true}}"#, subject(result: result)).outcome == .fail)
        #expect(
            try await run(#"{"json": {"path": "id", "regex": "^INV-[0-9]+$"}}"#, subject(result: result)).outcome
                == .pass)
        #expect(
            try await run(#"{"json": {"path": "sent_to", "equals": "x@y.z"}}"#, subject(result: result)).outcome
                == .fail)
        // No result at all is never a pass.
        #expect(try await run(#"{"json": {"path": "sent_to"}}"#, subject(result: nil)).outcome == .fail)
    }

    @Test func fileChecksReadTheDiskAndTemplatesCannotEscape() async throws {
        let folder = try TemporaryFolder()
        try folder.write("reports/r-7.md", "# total: 42\n")
        try folder.write("reports/empty.md", "")
        let payload = #"{"name":"r-7.md","evil":"../../etc/passwd"}"#
        let now = SystemClock().now()
        let base = folder.path
        #expect(
            try await run(
                #"{"file": {"path": "reports/{{payload.name}}", "non_empty": true, "contains": "total: [0-9]+"}}"#,
                subject(payload: payload), base: base
            ).outcome == .pass)
        #expect(
            try await run(#"{"file": {"path": "reports/empty.md", "non_empty": true}}"#, subject(), base: base).outcome
                == .fail)
        #expect(try await run(#"{"file": {"path": "reports/missing.md"}}"#, subject(), base: base).outcome == .fail)
        #expect(
            try await run(
                #"{"file": {"path": "reports/r-7.md", "modified_after_start": true}}"#,
                subject(startedAt: now + 60_000), base: base
            ).outcome == .fail)
        let escape = try await run(
            #"{"file": {"path": "reports/{{payload.evil}}"}}"#, subject(payload: payload), base: base)
        #expect(escape.outcome == .error)
        let missing = try await run(
            #"{"file": {"path": "reports/{{payload.nope}}"}}"#, subject(payload: payload), base: base)
        #expect(missing.outcome == .error)
    }

    @Test func aCommandVerifierPassesFailsOrIsBroken() async throws {
        let pass = try await run(
            #"{"command": {"argv": ["/bin/sh", "-c", "cat > /dev/null; echo found it; exit 0"]}}"#, subject())
        #expect(pass.outcome == .pass && pass.evidence == "found it")
        #expect(try await run(#"{"command": {"argv": ["/bin/sh", "-c", "exit 1"]}}"#, subject()).outcome == .fail)
        #expect(try await run(#"{"command": {"argv": ["/bin/sh", "-c", "exit 3"]}}"#, subject()).outcome == .error)
        #expect(try await run(#"{"command": {"argv": ["/nonexistent/verifier"]}}"#, subject()).outcome == .error)
        // It reads the task (payload and result) on stdin.
        let seen = try await run(
            #"{"command": {"argv": ["/bin/sh", "-c", "grep -q '\"result\":{\"ok\":true}'"]}}"#,
            subject(result: ["ok": true]))
        #expect(seen.outcome == .pass)
    }

    @Test func aDangerousTypeWithoutAVerifierIsAConfigError() {
        #expect {
            _ = try loadMap(
                #"{"version": 1, "task_types": {"send": {"safety": "dangerous", "handler": {"exec": {"argv": ["x"]}}}}}"#
            )
        } throws: { error in
            "\(error)".contains(
                "task_types.send.verify: a type that can be rated dangerous needs at least one verifier")
        }
        #expect(throws: ConfigError.self) {
            _ = try loadMap(
                #"{"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}}, "verify": [{"json": {"path": "a"}, "file": {"path": "b"}}]}}}"#
            )
        }
    }
}

@Suite struct TemplateTests {
    @Test func dotAndDotDotNeverStandInAURL() throws {
        #expect(throws: Template.MissingValue.self) { try Template.urlComponent("..") }
        #expect(throws: Template.MissingValue.self) { try Template.urlComponent(".") }
        #expect(try Template.urlComponent("a..b") == "a..b")
        #expect(try Template.urlComponent("../x") == "..%2Fx")
    }
}

@Suite struct BoundedPatternTests {
    @Test func anEvidencePatternRunsOnBoundedInputOnly() throws {
        let map = try loadMap(
            #"{"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}}, "verify": [{"json": {"path": "v", "regex": "a+"}}]}}}"#
        )
        let type = try #require(map.configuration.taskTypes["t"])
        guard case .json(let assertion) = try #require(type.verify.first).kind else {
            Issue.record("expected a json verifier")
            return
        }
        #expect(assertion.check(["v": "aaa"]).0)
        let huge = JSONValue.object(["v": .string(String(repeating: "a", count: 65 * 1024))])
        let (passed, evidence) = assertion.check(huge)
        #expect(!passed && evidence.contains("too long"))
    }
}
