import GRDB
import Synchronization

/// Where a task is in its life cycle. `TaskTransition.all` says how it moves between them.
public enum TaskState: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case queued
    case awaitingApproval = "awaiting_approval"
    case running
    case verifying
    case done
    case dead
    case cancelled
    case rejected
    case expired
    case blocked

    /// A final state is left only by an operator's act (`tasks retry`, `verify`).
    public var isFinal: Bool {
        switch self {
        case .done, .dead, .cancelled, .rejected, .expired, .blocked: return true
        case .queued, .awaitingApproval, .running, .verifying: return false
        }
    }

    public static let finalStates = allCases.filter(\.isFinal)

    /// States a task may be cancelled from: it has not started running.
    public var isCancellable: Bool { TaskTransition.cancel.from.contains(self) }

    /// A worker holds a lease on a task in these states.
    public static let leased: [TaskState] = [.running, .verifying]

    /// `'a', 'b'` for an SQL `IN (…)` list (the names are fixed identifiers, never user text).
    static func sqlList(_ states: [TaskState]) -> String {
        states.map { "'\($0.rawValue)'" }.joinedPlainly(separator: ", ")
    }
}

/// One move of the task life cycle: from one of `from` to `to`, recorded as `event`. The table
/// `all` is the whole life cycle; `Database.transition` refuses anything else, and the README's
/// table is checked against it by a test.
public struct TaskTransition: Sendable, Hashable {
    public let name: String
    public let from: [TaskState]
    public let to: TaskState
    public let event: LedgerEvent
    /// The alert the move queues, if any.
    public let alert: NotificationEvent?
    /// When it happens, in a few words.
    public let when: String

    init(
        _ name: String, from: [TaskState], to: TaskState, event: LedgerEvent, alert: NotificationEvent? = nil,
        when: String
    ) {
        (self.name, self.from, self.to, self.event, self.alert, self.when) = (name, from, to, event, alert, when)
    }

    public static let hold = TaskTransition(
        "hold", from: [.queued], to: .awaitingApproval, event: .held,
        when: "a claim finds a dangerous payload without a valid signed approval")
    public static let block = TaskTransition(
        "block", from: [.queued], to: .blocked, event: .blocked,
        when: "a claim finds its type undeclared or its payload denied")
    public static let claim = TaskTransition(
        "claim", from: [.queued], to: .running, event: .claimed, when: "a worker takes it under a lease")
    public static let cancel = TaskTransition(
        "cancel", from: [.queued, .awaitingApproval], to: .cancelled, event: .cancelled,
        when: "an operator or its producer cancels it before it runs")
    public static let approve = TaskTransition(
        "approve", from: [.awaitingApproval], to: .queued, event: .approvalDecided,
        when: "an operator approves its payload, signed")
    public static let reject = TaskTransition(
        "reject", from: [.awaitingApproval], to: .rejected, event: .approvalDecided,
        when: "an operator rejects it, signed")
    public static let expire = TaskTransition(
        "expire", from: [.awaitingApproval], to: .expired, event: .approvalExpired,
        when: "nobody decided within the type's approval window")
    public static let verify = TaskTransition(
        "verify", from: [.running, .verifying], to: .verifying, event: .verifying,
        when: "its handler ended, or its worker died: the evidence is checked")
    public static let succeed = TaskTransition(
        "succeed", from: [.running, .verifying], to: .done, event: .done,
        when: "its verifiers found the evidence (or, without verifiers, it exited 0)")
    public static let retryLater = TaskTransition(
        "retry later", from: [.running, .verifying], to: .queued, event: .retryScheduled,
        when: "the attempt failed and attempts are left: back after the backoff")
    public static let die = TaskTransition(
        "die", from: [.running, .verifying], to: .dead, event: .dead, alert: .taskDead,
        when: "the attempt failed and no attempts are left")
    public static let giveBack = TaskTransition(
        "defer", from: [.running], to: .queued, event: .deferred,
        when:
            "it cannot run now (the day's model budget is spent, or the worker stopped or cannot write its payload file): it waits, the attempt not counted"
    )
    public static let postpone = TaskTransition(
        "postpone", from: [.queued], to: .queued, event: .healSkipped,
        when: "a fix proposal heal may apply on its own meets its rate limit, backoff or systemic stop: later")
    public static let retry = TaskTransition(
        "retry", from: [.dead], to: .queued, event: .retried, when: "an operator runs `tasks retry`")
    public static let foundDone = TaskTransition(
        "found done", from: [.queued, .dead], to: .done, event: .done,
        when: "`verify` finds a failed task's evidence passes after all")
    public static let reopen = TaskTransition(
        "reopen", from: [.done], to: .dead, event: .dead, alert: .taskDead,
        when: "`verify --reopen` finds a done task's evidence fails")

    /// The whole life cycle. A task enters it at `enqueue`, as `queued` (or `awaiting_approval`
    /// when its type is dangerous).
    public static let all: [TaskTransition] = [
        .hold, .block, .claim, .cancel, .approve, .reject, .expire, .verify, .succeed, .retryLater, .die,
        .giveBack, .postpone, .retry, .foundDone, .reopen,
    ]

    /// The table as Markdown, one row per (from, to, event): what the README shows.
    public static var markdownTable: String {
        var lines = ["| from | to | ledger event | when |", "|---|---|---|---|"]
        lines.append("| (new) | `queued` or `awaiting_approval` | `enqueued` | `enqueue`; dangerous types wait |")
        for transition in all {
            let from = transition.from.map { "`\($0.rawValue)`" }.joined(separator: ", ")
            lines.append(
                "| \(from) | `\(transition.to.rawValue)` | `\(transition.event.rawValue)` | \(transition.when) |")
        }
        return lines.joined(separator: "\n")
    }
}

/// What a transition writes besides the state, the time and the columns its target implies.
enum TaskChange {
    case lastError(String?)
    case runAt(Int64)
    /// Takes a lease for `token` until `expiresAt`.
    case lease(token: String, expiresAt: Int64)
    /// The handler's outcome, kept with the task.
    case outcome(exitCode: Int?, result: String?, stderrTail: String?)
    /// The attempt the task is moving out of does not count (a deferral).
    case uncountAttempt
    /// A fresh start: no attempts, no outcome, no error.
    case freshStart
    /// Keeps (or sets) when the task finished, instead of stamping now.
    case finishedAt(Int64?)
}

/// One column a transition writes: a value to bind, or an expression over the row's old values.
/// Both engines build their `UPDATE` from the same list (`TaskTransition.assignments`).
struct TransitionAssignment {
    enum Value {
        case integer(Int64?)
        case text(String?)
        case expression(String)
    }
    let column: String
    let value: Value

    /// The expression, or nil for a bound value.
    var expression: String? {
        if case .expression(let expression) = value { return expression }
        return nil
    }

    /// The right-hand side, with `placeholder` where a value is bound.
    func sql(placeholder: String) -> String { expression ?? placeholder }

    /// The value SQLite binds; nil for an expression.
    var boundValue: BoundValue? {
        switch value {
        case .integer(let number): return .integer(number)
        case .text(let text): return .text(text)
        case .expression: return nil
        }
    }
}

extension TaskTransition {
    /// The columns this move writes, with `changes` on top: a claim counts the attempt, takes the
    /// lease and clears the last outcome; a final state stamps `finished_at`; leaving the leased
    /// states drops the lease; `done` clears the error.
    func assignments(_ changes: [TaskChange], at now: Int64) -> [TransitionAssignment] {
        var assignments: [TransitionAssignment] = []
        func set(_ column: String, _ value: TransitionAssignment.Value) {
            assignments.removeAll { $0.column == column }
            assignments.append(TransitionAssignment(column: column, value: value))
        }
        set("state", .text(to.rawValue))
        set("updated_at", .integer(now))
        if to == .running {
            set("attempts", .expression("attempts + 1"))
            set("started_at", .integer(now))
            set("result", .text(nil))
            set("exit_code", .integer(nil))
            set("stderr_tail", .text(nil))
        }
        if !TaskState.leased.contains(to) {
            set("lease_token", .text(nil))
            set("lease_expires_at", .integer(nil))
        }
        if to.isFinal { set("finished_at", .integer(now)) }
        if to == .queued { set("finished_at", .integer(nil)) }
        if to == .done { set("last_error", .text(nil)) }
        for change in changes {
            switch change {
            case .lastError(let text): set("last_error", .text(text))
            case .runAt(let time): set("run_at", .integer(time))
            case .lease(let token, let expiresAt):
                set("lease_token", .text(token))
                set("lease_expires_at", .integer(expiresAt))
            case .outcome(let exitCode, let result, let stderrTail):
                set("exit_code", .integer(exitCode.map(Int64.init)))
                set("result", .text(result))
                set("stderr_tail", .text(stderrTail))
            case .uncountAttempt: set("attempts", .expression("attempts - 1"))
            case .freshStart:
                set("attempts", .integer(0))
                for column in ["result", "stderr_tail", "last_error"] { set(column, .text(nil)) }
                set("exit_code", .integer(nil))
            case .finishedAt(let time): set("finished_at", .integer(time))
            }
        }
        return assignments
    }
}

/// The SQLite `UPDATE` of one transition, made once per shape (which columns, which of them bound):
/// a draining worker runs the same two or three for every task.
///
/// No `RETURNING`: SQLite keeps the rows an `UPDATE … RETURNING` returns in a temporary b-tree of
/// its own, which cost an `UPDATE` of one row three times its instructions (a page cleared and the
/// b-tree made and dropped for every statement). What a transition needs back is read by the row's
/// id after it, in the same transaction.
enum TransitionSQL {
    /// The columns and expressions are literals: the key costs no text to build.
    private struct Shape: Hashable {
        let transition: String
        let columns: [String]
        let expressions: [String?]
        let leased: Bool

        /// The transition and how many columns tell the shapes apart; equality compares the rest
        /// (hashing every column's name cost more than the lookup saved).
        func hash(into hasher: inout Hasher) {
            hasher.combine(transition)
            hasher.combine(columns.count)
            hasher.combine(leased)
        }
    }
    private static let made = Mutex<[Shape: String]>([:])

    static func update(_ transition: TaskTransition, _ assignments: [TransitionAssignment], leased: Bool) -> String {
        let shape = Shape(
            transition: transition.name, columns: assignments.map(\.column),
            expressions: assignments.map(\.expression), leased: leased)
        if let sql = made.withLock({ $0[shape] }) { return sql }
        var condition = "id = ? AND state IN (\(TaskState.sqlList(transition.from)))"
        if leased { condition += " AND lease_token = ?" }
        let sql = """
            UPDATE tasks SET \(assignments.map { "\($0.column) = \($0.sql(placeholder: "?"))" }.joinedPlainly(separator: ", "))
            WHERE \(condition)
            """
        made.withLock { $0[shape] = sql }
        return sql
    }

    /// A task's type by its id, for the ledger row of a move whose caller did not know it.
    static let type = "SELECT type FROM tasks WHERE id = ?"
}

/// A transition that matched no row: the task was not where the caller believed it was.
public struct TransitionRefused: Error, Sendable, CustomStringConvertible {
    public var taskID: Int64
    public var transition: String
    public var expected: [TaskState]
    public var found: TaskState?

    public var description: String {
        let now = found.map { "is \($0.rawValue)" } ?? "does not exist"
        let wanted = expected.map(\.rawValue).joined(separator: " or ")
        return
            "task \(taskID) \(now), not \(wanted): it cannot \(transition) (another process moved it first; try again)"
    }
}

/// A transition that queues an alert was asked for without the alert settings: a caller's bug,
/// refused (the whole transaction with it) rather than dropping the alert.
struct MissingAlertSettings: Error, CustomStringConvertible {
    var transition: String
    var description: String { "the \(transition) transition needs the alert settings (a bug: please report it)" }
}

extension Database {
    /// Moves a task along one edge of the life cycle, in the caller's transaction: the state
    /// check is in the `UPDATE` itself, the ledger row and the alert the move implies are written
    /// with it, and a task that is not in a `from` state (or, with `lease`, not held under that
    /// lease) makes it throw `TransitionRefused` with nothing changed.
    ///
    /// The columns the target implies are set here, once: a claim counts the attempt, takes the
    /// lease and clears the last outcome; a final state stamps `finished_at`; leaving the leased
    /// states drops the lease; `done` clears the error.
    ///
    /// `type` is the task's type when the caller has the task at hand (a type never changes): the
    /// ledger row needs it, and it is read back otherwise.
    func transition(
        _ taskID: Int64, _ transition: TaskTransition, at now: Int64, lease: String? = nil,
        changing changes: [TaskChange] = [], attempt: Int? = nil, durationMs: Int64? = nil,
        detail: JSONValue? = nil, notes: [String: String?] = [:], notify: NotifySettings? = nil, type: String? = nil
    ) throws {
        try move(taskID, transition, at: now, lease: lease, changing: changes)
        let type = try type ?? moved(TransitionSQL.type, taskID, transition) { try $0.text(0) }
        try record(
            transition, taskID, type: type, at: now, attempt: attempt, durationMs: durationMs, detail: detail,
            notes: notes, notify: notify)
    }

    /// The same move, returning the task as it is after it: for a caller that goes on with it.
    func transitionReturningTask(
        _ taskID: Int64, _ transition: TaskTransition, at now: Int64, lease: String? = nil,
        changing changes: [TaskChange] = [], attempt: Int? = nil, durationMs: Int64? = nil,
        detail: JSONValue? = nil, notes: [String: String?] = [:], notify: NotifySettings? = nil
    ) throws -> TaskRecord {
        try move(taskID, transition, at: now, lease: lease, changing: changes)
        let task = try moved(TaskRecord.byID, taskID, transition, TaskRecord.init(columns:))
        try record(
            transition, taskID, type: task.type, at: now, attempt: attempt, durationMs: durationMs, detail: detail,
            notes: notes, notify: notify)
        return task
    }

    /// The `UPDATE`, which checks the state (and the lease) itself; `TransitionRefused` when it
    /// matched no row.
    private func move(
        _ taskID: Int64, _ transition: TaskTransition, at now: Int64, lease: String?, changing changes: [TaskChange]
    ) throws {
        let assignments = transition.assignments(changes, at: now)
        var values = assignments.compactMap(\.boundValue)
        values.append(.integer(taskID))
        if let lease { values.append(.text(lease)) }
        try cachedStatement(sql: TransitionSQL.update(transition, assignments, leased: lease != nil)).run(
            binding: values)
        guard changesCount == 1 else {
            throw TransitionRefused(
                taskID: taskID, transition: transition.name, expected: transition.from,
                found: try TaskState.fetchOne(self, sql: "SELECT state FROM tasks WHERE id = ?", arguments: [taskID]))
        }
    }

    /// What `sql` reads of the row a move just wrote, in this transaction (so it is there).
    private func moved<T>(
        _ sql: String, _ taskID: Int64, _ transition: TaskTransition, _ read: (StoredColumns) throws -> T
    ) throws -> T {
        guard let value = try cachedStatement(sql: sql).first(binding: [.integer(taskID)], read) else {
            // Not a refusal: the row was moved. Nothing deletes a task inside a write transaction.
            throw DatabaseError(
                resultCode: .SQLITE_INTERNAL, message: "task \(taskID) was gone right after its \(transition.name)")
        }
        return value
    }

    /// The ledger row and the alert a move implies.
    private func record(
        _ transition: TaskTransition, _ taskID: Int64, type: String, at now: Int64, attempt: Int?, durationMs: Int64?,
        detail: JSONValue?, notes: [String: String?], notify: NotifySettings?
    ) throws {
        try appendLedger(
            transition.event, at: now, taskID: taskID, type: type, attempt: attempt, durationMs: durationMs,
            detail: detail, notes: notes)
        if let alert = transition.alert {
            guard let notify else { throw MissingAlertSettings(transition: transition.name) }
            try queueNotification(alert, taskID: taskID, approvalID: nil, notify: notify, now: now)
        }
    }
}
