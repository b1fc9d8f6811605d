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

    /// Only the task marked as the worker's, on the worker's thread, may block it: not a task it
    /// starts (which would queue behind it), and not the same code on the shared pool.
    @Test(.timeLimit(.minutes(1))) func onlyTheMarkedTaskOnItsThreadMayBlock() async throws {
        let thread = try #require(WorkerThread.start())
        defer { thread.finish() }
        let seen = await Task(executorPreference: thread) {
            let unmarked = WorkerThread.mayBlockHere
            return await WorkerThread.blocking {
                async let child = WorkerThread.mayBlockHere
                let started = await Task(executorPreference: thread) { WorkerThread.mayBlockHere }.value
                return (unmarked, WorkerThread.mayBlockHere, await child, started)
            }
        }.value
        #expect(seen.0 == false)
        #expect(seen.1 == true)
        #expect(seen.2 == false)  // a child task, on the same thread
        #expect(seen.3 == false)
        #expect(await WorkerThread.blocking { WorkerThread.mayBlockHere } == false)  // the shared pool
    }

    /// A worker's handler runs in the task that may block the worker's thread: the path that waits
    /// for the program in place, without a hand-off per task.
    @Test(.timeLimit(.minutes(1))) func aWorkersHandlerRunsWhereItMayBlock() async throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        try fixture.enqueue("report")
        let seen = Mutex<[Bool]>([])
        let runner = ScriptedRunner { _ in seen.withLock { $0.append(WorkerThread.mayBlockHere) } }
        let report = try await fixture.worker(runner).work(drain: .init(maxSeconds: 60))
        #expect(report.attempts.count == 2)
        #expect(seen.withLock { $0 } == [true, true])
    }

    /// The shared pool's threads block SIGCHLD, and a new thread inherits its starter's mask. A
    /// thread that starts handlers must not block it: the kernel then drops a handler's SIGCHLD
    /// (its disposition is the default) instead of waking the main thread with it, once a task.
    @Test(.timeLimit(.minutes(1))) func aThreadOfOurOwnDoesNotBlockSIGCHLD() async throws {
        // Blocked, started and restored on one thread, all before the wait: nothing leaves a mask
        // changed on a thread of the pool.
        let seen = await withCheckedContinuation { (continuation: CheckedContinuation<(Bool, Int32?), Never>) in
            var childSignal = sigset_t()
            sigemptyset(&childSignal)
            sigaddset(&childSignal, SIGCHLD)
            var before = sigset_t()
            pthread_sigmask(SIG_BLOCK, &childSignal, &before)
            var starter = sigset_t()
            pthread_sigmask(SIG_BLOCK, nil, &starter)
            let starterBlocks = sigismember(&starter, SIGCHLD) == 1
            let failure = DetachedThread.start {
                var mask = sigset_t()
                pthread_sigmask(SIG_BLOCK, nil, &mask)
                continuation.resume(returning: (starterBlocks, sigismember(&mask, SIGCHLD) == 1 ? SIGCHLD : nil))
            }
            pthread_sigmask(SIG_SETMASK, &before, nil)
            if failure != nil { continuation.resume(returning: (starterBlocks, -1)) }
        }
        #expect(seen.0, "the thread that started it blocked SIGCHLD")
        #expect(seen.1 == nil, "the new thread blocks \(seen.1 == -1 ? "nothing: it did not start" : "SIGCHLD")")
    }

    @Test(.timeLimit(.minutes(1))) func aCommandRunHereRunsOnTheCallingThreadToItsEnd() async throws {
        struct Refused: Error, Equatable {}
        @Sendable func elsewhere() async -> pthread_t {
            await Task.yield()
            return pthread_self()
        }
        // From a thread of its own, as `main` calls it: the calling thread is the command's executor.
        let (caller, seen, value, thrown) = await withCheckedContinuation {
            (continuation: CheckedContinuation<(pthread_t, [pthread_t], Int?, Bool), Never>) in
            let failure = DetachedThread.start {
                let caller = pthread_self()
                let seen = Mutex<[pthread_t]>([])
                let value = try? WorkerThread.runHere {
                    seen.withLock { $0.append(pthread_self()) }
                    await Task.yield()
                    seen.withLock { $0.append(pthread_self()) }
                    let there = await elsewhere()
                    async let child = elsewhere()
                    let fromChild = await child
                    seen.withLock { $0.append(contentsOf: [there, fromChild, pthread_self()]) }
                    // Woken from another thread, as a watcher thread or a connection wakes it.
                    let woken = await withCheckedContinuation { (resumed: CheckedContinuation<Int, Never>) in
                        if DetachedThread.start({ resumed.resume(returning: 40) }) != nil {
                            resumed.resume(returning: 0)
                        }
                    }
                    seen.withLock { $0.append(pthread_self()) }
                    return woken + 2
                }
                let thrown: Bool
                do {
                    _ = try WorkerThread.runHere { () async throws -> Int in
                        await Task.yield()
                        throw Refused()
                    }
                    thrown = false
                } catch {
                    thrown = error is Refused
                }
                continuation.resume(returning: (caller, seen.withLock { $0 }, value, thrown))
            }
            if failure != nil { continuation.resume(returning: (0, [], nil, false)) }
        }
        #expect(value == 42, "the body's value comes back")
        #expect(seen.count == 6)
        #expect(seen.allSatisfy { pthread_equal($0, caller) != 0 }, "every step ran on the calling thread")
        #expect(thrown, "the body's error comes back as thrown")
    }

    @Test(.timeLimit(.minutes(1))) func workGivenJustBeforeTheEndStillRuns() async throws {
        let thread = try #require(WorkerThread.start())
        let tasks = (0..<20).map { index in Task(executorPreference: thread) { index } }
        thread.finish()
        var sum = 0
        for task in tasks { sum += await task.value }
        #expect(sum == (0..<20).reduce(0, +))
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

/// A stop asked while one operation runs inside another (a built-in handler verifying a stuck
/// task) reaches both; each ending removes only its own.
@Suite struct WorkerInterruptionTests {
    @Test func aStopReachesEveryOperationRunningNow() {
        let interruption = WorkerInterruption()
        let stopped = Mutex<[String]>([])
        interruption.whileRunning { stopped.withLock { $0.append("outer") } }
        interruption.whileRunning { stopped.withLock { $0.append("inner") } }
        interruption.ended()  // the inner one
        interruption.fire(SIGINT)
        #expect(stopped.withLock { $0 } == ["outer"])
        interruption.whileRunning { stopped.withLock { $0.append("late") } }  // asked already: at once
        #expect(stopped.withLock { $0 } == ["outer", "late"])

        let nested = WorkerInterruption()
        let both = Mutex<[String]>([])
        nested.whileRunning { both.withLock { $0.append("outer") } }
        nested.whileRunning { both.withLock { $0.append("inner") } }
        nested.fire(SIGTERM)
        #expect(both.withLock { $0 } == ["outer", "inner"])
        #expect(nested.signal == SIGTERM)
    }
}

private final class OrderLog: Sendable {
    private let log = Mutex<[Int]>([])
    func append(_ value: Int) { log.withLock { $0.append(value) } }
    var values: [Int] { log.withLock { $0 } }
}
