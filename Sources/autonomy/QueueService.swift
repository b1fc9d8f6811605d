import ArgumentParser
import AutonomyCore
import Foundation

/// What a command prints, gathered so that the same words reach the caller whether it opened the
/// database itself or came through the gate.
struct Printout {
    var stdout = ""
    var stderr = ""

    mutating func line(_ text: String) { stdout += text + "\n" }
    mutating func note(_ text: String) { stderr += text + "\n" }
}

/// Who is asking: someone who opened the database (the worker user, root), or a producer the
/// gate identified by its Unix user.
enum Caller {
    case local
    case producer(ProducerPolicy)

    var producer: ProducerPolicy? {
        if case .producer(let policy) = self { return policy }
        return nil
    }

    /// The producer whose tasks alone this caller may read; nil reads everything.
    var readsOnly: String? {
        guard let producer, !producer.rule.readAll else { return nil }
        return producer.name
    }
}

/// Serves the requests producers and operators make of the queue (enqueue, status, tasks,
/// approvals, decisions): one piece of code whether the caller opened the database itself or came
/// through the gate, so output and exit codes are the same either way.
struct QueueService {
    var loaded: LoadedConfiguration
    var store: AutonomyStore
    var caller: Caller
    var clock: any WallClock

    /// Work to do once the answer is out (alerts about new tasks): it never holds up the caller.
    typealias FollowUp = @Sendable () async -> [String]

    /// Answers one request. Refusals are answers too: an `error:` line and the documented code.
    func answer(_ request: GateRequest) async -> (GateAnswer, FollowUp?) {
        var printout = Printout()
        var statement: String?
        var followUp: FollowUp?
        do {
            switch request.verb {
            case .enqueue: followUp = try enqueue(request, &printout)
            case .status: try status(request, &printout)
            case .tasksList: try tasksList(request, &printout)
            case .tasksShow: try tasksShow(request, &printout)
            case .approvals: try approvals(request, &printout)
            case .prepareDecision, .decide:
                // Deciding means seeing any request: only an operator's account (read_all) may, and
                // its decision still counts only by its signature.
                if let producer = caller.readsOnly {
                    throw TrustError.verbNotAllowed(producer: producer, verb: "decide")
                }
                if request.verb == .decide {
                    try decide(request, &printout)
                } else {
                    (statement, printout.stderr) = try prepareDecision(request)
                }
            }
        } catch {
            let (code, message) = failure(error)
            printout.note("error: \(message)")
            return (GateAnswer(exit: code.rawValue, stdout: printout.stdout, stderr: printout.stderr), nil)
        }
        return (GateAnswer(exit: 0, stdout: printout.stdout, stderr: printout.stderr, statement: statement), followUp)
    }

    // MARK: - enqueue

    private func enqueue(_ call: GateRequest, _ printout: inout Printout) throws -> FollowUp? {
        let configuration = loaded.configuration
        let now = clock.now()
        if let batch = call.batch {
            let result = try store.enqueueBatch(
                jsonLines: batch, configuration: configuration, now: now, keepTasks: call.json == true,
                producer: caller.producer)
            if call.json == true {
                printout.line(try JSONOutput.text(result.tasks.map { TaskOutput($0) }))
            } else {
                printout.stdout.reserveCapacity(result.ids.count * 8)
                for id in result.ids { printout.stdout += "\(id)\n" }
            }
            if result.existing > 0 {
                printout.note(
                    "note: \(result.existing) of \(result.ids.count) tasks already existed under their keys; \(result.ids.count - result.existing) enqueued"
                )
            }
            return alerts(for: result.ids)
        }
        let request = try call.enqueueRequest()
        let outcome = try store.enqueue(request, configuration: configuration, now: now, producer: caller.producer)
        try Self.report(outcome, call, &printout)
        return alerts(for: [outcome.task.id])
    }

    /// What an enqueue prints: the id (or the task as JSON), and a note when it waits or existed.
    static func report(_ outcome: EnqueueOutcome, _ call: GateRequest, _ printout: inout Printout) throws {
        if case .created(let task) = outcome, task.state == .awaitingApproval {
            printout.note(
                "note: task \(task.id) (\(task.type)) is rated dangerous: it waits for an operator's approval")
        }
        if case .existing(let task) = outcome {
            printout.note(
                "note: idempotency key \"\(call.key ?? "")\" already names task \(task.id) (\(task.state.rawValue)); nothing enqueued"
            )
        }
        printout.line(call.json == true ? try JSONOutput.text(TaskOutput(outcome.task)) : String(outcome.task.id))
    }

    /// Tells the operator at once about what the new tasks need. A failure here changes nothing:
    /// work-once retries the alert.
    private func alerts(for tasks: [Int64]) -> FollowUp? {
        let configuration = loaded.configuration
        guard !configuration.notify.channels.isEmpty, !tasks.isEmpty else { return nil }
        let delivery = AlertDelivery(store: store, configuration: configuration, clock: clock)
        return { await delivery.deliverNow(tasks: Set(tasks)) }
    }

    // MARK: - status

    private func status(_ call: GateRequest, _ printout: inout Printout) throws {
        let now = clock.now()
        let status = try store.status(now: now, source: caller.readsOnly)
        try Self.render(
            status, now: now, database: store.path, loaded: loaded, readsOnly: caller.readsOnly,
            json: call.json == true,
            &printout)
    }

    /// What `status` prints, whichever store it came from.
    static func render(
        _ status: QueueStatus, now: Int64, database: String, loaded: LoadedConfiguration, readsOnly: String?,
        json: Bool, _ printout: inout Printout
    ) throws {
        let configuration = loaded.configuration
        if json { return printout.line(try JSONOutput.text(StatusOutput(status, now: now))) }
        printout.line("database: \(database)")
        printout.line("config:   \(loaded.path ?? "built-in defaults (no task types: every task is refused)")")
        if let mine = readsOnly { printout.line("showing:  the tasks of \(mine) only") }
        let states = TaskState.allCases.filter { status.counts[$0, default: 0] > 0 }
        printout.line(
            "tasks:    "
                + (states.isEmpty
                    ? "none"
                    : states.map { "\($0.rawValue) \(status.counts[$0, default: 0])" }.joined(separator: " · ")))
        if let oldest = status.oldestRunnable {
            printout.line(
                "oldest runnable: task \(oldest.id) (\(oldest.type)), waiting \(Interval.between(oldest.since, now))"
            )
        } else {
            printout.line("oldest runnable: none")
        }
        if let next = status.nextScheduled {
            printout.line(
                "next scheduled:  task \(next.id) (\(next.type)) at \(display(next.runAt, configuration)) (\(relative(next.runAt, now: now)))"
            )
        }
        if status.expiredLeases > 0 {
            printout.line(
                "expired leases:  \(status.expiredLeases) (their worker died; the next work-once recovers them)")
        }
        if !status.countsByType.isEmpty {
            printout.line("")
            let columns: [TaskState] = [.queued, .awaitingApproval, .running, .done, .dead]
            let rows = status.countsByType.keys.sorted().map { type -> [String] in
                let counts = status.countsByType[type, default: [:]]
                let other = counts.filter { !columns.contains($0.key) }.values.reduce(0, +)
                let declared = configuration.taskType(named: type) == nil ? " (undeclared)" : ""
                return [type + declared] + columns.map { String(counts[$0, default: 0]) } + [String(other)]
            }
            printout.line(table(["TYPE", "QUEUED", "AWAITING", "RUNNING", "DONE", "DEAD", "OTHER"], rows))
        }
        if !status.hosts.isEmpty {
            printout.line("\nhosts (PostgreSQL):")
            printout.line(
                table(
                    ["HOST", "RUNNING", "FINISHED", "LAST SEEN"],
                    status.hosts.map {
                        [
                            Visible.text($0.host), String($0.running), String($0.finished),
                            display($0.lastSeen, configuration),
                        ]
                    }))
        }
        if !status.overrides.isEmpty {
            printout.line("\noverrides in effect ('autonomy overrides remove ID' ends one):")
            for override in status.overrides { printout.line("  " + override.line) }
        }
        if readsOnly == nil {
            printout.line("\nheal: " + HealSummary.line(status, enabled: configuration.heal.enabled))
            for breaker in status.breakers { printout.line("  " + breaker.line) }
        }
        if !status.recentDead.isEmpty {
            printout.line("\ndead tasks (most recent first; 'autonomy tasks retry ID' sends one back):")
            for task in status.recentDead {
                printout.line(
                    "  \(task.id)  \(task.type)  \(display(task.finishedAt, configuration))  \(Visible.text(task.lastError ?? ""))"
                )
            }
        }
    }

    // MARK: - tasks

    private func tasksList(_ call: GateRequest, _ printout: inout Printout) throws {
        let tasks = try store.tasks(matching: try Self.taskFilter(call, source: caller.readsOnly))
        try Self.render(tasks, json: call.json == true, now: clock.now(), loaded: loaded, &printout)
    }

    /// What `tasks list` asks for, checked.
    static func taskFilter(_ call: GateRequest, source: String?) throws -> TaskFilter {
        var state: TaskState?
        if let text = call.state {
            guard let value = TaskState(rawValue: text) else {
                throw CLIFailure(
                    "unknown state \"\(text)\" (known: \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")))",
                    code: .usage)
            }
            state = value
        }
        let limit = call.limit ?? 50
        guard (1...100_000).contains(limit) else { throw CLIFailure("--limit must be from 1 to 100000", code: .usage) }
        return TaskFilter(state: state, type: call.type, source: source, limit: limit)
    }

    /// What `tasks list` prints, whichever store the tasks came from.
    static func render(
        _ tasks: [TaskRecord], json: Bool, now: Int64, loaded: LoadedConfiguration, _ printout: inout Printout
    ) throws {
        if json { return printout.line(try JSONOutput.text(tasks.map { TaskOutput($0) })) }
        guard !tasks.isEmpty else { return printout.line("no tasks") }
        printout.line(
            table(
                ["ID", "STATE", "TYPE", "PRI", "TRIES", "RUN AT", "SUBJECT / LAST ERROR"],
                tasks.map { task in
                    let runAt =
                        task.state == .queued
                        ? relative(task.runAt, now: now) : display(task.updatedAt, loaded.configuration)
                    let note = Visible.text(task.lastError.map { "! " + $0 } ?? task.subject ?? "")
                    return [
                        String(task.id), task.state.rawValue, task.type, String(task.priority), String(task.attempts),
                        runAt, String(note.prefix(80)),
                    ]
                }))
    }

    private func tasksShow(_ call: GateRequest, _ printout: inout Printout) throws {
        guard let id = call.id else { throw CLIFailure("a task id is needed", code: .usage) }
        // A producer learns nothing of another's task, not even that it exists.
        guard let task = try store.task(id: id), caller.readsOnly == nil || task.source == caller.readsOnly else {
            throw QueueError.taskNotFound(id)
        }
        try Self.render(task, ledger: try store.ledger(forTask: id), json: call.json == true, loaded: loaded, &printout)
    }

    /// What `tasks show` prints, whichever store the task came from.
    static func render(
        _ task: TaskRecord, ledger: [LedgerEntry], json: Bool, loaded: LoadedConfiguration,
        _ printout: inout Printout
    ) throws {
        if json { return printout.line(try JSONOutput.text(TaskOutput(task, ledger: ledger))) }
        let configuration = loaded.configuration
        let attemptLimit = task.attemptLimit(configuration.taskType(named: task.type))
        var lines = [
            "task \(task.id)  \(task.type)  \(task.state.rawValue)",
            "priority:  \(task.priority)",
            "attempts:  \(task.attempts) of \(attemptLimit)",
            "run at:    \(display(task.runAt, configuration))",
            "created:   \(display(task.createdAt, configuration))",
        ]
        // What a producer or a handler wrote is shown escaped: it never acts on the terminal.
        if let source = task.source { lines.append("source:    \(Visible.text(source))  (producer-supplied)") }
        if let subject = task.subject { lines.append("subject:   \(Visible.text(subject))  (producer-supplied)") }
        if let key = task.idempotencyKey { lines.append("key:       \(Visible.text(key))") }
        if let finished = task.finishedAt { lines.append("finished:  \(display(finished, configuration))") }
        if let code = task.exitCode { lines.append("exit code: \(code)") }
        if let error = task.lastError { lines.append("last error: \(Visible.lines(error))") }
        // The hash of what is shown; a payload that is not the one enqueued (its row rewritten by
        // hand) says so. A pruned task's payload is gone, its hash kept: said so, not shown empty.
        if task.payloadPruned, task.payloadSHA256 != "".sha256Hex {
            lines.append("payload:   pruned by retention (enqueued with sha256 \(task.payloadSHA256))")
        } else {
            let shown = task.payload.sha256Hex
            lines.append(
                "payload (\(task.payload.utf8.count) bytes, sha256 \(shown)):"
                    + (shown == task.payloadSHA256
                        ? "" : " ALTERED: enqueued with sha256 \(task.payloadSHA256), changed outside autonomy"))
            lines.append(indent(Visible.lines((try? JSONValue.parse(task.payload))?.prettyText ?? task.payload)))
        }
        if let result = task.result {
            lines.append("result:")
            lines.append(indent(Visible.lines((try? JSONValue.parse(result))?.prettyText ?? result)))
        }
        if let tail = task.stderrTail, !tail.isEmpty {
            lines.append("stderr (tail):")
            lines.append(indent(Visible.lines(tail)))
        }
        lines.append("ledger:")
        for entry in ledger {
            let duration = entry.durationMs.map { " \(Interval(milliseconds: $0))" } ?? ""
            let attempt = entry.attempt.map { " #\($0)" } ?? ""
            let detail = entry.detail.map { " " + $0.canonicalText } ?? ""
            lines.append(
                "  \(display(entry.at, configuration))  \(entry.event)\(attempt)\(duration)\(Visible.text(detail))")
        }
        printout.line(lines.joined(separator: "\n"))
    }

    private static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }

    // MARK: - approvals and decisions

    private func approvals(_ call: GateRequest, _ printout: inout Printout) throws {
        let now = clock.now()
        let pending = try store.pendingApprovals(now: now, source: caller.readsOnly)
        try Self.render(pending, call, now: now, loaded: loaded, &printout)
    }

    /// What `approvals` (or `approvals show ID`) prints, whichever store the requests came from.
    static func render(
        _ pending: [PendingApproval], _ call: GateRequest, now: Int64, loaded: LoadedConfiguration,
        _ printout: inout Printout
    ) throws {
        if let id = call.id {
            // A producer learns nothing of another's request, not even that it exists.
            guard let item = pending.first(where: { $0.approval.id == id }) else {
                throw ApprovalError.notPending(id)
            }
            if call.json == true { return printout.line(try JSONOutput.text(PendingApprovalOutput(item, now: now))) }
            return printout.line(review(item, now: now, loaded: loaded))
        }
        if call.json == true {
            return printout.line(try JSONOutput.text(pending.map { PendingApprovalOutput($0, now: now) }))
        }
        guard !pending.isEmpty else { return printout.line("no approval requests are waiting") }
        printout.line(
            table(
                ["ID", "TASK", "TYPE", "SOURCE", "SUBJECT", "AGE", "EXPIRES", "SHA256", "PAYLOAD"],
                pending.map { item in
                    [
                        String(item.approval.id), String(item.task.id), item.task.type,
                        Visible.text(item.task.source ?? "-"),
                        Visible.text(String((item.task.subject ?? "-").prefix(40))),
                        Interval.between(item.approval.requestedAt, now).description,
                        relative(item.approval.expiresAt, now: now), String(item.shownPayloadSHA256.prefix(12)),
                        Visible.text(String(item.task.payloadSummary.prefix(60))),
                    ]
                }))
        printout.line(
            "\nwhy: " + pending.map { "\($0.approval.id): \($0.approval.reason)" }.joined(separator: "\n     "))
        printout.line(
            "decide: autonomy approve ID [--sha256 PREFIX] [--note TEXT] | autonomy reject ID --reason TEXT"
                + " (approve shows the whole payload before it signs)")
    }

    /// One pending request in full: everything an operator needs to decide, escaped.
    private static func review(_ item: PendingApproval, now: Int64, loaded: LoadedConfiguration) -> String {
        let (approval, task) = (item.approval, item.task)
        let configuration = loaded.configuration
        var lines = [
            "approval request \(approval.id): task \(task.id)  \(task.type)  awaiting approval",
            "why:        \(Visible.text(approval.reason))",
            "requested:  \(display(approval.requestedAt, configuration)) (\(relative(approval.requestedAt, now: now)))",
            "expires:    \(display(approval.expiresAt, configuration)) (\(relative(approval.expiresAt, now: now)))",
            "runs at:    \(display(task.runAt, configuration)) at the earliest, once approved",
            "source:     \(Visible.text(task.source ?? "-"))  (producer-supplied)",
            "subject:    \(Visible.text(task.subject ?? "-"))  (producer-supplied)",
            "payload:    \(task.payload.utf8.count) bytes, sha256 \(item.shownPayloadSHA256)",
        ]
        if !item.payloadIsIntact {
            lines.append("ALTERED:    \(ApprovalError.payloadAltered(id: approval.id))")
        }
        lines += Visible.lines((try? JSONValue.parse(task.payload))?.prettyText ?? task.payload)
            .split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
        lines.append(
            "decide:     autonomy approve \(approval.id) --sha256 \(item.shownPayloadSHA256.prefix(12)) | autonomy reject \(approval.id) --reason TEXT"
        )
        return lines.joined(separator: "\n")
    }

    static func decision(_ call: GateRequest) throws -> Decision {
        switch call.decision {
        case "approve": return .approve(note: call.note)
        case "reject": return .reject(reason: call.note ?? "")
        default: throw CLIFailure("a decision is approve or reject", code: .usage)
        }
    }

    /// The statement to sign, and what it is about, shown in full before anything is signed.
    private func prepareDecision(_ call: GateRequest) throws -> (statement: String, review: String) {
        let (id, key) = try Self.signerKey(call)
        let statement = try store.decisionStatement(
            approvalID: id, try Self.decision(call), signerKey: key,
            verifier: DecisionVerifier(settings: loaded.configuration.approvals),
            settings: loaded.configuration.approvals, now: clock.now())
        guard let task = try store.task(id: statement.taskID) else { throw ApprovalError.notFound(id) }
        // Read apart from the statement: the payload shown must be the one whose hash is signed.
        guard task.payload.sha256Hex == statement.payloadSHA256 else {
            throw ApprovalError.payloadAltered(id: statement.approvalID)
        }
        return Self.prepared(statement, task: task, key: key, loaded: loaded)
    }

    /// The request's id and the signer's key a `prepare` call names.
    static func signerKey(_ call: GateRequest) throws -> (Int64, SSHPublicKey) {
        guard let id = call.id, let keyText = call.publicKey else {
            throw CLIFailure("a decision needs the request's id and the signer's public key", code: .usage)
        }
        let key: SSHPublicKey
        do {
            key = try SSHPublicKey(openSSH: keyText)
        } catch {
            throw CLIFailure("the signer's public key is not readable: \(error)", code: .usage)
        }
        return (id, key)
    }

    /// The statement to sign and, shown in full before anything is signed, what it is about.
    static func prepared(
        _ statement: DecisionStatement, task: TaskRecord, key: SSHPublicKey, loaded: LoadedConfiguration
    )
        -> (statement: String, review: String)
    {
        let id = statement.approvalID
        var review = [
            "signing as \(statement.principal) (\(key.fingerprint)): \(statement.decision.rawValue) request \(id)",
            "  task \(task.id)  \(task.type)  from \(task.source ?? "-")"
                + (task.subject.map { "  subject: \(Visible.text($0))" } ?? ""),
            "  attempt \(statement.attempt), to start by \(display(statement.validUntil, loaded.configuration))",
            "  payload (sha256 \(statement.payloadSHA256)):",
        ]
        let payload = (try? JSONValue.parse(task.payload))?.prettyText ?? task.payload
        review += payload.split(separator: "\n", omittingEmptySubsequences: false).map {
            "    " + Visible.text(String($0))
        }
        return (statement.text, review.joined(separator: "\n") + "\n")
    }

    private func decide(_ call: GateRequest, _ printout: inout Printout) throws {
        let approval = try store.decide(
            try Self.signed(call), verifier: DecisionVerifier(settings: loaded.configuration.approvals),
            channel: .cli, now: clock.now())
        Self.report(approval, &printout)
    }

    /// The signed decision a `decide` call carries.
    static func signed(_ call: GateRequest) throws -> SignedDecision {
        guard let statement = call.statement, let signature = call.signature else {
            throw CLIFailure("a decision needs its signed statement and signature", code: .usage)
        }
        return SignedDecision(statement: statement, signature: signature)
    }

    /// What a recorded decision prints.
    static func report(_ approval: ApprovalRecord, _ printout: inout Printout) {
        let by = approval.decidedBy ?? "?"
        printout.line(
            approval.state == .approved
                ? "approval \(approval.id) approved by \(by): task \(approval.taskID) is queued to run"
                : "approval \(approval.id) rejected by \(by): task \(approval.taskID) will not run")
    }
}

extension GateRequest {
    /// The enqueue request a call describes, its delay and time checked.
    func enqueueRequest() throws -> EnqueueRequest {
        var request = EnqueueRequest(
            type: type ?? "", priority: priority, maxAttempts: maxAttempts, key: key, source: source,
            subject: subject)
        request.payload = payload ?? "{}"
        if let payloadBytes { try request.setPayload(json: payloadBytes) }
        if let delay {
            guard let interval = Interval(parsing: delay) else {
                throw CLIFailure("--delay \"\(delay)\" is not a duration such as 30s, 10m, 24h or 7d", code: .badInput)
            }
            request.delay = interval
        }
        if let runAt {
            guard let time = Timestamp.parse(runAt) else {
                throw CLIFailure("--run-at \"\(runAt)\" is not a time such as 2026-12-01T09:00:00Z", code: .badInput)
            }
            request.runAt = time
        }
        return request
    }
}

/// The queue requests on a PostgreSQL database, for a caller that reached the database itself or
/// came through the gate: the same verbs, words, exit codes and producer rights as `QueueService`
/// (its renderers, `Caller`), the times the database's.
struct PostgresQueueService {
    var loaded: LoadedConfiguration
    var store: PostgresStore
    var caller: Caller = .local

    /// Answers one request; after an enqueue, with the follow-up that sends the new tasks' alerts.
    func answer(_ request: GateRequest) async -> (GateAnswer, QueueService.FollowUp?) {
        var printout = Printout()
        var followUp: QueueService.FollowUp?
        do {
            switch request.verb {
            case .enqueue:
                let created = try await enqueue(request, &printout)
                if !loaded.configuration.notify.channels.isEmpty, !created.isEmpty {
                    let delivery = AlertDelivery(store: store, configuration: loaded.configuration)
                    followUp = { await delivery.deliverNow(tasks: Set(created)) }
                }
            case .status:
                let (status, now) = try await store.status(source: caller.readsOnly)
                // A producer through the gate learns that it is PostgreSQL, not where or as whom.
                let database = caller.producer == nil ? store.url.description : "PostgreSQL (through the gate)"
                try QueueService.render(
                    status, now: now, database: database, loaded: loaded, readsOnly: caller.readsOnly,
                    json: request.json == true, &printout)
            case .tasksList:
                let tasks = try await store.tasks(
                    matching: try QueueService.taskFilter(request, source: caller.readsOnly))
                try QueueService.render(
                    tasks, json: request.json == true, now: try await store.databaseNow(), loaded: loaded, &printout)
            case .tasksShow:
                guard let id = request.id else { throw CLIFailure("a task id is needed", code: .usage) }
                // Another producer's task is as absent as a missing one.
                guard let task = try await store.task(id: id),
                    caller.readsOnly == nil || task.source == caller.readsOnly
                else { throw QueueError.taskNotFound(id) }
                try QueueService.render(
                    task, ledger: try await store.ledger(forTask: id), json: request.json == true, loaded: loaded,
                    &printout)
            case .approvals:
                let (pending, now) = try await store.pendingApprovals(source: caller.readsOnly)
                try QueueService.render(pending, request, now: now, loaded: loaded, &printout)
            case .prepareDecision, .decide:
                // Deciding means seeing any request: only an operator's account (read_all) may, and
                // its decision still counts only by its signature.
                if let producer = caller.readsOnly {
                    throw TrustError.verbNotAllowed(producer: producer, verb: "decide")
                }
                return try await decide(request, &printout)
            }
        } catch {
            let (code, message) = failure(error)
            printout.note("error: \(message)")
            return (GateAnswer(exit: code.rawValue, stdout: printout.stdout, stderr: printout.stderr), nil)
        }
        return (GateAnswer(exit: 0, stdout: printout.stdout, stderr: printout.stderr), followUp)
    }

    /// Prepares the statement an operator signs, or records a signed decision.
    private func decide(_ request: GateRequest, _ printout: inout Printout) async throws
        -> (GateAnswer, QueueService.FollowUp?)
    {
        switch request.verb {
        case .prepareDecision:
            let (id, key) = try QueueService.signerKey(request)
            let verifier = DecisionVerifier(settings: loaded.configuration.approvals)
            let (statement, task) = try await store.decisionStatement(
                approvalID: id, try QueueService.decision(request), signerKey: key, verifier: verifier,
                settings: loaded.configuration.approvals)
            let prepared = QueueService.prepared(statement, task: task, key: key, loaded: loaded)
            printout.stderr = prepared.review
            return (
                GateAnswer(
                    exit: 0, stdout: printout.stdout, stderr: printout.stderr, statement: prepared.statement), nil
            )
        case .decide:
            let approval = try await store.decide(
                try QueueService.signed(request),
                verifier: DecisionVerifier(settings: loaded.configuration.approvals),
                channel: .cli)
            QueueService.report(approval, &printout)
        default:
            break
        }
        return (GateAnswer(exit: 0, stdout: printout.stdout, stderr: printout.stderr), nil)
    }

    /// Enqueues, prints the ids, and returns those of the tasks it created.
    private func enqueue(_ call: GateRequest, _ printout: inout Printout) async throws -> [Int64] {
        let configuration = loaded.configuration
        guard let batch = call.batch else {
            let outcome = try await store.enqueue(
                try call.enqueueRequest(), configuration: configuration, producer: caller.producer)
            try QueueService.report(outcome, call, &printout)
            if case .created(let task) = outcome { return [task.id] }
            return []
        }
        let lines = try EnqueueRequest.parseBatchLines(batch)
        let outcomes = try await store.enqueueBatch(
            lines.map(\.request), lines: lines.map(\.line), configuration: configuration, producer: caller.producer)
        if call.json == true {
            printout.line(try JSONOutput.text(outcomes.map { TaskOutput($0.task) }))
        } else {
            for outcome in outcomes { printout.stdout += "\(outcome.task.id)\n" }
        }
        let existing = outcomes.filter { if case .existing = $0 { return true } else { return false } }.count
        if existing > 0 {
            printout.note(
                "note: \(existing) of \(outcomes.count) tasks already existed under their keys; \(outcomes.count - existing) enqueued"
            )
        }
        return outcomes.compactMap { if case .created(let task) = $0 { return task.id } else { return nil } }
    }
}
