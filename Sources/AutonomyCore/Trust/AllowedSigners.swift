import Foundation

/// The operators' public keys, in OpenSSH's `allowed_signers` format (as git's
/// `gpg.ssh.allowedSignersFile` uses): `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]` a line.
///
/// Options understood: `namespaces="…"` (a line that names namespaces without
/// `autonomy-decision` does not count here), `valid-after="…"`, `valid-before="…"`. A
/// `cert-authority` line is left to `ssh-keygen`.
public struct AllowedSigners: Sendable {
    public struct Entry: Sendable {
        /// Patterns (`*`, `?`, and `!` to exclude), as OpenSSH matches them.
        public var principals: [String]
        public var namespaces: [String]?
        public var validAfter: Int64?
        public var validBefore: Int64?
        public var certificateAuthority = false
        public var key: SSHPublicKey
        public var line: Int

        /// The first principal that is a plain name (no pattern), the one a signature is made as.
        public var name: String? {
            principals.first { !$0.hasPrefix("!") && !$0.contains("*") && !$0.contains("?") }
        }

        func allows(namespace: String, at now: Int64) -> Bool {
            if let namespaces, !PatternList.matches(namespaces, namespace) { return false }
            if let validAfter, now < validAfter { return false }
            if let validBefore, now > validBefore { return false }
            return true
        }

        func matches(principal: String) -> Bool { PatternList.matches(principals, principal) }
    }

    /// The file these came from.
    public var path: String
    public var entries: [Entry] = []
    /// Lines that were skipped, and why.
    public var warnings: [String] = []

    /// Reads and parses the file, after checking that nobody but root or its owner can change it.
    ///
    /// - Throws: `TrustError.signersUnusable` when it cannot be read or is writable by others.
    public static func load(path: String) throws(TrustError) -> AllowedSigners {
        do {
            try FileTrust.check(path, what: "the allowed_signers file")
        } catch {
            throw .signersUnusable(path: path, reason: error.description)
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw .signersUnusable(path: path, reason: "cannot read it as text")
        }
        return parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) -> AllowedSigners {
        var signers = AllowedSigners(path: path)
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                signers.entries.append(try entry(line, number: index + 1))
            } catch {
                signers.warnings.append("\(path):\(index + 1): \(error); line skipped")
            }
        }
        return signers
    }

    private static func entry(_ line: String, number: Int) throws(SSHFormatError) -> Entry {
        var fields = tokens(line)
        guard fields.count >= 3 else { throw .malformed("expected PRINCIPALS [OPTIONS] KEYTYPE BASE64") }
        let principals = unquote(fields.removeFirst()).split(separator: ",").map(String.init)
        var options: [String] = []
        // The options field is there when the next field is not a key type.
        if let first = fields.first, !["ssh-", "ecdsa-", "sk-"].contains(where: { first.hasPrefix($0) }) {
            options = splitOptions(fields.removeFirst())
        }
        guard fields.count >= 2 else { throw .malformed("expected a key type and its base64 key") }
        let key = try SSHPublicKey(openSSH: fields[0] + " " + fields[1])
        var entry = Entry(principals: principals, key: key, line: number)
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts[0].lowercased()
            let value = parts.count > 1 ? unquote(parts[1]) : nil
            switch (name, value) {
            case ("cert-authority", nil):
                entry.certificateAuthority = true
            case ("namespaces", let value?):
                entry.namespaces = value.split(separator: ",").map(String.init)
            case ("valid-after", let value?):
                guard let time = timestamp(value) else { throw .malformed("valid-after \"\(value)\" is not a time") }
                entry.validAfter = time
            case ("valid-before", let value?):
                guard let time = timestamp(value) else { throw .malformed("valid-before \"\(value)\" is not a time") }
                entry.validBefore = time
            default:
                throw .malformed("unknown option \(option)")
            }
        }
        return entry
    }

    /// Splits on blanks, keeping double-quoted text together.
    private static func tokens(_ line: String) -> [String] {
        var result: [String] = []
        var current = ""
        var quoted = false
        for character in line {
            if character == "\"" { quoted.toggle() }
            if (character == " " || character == "\t") && !quoted {
                if !current.isEmpty { result.append(current) }
                current = ""
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    private static func splitOptions(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            if character == "\"" { quoted.toggle() }
            if character == "," && !quoted {
                result.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        result.append(current)
        return result.filter { !$0.isEmpty }
    }

    private static func unquote(_ text: String) -> String {
        text.count >= 2 && text.hasPrefix("\"") && text.hasSuffix("\"") ? String(text.dropFirst().dropLast()) : text
    }

    /// `YYYYMMDD[HHMM[SS]][Z]`: UTC with `Z`, else the machine's zone (as OpenSSH reads it).
    static func timestamp(_ text: String) -> Int64? {
        let utc = text.hasSuffix("Z")
        let digits = utc ? String(text.dropLast()) : text
        guard [8, 12, 14].contains(digits.count), digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else {
            return nil
        }
        let padded = Array(digits.padding(toLength: 14, withPad: "0", startingAt: 0))
        func part(_ from: Int, _ count: Int) -> Int { Int(String(padded[from..<from + count])) ?? 0 }
        var components = DateComponents()
        (components.year, components.month, components.day) = (part(0, 4), part(4, 2), part(6, 2))
        (components.hour, components.minute, components.second) = (part(8, 2), part(10, 2), part(12, 2))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utc ? .gmt : .current
        guard let date = calendar.date(from: components) else { return nil }
        // A date the calendar had to mend (month 13, 31 February) is no date: the line is skipped.
        let back = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        guard back.year == components.year, back.month == components.month, back.day == components.day,
            back.hour == components.hour, back.minute == components.minute, back.second == components.second
        else { return nil }
        return Int64(date.timeIntervalSince1970 * 1000)
    }

    /// The principal a key signs decisions as: the first plain name of the first line that lists
    /// the key and allows the decision namespace now.
    public func principal(for key: SSHPublicKey, at now: Int64) -> String? {
        entries.first {
            !$0.certificateAuthority && $0.key == key
                && $0.allows(namespace: SSHSignature.decisionNamespace, at: now) && $0.name != nil
        }?.name
    }

    /// Whether a line lists `key` for `principal` and allows the decision namespace at `now`.
    public func allows(_ key: SSHPublicKey, as principal: String, at now: Int64) -> Bool {
        entries.contains {
            !$0.certificateAuthority && $0.key == key && $0.matches(principal: principal)
                && $0.allows(namespace: SSHSignature.decisionNamespace, at: now)
        }
    }

    /// How many lines let a key sign decisions (at some time).
    public var decisionSignerCount: Int {
        entries.filter {
            !$0.certificateAuthority
                && $0.namespaces.map { PatternList.matches($0, SSHSignature.decisionNamespace) } ?? true
        }.count
    }
}

/// OpenSSH's pattern lists (`match_pattern_list`): `*` and `?` are wildcards, nothing else is; an
/// entry starting with `!` excludes what it matches, whatever else matches.
enum PatternList {
    static func matches(_ patterns: [String], _ text: String) -> Bool {
        var matched = false
        for pattern in patterns {
            if pattern.hasPrefix("!") {
                if matches(Array(pattern.dropFirst().unicodeScalars), Array(text.unicodeScalars)) { return false }
            } else if matches(Array(pattern.unicodeScalars), Array(text.unicodeScalars)) {
                matched = true
            }
        }
        return matched
    }

    private static func matches(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar]) -> Bool {
        var (p, t) = (0, 0)
        var star: (pattern: Int, text: Int)?
        while t < text.count {
            if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                star = (p, t)
                p += 1
            } else if let last = star {
                p = last.pattern + 1
                t = last.text + 1
                star = (last.pattern, last.text + 1)
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}
