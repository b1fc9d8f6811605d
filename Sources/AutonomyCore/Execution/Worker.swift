import Foundation
import Logging
import Synchronization

/// What one `work-once` run did.
public struct WorkReport: Sendable, Encodable {
    /// Tasks whose worker had died, sent back to the queue or to dead.
    public var recovered: [TaskOutcome] = []
    /// Tasks moved aside without running (blocked, held for approval).
    public var skipped: [SkippedTask] = []
    /// Approval requests nobody decided in time (their tasks expired with them).
    public var expiredApprovals: [ApprovalRecord] = []
    /// Alerts sent (or that failed and wait for a retry).
    public var alerts: [AlertDelivery.Report] = []
    /// Attempts run, in order.
    public var attempts: [AttemptReport] = []
    public var stopReason: StopReason = .queueEmpty

    public enum StopReason: String, Sendable {
        case queueEmpty = "queue_empty"
        case maxTasks = "max_tasks"
        case maxSeconds = "max_seconds"
        case once
        /// SIGINT or SIGTERM reached the worker (`WorkerInterruption`).
        case interrupted
        /// This worker cannot run handlers now (`HandlerStatus.workerUnfit`): the task it claimed
        /// went back to the queue, its attempt not counted, and nothing more was claimed.
        case workerUnfit = "worker_unfit"
    }

    enum CodingKeys: String, CodingKey {
        case recovered, skipped, attempts
        case expiredApprovals = "expired_approvals"
        case alerts
        case stopReason = "stopped"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(recovered, forKey: .recovered)
        try container.encode(skipped, forKey: .skipped)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(expiredApprovals.map { ["id": $0.id, "task_id": $0.taskID] }, forKey: .expiredApprovals)
        try container.encode(alerts, forKey: .alerts)
        try container.encode(stopReason.rawValue, forKey: .stopReason)
    }
}

/// One attempt as `work-once` reports it.
public struct AttemptReport: Sendable, Encodable {
    public var taskID: Int64
    public var type: String
    public var attempt: Int
    public var handler: HandlerOutcome
    /// Where the task went; nil when the lease was lost and another worker owns the outcome.
    public var outcome: TaskOutcome?

    enum CodingKeys: String, CodingKey {
        case taskID = "id"
        case type, attempt
        case durationMs = "duration_ms"
        case exitCode = "exit_code"
        case state, error
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(taskID, forKey: .taskID)
        try container.encode(type, forKey: .type)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(handler.durationMs, forKey: .durationMs)
        try container.encode(handler.exitCode, forKey: .exitCode)
        try container.encode(outcome.map(\.state.rawValue) ?? "lease_lost", forKey: .state)
        try container.encode(outcome?.error, forKey: .error)
    }
}

extension TaskOutcome: Encodable {
    enum CodingKeys: String, CodingKey {
        case id, type, attempt, state
        case nextRunAt = "next_run_at"
        case error
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(type, forKey: .type)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(state, forKey: .state)
        try container.encode(ISOTime(nextRunAt), forKey: .nextRunAt)
        try container.encode(error, forKey: .error)
    }
}

extension AlertDelivery.Report: Encodable {
    enum CodingKeys: String, CodingKey { case event, channel, error }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(event.rawValue, forKey: .event)
        try container.encode(channel.rawValue, forKey: .channel)
        try container.encode(error, forKey: .error)
    }
}

/// `verify ID` on a task whose type declares no verifier: there is nothing to check.
public struct NoVerifier: Error, Sendable, CustomStringConvertible {
    public var type: String
    public var description: String {
        "task type \(type) declares no verifier: add one under task_types.\(type).verify"
    }
}

/// Until when a worker surely holds a task's lease, on its own monotonic clock: moved forward by
/// each renewal the store confirms, shared by the handler's run and its verification.
final class LeaseHold: Sendable {
    private let instant: Mutex<ContinuousClock.Instant>
    init(until: ContinuousClock.Instant) { instant = Mutex(until) }
    var until: ContinuousClock.Instant {
        get { instant.withLock { $0 } }
        set { instant.withLock { $0 = newValue } }
    }
}

/// A renewal that did not answer in time.
struct LeaseRenewalTimedOut: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "no answer within \(limit)" }
}

/// Resumes a continuation with the first answer given; later ones are dropped. An answer given
/// before the continuation is set (a task cancelled already) is kept for it.
final class FirstAnswer<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, Never>?
        var first: T?
        var resumed = false
    }
    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<T, Never>) {
        let ready = state.withLock { state -> T? in
            guard let first = state.first, !state.resumed else {
                state.continuation = continuation
                return nil
            }
            state.resumed = true
            return first
        }
        if let ready { continuation.resume(returning: ready) }
    }

    func answer(_ value: T) {
        let continuation = state.withLock { state -> CheckedContinuation<T, Never>? in
            guard state.first == nil else { return nil }
            state.first = value
            guard let continuation = state.continuation, !state.resumed else { return nil }
            state.resumed = true
            state.continuation = nil
            return continuation
        }
        continuation?.resume(returning: value)
    }
}

/// A stop asked of a running worker from outside (SIGINT or SIGTERM to `work-once`): the handler or
/// verifier running now is stopped as a time-out stops it (TERM to its group, KILL after the
/// grace), its attempt is recorded, and no other task is started. Without it, a worker started by
/// hand and interrupted would leave its handler running in its own process group, and its task
/// `running` until the lease ran out.
public final class WorkerInterruption: Sendable {
    /// `stopRunning` holds one stop per operation running now, the outermost first: a built-in
    /// handler that verifies a stuck task runs one inside its own.
    private let state = Mutex<(signal: Int32?, stopRunning: [@Sendable () -> Void])>((nil, []))

    public init() {}

    /// The first signal that asked for the stop; nil while none did.
    public var signal: Int32? { state.withLock { $0.signal } }

    /// Asks for the stop (safe from any thread, any number of times; the first signal is kept).
    public func fire(_ signal: Int32) {
        let stops = state.withLock { state -> [@Sendable () -> Void] in
            if state.signal == nil { state.signal = signal }
            return state.stopRunning
        }
        for stop in stops { stop() }
    }

    /// `stop` stops what begins now, until its `ended()`; called at once when the stop was already
    /// asked for.
    func whileRunning(_ stop: @escaping @Sendable () -> Void) {
        let asked = state.withLock { state -> Bool in
            state.stopRunning.append(stop)
            return state.signal != nil
        }
        if asked { stop() }
    }

    /// The operation that began last has ended.
    func ended() { state.withLock { _ = $0.stopRunning.popLast() } }

    /// Kills (SIGKILL) the process group of every handler and verifier running now, and removes
    /// their payload files: for a second signal, when the process is about to end at once.
    public func killRunningNow() {
        ChildProcess.killRunningGroups()
        PayloadFile.removeLive()
    }
}

/// The single-shot worker: recover what dead workers left, claim, execute, judge, record, repeat
/// while draining.
public struct Worker: Sendable {
    /// Where the queue is: SQLite or PostgreSQL.
    public let store: any WorkerStore
    /// The same store, as what applying a fix proposal needs of it.
    let remediationStore: any RemediationStore
    public let loaded: LoadedConfiguration
    /// `loaded.baseDirectory`, worked out once rather than per attempt.
    private let baseDirectory: String
    public let clock: any WallClock
    public let runner: any HandlerRunner
    /// Supplies jitter in [0, 1).
    public let random: @Sendable () -> Double
    /// Passed to handlers so nested `autonomy` calls reach the same database and map.
    public let handlerEnvironment: [String: String]
    public let logger: Logger
    /// How often a held lease is renewed; a third of the lease when nil.
    public let leaseRenewalInterval: Duration?
    /// Delivers alerts; nil sends none (tests of the queue alone).
    public let alerts: AlertDelivery?
    /// Runs `command` verifiers (a real program even when tests put a double in `runner`).
    public let verifierRunner: any HandlerRunner
    /// Takes the configured secrets out of what handlers and verifiers hand back, before it is stored.
    public let redactor: SecretRedactor
    /// Waits between a verifier's looks; tests pass one that returns at once.
    public let pause: @Sendable (Interval) async -> Void
    /// A stop asked from outside (see `Options.interruption`).
    let interruption: WorkerInterruption?

    /// How a worker is put together; every field has the production default.
    public struct Options: Sendable {
        public var clock: any WallClock = SystemClock()
        /// Runs handlers; nil runs `exec` handlers as programs and `llm` handlers through the gateway.
        public var runner: (any HandlerRunner)?
        public var random: @Sendable () -> Double = { Double.random(in: 0..<1) }
        public var handlerEnvironment: [String: String] = [:]
        public var logger = Logger(label: "autonomy.worker")
        public var leaseRenewalInterval: Duration?
        /// Delivers the alerts the run raises; nil sends none.
        public var alerts: AlertDelivery?
        public var pause: @Sendable (Interval) async -> Void = { try? await Task.sleep(for: $0.duration) }
        /// Fired from outside (a signal): the handler running now is stopped, its attempt recorded,
        /// and no other task started.
        public var interruption: WorkerInterruption?

        public init() {}
    }

    public init(store: AutonomyStore, loaded: LoadedConfiguration, options: Options = Options()) {
        self.init(
            store: store, remediationStore: store, loaded: loaded, options: options,
            llm: LLMRunner(
                gateway: ModelGateway(store: store, configuration: loaded.configuration, clock: options.clock)))
    }

    /// A worker on a PostgreSQL queue, one of several hosts.
    public init(postgres: PostgresStore, loaded: LoadedConfiguration, options: Options = Options()) {
        self.init(
            store: postgres, remediationStore: postgres, loaded: loaded, options: options,
            llm: LLMRunner(
                gateway: ModelGateway(store: postgres, configuration: loaded.configuration, clock: options.clock)))
    }

    private init(
        store: any WorkerStore, remediationStore: any RemediationStore, loaded: LoadedConfiguration, options: Options,
        llm: any HandlerRunner
    ) {
        self.store = store
        self.remediationStore = remediationStore
        self.loaded = loaded
        self.baseDirectory = loaded.baseDirectory
        self.clock = options.clock
        self.runner =
            options.runner
            ?? HandlerDispatcher(
                exec: ExecRunner(
                    settings: loaded.configuration.worker, withheld: loaded.configuration.secretVariableNames),
                llm: llm)
        self.redactor = SecretRedactor(configuration: loaded.configuration)
        self.verifierRunner = ExecRunner(
            settings: loaded.configuration.worker, withheld: loaded.configuration.secretVariableNames)
        self.random = options.random
        self.handlerEnvironment = options.handlerEnvironment
        self.logger = options.logger
        self.leaseRenewalInterval = options.leaseRenewalInterval
        self.alerts = options.alerts
        self.pause = options.pause
        self.interruption = options.interruption
    }

    /// Limits for a draining run.
    public struct Limits: Sendable {
        /// Stop starting tasks after this long (a task already running finishes).
        public var maxSeconds: Double
        public var maxTasks: Int?
        public init(maxSeconds: Double, maxTasks: Int? = nil) {
            self.maxSeconds = maxSeconds
            self.maxTasks = maxTasks
        }
    }

    /// Recovers expired leases, then runs one task, or (with `drain`) tasks until none is runnable or
    /// a limit is reached.
    ///
    /// Once a task is claimed, the worker runs on a thread of its own (`WorkerThread`), where each
    /// handler is waited for in place: no hand-off to another thread and back per task. A run with
    /// nothing to do starts no thread.
    ///
    /// - Throws: only when the worker itself cannot work (the database is unusable).
    public func work(drain: Limits?) async throws -> WorkReport {
        let configuration = loaded.configuration
        var report = WorkReport()
        // A worker kept to some types (heal's) leaves the housekeeping to work-once.
        if configuration.claimOnly == nil {
            report.expiredApprovals = try await store.housekeeping(now: clock.now())
            report.recovered = try await recover(configuration: configuration)
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64((drain?.maxSeconds ?? 0) * 1000))
        if interruption?.signal != nil {
            report.stopReason = .interrupted
            return report
        }
        let first = try await rated(configuration, claim(configuration))
        let sofar = report
        guard first.claimed != nil, let thread = WorkerThread.start() else {
            return try await work(from: first, sofar, drain: drain, deadline: deadline)
        }
        defer { thread.finish() }
        return try await Self.$thread.withValue(thread) {
            try await withTaskExecutorPreference(thread) {
                try await work(from: first, sofar, drain: drain, deadline: deadline)
            }
        }
    }

    /// The thread this worker runs on, if it has one of its own.
    @TaskLocal private static var thread: WorkerThread?

    /// Runs the claimed task, and (with `drain`) the next ones, adding them to `report`.
    private func work(
        from first: ClaimStep, _ report: WorkReport, drain: Limits?, deadline: ContinuousClock.Instant
    ) async throws -> WorkReport {
        var configuration = loaded.configuration
        let lease = configuration.worker.lease
        var report = report
        var step = first
        while true {
            report.skipped += step.skipped
            guard var claimed = step.claimed else {
                report.stopReason = .queueEmpty
                break
            }
            if interruption?.signal != nil {
                // Claimed just as the stop came, never started: given back, not counted as an attempt.
                _ = try await store.deferTask(
                    claimed, until: clock.now(), reason: "the worker was stopped before it started it",
                    now: clock.now())
                report.stopReason = .interrupted
                break
            }
            // Until when this worker surely holds the lease, on its own monotonic clock (the claim
            // took it a moment ago; up to a second is left for the time between).
            let hold = LeaseHold(until: .now + lease.duration - min(.seconds(1), lease.duration / 10))
            let outcome = await run(claimed, hold)
            if case .workerUnfit(let reason) = outcome.status {
                // Not the task's doing: it goes back as it was, and nothing more is claimed (every
                // claim would fail the same way and spend an attempt of a task that did no wrong).
                // Its place in the queue kept (and on PostgreSQL, no host's clock can hide it).
                let returned = try await store.deferTask(
                    claimed, until: claimed.task.runAt, reason: reason, now: clock.now())
                report.attempts.append(
                    AttemptReport(
                        taskID: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts,
                        handler: outcome, outcome: returned))
                logger.error(
                    "cannot run handlers", metadata: ["task": "\(claimed.task.id)", "error": "\(reason.prefix(300))"])
                report.stopReason = .workerUnfit
                break
            }
            if case .deferred(let until, let reason) = outcome.status {
                // Not an attempt: the day's budget is spent, the task waits for the next day.
                let deferred = try await store.deferTask(claimed, until: until, reason: reason, now: clock.now())
                report.attempts.append(
                    AttemptReport(
                        taskID: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts,
                        handler: outcome, outcome: deferred))
                if let stop = stopReason(drain, deadline: deadline, attemptsSoFar: report.attempts.count) {
                    report.stopReason = stop
                    break
                }
                step = try await rated(configuration, claim(configuration))
                continue
            }
            var checks: [CheckResult] = []
            let verdict: Verdict
            if outcome.status.succeeded, !claimed.type.verify.isEmpty,
                try await store.markVerifying(claimed, outcome: outcome, now: clock.now())
            {
                claimed.executedRecorded = true
                let result = outcome.resultJSON.flatMap { try? JSONValue.parse($0) }
                var ended = claimed
                ended.task.exitCode = outcome.exitCode  // as markVerifying stored it
                checks = await verify(ended, result: result, hold)
                if interruption?.signal != nil {
                    // Verifiers cut short judge nothing: the task stays `verifying`, and the next
                    // run's recovery verifies it again before any retry (never a second side effect).
                    report.attempts.append(
                        AttemptReport(
                            taskID: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts,
                            handler: outcome,
                            outcome: TaskOutcome(
                                id: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts,
                                state: .verifying, nextRunAt: nil,
                                error: "stopped while verifying; the next run verifies it again")))
                    report.stopReason = .interrupted
                    break
                }
                verdict = .combine(checks)
            } else {
                verdict = .fromHandler(outcome)
            }
            let stop = stopReason(drain, deadline: deadline, attemptsSoFar: report.attempts.count + 1)
            let recorded: TaskOutcome?
            if claimed.type.handler.isBuiltIn {
                // A fix may have paused a type or raised a limit: the next claim sees it.
                recorded = try await store.recordAttempt(
                    claimed, outcome: outcome, verdict: verdict, checks: checks, notify: configuration.notify,
                    now: clock.now(), random: random)
                configuration = loaded.configuration.applying(try await store.overrides(now: clock.now()))
                if stop == nil {
                    step = try await rated(configuration, claim(configuration))
                }
            } else if stop == nil {
                let next: ClaimStep?
                (recorded, next) = try await store.recordAttemptAndClaimNext(
                    claimed, outcome: outcome, verdict: verdict, checks: checks, configuration: configuration,
                    now: clock.now(),
                    lease: lease, leaseToken: randomToken(), random: random)
                // A claim that failed beside the record is tried alone: its error is the worker's.
                if let next {
                    step = try await rated(configuration, next)
                } else {
                    step = try await rated(configuration, claim(configuration))
                }
            } else {
                recorded = try await store.recordAttempt(
                    claimed, outcome: outcome, verdict: verdict, checks: checks, notify: configuration.notify,
                    now: clock.now(), random: random)
            }
            logger.log(
                level: Self.logLevel(after: recorded?.state), "attempt ended",
                metadata: [
                    "task": "\(claimed.task.id)", "type": "\(claimed.task.type)",
                    "attempt": "\(claimed.task.attempts)", "state": "\(recorded?.state.rawValue ?? "lease_lost")",
                    "duration_ms": "\(outcome.durationMs)",
                ].merging(Self.failureReason(verdict).map { ["error": "\($0.prefix(300))"] } ?? [:]) { $1 })
            report.attempts.append(
                AttemptReport(
                    taskID: claimed.task.id, type: claimed.task.type, attempt: claimed.task.attempts,
                    handler: outcome, outcome: recorded))
            if let stop {
                report.stopReason = stop
                break
            }
        }
        // Alerts go out after the tasks, so a slow or broken channel never holds up the queue. A
        // stopped worker sends none: they stay due for the next run, and a stop (systemd's SIGTERM
        // reaches the worker alone) never waits on a channel or a notify command.
        if interruption?.signal == nil {
            report.alerts = try await alerts?.deliverDue() ?? []
        }
        return report
    }

    private static func failureReason(_ verdict: Verdict) -> String? {
        if case .failed(let reason) = verdict { return reason }
        return nil
    }

    /// How loud an attempt's end is in the log (and the journal): done is info, a retry a warning,
    /// a task that is out of attempts an error, one that now waits for a person a notice.
    static func logLevel(after state: TaskState?) -> Logger.Level {
        switch state {
        case .done, .cancelled: return .info
        case .awaitingApproval, .verifying, .running: return .notice
        case .queued, .expired, .rejected, nil: return .warning
        case .dead, .blocked: return .error
        }
    }

    /// Finishes a claim that stopped at a payload its type rates with patterns: rates it here,
    /// outside any transaction, and claims again with the rating (a few times at most, in case the
    /// payload keeps changing under it; then the claim rates it itself).
    /// Claims the next task under a fresh lease token.
    private func claim(_ configuration: Configuration) async throws -> ClaimStep {
        try await store.claimNext(
            configuration: configuration, now: clock.now(), lease: configuration.worker.lease,
            leaseToken: randomToken(), ratings: [:], rateInline: false)
    }

    private func rated(_ configuration: Configuration, _ first: ClaimStep) async throws -> ClaimStep {
        var step = first
        var ratings: [Int64: PrecomputedRating] = [:]
        var skipped = step.skipped
        for round in 0..<8 {
            guard let candidate = step.needsRating else { break }
            // A payload that does not parse gets no pattern run at all: the claim blocks it.
            let rating =
                (try? JSONValue.parse(candidate.payload)).flatMap { value in
                    configuration.taskType(named: candidate.typeName).map { $0.rate(value) }
                } ?? Rating(safety: .dangerous, reasons: ["the payload is not valid JSON"])
            ratings[candidate.id] = PrecomputedRating(payloadSHA256: candidate.payload.sha256Hex, rating: rating)
            step = try await store.claimNext(
                configuration: configuration, now: clock.now(), lease: configuration.worker.lease,
                leaseToken: randomToken(), ratings: ratings, rateInline: round == 7)
            skipped += step.skipped
        }
        step.skipped = skipped
        return step
    }

    /// Why a run should start no further task now, or nil to go on.
    private func stopReason(_ drain: Limits?, deadline: ContinuousClock.Instant, attemptsSoFar: Int) -> WorkReport
        .StopReason?
    {
        if interruption?.signal != nil { return .interrupted }
        guard let drain else { return .once }
        if let maxTasks = drain.maxTasks, attemptsSoFar >= maxTasks { return .maxTasks }
        if ContinuousClock.now >= deadline { return .maxSeconds }
        return nil
    }

    /// Runs one claimed attempt's handler with its lease kept alive.
    private func run(_ claimed: ClaimedTask, _ hold: LeaseHold) async -> HandlerOutcome {
        let configuration = loaded.configuration
        let invocation = HandlerInvocation(
            task: claimed.task, type: claimed.type, attempt: claimed.task.attempts,
            timeout: claimed.type.effectiveTimeout(configuration.worker), baseDirectory: baseDirectory,
            environment: handlerEnvironment)
        logger.info(
            "running task",
            metadata: [
                "task": "\(claimed.task.id)", "type": "\(claimed.task.type)", "attempt": "\(claimed.task.attempts)",
            ])
        let runner: any HandlerRunner = claimed.type.handler.isBuiltIn ? remediator : self.runner
        let redactor = self.redactor
        return redactor.redact(
            await keepingLease(claimed, hold) { await runner.run(invocation) })
    }

    /// Runs `operation` (a handler, or verifiers) while renewing the lease every third of its
    /// length. If the lease is lost (another worker took the task over), the operation is cancelled:
    /// one attempt never runs twice. The renewals are scheduled on the process's `LeaseTimer`, so an
    /// operation that ends before its first renewal costs no task or timer of its own.
    private func keepingLease<Value: Sendable>(
        _ claimed: ClaimedTask, _ hold: LeaseHold, _ operation: @escaping @Sendable () async -> Value
    ) async -> Value {
        let settings = loaded.configuration.worker
        let renewal = leaseRenewalInterval ?? .milliseconds(max(500, settings.lease.milliseconds / 3))
        let running = Task(executorPreference: Self.thread) { await WorkerThread.blocking(operation) }
        interruption?.whileRunning { running.cancel() }
        defer { interruption?.ended() }
        let keeper = LeaseKeeper(
            claimed: claimed, hold: hold, store: store, clock: clock, logger: logger, settings: settings,
            renewal: renewal, stop: { running.cancel() })
        keeper.start()
        let value = await withTaskCancellationHandler {
            await running.value
        } onCancel: {
            running.cancel()
        }
        keeper.finish()
        return value
    }

    /// The result of `body`, or a time-out after `limit`: whichever comes first. A call that never
    /// returns (a database connection gone silent) is left behind rather than waited for.
    static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async
        -> Result<T, any Error>
    {
        let first = FirstAnswer<Result<T, any Error>>()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                first.set(continuation)
                let timer = Task {
                    do {
                        try await Task.sleep(for: max(limit, .milliseconds(1)))
                    } catch {
                        return  // cancelled: the body answered
                    }
                    first.answer(.failure(LeaseRenewalTimedOut(limit: limit)))
                }
                Task {
                    let result: Result<T, any Error>
                    do { result = .success(try await body()) } catch { result = .failure(error) }
                    timer.cancel()
                    first.answer(result)
                }
            }
        } onCancel: {
            first.answer(.failure(CancellationError()))
        }
    }

    /// The verifiers, as this worker runs them.
    public var verificationRunner: VerificationRunner {
        // Made only when a fix proposal is verified, not for every task.
        let worker = self
        return VerificationRunner(
            runner: verifierRunner, baseDirectory: baseDirectory, pause: pause,
            reevaluate: { await worker.remediator.reevaluate($0) })
    }

    /// The built-in handler and verifier of fix proposals: always this one, whatever `runner` is.
    var remediator: Remediator {
        let worker = self
        return Remediator(
            store: remediationStore, loaded: loaded, clock: clock,
            exec: ExecRunner(settings: loaded.configuration.worker, withheld: loaded.configuration.secretVariableNames),
            recover: { _ = try await worker.verifyStuck() })
    }

    /// Checks a task's evidence again now (`verify ID`) and acts on what it finds: a failed or dead
    /// task whose evidence passes becomes done; a done one whose evidence fails is reopened (dead)
    /// only with `reopen`.
    ///
    /// - Throws: `QueueError.taskNotFound`, `QueueError.undeclaredType`, `NoVerifier`, `StoreError`.
    public func reverify(taskID: Int64, reopen: Bool, by actor: String) async throws -> (
        checks: [CheckResult], change: Reverification
    ) {
        let configuration = loaded.configuration
        guard let task = try await store.task(id: taskID) else { throw QueueError.taskNotFound(taskID) }
        guard let type = configuration.taskType(named: task.type) else {
            throw QueueError.undeclaredType(task.type, declared: Array(configuration.taskTypes.keys))
        }
        guard !type.verify.isEmpty else { throw NoVerifier(type: task.type) }
        let checks = await verificationRunner.verify(
            VerificationSubject(
                task: task, result: task.result.flatMap { try? JSONValue.parse($0) },
                attemptStartedAt: task.startedAt ?? 0),
            with: type.verify)
        let change = try await store.applyReverification(
            task, checks: checks, reopen: reopen, by: actor, notify: configuration.notify, now: clock.now())
        return (checks, change)
    }

    /// Settles the tasks whose worker died (`verify --pending`): verified first where their type
    /// has verifiers, else sent back to the queue or to dead. Claims nothing new.
    public func verifyStuck() async throws -> [TaskOutcome] {
        try await recover(configuration: loaded.configuration)
    }

    private func recover(configuration: Configuration) async throws -> [TaskOutcome] {
        var outcomes: [TaskOutcome] = []
        var swept = false
        while interruption?.signal == nil {
            let recovery = try await store.recoverExpiredLeases(
                configuration: configuration, now: clock.now(), lease: configuration.worker.lease, random: random)
            outcomes += recovery.settled
            if !swept, !recovery.settled.isEmpty || !recovery.toVerify.isEmpty {
                // A worker died mid-attempt: what it could not remove (its payload file) goes now.
                swept = true
                let removed = PayloadFile.removeAbandoned(now: clock.now() / 1000)
                if removed > 0 { logger.info("removed files a dead worker left", metadata: ["files": "\(removed)"]) }
            }
            guard let claimed = recovery.toVerify.first else { return outcomes }
            // Verify before retry: a crash never sends the same email twice.
            let result = claimed.task.result.flatMap { try? JSONValue.parse($0) }
            let leased = configuration.worker.lease.duration
            let hold = LeaseHold(until: .now + leased - min(.seconds(1), leased / 10))
            let checks = await verify(claimed, result: result, hold)
            // Cut short by a stop: judged by the next run, as if this one had never looked.
            if interruption?.signal != nil { break }
            if let outcome = try await store.recordRecovery(
                claimed, checks: checks, notify: configuration.notify, now: clock.now(), random: random)
            {
                outcomes.append(outcome)
            }
        }
        return outcomes
    }

    /// Runs a type's verifiers on what an attempt left behind, with the lease kept alive.
    private func verify(_ claimed: ClaimedTask, result: JSONValue?, _ hold: LeaseHold) async -> [CheckResult] {
        let verification = verificationRunner
        let subject = VerificationSubject(
            task: claimed.task, result: result, attemptStartedAt: claimed.task.startedAt ?? 0)
        let verifiers = claimed.type.verify
        return redactor.redact(
            await keepingLease(claimed, hold) { await verification.verify(subject, with: verifiers) })
    }
}

/// Keeps one attempt's lease while its operation runs: renews it every `renewal`, and stops the
/// operation when the lease is lost or could not be renewed before it runs out.
final class LeaseKeeper: Sendable {
    private let claimed: ClaimedTask
    private let hold: LeaseHold
    private let store: any WorkerStore
    private let clock: any WallClock
    private let logger: Logger
    private let lease: Interval
    private let renewal: Duration
    /// Stopping takes up to kill_grace (TERM, then KILL): it starts that long, and half a renewal,
    /// before the lease could run out, so the handler is gone before another worker may take the
    /// task over. (A lease too short for that is reported by the loader.) At least one renewal
    /// always comes before the stop, however short the lease.
    private let margin: Duration
    private let stop: @Sendable () -> Void
    private let metadata: Logger.Metadata
    private struct State {
        var nextRenewal: ContinuousClock.Instant
        var finished = false
    }
    private let state: Mutex<State>

    init(
        claimed: ClaimedTask, hold: LeaseHold, store: any WorkerStore, clock: any WallClock, logger: Logger,
        settings: WorkerSettings, renewal: Duration, stop: @escaping @Sendable () -> Void
    ) {
        (self.claimed, self.hold, self.store, self.clock, self.logger) = (claimed, hold, store, clock, logger)
        lease = settings.lease
        self.renewal = renewal
        margin = max(.zero, min(settings.killGrace.duration + renewal / 2, (lease.duration - renewal) / 2))
        self.stop = stop
        metadata = ["task": "\(claimed.task.id)", "type": "\(claimed.task.type)"]
        state = Mutex(
            State(
                nextRenewal: Self.firstRenewal(
                    now: .now, holdUntil: hold.until, lease: lease.duration, renewal: renewal)
            ))
    }

    /// The cadence goes on from the hold's last renewal (or the claim): verifying after a handler
    /// that ended just before its renewal would otherwise reach the stop before renewing once.
    static func firstRenewal(
        now: ContinuousClock.Instant, holdUntil: ContinuousClock.Instant, lease: Duration, renewal: Duration
    ) -> ContinuousClock.Instant {
        min(now + renewal, holdUntil - lease + renewal)
    }

    func start() { scheduleNext() }

    /// The operation ended: no renewal or stop after this one.
    func finish() {
        state.withLock { $0.finished = true }
        LeaseTimer.shared.cancel(self)
    }

    private func scheduleNext() {
        let next = state.withLock { state -> ContinuousClock.Instant? in
            state.finished ? nil : min(state.nextRenewal, hold.until - margin)
        }
        guard let next else { return }
        LeaseTimer.shared.schedule(self, at: next) { [self] in Task { await self.due() } }
        // A finish between the look above and the schedule leaves nothing behind.
        if finished { LeaseTimer.shared.cancel(self) }
    }

    private var finished: Bool { state.withLock { $0.finished } }

    /// A renewal, or the stop, is due.
    private func due() async {
        guard !finished else { return }
        let started = ContinuousClock.now
        let stopAt = hold.until - margin
        if started >= stopAt {
            logger.error("the lease could not be renewed before it ran out; stopping", metadata: metadata)
            stop()
            return
        }
        guard started >= state.withLock({ $0.nextRenewal }) else {
            scheduleNext()
            return
        }
        let now = clock.now()
        let (store, claimed, until) = (self.store, self.claimed, now + lease.milliseconds)
        let renewed = await Worker.within(stopAt - started) {
            try await store.extendLease(
                taskID: claimed.task.id, leaseToken: claimed.leaseToken, until: until, now: now)
        }
        guard !finished else { return }
        switch renewed {
        case .success(true):
            hold.until = started + lease.duration
            state.withLock { $0.nextRenewal = started + renewal }
        case .success(false):
            logger.warning("lease lost; stopping", metadata: metadata)
            stop()
            return
        case .failure(let error):
            logger.warning("could not extend a lease", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            // Try again soon: the time left before stopping is what counts now.
            let retry = ContinuousClock.now + min(renewal, .seconds(1))
            state.withLock { $0.nextRenewal = retry }
        }
        scheduleNext()
    }
}
