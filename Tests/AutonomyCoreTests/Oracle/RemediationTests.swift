import AutonomyTestSupport
import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// The fixed catalog: what each action reads, what it refuses, which findings propose what.
@Suite struct RemediationCatalogTests {
    static let everyAction: [RemediationAction] = [
        .retryDead(type: "report", since: 1_795_165_200_000),
        .pauseType(type: "report", for: nil), .pauseType(type: "report", for: .days(7)),
        .resumeType(type: "report"),
        .raiseTimeout(type: "report", to: .minutes(20), for: nil),
        .raiseLease(to: .seconds(90), for: .hours(12)),
        .raiseMaxAttempts(type: "report", to: 5, for: nil),
        .expireStaleApprovals(olderThan: .hours(24)),
        .releaseStuck(task: 17),
        .runRemediation(name: "restart-ollama", argv: ["/usr/bin/systemctl", "restart", "ollama"]),
        .notifyOwner(type: "report"),
    ]

    @Test(arguments: everyAction) func everyActionReadsBackFromItsOwnParameters(_ action: RemediationAction) throws {
        #expect(try RemediationAction(name: action.name, parameters: action.parameters) == action)
        #expect(RemediationAction.names.contains(action.name))
    }

    @Test func theCatalogHasTenActionsAndNothingElseIsRead() {
        #expect(Set(Self.everyAction.map(\.name)).count == 10 && RemediationAction.names.count == 10)
        #expect(
            throws: RemediationError.invalid(
                #""rm_rf" is not in the catalog (retry_dead, pause_type, resume_type, raise_timeout, raise_lease, raise_max_attempts, expire_stale_approvals, release_stuck, run_remediation, notify_owner)"#
            )
        ) {
            try RemediationAction(name: "rm_rf", parameters: ["path": "/"])
        }
    }

    @Test(arguments: [
        ("pause_type", #"{"type":"report","argv":["sh"]}"#, #"pause_type takes no parameter "argv""#),
        ("raise_timeout", #"{"type":"report","to":"3d"}"#, #"raise_timeout needs "to" as a duration from 1s to 1d"#),
        ("raise_lease", #"{"to":"1s"}"#, #"raise_lease needs "to" as a duration from 10s to 1d"#),
        (
            "raise_max_attempts", #"{"type":"report","to":0}"#,
            #"raise_max_attempts needs "to" as a whole number from 1 to 1000"#
        ),
        ("pause_type", #"{"type":"../etc"}"#, #"pause_type: "../etc" is no type name"#),
        (
            "release_stuck", #"{"task":"7"}"#,
            #"release_stuck needs "task" as a whole number from 1 to 9223372036854775807"#
        ),
        ("run_remediation", #"{"name":"a b","argv":["x"]}"#, #"run_remediation: "a b" is no remediation name"#),
        ("run_remediation", #"{"name":"fix","argv":[]}"#, #"run_remediation needs "argv" as 1 to 64 strings"#),
        ("run_remediation", #"{"name":"fix","argv":["sh",1]}"#, #"run_remediation needs "argv" as 1 to 64 strings"#),
        ("retry_dead", #"{"type":"report","since":"yesterday"}"#, #"retry_dead needs "since" as a time"#),
        ("notify_owner", "[]", "parameters must be an object"),
    ])
    func aParameterOutsideItsBoundsIsRefused(name: String, parameters: String, reason: String) throws {
        #expect(throws: RemediationError.invalid(reason)) {
            try RemediationAction(name: name, parameters: try JSONValue.parse(parameters))
        }
    }

    @Test func aProposalsPayloadReadsBackWithItsFinding() throws {
        let finding = Finding(
            .deadTasks, .high, subject: "report", title: "2 report tasks died",
            evidence: ["dead": 2, "signature": "exited with status <n>"], tasks: [4, 9])
        let proposal = Proposal(action: .retryDead(type: "report", since: 0), finding: finding, runID: 3, findingID: 8)
        let read = try Proposal(payload: proposal.payload.canonicalText)
        #expect(read == proposal)
        #expect(proposal.key == "retry_dead|report")
        #expect(throws: RemediationError.invalid(#"unexpected field "shell""#)) {
            try Proposal(
                payload:
                    #"{"action":"notify_owner","parameters":{"type":"x"},"finding":{"kind":"shelfware"},"shell":"rm"}"#)
        }
    }

    @Test(arguments: [
        Interval(milliseconds: 0), .seconds(1), .minutes(90), Interval(milliseconds: 1_500),
        Interval(milliseconds: 102_600_000), Interval(milliseconds: 93_784_005),
    ])
    func anExactTextReadsBackToTheSameLength(_ interval: Interval) {
        #expect(Interval(parsing: interval.exactText) == interval)
    }

    static let map = """
        {"version": 1, "notify": { "command": ["/bin/true"] },
         "remediations": {
           "restart-model": { "exec": { "argv": ["/bin/true"] }, "findings": ["tier_without_model"] },
           "fix-report": { "exec": { "argv": ["/bin/true"] }, "findings": ["dead_tasks"], "subjects": ["report"] } },
         "task_types": {
           "report": { "owner": "ops", "safety": "safe", "timeout": "10m", "handler": { "exec": { "argv": ["/bin/true"] } } },
           "gone": { "owner": "ops", "safety": "safe", "handler": { "exec": { "argv": ["/nonexistent"] } } },
           "orphan": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } } }}
        """

    func proposals(_ findings: [Finding]) throws -> [String] {
        RemediationCatalog.proposals(
            for: findings, configuration: try loadMap(Self.map).configuration, since: 0
        ).map { "\($0.finding.kind.rawValue) → \($0.action.summary)" }
    }

    @Test func findingsProposeFromTheCatalogOnly() throws {
        #expect(try proposals([]).isEmpty)
        #expect(
            try proposals([Finding(.deadTasks, .high, subject: "report", title: "")]) == [
                "dead_tasks → retry_dead(since=\(Timestamp.format(0)), type=report)",
                "dead_tasks → notify_owner(type=report)",
                #"dead_tasks → run_remediation(argv=["/bin/true"], name=fix-report)"#,
            ])
        // A type whose handler is gone gains nothing from retries: it is paused instead.
        #expect(
            try proposals([
                Finding(.missingHandler, .high, subject: "gone", title: ""),
                Finding(.deadTasks, .high, subject: "gone", title: ""),
            ]) == ["missing_handler → pause_type(type=gone)", "dead_tasks → notify_owner(type=gone)"])
        // Slower, near its timeout: twice the timeout. Far from it: only its owner hears.
        #expect(
            try proposals([Finding(.slower, .medium, subject: "report", title: "", evidence: ["p95_ms": 400_000])])
                == ["slower → raise_timeout(to=20m, type=report)"])
        #expect(
            try proposals([Finding(.slower, .medium, subject: "report", title: "", evidence: ["p95_ms": 1_000])])
                == ["slower → notify_owner(type=report)"])
        // No owner, no one to call; an undeclared type or a broken ledger has no catalog fix.
        #expect(try proposals([Finding(.shelfware, .low, subject: "orphan", title: "")]).isEmpty)
        #expect(try proposals([Finding(.undeclaredType, .medium, subject: "old", title: "")]).isEmpty)
        #expect(try proposals([Finding(.ledgerBroken, .critical, subject: nil, title: "")]).isEmpty)
        #expect(
            try proposals([Finding(.tierWithoutModel, .high, subject: "report", title: "")]) == [
                "tier_without_model → pause_type(type=report)",
                #"tier_without_model → run_remediation(argv=["/bin/true"], name=restart-model)"#,
            ])
        #expect(
            try proposals([Finding(.stuckTask, .high, subject: nil, title: "", tasks: [3, 5])]) == [
                "stuck_task → release_stuck(task=3)"
            ])
    }
}

/// Overrides on top of the file: applied by the worker, reset when they end.
@Suite struct OverrideTests {
    @Test func overridesApplyOnTopOfTheFileAndLeaveNoTraceWhenTheyEnd() throws {
        let file = try loadMap(standardMap).configuration
        func override(_ kind: Override.Kind, _ type: String?, _ value: Int64?) -> Override {
            Override(
                id: 1, kind: kind, type: type, value: value, reason: "r", proposal: nil, createdAt: 0, expiresAt: nil)
        }
        let applied = file.applying([
            override(.pause, "once", nil), override(.timeout, "report", 1_200_000), override(.lease, nil, 120_000),
            override(.maxAttempts, "report", 9),
        ])
        #expect(applied.pausedTypes == ["once"] && applied.taskTypes["once"]?.paused == true)
        #expect(applied.taskTypes["report"]?.effectiveTimeout(applied.worker) == .minutes(20))
        #expect(applied.worker.lease == .minutes(2))
        #expect(applied.taskTypes["report"]?.effectiveMaxAttempts == 9)
        // A task's own max_attempts is its producer's word (1: not to be repeated): kept.
        var task = TaskRecord.unsaved(type: "report", payload: "{}", result: nil, now: 0)
        #expect(task.attemptLimit(applied.taskTypes["report"]) == 9)
        task.maxAttempts = 1
        #expect(task.attemptLimit(applied.taskTypes["report"]) == 1)
        // An override raises, never lowers: a file raised past it since wins.
        var raisedFile = file
        raisedFile.worker.lease = .minutes(5)
        raisedFile.taskTypes["report"]?.timeout = .hours(1)
        let stale = raisedFile.applying([override(.timeout, "report", 1_200_000), override(.lease, nil, 120_000)])
        #expect(stale.worker.lease == .minutes(5))
        #expect(stale.taskTypes["report"]?.effectiveTimeout(stale.worker) == .hours(1))

        let after = applied.applying([])
        #expect(after.pausedTypes.isEmpty && after.taskTypes["once"]?.paused == false)
        #expect(after.worker.lease == file.worker.lease)
        #expect(
            after.taskTypes["report"]?.effectiveTimeout(after.worker)
                == file.taskTypes["report"]?.effectiveTimeout(file.worker))
        #expect(after.taskTypes["report"]?.effectiveMaxAttempts == 3)
    }

    @Test func aPausedTypeIsNeverClaimedAndTheOthersStillAre() async throws {
        let fixture = try Fixture()
        try fixture.enqueue("once", priority: 10)
        let report = try fixture.enqueue("report")
        try fixture.store.write("pause") { db in
            try db.setOverride(.pause, type: "once", value: nil, reason: "test", proposal: nil, lasting: nil, now: 0)
        }
        var loaded = fixture.loaded
        loaded = try fixture.store.applyingOverrides(to: loaded, now: fixture.clock.now())
        let step = try fixture.store.claimNext(
            configuration: loaded.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t")
        #expect(step.claimed?.task.id == report.id)
        let again = try fixture.store.claimNext(
            configuration: loaded.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "u")
        #expect(again.claimed == nil)
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE type = 'once' AND state = 'queued'") == 1)
    }

    @Test func anExpiredOverrideNoLongerApplies() throws {
        let fixture = try Fixture()
        try fixture.store.write("pause") { db in
            try db.setOverride(
                .pause, type: "once", value: nil, reason: "a day", proposal: nil, lasting: .days(1), now: 0)
        }
        #expect(try fixture.store.overrides(now: Interval.hours(23).milliseconds).count == 1)
        #expect(try fixture.store.overrides(now: Interval.hours(25).milliseconds).isEmpty)
        #expect(throws: OverrideError.notActive(1)) {
            try fixture.store.removeOverride(id: 1, by: "elad", reason: nil, now: Interval.hours(25).milliseconds)
        }
    }

    @Test func aNewOverrideOfTheSameKindReplacesTheOldOne() throws {
        let fixture = try Fixture()
        try fixture.store.write("raise") { db in
            try db.setOverride(
                .timeout, type: "report", value: 60_000, reason: "a", proposal: nil, lasting: nil, now: 0)
            try db.setOverride(
                .timeout, type: "report", value: 120_000, reason: "b", proposal: nil, lasting: nil, now: 1)
        }
        #expect(try fixture.store.overrides(now: 2).map(\.value) == [120_000])
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'override_removed'") == 1)
    }
}

/// What the configuration accepts for fixes.
@Suite struct RemediationConfigTests {
    @Test(arguments: [
        (
            #"{"version":1,"task_types":{"apply_remediation":{"safety":"safe","handler":{"exec":{"argv":["/bin/true"]}}}}}"#,
            "apply_remediation is built in"
        ),
        (
            #"{"version":1,"remediations":{"x":{"exec":{"argv":["/bin/true"]},"findings":["everything"]}}}"#,
            #"unknown finding kind "everything""#
        ),
        (
            #"{"version":1,"remediations":{"x":{"exec":{"argv":["/bin/true"]}}}}"#,
            "name the finding kinds this fix answers"
        ),
        (#"{"version":1,"remediations":{"x":{"findings":["shelfware"]}}}"#, "a remediation runs a program"),
        (#"{"version":1,"audit":{"cooldown":"forever"}}"#, "audit.cooldown"),
    ])
    func aBadFixDeclarationIsRefused(json: String, message: String) throws {
        do {
            _ = try loadMap(json)
            Issue.record("accepted: \(json)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test func theBuiltInTypeIsDangerousVerifiedAndTriedOnce() throws {
        let configuration = try loadMap(#"{"version":1,"audit":{"proposals_expire_after":"3d"}}"#).configuration
        let type = try #require(configuration.taskType(named: "apply_remediation"))
        #expect(type.safety == .dangerous && type.handler.isBuiltIn && type.retry.maxAttempts == 1)
        #expect(type.verify.map(\.name) == ["finding"] && type.approvalExpiresAfter == .days(3))
        #expect(configuration.taskTypes["apply_remediation"] == nil)  // not part of the declared map
    }
}
