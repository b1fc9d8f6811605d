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
    }

    public init(kind: Kind) { self.kind = kind }

    /// `command`, `http`, `file` or `json`, for the ledger and listings.
    public var name: String {
        switch kind {
        case .command: return "command"
        case .http: return "http"
        case .file: return "file"
        case .json: return "json"
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
