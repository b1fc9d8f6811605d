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
    func supersedeApprovals(
        taskID: Int64, typeName: String, states: [ApprovalState], unusedOnly: Bool = false, reason: String, now: Int64
    ) throws {
        let list = states.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        let replaced = try ApprovalRecord.fetchAll(
            self,
            sql: """
                SELECT \(ApprovalRecord.columns) FROM approvals WHERE task_id = ? AND state IN (\(list))
                \(unusedOnly ? "AND used_at IS NULL" : "")
                """,
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

    /// An approval's condition (on its `task_id`): not a fix proposal's, which waits out its own
    /// `audit.proposals_expire_after` and is never a stale approval.
    static let notAProposal = "task_id NOT IN (SELECT id FROM tasks WHERE type = '\(TaskType.remediationTypeName)')"

    /// Pending requests whose time is up become `expired`, and so do their tasks; with
    /// `requestedBefore` (a proposal's `expire_stale_approvals`), those asked before then instead,
    /// except fix proposals (they have their own `audit.proposals_expire_after`).
    func expireApprovals(now: Int64, requestedBefore: Int64? = nil) throws -> [ApprovalRecord] {
        let due = try ApprovalRecord.fetchAll(
            cachedStatement(
                sql: requestedBefore == nil
                    ? """
                    SELECT \(ApprovalRecord.columns) FROM approvals INDEXED BY approvals_pending WHERE state = 'pending' AND expires_at <= ? ORDER BY id
                    """
                    : """
                    SELECT \(ApprovalRecord.columns) FROM approvals WHERE state = 'pending' AND requested_at <= ?
                      AND \(Self.notAProposal) ORDER BY id
                    """), arguments: [requestedBefore ?? now])
        for approval in due {
            try run(sql: "DELETE FROM approval_tokens WHERE approval_id = ?", arguments: [approval.id])
            try run(sql: "UPDATE approvals SET state = 'expired' WHERE id = ?", arguments: [approval.id])
            let detail: JSONValue = [
                "approval_id": .int(approval.id), "payload_sha256": .string(approval.payloadSHA256),
                "requested_at": .string(Timestamp.format(approval.requestedAt)),
            ]
            let task = try self.task(id: approval.taskID)
            if task?.state == .awaitingApproval {
                try transition(
                    approval.taskID, .expire, at: now,
                    changing: [.lastError("the approval request expired before anyone decided")], detail: detail)
            } else {
                // A request left pending by a task that moved on (an older database): it ends alone.
                try appendLedger(.approvalExpired, at: now, taskID: approval.taskID, type: task?.type, detail: detail)
            }
        }
        return due
    }
}

extension AutonomyStore {
    /// Expires overdue requests, then lists the pending ones, oldest first; with `source`, only
    /// those about that producer's tasks.
    public func pendingApprovals(
        now: Int64, source: String? = nil, type: String? = nil, id: Int64? = nil, limit: Int? = nil
    ) throws -> [PendingApproval] {
        try write("list approvals") { db in
            _ = try db.expireApprovals(now: now)
            var conditions = ""
            var arguments = StatementArguments()
            if let source {
                conditions += " AND tasks.source = ?"
                _ = arguments.append(contentsOf: [source])
            }
            if let type {
                conditions += " AND tasks.type = ?"
                _ = arguments.append(contentsOf: [type])
            }
            var only = ""
            if let id {
                only = " AND approvals.id = ?"
                _ = arguments.append(contentsOf: [id])
            }
            // Through the pending requests' own index, not a scan of every task.
            let approvals = try ApprovalRecord.fetchAll(
                db,
                sql: """
                    SELECT \(ApprovalRecord.columns) FROM approvals INDEXED BY approvals_pending
                    WHERE state = 'pending'\(only) AND EXISTS (
                        SELECT 1 FROM tasks WHERE tasks.id = approvals.task_id AND tasks.state = 'awaiting_approval'
                        \(conditions))
                    ORDER BY id \(limit.map { "LIMIT \($0)" } ?? "")
                    """, arguments: arguments)
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

    /// The statement an operator signs to take `decision` on a pending request with `signerKey`:
    /// every fact the decision binds (request, task, type, payload hash, the one attempt it allows,
    /// the time and the window to run in) and the principal `allowed_signers` gives the key.
    ///
    /// - Throws: `ApprovalError` (the request cannot be decided), `TrustError` (no signers, or the
    ///   key is not among them), or `StoreError`. Nothing is written.
    public func decisionStatement(
        approvalID: Int64, _ decision: Decision, signerKey: SSHPublicKey, verifier: DecisionVerifier,
        settings: ApprovalSettings, now: Int64
    ) throws -> DecisionStatement {
        let signers = try verifier.signers()
        guard let principal = signers.principal(for: signerKey, at: now) else {
            throw TrustError.unknownSigner(fingerprint: signerKey.fingerprint, path: signers.path)
        }
        return try read("prepare a decision") { db in
            let (approval, task) = try decidable(approvalID: approvalID, decision, db: db, now: now)
            return DecisionRules.statement(
                approval, task: task, decision, principal: principal, settings: settings, now: now)
        }
    }

    /// Records an operator's signed decision. Approving sends the task back to the queue (for the
    /// one attempt the statement allows, within its window); rejecting ends it as `rejected`. The
    /// signature is checked first, then the statement against the request as it stands; the
    /// decision, the signer, the key and the channel go to the ledger in the same transaction.
    ///
    /// - Throws: `TrustError` (not signed by an allowed key, or not about this request as it
    ///   stands), `ApprovalError`, or `StoreError`. Nothing is written.
    public func decide(
        _ signed: SignedDecision, verifier: DecisionVerifier, channel: DecisionChannel, now: Int64
    ) throws -> ApprovalRecord {
        let statement = try DecisionStatement(text: signed.statement)
        let key = try verifier.verify(
            signed.statement, signature: signed.signature, principal: statement.principal, at: now)
        return try write("decide an approval") { db in
            _ = try db.expireApprovals(now: now)
            return try record(statement, signed, key: key, verifier: verifier, channel: channel, db: db, now: now)
        }
    }

    /// A request that may be decided now, with its task.
    private func decidable(
        approvalID: Int64, _ decision: Decision, db: Database, now: Int64
    ) throws -> (ApprovalRecord, TaskRecord) {
        guard
            let approval = try ApprovalRecord.fetchOne(
                db, sql: "SELECT \(ApprovalRecord.columns) FROM approvals WHERE id = ?", arguments: [approvalID])
        else { throw ApprovalError.notFound(approvalID) }
        let found = try db.task(id: approval.taskID)
        try DecisionRules.checkDecidable(approval, task: found, decision, now: now)
        guard let task = found else { throw ApprovalError.notFound(approvalID) }
        return (approval, task)
    }

    private func record(
        _ statement: DecisionStatement, _ signed: SignedDecision, key: SSHPublicKey, verifier: DecisionVerifier,
        channel: DecisionChannel, db: Database, now: Int64
    ) throws -> ApprovalRecord {
        guard
            let approval = try ApprovalRecord.fetchOne(
                db, sql: "SELECT \(ApprovalRecord.columns) FROM approvals WHERE id = ?",
                arguments: [statement.approvalID])
        else { throw ApprovalError.notFound(statement.approvalID) }
        let task = try db.task(id: approval.taskID)
        let recording = try DecisionRules.recording(
            statement, approval: approval, task: task, key: key, channel: channel, runWithin: verifier.runWithin,
            now: now)
        try db.execute(
            sql: """
                UPDATE approvals SET state = ?, decided_at = ?, decided_by = ?, decision_note = ?, channel = ?,
                                     statement = ?, signature = ?, signer_key = ?
                WHERE id = ? AND state = 'pending'
                """,
            arguments: [
                recording.state.rawValue, now, statement.principal, statement.note, channel.rawValue,
                signed.statement, signed.signature, key.fingerprint, approval.id,
            ])
        // Every link of the request is spent with the decision (a link works only while its
        // request is pending); their hashes stay, so a link opened again shows what was decided.
        try db.transition(
            approval.taskID, recording.transition, at: now, changing: recording.changes, detail: recording.detail)
        return DecisionRules.decided(
            approval, recording, statement: statement, signed: signed, key: key, channel: channel, now: now)
    }

    // MARK: - One-click tokens

    /// Issues a fresh token for a pending request (one per alert delivered, `via` its channel) and
    /// returns it; only its digest under `seal` is stored. Every token of a request works until the request is
    /// decided (which spends them all), expires or is replaced. Nil when the request is no longer
    /// pending.
    public func issueToken(approvalID: Int64, via channel: NotifyChannel? = nil, seal: TokenSeal = .plain, now: Int64)
        throws
        -> String?
    {
        let token = SecretToken.make()
        return try write("issue an approval token") { db in
            guard
                try Bool.fetchOne(
                    db,
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM approvals WHERE id = ? AND state = 'pending' AND expires_at > ?)
                        """, arguments: [approvalID, now]) == true
            else { return nil }
            try db.execute(
                sql:
                    "INSERT INTO approval_tokens (token_sha256, approval_id, issued_at, issued_via) VALUES (?, ?, ?, ?)",
                arguments: [seal.digest(token), approvalID, now, channel?.rawValue])
            return token
        }
    }

    /// What a one-click link shows before anyone decides (a GET never decides).
    ///
    /// - Throws: `ApprovalError.invalidToken` for a used, expired or wrong token, saying nothing more.
    public func pendingApproval(token: String, seal: TokenSeal = .plain, now: Int64) throws -> PendingApproval {
        try write("read an approval by token") { db in
            _ = try db.expireApprovals(now: now)
            guard let approval = try approvalHolding(token: token, seal: seal, db: db),
                let task = try db.task(id: approval.taskID)
            else { throw ApprovalError.invalidToken }
            return PendingApproval(approval: approval, task: task)
        }
    }

    /// Records a signed decision on the request a one-click token belongs to (the POST behind a
    /// link's button; the web server signs with its own key). The token is spent with the decision.
    ///
    /// - Throws: `ApprovalError.invalidToken` for a used, expired or wrong token, or a statement
    ///   about another request, saying nothing more; `TrustError` for a bad signature.
    public func decide(
        token: String, seal: TokenSeal = .plain, _ signed: SignedDecision, verifier: DecisionVerifier,
        channel: DecisionChannel = .link, now: Int64
    ) throws -> ApprovalRecord {
        let statement = try DecisionStatement(text: signed.statement)
        let key = try verifier.verify(
            signed.statement, signature: signed.signature, principal: statement.principal, at: now)
        return try write("decide an approval by token") { db in
            _ = try db.expireApprovals(now: now)
            guard let approval = try approvalHolding(token: token, seal: seal, db: db),
                approval.id == statement.approvalID
            else {
                throw ApprovalError.invalidToken
            }
            do {
                return try record(
                    statement, signed, key: key, verifier: verifier, channel: channel, db: db, now: now)
            } catch ApprovalError.missingReason {
                throw ApprovalError.missingReason
            } catch is ApprovalError {
                throw ApprovalError.invalidToken
            }
        }
    }

    /// How long a spent link shows its request's decision.
    public static let spentLinksShow = Interval.days(7)

    /// The alert channel a one-click token went out by (`webhook`, `command`), if it was one.
    public func linkChannel(token: String, seal: TokenSeal = .plain) throws -> String? {
        guard SecretToken.isPlausible(token) else { return nil }
        return try read("read a link's channel") { db in
            try String.fetchOne(
                db, sql: "SELECT issued_via FROM approval_tokens WHERE token_sha256 = ?",
                arguments: [seal.digest(token)])
        }
    }

    /// The decided request (approved or rejected) a spent one-click token belongs to, if `approvalID`
    /// is that request and it was decided within `spentLinksShow`: what the link's holder is shown
    /// instead of buttons. Nil for anything else, so a wrong, expired or replaced link, or one
    /// forwarded long after, learns nothing.
    public func decidedApproval(token: String, seal: TokenSeal = .plain, approvalID: Int64, now: Int64) throws
        -> ApprovalRecord?
    {
        guard SecretToken.isPlausible(token) else { return nil }
        return try read("read a decided approval by token") { db in
            try ApprovalRecord.fetchOne(
                db,
                sql: """
                    SELECT \(ApprovalRecord.columns) FROM approvals
                    WHERE id = ? AND state IN ('approved', 'rejected') AND decided_at > ?
                      AND id = (SELECT approval_id FROM approval_tokens WHERE token_sha256 = ?)
                    """, arguments: [approvalID, now - Self.spentLinksShow.milliseconds, seal.digest(token)])
        }
    }

    private func approvalHolding(token: String, seal: TokenSeal, db: Database) throws -> ApprovalRecord? {
        guard SecretToken.isPlausible(token) else { return nil }
        return try ApprovalRecord.fetchOne(
            db,
            sql: """
                SELECT \(ApprovalRecord.columns) FROM approvals
                WHERE state = 'pending' AND id = (SELECT approval_id FROM approval_tokens WHERE token_sha256 = ?)
                """, arguments: [seal.digest(token)])
    }
}
