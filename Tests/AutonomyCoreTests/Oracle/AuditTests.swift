import AutonomyTestSupport
import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// The Oracle, on a real ledger made by running tasks under a manual clock: each kind of finding
/// comes from a scenario made for it, and a healthy control type raises none.
@Suite struct AuditTests {
    static let map = """
        {
          "version": 1,
          "worker": { "lease": "60s" },
          "audit": { "min_sample": 10 },
          "task_types": {
            "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
            "flaky": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                       "retry": { "max_attempts": 1 } }
          }
        }
        """

    /// Runs `outcomes.count` tasks of `type` at the clock's time, one outcome each.
    func run(_ fixture: Fixture, _ type: String, _ outcomes: [HandlerStatus]) async throws {
        for _ in outcomes { try fixture.enqueue(type) }
        _ = try await fixture.worker(ScriptedRunner(outcomes)).work(drain: .init(maxSeconds: 600))
    }

    func audit(_ fixture: Fixture) throws -> AuditReport {
        try fixture.store.audit(loaded: fixture.loaded, now: fixture.clock.now())
    }

    @Test func aHealthySystemIsAllClearAndTheRunIsSaved() async throws {
        let fixture = try Fixture(map: Self.map)
        fixture.clock.advance(by: .days(10))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 12))
        try await run(fixture, "flaky", Array(repeating: .exited(0), count: 12))
        fixture.clock.advance(by: .days(6))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 12))
        try await run(fixture, "flaky", Array(repeating: .exited(0), count: 12))
        let report = try audit(fixture)
        #expect(report.findings.isEmpty, "\(report.findings.map(\.title))")
        #expect(report.headline.hasPrefix("all clear over the last 7d"))
        #expect(report.worst == nil && report.runID == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM audit_runs WHERE headline LIKE 'all clear%'") == 1)
        #expect(try audit(fixture).runID == 2)
    }

    @Test func aSuccessRateThatFellIsDriftOnlyWithEnoughSamples() async throws {
        let fixture = try Fixture(map: Self.map)
        try await run(fixture, "report", Array(repeating: .exited(0), count: 10))
        try await run(fixture, "flaky", Array(repeating: .exited(0), count: 10))
        fixture.clock.advance(by: .days(7))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 10))
        try await run(fixture, "flaky", Array(repeating: .exited(0), count: 5) + Array(repeating: .exited(1), count: 5))
        fixture.clock.advance(by: .hours(1))
        let report = try audit(fixture)
        let drops = report.findings.filter { $0.kind == .successRateDrop }
        #expect(drops.map(\.subject) == ["flaky"])  // the control type, report, did not move
        let drop = try #require(drops.first)
        #expect(drop.severity == .high && drop.title == "flaky succeeds 50% of the time, down from 100%")
        #expect(drop.evidence[path: "min_sample"] == .int(10) && drop.evidence[path: "dead"] == .int(5))
        #expect(report.findings.first?.severity == .high)  // worst first
        // The dead tasks are a finding of their own, with their signature and examples.
        let dead = try #require(report.findings.first { $0.kind == .deadTasks })
        #expect(dead.subject == "flaky" && dead.evidence[path: "dead"] == .int(5) && dead.tasks.count == 5)
        #expect(dead.evidence[path: "signature"]?.stringValue?.contains("<n>") == true)

        // The same fall over a sample below min_sample is not drift.
        let small = try Fixture(map: Self.map)
        try await run(small, "flaky", Array(repeating: .exited(0), count: 4))
        small.clock.advance(by: .days(7))
        try await run(small, "flaky", Array(repeating: .exited(1), count: 4))
        #expect(try audit(small).findings.allSatisfy { $0.kind != .successRateDrop })
    }

    @Test func aTypeThatStoppedRunningIsFound() async throws {
        let fixture = try Fixture(map: Self.map)
        try await run(fixture, "flaky", Array(repeating: .exited(0), count: 10))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 10))
        fixture.clock.advance(by: .days(7))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 10))
        fixture.clock.advance(by: .hours(1))
        let report = try audit(fixture)
        #expect(report.findings.filter { $0.kind == .stoppedRunning }.map(\.subject) == ["flaky"])
        #expect(report.findings.contains { $0.kind == .shelfware && $0.subject == "flaky" })
        #expect(!report.findings.contains { $0.subject == "report" })
    }

    /// A fresh queue has no history to call a type unused by: the first audit proposes no call to
    /// every owner whose type has not run yet.
    @Test func aQueueYoungerThanTheWindowCallsNoTypeUnused() async throws {
        let fixture = try Fixture(map: Self.map)
        try await run(fixture, "report", Array(repeating: .exited(0), count: 3))
        fixture.clock.advance(by: .days(6))
        #expect(!(try audit(fixture).findings.contains { $0.kind == .shelfware }))
        // Once the queue is older than the window, flaky never done in it is a finding.
        fixture.clock.advance(by: .days(2))
        let later = try audit(fixture)
        #expect(later.findings.filter { $0.kind == .shelfware }.map(\.subject) == ["flaky", "report"])
    }

    @Test func stuckWorkIsFound() throws {
        let fixture = try Fixture()
        let waiting = try fixture.enqueue("send_email", #"{"to":"a@b.c"}"#)
        let running = try fixture.enqueue("report")
        _ = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "gone")
        fixture.clock.advance(by: .hours(25))
        let report = try audit(fixture)
        let stale = try #require(report.findings.first { $0.kind == .staleApproval })
        #expect(stale.tasks == [waiting.id] && stale.evidence[path: "pending"] == .int(1))
        let stuck = try #require(report.findings.first { $0.kind == .stuckTask })
        #expect(stuck.tasks == [running.id] && stuck.severity == .high)
    }

    @Test func theCustodianFindsGapsInTheMap() async throws {
        let fixture = try Fixture(
            map: """
                {
                  "version": 1,
                  "task_types": {
                    "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
                    "ghost": { "safety": "safe", "handler": { "exec": { "argv": ["/no/such/program"] } } },
                    "summarise": { "owner": "ops", "safety": "safe",
                                   "handler": { "llm": { "prompt": "hi", "tier": "strong" } } }
                  },
                  "components": [ { "name": "bot", "owner": "ops", "task_types": ["report", "gone"] } ]
                }
                """)
        // A type the map no longer declares, in the ledger (inserted as by an older map).
        try fixture.store.write("old type") { db in
            try db.appendLedger(.enqueued, at: fixture.clock.now(), taskID: nil, type: "retired", detailText: nil)
        }
        fixture.clock.advance(by: .hours(1))
        let findings = try audit(fixture).findings
        func subjects(_ kind: FindingKind) -> [String?] { findings.filter { $0.kind == kind }.map(\.subject) }
        #expect(subjects(.missingHandler) == ["ghost"])
        #expect(subjects(.tierWithoutModel) == ["summarise"])
        #expect(subjects(.noOwner) == ["ghost"])
        #expect(subjects(.componentNamesUndeclaredType) == ["bot"])
        #expect(subjects(.undeclaredType) == ["retired"])
    }

    @Test func aHandlerIsLookedForOnlyOnTheHostsThatRunItsType() throws {
        func missing(worker: String) throws -> [String?] {
            let loaded = try loadMap(
                """
                {"version": 1, "worker": \(worker), "task_types": {
                  "render": { "owner": "ops", "safety": "safe", "run_on": ["gpu"],
                              "handler": { "exec": { "argv": ["/no/such/renderer"] } } },
                  "post": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/no/such/poster"] } } } }}
                """)
            return AutonomyStore.configurationGaps(loaded).filter { $0.kind == .missingHandler }.map(\.subject)
        }
        // The VPS leaves rendering to the GPU box: its renderer is not expected there (on
        // PostgreSQL such a finding would pause the type for every host).
        #expect(try missing(worker: #"{"tags": []}"#) == ["post"])
        #expect(try missing(worker: #"{"tags": ["gpu"]}"#) == ["post", "render"])
        #expect(try missing(worker: #"{"types": ["render"], "tags": ["gpu"]}"#) == ["render"])
    }

    @Test func verifiersThatCannotTellAreFound() async throws {
        let fixture = try Fixture(
            map: """
                {
                  "version": 1,
                  "audit": { "min_sample": 5 },
                  "task_types": {
                    "sure": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                              "verify": [ { "command": { "argv": ["/bin/true"] } } ] },
                    "blind": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                               "verify": [ { "command": { "argv": ["/bin/false"] } } ], "retry": { "max_attempts": 1 } },
                    "report": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                                "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
                  }
                }
                """)
        try await run(fixture, "sure", Array(repeating: .exited(0), count: 6))
        try await run(fixture, "blind", Array(repeating: .exited(0), count: 3))
        try await run(fixture, "report", Array(repeating: .exited(0), count: 2))  // too few to judge
        fixture.clock.advance(by: .hours(1))
        let findings = try audit(fixture).findings
        let never = findings.filter { $0.kind == .verifierNeverPasses }
        #expect(never.map(\.subject) == ["blind"])
        #expect(never.first?.title == "blind's command verifier failed all 3 of its checks: it cannot tell success")
        let always = findings.filter { $0.kind == .verifierNeverFails }
        #expect(always.map(\.subject) == ["sure"] && always.first?.severity == .info)
        #expect(
            always.first?.evidence[path: "checks"] == .int(6) && always.first?.evidence[path: "min_sample"] == .int(5))
    }

    @Test func aBrokenLedgerIsTheWorstFinding() async throws {
        let fixture = try Fixture(map: Self.map)
        try await run(fixture, "report", [.exited(0), .exited(0)])
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_update")
            try db.execute(sql: "UPDATE ledger SET event = 'done' WHERE id = 2")
        }
        let report = try audit(fixture)
        let first = try #require(report.findings.first)
        #expect(first.kind == .ledgerBroken && first.severity == .critical && first.evidence[path: "row"] == .int(2))
        #expect(report.headline.contains("worst: the ledger's hash chain is broken at row 2"))
    }

    @Test func alertsThatFailAreFound() async throws {
        let fixture = try Fixture()
        try fixture.store.write("failed alert") { db in
            try db.appendLedger(
                .notifyFailed, at: fixture.clock.now(), taskID: nil, type: nil,
                detailText: #"{"channel":"webhook","event":"test"}"#)
            // An alert about a task carries the task's type: it counts the same.
            try db.appendLedger(
                .notifyFailed, at: fixture.clock.now(), taskID: 7, type: "send_email",
                detailText: #"{"channel":"webhook","event":"approval_needed"}"#)
            try db.appendLedger(
                .notifyFailed, at: fixture.clock.now(), taskID: 8, type: "report",
                detailText: #"{"channel":"command","event":"task_dead"}"#)
        }
        fixture.clock.advance(by: .minutes(1))
        let alerts = try audit(fixture).findings.filter { $0.kind == .alertsFailing }
        #expect(alerts.map(\.subject) == ["command", "webhook"])
        #expect(alerts.map { $0.evidence[path: "failures"] } == [.int(1), .int(2)])
    }

    /// The budget's deferrals are a finding; a task given back for now (a stop, a worker that
    /// cannot write payload files) is not one, though its ledger row is `deferred` too.
    @Test func onlyTheBudgetsDeferralsAreCountedAsSuch() async throws {
        let fixture = try Fixture()
        let now = fixture.clock.now()
        try fixture.store.write("deferrals") { db in
            for (task, until) in [(1, now + Interval.hours(20).milliseconds), (2, now), (3, now - 5_000)] {
                try db.appendLedger(
                    .deferred, at: now, taskID: Int64(task), type: "report",
                    detailText: #"{"reason":"r","until":"\#(Timestamp.format(until))"}"#)
            }
        }
        fixture.clock.advance(by: .minutes(1))
        let deferrals = try audit(fixture).findings.filter { $0.kind == .deferrals }
        #expect(deferrals.map { $0.evidence[path: "deferred"] } == [.int(1)])
    }

    @Test func fixProposalsWaitingAreNotStaleApprovals() async throws {
        let fixture = try Fixture()  // the standard map: "once" is tried once, send_email is dangerous
        try await run(fixture, "once", [.exited(1)])
        fixture.clock.advance(by: .hours(1))
        let first = try audit(fixture)
        #expect(first.proposals.contains { $0.action == "retry_dead" && $0.status == .proposed })
        // Two days on, the proposal's request is older than audit.stale_approval (24h): it has its
        // own expiry (audit.proposals_expire_after), and is no stale approval.
        fixture.clock.advance(by: .days(2))
        let later = try audit(fixture)
        #expect(!later.findings.contains { $0.kind == .staleApproval }, "\(later.findings.map(\.title))")
        #expect(!later.proposals.contains { $0.action == "expire_stale_approvals" })
        try fixture.enqueue("send_email")
        fixture.clock.advance(by: .days(2))
        #expect(try audit(fixture).findings.contains { $0.kind == .staleApproval })
    }

    @Test func failureSignaturesReplaceWhatVaries() {
        #expect(
            FailureSignature.of("timeout after 30s talking to 10.0.0.7:443 at 2026-11-25T10:00:00Z")
                == "timeout after <n>s talking to <n>.<n>.<n>.<n>:<n> at <time>")
        #expect(
            FailureSignature.of("cannot open /var/lib/app/job-1234.json: No such file")
                == "cannot open <path>: No such file")
        #expect(
            FailureSignature.of("request 3f2a9c1e-1b2c-4d5e-8f90-123456789abc failed with deadbeef00")
                == "request <id> failed with <hex>")
        #expect(FailureSignature.of("exit 1\nsecond line ignored") == "exit <n>")
        #expect(
            FailureSignature.of("HTTP 503 from https://api.example.com/v1/items/7?page=2")
                == "HTTP <n> from <url>")
        #expect(FailureSignature.of("exited with status 3") == FailureSignature.of("exited with status 7"))
        // Remembered by shape (digits alike): the same answers as without the memo.
        var memo: [String: String] = [:]
        for text in [
            "timeout after 30s talking to 10.0.0.7:443 at 2026-11-25T10:00:00Z", "failed with deadbeef00",
            "failed with 1234567890", "failed with deadbeef00", "HTTP 503 from https://a.example/7", "exit 12",
        ] {
            #expect(FailureSignature.of(text, memo: &memo) == FailureSignature.of(text), "\(text)")
        }
        #expect(memo.count == 5)
    }

    @Test func thresholdsAreReadWithTheirPaths() throws {
        let loaded = try loadMap(
            #"{"version": 1, "audit": {"window": "14d", "thresholds": {"success_rate_drop": 0.3}}}"#)
        #expect(loaded.configuration.audit.window == .days(14))
        #expect(loaded.configuration.audit.thresholds.successRateDrop == 0.3)
        #expect(loaded.configuration.audit.staleApproval == .hours(24))
        #expect {
            try loadMap(#"{"version": 1, "audit": {"thresholds": {"p95_rise": 0}}}"#)
        } throws: { "\($0)".contains("audit.thresholds.p95_rise") }
    }
}
