/// How a handler ended.
public enum HandlerStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
    /// Its time ran out and its process group was stopped.
    case timedOut(Interval)
    /// The worker stopped it (its lease was taken over, or the worker was told to stop).
    case stopped
    /// It never ran: no such program, no permission, no such working directory.
    case couldNotStart(String)
    /// It could not run today (the model budget is spent): the task waits until then, and the
    /// attempt does not count.
    case deferred(until: Int64, reason: String)
    /// This worker cannot run handlers at all now (it cannot write a payload file: a missing or
    /// read-only temporary folder, a full disk). Not the task's doing: it goes back to the queue,
    /// the attempt not counted, and the worker stops with an error instead of spending the
    /// attempts of every task it would claim next.
    case workerUnfit(String)

    public var succeeded: Bool { self == .exited(0) }
}

/// What a handler did: how it ended, its output and how long it took.
public struct HandlerOutcome: Sendable, Equatable {
    public var status: HandlerStatus
    /// stdout, up to the configured limit.
    public var stdout: String
    public var stdoutTruncated: Bool
    /// The end of stderr, up to the configured limit.
    public var stderrTail: String
    /// stderr was longer than the limit: `stderrTail` starts mid-stream.
    public var stderrTruncated: Bool
    public var durationMs: Int64

    public init(
        status: HandlerStatus, stdout: String = "", stdoutTruncated: Bool = false, stderrTail: String = "",
        stderrTruncated: Bool = false, durationMs: Int64 = 0
    ) {
        self.stderrTruncated = stderrTruncated
        self.status = status
        self.stdout = stdout
        self.stdoutTruncated = stdoutTruncated
        self.stderrTail = stderrTail
        self.durationMs = durationMs
    }

    /// One line for `last_error` and listings; nil when the handler succeeded.
    public var errorSummary: String? {
        let lastLine = stderrTail.split(whereSeparator: \.isNewline).last.map { ": " + $0.prefix(300) } ?? ""
        switch status {
        case .exited(0): return nil
        case .exited(let code): return "exited with status \(code)\(lastLine)"
        case .signaled(let signal): return "killed by signal \(signal)\(lastLine)"
        case .timedOut(let limit): return "timed out after \(limit)"
        case .stopped: return "stopped by the worker"
        case .couldNotStart(let reason): return "could not start: \(reason)"
        case .deferred(_, let reason): return "deferred: \(reason)"
        case .workerUnfit(let reason): return "not run: \(reason)"
        }
    }

    /// The result to store: the JSON stdout when it parses, else stdout as a JSON string; nil when empty.
    /// The outcome as the task row keeps it.
    var change: TaskChange {
        .outcome(exitCode: exitCode, result: resultJSON, stderrTail: stderrTail.isEmpty ? nil : stderrTail)
    }

    public var resultJSON: String? {
        let trimmed = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        if !stdoutTruncated, let value = try? JSONValue.parse(trimmed) { return value.canonicalText }
        return JSONValue.string(stdout).canonicalText
    }

    var exitCode: Int? {
        if case .exited(let code) = status { return Int(code) }
        return nil
    }
}

/// What runs a handler. The worker talks to this, so tests can put a double in its place.
public protocol HandlerRunner: Sendable {
    /// Runs the handler to its end, honouring its timeout. Never throws: every way of ending is an outcome.
    /// On task cancellation it stops the handler and returns `.stopped`.
    func run(_ invocation: HandlerInvocation) async -> HandlerOutcome
}

/// Everything a runner needs to start one attempt of one task.
public struct HandlerInvocation: Sendable {
    public var task: TaskRecord
    public var type: TaskType
    public var attempt: Int
    public var timeout: Interval
    /// Relative paths in the handler are taken from here (the config file's folder).
    public var baseDirectory: String
    /// Passed on so a handler that calls `autonomy` itself reaches the same database and map.
    public var environment: [String: String]
}
