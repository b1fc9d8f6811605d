import ArgumentParser
import AutonomyCore
import Foundation

/// `QuickCommandLine` reads it too. An option added or renamed here must be added there
/// (`QuickCommandLineTests` fails until it is); one given a `transform` or another parsing
/// strategy must be left to the parser there.
struct WorkOnce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work-once",
        abstract: "Recover tasks of dead workers, then run one task (or, with --drain, until none is runnable).",
        discussion: prose(
            """
            Exits 0 whenever the worker did its job, whatever the tasks' outcomes (they are in the
            ledger); non-zero only when it could not work (bad configuration, unusable database; 73
            when it cannot write payload files into TMPDIR: nothing is started, or the task it
            claimed goes back, its attempt not counted).
            Example (what the systemd timer runs): autonomy work-once --drain
            """))

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Keep going until nothing is runnable or a limit is reached.")
    var drain = false

    @Option(
        name: .customLong("max-seconds"), parsing: .unconditional,
        help: "With --drain: start no task after this many seconds (default: worker.drain_max_seconds, 50).")
    var maxSeconds: Int?

    @Option(
        name: .customLong("max-tasks"), parsing: .unconditional,
        help: "With --drain: stop after this many tasks (default: worker.drain_max_tasks, no limit).")
    var maxTasks: Int?

    @Flag(help: "Report what was done as JSON.")
    var json = false

    func validate() throws {
        if !drain, maxSeconds != nil || maxTasks != nil {
            throw ValidationError("--max-seconds and --max-tasks go with --drain")
        }
        if let maxSeconds, !(0...86_400).contains(maxSeconds) {
            throw ValidationError("--max-seconds must be from 0 to 86400")
        }
        if let maxTasks, maxTasks < 1 { throw ValidationError("--max-tasks must be 1 or more") }
    }

    func run() async throws {
        // The worker runs handlers by the map's rules: never rules someone else could have written.
        let loaded = try global.loadConfiguration()
        try loaded.requireTrusted()
        // Before anything is recovered or claimed: a run that could not start handlers or verifiers
        // would spend the attempts of tasks that did no wrong, or judge a dead worker's task unverified.
        if let problem = ExecRunner.payloadFolderProblem() {
            throw CLIFailure("\(problem); no task was started", code: .cannotCreate)
        }
        let settings = loaded.configuration.worker
        let limits =
            drain
            ? Worker.Limits(
                maxSeconds: Double(maxSeconds ?? settings.drainMaxSeconds), maxTasks: maxTasks ?? settings.drainMaxTasks
            )
            : nil
        let clock = try currentClock()
        var options = Worker.Options()
        options.clock = clock
        options.logger = makeLogger("autonomy.worker")
        let interruption = WorkerInterruption()
        options.interruption = interruption
        let signals = Self.catchingStopSignals(interruption)
        defer { for source in signals { source.cancel() } }
        let report: WorkReport
        switch try global.location(loaded) {
        case .sqlite:
            let store = try global.open(loaded)
            try store.requireOwnSchema()
            var environment = ["AUTONOMY_DATABASE": store.path]
            if let path = loaded.path { environment["AUTONOMY_CONFIG"] = path }
            options.handlerEnvironment = environment
            options.alerts = AlertDelivery(store: store, configuration: loaded.configuration, clock: clock)
            // The overrides approved proposals made, on top of the file, as they stand at the start.
            let worker = Worker(
                store: store, loaded: try store.applyingOverrides(to: loaded, now: clock.now()), options: options)
            let before = try store.ledgerHead()
            report = try await worker.work(drain: limits)
            anchorLedgerHead(try store.ledgerHead(), before: before)
        case .postgres(let url):
            // The URL holds no password: a nested autonomy call needs its own.
            var environment = ["AUTONOMY_DATABASE": url.description]
            if let path = loaded.path { environment["AUTONOMY_CONFIG"] = path }
            options.handlerEnvironment = environment
            let store = try await global.openPostgres(url, loaded)
            options.alerts = AlertDelivery(store: store, configuration: loaded.configuration, clock: clock)
            do {
                warnOfOtherMaps(try? await store.recordMap(loaded.sharedMapFingerprint))
                let before = try await store.ledgerHead()
                // The overrides approved proposals made, on top of the file, as they stand at the start.
                report = try await Worker(
                    postgres: store, loaded: try await store.applyingOverrides(to: loaded), options: options
                ).work(drain: limits)
                anchorLedgerHead(try await store.ledgerHead(), before: before)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
        }
        if json {
            try printJSON(report)
        } else {
            printReport(report, loaded.configuration)
        }
        if let signal = interruption.signal {
            printError("warning: stopped by \(signal == SIGINT ? "SIGINT" : "SIGTERM"); no other task was started")
            closeKeptStores()  // the process ends here: the WAL is checkpointed and removed first
            // Ends by the signal, as a shell and systemd expect of an interrupted program (130, 143).
            fflush(nil)
            Glibc.signal(signal, SIG_DFL)
            Self.mask(SIG_UNBLOCK, [signal])  // blocked since the start, and by Dispatch's signal source
            raise(signal)
            throw ExitCode(128 + signal)  // not reached
        }
        if report.stopReason == .workerUnfit, let attempt = report.attempts.last,
            case .workerUnfit(let reason) = attempt.handler.status
        {
            // The unit fails, so `systemctl --failed` and an OnFailure= unit see it; the tasks wait.
            let task =
                attempt.outcome == nil
                ? "task \(attempt.taskID)'s lease was lost to another worker"
                : "task \(attempt.taskID) went back to the queue, its attempt not counted"
            throw CLIFailure("\(reason); \(task), and no other task was started", code: .cannotCreate)
        }
    }

    /// Blocks or unblocks `signals` in this thread (`how`: `SIG_BLOCK`, `SIG_UNBLOCK`).
    private static func mask(_ how: Int32, _ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(how, &set, nil)
    }

    /// SIGINT (Ctrl-C) and SIGTERM stop the handler running now and end the run once its attempt is
    /// recorded (`WorkerInterruption`); a second one ends the process at once, leaving the task to
    /// the next run's recovery.
    private static func catchingStopSignals(_ interruption: WorkerInterruption) -> [any DispatchSourceSignal] {
        // Blocked here first (and so in every thread started from here on): a signal that comes
        // before Dispatch has taken it over waits, pending, instead of meeting SIG_IGN and being
        // lost. Dispatch reads them from the process's pending set.
        let stops = [SIGINT, SIGTERM]
        mask(SIG_BLOCK, stops)
        return stops.map { number in
            Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                // Two signals close together may reach this handler as one event of two.
                if interruption.signal != nil || source.data > 1 {
                    interruption.killRunningNow()
                    printError("error: stopped at once; the next work-once recovers the task when its lease runs out")
                    _exit(128 + number)
                }
                printError(
                    "warning: stopping: the task running now is stopped and recorded; \(number == SIGINT ? "Ctrl-C" : "SIGTERM") again ends the worker at once"
                )
                interruption.fire(number)
            }
            source.resume()
            return source
        }
    }

    /// The run, a line per thing done (the journal's view of it).
    private func printReport(_ report: WorkReport, _ configuration: Configuration) {
        for recovered in report.recovered {
            print(
                "recovered task \(recovered.id) (\(recovered.type)) after a dead worker: \(describe(recovered.state, next: recovered.nextRunAt, configuration))"
            )
        }
        for approval in report.expiredApprovals {
            print("approval request \(approval.id) expired: task \(approval.taskID) will not run")
        }
        for alert in report.alerts {
            print(
                "alert \(alert.event.rawValue) via \(alert.channel.rawValue): \(alert.error.map { "failed: \($0) (retried later)" } ?? "delivered")"
            )
        }
        for skipped in report.skipped {
            print("task \(skipped.id) (\(skipped.type)): \(skipped.newState.rawValue), not run: \(skipped.reason)")
        }
        for attempt in report.attempts {
            if case .workerUnfit = attempt.handler.status, attempt.outcome != nil {
                // Why is the run's `error:` line.
                print("task \(attempt.taskID) (\(attempt.type)): not run, back in the queue, its attempt not counted")
                continue
            }
            let destination =
                attempt.outcome.map { describe($0.state, next: $0.nextRunAt, configuration) }
                ?? "lease lost; another worker owns it"
            // stdout is the journal too: what a handler wrote is shown, never acted on (a NUL would
            // start a journal line of its own).
            let error = attempt.outcome?.error.map { " — \(Visible.text($0))" } ?? ""
            print(
                "task \(attempt.taskID) (\(attempt.type)) attempt \(attempt.attempt): \(destination) in \(Interval(milliseconds: attempt.handler.durationMs))\(error)"
            )
        }
        if report.attempts.isEmpty, report.recovered.isEmpty, report.skipped.isEmpty, report.alerts.isEmpty,
            report.expiredApprovals.isEmpty, report.stopReason != .interrupted
        {
            print("nothing to do")
        }
    }

    private func describe(_ state: TaskState, next: Int64?, _ configuration: Configuration) -> String {
        if state == .queued, let next { return "retry at \(display(next, configuration))" }
        return state.rawValue
    }
}

/// Sends the ledger's head to the journal, where the database's writers cannot edit it, when it
/// moved since `before`.
func anchorLedgerHead(_ head: LedgerAnchor?, before: LedgerAnchor?) {
    if let head, head != before {
        let sent = Journal.send(
            head.message, messageID: LedgerAnchor.messageID,
            fields: ["AUTONOMY_LEDGER_ID": String(head.id), "AUTONOMY_LEDGER_HASH": head.hash])
        if !sent { printError(head.message) }
    }
}

/// Hosts that apply different rules to one queue are told, every run, in the journal. Not being
/// able to tell (the record failed) stops nothing.
func warnOfOtherMaps(_ others: [String]?) {
    guard let others else {
        return printError("warning: this host's map could not be compared with the other hosts' (host_maps)")
    }
    guard !others.isEmpty else { return }
    printError(
        "warning: \(others.map(Visible.text).joined(separator: ", ")) run\(others.count == 1 ? "s" : "") another map than this host (task types, approvals, budget, producers, alerts or allowed_signers): deploy the same configuration to every host"
    )
}
