/// A request that the trust rules refuse: an unsigned or wrongly signed decision, a producer
/// asking for what it is not allowed. Nothing was written when one of these is thrown.
public enum TrustError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No `allowed_signers` file is configured: nobody can approve anything dangerous.
    case noSigners
    case signersUnusable(path: String, reason: String)
    /// The signing key is not listed in `allowed_signers` (for this principal, now).
    case unknownSigner(fingerprint: String, path: String)
    case badSignature(String)
    /// The signed statement does not describe the request as it stands.
    case statementMismatch(String)
    case noSigningKey
    case signingFailed(String)
    /// A Unix user the `producers` section does not list.
    case notAProducer(user: String)
    case typeNotAllowed(producer: String, type: String, allowed: [String])
    case verbNotAllowed(producer: String, verb: String)
    case sourceForged(claimed: String, actual: String)
    case rateLimited(producer: String, limit: Int, dangerous: Bool, retryAfterSeconds: Int64)
    /// A line of an `enqueue --batch` input was refused; the whole batch was.
    indirect case batchLine(Int, TrustError)

    public var description: String {
        switch self {
        case .noSigners:
            return
                "no operator can approve or reject: approvals.allowed_signers names no file of operators' keys. Make a key with 'autonomy operator init', put the line it prints in a file (e.g. /etc/autonomy/allowed_signers) and name that file in approvals.allowed_signers"
        case .signersUnusable(let path, let reason):
            return "the allowed_signers file \(path) cannot be used: \(reason)"
        case .unknownSigner(let fingerprint, let path):
            return
                "the key \(fingerprint) is not allowed to sign decisions: add its line ('autonomy operator init' prints it) to \(path)"
        case .badSignature(let reason):
            return "the decision's signature is not valid: \(reason)"
        case .statementMismatch(let reason):
            return "the signed decision does not match the request: \(reason)"
        case .noSigningKey:
            return
                "no signing key: pass --key FILE, set AUTONOMY_SIGNING_KEY, or make one with 'autonomy operator init'"
        case .signingFailed(let reason):
            return "cannot sign the decision: \(reason)"
        case .notAProducer(let user):
            return
                "the Unix user \(user) is not a producer here: an operator lists it under producers.users (or one of its groups under producers.groups)"
        case .typeNotAllowed(let producer, let type, let allowed):
            let list = allowed.isEmpty ? "none" : allowed.sorted().joined(separator: ", ")
            return "producer \(producer) may not enqueue \(type) tasks (allowed: \(list))"
        case .verbNotAllowed(let producer, let verb):
            return "producer \(producer) may not \(verb) through the gate"
        case .sourceForged(let claimed, let actual):
            return "the source is who you are (\(actual)), not \"\(claimed)\": leave --source out"
        case .rateLimited(let producer, let limit, let dangerous, let retry):
            let what = dangerous ? "dangerous tasks (each asks an operator)" : "tasks"
            return
                "producer \(producer) has enqueued its limit of \(limit) \(what) in the last hour; try again in \(Interval(milliseconds: retry * 1000))"
        case .batchLine(let line, let error):
            return "line \(line): \(error.description) (nothing was enqueued)"
        }
    }
}
