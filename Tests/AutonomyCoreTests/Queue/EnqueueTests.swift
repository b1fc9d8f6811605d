import Foundation
import GRDB
import Testing

@testable import AutonomyCore

@Suite struct EnqueueTests {
    @Test func aPayloadIsStoredCanonicallyWithItsHash() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report", #"{ "b": 2, "a": {"z": true, "y": [1, 2.5, "x"]} }"#)
        #expect(task.payload == #"{"a":{"y":[1,2.5,"x"],"z":true},"b":2}"#)
        #expect(task.payloadSHA256 == task.payload.sha256Hex)
        #expect(try fixture.store.task(id: task.id)?.payload == task.payload)
        #expect(task.state == .queued)
    }

    @Test func aDangerousTypeWaitsForApproval() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("send_email", #"{"to":"a@b.c"}"#)
        #expect(task.state == .awaitingApproval)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'held' AND task_id = \(task.id)") == 1)
    }

    @Test func theSameKeyReturnsTheExistingTaskAndCreatesNothing() throws {
        let fixture = try Fixture()
        let first = try fixture.store.enqueue(
            EnqueueRequest(type: "report", payload: #"{"a":1}"#, key: "k1"),
            configuration: fixture.configuration, now: fixture.clock.now())
        // Same document, other spelling: still the same payload.
        let second = try fixture.store.enqueue(
            EnqueueRequest(type: "report", payload: #"{ "a" : 1 }"#, key: "k1"),
            configuration: fixture.configuration, now: fixture.clock.now())
        #expect(second == .existing(first.task))
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 1)
        #expect(throws: QueueError.keyConflict(key: "k1", existingID: first.task.id)) {
            try fixture.store.enqueue(
                EnqueueRequest(type: "report", payload: #"{"a":2}"#, key: "k1"),
                configuration: fixture.configuration, now: fixture.clock.now())
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 1)
    }

    @Test func refusedRequestsWriteNothing() throws {
        let fixture = try Fixture(
            map: """
                {"version": 1, "queue": {"max_payload_bytes": 64},
                 "task_types": {"report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}
                """)
        let refusals: [(EnqueueRequest, (QueueError) -> Bool)] = [
            (EnqueueRequest(type: "nope"), { if case .undeclaredType("nope", _) = $0 { true } else { false } }),
            (
                EnqueueRequest(type: "report", payload: "{not json"),
                { if case .invalidPayload = $0 { true } else { false } }
            ),
            (EnqueueRequest(type: "report", payload: "", ), { if case .invalidPayload = $0 { true } else { false } }),
            (
                EnqueueRequest(type: "report", payload: #"{"x":"\#(String(repeating: "a", count: 100))"}"#),
                { if case .payloadTooLarge(_, 64) = $0 { true } else { false } }
            ),
            (
                EnqueueRequest(type: "report", runAt: 1, delay: .seconds(1)),
                { if case .invalidRequest = $0 { true } else { false } }
            ),
            (EnqueueRequest(type: "report", maxAttempts: 0), { if case .invalidRequest = $0 { true } else { false } }),
            (EnqueueRequest(type: "report", key: ""), { if case .invalidRequest = $0 { true } else { false } }),
        ]
        for (request, matches) in refusals {
            #expect {
                try fixture.store.enqueue(request, configuration: fixture.configuration, now: fixture.clock.now())
            } throws: { error in
                (error as? QueueError).map(matches) ?? false
            }
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 0)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger") == 0)
    }

    @Test func aBatchIsAllOrNothingAndNamesTheBadLine() throws {
        let fixture = try Fixture()
        let good = """
            {"type": "report", "payload": {"n": 1}}

            {"type": "report", "payload": {"n": 2}, "priority": 5, "key": "b2"}
            {"type": "report", "delay": "10m"}
            """
        let requests = try EnqueueRequest.parseBatch(Data(good.utf8))
        #expect(requests.count == 3)
        #expect(requests[1].priority == 5 && requests[1].key == "b2")
        #expect(requests[2].delay == .minutes(10))

        // The fifth line (the second is blank) names an undeclared type: nothing is enqueued, and
        // the error names that line.
        let bad = good + "\n" + #"{"type": "nope"}"#
        #expect {
            try fixture.store.enqueueBatch(
                jsonLines: Data(bad.utf8), configuration: fixture.configuration,
                now: fixture.clock.now())
        } throws: { error in
            if case QueueError.batchLine(5, .undeclaredType("nope", _)) = error { return true }
            return false
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 0)
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger") == 0)
        let streamed = try fixture.store.enqueueBatch(
            jsonLines: Data(good.utf8), configuration: fixture.configuration,
            now: fixture.clock.now(), keepTasks: true)
        #expect(streamed.ids.count == 3 && streamed.tasks.map(\.id) == streamed.ids && streamed.existing == 0)
        #expect(streamed.tasks[1].priority == 5)
        let again = try fixture.store.enqueueBatch(
            jsonLines: Data(good.utf8), configuration: fixture.configuration,
            now: fixture.clock.now())
        #expect(again.existing == 1 && again.ids[1] == streamed.ids[1])  // the keyed line named the same task
        try fixture.store.write("reset") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_delete; DELETE FROM ledger; DELETE FROM tasks")
        }

        #expect {
            _ = try EnqueueRequest.parseBatch(Data((good + "\n{oops\n").utf8))
        } throws: { error in
            if case QueueError.batchLine(5, _) = error { return true }
            return false
        }
        // A key that clashes inside the database fails the whole batch too.
        try fixture.enqueue("report", #"{"other":true}"#, key: "b2")
        #expect {
            try fixture.store.enqueueBatch(requests, configuration: fixture.configuration, now: fixture.clock.now())
        } throws: { error in
            if case QueueError.batchLine(2, .keyConflict) = error { return true }
            return false
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 1)
        let outcomes = try fixture.store.enqueueBatch(
            Array(requests.prefix(1)), configuration: fixture.configuration,
            now: fixture.clock.now())
        #expect(outcomes.count == 1)
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 2)
    }

    @Test func aPayloadCannotChangeAfterEnqueue() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report", #"{"to":"a@example.com"}"#)
        #expect {
            try fixture.store.write("tamper") { db in
                try db.execute(
                    sql: #"UPDATE tasks SET payload = '{"to":"evil@example.com"}' WHERE id = ?"#, arguments: [task.id])
            }
        } throws: { error in
            "\(error)".contains("type and payload cannot change after enqueue")
        }
        #expect {
            try fixture.store.write("tamper hash") { db in
                try db.execute(sql: "UPDATE tasks SET payload_sha256 = 'x' WHERE id = ?", arguments: [task.id])
            }
        } throws: { error in
            error is StoreError && "\(error)".contains("cannot change after enqueue")
        }
        #expect(try fixture.store.task(id: task.id)?.payload == task.payload)
    }

    @Test func cancelOnlyBeforeRunningAndRetryOnlyDead() throws {
        let fixture = try Fixture()
        let queued = try fixture.enqueue("report")
        let cancelled = try fixture.store.cancel(
            taskID: queued.id, by: "ops", reason: "not needed", now: fixture.clock.now())
        #expect(cancelled.state == .cancelled)
        #expect(throws: QueueError.notCancellable(id: queued.id, state: .cancelled)) {
            try fixture.store.cancel(taskID: queued.id, by: "ops", reason: nil, now: fixture.clock.now())
        }
        #expect(throws: QueueError.notRetryable(id: queued.id, state: .cancelled)) {
            try fixture.store.retry(taskID: queued.id, by: "ops", now: fixture.clock.now())
        }
        #expect(throws: QueueError.taskNotFound(999)) {
            try fixture.store.cancel(taskID: 999, by: "ops", reason: nil, now: fixture.clock.now())
        }
        let ledger = try fixture.store.ledger(forTask: queued.id)
        #expect(ledger.map(\.event) == ["enqueued", "cancelled"])
        #expect(ledger.last?.detail?[path: "by"] == "ops")
    }
}
