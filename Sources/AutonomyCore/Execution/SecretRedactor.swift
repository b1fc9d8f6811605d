import Foundation

/// Replaces the values of the secrets the configuration names (`api_key_env`, `secret_env`,
/// `pass_env`) with `[redacted NAME]` in whatever a handler or a verifier hands back, before any of
/// it is stored: a handler that prints its API key leaves no key in the database or the ledger.
public struct SecretRedactor: Sendable {
    private let secrets: [(name: String, forms: [String])]

    public init(configuration: Configuration, environment: [String: String] = ProcessInfo.processInfo.environment) {
        var names = configuration.secretVariableNames.union(configuration.notify.passEnv)
        for type in configuration.taskTypes.values {
            if case .exec(let exec) = type.handler { names.formUnion(exec.passEnv) }
        }
        for remediation in configuration.remediations.values { names.formUnion(remediation.exec.passEnv) }
        // Longest first, so a secret that contains another is replaced whole. Very short values
        // would blank out ordinary text and protect nothing.
        secrets = names.compactMap { name in
            environment[name].flatMap { $0.count >= 4 ? (name, Self.forms(of: $0)) : nil }
        }.sorted { $0.forms[0].count > $1.forms[0].count }
    }

    public func redact(_ text: String) -> String {
        secrets.reduce(text) { text, secret in
            secret.forms.reduce(text) { text, form in
                text.contains(form) ? text.replacingOccurrences(of: form, with: "[redacted \(secret.name)]") : text
            }
        }
    }

    /// A handler's outcome as it may be stored: every form of a secret replaced, in the output as
    /// printed and in the JSON it is stored as (which decodes escapes such as `\u0068`), and the
    /// piece of one that a cut at the output limits left (`[redacted NAME, cut]`).
    public func redact(_ outcome: HandlerOutcome) -> HandlerOutcome {
        guard !secrets.isEmpty else { return outcome }
        var outcome = outcome
        outcome.stdout = redact(outcome.stdout)
        if let stored = outcome.resultJSON {
            let redacted = redact(stored)
            if redacted != stored { outcome.stdout = redacted }
        }
        if outcome.stdoutTruncated { outcome.stdout = redactCut(outcome.stdout, atEnd: true) }
        outcome.stderrTail = redact(outcome.stderrTail)
        if outcome.stderrTruncated { outcome.stderrTail = redactCut(outcome.stderrTail, atEnd: false) }
        if case .couldNotStart(let reason) = outcome.status { outcome.status = .couldNotStart(redact(reason)) }
        return outcome
    }

    /// How much of a secret a cut may leave in plain sight: fewer characters than this are not
    /// told apart from ordinary text.
    static let shortestPiece = 3

    /// Text cut at its end (or its start) that ends with the start of a secret (or starts with its
    /// end): that piece is replaced.
    func redactCut(_ text: String, atEnd: Bool) -> String {
        for secret in secrets {
            for form in secret.forms {
                let characters = Array(form)
                for length in stride(from: characters.count - 1, through: Self.shortestPiece, by: -1) {
                    let piece = String(atEnd ? characters.prefix(length) : characters.suffix(length))
                    if atEnd, text.hasSuffix(piece) {
                        return String(text.dropLast(piece.count)) + "[redacted \(secret.name), cut]"
                    }
                    if !atEnd, text.hasPrefix(piece) {
                        return "[redacted \(secret.name), cut]" + String(text.dropFirst(piece.count))
                    }
                }
            }
        }
        return text
    }

    /// A secret in the forms a program may print it: as is; escaped as JSON writes a string; and
    /// with the characters JSON encoders commonly write as `\uXXXX` escaped (Go: `<`, `>`, `&`,
    /// U+2028, U+2029; PHP: `/` as `\/`; Python: everything not ASCII), each way alone and all at once.
    static func forms(of value: String) -> [String] {
        func escaped(uppercase: Bool = false, _ shouldEscape: (Unicode.Scalar) -> Bool) -> String {
            var text = ""
            for scalar in value.unicodeScalars {
                guard shouldEscape(scalar) else {
                    text.unicodeScalars.append(scalar)
                    continue
                }
                for unit in String(scalar).utf16 {
                    let hex = String(unit, radix: 16, uppercase: uppercase)
                    text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
            }
            return text
        }
        let canonical = String(JSONValue.string(value).canonicalText.dropFirst().dropLast())
        func go(_ scalar: Unicode.Scalar) -> Bool {
            "<>&".unicodeScalars.contains(scalar) || scalar.value == 0x2028 || scalar.value == 0x2029
        }
        func every(_ scalar: Unicode.Scalar) -> Bool {
            !(scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)))
        }
        var forms = [value, canonical, value.replacingOccurrences(of: "/", with: "\\/")]
        for uppercase in [false, true] {
            forms += [escaped(uppercase: uppercase, go), escaped(uppercase: uppercase) { !$0.isASCII }]
            forms.append(escaped(uppercase: uppercase, every))
        }
        var seen = Set<String>()
        return forms.filter { seen.insert($0).inserted }
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
