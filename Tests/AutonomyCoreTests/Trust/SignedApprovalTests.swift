import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// A decision counts only when an allowed operator's key signed it, and only for what it names.
@Suite struct SignedApprovalTests {
    private func held(_ fixture: Fixture, _ task: TaskRecord) async throws -> (ran: Bool, reason: String?) {
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        let reason = try fixture.store.ledger(forTask: task.id).first { $0.event == "held" }?.detail?[path: "reason"]
        return (!runner.calls.isEmpty, report.skipped.first?.reason ?? reason?.stringValue)
    }

    @Test func aSignedApprovalReleasesTheTaskAndRecordsItsSigner() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        let approval = try fixture.decide(request.id, .approve(note: "go"))
        #expect(approval.decidedBy == "elad" && approval.signerKey == fixture.operatorKey.publicKey.fingerprint)
        let stored = try #require(try fixture.store.approval(id: request.id))
        #expect(stored.signed == approval.signed)
        #expect(try DecisionStatement(text: try #require(stored.signed).statement).attempt == 1)
        let (ran, _) = try await held(fixture, task)
        #expect(ran)
        let claimed = try #require(try fixture.store.ledger(forTask: task.id).first { $0.event == "claimed" })
        #expect(claimed.detail?[path: "approved_by"] == "elad")
    }

    @Test func aRowThatOnlySaysApprovedIsNotAnApproval() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        try fixture.store.write("forge") { db in
            try db.execute(
                sql: """
                    UPDATE approvals SET state = 'approved', decided_by = 'elad', channel = 'cli', decided_at = 0;
                    UPDATE tasks SET state = 'queued';
                    """)
        }
        let (ran, reason) = try await held(fixture, task)
        #expect(!ran)
        #expect(reason?.contains("carries no operator's signature") == true)
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
        // The forged row is withdrawn, and a new request waits for a real decision.
        #expect(try fixture.count("SELECT COUNT(*) FROM approvals WHERE state = 'superseded'") == 1)
        #expect(try fixture.store.pendingApprovals(now: fixture.clock.now()).count == 1)
    }

    @Test func aSignatureCopiedToAnotherTaskReleasesNothing() async throws {
        let fixture = try Fixture(map: firewallMap)
        let first = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let second = try fixture.enqueue("deploy", #"{"version":"6.6.6"}"#)
        let requests = try fixture.store.pendingApprovals(now: fixture.clock.now())
        let approved = try fixture.decide(requests[0].approval.id, .approve(note: nil))
        let signed = try #require(approved.signed)
        // Someone with the database copies the signed statement onto the other request.
        try fixture.store.write("forge") { db in
            try db.execute(
                sql: """
                    UPDATE approvals SET state = 'approved', decided_by = 'elad', statement = ?, signature = ?
                    WHERE id = ?
                    """, arguments: [signed.statement, signed.signature, requests[1].approval.id])
            try db.execute(sql: "UPDATE tasks SET state = 'queued' WHERE id = ?", arguments: [second.id])
        }
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.map(\.task.id) == [first.id])
        #expect(try fixture.store.task(id: second.id)?.state == .awaitingApproval)
    }

    @Test func anApprovalUsedOnceCannotBeReplayedByResettingTheTask() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        try fixture.decide(request.id, .approve(note: nil))
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.count == 1)
        // Someone with the database makes the task and its approval look unused again.
        try fixture.store.write("reset") { db in
            try db.execute(sql: "UPDATE tasks SET state = 'queued', attempts = 0 WHERE id = ?", arguments: [task.id])
            try db.execute(sql: "UPDATE approvals SET used_at = NULL")
        }
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.count == 1)
        #expect(report.skipped.first?.reason.contains("an earlier attempt already used it") == true)
    }

    @Test func aForgedDeciderNameIsNoApproval() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        try fixture.decide(request.id, .approve(note: nil))
        try fixture.store.write("relabel") { db in
            try db.execute(sql: "UPDATE approvals SET decided_by = 'the-ceo'")
        }
        let (ran, reason) = try await held(fixture, task)
        #expect(!ran && reason?.contains("is not its signer") == true)
    }

    @Test func anApprovalNotUsedWithinItsWindowGoesBackToApproval() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        try fixture.decide(request.id, .approve(note: nil))
        fixture.clock.advance(by: .seconds(24 * 3600 + 1))
        let (ran, reason) = try await held(fixture, task)
        #expect(!ran && reason?.contains("approvals.run_within") == true)
    }

    @Test func aKeyRemovedFromAllowedSignersNoLongerReleasesItsApprovals() async throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        try fixture.decide(request.id, .approve(note: nil))
        try fixture.folder.write("allowed_signers", "# elad left the company\n")
        let (ran, reason) = try await held(fixture, task)
        #expect(!ran && reason?.contains("not allowed to sign") == true)
    }

    @Test func onlyAllowedKeysDecideAndOnlyWhatTheySigned() throws {
        let fixture = try Fixture(map: firewallMap)
        _ = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        let stranger = OpenSSHEd25519Key(comment: "mallory")
        #expect(
            throws: TrustError.unknownSigner(
                fingerprint: stranger.publicKey.fingerprint, path: fixture.folder.file("allowed_signers"))
        ) {
            try fixture.decide(request.id, .approve(note: nil), key: stranger)
        }
        // A statement changed after signing (a reject turned into an approve) fails its signature.
        var signed = try fixture.sign(request.id, .reject(reason: "no"))
        signed.statement = signed.statement.replacingOccurrences(
            of: #""decision":"reject""#, with: #""decision":"approve""#)
        #expect(throws: TrustError.self) {
            try fixture.store.decide(signed, verifier: fixture.verifier, channel: .cli, now: fixture.clock.now())
        }
        // A statement signed long ago is not a decision taken now.
        let old = try fixture.sign(request.id, .approve(note: nil))
        fixture.clock.advance(by: .minutes(11))
        #expect(throws: TrustError.self) {
            try fixture.store.decide(old, verifier: fixture.verifier, channel: .cli, now: fixture.clock.now())
        }
        #expect(try fixture.store.approval(id: request.id)?.state == .pending)
    }

    @Test func withNoSignersNothingCanBeApproved() throws {
        let fixture = try Fixture(
            map: firewallMap.replacingOccurrences(
                of: #""approvals": {"#, with: #""approvals": { "allowed_signers": "/nonexistent/allowed_signers","#))
        _ = try fixture.enqueue("deploy", #"{"version":"1.2"}"#)
        let request = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        #expect(throws: TrustError.self) { try fixture.decide(request.id, .approve(note: nil)) }
        let none = DecisionVerifier(allowedSignersPath: nil)
        #expect(throws: TrustError.noSigners) { try none.signers() }
        #expect(TrustError.noSigners.description.contains("autonomy operator init"))
    }

    @Test func theTypeIsAsImmutableAsThePayload() throws {
        let fixture = try Fixture(map: firewallMap)
        let task = try fixture.enqueue("report")
        #expect {
            try fixture.store.write("retype") { db in
                try db.execute(sql: "UPDATE tasks SET type = 'deploy' WHERE id = ?", arguments: [task.id])
            }
        } throws: { error in
            error is StoreError && "\(error)".contains("type and payload cannot change after enqueue")
        }
        #expect(try fixture.store.task(id: task.id)?.type == "report")
    }
}
