import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// The task life cycle lives in one table (`TaskTransition.all`); every move goes through
/// `Database.transition`, which checks the from-state in SQL and writes the ledger row with it.
@Suite struct LifeCycleTests {
    @Test func theReadmeShowsTheTableTheCodeEnforces() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        #expect(text.contains(TaskTransition.markdownTable), "README.md should hold:\n\(TaskTransition.markdownTable)")
    }

    @Test func theTableIsWhole() {
        // Every state but the entry states is reached, every non-final state is left, and the
        // final states are left only by an operator's act.
        let reached = Set(TaskTransition.all.map(\.to))
        let left = Set(TaskTransition.all.flatMap(\.from))
        for state in TaskState.allCases where state != .queued {
            #expect(reached.contains(state), "\(state) is never reached")
        }
        for state in TaskState.allCases where !state.isFinal {
            #expect(left.contains(state), "\(state) is never left")
        }
        let leavingFinal = TaskTransition.all.filter { $0.from.contains(where: \.isFinal) }.map(\.name)
        #expect(Set(leavingFinal) == ["retry", "found done", "reopen"])
        #expect(TaskState.finalStates == [.done, .dead, .cancelled, .rejected, .expired, .blocked])
        // The same (from, event) never leads to two places, except a decision (approved or not).
        var seen: [String: TaskState] = [:]
        for transition in TaskTransition.all where transition.event != .approvalDecided {
            for from in transition.from {
                let key = "\(from.rawValue)/\(transition.event.rawValue)"
                #expect(seen[key] == nil || seen[key] == transition.to, "\(key) is ambiguous")
                seen[key] = transition.to
            }
        }
    }

    /// Migrations are frozen once they ship, so the payload trigger keeps its own list of final
    /// states: adding a final state must come with a migration that updates the trigger.
    @Test func theStoredTriggerKnowsTheFinalStatesOfTheCode() throws {
        let fixture = try Fixture()
        let sql = try fixture.store.read("trigger") { db in
            try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'")
        }
        let list = try #require(sql?.range(of: #"OLD\.state IN \(([^)]*)\)"#, options: .regularExpression))
        let states = sql![list].dropFirst("OLD.state IN (".count).dropLast().split(separator: ",").map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: " '"))
        }
        #expect(Set(states) == Set(TaskState.finalStates.map(\.rawValue)))
    }

    @Test func aTransitionFromTheWrongStateIsRefusedAndChangesNothing() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let ledgerBefore = try fixture.count("SELECT COUNT(*) FROM ledger")
        let refused = #expect(throws: TransitionRefused.self) {
            try fixture.store.write("test") { db in
                try db.transition(task.id, .succeed, at: fixture.clock.now())
            }
        }
        #expect(refused?.found == .queued && refused?.expected == [.running, .verifying])
        #expect(refused?.description.contains("task \(task.id) is queued, not running or verifying") == true)
        #expect(try fixture.store.task(id: task.id)?.state == .queued)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger") == ledgerBefore)
        // A lease that is not the holder's is refused the same way.
        let claimed = try #require(
            try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "mine"
            ).claimed)
        #expect(throws: TransitionRefused.self) {
            try fixture.store.write("test") { db in
                try db.transition(claimed.task.id, .succeed, at: fixture.clock.now(), lease: "someone else's")
            }
        }
        #expect(try fixture.store.task(id: task.id)?.state == .running)
    }

    @Test func dyingQueuesItsAlertInTheSameTransaction() throws {
        let fixture = try Fixture(
            map: standardMap.replacingOccurrences(
                of: #""worker": { "lease": "60s" },"#,
                with: #""worker": { "lease": "60s" }, "notify": { "command": ["/bin/true"] },"#
            ))
        let task = try fixture.enqueue("once")
        let claimed = try #require(
            try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t"
            ).claimed)
        let outcome = try fixture.store.recordAttempt(
            claimed, outcome: HandlerOutcome(status: .exited(3), stderrTail: "boom"),
            verdict: .failed(reason: "exit 3"),
            notify: fixture.configuration.notify, now: fixture.clock.now(), random: { 0 })
        #expect(outcome?.state == .dead)
        let dead = try #require(try fixture.store.task(id: task.id))
        #expect(dead.exitCode == 3 && dead.stderrTail == "boom" && dead.lastError == "exit 3")
        #expect(dead.finishedAt == fixture.clock.now() && dead.leaseToken == nil && dead.leaseExpiresAt == nil)
        #expect(
            try fixture.count("SELECT COUNT(*) FROM notifications WHERE event = 'task_dead' AND task_id = \(task.id)")
                == 1)
    }

    @Test func anUnknownStateIsAnErrorThatNamesIt() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let approvalTask = try fixture.enqueue("send_email", #"{"to":"a@b.c"}"#)
        try fixture.store.write("corrupt") { db in
            try db.execute(sql: "UPDATE tasks SET state = 'zombie' WHERE id = ?", arguments: [task.id])
            try db.execute(sql: "UPDATE approvals SET state = 'maybe' WHERE task_id = ?", arguments: [approvalTask.id])
        }
        let taskError = #expect(throws: StoreError.self) { try fixture.store.task(id: task.id) }
        // Named, column and value, without the row (a payload may be in it).
        let said = taskError.map { "\($0)" } ?? ""
        #expect(said.contains(#"value "zombie" - column: "state""#) && !said.contains("payload"), "\(said)")
        let approvalID = try fixture.count("SELECT id FROM approvals WHERE task_id = \(approvalTask.id)")
        let approvalError = #expect(throws: StoreError.self) {
            try fixture.store.approval(id: Int64(approvalID))
        }
        #expect((approvalError.map { "\($0)" } ?? "").contains(#"value "maybe" - column: "state""#))
    }

    /// Claims and transitions read their row by column index, straight from SQLite
    /// (`TaskRecord(columns:)`): every column lands in its field, as GRDB reads it by name.
    @Test func aRowReadByIndexIsTheRowReadByName() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report", #"{"n":1}"#)
        // Every column holds a value, each a different one, so a column read into the wrong field shows.
        try fixture.store.write("fill") { db in
            try db.execute(
                sql: """
                    UPDATE tasks SET priority = 7, idempotency_key = 'key', source = 'src', subject = 'subj',
                        max_attempts = 9, lease_token = 'token', lease_expires_at = 11, started_at = 12,
                        finished_at = 13, exit_code = 14, result = '"out"', last_error = 'err', stderr_tail = 'tail',
                        state = 'running', attempts = 3
                    WHERE id = ?
                    """, arguments: [task.id])
        }
        try fixture.store.write("read") { db in
            let statement = try db.cachedStatement(sql: "SELECT \(TaskRecord.columns) FROM tasks WHERE id = ?")
            let byIndex = try statement.first(binding: [.integer(task.id)], TaskRecord.init(columns:))
            let byName = try TaskRecord.fetchOne(statement, arguments: [task.id])
            #expect(byIndex != nil && byIndex == byName)
            #expect(byIndex?.leaseToken == "token" && byIndex?.exitCode == 14 && byIndex?.maxAttempts == 9)
            // A transition reads the row it wrote the same way.
            let done = try db.transitionReturningTask(task.id, .succeed, at: 20, lease: "token", attempt: 3)
            #expect(done.state == .done && done.leaseToken == nil && done.finishedAt == 20 && done.priority == 7)
        }
        #expect(throws: StoreError.self) {
            try fixture.store.write("too many values") { db in
                _ = try db.cachedStatement(sql: "SELECT id FROM tasks WHERE id = ?").first(
                    binding: [.integer(1), .integer(2)], { try $0.optionalInteger(0) })
            }
        }
    }

    @Test func anUnknownStateReadByIndexIsAnErrorThatNamesIt() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let error = #expect(throws: StoreError.self) {
            try fixture.store.write("corrupt, then read") { db in
                try db.execute(sql: "UPDATE tasks SET state = 'zombie' WHERE id = ?", arguments: [task.id])
                let statement = try db.cachedStatement(sql: "SELECT \(TaskRecord.columns) FROM tasks WHERE id = ?")
                _ = try statement.first(binding: [.integer(task.id)], TaskRecord.init(columns:))
            }
        }
        let said = error.map { "\($0)" } ?? ""
        #expect(said.contains("column state: zombie") && !said.contains("payload"), "\(said)")
        // The write was rolled back with the error.
        #expect(try fixture.store.task(id: task.id)?.state == .queued)
        // A number stored as text is an error too, not a 0 (SQLite's reading): attempts written as
        // text by another program must not reset the task's retry budget.
        let typeError = #expect(throws: StoreError.self) {
            try fixture.store.write("corrupt, then read") { db in
                try db.execute(sql: "UPDATE tasks SET attempts = 'x' WHERE id = ?", arguments: [task.id])
                let statement = try db.cachedStatement(sql: "SELECT \(TaskRecord.columns) FROM tasks WHERE id = ?")
                _ = try statement.first(binding: [.integer(task.id)], TaskRecord.init(columns:))
            }
        }
        #expect((typeError.map { "\($0)" } ?? "").contains("column attempts: not an integer"))
    }

    /// The strong form of "every state change has its ledger row": replaying each task's ledger
    /// through the table arrives at the state the task is in.
    @Test func eachTasksLedgerReplaysToItsState() async throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        try fixture.enqueue("once")
        try fixture.enqueue("report")
        let waiting = try fixture.enqueue("send_email", #"{"to":"a@b.c"}"#)
        let cancelled = try fixture.enqueue("report", priority: -1, delay: .hours(1))
        _ = try fixture.store.cancel(taskID: cancelled.id, by: "test", reason: nil, now: fixture.clock.now())
        _ = try await fixture.worker(ScriptedRunner([.exited(0), .exited(1), .exited(1)])).work(
            drain: .init(maxSeconds: 60))
        let approval = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first)
        #expect(approval.task.id == waiting.id)
        try fixture.decide(approval.approval.id, .approve(note: nil))
        _ = try await fixture.worker(ScriptedRunner()).work(drain: .init(maxSeconds: 60))

        let tasks = try fixture.store.tasks(matching: TaskFilter(limit: 100))
        #expect(tasks.count == 5)
        #expect(Set(tasks.map(\.state)) == [.done, .dead, .queued, .cancelled])
        for task in tasks {
            var state: TaskState?
            for entry in try fixture.store.ledger(forTask: task.id) {
                guard let event = LedgerEvent(rawValue: entry.event) else { continue }
                if event == .enqueued {
                    state = entry.detail?[path: "state"]?.stringValue.flatMap(TaskState.init(rawValue:))
                    continue
                }
                let moves = TaskTransition.all.filter { transition in
                    transition.event == event && state.map(transition.from.contains) == true
                }
                guard !moves.isEmpty else { continue }  // an event that moves nothing (executed, verified…)
                if event == .approvalDecided {
                    state = entry.detail?[path: "decision"]?.stringValue == "approved" ? .queued : .rejected
                } else {
                    state = moves[0].to
                }
            }
            #expect(state == task.state, "task \(task.id) (\(task.type)): the ledger says \(String(describing: state))")
        }
    }
}
