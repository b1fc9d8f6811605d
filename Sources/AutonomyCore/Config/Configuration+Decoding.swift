import Foundation

// Decoding is hand-written per section so that every key has a default, unknown keys are reported
// with their full path, and every error names the key path the operator has to fix.

extension Configuration: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case version, database, timezone, worker, queue, store
        case taskTypes = "task_types"
        case components, notify, approvals, gateway, producers
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let version = try container.decodeIfPresent(Int.self, forKey: .version) else {
            throw missingKey(CodingKeys.version, at: [], "missing: add \"version\": \(Configuration.supportedVersion)")
        }
        guard (1...Configuration.supportedVersion).contains(version) else {
            throw DecodingError.dataCorruptedError(
                forKey: .version, in: container,
                debugDescription:
                    "version \(version) is not supported by this binary (it reads up to \(Configuration.supportedVersion)); upgrade autonomy"
            )
        }
        self.version = version
        database = try container.decodeIfPresent(String.self, forKey: .database)
        if let zone = try container.decodeIfPresent(String.self, forKey: .timezone) {
            guard let timeZone = TimeZone(identifier: zone) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .timezone, in: container,
                    debugDescription:
                        "unknown time zone \"\(zone)\" (use an IANA name such as \"UTC\" or \"Europe/Berlin\")")
            }
            timezone = timeZone
            timezoneName = zone
        }
        worker = try container.decodeIfPresent(WorkerSettings.self, forKey: .worker) ?? WorkerSettings()
        queue = try container.decodeIfPresent(QueueSettings.self, forKey: .queue) ?? QueueSettings()
        store = try container.decodeIfPresent(StoreSettings.self, forKey: .store) ?? StoreSettings()
        let types = try container.decodeIfPresent([String: TaskTypeBody].self, forKey: .taskTypes) ?? [:]
        for (name, body) in types {
            guard TaskType.isValidName(name) else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [CodingKeys.taskTypes, ConfigKey(name)],
                        debugDescription: "a task type name uses letters, digits, '_', '-' and '.' only (at most 100)"))
            }
            var type = body.type
            type.name = name
            if type.canBeDangerous, type.verify.isEmpty {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [CodingKeys.taskTypes, ConfigKey(name), ConfigKey("verify")],
                        debugDescription:
                            "a type that can be rated dangerous needs at least one verifier: \"ran\" is not \"succeeded\""
                    ))
            }
            taskTypes[name] = type
        }
        components = try container.decodeIfPresent([Component].self, forKey: .components) ?? []
        notify = try container.decodeIfPresent(NotifySettings.self, forKey: .notify) ?? NotifySettings()
        approvals = try container.decodeIfPresent(ApprovalSettings.self, forKey: .approvals) ?? ApprovalSettings()
        gateway = try container.decodeIfPresent(GatewaySettings.self, forKey: .gateway) ?? GatewaySettings()
        producers = try container.decodeIfPresent(ProducerSettings.self, forKey: .producers) ?? ProducerSettings()
    }
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
private struct TaskTypeBody: Decodable {
    var type: TaskType

    enum CodingKeys: String, CodingKey, CaseIterable {
        case description, owner, safety, handler, timeout, retry, priority, verify, rules, critical
        case approvalExpiresAfter = "approval_expires_after"
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

extension GatewaySettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case dailyCapUSD = "daily_cap_usd"
        case softCapRatio = "soft_cap_ratio"
        case reservationTimeout = "reservation_timeout"
        case window
        case models
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        dailyCapUSD = try container.decodeIfPresent(Double.self, forKey: .dailyCapUSD) ?? dailyCapUSD
        guard dailyCapUSD >= 0, dailyCapUSD.isFinite else {
            throw DecodingError.dataCorruptedError(
                forKey: .dailyCapUSD, in: container, debugDescription: "expected 0 or more")
        }
        softCapRatio = try container.decodeIfPresent(Double.self, forKey: .softCapRatio) ?? softCapRatio
        guard (0...1).contains(softCapRatio) else {
            throw DecodingError.dataCorruptedError(
                forKey: .softCapRatio, in: container, debugDescription: "expected 0 to 1")
        }
        reservationTimeout =
            try container.decodeIfPresent(Interval.self, forKey: .reservationTimeout) ?? reservationTimeout
        if let text = try container.decodeIfPresent(String.self, forKey: .window) {
            guard let value = SpendWindow(rawValue: text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .window, in: container, debugDescription: "expected \"day\" or \"rolling24h\"")
            }
            window = value
        }
        models = try container.decodeIfPresent([ModelSettings].self, forKey: .models) ?? []
        var names = Set<String>()
        for (index, model) in models.enumerated() where !names.insert(model.name).inserted {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath + [
                        CodingKeys.models, ConfigKey(intValue: index)!, ConfigKey("name"),
                    ],
                    debugDescription: "another model is already named \"\(model.name)\""))
        }
    }
}

extension ModelSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, provider
        case baseURL = "base_url"
        case model
        case apiKeyEnv = "api_key_env"
        case tier
        case inputUSDPerMillion = "input_usd_per_million"
        case outputUSDPerMillion = "output_usd_per_million"
        case timeout
        case maxTokens = "max_tokens"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        provider = try container.decodeIfPresent(String.self, forKey: .provider) ?? "openai"
        guard provider == "openai" else {
            throw DecodingError.dataCorruptedError(
                forKey: .provider, in: container,
                debugDescription: "expected \"openai\" (any OpenAI-compatible chat-completions endpoint)")
        }
        baseURL = try container.decode(String.self, forKey: .baseURL)
        guard isHTTPAddress(baseURL) else {
            throw DecodingError.dataCorruptedError(
                forKey: .baseURL, in: container, debugDescription: "expected an http(s) address")
        }
        if baseURL.hasSuffix("/") { baseURL.removeLast() }
        model = try container.decode(String.self, forKey: .model)
        apiKeyEnv = try container.decodeIfPresent(String.self, forKey: .apiKeyEnv)
        if let apiKeyEnv, apiKeyEnv.isEmpty || apiKeyEnv.contains("=") {
            throw DecodingError.dataCorruptedError(
                forKey: .apiKeyEnv, in: container,
                debugDescription:
                    "expected the name of an environment variable (the key itself never goes in the config)")
        }
        tier = try container.decode(ModelTier.self, forKey: .tier)
        // A model without prices is refused: a free local model says 0 explicitly.
        for key in [CodingKeys.inputUSDPerMillion, .outputUSDPerMillion] where !container.contains(key) {
            throw missingKey(key, at: decoder.codingPath, "missing: every model states its prices (0 for a free model)")
        }
        inputUSDPerMillion = try container.decode(Double.self, forKey: .inputUSDPerMillion)
        outputUSDPerMillion = try container.decode(Double.self, forKey: .outputUSDPerMillion)
        guard inputUSDPerMillion >= 0, outputUSDPerMillion >= 0, inputUSDPerMillion.isFinite,
            outputUSDPerMillion.isFinite
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .inputUSDPerMillion, in: container, debugDescription: "prices must be 0 or more")
        }
        if tier == .free, !isFree {
            throw DecodingError.dataCorruptedError(
                forKey: .tier, in: container, debugDescription: "a free-tier model must have prices of 0")
        }
        timeout = try container.interval(.timeout, default: timeout, from: .seconds(1), to: .hours(1))
        maxTokens = try container.decodeIfPresent(Int.self, forKey: .maxTokens) ?? maxTokens
        guard (1...200_000).contains(maxTokens) else {
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
            env: try container.decodeIfPresent([String: String].self, forKey: .env) ?? [:],
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
        maxAttempts = try container.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? maxAttempts
        backoff = try container.decodeIfPresent(Interval.self, forKey: .backoff) ?? backoff
        factor = try container.decodeIfPresent(Double.self, forKey: .factor) ?? factor
        maxBackoff = try container.decodeIfPresent(Interval.self, forKey: .maxBackoff) ?? maxBackoff
        jitter = try container.decodeIfPresent(Double.self, forKey: .jitter) ?? jitter
        guard (1...1000).contains(maxAttempts) else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxAttempts, in: container, debugDescription: "expected a whole number from 1 to 1000")
        }
        guard factor >= 1, factor <= 100 else {
            throw DecodingError.dataCorruptedError(
                forKey: .factor, in: container, debugDescription: "expected a number from 1 to 100")
        }
        guard (0...1).contains(jitter) else {
            throw DecodingError.dataCorruptedError(
                forKey: .jitter, in: container, debugDescription: "expected a fraction from 0 to 1")
        }
        guard maxBackoff >= backoff else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxBackoff, in: container, debugDescription: "must not be shorter than backoff (\(backoff))")
        }
    }
}

extension WorkerSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case lease
        case drainMaxSeconds = "drain_max_seconds"
        case drainMaxTasks = "drain_max_tasks"
        case killGrace = "kill_grace"
        case maxOutputBytes = "max_output_bytes"
        case maxStderrBytes = "max_stderr_bytes"
        case defaultTimeout = "default_timeout"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        lease = try container.decodeIfPresent(Interval.self, forKey: .lease) ?? lease
        drainMaxSeconds = try container.decodeIfPresent(Int.self, forKey: .drainMaxSeconds) ?? drainMaxSeconds
        drainMaxTasks = try container.decodeIfPresent(Int.self, forKey: .drainMaxTasks)
        killGrace = try container.decodeIfPresent(Interval.self, forKey: .killGrace) ?? killGrace
        maxOutputBytes = try container.decodeIfPresent(Int.self, forKey: .maxOutputBytes) ?? maxOutputBytes
        maxStderrBytes = try container.decodeIfPresent(Int.self, forKey: .maxStderrBytes) ?? maxStderrBytes
        defaultTimeout = try container.decodeIfPresent(Interval.self, forKey: .defaultTimeout) ?? defaultTimeout
        guard lease >= .seconds(2), lease <= .hours(24) else {
            throw DecodingError.dataCorruptedError(
                forKey: .lease, in: container, debugDescription: "expected from \"2s\" to \"24h\"")
        }
        guard (0...86_400).contains(drainMaxSeconds) else {
            throw DecodingError.dataCorruptedError(
                forKey: .drainMaxSeconds, in: container, debugDescription: "expected 0 to 86400")
        }
        guard killGrace <= .hours(1) else {
            throw DecodingError.dataCorruptedError(
                forKey: .killGrace, in: container, debugDescription: "expected at most \"1h\"")
        }
        if let drainMaxTasks, drainMaxTasks < 1 {
            throw DecodingError.dataCorruptedError(
                forKey: .drainMaxTasks, in: container, debugDescription: "expected 1 or more")
        }
        guard (0...(64 << 20)).contains(maxOutputBytes) else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxOutputBytes, in: container, debugDescription: "expected 0 to 67108864")
        }
        guard (0...(64 << 20)).contains(maxStderrBytes) else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxStderrBytes, in: container, debugDescription: "expected 0 to 67108864")
        }
        guard defaultTimeout.milliseconds > 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .defaultTimeout, in: container, debugDescription: "expected a duration above zero")
        }
    }
}

extension QueueSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case maxPayloadBytes = "max_payload_bytes" }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        maxPayloadBytes = try container.decodeIfPresent(Int.self, forKey: .maxPayloadBytes) ?? maxPayloadBytes
        guard (2...(64 * 1024 * 1024)).contains(maxPayloadBytes) else {
            throw DecodingError.dataCorruptedError(
                forKey: .maxPayloadBytes, in: container, debugDescription: "expected a size from 2 to 67108864 bytes")
        }
    }
}

extension StoreSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case busyTimeout = "busy_timeout"
        case synchronous
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        busyTimeout = try container.decodeIfPresent(Interval.self, forKey: .busyTimeout) ?? busyTimeout
        guard busyTimeout <= .hours(1) else {
            throw DecodingError.dataCorruptedError(
                forKey: .busyTimeout, in: container, debugDescription: "expected at most \"1h\"")
        }
        synchronous = try container.decodeIfPresent(Synchronous.self, forKey: .synchronous) ?? synchronous
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

extension Interval: Decodable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = Interval(parsing: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "expected a duration such as \"30s\", \"5m\", \"24h\" or \"7d\", got \"\(text)\"")
        }
        guard value <= Interval.days(3660) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected at most ten years")
        }
        self = value
    }
}

extension SafetyRule: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, equals
        case oneOf = "one_of"
        case suffix, regex, safety
        case ignoreCase = "ignore_case"
        case onlyKeys = "only_keys"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = try container.decode(String.self, forKey: .path)
        guard !path.isEmpty, !path.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty)
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .path, in: container,
                debugDescription: "expected a dotted path such as \"to\" or \"meta.channel\"")
        }
        var matchers: [Matcher] = []
        if container.contains(.equals) {
            matchers.append(.equals(try container.decode(JSONValue.self, forKey: .equals)))
        }
        if let choices = try container.decodeIfPresent([JSONValue].self, forKey: .oneOf) {
            matchers.append(.oneOf(choices))
        }
        if let suffix = try container.decodeIfPresent(String.self, forKey: .suffix) {
            guard !suffix.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .suffix, in: container, debugDescription: "expected a non-empty string")
            }
            matchers.append(.suffix(suffix))
        }
        if let pattern = try container.decodeIfPresent(String.self, forKey: .regex) {
            do {
                matchers.append(.regex(pattern, CompiledRegex(regex: try Regex(pattern))))
            } catch {
                throw DecodingError.dataCorruptedError(
                    forKey: .regex, in: container, debugDescription: "not a valid regular expression: \(error)")
            }
        }
        guard matchers.count == 1, let matcher = matchers.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected exactly one of \"equals\", \"one_of\", \"suffix\", \"regex\""))
        }
        guard container.contains(.safety) else {
            throw missingKey(
                CodingKeys.safety, at: decoder.codingPath,
                "missing: the rating this rule gives, \"safe\" or \"dangerous\"")
        }
        let safety = try container.decode(Safety.self, forKey: .safety)
        let onlyKeys = try container.decodeIfPresent([String].self, forKey: .onlyKeys)
        if onlyKeys != nil, safety == .dangerous {
            throw DecodingError.dataCorruptedError(
                forKey: .onlyKeys, in: container, debugDescription: "only a \"safe\" rule takes only_keys")
        }
        if let onlyKeys, !onlyKeys.contains(String(path.split(separator: ".").first ?? "")) {
            throw DecodingError.dataCorruptedError(
                forKey: .onlyKeys, in: container, debugDescription: "must include the rule's own field")
        }
        self.init(
            path: path, matcher: matcher, safety: safety,
            ignoreCase: try container.decodeIfPresent(Bool.self, forKey: .ignoreCase), onlyKeys: onlyKeys)
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
        attempts = try container.decodeIfPresent(Int.self, forKey: .attempts) ?? attempts
        interval = try container.decodeIfPresent(Interval.self, forKey: .interval) ?? interval
        guard (1...100).contains(attempts) else {
            throw DecodingError.dataCorruptedError(
                forKey: .attempts, in: container, debugDescription: "expected 1 to 100")
        }
        guard interval <= .minutes(10) else {
            throw DecodingError.dataCorruptedError(
                forKey: .interval, in: container, debugDescription: "expected at most \"10m\"")
        }
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

extension ApprovalSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case baseURL = "base_url"
        case allowedSigners = "allowed_signers"
        case runWithin = "run_within"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        if let url = try container.decodeIfPresent(String.self, forKey: .baseURL) {
            guard isHTTPAddress(url) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .baseURL, in: container,
                    debugDescription: "expected an http(s) address such as \"https://ops.example.com/autonomy\"")
            }
            baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
        if let path = try container.decodeIfPresent(String.self, forKey: .allowedSigners) {
            guard !path.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .allowedSigners, in: container,
                    debugDescription: "expected the path of an OpenSSH allowed_signers file")
            }
            allowedSigners = path
        }
        runWithin = try container.interval(.runWithin, default: runWithin, from: .minutes(1), to: .days(30))
    }
}

extension ProducerSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case users, groups }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        users = try container.decodeIfPresent([String: ProducerRule].self, forKey: .users) ?? [:]
        groups = try container.decodeIfPresent([String: ProducerRule].self, forKey: .groups) ?? [:]
        for (key, names) in [(CodingKeys.users, users.keys), (.groups, groups.keys)] {
            for name in names where name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == ":" }) {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: decoder.codingPath + [key, ConfigKey(name)],
                        debugDescription: "expected a Unix user or group name"))
            }
        }
    }
}

extension ProducerRule: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case types
        case maxPerHour = "max_per_hour"
        case maxDangerousPerHour = "max_dangerous_per_hour"
        case readAll = "read_all"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        types = try container.decodeIfPresent([String].self, forKey: .types) ?? []
        maxPerHour = try container.decodeIfPresent(Int.self, forKey: .maxPerHour)
        maxDangerousPerHour = try container.decodeIfPresent(Int.self, forKey: .maxDangerousPerHour)
        readAll = try container.decodeIfPresent(Bool.self, forKey: .readAll) ?? false
        for (key, value) in [(CodingKeys.maxPerHour, maxPerHour), (.maxDangerousPerHour, maxDangerousPerHour)] {
            if let value, !(0...10_000_000).contains(value) {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "expected 0 to 10000000")
            }
        }
    }
}

extension NotifySettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case command
        case commandTimeout = "command_timeout"
        case passEnv = "pass_env"
        case groupAfter = "group_after"
        case webhook
        case retryBackoff = "retry_backoff"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        if let command = try container.decodeIfPresent([String].self, forKey: .command) {
            guard let program = command.first, !program.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .command, in: container, debugDescription: "expected a non-empty array")
            }
            self.command = command
        }
        commandTimeout = try container.interval(
            .commandTimeout, default: commandTimeout, from: .seconds(1), to: .minutes(10))
        passEnv = try container.decodeIfPresent([String].self, forKey: .passEnv) ?? []
        groupAfter = try container.decodeIfPresent(Int.self, forKey: .groupAfter) ?? groupAfter
        guard (1...100_000).contains(groupAfter) else {
            throw DecodingError.dataCorruptedError(
                forKey: .groupAfter, in: container, debugDescription: "expected 1 to 100000")
        }
        try decoder.checkVariableNames(passEnv, under: CodingKeys.passEnv)
        webhook = try container.decodeIfPresent(WebhookSettings.self, forKey: .webhook)
        retryBackoff = try container.decodeIfPresent(Interval.self, forKey: .retryBackoff) ?? retryBackoff
        guard retryBackoff >= .seconds(1) else {
            throw DecodingError.dataCorruptedError(
                forKey: .retryBackoff, in: container, debugDescription: "expected at least \"1s\"")
        }
    }
}

extension WebhookSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case url
        case secretEnv = "secret_env"
        case timeout
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let url = try container.decode(String.self, forKey: .url)
        guard isHTTPAddress(url) else {
            throw DecodingError.dataCorruptedError(
                forKey: .url, in: container, debugDescription: "expected an http(s) address")
        }
        self.init(url: url)
        secretEnv = try container.decodeIfPresent(String.self, forKey: .secretEnv)
        if let secretEnv, secretEnv.isEmpty || secretEnv.contains("=") {
            throw DecodingError.dataCorruptedError(
                forKey: .secretEnv, in: container, debugDescription: "expected the name of an environment variable")
        }
        timeout = try container.interval(.timeout, default: timeout, from: .seconds(1), to: .minutes(10))
    }
}

extension KeyedDecodingContainer {
    /// A duration under `key` (or `value` when absent) that must lie in `lower...upper`.
    func interval(_ key: Key, default value: Interval, from lower: Interval, to upper: Interval) throws -> Interval {
        let interval = try decodeIfPresent(Interval.self, forKey: key) ?? value
        guard interval >= lower, interval <= upper else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "expected from \"\(lower)\" to \"\(upper)\"")
        }
        return interval
    }
}

/// A required key is absent: the message says what to write there.
private func missingKey(_ key: any CodingKey, at path: [any CodingKey], _ message: String) -> DecodingError {
    .keyNotFound(key, .init(codingPath: path, debugDescription: message))
}

/// An absolute http(s) address with a host.
private func isHTTPAddress(_ text: String) -> Bool {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else { return false }
    return (scheme == "http" || scheme == "https") && !(url.host ?? "").isEmpty
}

// MARK: - Unknown keys and key paths

/// A coding key for names not known in advance (task type names, unknown keys).
struct ConfigKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        self.stringValue = "\(intValue)"
        self.intValue = intValue
    }
    init(index: Int) {
        stringValue = "\(index)"
        intValue = index
    }
}

/// Collects warnings while a configuration is decoded; reached through the decoder's user info.
final class ConfigWarnings: @unchecked Sendable {
    static let userInfoKey = CodingUserInfoKey(rawValue: "autonomy.configWarnings")!
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}

extension Decoder {
    /// Refuses a name that cannot be an environment variable's: empty, or holding `=`. The error's
    /// path ends with the name itself (`keyed`, for an object's keys) or its index in the list.
    func checkVariableNames(_ names: [String], under key: any CodingKey, keyed: Bool = false) throws {
        for (index, name) in names.enumerated() where name.isEmpty || name.contains("=") {
            let last: any CodingKey = keyed ? ConfigKey(name) : ConfigKey(index: index)
            throw DecodingError.dataCorrupted(
                .init(codingPath: codingPath + [key, last], debugDescription: "not a valid environment variable name"))
        }
    }

    /// Records a warning for each key of this object that `known` does not list.
    func reportUnknownKeys<Keys: CodingKey & CaseIterable>(_ known: Keys.Type) throws {
        guard let warnings = userInfo[ConfigWarnings.userInfoKey] as? ConfigWarnings,
            let container = try? container(keyedBy: ConfigKey.self)
        else { return }
        let names = Set(Keys.allCases.map(\.stringValue))
        for key in container.allKeys where !names.contains(key.stringValue) {
            let path = ConfigError.keyPath(codingPath + [key])
            warnings.add("\(path): unknown key, ignored (check its spelling)")
        }
    }
}
