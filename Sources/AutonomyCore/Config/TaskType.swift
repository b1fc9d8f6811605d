import Foundation

/// How a task type is rated by the firewall. A type without a rating is dangerous.
public enum Safety: String, Sendable, Codable, CaseIterable {
    case safe, dangerous
}

/// One kind of work the system may do: who owns it, how risky it is, how it runs, how it retries.
public struct TaskType: Sendable {
    public var name: String
    public var description: String = ""
    public var owner: String?
    public var safety: Safety = .dangerous
    /// True when the file gave no rating (so the type is dangerous by default).
    public var safetyDefaulted = true
    public var handler: Handler
    /// The handler's time limit, when the handler section does not name one.
    public var timeout: Interval?
    public var retry = RetryPolicy()
    public var priority: Int = 0
    /// Checks of objective evidence run after the handler; all must pass for the task to be done.
    public var verify: [Verifier] = []
    /// Rules that rate a task by its payload (see `SafetyRule`).
    public var rules: [SafetyRule] = []
    /// How long an approval request of this type stays open before it expires.
    public var approvalExpiresAfter: Interval = .hours(24)
    /// A critical type's tasks are not deferred when the day's budget is spent (they fail instead).
    public var critical = false
    /// Set by an override: none of its tasks is claimed.
    public var paused = false
    /// The worker tags a host needs to run this type (`worker.tags`); empty: any host.
    public var runOn: [String] = []
    /// Set by an override: the handler's time limit, over whatever the file says.
    public var timeoutOverride: Interval?
    /// Set by an override: no task of this type gets fewer attempts (its own `max_attempts` included).
    public var attemptsFloor: Int?
    /// The built-in `apply_remediation` only, while heal is enabled: the pairs whose proposals
    /// the firewall rates safe (`heal.auto_apply`).
    public var autoApply: [AutoApply] = []
    /// The built-in type only: each declared remediation's argv, so that a proposal of a command
    /// the configuration does not declare is never rated safe.
    var declaredRemediations: [String: [String]] = [:]

    public init(name: String, handler: Handler) {
        self.name = name
        self.handler = handler
    }

    /// The attempts its tasks get unless they say otherwise: the retry policy's, or an override's if higher.
    public var effectiveMaxAttempts: Int { max(retry.maxAttempts, attemptsFloor ?? 0) }

    /// Whether some payload can make this type dangerous (then it must declare a verifier).
    public var canBeDangerous: Bool { safety == .dangerous || rules.contains { $0.safety == .dangerous } }

    /// The handler's time limit: the handler's own, else the type's, else the worker default.
    public func effectiveTimeout(_ worker: WorkerSettings) -> Interval {
        if let timeoutOverride { return max(timeoutOverride, declaredTimeout(worker)) }
        return declaredTimeout(worker)
    }

    /// The handler's time limit as the file says.
    private func declaredTimeout(_ worker: WorkerSettings) -> Interval {
        if case .exec(let exec) = handler, let timeout = exec.timeout { return timeout }
        if case .llm = handler, timeout == nil { return .minutes(10) }
        return timeout ?? worker.defaultTimeout
    }
}

/// What runs a task.
public enum Handler: Sendable {
    case exec(ExecHandler)
    case llm(LLMHandler)
    /// Built in: applies a fix proposal (`apply_remediation`); never declared in a file.
    case remediation

    public var isBuiltIn: Bool {
        if case .remediation = self { return true }
        return false
    }
}

/// A prompt to the model gateway: the completion is the task's result (JSON if it parses).
public struct LLMHandler: Sendable {
    /// The prompt, with `{{payload.PATH}}` placeholders filled from the payload.
    public var prompt: String
    public var system: String?
    public var tier: TierRequest = .auto
    public var maxTokens: Int?
}

/// A program run without a shell: the payload reaches it on stdin and in a file, never in argv.
public struct ExecHandler: Sendable {
    /// The program and its fixed arguments. A first element with a `/` is a path (relative ones are
    /// taken from the config file's folder); otherwise it is looked up in `PATH`.
    public var argv: [String]
    public var timeout: Interval?
    /// The working directory; relative ones are taken from the config file's folder.
    public var cwd: String?
    /// Extra environment variables for the handler.
    public var env: [String: String] = [:]
    /// Variables the handler gets from the worker's own environment, beyond the minimal set.
    public var passEnv: [String] = []

    public init(
        argv: [String], timeout: Interval? = nil, cwd: String? = nil, env: [String: String] = [:],
        passEnv: [String] = []
    ) {
        self.argv = argv
        self.timeout = timeout
        self.cwd = cwd
        self.env = env
        self.passEnv = passEnv
    }
}

/// How often, and how far apart, a failed task is tried again.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included; 1 means never retried.
    public var maxAttempts: Int = 3
    /// The wait before the second attempt.
    public var backoff: Interval = .seconds(30)
    /// Each further wait is the previous one times this.
    public var factor: Double = 2
    /// No wait is longer than this.
    public var maxBackoff: Interval = .hours(1)
    /// Each wait is spread at random by up to this fraction either way, so failures of many
    /// tasks at once do not retry in lockstep.
    public var jitter: Double = 0.1

    public init() {}

    /// The wait before the attempt after `failedAttempt` (1-based), with `unit` in [0, 1) supplying
    /// the randomness.
    public func delay(afterAttempt failedAttempt: Int, unit: Double) -> Interval {
        let exponent = Double(max(0, failedAttempt - 1))
        let base = min(Double(backoff.milliseconds) * pow(factor, exponent), Double(maxBackoff.milliseconds))
        let spread = base * jitter * (unit * 2 - 1)
        let value = min(max(0, base + spread), Double(maxBackoff.milliseconds))
        return Interval(milliseconds: Int64(value.rounded()))
    }
}

/// A part of the system (an agent, a bot, a script) and the task types that belong to it.
public struct Component: Sendable {
    public var name: String
    public var description: String = ""
    public var owner: String?
    public var kind: String?
    public var safety: Safety?
    public var taskTypes: [String] = []
    public init(name: String) { self.name = name }
}

extension TaskType {
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 100
            && name.allSatisfy {
                $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".")
            }
    }
}

/// A task type as written under its name; the name is filled in by the map that holds it.
struct TaskTypeBody: Decodable {
    var type: TaskType

    enum CodingKeys: String, CodingKey, CaseIterable {
        case description, owner, safety, handler, timeout, retry, priority, verify, rules, critical
        case approvalExpiresAfter = "approval_expires_after"
        case runOn = "run_on"
    }

    init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard container.contains(.handler) else {
            throw missingKey(
                CodingKeys.handler, at: decoder.codingPath,
                "missing: every task type needs a handler, e.g. {\"exec\": {\"argv\": [\"/path/to/program\"]}}")
        }
        type = TaskType(name: "", handler: try container.decode(Handler.self, forKey: .handler))
        type.description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        type.owner = try container.decodeIfPresent(String.self, forKey: .owner)
        if container.contains(.safety) {
            type.safety = try container.decode(Safety.self, forKey: .safety)
            type.safetyDefaulted = false
        }
        type.timeout = try container.decodeIfPresent(Interval.self, forKey: .timeout)
        type.retry = try container.decodeIfPresent(RetryPolicy.self, forKey: .retry) ?? RetryPolicy()
        type.priority = try container.decodeIfPresent(Int.self, forKey: .priority) ?? 0
        type.verify = try container.decodeIfPresent([Verifier].self, forKey: .verify) ?? []
        type.rules = try container.decodeIfPresent([SafetyRule].self, forKey: .rules) ?? []
        type.critical = try container.decodeIfPresent(Bool.self, forKey: .critical) ?? false
        type.runOn = try container.decodeIfPresent([String].self, forKey: .runOn) ?? []
        if type.runOn.contains(where: \.isEmpty) {
            throw DecodingError.dataCorruptedError(
                forKey: .runOn, in: container, debugDescription: "a tag cannot be empty")
        }
        if let expiry = try container.decodeIfPresent(Interval.self, forKey: .approvalExpiresAfter) {
            guard expiry >= .minutes(1) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .approvalExpiresAfter, in: container, debugDescription: "expected at least \"1m\"")
            }
            type.approvalExpiresAfter = expiry
        }
    }
}

extension Handler: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case exec, llm }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let exec = try container.decodeIfPresent(ExecHandler.self, forKey: .exec)
        let llm = try container.decodeIfPresent(LLMHandler.self, forKey: .llm)
        switch (exec, llm) {
        case (let exec?, nil): self = .exec(exec)
        case (nil, let llm?): self = .llm(llm)
        default:
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription:
                        "expected one handler kind: {\"exec\": {\"argv\": [...]}} or {\"llm\": {\"prompt\": \"...\"}}"))
        }
    }
}

extension LLMHandler: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case prompt, system, tier
        case maxTokens = "max_tokens"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decode(String.self, forKey: .prompt)
        guard !prompt.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .prompt, in: container, debugDescription: "expected a prompt")
        }
        system = try container.decodeIfPresent(String.self, forKey: .system)
        if let text = try container.decodeIfPresent(String.self, forKey: .tier) {
            guard let value = TierRequest(rawValue: text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .tier, in: container, debugDescription: "expected auto, free, cheap or strong")
            }
            tier = value
        }
        maxTokens = try container.decodeIfPresent(Int.self, forKey: .maxTokens)
        if let maxTokens, !(1...200_000).contains(maxTokens) {
            throw DecodingError.dataCorruptedError(
                forKey: .maxTokens, in: container, debugDescription: "expected 1 to 200000")
        }
    }
}

extension ExecHandler: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case argv, timeout, cwd, env
        case passEnv = "pass_env"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let argv = try container.decodeIfPresent([String].self, forKey: .argv) ?? []
        guard let program = argv.first, !program.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .argv, in: container, debugDescription: "expected a non-empty array")
        }
        self.init(
            argv: argv,
            timeout: try container.decodeIfPresent(Interval.self, forKey: .timeout),
            cwd: try container.decodeIfPresent(String.self, forKey: .cwd),
            env: try container.decodeNamedIfPresent(String.self, forKey: .env) ?? [:],
            passEnv: try container.decodeIfPresent([String].self, forKey: .passEnv) ?? [])
        try decoder.checkVariableNames(passEnv, under: CodingKeys.passEnv)
        if let timeout, timeout.milliseconds <= 0 {
            throw DecodingError.dataCorruptedError(
                forKey: .timeout, in: container, debugDescription: "expected a duration above zero")
        }
        try decoder.checkVariableNames(env.keys.sorted(), under: CodingKeys.env, keyed: true)
    }
}

extension RetryPolicy: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxAttempts = "max_attempts"
        case backoff, factor
        case maxBackoff = "max_backoff"
        case jitter
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        maxAttempts = try container.decode(
            .maxAttempts, default: maxAttempts, in: 1...1000, expected: "expected a whole number from 1 to 1000")
        backoff = try container.decodeIfPresent(Interval.self, forKey: .backoff) ?? backoff
        factor = try container.decode(
            .factor, default: factor, in: 1...100, expected: "expected a number from 1 to 100")
        maxBackoff = try container.decodeIfPresent(Interval.self, forKey: .maxBackoff) ?? maxBackoff
        jitter = try container.decode(
            .jitter, default: jitter, in: 0...1, expected: "expected a fraction from 0 to 1")
        guard maxBackoff >= backoff else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxBackoff, in: container, debugDescription: "must not be shorter than backoff (\(backoff))")
        }
    }
}

extension Component: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, description, owner, kind, safety
        case taskTypes = "task_types"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(String.self, forKey: .name))
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        owner = try container.decodeIfPresent(String.self, forKey: .owner)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        safety = try container.decodeIfPresent(Safety.self, forKey: .safety)
        taskTypes = try container.decodeIfPresent([String].self, forKey: .taskTypes) ?? []
    }
}
