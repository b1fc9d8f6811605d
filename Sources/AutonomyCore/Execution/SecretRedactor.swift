import Foundation

/// Replaces the values of the secrets the configuration names (`api_key_env`, `secret_env`,
/// `pass_env`) with `[redacted NAME]` in whatever a handler or a verifier hands back, before any of
/// it is stored: a handler that prints its API key leaves no key in the database or the ledger.
public struct SecretRedactor: Sendable {
    private let secrets: [(name: String, value: String)]

    public init(configuration: Configuration, environment: [String: String] = ProcessInfo.processInfo.environment) {
        var names = configuration.secretVariableNames.union(configuration.notify.passEnv)
        for type in configuration.taskTypes.values {
            if case .exec(let exec) = type.handler { names.formUnion(exec.passEnv) }
        }
        for remediation in configuration.remediations.values { names.formUnion(remediation.exec.passEnv) }
        // Longest first, so a secret that contains another is replaced whole. Very short values
        // would blank out ordinary text and protect nothing.
        secrets = names.compactMap { name in
            environment[name].flatMap { $0.count >= 4 ? (name, $0) : nil }
        }.sorted { $0.value.count > $1.value.count }
    }

    public func redact(_ text: String) -> String {
        secrets.reduce(text) { text, secret in
            text.contains(secret.value)
                ? text.replacingOccurrences(of: secret.value, with: "[redacted \(secret.name)]") : text
        }
    }

    public func redact(_ outcome: HandlerOutcome) -> HandlerOutcome {
        guard !secrets.isEmpty else { return outcome }
        var outcome = outcome
        outcome.stdout = redact(outcome.stdout)
        outcome.stderrTail = redact(outcome.stderrTail)
        if case .couldNotStart(let reason) = outcome.status { outcome.status = .couldNotStart(redact(reason)) }
        return outcome
    }

    public func redact(_ checks: [CheckResult]) -> [CheckResult] {
        guard !secrets.isEmpty else { return checks }
        return checks.map { check in
            var check = check
            check.evidence = redact(check.evidence)
            return check
        }
    }
}
