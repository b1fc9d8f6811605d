import Foundation
import GRDB

/// Where an approval request is. Only `pending` ones can be decided.
public enum ApprovalState: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case pending, approved, rejected, expired
    /// A newer request for the same task replaced it (its payload or rating changed).
    case superseded
}

/// One request for a human's yes, bound to the exact payload (its SHA-256).
public struct ApprovalRecord: Sendable, Equatable {
    public var id: Int64
    public var taskID: Int64
    public var payloadSHA256: String
    public var state: ApprovalState
    /// Why the task needs a yes (the firewall's reasons).
    public var reason: String
    public var requestedAt: Int64
    public var expiresAt: Int64
    public var decidedAt: Int64?
    public var decidedBy: String?
    public var decisionNote: String?
    /// How it was decided: `cli`, `link`, `api` or `page`.
    public var channel: String?
    /// When the approved task first started running.
    public var usedAt: Int64?
    /// The decision statement the operator signed (canonical JSON), and the signature over it.
    public var signed: SignedDecision?
    /// The fingerprint of the key that signed it.
    public var signerKey: String?

    static let columns = """
        id, task_id, payload_sha256, state, reason, requested_at, expires_at, decided_at, decided_by, \
        decision_note, channel, used_at, statement, signature, signer_key
        """
}

extension ApprovalRecord: FetchableRecord {
    /// Reads a row by column name; a value that is not what the column should hold (an unknown
    /// state, say) throws an error that names the column and the value.
    public init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        taskID = try row.decode(forColumn: "task_id")
        payloadSHA256 = try row.decode(forColumn: "payload_sha256")
        state = try row.decode(forColumn: "state")
        reason = try row.decode(forColumn: "reason")
        requestedAt = try row.decode(forColumn: "requested_at")
        expiresAt = try row.decode(forColumn: "expires_at")
        decidedAt = try row.decode(forColumn: "decided_at")
        decidedBy = try row.decode(forColumn: "decided_by")
        decisionNote = try row.decode(forColumn: "decision_note")
        channel = try row.decode(forColumn: "channel")
        usedAt = try row.decode(forColumn: "used_at")
        let statement: String? = try row.decode(forColumn: "statement")
        let signature: String? = try row.decode(forColumn: "signature")
        if let statement, let signature { signed = SignedDecision(statement: statement, signature: signature) }
        signerKey = try row.decode(forColumn: "signer_key")
    }
}

/// A pending request with the task it is about: what `autonomy approvals` lists.
public struct PendingApproval: Sendable, Equatable {
    public var approval: ApprovalRecord
    public var task: TaskRecord
}

/// A pending request as `approvals --json` shows it, with how long it has waited and has left.
public struct PendingApprovalOutput: Encodable, Sendable {
    public var id: Int64
    public var taskID: Int64
    public var type: String
    public var payload: JSONValue
    public var payloadSHA256: String
    public var payloadSummary: String
    public var reason: String
    @Nullable public var source: String?
    @Nullable public var subject: String?
    public var requestedAt: ISOTime
    public var expiresAt: ISOTime
    public var ageSeconds: Int64
    public var expiresInSeconds: Int64

    enum CodingKeys: String, CodingKey {
        case id
        case taskID = "task_id"
        case type, payload
        case payloadSHA256 = "payload_sha256"
        case payloadSummary = "payload_summary"
        case reason, source, subject
        case requestedAt = "requested_at"
        case expiresAt = "expires_at"
        case ageSeconds = "age_seconds"
        case expiresInSeconds = "expires_in_seconds"
    }

    public init(_ pending: PendingApproval, now: Int64) {
        let (approval, task) = (pending.approval, pending.task)
        (id, taskID, type, payload) = (approval.id, task.id, task.type, .shown(task.payload))
        (payloadSHA256, payloadSummary, reason) = (pending.shownPayloadSHA256, task.payloadSummary, approval.reason)
        (source, subject) = (task.source, task.subject)
        (requestedAt, expiresAt) = (ISOTime(approval.requestedAt), ISOTime(approval.expiresAt))
        ageSeconds = Interval.between(approval.requestedAt, now).milliseconds / 1000
        expiresInSeconds = max(0, Interval.between(now, approval.expiresAt).milliseconds) / 1000
    }
}

extension PendingApproval {
    /// The SHA-256 of the payload as it is shown now: a page or listing shows this one, never the
    /// stored column, so what an operator is asked about is what its hash says.
    public var shownPayloadSHA256: String { task.payload.sha256Hex }

    /// The payload shown is the one the request was made for (see `ApprovalError.payloadAltered`).
    public var payloadIsIntact: Bool {
        shownPayloadSHA256 == approval.payloadSHA256 && task.payloadSHA256 == approval.payloadSHA256
    }
}

extension TaskRecord {
    /// The attempt a decision allows: the next one (held at the largest number rather than
    /// trapping, for a count someone wrote into the row).
    var nextAttempt: Int { attempts == .max ? .max : attempts + 1 }

    /// The payload cut to one readable line, for listings and alerts.
    public var payloadSummary: String {
        payload.count <= 200 ? payload : String(payload.prefix(197)) + "..."
    }
}

/// How a channel identifies the decider's route, recorded with every decision.
public enum DecisionChannel: String, Sendable {
    /// `autonomy approve|reject`; a one-click link's page; an operator's session, through the
    /// JSON API or the request's page.
    case cli, link, api, page
}

/// A decision a human takes on a pending request.
public enum Decision: Sendable, Equatable {
    case approve(note: String?)
    case reject(reason: String)

    var verdict: DecisionStatement.Verdict {
        if case .approve = self { return .approve }
        return .reject
    }

    var note: String? {
        switch self {
        case .approve(let note): return note
        case .reject(let reason): return reason
        }
    }
}

/// A decision that could not be taken. Nothing was written.
public enum ApprovalError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(Int64)
    /// `approvals show` shows only requests still waiting (and, to a producer, only its own).
    case notPending(Int64)
    case alreadyDecided(id: Int64, state: ApprovalState, by: String?)
    case expired(id: Int64)
    /// The task is no longer waiting on this request (cancelled, or re-held under a newer one).
    case taskNotWaiting(id: Int64, taskID: Int64, state: TaskState)
    /// A one-click token that is used, expired or wrong. Deliberately does not say which.
    case invalidToken
    case missingReason
    /// The task's payload no longer hashes to the SHA-256 the request was made for: someone wrote
    /// the database outside autonomy. What would be shown is not what would be signed.
    case payloadAltered(id: Int64)

    public var description: String {
        switch self {
        case .notFound(let id):
            return "no approval request \(id) (see 'autonomy approvals')"
        case .notPending(let id):
            return
                "no approval request \(id) is waiting for a decision (one decided or expired is in `autonomy tasks show TASK` and `autonomy ledger`; see 'autonomy approvals' for those waiting)"
        case .alreadyDecided(let id, let state, let by):
            return "approval request \(id) was already decided: \(state.rawValue)\(by.map { " by \($0)" } ?? "")"
        case .expired(let id):
            return "approval request \(id) has expired; the task will not run (enqueue it again to ask anew)"
        case .taskNotWaiting(let id, let taskID, let state):
            return "approval request \(id) no longer applies: task \(taskID) is \(state.rawValue)"
        case .invalidToken:
            return "this link is not valid: it was used, has expired, or is wrong"
        case .missingReason:
            return "a rejection needs a reason (--reason TEXT)"
        case .payloadAltered(let id):
            return
                "approval request \(id) cannot be decided: its task's payload no longer matches the SHA-256 it was requested for, so the database was changed outside autonomy (run `autonomy doctor` and `autonomy ledger verify`, and find out who can write it)"
        }
    }
}
