import Foundation
import Synchronization
import Testing

@testable import AutonomyCore

/// A worker runs on a thread of its own, where its handlers are waited for by blocking: that
/// thread must run what is given to it, say where it is, strand nothing, and hold up no one else.
@Suite struct WorkerThreadTests {
    @Test(.timeLimit(.minutes(1))) func codeThatPrefersTheThreadRunsThereAndKnowsIt() async throws {
        let thread = try #require(WorkerThread.start())
        defer { thread.finish() }
        let inside = await withTaskExecutorPreference(thread) { WorkerThread.isCurrent }
        #expect(inside)
        let child = await withTaskExecutorPreference(thread) {
            await Task(executorPreference: thread) { WorkerThread.isCurrent }.value
        }
        #expect(child)
        // The shared pool is not a worker's thread: a handler started there is handed to a watcher.
        #expect(await Task.detached { WorkerThread.isCurrent }.value == false)
    }

    @Test(.timeLimit(.minutes(1))) func workGivenAfterTheThreadEndedStillRuns() async throws {
        let thread = try #require(WorkerThread.start())
        thread.finish()
        // A task that still prefers the ended thread runs on the shared pool rather than never.
        let value = await Task(executorPreference: thread) { (WorkerThread.isCurrent, 42) }.value
        #expect(value.0 == false)
        #expect(value.1 == 42)
    }

    @Test(.timeLimit(.minutes(1))) func jobsRunInTheOrderTheyCame() async throws {
        let thread = try #require(WorkerThread.start())
        defer { thread.finish() }
        let order = OrderLog()
        await withTaskExecutorPreference(thread) {
            // Each task is queued behind the one before; this task holds the thread until it awaits.
            let tasks = (0..<50).map { index in Task(executorPreference: thread) { order.append(index) } }
            for task in tasks { await task.value }
        }
        #expect(order.values == Array(0..<50))
    }

    /// Two workers in one process, each blocked on its own handler: each handler waits for the other
    /// to have started, which only works if neither worker's wait holds up the other.
    @Test(.timeLimit(.minutes(1))) func twoWorkersInOneProcessRunTheirHandlersAtTheSameTime() async throws {
        let meeting = try TemporaryFolder()
        func map(_ me: String, _ other: String) -> String {
            """
            {
              "version": 1,
              "task_types": {
                "meet": {
                  "safety": "safe", "timeout": "1m",
                  "handler": { "exec": {
                    "argv": ["/bin/sh", "-c", "touch \\"$DIR/$ME\\"; i=0; while [ ! -e \\"$DIR/$OTHER\\" ]; do i=$((i+1)); [ $i -gt 3000 ] && exit 3; sleep 0.01; done"],
                    "env": { "DIR": "\(meeting.path)", "ME": "\(me)", "OTHER": "\(other)" }
                  } },
                  "retry": { "max_attempts": 1 }
                }
              }
            }
            """
        }
        let first = try Fixture(map: map("a", "b"))
        let second = try Fixture(map: map("b", "a"))
        _ = try first.enqueue("meet")
        _ = try second.enqueue("meet")
        let one = first.worker(ExecRunner(settings: first.configuration.worker))
        let two = second.worker(ExecRunner(settings: second.configuration.worker))
        async let a = one.work(drain: nil)
        async let b = two.work(drain: nil)
        let reports = try await [a, b]
        for report in reports {
            let attempt = try #require(report.attempts.first)
            #expect(attempt.handler.status == .exited(0))
            #expect(attempt.outcome?.state == .done)
        }
    }
}

private final class OrderLog: Sendable {
    private let log = Mutex<[Int]>([])
    func append(_ value: Int) { log.withLock { $0.append(value) } }
    var values: [Int] { log.withLock { $0 } }
}
