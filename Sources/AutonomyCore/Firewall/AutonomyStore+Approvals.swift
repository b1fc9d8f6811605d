import Foundation
import GRDB

extension Database {
    /// Opens an approval request for a task's current payload hash (superseding any older pending
    /// one), records it in the ledger and queues the alert. Runs inside the caller's transaction.
    func requestApproval(
        taskID: Int64, typeName: String, type: TaskType, payloadSHA256: String, reason: String,
        notify: NotifySettings, now: Int64
    ) throws {
        // A pending request for this very payload already stands: keep it (and its alert).
        if try Bool.fetchOne(
            self,
            sql: """
                SELECT EXISTS (SELECT 1 FROM approvals WHERE task_id = ? AND state = 'pending' AND payload_sha256 = ?)
                """, arguments: [taskID, payloadSHA256]) == true
        {
            return
        }
        try supersedeApprovals(taskID: taskID, typeName: typeName, states: [.pending], reason: reason, now: now)
        let expiresAt = now + type.approvalExpiresAfter.milliseconds
        try cachedStatement(
            sql: """
                INSERT INTO approvals (task_id, payload_sha256, state, reason, requested_at, expires_at)
                VALUES (?, ?, 'pending', ?, ?, ?)
                """
        ).execute(arguments: [taskID, payloadSHA256, reason, now, expiresAt])
        let approvalID = lastInsertedRowID
        try appendLedger(
            .approvalRequested, at: now, taskID: taskID, type: typeName,
            detail: [
                "approval_id": .int(approvalID), "payload_sha256": .string(payloadSHA256), "reason": .string(reason),
                "expires_at": .string(Timestamp.format(expiresAt)),
            ])
        try queueNotification(.approvalNeeded, taskID: taskID, approvalID: approvalID, notify: notify, now: now)
    }

    /// Ends the task's requests in `states` as `superseded` (their tokens with them), with a ledger
    /// row each.
    func supersedeApprovals(taskID: Int64, typeName: String, states: [ApprovalState], reason: String, now: Int64) throws
    {
        let list = states.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        let replaced = try ApprovalRecord.fetchAll(
            self, sql: "SELECT \(ApprovalRecord.columns) FROM approvals WHERE task_id = ? AND state IN (\(list))",
            arguments: [taskID])
        for approval in replaced {
            try execute(sql: "UPDATE approvals SET state = 'superseded' WHERE id = ?", arguments: [approval.id])
            try execute(sql: "DELETE FROM approval_tokens WHERE approval_id = ?", arguments: [approval.id])
            try appendLedger(
                .approvalSuperseded, at: now, taskID: taskID, type: typeName,
                detail: [
                    "approval_id": .int(approval.id), "payload_sha256": .string(approval.payloadSHA256),
                    "was": .string(approval.state.rawValue), "reason": .string(reason),
                ])
        }
    }

    /// The approved, unused request that lets this task run its current payload, if any. An approval
    /// covers one attempt: a retry asks again.
    func approvalAllowing(taskID: Int64, payloadSHA256: String) throws -> ApprovalRecord? {
        try ApprovalRecord.fetchOne(
            cachedStatement(
                sql: """
                    SELECT \(ApprovalRecord.columns) FROM approvals
                    WHERE task_id = ? AND state = 'approved' AND payload_sha256 = ? AND used_at IS NULL
                    ORDER BY id DESC LIMIT 1
                    """), arguments: [taskID, payloadSHA256])
    }

    /// Pending requests whose time is up become `expired`, and so do their tasks.
    func expireApprovals(now: Int64) throws -> [ApprovalRecord] {
        let due = try ApprovalRecord.fetchAll(
            self,
            sql: """
                SELECT \(ApprovalRecord.columns) FROM approvals INDEXED BY approvals_pending WHERE state = 'pending' AND expires_at <= ? ORDER BY id
                """, arguments: [now])
        for approval in due {
            try execute(sql: "DELETE FROM approval_tokens WHERE approval_id = ?", arguments: [approval.id])
            try execute(
                sql: "UPDATE approvals SET state = 'expired' WHERE id = ?",
                arguments: [approval.id])
            let type = try String.fetchOne(
                self, sql: "SELECT type FROM tasks WHERE id = ?", arguments: [approval.taskID])
            try execute(
                sql: """
                    UPDATE tasks SET state = 'expired', finished_at = ?, updated_at = ?,
                                     last_error = 'the approval request expired before anyone decided'
                    WHERE id = ? AND state = 'awaiting_approval'
                    """, arguments: [now, now, approval.taskID])
            try appendLedger(
                .approvalExpired, at: now, taskID: approval.taskID, type: type,
                detail: [
                    "approval_id": .int(approval.id), "payload_sha256": .string(approval.payloadSHA256),
                    "requested_at": .string(Timestamp.format(approval.requestedAt)),
                ])
        }
        return due
    }
}

extension AutonomyStore {
    /// Expires overdue requests, then lists the pending ones, oldest first.
    public func pendingApprovals(now: Int64) throws -> [PendingApproval] {
        try write("list approvals") { db in
            _ = try db.expireApprovals(now: now)
            let approvals = try ApprovalRecord.fetchAll(
                db,
                sql: """
                    SELECT \(ApprovalRecord.columns) FROM approvals
                    WHERE state = 'pending' AND task_id IN (SELECT id FROM tasks WHERE state = 'awaiting_approval')
                    ORDER BY id
                    """)
            return try approvals.compactMap { approval in
                try db.task(id: approval.taskID).map { PendingApproval(approval: approval, task: $0) }
            }
        }
    }

    /// Expires overdue requests (work-once's housekeeping).
    public func expireApprovals(now: Int64) throws -> [ApprovalRecord] {
        try write("expire approvals") { db in try db.expireApprovals(now: now) }
    }

    public func approval(id: Int64) throws -> ApprovalRecord? {
        try read("read an approval") { db in
            try ApprovalRecord.fetchOne(
                db, sql: "SELECT \(ApprovalRecord.columns) FROM approvals WHERE id = ?",
                arguments: [id])
        }
    }

    /// Approves or rejects a pending request. Approving sends its task back to the queue; rejecting
    /// ends it as `rejected`. The decision, the decider, the channel and the payload hash go to the
    /// ledger in the same transaction.
    ///
    /// - Throws: `ApprovalError` (nothing written) or `StoreError`.
    public func decide(
        approvalID: Int64, _ decision: Decision, by decider: String, channel: DecisionChannel, now: Int64
    ) throws -> ApprovalRecord {
        try write("decide an approval") { db in
            _ = try db.expireApprovals(now: now)
            return try decide(approvalID: approvalID, decision, by: decider, channel: channel, now: now, db: db)
        }
    }

    private func decide(
        approvalID: Int64, _ decision: Decision, by decider: String, channel: DecisionChannel, now: Int64, db: Database
    ) throws -> ApprovalRecord {
        guard
            var approval = try ApprovalRecord.fetchOne(
                db, sql: "SELECT \(ApprovalRecord.columns) FROM approvals WHERE id = ?", arguments: [approvalID])
        else { throw ApprovalError.notFound(approvalID) }
        switch approval.state {
        case .pending: break
        case .expired: throw ApprovalError.expired(id: approvalID)
        case .approved, .rejected, .superseded:
            throw ApprovalError.alreadyDecided(id: approvalID, state: approval.state, by: approval.decidedBy)
        }
        guard
            let task = try db.task(id: approval.taskID)
        else { throw ApprovalError.notFound(approvalID) }
        guard task.state == .awaitingApproval else {
            throw ApprovalError.taskNotWaiting(id: approvalID, taskID: task.id, state: task.state)
        }
        let (state, note): (ApprovalState, String?)
        switch decision {
        case .approve(let text):
            (state, note) = (.approved, text)
            try db.execute(
                sql: "UPDATE tasks SET state = 'queued', updated_at = ? WHERE id = ?", arguments: [now, task.id])
        case .reject(let reason):
            guard !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw ApprovalError.missingReason
            }
            (state, note) = (.rejected, reason)
            try db.execute(
                sql: """
                    UPDATE tasks SET state = 'rejected', finished_at = ?, updated_at = ?, last_error = ? WHERE id = ?
                    """, arguments: [now, now, "rejected by \(decider): \(reason)", task.id])
        }
        try db.execute(
            sql: """
                UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, decision_note = ?, channel = ?
                WHERE id = ?
                """, arguments: [state.rawValue, now, decider, note, channel.rawValue, approvalID])
        // Every link of the request is spent with the decision.
        try db.execute(sql: "DELETE FROM approval_tokens WHERE approval_id = ?", arguments: [approvalID])
        try db.appendLedger(
            .approvalDecided, at: now, taskID: task.id, type: task.type,
            detail: [
                "approval_id": .int(approvalID), "decision": .string(state.rawValue), "by": .string(decider),
                "note": note.map { .string($0) } ?? .null, "channel": .string(channel.rawValue),
                "payload_sha256": .string(approval.payloadSHA256),
            ])
        approval.state = state
        approval.decidedAt = now
        approval.decidedBy = decider
        approval.decisionNote = note
        approval.channel = channel.rawValue
        return approval
    }

    // MARK: - One-click tokens

    /// Issues a fresh token for a pending request (one per alert delivered) and returns it; only its
    /// hash is stored. Every token of a request works until the request is decided (which spends
    /// them all), expires or is replaced. Nil when the request is no longer pending.
    public func issueToken(approvalID: Int64, now: Int64) throws -> String? {
        var generator = SystemRandomNumberGenerator()  // getrandom(2): cryptographically secure
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let token = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return try write("issue an approval token") { db in
            guard
                try Bool.fetchOne(
                    db,
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM approvals WHERE id = ? AND state = 'pending' AND expires_at > ?)
                        """, arguments: [approvalID, now]) == true
            else { return nil }
            try db.execute(
                sql: "INSERT INTO approval_tokens (token_sha256, approval_id, issued_at) VALUES (?, ?, ?)",
                arguments: [token.sha256Hex, approvalID, now])
            return token
        }
    }

    /// What a one-click link shows before anyone decides (a GET never decides).
    ///
    /// - Throws: `ApprovalError.invalidToken` for a used, expired or wrong token, saying nothing more.
    public func pendingApproval(token: String, now: Int64) throws -> PendingApproval {
        try write("read an approval by token") { db in
            _ = try db.expireApprovals(now: now)
            guard let approval = try approvalHolding(token: token, db: db),
                let task = try db.task(id: approval.taskID)
            else { throw ApprovalError.invalidToken }
            return PendingApproval(approval: approval, task: task)
        }
    }

    /// Decides the request a one-click token belongs to (the POST behind a link's button). The
    /// token is spent whatever the decision.
    ///
    /// - Throws: `ApprovalError.invalidToken` for a used, expired or wrong token, saying nothing more.
    public func decide(
        token: String, _ decision: Decision, by decider: String, channel: DecisionChannel = .link, now: Int64
    ) throws -> ApprovalRecord {
        try write("decide an approval by token") { db in
            _ = try db.expireApprovals(now: now)
            guard let approval = try approvalHolding(token: token, db: db) else { throw ApprovalError.invalidToken }
            do {
                return try decide(approvalID: approval.id, decision, by: decider, channel: channel, now: now, db: db)
            } catch ApprovalError.missingReason {
                throw ApprovalError.missingReason
            } catch is ApprovalError {
                throw ApprovalError.invalidToken
            }
        }
    }

    private func approvalHolding(token: String, db: Database) throws -> ApprovalRecord? {
        guard !token.isEmpty, token.utf8.count <= 256 else { return nil }
        return try ApprovalRecord.fetchOne(
            db,
            sql: """
                SELECT \(ApprovalRecord.columns) FROM approvals
                WHERE state = 'pending' AND id = (SELECT approval_id FROM approval_tokens WHERE token_sha256 = ?)
                """, arguments: [token.sha256Hex])
    }
}
