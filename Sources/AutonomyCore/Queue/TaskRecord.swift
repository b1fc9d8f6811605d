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

    /// A task that exists only in memory: what `verify --dry-run` checks.
    public static func sample(type: String, payload: String, result: String?, now: Int64) -> TaskRecord {
        TaskRecord(
            id: 0, type: type, state: .verifying, priority: 0, runAt: now, payload: payload,
            payloadSHA256: payload.sha256Hex, idempotencyKey: nil, source: "verify --dry-run", subject: nil,
            attempts: 1, maxAttempts: nil, leaseToken: nil, leaseExpiresAt: nil, createdAt: now, updatedAt: now,
            startedAt: now, finishedAt: nil, exitCode: 0, result: result, lastError: nil, stderrTail: nil)
    }

    /// The limit that applies: the task's own, else its type's, else the default policy's.
    public func attemptLimit(_ type: TaskType?) -> Int {
        maxAttempts ?? type?.retry.maxAttempts ?? RetryPolicy().maxAttempts
    }
}

extension TaskRecord: FetchableRecord, Decodable {
    /// The columns a `TaskRecord` is read from. Queries name them instead of `*`, so new columns
    /// change nothing.
    static let columns = CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")

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

extension TaskRecord {
    /// The task as a JSON object for `--json` output: times in ISO 8601 UTC, payload and result as JSON.
    public var jsonValue: JSONValue {
        func time(_ value: Int64?) -> JSONValue { value.map { .string(Timestamp.format($0)) } ?? .null }
        func text(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }
        func number(_ value: Int?) -> JSONValue { value.map { .int(Int64($0)) } ?? .null }
        return .object([
            "id": .int(id), "type": .string(type), "state": .string(state.rawValue),
            "priority": .int(Int64(priority)), "run_at": time(runAt),
            "payload": (try? JSONValue.parse(payload)) ?? .string(payload),
            "payload_sha256": .string(payloadSHA256), "key": text(idempotencyKey),
            "source": text(source), "subject": text(subject),
            "attempts": .int(Int64(attempts)), "max_attempts": number(maxAttempts),
            "lease_expires_at": time(leaseExpiresAt), "created_at": time(createdAt),
            "updated_at": time(updatedAt), "started_at": time(startedAt), "finished_at": time(finishedAt),
            "exit_code": number(exitCode),
            "result": result.map { (try? JSONValue.parse($0)) ?? .string($0) } ?? .null,
            "last_error": text(lastError), "stderr_tail": text(stderrTail),
        ])
    }
}

extension Database {
    /// One task by id, inside the caller's transaction.
    func task(id: Int64) throws -> TaskRecord? {
        try TaskRecord.fetchOne(
            cachedStatement(sql: "SELECT \(TaskRecord.columns) FROM tasks WHERE id = ?"), arguments: [id])
    }
}
