import Foundation

/// What an operator signs to approve or reject a request: every fact the decision is bound to.
/// The signed bytes are this statement's canonical JSON (keys sorted, no spaces).
public struct DecisionStatement: Sendable, Equatable {
    public enum Verdict: String, Sendable {
        case approve, reject
    }

    public static let kind = "autonomy-decision/v1"

    public var approvalID: Int64
    public var taskID: Int64
    public var type: String
    public var payloadSHA256: String
    /// The one attempt an approval allows (the task's attempts so far, plus one).
    public var attempt: Int
    public var decision: Verdict
    /// When it was signed (whole seconds, epoch ms).
    public var at: Int64
    /// An approved task that has not started by then goes back to approval.
    public var validUntil: Int64
    public var note: String?
    /// Who signs: the principal `allowed_signers` gives the key.
    public var principal: String

    public init(
        approvalID: Int64, taskID: Int64, type: String, payloadSHA256: String, attempt: Int, decision: Verdict,
        at: Int64, validUntil: Int64, note: String?, principal: String
    ) {
        self.approvalID = approvalID
        self.taskID = taskID
        self.type = type
        self.payloadSHA256 = payloadSHA256
        self.attempt = attempt
        self.decision = decision
        self.at = at
        self.validUntil = validUntil
        self.note = note
        self.principal = principal
    }

    public var jsonValue: JSONValue {
        .object([
            "statement": .string(Self.kind), "approval_id": .int(approvalID), "task_id": .int(taskID),
            "type": .string(type), "payload_sha256": .string(payloadSHA256), "attempt": .int(Int64(attempt)),
            "decision": .string(decision.rawValue), "at": .string(Timestamp.format(at)),
            "valid_until": .string(Timestamp.format(validUntil)), "note": note.map { .string($0) } ?? .null,
            "principal": .string(principal),
        ])
    }

    /// The exact text that is signed.
    public var text: String { jsonValue.canonicalText }

    /// Reads a statement back from its signed text; the text must be canonical, so one decision
    /// has exactly one signed form.
    public init(text: String) throws(TrustError) {
        guard let value = try? JSONValue.parse(text), value.canonicalText == text,
            case .object(let fields) = value, fields["statement"] == .string(Self.kind)
        else { throw .statementMismatch("it is not a canonical \(Self.kind) statement") }
        func string(_ key: String) throws(TrustError) -> String {
            guard case .string(let text)? = fields[key] else { throw .statementMismatch("\(key) is missing") }
            return text
        }
        func integer(_ key: String) throws(TrustError) -> Int64 {
            guard case .int(let number)? = fields[key] else { throw .statementMismatch("\(key) is missing") }
            return number
        }
        func time(_ key: String) throws(TrustError) -> Int64 {
            guard let time = Timestamp.parse(try string(key)) else { throw .statementMismatch("\(key) is no time") }
            return time
        }
        guard let decision = Verdict(rawValue: try string("decision")) else {
            throw .statementMismatch("decision is neither approve nor reject")
        }
        let note: String?
        switch fields["note"] {
        case .string(let text)?: note = text
        case .null?, nil: note = nil
        default: throw .statementMismatch("note is not text")
        }
        guard fields.count == 11 else { throw .statementMismatch("it has fields a decision does not have") }
        self.init(
            approvalID: try integer("approval_id"), taskID: try integer("task_id"), type: try string("type"),
            payloadSHA256: try string("payload_sha256"), attempt: Int(try integer("attempt")), decision: decision,
            at: try time("at"), validUntil: try time("valid_until"), note: note, principal: try string("principal"))
    }
}

/// A statement and the operator's SSHSIG signature over it, as recorded with the approval.
public struct SignedDecision: Sendable, Equatable {
    public var statement: String
    /// Armored SSHSIG text, namespace `autonomy-decision`.
    public var signature: String

    public init(statement: String, signature: String) {
        self.statement = statement
        self.signature = signature
    }
}
