/// Whether a finished attempt reached its target. The worker decides done / retry / dead from this
/// alone, so the verification layer plugs in here.
public enum Verdict: Sendable, Equatable {
    case passed(evidence: String)
    case failed(reason: String)

    /// Until a type declares verifiers, the handler's own exit status is the only evidence there is.
    static func fromHandler(_ outcome: HandlerOutcome) -> Verdict {
        if outcome.status.succeeded { return .passed(evidence: "handler exited 0") }
        return .failed(reason: outcome.errorSummary ?? "the handler failed")
    }
}
