import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// A map whose send_email is safe only for our own domain, with alerts on a command channel.
let firewallMap = """
    {
      "version": 1,
      "approvals": { "base_url": "https://ops.example.com/autonomy/" },
      "notify": { "command": ["/bin/true"], "retry_backoff": "1m" },
      "task_types": {
        "send_email": {
          "safety": "dangerous", "approval_expires_after": "24h",
          "verify": [ { "command": { "argv": ["/bin/true"] } } ],
          "handler": { "exec": { "argv": ["/bin/true"] } },
          "retry": { "max_attempts": 1 },
          "rules": [
            { "path": "to", "suffix": "@example.com", "safety": "safe", "ignore_case": true,
              "only_keys": ["to", "cc", "body"] },
            { "path": "cc", "regex": ".*@rival\\\\.com", "safety": "dangerous" }
          ]
        },
        "refund": {
          "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
          "verify": [ { "command": { "argv": ["/bin/true"] } } ],
          "rules": [ { "path": "amount", "one_of": [500, 1000], "safety": "dangerous" },
                     { "path": "meta.channel", "equals": "phone", "safety": "dangerous" } ]
        },
        "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
        "deploy": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                    "verify": [ { "command": { "argv": ["/bin/true"] } } ],
                    "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 } }
      }
    }
    """

@Suite struct FirewallRatingTests {
    @Test func rulesRateByPayloadAndTheMostRestrictiveMatchWins() throws {
        let map = try loadMap(firewallMap).configuration
        let email = try #require(map.taskTypes["send_email"])
        #expect(email.rate(["to": "ops@example.com"]).safety == .safe)
        #expect(email.rate(["to": "Ops@EXAMPLE.com"]).safety == .safe)  // ignore_case
        #expect(email.rate(["to": "ops@example.com.evil.org"]).safety == .dangerous)
        // A safe rule over an array holds for every element, or not at all.
        #expect(email.rate(["to": ["ops@example.com", "Billing@Example.com"]]).safety == .safe)
        #expect(email.rate(["to": ["ops@example.com", "boss@rival.com"]]).safety == .dangerous)
        #expect(email.rate(["to": []]).safety == .dangerous)
        #expect(email.rate([:]).safety == .dangerous)  // no rule matched: the type's rating
        // A deny rule that matches wins, and says so alone.
        let both = email.rate(["to": "ops@example.com", "cc": "spy@rival.com"])
        #expect(both.safety == .dangerous)
        #expect(both.reasons == [#"rule: cc matches /.*@rival\.com/ (ignoring case) → dangerous"#])
        let refund = try #require(map.taskTypes["refund"])
        #expect(refund.rate(["amount": 20]).safety == .safe)
        #expect(refund.rate(["amount": 500]).safety == .dangerous)
        #expect(refund.rate(["amount": 20, "meta": ["channel": "phone"]]).safety == .dangerous)
        #expect(refund.rate(["amount": 500]).reasons == ["rule: amount is one of [500,1000] → dangerous"])
    }

    /// The red team's bypasses of the shipped example, each one now held for approval.
    @Test func theExampleConfigurationHoldsEveryKnownBypass() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("config.example.json").path
        let email = try #require(try ConfigLoader.load(explicitPath: path).configuration.taskTypes["send_email"])
        #expect(email.rate(["to": "ops@ourcompany.com", "body": "hi"]).safety == .safe)
        let bypasses: [JSONValue] = [
            ["to": "ops@ourcompany.com", "cc": ["boss@rival.com"]],
            ["to": "ops@ourcompany.com", "cc": "boss@Rival.com"],
            ["to": "x@evil.com,ops@ourcompany.com"],
            ["to": "x@evil.com ops@ourcompany.com"],
            ["to": "x@evil.com;ops@ourcompany.com"],
            ["to": "x@evil.com\u{0}ops@ourcompany.com"],
            ["to": "x@evil.com\nops@ourcompany.com"],
            ["to": "ops@ourcompany.com", "bcc": "x@evil.com"],
            ["to": ["ops@ourcompany.com", "x@evil.com"]],
            ["to": "ops@ourcompany.com", "template": "REFUND"],
            // What a mail program reads as another address, though the text ends with the domain
            // (the red team's, 2026-11-27: each parsed to x@evil.com by Python's email.utils).
            ["to": "<x@evil.com>@ourcompany.com"],
            ["to": "x@evil.com(@ourcompany.com"],
            ["to": "\"x@evil.com\"@ourcompany.com"],
            ["to": "x@evil.com@ourcompany.com"],
            ["to": "group:x@evil.com;@ourcompany.com"],
            // A mark joined to the comma and the "@" makes one character of each (the review's).
            ["to": "x@\u{FE0F}evil.com,\u{FE0F}ops@ourcompany.com"],
            ["to": "x@evil.com,\u{301}ops@ourcompany.com"],
            // The denied word, padded or with an invisible character in it.
            ["to": "ops@ourcompany.com", "template": "refund "],
            ["to": "ops@ourcompany.com", "template": "refund\u{200B}"],
            ["to": "ops@ourcompany.com", "template": "re\u{00AD}fund"],
            ["to": "ops@ourcompany.com", "template": "refund\u{FE0F}"],
            ["to": "ops@ourcompany.com", "template": "refund\u{34F}"],
        ]
        for payload in bypasses {
            #expect(email.rate(payload).safety == .dangerous, "\(payload.canonicalText)")
        }
    }

    @Test func ordinaryTextStillPassesTheRulesThatDoNotConcernIt() throws {
        let loaded = try loadMap(
            #"""
            {"version": 1, "task_types": {"publish": {"safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}},
              "verify": [ { "command": { "argv": ["/bin/true"] } } ],
              "rules": [
                { "path": "url", "suffix": "/reports/weekly.csv", "safety": "safe", "only_keys": ["url", "body"] },
                { "path": "body", "equals": "refund", "safety": "dangerous" } ] },
              "notify": {"safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}},
              "verify": [ { "command": { "argv": ["/bin/true"] } } ],
              "rules": [ { "path": "to", "regex": ".+@ourcompany\\.com|.+@partner\\.com", "safety": "safe" } ] } } }
            """#)
        let publish = try #require(loaded.configuration.taskTypes["publish"])
        // A URL's ":" and a multi-line body with an emoji are not what the rules are about.
        let ordinary: JSONValue = [
            "url": "https://files.example.com/reports/weekly.csv", "body": "Hello,\nsee the report 👩\u{200D}💻",
        ]
        #expect(publish.rate(ordinary).safety == .safe, "\(publish.rate(ordinary))")
        #expect(
            publish.rate(["url": "https://files.example.com/reports/weekly.csv", "body": " refund\n"]).safety
                == .dangerous)
        // A regex that lists two domains still allows one address (the second review's).
        let notify = try #require(loaded.configuration.taskTypes["notify"])
        #expect(notify.rate(["to": "a@partner.com"]).safety == .safe)
        #expect(notify.rate(["to": "x@evil.com@ourcompany.com"]).safety == .dangerous)
    }

    @Test func aTypeGuardedByDenyRulesAloneIsPointedOut() throws {
        let loaded = try loadMap(firewallMap)
        #expect(
            loaded.advice.contains {
                $0.hasPrefix("task_types.refund.rules: the type is rated safe and only deny rules")
            })
        #expect(!loaded.advice.contains { $0.hasPrefix("task_types.send_email.rules") })
    }

    @Test(arguments: [
        (#"{"path": "to", "safety": "safe"}"#, "expected exactly one of"),
        (#"{"path": "to", "suffix": "@a", "safety": "dangerous", "only_keys": ["to"]}"#, "only a \"safe\" rule"),
        (
            #"{"path": "to", "suffix": "@a", "safety": "safe", "only_keys": ["body"]}"#,
            "must include the rule's own field"
        ),
        (#"{"path": "to", "suffix": "@a", "regex": "x", "safety": "safe"}"#, "expected exactly one of"),
        (#"{"path": "to", "regex": "(", "safety": "safe"}"#, "rules[0].regex: not a valid regular expression"),
        (#"{"path": "to", "suffix": "@a"}"#, "rules[0].safety: missing"),
        (#"{"path": "a..b", "equals": 1, "safety": "safe"}"#, "rules[0].path"),
    ])
    func badRulesNameTheirKeyPath(rule: String, expected: String) {
        let map = """
            {"version": 1, "task_types": {"t": {"handler": {"exec": {"argv": ["x"]}}, "rules": [\(rule)],
             "verify": [{"command": {"argv": ["/bin/true"]}}]}}}
            """
        #expect {
            _ = try loadMap(map)
        } throws: { error in
            "\(error)".contains("task_types.t.") && "\(error)".contains(expected)
        }
    }
}

@Suite struct ApprovalTests {
    func enqueueEmail(_ fixture: Fixture, to: String = "client@customer.org") throws -> TaskRecord {
        try fixture.enqueue("send_email", #"{"to":"\#(to)","body":"invoice"}"#)
    }

    func pending(_ fixture: Fixture) throws -> [PendingApproval] {
        try fixture.store.pendingApprovals(now: fixture.clock.now())
    }

    @Test func aDangerousTaskWaitsWithARequestBoundToItsPayloadHash() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        #expect(task.state == .awaitingApproval)
        let requests = try pending(fixture)
        #expect(requests.count == 1)
        #expect(requests[0].approval.payloadSHA256 == task.payloadSHA256)
        #expect(requests[0].approval.expiresAt == fixture.clock.now() + 86_400_000)
        #expect(requests[0].approval.reason.contains("rated dangerous"))
        // A safe-by-rule email does not wait.
        #expect(try enqueueEmail(fixture, to: "ops@example.com").state == .queued)

        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.map(\.task.type) == ["send_email"])  // only the safe one ran
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
    }

    @Test func approvingLetsExactlyThatPayloadRunOnce() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first)
        let approved = try fixture.decide(request.approval.id, .approve(note: "checked"))
        #expect(approved.state == .approved && approved.decidedBy == "elad")
        #expect(try fixture.store.task(id: task.id)?.state == .queued)
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.map(\.task.id) == [task.id])
        #expect(try fixture.store.approval(id: request.approval.id)?.usedAt != nil)
        let decided = try #require(try fixture.store.ledger(forTask: task.id).first { $0.event == "approval_decided" })
        #expect(decided.detail?[path: "by"] == "elad")
        #expect(decided.detail?[path: "channel"] == "cli")
        #expect(decided.detail?[path: "decision"] == "approved")
        #expect(decided.detail?[path: "payload_sha256"] == .string(task.payloadSHA256))
        // Deciding again, or deciding an unknown request, is refused.
        #expect(throws: ApprovalError.alreadyDecided(id: request.approval.id, state: .approved, by: "elad")) {
            try fixture.decide(request.approval.id, .approve(note: nil))
        }
        #expect(throws: ApprovalError.notFound(999)) {
            try fixture.decide(999, .approve(note: nil))
        }
    }

    @Test func anApprovalCoversOneAttemptAndARetryAsksAgain() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let first = try #require(try pending(fixture).first).approval
        _ = try fixture.decide(first.id, .approve(note: nil))
        let runner = ScriptedRunner([.exited(1), .exited(0)])
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.count == 1)  // the failed attempt used the approval up
        #expect(report.skipped.map(\.newState) == [.awaitingApproval])
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        let second = try #require(try pending(fixture).first).approval
        #expect(second.id != first.id && second.payloadSHA256 == first.payloadSHA256)
        _ = try fixture.decide(second.id, .approve(note: "retry it"))
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.count == 2)
        #expect(try fixture.store.task(id: task.id)?.state == .done)
    }

    @Test func cancellingAWaitingTaskWithdrawsItsRequest() throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first).approval
        let token = try #require(try fixture.store.issueToken(approvalID: request.id, now: fixture.clock.now()))
        _ = try fixture.store.cancel(taskID: task.id, by: "elad", reason: "sent by hand", now: fixture.clock.now())
        #expect(try pending(fixture).isEmpty)
        #expect(try fixture.store.approval(id: request.id)?.state == .superseded)
        #expect(throws: ApprovalError.invalidToken) {
            try fixture.store.pendingApproval(token: token, now: fixture.clock.now())
        }
        #expect(try fixture.store.ledger(forTask: task.id).contains { $0.event == "approval_superseded" })
    }

    @Test func aRejectedTaskNeverRuns() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first)
        #expect(throws: ApprovalError.missingReason) {
            try fixture.decide(request.approval.id, .reject(reason: " "))
        }
        _ = try fixture.decide(request.approval.id, .reject(reason: "wrong client"))
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)
        #expect(try fixture.store.task(id: task.id)?.state == .rejected)
    }

    @Test func anUndecidedRequestExpiresIntoItsOwnFinalState() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first)
        fixture.clock.advance(by: .hours(25))
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(report.expiredApprovals.map(\.id) == [request.approval.id])
        #expect(try fixture.store.task(id: task.id)?.state == .expired)
        #expect(try fixture.store.approval(id: request.approval.id)?.state == .expired)
        #expect(throws: ApprovalError.expired(id: request.approval.id)) {
            try fixture.decide(request.approval.id, .approve(note: nil))
        }
        #expect(runner.calls.isEmpty)
        #expect(try fixture.store.ledger(forTask: task.id).contains { $0.event == "approval_expired" })
    }

    @Test func aPayloadChangedAfterApprovalGoesBackToApproval() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first)
        _ = try fixture.decide(request.approval.id, .approve(note: nil))
        // Someone with the database file drops the guard and rewrites the payload (even its hash).
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            let evil = #"{"body":"invoice","to":"attacker@evil.org"}"#
            try db.execute(
                sql: "UPDATE tasks SET payload = ?, payload_sha256 = ? WHERE id = ?",
                arguments: [evil, evil.sha256Hex, task.id])
        }
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)
        #expect(report.skipped.map(\.newState) == [.awaitingApproval])
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        let renewed = try pending(fixture)
        #expect(renewed.count == 1 && renewed[0].approval.id != request.approval.id)
        #expect(renewed[0].approval.payloadSHA256 != request.approval.payloadSHA256)
    }

    /// A payload rewritten under its old hash while it waits (the trigger dropped and put back)
    /// cannot be decided: not prepared, and not recorded from a statement prepared before.
    @Test func aPayloadRewrittenWhileItWaitsCannotBeDecided() throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first)
        #expect(request.payloadIsIntact && request.shownPayloadSHA256 == request.approval.payloadSHA256)
        let early = try fixture.sign(request.approval.id, .approve(note: nil))
        try fixture.store.write("tamper") { db in
            let trigger = try #require(
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(
                sql: "UPDATE tasks SET payload = ? WHERE id = ?", arguments: [#"{"to":"friend@x.org"}"#, task.id])
            try db.execute(sql: trigger)
        }
        let altered = try #require(try pending(fixture).first)
        #expect(!altered.payloadIsIntact && altered.shownPayloadSHA256 == #"{"to":"friend@x.org"}"#.sha256Hex)
        #expect(PendingApprovalOutput(altered, now: fixture.clock.now()).payloadSHA256 == altered.shownPayloadSHA256)
        #expect(throws: ApprovalError.payloadAltered(id: request.approval.id)) {
            try fixture.decide(request.approval.id, .approve(note: nil))
        }
        #expect(throws: ApprovalError.payloadAltered(id: request.approval.id)) {
            try fixture.store.decide(early, verifier: fixture.verifier, channel: .cli, now: fixture.clock.now())
        }
        #expect(try fixture.store.approval(id: request.approval.id)?.state == .pending)
    }

    @Test func aPayloadChangedBehindAStaleHashIsHeldToo() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("report", #"{"day":"monday"}"#)
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: #"UPDATE tasks SET payload = '{"day":"sunday"}' WHERE id = ?"#, arguments: [task.id])
        }
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)  // a safe type, but the payload is not what was enqueued
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
    }

    @Test func aTypeReRatedDangerousAfterEnqueueIsHeld() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("report")
        let stricter = try loadMap(
            firewallMap.replacingOccurrences(
                of: #""report": { "safety": "safe""#,
                with: #""report": { "verify": [ { "command": { "argv": ["/bin/true"] } } ], "safety": "dangerous""#))
        let worker = fixture.worker(ScriptedRunner(), loaded: stricter)
        let report = try await worker.work(drain: .init(maxSeconds: 600))
        #expect(report.attempts.isEmpty)
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        #expect(try pending(fixture).map(\.task.id) == [task.id])
    }

    @Test func oneClickTokensAreSingleUseAndNeverSayWhyTheyFail() throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try enqueueEmail(fixture)
        let request = try #require(try pending(fixture).first).approval
        let now = fixture.clock.now()
        let old = try #require(try fixture.store.issueToken(approvalID: request.id, now: now))
        let token = try #require(try fixture.store.issueToken(approvalID: request.id, now: now))
        #expect(token.count >= 43 && old != token)
        // Only the hash is stored.
        #expect(
            try fixture.count("SELECT COUNT(*) FROM approval_tokens WHERE token_sha256 = '\(token.sha256Hex)'") == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM approval_tokens WHERE token_sha256 = '\(token)'") == 0)
        // Opening the link shows the request and decides nothing.
        #expect(try fixture.store.pendingApproval(token: token, now: now).task.id == task.id)
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        // Every link sent stays valid until the decision (one per channel and delivery); a wrong one
        // fails without saying why.
        #expect(try fixture.store.pendingApproval(token: old, now: now).task.id == task.id)
        #expect(throws: ApprovalError.invalidToken) { try fixture.store.pendingApproval(token: "guess", now: now) }
        let decided = try fixture.decide(token: token, .approve(note: nil), now: now)
        #expect(decided.channel == "link")
        // The decision spends every token of the request: a replay of either fails the same way.
        #expect(throws: ApprovalError.invalidToken) {
            try fixture.decide(token: token, .reject(reason: "replay"), now: now)
        }
        #expect(throws: ApprovalError.invalidToken) {
            try fixture.decide(token: old, .reject(reason: "replay"), now: now)
        }
        // The spent links only show the decision, and only for their own request.
        #expect(try fixture.store.decidedApproval(token: token, approvalID: request.id, now: now)?.state == .approved)
        #expect(try fixture.store.decidedApproval(token: token, approvalID: request.id + 1, now: now) == nil)
        #expect(try fixture.store.decidedApproval(token: "guess", approvalID: request.id, now: now) == nil)
        // A week later, a forwarded link shows nothing either.
        let later = now + AutonomyStore.spentLinksShow.milliseconds + 1
        #expect(try fixture.store.decidedApproval(token: token, approvalID: request.id, now: later) == nil)
        // A token of a request that expired fails the same way too.
        let other = try enqueueEmail(fixture, to: "b@customer.org")
        let otherRequest = try #require(try pending(fixture).first { $0.task.id == other.id }).approval
        let late = try #require(try fixture.store.issueToken(approvalID: otherRequest.id, now: now))
        fixture.clock.advance(by: .hours(25))
        #expect(throws: ApprovalError.invalidToken) {
            try fixture.decide(token: late, .approve(note: nil), now: fixture.clock.now())
        }
    }
}

@Suite struct AlertTests {
    @Test func aFloodOfRequestsIsOneAlertNotThousands() async throws {
        let fixture = try Fixture(map: firewallMap)
        for n in 0..<30 { _ = try fixture.enqueue("send_email", #"{"to":"c\#(n)@customer.org"}"#) }
        let notifier = RecordingNotifier()
        let delivery = AlertDelivery(
            store: fixture.store, configuration: fixture.configuration, notifier: notifier, clock: fixture.clock)
        let reports = try await delivery.deliverDue()
        #expect(reports.map(\.event) == [.approvalsWaiting])
        #expect(notifier.sent.count == 1)
        #expect(notifier.sent.first?.message.body[path: "waiting"] == .int(30))
        #expect(notifier.sent.first?.message.text.hasPrefix("30 approval requests are waiting") == true)
        #expect(try await delivery.deliverDue().isEmpty)
        // A few at a time still come one by one, each with its own link.
        _ = try fixture.enqueue("send_email", #"{"to":"late@customer.org"}"#)
        #expect(try await delivery.deliverDue().map(\.event) == [.approvalNeeded])
    }

    /// Where `serve` signs, the worker leaves a new request's alert to it for a while, and never
    /// folds such alerts into a flood's one message: the server sends them, with links that decide.
    @Test func theWorkerLeavesNewRequestAlertsToTheServerEvenInAFlood() async throws {
        let fixture = try Fixture(map: firewallMap)
        var configuration = fixture.configuration
        configuration.serve.signingKey = "/etc/autonomy/web/server_ed25519"
        configuration.approvals.baseURL = "https://ops.example.com"
        _ = try fixture.enqueue("send_email", #"{"to":"old@customer.org"}"#)
        fixture.clock.advance(by: Interval(milliseconds: AlertDelivery.serverSendsFirst.milliseconds + 1000))
        for n in 0..<30 { _ = try fixture.enqueue("send_email", #"{"to":"c\#(n)@customer.org"}"#) }
        let notifier = RecordingNotifier()
        let worker = AlertDelivery(
            store: fixture.store, configuration: configuration, notifier: notifier, clock: fixture.clock)
        // Only the request the server had its minutes for goes out, on its own, with a link.
        #expect(try await worker.deliverDue().map(\.event) == [.approvalNeeded])
        #expect(notifier.sent.first?.message.text.contains("old@customer.org") == true)
        #expect(try await worker.deliverDue().isEmpty)
        // The server takes the rest (a flood: one message).
        let server = AlertDelivery(
            store: fixture.store, configuration: configuration, notifier: notifier, clock: fixture.clock,
            seal: try TokenSeal(serverKey: .native(OpenSSHEd25519Key(comment: "autonomy-web"))), approvalsOnly: true)
        #expect(try await server.deliverDue().map(\.event) == [.approvalsWaiting])
        #expect(notifier.sent.last?.message.body[path: "waiting"] == .int(31))
    }

    @Test func anApprovalAlertCarriesAFreshLinkAndAFailedOneIsRetriedLater() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("send_email", #"{"to":"client@customer.org"}"#)
        let notifier = RecordingNotifier()
        notifier.failNext(1)
        let delivery = AlertDelivery(
            store: fixture.store, configuration: fixture.configuration, notifier: notifier,
            clock: fixture.clock)
        var reports = try await delivery.deliverDue()
        #expect(reports.map(\.error) == ["the test channel is down"])
        #expect(try fixture.store.ledger(forTask: task.id).contains { $0.event == "notify_failed" })
        // Not due again until the backoff has passed, and the task is untouched meanwhile.
        #expect(try await delivery.deliverDue().isEmpty)
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        fixture.clock.advance(by: .minutes(1))
        reports = try await delivery.deliverDue()
        #expect(reports.map(\.error) == [nil])
        let message = try #require(notifier.sent.first?.message)
        #expect(message.event == .approvalNeeded)
        let link = try #require(message.body[path: "approval.links.review"]?.stringValue)
        #expect(link.hasPrefix("https://ops.example.com/autonomy/r/"))
        // The token rides in the fragment: no server, proxy log or Referer header sees it.
        let components = try #require(URLComponents(string: link))
        #expect(components.query == nil && components.fragment?.hasPrefix("t=") == true)
        let token = try #require(components.fragment.map { String($0.dropFirst("t=".count)) })
        let page = String(link.prefix { $0 != "#" })
        #expect(message.body[path: "approval.links.approve"]?.stringValue == "\(page)?decision=approve#t=\(token)")
        #expect(message.body[path: "approval.links.reject"]?.stringValue == "\(page)?decision=reject#t=\(token)")
        // What the operator needs to decide is in the alert itself, escaped; the rest is one click away.
        #expect(message.body[path: "approval.fields.to"] == .string(#""client@customer.org""#))
        #expect(
            message.body[path: "approval.payload_bytes"] != nil && message.body[path: "approval.payload_sha256"] != nil)
        #expect(message.text.contains("to=\"client@customer.org\""))
        #expect(try fixture.store.pendingApproval(token: token, now: fixture.clock.now()).task.id == task.id)
        #expect(message.text.contains("autonomy approve"))
        #expect(try fixture.store.ledger(forTask: task.id).contains { $0.event == "notified" })
        #expect(try await delivery.deliverDue().isEmpty)  // delivered once
    }

    @Test func everyChannelGetsALinkThatWorks() async throws {
        let fixture = try Fixture(
            map: firewallMap.replacingOccurrences(
                of: #""notify": { "command": ["/bin/true"], "retry_backoff": "1m" }"#,
                with: #""notify": { "command": ["/bin/true"], "webhook": { "url": "http://127.0.0.1:9/hook" } }"#))
        let task = try fixture.enqueue("send_email", #"{"to":"client@customer.org"}"#)
        let notifier = RecordingNotifier()
        let delivery = AlertDelivery(
            store: fixture.store, configuration: fixture.configuration, notifier: notifier,
            clock: fixture.clock)
        _ = try await delivery.deliverDue()
        #expect(notifier.sent.map(\.channel) == [.command, .webhook])
        for (message, _) in notifier.sent {
            let link = try #require(message.body[path: "approval.links.review"]?.stringValue)
            let token = try #require(link.split(separator: "=").last.map(String.init))
            #expect(try fixture.store.pendingApproval(token: token, now: fixture.clock.now()).task.id == task.id)
        }
    }

    @Test func aDeadTaskRaisesAnAlert() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("send_email", #"{"to":"ops@example.com"}"#)  // safe by rule
        let notifier = RecordingNotifier()
        let worker = fixture.worker(ScriptedRunner([.exited(1)])) {
            $0.alerts = AlertDelivery(
                store: fixture.store, configuration: fixture.configuration, notifier: notifier, clock: fixture.clock)
        }
        let report = try await worker.work(drain: nil)
        #expect(report.attempts.first?.outcome?.state == .dead)
        #expect(notifier.sent.map(\.message.event) == [.taskDead])
        #expect(notifier.sent.first?.message.body[path: "task.id"] == .int(task.id))
    }
}

@Suite struct CanonicalNumberTests {
    @Test func equalNumbersHaveOneTextAndHugeIntegersAreRefused() throws {
        #expect(
            try JSONValue.parse("[5, 5.0, 5e0, -0.0, 1e15, 1000000000000000.0, 0.1]").canonicalText
                == "[5,5,5,0,1000000000000000,1000000000000000,0.1]")
        #expect(throws: JSONTextError.self) { try JSONValue.parse(#"{"n": 12345678901234567890123}"#) }
        #expect(throws: JSONTextError.self) { try JSONValue.parse(#"{"a": 1,}"#) }
        #expect(throws: JSONTextError.self) { try JSONValue.parse(#"{"a": 1, "a": 2}"#) }
        #expect(try JSONValue.parse(#""tab\tquote\"nul\u0000é""#).canonicalText == #""tab\tquote\"nul\u0000é""#)
    }

    /// Found by Fuzz/FuzzJSON (input "1.0"): parse → write → parse was not the identity, and a rule
    /// about 500 did not see 500.0 when the task was enqueued.
    @Test func aWholeNumberReadsTheSameHoweverItIsWritten() throws {
        for text in ["1.0", "1", "1e0", "10E-1", "-0.0"] {
            let value = try JSONValue.parse(text)
            #expect(try JSONValue.parse(value.canonicalText) == value, "\(text)")
        }
        #expect(try JSONValue.parse("500.0") == .int(500))
        #expect(try JSONValue.parse("0.5") == .double(0.5))
        let refund = try #require(try loadMap(firewallMap).configuration.taskTypes["refund"])
        #expect(refund.rate(try JSONValue.parse(#"{"amount": 500.0}"#)).safety == .dangerous)
    }

    @Test func controlCharactersStayInsidePayloadsAndOutOfKeys() throws {
        let fixture = try Fixture()
        #expect(throws: QueueError.self) { try fixture.enqueue("report", key: "a\u{0}b") }
        let task = try fixture.enqueue("report", #"{"note":"a\u0000b"}"#)
        #expect(try fixture.store.task(id: task.id)?.payload == #"{"note":"a\u0000b"}"#)
    }
}

@Suite struct PatternRatingTests {
    /// A rule's pattern never runs inside the claim's write transaction: the claim hands the
    /// payload back, the worker rates it outside, and claims again with the rating.
    @Test func aPatternRuleIsRatedOutsideTheClaimTransaction() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("send_email", #"{"to":"ops@example.com","cc":"x@rival.com"}"#)
        try fixture.store.write("queue it") { db in
            try db.execute(sql: "UPDATE tasks SET state = 'queued' WHERE id = ?", arguments: [task.id])
        }
        let before = try fixture.count("SELECT COUNT(*) FROM ledger")
        let step = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t")
        #expect(step.claimed == nil && step.needsRating?.id == task.id)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger") == before)  // nothing decided inside
        // The worker rates it outside and claims again: the deny rule's pattern holds it.
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty && report.skipped.map(\.newState) == [.awaitingApproval])
        // A safe payload of the same type runs.
        let safe = try fixture.enqueue("send_email", #"{"to":"ops@example.com","body":"hi"}"#)
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.map(\.task.id) == [safe.id])
    }
}
