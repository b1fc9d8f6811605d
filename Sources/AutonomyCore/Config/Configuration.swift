import Foundation

/// The declared system map and every setting of the tool, as read from `autonomy.json`.
///
/// Every key but `version` is optional and takes the default shown in `config.example.json`.
/// Keys are part of the user contract: new keys may be added, these are never renamed.
public struct Configuration: Sendable {
    public var version: Int = 1
    /// Where the database lives, as written in the file (see `ConfigLoader` for precedence).
    public var database: String?
    /// The zone times are shown in.
    public var timezone: TimeZone = .gmt
    /// The zone's name as written ("UTC", "Europe/Berlin").
    public var timezoneName = "UTC"
    public var worker = WorkerSettings()
    public var queue = QueueSettings()
    public var store = StoreSettings()
    public var taskTypes: [String: TaskType] = [:]
    public var components: [Component] = []
    /// Where operators are alerted (approval needed, task dead).
    public var notify = NotifySettings()
    public var approvals = ApprovalSettings()
    /// Who may use the local entry gate, and for which task types.
    public var producers = ProducerSettings()
    /// The model gateway: models, prices, the daily cap.
    public var gateway = GatewaySettings()

    /// The newest `version` this binary understands.
    public static let supportedVersion = 1

    public init() {}

    public func taskType(named name: String) -> TaskType? { taskTypes[name] }
}

public struct WorkerSettings: Sendable {
    /// How long a claim stays valid without being extended; a worker extends it while a handler runs.
    public var lease: Interval = .seconds(60)
    /// `work-once --drain` stops starting new tasks after this many seconds (so a run ends before
    /// the next minute's timer).
    public var drainMaxSeconds: Int = 50
    /// `work-once --drain` stops after this many tasks; nil means no limit.
    public var drainMaxTasks: Int?
    /// Between SIGTERM and SIGKILL when a handler's time is up.
    public var killGrace: Interval = .seconds(10)
    /// How much of a handler's stdout is kept as its result.
    public var maxOutputBytes: Int = 64 * 1024
    /// How much of the end of a handler's stderr is kept for diagnosis.
    public var maxStderrBytes: Int = 8 * 1024
    /// Used when a task type names no timeout.
    public var defaultTimeout: Interval = .minutes(10)
    public init() {}
}

public struct QueueSettings: Sendable {
    /// The largest payload `enqueue` accepts, in bytes of canonical JSON.
    public var maxPayloadBytes: Int = 256 * 1024
    public init() {}
}

public struct StoreSettings: Sendable {
    /// How long a write waits for another process's transaction before giving up.
    public var busyTimeout: Interval = .seconds(5)
    /// `full` survives power loss; `normal` is faster and may lose the last commits on power loss.
    public var synchronous: Synchronous = .full
    public enum Synchronous: String, Sendable, Codable { case full, normal }
    public init() {}
}

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

    public init(name: String, handler: Handler) {
        self.name = name
        self.handler = handler
    }

    /// Whether some payload can make this type dangerous (then it must declare a verifier).
    public var canBeDangerous: Bool { safety == .dangerous || rules.contains { $0.safety == .dangerous } }

    /// The handler's time limit: the handler's own, else the type's, else the worker default.
    public func effectiveTimeout(_ worker: WorkerSettings) -> Interval {
        if case .exec(let exec) = handler, let timeout = exec.timeout { return timeout }
        if case .llm = handler, timeout == nil { return .minutes(10) }
        return timeout ?? worker.defaultTimeout
    }
}

/// What runs a task.
public enum Handler: Sendable {
    case exec(ExecHandler)
    case llm(LLMHandler)
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

/// How approval requests reach a human.
public struct ApprovalSettings: Sendable {
    /// The dashboard's public address; one-click links in alerts are built from it. Without it,
    /// alerts carry the `autonomy approve` / `reject` commands only.
    public var baseURL: String?
    /// The operators' keys (OpenSSH `allowed_signers`), made absolute when the file is loaded.
    /// Without it nobody can approve anything dangerous.
    public var allowedSigners: String?
    /// An approved task that has not started within this goes back to approval.
    public var runWithin: Interval = .hours(24)
    public init() {}
}

/// Where alerts go: a command, a webhook, or both. Neither configured means no alerts.
public struct NotifySettings: Sendable {
    /// A program (argv, no shell) that gets the message as JSON on stdin and a one-line text in
    /// `AUTONOMY_NOTIFY_TEXT`; exit 0 means delivered.
    public var command: [String]?
    public var commandTimeout: Interval = .seconds(30)
    /// Variables the command gets from the worker's environment beyond the minimal set.
    public var passEnv: [String] = []
    /// More approval alerts than this due at once on a channel become one "requests waiting" alert.
    public var groupAfter = 10
    public var webhook: WebhookSettings?
    /// The first wait before a failed delivery is tried again; it doubles up to an hour.
    public var retryBackoff: Interval = .minutes(1)
    public init() {}

    /// The channels configured, in delivery order.
    public var channels: [NotifyChannel] {
        (command != nil ? [.command] : []) + (webhook != nil ? [.webhook] : [])
    }
}

public enum NotifyChannel: String, Sendable, CaseIterable {
    case command, webhook
}

/// A webhook: the message is POSTed as JSON.
public struct WebhookSettings: Sendable {
    public var url: String
    /// The name of the environment variable that holds the HMAC-SHA256 signing secret; when set,
    /// each request carries `X-Autonomy-Signature: sha256=HEX` over its body.
    public var secretEnv: String?
    public var timeout: Interval = .seconds(10)
    public init(url: String) { self.url = url }
}
