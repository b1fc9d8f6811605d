import GRDB

/// The firewall's verdict on a task about to run (checked again right before execution, so
/// nothing slips through a config change or a direct database write).
enum Admission: Equatable {
    /// Run it; with the approval that allows it, and who signed it, if it needed one.
    case run(approvalID: Int64?, signedBy: String?)
    /// Send it back to approval for its current payload.
    case hold(reason: String, payloadSHA256: String)
    /// Never run it.
    case block(reason: String)
}

/// A queued task as the firewall sees it right before it runs.
struct AdmissionCandidate {
    var id: Int64
    var typeName: String
    var payload: String
    var storedSHA256: String
    /// Attempts started so far: an approval allows exactly the next one.
    var attempts: Int

    /// Checks that the row the claim's UPDATE returned is the task the firewall admitted. Only a
    /// trigger autonomy did not make (written by someone who can write the database) could change
    /// its type or payload between the check and the claim; the handler would then run what nobody
    /// checked or approved. The claim fails instead, and its transaction is rolled back.
    /// Compared byte by byte: Swift's `==` on strings holds for canonically equal text ("K" and
    /// the Kelvin sign), which are other bytes for the handler.
    func confirm(_ claimed: TaskRecord, database: String) throws {
        guard
            claimed.id != id || claimed.attempts != attempts.addingReportingOverflow(1).partialValue
                || !claimed.type.utf8.elementsEqual(typeName.utf8) || !claimed.payload.utf8.elementsEqual(payload.utf8)
                || !claimed.payloadSHA256.utf8.elementsEqual(storedSHA256.utf8)
        else { return }
        throw StoreError.failed(
            path: database, operation: "claim task \(id)",
            reason:
                "its type or payload changed between the firewall's check and the claim (a trigger autonomy did not make?), so nothing ran; run `autonomy doctor`"
        )
    }
}

/// An approval that may release a task, as the store found it.
struct ApprovalEvidence {
    var approval: ApprovalRecord
    /// The ledger already has a claim that used it.
    var claimedBefore: Bool
}

/// The firewall's decision: a function of the task (its type and payload), the type's rules and
/// the approval evidence the caller read, with no database of its own.
enum Firewall {
    /// Decides whether a queued task may run now: its type is declared (checked by the caller), its
    /// current rating allows it, and, if it needs a human's yes, an approval exists for the hash of
    /// the payload as it is stored *now* (recomputed here, not read from the row), carrying an
    /// operator's valid signature over this task, type, payload, attempt and a window not yet over.
    /// A row that only says `approved` is not an approval.
    /// `rating`, when given, was made outside the transaction on this very payload; `approval`
    /// finds the unused approved request for a payload hash.
    static func admit(
        _ task: AdmissionCandidate, type: TaskType, rating given: Rating? = nil, verifier: DecisionVerifier, now: Int64,
        approval findApproval: (_ payloadSHA256: String) throws -> ApprovalEvidence?
    ) rethrows -> Admission {
        guard let value = try? JSONValue.parse(task.payload) else {
            return .block(reason: "the stored payload is not valid JSON: it was changed outside autonomy")
        }
        let hash = task.payload.sha256Hex
        let rating = given ?? type.rate(value)
        let changed = hash != task.storedSHA256
        guard rating.safety == .dangerous || changed else { return .run(approvalID: nil, signedBy: nil) }
        if let evidence = try findApproval(hash) {
            let approval = evidence.approval
            var problem = signatureProblem(approval, task: task, payloadSHA256: hash, verifier: verifier, now: now)
            // `used_at` and the attempt count are columns a database writer can reset; the ledger's
            // hash chain remembers every claim (and `ledger verify` shows a row taken out of it).
            if problem == nil, evidence.claimedBefore {
                problem = "an earlier attempt already used it (the ledger has its claim)"
            }
            switch problem {
            case nil:
                return .run(approvalID: approval.id, signedBy: approval.decidedBy)
            case let problem?:
                return .hold(
                    reason: "approval \(approval.id) is not a valid approval (\(problem)): it needs a new one",
                    payloadSHA256: hash)
            }
        }
        let reason =
            changed
            ? "the payload changed after it was enqueued (its SHA-256 no longer matches): it needs a new approval"
            : "rated dangerous: " + rating.reasons.joined(separator: "; ")
        return .hold(reason: reason, payloadSHA256: hash)
    }

    /// Why an `approved` row does not release this task now, or nil when it does.
    static func signatureProblem(
        _ approval: ApprovalRecord, task: AdmissionCandidate, payloadSHA256: String, verifier: DecisionVerifier,
        now: Int64
    ) -> String? {
        guard let signed = approval.signed else { return "it carries no operator's signature" }
        let statement: DecisionStatement
        do {
            statement = try DecisionStatement(text: signed.statement)
        } catch {
            return "its signed statement cannot be read"
        }
        guard statement.decision == .approve, statement.approvalID == approval.id, statement.taskID == task.id
        else { return "the signature is for another decision" }
        guard statement.type == task.typeName else {
            return "it was signed for type \(statement.type), the task is now \(task.typeName)"
        }
        guard statement.payloadSHA256 == payloadSHA256 else { return "it was signed for another payload" }
        guard statement.attempt == task.attempts.addingReportingOverflow(1).partialValue else {
            return
                "it was signed for attempt \(statement.attempt), this would be attempt \(task.attempts.addingReportingOverflow(1).partialValue)"
        }
        guard now <= statement.validUntil, statement.validUntil - statement.at <= verifier.runWithin.milliseconds
        else {
            return "it was to run by \(Timestamp.format(statement.validUntil)) (approvals.run_within)"
        }
        guard approval.decidedBy == statement.principal else {
            return "the decider recorded (\(approval.decidedBy ?? "none")) is not its signer (\(statement.principal))"
        }
        do {
            _ = try verifier.verify(
                signed.statement, signature: signed.signature, principal: statement.principal, at: now)
        } catch {
            return error.description
        }
        return nil
    }

}

extension Database {
    /// The approved, unused request that may release this task's payload, and whether the ledger
    /// already has a claim that used it.
    func approvalEvidence(taskID: Int64, payloadSHA256: String) throws -> ApprovalEvidence? {
        guard let approval = try approvalAllowing(taskID: taskID, payloadSHA256: payloadSHA256) else { return nil }
        let claimed =
            try Bool.fetchOne(
                cachedStatement(
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM ledger WHERE task_id = ? AND event = 'claimed'
                                       AND json_extract(detail, '$.approval_id') = ?)
                        """), arguments: [taskID, approval.id]) == true
        return ApprovalEvidence(approval: approval, claimedBefore: claimed)
    }
}
