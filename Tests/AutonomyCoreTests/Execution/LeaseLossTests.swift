import Foundation
import GRDB
import Logging
import Testing

@testable import AutonomyCore

/// A worker that loses its lease while the handler runs stops the handler and everything it
/// started, and leaves the task to the worker that owns it now.
@Suite struct LeaseLossTests {
    /// A handler that starts a child in the background, writes both pids, and waits for it.
    static func map(pids: String) -> String {
        """
        {
          "version": 1,
          "worker": { "lease": "60s", "kill_grace": "1s" },
          "task_types": {
            "long": {
              "safety": "safe", "timeout": "10m",
              "handler": { "exec": {
                "argv": ["/bin/sh", "-c", "sleep 300 & echo $! > \\"$PIDS/child.pid\\"; echo $$ > \\"$PIDS/handler.pid\\"; wait"],
                "env": { "PIDS": "\(pids)" }
              } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            }
          }
        }
        """
    }

    @Test func aLostLeaseStopsTheHandlersWholeProcessGroup() async throws {
        let pids = try TemporaryFolder()
        let fixture = try Fixture(map: Self.map(pids: pids.path))
        let task = try fixture.enqueue("long")
        let worker = fixture.worker(ExecRunner(settings: fixture.configuration.worker)) {
            $0.leaseRenewalInterval = .milliseconds(20)
        }
        let finished = ManualCounter()
        let working = Task { [worker] in
            defer { finished.add() }
            return try await worker.work(drain: nil)
        }

        #expect(
            try await within(.seconds(30)) {
                pid(pids.file("handler.pid")) != nil && pid(pids.file("child.pid")) != nil
            })
        let handler = try #require(pid(pids.file("handler.pid")))
        let child = try #require(pid(pids.file("child.pid")))
        #expect(isRunning(handler) && isRunning(child))

        // Another worker takes the task over, through its own connection.
        var configuration = GRDB.Configuration()
        configuration.busyMode = .timeout(10)
        let other = try DatabaseQueue(path: fixture.store.path, configuration: configuration)
        try await other.write { db in
            try db.execute(
                sql: "UPDATE tasks SET lease_token = 'another-worker' WHERE id = ? AND state = 'running'",
                arguments: [task.id])
            #expect(db.changesCount == 1)
        }

        #expect(
            try await within(.seconds(30)) { !isRunning(handler) && !isRunning(child) },
            "the handler's group outlived the lease")
        try #require(try await within(.seconds(30)) { finished.value == 1 }, "the worker never finished the attempt")
        let report = try await working.value
        let attempt = try #require(report.attempts.first)
        #expect(attempt.outcome == nil)  // dropped: the other worker owns the task's fate
        #expect(attempt.handler.status == .stopped)
        let events = try fixture.store.ledger(forTask: task.id).map(\.event)
        #expect(events == ["enqueued", "claimed", "lease_lost"])
        let stored = try #require(try fixture.store.task(id: task.id))
        #expect(stored.state == .running && stored.leaseToken == "another-worker")
    }
}

/// The pid a handler wrote to `path`, once the whole number is there.
private func pid(_ path: String) -> pid_t? {
    (try? String(contentsOfFile: path, encoding: .utf8)).flatMap {
        $0.hasSuffix("\n") ? pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) : nil
    }
}

/// Whether `pid` still runs. A killed process whose parent died first stays a zombie until an
/// init that reaps orphans does so (some containers' init never does): it runs no more.
private func isRunning(_ pid: pid_t) -> Bool {
    if kill(pid, 0) != 0 { return errno != ESRCH }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return true }
    return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
}

/// Polls `condition` until it holds or `limit` passes, so a regression fails instead of hanging.
private func within(_ limit: Duration, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}
