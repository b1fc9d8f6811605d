import Foundation
import PostgresNIO

extension ApprovalRecord {
    /// A row selected with `ApprovalRecord.columns`, in that order.
    init(postgres row: PostgresRow) throws {
        let cells = row.makeRandomAccess()
        func value<T: PostgresDecodable>(_ column: Int, _: T.Type = T.self) throws -> T {
            try cells[column].decode(T.self)
        }
        let stateName: String = try value(3)
        guard let state = ApprovalState(rawValue: stateName) else {
            throw StoreError.failed(
                path: "", operation: "read an approval",
                reason: "an approval is in the unknown state \"\(stateName.prefix(40))\"")
        }
        let statement: String? = try value(12)
        let signature: String? = try value(13)
        self.init(
            id: try value(0), taskID: try value(1), payloadSHA256: try value(2), state: state, reason: try value(4),
            requestedAt: try value(5), expiresAt: try value(6), decidedAt: try value(7), decidedBy: try value(8),
            decisionNote: try value(9), channel: try value(10), usedAt: try value(11),
            signed: statement.flatMap { text in signature.map { SignedDecision(statement: text, signature: $0) } },
            signerKey: try value(14))
    }
}

extension PostgresTransaction {
    /// Opens an approval request for a task's current payload hash (superseding any older pending
    /// one), with its ledger row and alert: `Database.requestApproval` on PostgreSQL.
    nonisolated(nonsending) func requestApproval(
        taskID: Int64, typeName: String, type: TaskType, payloadSHA256: String, reason: String,
        notify: NotifySettings
    ) async throws {
        let standing = try await rows(
            """
            SELECT 1 FROM approvals WHERE task_id = \(taskID) AND state = 'pending' AND payload_sha256 = \(payloadSHA256)
            """)
        guard standing.isEmpty else { return }
        try await supersedeApprovals(taskID: taskID, typeName: typeName, states: [.pending], reason: reason)
        let expiresAt = now + type.approvalExpiresAfter.milliseconds
        let inserted = try await rows(
            """
            INSERT INTO approvals (task_id, payload_sha256, state, reason, requested_at, expires_at)
            VALUES (\(taskID), \(payloadSHA256), 'pending', \(reason), \(now), \(expiresAt))
            RETURNING id
            """)
        guard let approvalID = try inserted.first?.decode(Int64.self) else {
            throw StoreError.failed(path: "", operation: "request an approval", reason: "no row came back")
        }
        try await appendLedger(
            .approvalRequested, taskID: taskID, type: typeName,
            detail: [
                "approval_id": .int(approvalID), "payload_sha256": .string(payloadSHA256), "reason": .string(reason),
                "expires_at": .string(Timestamp.format(expiresAt)),
            ])
        try await queueNotification(.approvalNeeded, taskID: taskID, approvalID: approvalID, notify: notify)
    }

    /// Ends the task's requests in `states` as `superseded`, their tokens with them, with a ledger
    /// row each.
    nonisolated(nonsending) func supersedeApprovals(
        taskID: Int64, typeName: String, states: [ApprovalState], unusedOnly: Bool = false, reason: String
    ) async throws {
        let replaced = try await rows(
            """
            SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
            WHERE task_id = \(taskID) AND state = ANY(\(states.map(\.rawValue))::text[])
              AND (NOT \(unusedOnly) OR used_at IS NULL)
            ORDER BY id FOR UPDATE
            """
        ).map(ApprovalRecord.init(postgres:))
        for approval in replaced {
            try await query("UPDATE approvals SET state = 'superseded' WHERE id = \(approval.id)")
            try await query("DELETE FROM approval_tokens WHERE approval_id = \(approval.id)")
            try await appendLedger(
                .approvalSuperseded, taskID: taskID, type: typeName,
                detail: [
                    "approval_id": .int(approval.id), "payload_sha256": .string(approval.payloadSHA256),
                    "was": .string(approval.state.rawValue), "reason": .string(reason),
                ])
        }
    }

    /// The approved, unused request that may release this task's payload, and whether the ledger
    /// already has a claim that used it (`Database.approvalEvidence`).
    nonisolated(nonsending) func approvalEvidence(taskID: Int64, payloadSHA256: String) async throws
        -> ApprovalEvidence?
    {
        guard
            let approval = try await rows(
                """
                SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
                WHERE task_id = \(taskID) AND state = 'approved' AND payload_sha256 = \(payloadSHA256)
                  AND used_at IS NULL
                ORDER BY id DESC LIMIT 1
                """
            ).first.map(ApprovalRecord.init(postgres:))
        else { return nil }
        let claimed = try await rows(
            """
            SELECT 1 FROM ledger WHERE task_id = \(taskID) AND event = 'claimed'
              AND detail::jsonb ->> 'approval_id' = \(String(approval.id))
            LIMIT 1
            """)
        return ApprovalEvidence(approval: approval, claimedBefore: !claimed.isEmpty)
    }

    /// Pending requests whose time is up become `expired`, and so do their tasks. With
    /// `requestedBefore` (a proposal's `expire_stale_approvals`), those asked before then instead,
    /// fix proposals aside (they have their own `audit.proposals_expire_after`).
    nonisolated(nonsending) func expireApprovals(requestedBefore: Int64? = nil) async throws -> [ApprovalRecord] {
        let due = try await rows(
            requestedBefore.map {
                """
                SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
                WHERE state = 'pending' AND requested_at <= \($0)
                  AND task_id NOT IN (SELECT id FROM tasks WHERE type = \(TaskType.remediationTypeName))
                ORDER BY id FOR UPDATE SKIP LOCKED
                """
            }
                ?? """
                SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
                WHERE state = 'pending' AND expires_at <= \(now) ORDER BY id FOR UPDATE SKIP LOCKED
                """
        ).map(ApprovalRecord.init(postgres:))
        for approval in due {
            try await query("DELETE FROM approval_tokens WHERE approval_id = \(approval.id)")
            try await query("UPDATE approvals SET state = 'expired' WHERE id = \(approval.id)")
            let detail: JSONValue = [
                "approval_id": .int(approval.id), "payload_sha256": .string(approval.payloadSHA256),
                "requested_at": .string(Timestamp.format(approval.requestedAt)),
            ]
            let task = try await task(id: approval.taskID, locking: true)
            if task?.state == .awaitingApproval {
                try await transition(
                    approval.taskID, .expire,
                    changing: [.lastError("the approval request expired before anyone decided")], detail: detail)
            } else {
                try await appendLedger(.approvalExpired, taskID: approval.taskID, type: task?.type, detail: detail)
            }
        }
        return due
    }

    nonisolated(nonsending) func task(id: Int64, locking: Bool = false) async throws -> TaskRecord? {
        try await rows(
            """
            SELECT \(unescaped: TaskRecord.columns) FROM tasks WHERE id = \(id) \(unescaped: locking ? "FOR UPDATE" : "")
            """
        ).first.map(TaskRecord.init(postgres:))
    }

    nonisolated(nonsending) func approval(id: Int64, locking: Bool = false) async throws -> ApprovalRecord? {
        try await rows(
            """
            SELECT \(unescaped: ApprovalRecord.columns) FROM approvals WHERE id = \(id) \(unescaped: locking ? "FOR UPDATE" : "")
            """
        ).first.map(ApprovalRecord.init(postgres:))
    }
}

extension PostgresStore {
    /// Expires overdue requests, then lists the pending ones, oldest first; with `source`, only
    /// those about that producer's tasks (`AutonomyStore.pendingApprovals`).
    public func pendingApprovals(
        source: String? = nil, type: String? = nil, id: Int64? = nil, limit: Int? = nil
    ) async throws -> (pending: [PendingApproval], now: Int64) {
        try await write("list approvals") { transaction in
            _ = try await transaction.expireApprovals()
            let approvals = try await transaction.rows(
                """
                SELECT \(unescaped: ApprovalRecord.columns) FROM approvals a
                WHERE state = 'pending' AND (\(id)::bigint IS NULL OR a.id = \(id)) AND EXISTS (
                    SELECT 1 FROM tasks t WHERE t.id = a.task_id AND t.state = 'awaiting_approval'
                      AND (\(source)::text IS NULL OR t.source = \(source))
                      AND (\(type)::text IS NULL OR t.type = \(type)))
                ORDER BY id LIMIT \(limit ?? Int(Int32.max))
                """
            ).map(ApprovalRecord.init(postgres:))
            var pending: [PendingApproval] = []
            for approval in approvals {
                if let task = try await transaction.task(id: approval.taskID) {
                    pending.append(PendingApproval(approval: approval, task: task))
                }
            }
            return (pending, transaction.now)
        }
    }

    /// The statement an operator signs to take `decision` on a pending request with `signerKey`
    /// (`AutonomyStore.decisionStatement`), with the task it is about. The time is the database's.
    public func decisionStatement(
        approvalID: Int64, _ decision: Decision, signerKey: SSHPublicKey, verifier: DecisionVerifier,
        settings: ApprovalSettings
    ) async throws -> (DecisionStatement, TaskRecord) {
        let signers = try verifier.signers()
        return try await read("prepare a decision") { transaction in
            let now = transaction.now
            guard let principal = signers.principal(for: signerKey, at: now) else {
                throw TrustError.unknownSigner(fingerprint: signerKey.fingerprint, path: signers.path)
            }
            guard let approval = try await transaction.approval(id: approvalID) else {
                throw ApprovalError.notFound(approvalID)
            }
            let found = try await transaction.task(id: approval.taskID)
            try DecisionRules.checkDecidable(approval, task: found, decision, now: now)
            guard let task = found else { throw ApprovalError.notFound(approvalID) }
            return (
                DecisionRules.statement(
                    approval, task: task, decision, principal: principal, settings: settings, now: now), task
            )
        }
    }

    /// Records an operator's signed decision (`AutonomyStore.decide`): the signature is checked
    /// first, then the statement against the request and task as they stand, both locked; the
    /// decision, signer, key and channel go to the ledger in the same transaction.
    ///
    /// - Throws: `TrustError`, `ApprovalError` or `StoreError`. Nothing is written.
    public func decide(_ signed: SignedDecision, verifier: DecisionVerifier, channel: DecisionChannel) async throws
        -> ApprovalRecord
    {
        let statement = try DecisionStatement(text: signed.statement)
        let key = try verifier.verify(
            signed.statement, signature: signed.signature, principal: statement.principal,
            at: try await databaseNow())
        return try await write("decide an approval") { transaction in
            _ = try await transaction.expireApprovals()
            return try await transaction.record(
                statement, signed, key: key, runWithin: verifier.runWithin, channel: channel)
        }
    }
}

extension PostgresTransaction {
    /// Records a decision whose signature was checked, against the request and task as they stand,
    /// both locked (`AutonomyStore.record` on SQLite).
    nonisolated(nonsending) func record(
        _ statement: DecisionStatement, _ signed: SignedDecision, key: SSHPublicKey, runWithin: Interval,
        channel: DecisionChannel
    ) async throws -> ApprovalRecord {
        guard let approval = try await approval(id: statement.approvalID, locking: true) else {
            throw ApprovalError.notFound(statement.approvalID)
        }
        let task = try await task(id: approval.taskID, locking: true)
        let recording = try DecisionRules.recording(
            statement, approval: approval, task: task, key: key, channel: channel, runWithin: runWithin, now: now)
        try await query(
            """
            UPDATE approvals SET state = \(recording.state.rawValue), decided_at = \(now),
                                 decided_by = \(statement.principal), decision_note = \(statement.note),
                                 channel = \(channel.rawValue), statement = \(signed.statement),
                                 signature = \(signed.signature), signer_key = \(key.fingerprint)
            WHERE id = \(approval.id) AND state = 'pending'
            """)
        try await transition(
            approval.taskID, recording.transition, changing: recording.changes, detail: recording.detail)
        return DecisionRules.decided(
            approval, recording, statement: statement, signed: signed, key: key, channel: channel, now: now)
    }
}
