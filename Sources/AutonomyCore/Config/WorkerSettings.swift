import Foundation

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
    /// The task types this host runs; nil: every type (several hosts on one PostgreSQL queue).
    public var types: [String]?
    /// This host's tags: a type with `run_on` runs only on a host that has every tag it names.
    public var tags: [String] = []
    /// This host's name in the ledger and in `status` (default: the machine's host name).
    public var host: String?
    public var hostName: String { host ?? ProcessInfo.processInfo.hostName }
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
    /// The database and its -wal and -shm files are readable and writable by their group as well
    /// (0660): `autonomy serve` runs as its own user in the worker's group, so that its signing key
    /// is out of the worker's (and every handler's) reach. Off: 0600, the worker's alone.
    public var groupAccess = false
    /// The environment variable that holds the PostgreSQL password (else `PGPASSWORD`, else the
    /// password file). Never the password itself: the configuration is no place for it.
    public var passwordEnv: String?
    public init() {}
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
        case types, tags, host
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        lease = try container.decode(
            .lease, default: lease, in: .seconds(2)...Interval.hours(24), expected: "expected from \"2s\" to \"24h\"")
        drainMaxSeconds = try container.decode(
            .drainMaxSeconds, default: drainMaxSeconds, in: 0...86_400, expected: "expected 0 to 86400")
        drainMaxTasks = try container.decodeIfPresent(Int.self, forKey: .drainMaxTasks)
        killGrace = try container.decode(
            .killGrace, default: killGrace, in: Interval.zero...Interval.hours(1), expected: "expected at most \"1h\"")
        maxOutputBytes = try container.decode(
            .maxOutputBytes, default: maxOutputBytes, in: 0...(64 << 20), expected: "expected 0 to 67108864")
        maxStderrBytes = try container.decode(
            .maxStderrBytes, default: maxStderrBytes, in: 0...(64 << 20), expected: "expected 0 to 67108864")
        defaultTimeout = try container.decodeIfPresent(Interval.self, forKey: .defaultTimeout) ?? defaultTimeout
        types = try container.decodeIfPresent([String].self, forKey: .types)
        tags = try container.decodeIfPresent([String].self, forKey: .tags) ?? []
        host = try container.decodeIfPresent(String.self, forKey: .host)
        if let host, host.isEmpty || host.count > 200 || host.contains(where: { $0.isNewline }) {
            throw DecodingError.dataCorruptedError(
                forKey: .host, in: container, debugDescription: "expected a short name on one line")
        }
        if let types, types.isEmpty {
            throw DecodingError.dataCorruptedError(
                forKey: .types, in: container,
                debugDescription: "expected at least one type (leave worker.types out to run every type)")
        }
        if let drainMaxTasks, drainMaxTasks < 1 {
            throw DecodingError.dataCorruptedError(
                forKey: .drainMaxTasks, in: container, debugDescription: "expected 1 or more")
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
        maxPayloadBytes = try container.decode(
            .maxPayloadBytes, default: maxPayloadBytes, in: 2...(64 * 1024 * 1024),
            expected: "expected a size from 2 to 67108864 bytes")
    }
}

extension StoreSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case busyTimeout = "busy_timeout"
        case synchronous
        case groupAccess = "group_access"
        case passwordEnv = "password_env"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        busyTimeout = try container.decode(
            .busyTimeout, default: busyTimeout, in: Interval.zero...Interval.hours(1),
            expected: "expected at most \"1h\"")
        synchronous = try container.decodeIfPresent(Synchronous.self, forKey: .synchronous) ?? synchronous
        groupAccess = try container.decodeIfPresent(Bool.self, forKey: .groupAccess) ?? false
        passwordEnv = try container.decodeIfPresent(String.self, forKey: .passwordEnv)
        if let passwordEnv, passwordEnv.isEmpty || passwordEnv.contains("=") {
            throw DecodingError.dataCorruptedError(
                forKey: .passwordEnv, in: container, debugDescription: "expected the name of an environment variable")
        }
    }
}
