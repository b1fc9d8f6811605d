import GRDB

/// Whether a finished attempt reached its target. The worker decides done / retry / dead from this
/// alone.
public enum Verdict: Sendable, Equatable {
    case passed(evidence: String)
    case failed(reason: String)

    /// For a type without verifiers, the handler's exit status is the only evidence there is.
    static func fromHandler(_ outcome: HandlerOutcome) -> Verdict {
        if outcome.status.succeeded { return .passed(evidence: "handler exited 0 (the type declares no verifier)") }
        return .failed(reason: outcome.errorSummary ?? "the handler failed")
    }

    /// A verifier found the work undone: its check failed. A check that could not tell or could
    /// not run proves nothing either way: it keeps a task from being done, but never reopens one.
    static func disproves(_ checks: [CheckResult]) -> Bool {
        checks.contains { $0.outcome == .fail }
    }

    /// All verifiers must pass. A failed, broken or (after all its looks) inconclusive verifier
    /// fails the attempt: no evidence is never a pass.
    static func combine(_ checks: [CheckResult]) -> Verdict {
        guard !checks.isEmpty else { return .failed(reason: "no verifier ran (no evidence is never a pass)") }
        if let bad = checks.first(where: { $0.outcome != .pass }) {
            let which = "verifier \(bad.index + 1) (\(bad.verifier))"
            switch bad.outcome {
            case .fail: return .failed(reason: "\(which) failed: \(bad.evidence)")
            case .error: return .failed(reason: "\(which) could not check: \(bad.evidence)")
            case .inconclusive, .pass:
                return .failed(reason: "\(which) could not tell after \(bad.looks) look(s): \(bad.evidence)")
            }
        }
        return .passed(evidence: checks.map { "\($0.verifier): \($0.evidence)" }.joined(separator: "; "))
    }
}

extension Database {
    /// A ledger row per verifier (outcome, evidence, duration); an inconclusive one also alerts the
    /// operator, since it was treated as a failure without anyone knowing.
    func recordChecks(_ checks: [CheckResult], task: TaskRecord, notify: NotifySettings, now: Int64) throws {
        for check in checks {
            // The evidence is free text: a note beside the chained row, not in it.
            let detail: JSONValue = [
                "index": .int(Int64(check.index)), "verifier": .string(check.verifier),
                "outcome": .string(check.outcome.rawValue), "duration_ms": .int(check.durationMs),
                "looks": .int(Int64(check.looks)),
            ]
            try appendLedger(
                .verified, at: now, taskID: task.id, type: task.type, attempt: task.attempts,
                durationMs: check.durationMs, detail: detail, notes: ["evidence": check.evidence])
        }
        if checks.contains(where: { $0.outcome == .inconclusive }) {
            try queueNotification(.verificationInconclusive, taskID: task.id, approvalID: nil, notify: notify, now: now)
        }
    }
}
