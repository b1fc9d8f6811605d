import Foundation

/// What a signed decision must be to count, whichever store keeps the request: pure functions of
/// the request, its task, the statement and the clock, so SQLite and PostgreSQL refuse alike.
enum DecisionRules {
    /// Throws unless the request may be decided now: pending and not expired, its task still
    /// waiting on it with the payload it was requested for, and a rejection with a reason.
    static func checkDecidable(_ approval: ApprovalRecord, task: TaskRecord?, _ decision: Decision, now: Int64) throws {
        switch approval.state {
        case .pending where approval.expiresAt <= now, .expired: throw ApprovalError.expired(id: approval.id)
        case .pending: break
        case .approved, .rejected, .superseded:
            throw ApprovalError.alreadyDecided(id: approval.id, state: approval.state, by: approval.decidedBy)
        }
        guard let task else { throw ApprovalError.notFound(approval.id) }
        guard task.state == .awaitingApproval else {
            throw ApprovalError.taskNotWaiting(id: approval.id, taskID: task.id, state: task.state)
        }
        // Hashed again here, not read from its column: the row could have been rewritten (and
        // its immutability trigger put back) to show an operator one payload and run another.
        guard PendingApproval(approval: approval, task: task).payloadIsIntact else {
            throw ApprovalError.payloadAltered(id: approval.id)
        }
        if case .reject(let reason) = decision, reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ApprovalError.missingReason
        }
    }

    /// The decision a statement takes (approve, or reject with its reason).
    static func decision(of statement: DecisionStatement) -> Decision {
        statement.decision == .approve ? .approve(note: statement.note) : .reject(reason: statement.note ?? "")
    }

    /// The statement to sign for `decision` on a decidable request, by `principal`.
    static func statement(
        _ approval: ApprovalRecord, task: TaskRecord, _ decision: Decision, principal: String,
        settings: ApprovalSettings, now: Int64
    ) -> DecisionStatement {
        let at = now - now % 1000
        return DecisionStatement(
            approvalID: approval.id, taskID: task.id, type: task.type, payloadSHA256: approval.payloadSHA256,
            attempt: task.nextAttempt, decision: decision.verdict, at: at,
            validUntil: at + settings.runWithin.milliseconds, note: decision.note, principal: principal)
    }

    /// What recording a checked statement writes: the request's new state, the task's move, its
    /// changes, and the ledger row's detail.
    struct Recording {
        var state: ApprovalState
        var transition: TaskTransition
        var changes: [TaskChange]
        var detail: JSONValue
    }

    /// Checks a verified statement against the request and its task as they stand (the same
    /// task, type and payload, the next attempt, signed within ten minutes, a window not over and
    /// no longer than `approvals.run_within`), and says what to write.
    ///
    /// - Throws: `ApprovalError` or `TrustError.statementMismatch`. Nothing is written.
    static func recording(
        _ statement: DecisionStatement, approval: ApprovalRecord, task: TaskRecord?, key: SSHPublicKey,
        channel: DecisionChannel, runWithin: Interval, now: Int64
    ) throws -> Recording {
        let decision = decision(of: statement)
        try checkDecidable(approval, task: task, decision, now: now)
        guard let task else { throw ApprovalError.notFound(approval.id) }
        guard statement.taskID == task.id, statement.type == task.type,
            statement.payloadSHA256 == approval.payloadSHA256, statement.payloadSHA256 == task.payloadSHA256
        else {
            throw TrustError.statementMismatch("it names another task, type or payload than request \(approval.id)")
        }
        guard statement.attempt == task.nextAttempt else {
            throw TrustError.statementMismatch(
                "it allows attempt \(statement.attempt), but the next attempt is \(task.nextAttempt)")
        }
        // A statement is signed just before it is sent: an old one is not a decision taken now.
        guard abs(Interval.between(statement.at, now).milliseconds) <= Interval.minutes(10).milliseconds else {
            throw TrustError.statementMismatch(
                "it was signed at \(Timestamp.format(statement.at)), more than 10 minutes from now; decide again")
        }
        guard statement.validUntil > now else {
            throw TrustError.statementMismatch("its window ended at \(Timestamp.format(statement.validUntil))")
        }
        guard statement.validUntil - statement.at <= runWithin.milliseconds else {
            throw TrustError.statementMismatch("its window is longer than approvals.run_within (\(runWithin))")
        }
        let decider = statement.principal
        var recording: Recording
        switch decision {
        case .approve:
            recording = Recording(state: .approved, transition: .approve, changes: [], detail: nil)
        case .reject(let reason):
            recording = Recording(
                state: .rejected, transition: .reject, changes: [.lastError("rejected by \(decider): \(reason)")],
                detail: nil)
        }
        recording.detail = [
            "approval_id": .int(approval.id), "decision": .string(recording.state.rawValue), "by": .string(decider),
            "signer_key": .string(key.fingerprint), "note": statement.note.map { .string($0) } ?? .null,
            "channel": .string(channel.rawValue), "payload_sha256": .string(approval.payloadSHA256),
            "attempt": .int(Int64(statement.attempt)),
            "valid_until": .string(Timestamp.format(statement.validUntil)),
        ]
        return recording
    }

    /// The request as it reads once `recording` is written.
    static func decided(
        _ approval: ApprovalRecord, _ recording: Recording, statement: DecisionStatement, signed: SignedDecision,
        key: SSHPublicKey, channel: DecisionChannel, now: Int64
    ) -> ApprovalRecord {
        var approval = approval
        approval.state = recording.state
        approval.decidedAt = now
        approval.decidedBy = statement.principal
        approval.decisionNote = statement.note
        approval.channel = channel.rawValue
        approval.signed = signed
        approval.signerKey = key.fingerprint
        return approval
    }
}
