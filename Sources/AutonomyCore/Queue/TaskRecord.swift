import Foundation
import GRDB

/// One row of the queue.
public struct TaskRecord: Sendable, Equatable {
    public var id: Int64
    public var type: String
    public var state: TaskState
    public var priority: Int
    /// Not before this time (epoch ms).
    public var runAt: Int64
    /// The canonical JSON text, exactly as hashed.
    public var payload: String
    public var payloadSHA256: String
    public var idempotencyKey: String?
    public var source: String?
    public var subject: String?
    /// Attempts started so far.
    public var attempts: Int
    /// This task's own limit; nil means the type's retry policy decides.
    public var maxAttempts: Int?
    public var leaseToken: String?
    public var leaseExpiresAt: Int64?
    public var createdAt: Int64
    public var updatedAt: Int64
    public var startedAt: Int64?
    public var finishedAt: Int64?
    public var exitCode: Int?
    /// The handler's result: JSON text when stdout parsed as JSON, else a JSON string.
    public var result: String?
    public var lastError: String?
    public var stderrTail: String?

    /// Retention emptied this finished task's payload (its hash is kept): there is nothing left to
    /// run again. A payload is never enqueued empty, and a trigger holds every unfinished one.
    public var payloadPruned: Bool { payload.isEmpty && state.isFinal }

    /// A task that exists only in memory, being verified: what `verify --dry-run` checks.
    public static func unsaved(type: String, payload: String, result: String?, now: Int64) -> TaskRecord {
        TaskRecord(
            id: 0, type: type, state: .verifying, priority: 0, runAt: now, payload: payload,
            payloadSHA256: payload.sha256Hex, idempotencyKey: nil, source: "verify --dry-run", subject: nil,
            attempts: 1, maxAttempts: nil, leaseToken: nil, leaseExpiresAt: nil, createdAt: now, updatedAt: now,
            startedAt: now, finishedAt: nil, exitCode: 0, result: result, lastError: nil, stderrTail: nil)
    }

    /// The limit that applies: the task's own, else its type's, else the default policy's.
    public func attemptLimit(_ type: TaskType?) -> Int {
        maxAttempts ?? type?.effectiveMaxAttempts ?? RetryPolicy().maxAttempts
    }
}

extension TaskRecord: FetchableRecord {
    /// Reads a row by column name; a value the column should not hold (an unknown state) throws an
    /// error naming the column and the value. Written out rather than `Decodable`: every claim and
    /// transition reads a row, and `bench/compare.py` measured the synthesized decoder slower.
    public init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        type = try row.decode(forColumn: "type")
        state = try row.decode(forColumn: "state")
        priority = try row.decode(forColumn: "priority")
        runAt = try row.decode(forColumn: "run_at")
        payload = try row.decode(forColumn: "payload")
        payloadSHA256 = try row.decode(forColumn: "payload_sha256")
        idempotencyKey = try row.decode(forColumn: "idempotency_key")
        source = try row.decode(forColumn: "source")
        subject = try row.decode(forColumn: "subject")
        attempts = try row.decode(forColumn: "attempts")
        maxAttempts = try row.decode(forColumn: "max_attempts")
        leaseToken = try row.decode(forColumn: "lease_token")
        leaseExpiresAt = try row.decode(forColumn: "lease_expires_at")
        createdAt = try row.decode(forColumn: "created_at")
        updatedAt = try row.decode(forColumn: "updated_at")
        startedAt = try row.decode(forColumn: "started_at")
        finishedAt = try row.decode(forColumn: "finished_at")
        exitCode = try row.decode(forColumn: "exit_code")
        result = try row.decode(forColumn: "result")
        lastError = try row.decode(forColumn: "last_error")
        stderrTail = try row.decode(forColumn: "stderr_tail")
    }
}

extension TaskRecord {
    /// Reads the current row of a statement that selects `TaskRecord.columns`, in their order, by
    /// index: what every claim and transition reads (see `Statement.first(binding:_:)`).
    init(columns row: StoredColumns) throws {
        id = try row.integer(0)
        type = try row.text(1)
        let stateText = try row.text(2)
        guard let state = TaskState(rawValue: stateText) else { throw row.unknown(2, stateText) }
        self.state = state
        priority = try row.int(3)
        runAt = try row.integer(4)
        payload = try row.text(5)
        payloadSHA256 = try row.text(6)
        idempotencyKey = try row.optionalText(7)
        source = try row.optionalText(8)
        subject = try row.optionalText(9)
        attempts = try row.int(10)
        maxAttempts = try row.optionalInt(11)
        leaseToken = try row.optionalText(12)
        leaseExpiresAt = try row.optionalInteger(13)
        createdAt = try row.integer(14)
        updatedAt = try row.integer(15)
        startedAt = try row.optionalInteger(16)
        finishedAt = try row.optionalInteger(17)
        exitCode = try row.optionalInt(18)
        result = try row.optionalText(19)
        lastError = try row.optionalText(20)
        stderrTail = try row.optionalText(21)
    }

    /// The columns a `TaskRecord` is read from. Queries name them instead of `*`, so new columns
    /// change nothing.
    static let columns = CodingKeys.allCases.map { $0.rawValue }.joinedPlainly(separator: ", ")

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, type, state, priority
        case runAt = "run_at"
        case payload
        case payloadSHA256 = "payload_sha256"
        case idempotencyKey = "idempotency_key"
        case source, subject, attempts
        case maxAttempts = "max_attempts"
        case leaseToken = "lease_token"
        case leaseExpiresAt = "lease_expires_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case exitCode = "exit_code"
        case result
        case lastError = "last_error"
        case stderrTail = "stderr_tail"
    }
}

/// A task as `--json` shows it: times in ISO 8601 UTC, payload and result as JSON.
public struct TaskOutput: Encodable, Sendable {
    public var id: Int64
    public var type: String
    public var state: TaskState
    public var priority: Int
    public var runAt: ISOTime
    public var payload: JSONValue
    public var payloadSHA256: String
    @Nullable public var key: String?
    @Nullable public var source: String?
    @Nullable public var subject: String?
    public var attempts: Int
    @Nullable public var maxAttempts: Int?
    @Nullable public var leaseExpiresAt: ISOTime?
    public var createdAt: ISOTime
    public var updatedAt: ISOTime
    @Nullable public var startedAt: ISOTime?
    @Nullable public var finishedAt: ISOTime?
    @Nullable public var exitCode: Int?
    @Nullable public var result: JSONValue?
    @Nullable public var lastError: String?
    @Nullable public var stderrTail: String?
    /// Its ledger rows, oldest first (`tasks show` only).
    public var ledger: [LedgerEntryOutput]?

    enum CodingKeys: String, CodingKey {
        case id, type, state, priority
        case runAt = "run_at"
        case payload
        case payloadSHA256 = "payload_sha256"
        case key, source, subject, attempts
        case maxAttempts = "max_attempts"
        case leaseExpiresAt = "lease_expires_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case exitCode = "exit_code"
        case result
        case lastError = "last_error"
        case stderrTail = "stderr_tail"
        case ledger
    }

    public init(_ task: TaskRecord, ledger: [LedgerEntry]? = nil) {
        (id, type, state, priority, runAt) = (task.id, task.type, task.state, task.priority, ISOTime(task.runAt))
        (payload, payloadSHA256) = (.shown(task.payload), task.payloadSHA256)
        (key, source, subject) = (task.idempotencyKey, task.source, task.subject)
        (attempts, maxAttempts, leaseExpiresAt) = (task.attempts, task.maxAttempts, ISOTime(task.leaseExpiresAt))
        (createdAt, updatedAt) = (ISOTime(task.createdAt), ISOTime(task.updatedAt))
        (startedAt, finishedAt, exitCode) = (ISOTime(task.startedAt), ISOTime(task.finishedAt), task.exitCode)
        (result, lastError, stderrTail) = (task.result.map(JSONValue.shown), task.lastError, task.stderrTail)
        self.ledger = ledger?.map(LedgerEntryOutput.init)
    }
}

extension TaskRecord {
    /// One task's row by its id, every column in `columns`' order.
    static let byID = "SELECT \(columns) FROM tasks WHERE id = ?"
}

extension Database {
    /// One task by id, inside the caller's transaction.
    func task(id: Int64) throws -> TaskRecord? {
        try TaskRecord.fetchOne(cachedStatement(sql: TaskRecord.byID), arguments: [id])
    }
}
