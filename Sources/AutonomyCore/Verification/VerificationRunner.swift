import AsyncHTTPClient
import Foundation
import NIOCore

/// How one verifier's check ended.
public enum CheckOutcome: String, Sendable, Equatable, Encodable {
    case pass, fail
    /// Could not tell (HTTP 5xx or 429, a time-out, an unreachable server): look again later.
    case inconclusive
    /// The verifier itself is broken (its program could not run, its template has no value).
    case error
}

/// One verifier's answer, with the evidence it saw (bounded) and how long it took.
public struct CheckResult: Sendable, Equatable, Encodable {
    public var index: Int
    public var verifier: String
    public var outcome: CheckOutcome
    public var evidence: String
    public var durationMs: Int64
    /// How many looks it took.
    public var looks: Int

    enum CodingKeys: String, CodingKey {
        case index, verifier, outcome, evidence
        case durationMs = "duration_ms"
        case looks
    }
}

/// What the verifiers looked at.
public struct VerificationSubject: Sendable {
    public var task: TaskRecord
    /// The handler's result (its stdout as JSON), if any.
    public var result: JSONValue?
    /// When the attempt being verified started (for `modified_after_start`).
    public var attemptStartedAt: Int64

    public init(task: TaskRecord, result: JSONValue?, attemptStartedAt: Int64) {
        self.task = task
        self.result = result
        self.attemptStartedAt = attemptStartedAt
    }
}

/// Runs a type's verifiers, each up to its `attempts` while the answer is inconclusive.
public struct VerificationRunner: Sendable {
    public var runner: any HandlerRunner
    public var baseDirectory: String
    /// Waits between looks; tests pass one that returns at once.
    public var pause: @Sendable (Interval) async -> Void
    /// The built-in `finding` verifier of fix proposals (see `Remediator.reevaluate`).
    public var reevaluate: (@Sendable (VerificationSubject) async -> (CheckOutcome, String))?

    public init(
        runner: any HandlerRunner, baseDirectory: String,
        pause: @escaping @Sendable (Interval) async -> Void = { try? await Task.sleep(for: $0.duration) },
        reevaluate: (@Sendable (VerificationSubject) async -> (CheckOutcome, String))? = nil
    ) {
        self.runner = runner
        self.baseDirectory = baseDirectory
        self.pause = pause
        self.reevaluate = reevaluate
    }

    public func verify(_ subject: VerificationSubject, with verifiers: [Verifier]) async -> [CheckResult] {
        var results: [CheckResult] = []
        for (index, verifier) in verifiers.enumerated() {
            let started = ContinuousClock.now
            var looks = 0
            var answer: (CheckOutcome, String) = (.error, "not run")
            while looks < verifier.attempts {
                if looks > 0 { await pause(verifier.interval) }
                looks += 1
                answer = await check(verifier.kind, subject)
                if answer.0 != .inconclusive { break }
            }
            let elapsed = ContinuousClock.now - started
            results.append(
                CheckResult(
                    index: index, verifier: verifier.name, outcome: answer.0, evidence: String(answer.1.prefix(500)),
                    durationMs: elapsed.inMilliseconds,
                    looks: looks))
        }
        return results
    }

    private func check(_ kind: Verifier.Kind, _ subject: VerificationSubject) async -> (CheckOutcome, String) {
        switch kind {
        case .json(let assertion):
            let (passed, evidence) = assertion.check(subject.result)
            return (passed ? .pass : .fail, evidence)
        case .file(let check):
            return checkFile(check, subject)
        case .command(let check):
            return await runCommand(check, subject)
        case .http(let check):
            return await request(check, subject)
        case .finding:
            guard let reevaluate else { return (.error, "the finding verifier runs only inside the worker") }
            return await reevaluate(subject)
        }
    }

    // MARK: - file

    private func checkFile(_ check: FileCheck, _ subject: VerificationSubject) -> (CheckOutcome, String) {
        let rendered: String
        do {
            rendered = try Template.render(check.path, subject, encode: Template.pathComponent)
        } catch {
            return (.error, "\(error)")
        }
        let path = ConfigLoader.absolute(rendered, base: baseDirectory)
        var info = stat()
        guard stat(path, &info) == 0 else { return (.fail, "\(path) does not exist") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return (.fail, "\(path) is not a regular file") }
        if check.nonEmpty, info.st_size == 0 { return (.fail, "\(path) is empty") }
        if check.modifiedAfterStart {
            let modified = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
            guard modified >= subject.attemptStartedAt else {
                return (.fail, "\(path) was last modified at \(Timestamp.format(modified)), before the attempt started")
            }
        }
        if let pattern = check.contains {
            guard let handle = FileHandle(forReadingAtPath: path) else { return (.error, "cannot read \(path)") }
            defer { try? handle.close() }
            // A pattern runs on bounded input: the first MiB of the file.
            let data = (try? handle.read(upToCount: 1 << 20)) ?? Data()
            let text = String(decoding: data, as: UTF8.self)
            guard let match = try? pattern.regex.firstMatch(in: text) else {
                return (.fail, "\(path) does not contain /\(pattern.pattern)/")
            }
            return (.pass, "\(path) contains \(String(text[match.range].prefix(200)))")
        }
        return (.pass, "\(path) exists (\(info.st_size) bytes)")
    }

    // MARK: - command

    private func runCommand(_ check: CommandCheck, _ subject: VerificationSubject) async -> (CheckOutcome, String) {
        let input: JSONValue = .object([
            "id": .int(subject.task.id), "type": .string(subject.task.type),
            "attempt": .int(Int64(subject.task.attempts)),
            "payload": (try? JSONValue.parse(subject.task.payload)) ?? .string(subject.task.payload),
            "result": subject.result ?? .null,
        ])
        var task = subject.task
        task.payload = input.canonicalText  // the verifier reads the whole task where a handler reads its payload
        var type = TaskType(name: subject.task.type, handler: .exec(ExecHandler(argv: check.argv)))
        type.timeout = check.timeout
        let outcome = await runner.run(
            HandlerInvocation(
                task: task, type: type, attempt: subject.task.attempts, timeout: check.timeout,
                baseDirectory: baseDirectory, environment: [:]))
        let firstLine = outcome.stdout.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        switch outcome.status {
        case .exited(0): return (.pass, firstLine.isEmpty ? "exit 0" : firstLine)
        case .exited(1): return (.fail, firstLine.isEmpty ? "exit 1" : firstLine)
        default: return (.error, "the verifier " + (outcome.errorSummary ?? "failed"))
        }
    }

    // MARK: - http

    private func request(_ check: HTTPCheck, _ subject: VerificationSubject) async -> (CheckOutcome, String) {
        let url: String
        do {
            url = try Template.render(check.url, subject, encode: Template.urlComponent)
        } catch {
            return (.error, "\(error)")
        }
        let request = {
            var request = HTTPClientRequest(url: url)
            request.method = .init(rawValue: check.method)
            request.headers.add(name: "User-Agent", value: "autonomy-verifier")
            return request
        }()
        let status: Int
        let body: ByteBuffer
        switch await HTTP.fetch(request, timeout: check.timeout, bodyLimit: 1 << 20) {
        case .answered(let code, let bytes): (status, body) = (code, bytes)
        default: return (.inconclusive, "no complete answer within \(check.timeout)")
        }
        // Evidence comes from the address the map names, never from wherever a redirect points.
        if (300..<400).contains(status) { return (.fail, "HTTP \(status): redirects are not followed") }
        if status >= 500 || status == 429 { return (.inconclusive, "HTTP \(status)") }
        guard check.expectStatus.contains(status) else {
            return (.fail, "HTTP \(status), expected \(check.expectStatus.map(String.init).joined(separator: " or "))")
        }
        let bytes = Data(body.readableBytesView)
        guard let assertion = check.body else {
            // Without an assertion the status is the evidence, but an empty answer is none (unless
            // none was asked for: HEAD, or 204 No Content).
            if bytes.isEmpty, check.method != "HEAD", status != 204 {
                return (.fail, "HTTP \(status) with an empty body (no evidence is never a pass)")
            }
            return (.pass, "HTTP \(status)")
        }
        guard !bytes.isEmpty else { return (.fail, "HTTP \(status) with an empty body (no evidence is never a pass)") }
        guard let document = try? JSONValue.parse(bytes) else { return (.fail, "HTTP \(status): the body is not JSON") }
        let (passed, evidence) = assertion.check(document)
        return (passed ? .pass : .fail, "HTTP \(status): \(evidence)")
    }
}

/// `{{payload.PATH}}` and `{{result.PATH}}` placeholders: the only way task data reaches a URL or a
/// path, encoded for where it goes.
enum Template {
    struct MissingValue: Error, CustomStringConvertible {
        var description: String
    }

    static func render(
        _ text: String, _ subject: VerificationSubject, encode: (String) throws -> String
    ) throws -> String {
        try fill(text) { try encode(try value(of: $0, subject)) }
    }

    /// Replaces each `{{ name }}` in `text` with `value(name)`.
    static func fill(_ text: String, _ value: (String) throws -> String) throws -> String {
        var output = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            output += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw MissingValue(description: "an unclosed {{ in \(text)")
            }
            output += try value(rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces))
            rest = rest[close.upperBound...]
        }
        return output + rest
    }

    /// A scalar of a JSON document as template text.
    static func scalar(_ value: JSONValue?, named name: String) throws -> String {
        switch value {
        case .string(let text)?: return text
        case .int?, .double?, .bool?: return value!.canonicalText
        case nil: throw MissingValue(description: "{{\(name)}} has no value in this task")
        default: throw MissingValue(description: "{{\(name)}} is not a string or a number")
        }
    }

    private static func value(of name: String, _ subject: VerificationSubject) throws -> String {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        let document: JSONValue?
        switch parts.first {
        case "payload": document = try? JSONValue.parse(subject.task.payload)
        case "result": document = subject.result
        case "task" where parts.count == 2 && parts[1] == "id": return String(subject.task.id)
        default: throw MissingValue(description: "{{\(name)}} names neither payload, result nor task.id")
        }
        guard parts.count == 2 else { throw MissingValue(description: "{{\(name)}} has no value in this task") }
        return try scalar(document?[path: parts[1]], named: name)
    }

    /// RFC 3986 unreserved ASCII stays; everything else (non-ASCII letters too) is percent-encoded.
    /// `.` and `..` are refused: in a path they would climb out of the place the template names.
    static func urlComponent(_ value: String) throws -> String {
        guard value != ".", value != ".." else {
            throw MissingValue(description: "\"\(value)\" cannot stand in a URL")
        }
        let unreserved = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    /// A value may name a file, never a way out of the folder the template gives.
    static func pathComponent(_ value: String) throws -> String {
        guard !value.isEmpty, !value.contains("/"), !value.hasPrefix("."), !value.contains("\0") else {
            throw MissingValue(description: "\"\(value)\" cannot stand in a path (no /, no leading dot)")
        }
        return value
    }
}
