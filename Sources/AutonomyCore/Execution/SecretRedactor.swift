import Foundation

/// Replaces the values of the secrets the configuration names (`api_key_env`, `secret_env`,
/// `pass_env`) with `[redacted NAME]` in whatever a handler or a verifier hands back, before any of
/// it is stored: a handler that prints its API key leaves no key in the database or the ledger.
public struct SecretRedactor: Sendable {
    private let secrets: [(name: String, forms: [String])]

    public init(configuration: Configuration, environment: [String: String] = ProcessEnvironment.variables) {
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

    /// How much of a secret a cut may leave in plain sight: shorter pieces are not told apart
    /// from ordinary text (`sk-`, `htt`).
    static let shortestPiece = 4

    /// Text cut at its end (or its start) that ends with the start of a secret (or starts with its
    /// end): that piece is replaced. Linear in the secret's length (the longest overlap, found
    /// as Knuth–Morris–Pratt finds it), so a long key costs no more than reading it.
    func redactCut(_ text: String, atEnd: Bool) -> String {
        let bytes = Array(text.utf8)
        var longest: (length: Int, name: String)?
        for secret in secrets {
            for form in secret.forms {
                let pattern = Array(form.utf8)
                let tail =
                    atEnd ? Array(bytes.suffix(pattern.count - 1)) : Array(bytes.prefix(pattern.count - 1).reversed())
                let length = Self.overlap(tail, atEndWithStartOf: atEnd ? pattern : Array(pattern.reversed()))
                if length >= Self.shortestPiece, length > (longest?.length ?? 0) { longest = (length, secret.name) }
            }
        }
        guard let longest else { return text }
        let marker = Array("[redacted \(longest.name), cut]".utf8)
        let kept: [UInt8] =
            atEnd ? Array(bytes.dropLast(longest.length)) + marker : marker + Array(bytes.dropFirst(longest.length))
        return String(decoding: kept, as: UTF8.self)
    }

    /// The length of the longest end of `text` that is a start of `pattern` (shorter than it).
    static func overlap(_ text: [UInt8], atEndWithStartOf pattern: [UInt8]) -> Int {
        guard !pattern.isEmpty else { return 0 }
        var failure = [Int](repeating: 0, count: pattern.count)
        var matched = 0
        for index in 1..<max(1, pattern.count) {
            while matched > 0, pattern[index] != pattern[matched] { matched = failure[matched - 1] }
            if pattern[index] == pattern[matched] { matched += 1 }
            failure[index] = matched
        }
        matched = 0
        for byte in text {
            while matched > 0, byte != pattern[matched] { matched = failure[matched - 1] }
            if byte == pattern[matched] { matched += 1 }
            if matched == pattern.count { matched = failure[matched - 1] }  // a whole one was redacted already
        }
        return matched
    }

    /// A secret in the forms a program may print it: as is, or escaped as JSON writes a string,
    /// each also with the characters encoders commonly write as `\uXXXX` escaped (Go: `<`, `>`,
    /// `&`, U+2028, U+2029; Python: everything not ASCII; PHP: `/` as `\/`, and not ASCII), in
    /// lower- and uppercase hex, and with every character but letters and digits escaped.
    static func forms(of value: String) -> [String] {
        func escaped(_ base: String, uppercase: Bool, _ shouldEscape: (Unicode.Scalar) -> Bool) -> String {
            var text = ""
            for scalar in base.unicodeScalars {
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
        func go(_ scalar: Unicode.Scalar) -> Bool {
            "<>&".unicodeScalars.contains(scalar) || scalar.value == 0x2028 || scalar.value == 0x2029
        }
        func every(_ scalar: Unicode.Scalar) -> Bool {
            !(scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)))
        }
        let canonical = String(JSONValue.string(value).canonicalText.dropFirst().dropLast())
        var forms: [String] = []
        for base in [value, canonical] {
            let slashed = base.replacingOccurrences(of: "/", with: "\\/")
            forms += [base, slashed]
            for uppercase in [false, true] {
                forms += [
                    escaped(base, uppercase: uppercase, go), escaped(base, uppercase: uppercase) { !$0.isASCII },
                    escaped(slashed, uppercase: uppercase) { !$0.isASCII },
                ]
            }
        }
        for uppercase in [false, true] { forms.append(escaped(value, uppercase: uppercase, every)) }
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
