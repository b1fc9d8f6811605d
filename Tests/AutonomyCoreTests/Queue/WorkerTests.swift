import Foundation
import GRDB
import Synchronization
import Testing

@testable import AutonomyCore

@Suite struct WorkerTests {
    @Test func tasksRunInPriorityThenRunAtThenIdOrder() async throws {
        let fixture = try Fixture()
        let low = try fixture.enqueue("report", #"{"n":"low"}"#, priority: -1)
        let first = try fixture.enqueue("report", #"{"n":"first"}"#)
        let urgent = try fixture.enqueue("report", #"{"n":"urgent"}"#, priority: 10)
        let second = try fixture.enqueue("report", #"{"n":"second"}"#)
        let later = try fixture.enqueue("report", #"{"n":"later"}"#, priority: 100, delay: .minutes(5))
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 60))
        #expect(runner.calls.map(\.task.id) == [urgent.id, first.id, second.id, low.id])
        #expect(report.attempts.allSatisfy { $0.outcome?.state == .done })
        #expect(try fixture.store.task(id: later.id)?.state == .queued)  // not yet due

        fixture.clock.advance(by: .minutes(5))
        _ = try await fixture.worker(runner).work(drain: nil)
        #expect(runner.calls.last?.task.id == later.id)
    }

    @Test func aFailedTaskBacksOffThenDies() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let runner = ScriptedRunner([.exited(3), .timedOut(.seconds(1)), .couldNotStart("no such program")])
        let worker = fixture.worker(runner)

        var report = try await worker.work(drain: nil)
        var outcome = try #require(report.attempts.first?.outcome)
        #expect(outcome.state == .queued)
        #expect(outcome.nextRunAt == fixture.clock.now() + 30_000)  // backoff 30s, no jitter
        #expect(outcome.error?.contains("exited with status 3: boom") == true)

        report = try await worker.work(drain: nil)
        #expect(report.attempts.isEmpty)  // not due yet
        fixture.clock.advance(by: .seconds(30))
        report = try await worker.work(drain: nil)
        outcome = try #require(report.attempts.first?.outcome)
        #expect(outcome.nextRunAt == fixture.clock.now() + 60_000)  // doubled

        fixture.clock.advance(by: .seconds(60))
        report = try await worker.work(drain: nil)
        outcome = try #require(report.attempts.first?.outcome)
        #expect(outcome.state == .dead)
        let stored = try #require(try fixture.store.task(id: task.id))
        #expect(stored.state == .dead && stored.attempts == 3)
        #expect(stored.lastError == "could not start: no such program")
        let events = try fixture.store.ledger(forTask: task.id).map(\.event)
        #expect(
            events == [
                "enqueued", "claimed", "executed", "retry_scheduled", "claimed", "executed", "retry_scheduled",
                "claimed", "executed", "dead",
            ])

        let retried = try fixture.store.retry(taskID: task.id, by: "ops", now: fixture.clock.now())
        #expect(retried.state == .queued && retried.attempts == 0)
        report = try await worker.work(drain: nil)
        #expect(report.attempts.first?.outcome?.state == .done)
    }

    @Test func aTasksOwnMaxAttemptsOverridesItsType() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report", maxAttempts: 1)
        _ = try await fixture.worker(ScriptedRunner([.exited(1)])).work(drain: nil)
        #expect(try fixture.store.task(id: task.id)?.state == .dead)
    }

    @Test func theHandlerResultIsKept() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        _ = try await fixture.worker(ScriptedRunner()).work(drain: nil)
        let stored = try #require(try fixture.store.task(id: task.id))
        #expect(stored.state == .done && stored.result == #"{"ok":true}"# && stored.exitCode == 0)
    }

    @Test func anUndeclaredTypeReachingTheQueueIsBlockedAndNeverRun() async throws {
        let fixture = try Fixture()
        try fixture.store.write("smuggle") { db in
            try db.execute(
                sql: """
                    INSERT INTO tasks (type, state, priority, run_at, payload, payload_sha256, created_at, updated_at)
                    VALUES ('wire_money', 'queued', 0, 0, '{}', 'x', 0, 0)
                    """)
        }
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)
        #expect(report.skipped.map(\.newState) == [.blocked])
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE state = 'blocked'") == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'blocked'") == 1)
    }

    @Test func aDangerousTaskQueuedBehindTheFirewallsBackIsHeldNotRun() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("send_email", #"{"to":"x@y.z"}"#)
        try fixture.store.write("force") { db in
            try db.execute(sql: "UPDATE tasks SET state = 'queued' WHERE id = ?", arguments: [task.id])
        }
        let runner = ScriptedRunner()
        _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(runner.calls.isEmpty)
        #expect(try fixture.store.task(id: task.id)?.state == .awaitingApproval)
    }

    @Test func aDeadWorkersTaskIsRecoveredAfterItsLeaseAndRunAgain() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        // A worker claims the task and dies without recording anything.
        let step = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(),
            lease: .seconds(60), leaseToken: "dead-worker")
        #expect(step.claimed?.task.id == task.id)
        let runner = ScriptedRunner()
        var report = try await fixture.worker(runner).work(drain: nil)
        #expect(report.recovered.isEmpty && runner.calls.isEmpty)  // the lease still holds

        fixture.clock.advance(by: .seconds(61))
        report = try await fixture.worker(runner).work(drain: nil)
        #expect(report.recovered.map(\.id) == [task.id])
        #expect(report.recovered.first?.state == .queued)
        fixture.clock.advance(by: .seconds(30))
        report = try await fixture.worker(runner).work(drain: nil)
        #expect(report.attempts.first?.outcome?.state == .done)
        #expect(report.attempts.first?.attempt == 2)
        #expect(try fixture.store.ledger(forTask: task.id).map(\.event).contains("lease_expired"))
    }

    @Test func aLongHandlerKeepsItsLeaseAndIsNeverClaimedTwice() async throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let store = fixture.store
        let clock = fixture.clock
        let configuration = fixture.configuration
        // The handler "runs" three minutes of a 60-second lease: time moves in 10-second steps and
        // after each step the handler waits until the worker has renewed the lease.
        let intruderClaims = ManualCounter()
        let runner = ScriptedRunner(onRun: { invocation in
            for _ in 0..<18 {
                clock.advance(by: .seconds(10))
                let target = clock.now() + 50_000
                // Bounded: a worker that stopped renewing fails the test instead of hanging it.
                var polls = 0
                while (try? store.task(id: invocation.task.id)?.leaseExpiresAt ?? 0) ?? 0 < target, polls < 15_000 {
                    polls += 1
                    await Task.yield()
                    try? await Task.sleep(for: .milliseconds(2))
                }
                if polls == 15_000 { intruderClaims.add() }  // the lease was never renewed
                // A second worker looking now finds nothing to recover and nothing to claim.
                if let recovered = try? store.recoverExpiredLeases(
                    configuration: configuration, now: clock.now(), random: { 0 }),
                    !recovered.settled.isEmpty || !recovered.toVerify.isEmpty
                {
                    intruderClaims.add()
                }
                if let step = try? store.claimNext(
                    configuration: configuration, now: clock.now(), lease: .seconds(60),
                    leaseToken: "intruder"), step.claimed != nil
                {
                    intruderClaims.add()
                }
            }
        })
        let worker = fixture.worker(runner) { $0.leaseRenewalInterval = .milliseconds(5) }
        let report = try await worker.work(drain: nil)
        #expect(intruderClaims.value == 0)
        #expect(report.attempts.first?.outcome?.state == .done)
        #expect(try fixture.store.task(id: task.id)?.attempts == 1)
    }

    @Test func aWorkerWhoseLeaseWasTakenOverDropsItsOutcome() throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        let step = try fixture.store.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(),
            lease: .seconds(60), leaseToken: "slow-worker")
        let claimed = try #require(step.claimed)
        fixture.clock.advance(by: .seconds(61))
        _ = try fixture.store.recoverExpiredLeases(
            configuration: fixture.configuration, now: fixture.clock.now(), random: { 0 })
        let recorded = try fixture.store.recordAttempt(
            claimed, outcome: HandlerOutcome(status: .exited(0)), verdict: .passed(evidence: "exit 0"),
            now: fixture.clock.now(), random: { 0 })
        #expect(recorded == nil)
        #expect(try fixture.store.task(id: claimed.task.id)?.state == .queued)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'lease_lost'") == 1)
    }

    @Test func drainStopsAtMaxTasks() async throws {
        let fixture = try Fixture()
        for index in 0..<5 { try fixture.enqueue("report", #"{"n":\#(index)}"#) }
        let report = try await fixture.worker(ScriptedRunner()).work(drain: .init(maxSeconds: 60, maxTasks: 2))
        #expect(report.attempts.count == 2)
        #expect(report.stopReason == .maxTasks)
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'") == 3)
    }

    @Test func everyStateChangeHasItsLedgerRow() async throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        try fixture.enqueue("once")
        _ = try await fixture.worker(ScriptedRunner([.exited(0), .exited(1)])).work(drain: .init(maxSeconds: 60))
        // Each finished task's final state matches its last state-changing ledger row; a task with
        // no such row counts as a mismatch (`IS NOT`, where `!=` would be NULL and count nothing).
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE state IN ('done', 'dead')") == 2)
        let mismatches = try fixture.count(
            """
            SELECT COUNT(*) FROM tasks t
            WHERE t.state IS NOT (SELECT event FROM ledger l WHERE l.task_id = t.id
                                  AND l.event IN ('done', 'dead') ORDER BY l.id DESC LIMIT 1)
            """)
        #expect(mismatches == 0)  // the full replay through the life cycle is LifeCycleTests'

    }
}

final class ManualCounter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
