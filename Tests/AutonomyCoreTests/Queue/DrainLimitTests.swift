import Foundation
import Testing

@testable import AutonomyCore

/// `max_seconds` bounds when a drain starts tasks, not how long one runs.
///
/// The drain's deadline is read from `ContinuousClock`, not from the worker's injected clock, so
/// these tests use a limit of zero (already passed when the first task ends) instead of moving
/// time.
@Suite struct DrainLimitTests {
    @Test func aDrainPastMaxSecondsStartsNoFurtherTaskAndSaysWhy() async throws {
        let fixture = try Fixture()
        let tasks = try (0..<4).map { try fixture.enqueue("report", #"{"n":\#($0)}"#) }
        let runner = ScriptedRunner()
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 0, maxTasks: 10))

        #expect(report.stopReason == .maxSeconds)
        #expect(try JSONValue.parse(JSONOutput.text(report))[path: "stopped"] == "max_seconds")
        // The task already claimed runs to its end and is recorded; none other is started or claimed.
        #expect(runner.calls.map(\.task.id) == [tasks[0].id])
        #expect(report.attempts.map { $0.outcome?.state } == [.done])
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'") == 3)
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'") == 0)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'claimed'") == 1)

        // The next run picks up where this one stopped.
        let next = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(next.stopReason == .queueEmpty)
        #expect(runner.calls.map(\.task.id) == tasks.map(\.id))
    }

    /// A worker that cannot run handlers at all (no payload file can be written) stops at the first
    /// task, and gives it back as it was: a drain of a broken machine spends no task's attempts.
    @Test func aWorkerUnfitToRunHandlersGivesTheTaskBackAndClaimsNoOther() async throws {
        let fixture = try Fixture()
        let tasks = try (0..<3).map { try fixture.enqueue("report", #"{"n":\#($0)}"#) }
        let runner = ScriptedRunner([.workerUnfit("cannot write the payload file: /gone: No such file or directory")])
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))

        #expect(report.stopReason == .workerUnfit)
        #expect(try JSONValue.parse(JSONOutput.text(report))[path: "stopped"] == "worker_unfit")
        #expect(runner.calls.map(\.task.id) == [tasks[0].id])
        #expect(report.attempts.map { $0.outcome?.state } == [.queued])
        let first = try #require(try fixture.store.task(id: tasks[0].id))
        #expect(first.state == .queued && first.attempts == 0 && first.runAt <= fixture.clock.now())
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'claimed'") == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'deferred'") == 1)
        #expect(
            try fixture.count("SELECT COUNT(*) FROM ledger WHERE event IN ('executed', 'retry_scheduled', 'dead')") == 0
        )

        // Once the machine is mended, the next run runs them all, each on its first attempt.
        let next = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        #expect(next.stopReason == .queueEmpty)
        #expect(next.attempts.map(\.attempt) == [1, 1, 1])
        #expect(next.attempts.map { $0.outcome?.state } == [.done, .done, .done])
    }

    @Test func aDrainWithNothingToDoStopsOnAnEmptyQueueEvenPastItsTime() async throws {
        let fixture = try Fixture()
        let report = try await fixture.worker(ScriptedRunner()).work(drain: .init(maxSeconds: 0))
        #expect(report.stopReason == .queueEmpty && report.attempts.isEmpty)
    }
}
