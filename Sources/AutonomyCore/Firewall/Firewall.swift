import GRDB

/// The firewall's verdict on a task about to run (checked again right before execution, so
/// nothing slips through a config change or a direct database write).
enum Admission: Equatable {
    /// Run it; with the approval that allows it, if it needed one.
    case run(approvalID: Int64?)
    /// Send it back to approval for its current payload.
    case hold(reason: String, payloadSHA256: String)
    /// Never run it.
    case block(reason: String)
}

extension Database {
    /// Decides whether a queued task may run now: its type is declared (checked by the caller), its
    /// current rating allows it, and, if it needs a human's yes, an approval exists for the hash of
    /// the payload as it is stored *now* (recomputed here, not read from the row).
    func admit(taskID: Int64, type: TaskType, payload: String, storedSHA256: String) throws -> Admission {
        guard let value = try? JSONValue.parse(payload) else {
            return .block(reason: "the stored payload is not valid JSON: it was changed outside autonomy")
        }
        let hash = payload.sha256Hex
        let rating = type.rate(value)
        let changed = hash != storedSHA256
        guard rating.safety == .dangerous || changed else { return .run(approvalID: nil) }
        if let approval = try approvalAllowing(taskID: taskID, payloadSHA256: hash) {
            return .run(approvalID: approval.id)
        }
        let reason =
            changed
            ? "the payload changed after it was enqueued (its SHA-256 no longer matches): it needs a new approval"
            : "rated dangerous: " + rating.reasons.joined(separator: "; ")
        return .hold(reason: reason, payloadSHA256: hash)
    }
}
