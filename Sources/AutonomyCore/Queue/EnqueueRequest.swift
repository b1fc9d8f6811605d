import Foundation

/// What a producer asks for: a task of a declared type with a JSON payload.
public struct EnqueueRequest: Sendable, Equatable {
    public var type: String
    /// JSON text as the producer gave it; stored canonically.
    public var payload: String
    /// Overrides the type's default priority; higher runs first.
    public var priority: Int?
    /// Not before this time (epoch ms); exclusive with `delay`.
    public var runAt: Int64?
    /// Not before now plus this; exclusive with `runAt`.
    public var delay: Interval?
    /// Overrides the type's retry.max_attempts.
    public var maxAttempts: Int?
    /// An idempotency key: the same key again returns the existing task.
    public var key: String?
    /// Who asked (a bridge, an agent, a script).
    public var source: String?
    /// A short line shown in listings and approval requests.
    public var subject: String?
    /// The payload already parsed (by `parseBatch`), so it is not parsed twice.
    var parsedPayload: JSONValue?

    public init(
        type: String, payload: String = "{}", priority: Int? = nil, runAt: Int64? = nil,
        delay: Interval? = nil, maxAttempts: Int? = nil, key: String? = nil, source: String? = nil,
        subject: String? = nil
    ) {
        self.type = type
        self.payload = payload
        self.priority = priority
        self.runAt = runAt
        self.delay = delay
        self.maxAttempts = maxAttempts
        self.key = key
        self.source = source
        self.subject = subject
    }
}

extension EnqueueRequest {
    /// Sets the payload from raw bytes (a file, stdin), strictly: bytes that are not UTF-8 JSON
    /// are refused, never repaired.
    ///
    /// - Throws: `QueueError.invalidPayload` saying where the bytes stop being JSON.
    public mutating func setPayload(json data: Data) throws(QueueError) {
        do {
            let value = try JSONValue.parse(data)
            parsedPayload = value
            payload = value.canonicalText
        } catch {
            throw .invalidPayload(error.reason)
        }
    }
}

/// A request that passed every check, ready to insert.
struct PreparedTask: Sendable {
    var type: TaskType
    var state: TaskState
    var priority: Int
    var runAt: Int64
    var payload: String
    var payloadSHA256: String
    var request: EnqueueRequest
    /// Why the firewall rated it as it did.
    var rating: Rating
}

extension EnqueueRequest {
    /// Whether the map would take the request, before any database is opened (or made): a refused
    /// enqueue on a fresh machine leaves no database behind.
    ///
    /// - Throws: `QueueError`, as the enqueue itself would.
    public func check(_ configuration: Configuration, now: Int64) throws(QueueError) {
        _ = try prepare(configuration, now: now)
    }

    /// Checks the request against the map and limits; no database access.
    /// Only `audit` makes `proposal`s: no producer, operator or batch can enqueue the built-in type.
    func prepare(_ configuration: Configuration, now: Int64, proposal: Bool = false) throws(QueueError) -> PreparedTask
    {
        guard let type = configuration.taskType(named: self.type) else {
            throw .undeclaredType(self.type, declared: Array(configuration.taskTypes.keys))
        }
        guard proposal || !type.handler.isBuiltIn else {
            throw .invalidRequest(
                "\(self.type) tasks are fix proposals that only `autonomy audit` makes; they cannot be enqueued")
        }
        guard !proposal || type.handler.isBuiltIn else {
            throw .invalidRequest("a fix proposal is a \(TaskType.remediationTypeName) task, not \(self.type)")
        }
        let payloadValue: JSONValue
        if let parsedPayload {
            payloadValue = parsedPayload
        } else {
            do {
                payloadValue = try JSONValue.parse(payload)
            } catch {
                throw .invalidPayload(error.reason)
            }
        }
        let canonical = payloadValue.canonicalText
        let rating = type.rate(payloadValue)
        let size = canonical.utf8.count
        guard size <= configuration.queue.maxPayloadBytes else {
            throw .payloadTooLarge(bytes: size, limit: configuration.queue.maxPayloadBytes)
        }
        if runAt != nil, delay != nil {
            throw .invalidRequest("give either a delay or a run-at time, not both")
        }
        if let delay, delay.milliseconds < 0 {
            throw .invalidRequest("the delay must not be negative")
        }
        if let maxAttempts, !(1...1000).contains(maxAttempts) {
            throw .invalidRequest("max attempts must be from 1 to 1000, got \(maxAttempts)")
        }
        if let priority, !(-1_000_000...1_000_000).contains(priority) {
            throw .invalidRequest("priority must be from -1000000 to 1000000, got \(priority)")
        }
        if let key, key.isEmpty || key.utf8.count > 512 {
            throw .invalidRequest("an idempotency key must be 1 to 512 bytes")
        }
        for (name, value) in [("key", key), ("source", source), ("subject", subject)] {
            if let value, value.utf8.count > 1024 {
                throw .invalidRequest("\(name) must be at most 1024 bytes")
            }
            // Shown to the operator: nothing that hides or reorders text (C1 controls, bidi overrides).
            if let value,
                value.unicodeScalars.contains(where: {
                    $0.properties.generalCategory == .control || $0.properties.generalCategory == .format
                })
            {
                throw .invalidRequest("\(name) must not contain control or invisible formatting characters")
            }
        }
        // Far enough for any real schedule, near enough that no time arithmetic can overflow.
        let horizon = Interval.days(100 * 366).milliseconds
        if let delay, delay.milliseconds > horizon {
            throw .invalidRequest("the delay must be at most 100 years")
        }
        if let runAt, runAt < now - horizon || runAt > now + horizon {
            throw .invalidRequest("the run-at time must be within 100 years of now")
        }
        let start = runAt ?? (now + (delay?.milliseconds ?? 0))
        return PreparedTask(
            type: type,
            state: rating.safety == .safe ? .queued : .awaitingApproval,
            priority: priority ?? type.priority,
            runAt: start,
            payload: canonical,
            payloadSHA256: canonical.sha256Hex,
            request: self,
            rating: rating)
    }
}

extension EnqueueRequest {
    /// Parses JSON Lines: one object a line (`{"type": "...", "payload": {...}, "priority": 5, "delay":
    /// "10m", "run_at": "...", "max_attempts": 3, "key": "...", "source": "...", "subject": "..."}`).
    /// Blank lines are skipped.
    ///
    /// - Throws: `QueueError.batchLine` naming the first bad line.
    public static func parseBatch(_ data: Data) throws(QueueError) -> [EnqueueRequest] {
        try parseBatchLines(data).map(\.request)
    }

    /// The same, with each request's line number (1-based, blank lines counted), for errors that
    /// name the line an operator sees in the file.
    public static func parseBatchLines(_ data: Data) throws(QueueError) -> [(line: Int, request: EnqueueRequest)] {
        var requests: [(line: Int, request: EnqueueRequest)] = []
        do {
            try forEachBatchLine(in: data) { line, request in requests.append((line, request)) }
        } catch {
            // Only the parsing throws here, and it throws QueueError.
            throw (error as? QueueError) ?? .invalidRequest("\(error)")
        }
        return requests
    }

    /// Calls `body` with each non-blank line's number (1-based) and request, in order.
    ///
    /// - Throws: `QueueError.batchLine` for a line that is not a request; what `body` throws.
    static func forEachBatchLine(
        in data: Data, _ body: (Int, EnqueueRequest) throws -> Void
    ) throws {
        // Lines are parsed where they lie in the buffer: no slice arrays, no copies.
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let all = raw.bindMemory(to: UInt8.self)
            var lineNumber = 0
            var start = 0
            while start <= all.count {
                let end = all[start...].firstIndex(of: UInt8(ascii: "\n")) ?? all.count
                defer { start = end + 1 }
                lineNumber += 1
                let line = UnsafeBufferPointer(rebasing: all[start..<end])
                if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") })
                {
                    continue
                }
                let request: EnqueueRequest
                do {
                    request = try self.request(fromLine: line)
                } catch let error as QueueError {
                    throw QueueError.batchLine(lineNumber, error)
                }
                try body(lineNumber, request)
            }
        }
    }

    private static let batchFields: Set<String> = [
        "type", "payload", "priority", "run_at", "delay", "max_attempts", "key", "source", "subject",
    ]

    private static func request(fromLine line: UnsafeBufferPointer<UInt8>) throws(QueueError) -> EnqueueRequest {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes: line)
        } catch {
            throw .invalidRequest("not JSON: \(error.reason)")
        }
        guard case .object(let fields) = value else { throw .invalidRequest("expected a JSON object") }
        if let unknown = fields.keys.first(where: { !batchFields.contains($0) }) {
            throw .invalidRequest(
                "unknown field \"\(unknown)\" (known: \(batchFields.sorted().joined(separator: ", ")))")
        }
        func text(_ name: String) throws(QueueError) -> String? {
            switch fields[name] {
            case nil, .null?: return nil
            case .string(let value)?: return value
            default: throw .invalidRequest("\(name) must be a string")
            }
        }
        func number(_ name: String) throws(QueueError) -> Int? {
            switch fields[name] {
            case nil, .null?: return nil
            case .int(let value)? where value >= Int64(Int32.min) && value <= Int64(Int32.max): return Int(value)
            default: throw .invalidRequest("\(name) must be a whole number")
            }
        }
        guard let type = try text("type") else { throw .invalidRequest("missing \"type\"") }
        let payload = fields["payload"] ?? .object([:])
        var request = EnqueueRequest(
            type: type, payload: "", priority: try number("priority"), maxAttempts: try number("max_attempts"),
            key: try text("key"), source: try text("source"), subject: try text("subject"))
        request.parsedPayload = payload
        if let runAt = try text("run_at") {
            guard let time = Timestamp.parse(runAt) else {
                throw .invalidRequest("run_at \"\(runAt)\" is not a date such as 2026-12-01T09:00:00Z")
            }
            request.runAt = time
        }
        if let delay = try text("delay") {
            guard let interval = Interval(parsing: delay) else {
                throw .invalidRequest("delay \"\(delay)\" is not a duration such as \"30s\" or \"10m\"")
            }
            request.delay = interval
        }
        return request
    }
}
