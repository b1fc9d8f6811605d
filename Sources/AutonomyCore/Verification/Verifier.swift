import Foundation

/// One check of objective evidence that a task reached its target, declared under a type's
/// `verify`. All of a type's verifiers must pass for the task to be done.
public struct Verifier: Sendable {
    public var kind: Kind
    /// How many times to look before an inconclusive answer counts as a failure (evidence that
    /// lags: an email that takes seconds to show up).
    public var attempts: Int = 1
    /// The wait between two looks.
    public var interval: Interval = .seconds(5)

    public enum Kind: Sendable {
        case command(CommandCheck)
        case http(HTTPCheck)
        case file(FileCheck)
        case json(ValueAssertion)
        /// Built in, for `apply_remediation`: the action took effect and its finding no longer holds.
        case finding
    }

    public init(kind: Kind) { self.kind = kind }

    /// `command`, `http`, `file` or `json`, for the ledger and listings.
    public var name: String {
        switch kind {
        case .command: return "command"
        case .http: return "http"
        case .file: return "file"
        case .json: return "json"
        case .finding: return "finding"
        }
    }
}

/// A program (argv, no shell) that gets the task as JSON on stdin: exit 0 passes, 1 fails, anything
/// else (or a time-out) is an error of the verifier. Its first line of stdout is the evidence.
public struct CommandCheck: Sendable {
    public var argv: [String]
    public var timeout: Interval = .seconds(30)
}

/// An HTTP request whose answer is the evidence. Payload and result fields reach the URL only
/// through `{{payload.PATH}}` / `{{result.PATH}}` placeholders, percent-encoded.
public struct HTTPCheck: Sendable {
    public var method: String = "GET"
    public var url: String
    /// Statuses that pass; another 4xx fails; 5xx, 429 and transport errors are inconclusive.
    public var expectStatus: [Int] = [200]
    /// An assertion on the JSON body.
    public var body: ValueAssertion?
    public var timeout: Interval = .seconds(10)
}

/// A file the handler should have written.
public struct FileCheck: Sendable {
    /// May use `{{payload.PATH}}` / `{{result.PATH}}` placeholders.
    public var path: String
    public var nonEmpty = false
    /// A regular expression the content must contain.
    public var contains: CompiledPattern?
    /// The file was modified after the attempt started.
    public var modifiedAfterStart = false
}

/// An assertion on a JSON value at a path: it exists, equals, is non-empty, matches a regex, or is a
/// number in a range. Several may be combined; all must hold.
public struct ValueAssertion: Sendable {
    public var path: String
    public var equals: JSONValue?
    public var nonEmpty = false
    public var regex: CompiledPattern?
    public var min: Double?
    public var max: Double?
}

/// A regular expression with its source text, shareable across threads.
public struct CompiledPattern: @unchecked Sendable {
    public let pattern: String
    let regex: Regex<AnyRegexOutput>

    public init(_ pattern: String) throws {
        self.pattern = pattern
        regex = try Regex(pattern)
    }
}

extension ValueAssertion {
    /// Checks `document` (a result, or a body); `nil` evidence is never a pass.
    public func check(_ document: JSONValue?) -> (passed: Bool, evidence: String) {
        guard let document else { return (false, "no JSON to check (no evidence is never a pass)") }
        guard let value = document[path: path] else { return (false, "\(path) is missing") }
        let shown = String(value.canonicalText.prefix(200))
        if let equals, value != equals, value.canonicalText != equals.canonicalText {
            return (false, "\(path) is \(shown), expected \(equals.canonicalText)")
        }
        if nonEmpty {
            switch value {
            case .null: return (false, "\(path) is null")
            case .string(let text) where text.isEmpty: return (false, "\(path) is an empty string")
            case .array(let items) where items.isEmpty: return (false, "\(path) is an empty array")
            case .object(let members) where members.isEmpty: return (false, "\(path) is an empty object")
            default: break
            }
        }
        if let regex {
            // A pattern runs on bounded input only: one bad pattern cannot stall the worker.
            if case .string(let text) = value, text.utf8.count > 64 * 1024 {
                return (false, "\(path) is over 64 KiB, too long to match /\(regex.pattern)/")
            }
            guard case .string(let text) = value, (try? regex.regex.firstMatch(in: text)) != nil else {
                return (false, "\(path) (\(shown)) does not match /\(regex.pattern)/")
            }
        }
        if min != nil || max != nil {
            let number: Double
            switch value {
            case .int(let integer): number = Double(integer)
            case .double(let double): number = double
            default: return (false, "\(path) is \(shown), not a number")
            }
            if let min, number < min { return (false, "\(path) is \(shown), below \(min)") }
            if let max, number > max { return (false, "\(path) is \(shown), above \(max)") }
        }
        return (true, "\(path) = \(shown)")
    }
}

extension Verifier: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case command, http, file, json, attempts, interval }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        var kinds: [Kind] = []
        if let check = try container.decodeIfPresent(CommandCheck.self, forKey: .command) {
            kinds.append(.command(check))
        }
        if let check = try container.decodeIfPresent(HTTPCheck.self, forKey: .http) { kinds.append(.http(check)) }
        if let check = try container.decodeIfPresent(FileCheck.self, forKey: .file) { kinds.append(.file(check)) }
        if let check = try container.decodeIfPresent(ValueAssertion.self, forKey: .json) { kinds.append(.json(check)) }
        guard kinds.count == 1, let kind = kinds.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected exactly one of \"command\", \"http\", \"file\", \"json\""))
        }
        self.init(kind: kind)
        attempts = try container.decode(
            .attempts, default: attempts, in: 1...100, expected: "expected 1 to 100")
        interval = try container.decode(
            .interval, default: interval, in: Interval.zero...Interval.minutes(10), expected: "expected at most \"10m\""
        )
    }
}

extension CommandCheck: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case argv, timeout }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let argv = try container.decodeIfPresent([String].self, forKey: .argv) ?? []
        guard let program = argv.first, !program.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .argv, in: container, debugDescription: "expected a non-empty array")
        }
        self.init(argv: argv)
        timeout = try container.interval(.timeout, default: timeout, from: .seconds(1), to: .hours(1))
    }
}

extension HTTPCheck: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case method, url
        case expectStatus = "expect_status"
        case body, timeout
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let url = try container.decode(String.self, forKey: .url)
        // The placeholders are filled in later; the rest must already be an http(s) address, and
        // task data may never choose the scheme or the host (it could point at its own "evidence").
        let authorityEnd =
            url.range(of: "://").flatMap { scheme in
                url[scheme.upperBound...].firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" })
            } ?? url.endIndex
        guard !url[..<authorityEnd].contains("{{") else {
            throw DecodingError.dataCorruptedError(
                forKey: .url, in: container,
                debugDescription: "placeholders may stand in the path or query only, never in the host")
        }
        guard isHTTPAddress(url.replacingOccurrences(of: "{{", with: "x").replacingOccurrences(of: "}}", with: "x"))
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .url, in: container,
                debugDescription: "expected an http(s) address, with {{payload.PATH}} or {{result.PATH}} placeholders")
        }
        self.init(url: url)
        method = try container.decodeIfPresent(String.self, forKey: .method)?.uppercased() ?? method
        guard ["GET", "HEAD", "POST"].contains(method) else {
            throw DecodingError.dataCorruptedError(
                forKey: .method, in: container, debugDescription: "expected GET, HEAD or POST")
        }
        expectStatus = try container.decodeIfPresent([Int].self, forKey: .expectStatus) ?? expectStatus
        guard !expectStatus.isEmpty, expectStatus.allSatisfy({ (100...599).contains($0) }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .expectStatus, in: container, debugDescription: "expected a non-empty array of HTTP statuses")
        }
        body = try container.decodeIfPresent(ValueAssertion.self, forKey: .body)
        timeout = try container.interval(.timeout, default: timeout, from: .seconds(1), to: .minutes(10))
    }
}

extension FileCheck: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, exists
        case nonEmpty = "non_empty"
        case contains
        case modifiedAfterStart = "modified_after_start"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = try container.decode(String.self, forKey: .path)
        guard !path.isEmpty else {
            throw DecodingError.dataCorruptedError(forKey: .path, in: container, debugDescription: "expected a path")
        }
        self.init(path: path)
        if let exists = try container.decodeIfPresent(Bool.self, forKey: .exists), !exists {
            throw DecodingError.dataCorruptedError(
                forKey: .exists, in: container, debugDescription: "a file check always requires the file to exist")
        }
        nonEmpty = try container.decodeIfPresent(Bool.self, forKey: .nonEmpty) ?? false
        if let pattern = try container.decodeIfPresent(String.self, forKey: .contains) {
            do {
                contains = try CompiledPattern(pattern)
            } catch {
                throw DecodingError.dataCorruptedError(
                    forKey: .contains, in: container, debugDescription: "not a valid regular expression: \(error)")
            }
        }
        modifiedAfterStart = try container.decodeIfPresent(Bool.self, forKey: .modifiedAfterStart) ?? false
    }
}

extension ValueAssertion: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, exists, equals
        case nonEmpty = "non_empty"
        case regex, min, max
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(path: try container.decode(String.self, forKey: .path))
        if let exists = try container.decodeIfPresent(Bool.self, forKey: .exists), !exists {
            throw DecodingError.dataCorruptedError(
                forKey: .exists, in: container, debugDescription: "an assertion always requires the value to exist")
        }
        if container.contains(.equals) { equals = try container.decode(JSONValue.self, forKey: .equals) }
        nonEmpty = try container.decodeIfPresent(Bool.self, forKey: .nonEmpty) ?? false
        if let pattern = try container.decodeIfPresent(String.self, forKey: .regex) {
            do {
                regex = try CompiledPattern(pattern)
            } catch {
                throw DecodingError.dataCorruptedError(
                    forKey: .regex, in: container, debugDescription: "not a valid regular expression: \(error)")
            }
        }
        min = try container.decodeIfPresent(Double.self, forKey: .min)
        max = try container.decodeIfPresent(Double.self, forKey: .max)
    }
}
