import Foundation
import Synchronization
import SystemShims

/// The thread a worker runs on: its loop, its store calls, and the handlers it waits for. (The
/// quick commands' main thread serves one too, through `runHere`.)
///
/// A worker does one thing at a time, so a thread of its own may block: a handler's `poll` loop
/// runs right here (`ChildProcess.run`), with no hand-off to a watching thread and no hop back to
/// the shared pool per task. The pool itself never blocks on a handler, and what else runs in the
/// process (the lease renewals, `serve`, a test's other workers) keeps its threads.
///
/// Jobs are run in the order they came. Once `finish()` is called and what was queued has run, the
/// thread ends; a job that comes later goes to the global executor, so nothing is ever stranded.
final class WorkerThread: TaskExecutor, @unchecked Sendable {
    private struct State {
        var jobs: [UnownedJob] = []
        /// The thread waits on the semaphore: `enqueue` posts.
        var waiting = false
        var finished = false
    }
    private let state = Mutex(State())
    /// Allocated, so its address stays put for the thread that waits on it.
    private let ready = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    /// Marks the threads whose work is theirs alone: a wait there holds up no one else.
    private static let ownKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// True on a worker's own thread.
    static var isCurrent: Bool { pthread_getspecific(ownKey) != nil }

    /// The one task that may block a worker's thread (its hash): the task a worker runs a handler
    /// or its checks in, whose parent only waits for it. A task it starts (a deadline's timer, a
    /// check run beside another) inherits the value but is not that task, so it never blocks: it
    /// would hold up the very thing it runs beside.
    @TaskLocal static var blockingTask: Int?

    /// Whether the code running now may wait for a program by blocking its thread.
    static var mayBlockHere: Bool {
        guard let owner = blockingTask, isCurrent else { return false }
        return withUnsafeCurrentTask { $0?.hashValue } == owner
    }

    /// Runs `operation` as the task that may block its thread (`mayBlockHere`).
    static func blocking<Value>(_ operation: () async -> Value) async -> Value {
        await $blockingTask.withValue(withUnsafeCurrentTask { $0?.hashValue }) { await operation() }
    }

    /// A new thread, named `autonomy-worker` (as `top -H` and `perf` show it); nil when none can be
    /// started, and the worker then runs on the shared pool as any other code does.
    static func start() -> WorkerThread? {
        let thread = WorkerThread()
        let key = ownKey
        let failure = DetachedThread.start { [thread] in
            pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
            autonomy_name_this_thread("autonomy-worker")
            thread.serve()
        }
        return failure == nil ? thread : nil
    }

    private init() { sem_init(ready, 0, 0) }

    /// Runs `body` to its end on the calling thread, which serves as its executor until then (the
    /// same serve loop a worker's thread runs): a command run this way starts no thread of the
    /// shared pool, as long as what it awaits is nonisolated. It blocks the caller; call it from a
    /// thread, never from inside a task. Nothing `body` runs may need the main actor or the main
    /// dispatch queue, and its child tasks share this one thread.
    static func runHere<Value: Sendable>(_ body: @escaping @Sendable () async throws -> Value) throws -> Value {
        let thread = WorkerThread()
        let result = Mutex<Result<Value, any Error>?>(nil)
        Task(executorPreference: thread) {
            let ended: Result<Value, any Error>
            do { ended = .success(try await body()) } catch { ended = .failure(error) }
            result.withLock { $0 = ended }
            thread.finish()
        }
        thread.serve()
        guard let ended = result.withLock({ $0 }) else {
            preconditionFailure("the command's task ended without a result")
        }
        return try ended.get()
    }

    deinit {
        sem_destroy(ready)
        ready.deallocate()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let (taken, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.finished else { return (false, false) }
            state.jobs.append(unowned)
            defer { state.waiting = false }
            return (true, state.waiting)
        }
        if wake { sem_post(ready) }
        if !taken { globalConcurrentExecutor.enqueue(ExecutorJob(unowned)) }
    }

    /// No more work of the worker's own: the thread ends once its queue is empty.
    func finish() {
        let wake = state.withLock { state -> Bool in
            state.finished = true
            defer { state.waiting = false }
            return state.waiting
        }
        if wake { sem_post(ready) }
    }

    private func serve() {
        let executor = asUnownedTaskExecutor()
        // Two buffers swapped under the lock, so taking a batch allocates nothing.
        var batch: [UnownedJob] = []
        while true {
            let next = state.withLock { state -> Bool? in
                if state.jobs.isEmpty {
                    if state.finished { return nil }
                    state.waiting = true
                    return false
                }
                swap(&batch, &state.jobs)
                return true
            }
            guard let next else { return }
            guard next else {
                while sem_wait(ready) != 0 {}
                continue
            }
            for job in batch { job.runSynchronously(on: executor) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}

/// Runs `body` to its end on the calling thread, blocking it until then; for `main`, never from
/// inside a task. Nothing `body` runs may need the main actor (see `WorkerThread.runHere`).
public func runOnThisThread<Value: Sendable>(_ body: @escaping @Sendable () async throws -> Value) throws -> Value {
    try WorkerThread.runHere(body)
}
