import ArgumentParser
import AutonomyCore
import Foundation

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a task's evidence again, settle tasks stuck in verifying, or try a type's verifiers.",
        discussion: prose(
            """
            autonomy verify 42               re-run task 42's verifiers now; a failed or dead task whose evidence \
            passes becomes done
            autonomy verify 42 --reopen      ... and a done task that a verifier finds undone (a failed \
            check; one that could not tell or could not run reopens nothing) becomes dead
            autonomy verify --pending        settle the tasks whose worker died while running or verifying them \
            (verified first; exits 1 when one is not done)
            autonomy verify --dry-run daily_report --result '{"bytes":120}'   try the verifiers, change nothing
            Exits 0 when every verifier passed, 1 when one did not.
            """))

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The task to verify.")
    var id: Int64?

    @Flag(help: "Let a done task whose evidence now fails become dead.")
    var reopen = false

    @Flag(help: "Verify every task stuck in verifying (its worker died).")
    var pending = false

    @Option(
        name: .customLong("dry-run"),
        help: ArgumentHelp("Try this type's verifiers on --result, touching nothing.", valueName: "type"))
    var dryRun: String?

    @Option(help: ArgumentHelp("With --dry-run: the handler result to check, as JSON.", valueName: "json"))
    var result: String?

    @Option(help: ArgumentHelp("With --dry-run: the payload templates read, as JSON (default: {}).", valueName: "json"))
    var payload: String?

    @Option(help: "Who checks (default: $AUTONOMY_OPERATOR, else the login user).")
    var by: String?

    @Flag(help: "Print as JSON.")
    var json = false

    func validate() throws {
        let modes = [id != nil, pending, dryRun != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give a task id, --pending, or --dry-run TYPE") }
        if reopen, id == nil { throw ValidationError("--reopen goes with a task id") }
        if dryRun == nil, result != nil || payload != nil {
            throw ValidationError("--result and --payload go with --dry-run")
        }
    }

    func run() async throws {
        if let dryRun { return try await runDry(dryRun) }
        let file = try global.loadConfiguration()
        let clock = try currentClock()
        var options = Worker.Options()
        options.clock = clock
        options.logger = makeLogger("autonomy.verify")
        try await global.onEither(
            file, create: false,
            sqlite: { store in
                try await run(
                    Worker(
                        store: store, loaded: try store.applyingOverrides(to: file, now: clock.now()),
                        options: options))
            },
            postgres: { store in
                try await run(
                    Worker(postgres: store, loaded: try await store.applyingOverrides(to: file), options: options))
            })
    }

    private func run(_ worker: Worker) async throws {
        if pending {
            let report = try await worker.verifyStuck()
            if json { return try printJSON(report) }
            if report.isEmpty { return print("no task is stuck: every running or verifying task's worker is alive") }
            for outcome in report {
                print(
                    "task \(outcome.id) (\(outcome.type)): \(outcome.state.rawValue)\(outcome.error.map { " — \($0)" } ?? "")"
                )
            }
            if report.contains(where: { $0.state != .done }) { throw ExitCode(1) }
            return
        }
        guard let id else { throw QueueError.taskNotFound(0) }
        let (checks, change) = try await worker.reverify(taskID: id, reopen: reopen, by: try operatorName(by))
        try report(checks, change: change, task: try await worker.store.task(id: id))
    }

    private func runDry(_ typeName: String) async throws {
        let loaded = try global.loadConfiguration()
        guard let type = loaded.configuration.taskType(named: typeName) else {
            throw QueueError.undeclaredType(typeName, declared: Array(loaded.configuration.taskTypes.keys))
        }
        guard !type.verify.isEmpty else {
            throw CLIFailure("task type \(typeName) declares no verifier", code: .configError)
        }
        var resultValue: JSONValue?
        if let result {
            do {
                resultValue = try JSONValue.parse(result)
            } catch {
                throw CLIFailure("--result is not valid JSON: \(error.reason)", code: .badInput)
            }
        }
        let payloadText: String
        do {
            payloadText = try JSONValue.parse(payload ?? "{}").canonicalText
        } catch {
            throw CLIFailure("--payload is not valid JSON: \(error.reason)", code: .badInput)
        }
        let now = try currentClock().now()
        let task = TaskRecord.unsaved(
            type: typeName, payload: payloadText, result: resultValue?.canonicalText, now: now)
        let runner = VerificationRunner(
            runner: ExecRunner(
                settings: loaded.configuration.worker, withheld: loaded.configuration.secretVariableNames),
            baseDirectory: loaded.baseDirectory)
        let checks = await runner.verify(
            VerificationSubject(task: task, result: resultValue, attemptStartedAt: 0), with: type.verify)
        try report(checks, change: nil, task: nil)
    }

    private func report(_ checks: [CheckResult], change: Reverification?, task: TaskRecord?) throws {
        if json {
            struct Output: Encodable {
                var checks: [CheckResult]
                /// What the checks did to the task (absent for `--dry-run`).
                var change: String?
            }
            try printJSON(Output(checks: checks, change: change.map { "\($0)" }))
        } else {
            for check in checks {
                print(
                    "\(check.index + 1). \(check.verifier): \(check.outcome.rawValue) — \(check.evidence) (\(Interval(milliseconds: check.durationMs)))"
                )
            }
            switch change {
            case .nowDone?: print("task \(task?.id ?? 0) is now done (the evidence passes)")
            case .reopened?: print("task \(task?.id ?? 0) was reopened: it is now dead")
            case .unchanged(.done)? where reopen && checks.contains(where: { $0.outcome != .pass }):
                print(
                    "task \(task?.id ?? 0) stays done: no verifier found it undone (a check that could not tell or could not run reopens nothing)"
                )
            case .unchanged(let state)?: print("task \(task?.id ?? 0) stays \(state.rawValue)")
            case nil: break
            }
        }
        if checks.contains(where: { $0.outcome != .pass }) {
            throw ExitCode(1)
        }
    }
}
