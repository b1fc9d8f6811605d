import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// Each attempt's `executed` row is written exactly once, decided by what the worker itself did
/// (it wrote the row when the checks began), never by what a handler can write in the database.
@Suite struct ExecutedRowTests {
    static let map = """
        {
          "version": 1,
          "task_types": {
            "job": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                     "retry": { "max_attempts": 1 } },
            "checked": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                         "verify": [{ "command": { "argv": ["/bin/true"] } }] }
          }
        }
        """

    /// The red team's sequence: a retried task (attempt 1 again, its first `executed` row still in
    /// the ledger) whose handler sets its own row to `verifying` and fails.
    @Test func aHandlerThatMarksItsOwnTaskVerifyingStillHasItsOutcomeRecorded() async throws {
        let fixture = try Fixture(map: Self.map)
        let task = try fixture.enqueue("job")
        _ = try await fixture.worker(ScriptedRunner([.exited(1)])).work(drain: nil)
        #expect(try fixture.store.task(id: task.id)?.state == .dead)
        _ = try fixture.store.retry(taskID: task.id, by: "tester", now: fixture.clock.now())

        let path = fixture.store.path
        let runner = ScriptedRunner([.exited(3)]) { invocation in
            let handlerSide = try? DatabaseQueue(path: path)
            try? handlerSide?.write { db in
                try db.execute(
                    sql: "UPDATE tasks SET state = 'verifying' WHERE id = ?", arguments: [invocation.task.id])
            }
        }
        _ = try await fixture.worker(runner).work(drain: nil)
        let executed = try fixture.count(
            "SELECT COUNT(*) FROM ledger WHERE event = 'executed' AND task_id = \(task.id) AND attempt = 1")
        #expect(executed == 2)  // one for each time attempt 1 ran
        let last = try fixture.count(
            "SELECT COUNT(*) FROM ledger WHERE event = 'executed' AND task_id = \(task.id) AND detail LIKE '%\"exit_code\":3%'"
        )
        #expect(last == 1)
    }

    @Test func aVerifiedAttemptHasOneExecutedRowBeforeVerifying() async throws {
        let fixture = try Fixture(map: Self.map)
        let task = try fixture.enqueue("checked")
        _ = try await fixture.worker(ScriptedRunner()).work(drain: nil)
        #expect(try fixture.store.task(id: task.id)?.state == .done)
        let events = try fixture.store.read("events") { db in
            try String.fetchAll(db, sql: "SELECT event FROM ledger WHERE task_id = ? ORDER BY id", arguments: [task.id])
        }
        #expect(events == ["enqueued", "claimed", "executed", "verifying", "verified", "done"])
    }
}
