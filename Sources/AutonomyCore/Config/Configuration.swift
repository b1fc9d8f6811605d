import Foundation

/// The declared system map and every setting of the tool, as read from `autonomy.json`.
///
/// Every key but `version` is optional and takes the default shown in `config.example.json`.
/// Keys are part of the user contract: new keys may be added, these are never renamed.
public struct Configuration: Sendable {
    public var version: Int = 1
    /// Where the database lives, as written in the file (see `ConfigLoader` for precedence).
    public var database: String?
    /// The zone times are shown in. The default, UTC, is made only when first read: in a fresh
    /// process, making it costs a fifth as much as reading the rest of the file, and most commands
    /// never show a time. A zone the file names is made as the file is read, to check the name.
    public var timezone: TimeZone {
        get { zone ?? .gmt }
        set { zone = newValue }
    }
    private var zone: TimeZone?
    /// The zone the file names (or a command set), or nil for the default: for holders of the zone
    /// that should not make UTC before they need it either (`ModelGateway`).
    var timezoneIfSet: TimeZone? { zone }
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
    /// How `audit` looks back.
    public var audit = AuditSettings()
    /// Commands an operator declares as fixes (`run_remediation`), by name.
    public var remediations: [String: RemediationCommand] = [:]
    /// The self-healing executor (`autonomy heal`): off by default.
    public var heal = HealSettings()
    /// `autonomy serve`: its signing key and the proxies it believes.
    public var serve = ServeSettings()
    /// The overrides applied on top of the file (see `applying(_:)`); empty as read from the file.
    public var overrides: [Override] = []
    /// The file's lease, kept while an override raises `worker.lease`.
    var declaredLease: Interval?
    /// The types an override pauses, sorted: no claim takes their tasks.
    public internal(set) var pausedTypes: [String] = []
    /// When set, claims take tasks of these types only (`heal` applies fix proposals alone).
    public var claimOnly: [String]?

    /// The declared task types (heal's included) this host leaves to others: those `worker.types`
    /// does not list, and those whose `run_on` names a tag `worker.tags` lacks. An undeclared type
    /// is not among them: a claim blocks its tasks, as on one machine.
    public var typesRunElsewhere: [String] {
        // The usual map (no worker.types, no run_on) pays nothing: a claim asks for this per task.
        guard worker.types != nil || taskTypes.values.contains(where: { !$0.runOn.isEmpty }) else { return [] }
        let tags = Set(worker.tags)
        var names = taskTypes.values.filter { type in
            !Set(type.runOn).isSubset(of: tags) || !(worker.types?.contains(type.name) ?? true)
        }.map(\.name)
        if let types = worker.types, !types.contains(TaskType.remediationTypeName) {
            names.append(TaskType.remediationTypeName)
        }
        return names.sorted()
    }

    /// What a claim passes over: paused types, and the types other hosts run.
    public var skippedTypes: [String] {
        let elsewhere = typesRunElsewhere
        return elsewhere.isEmpty ? pausedTypes : Array(Set(pausedTypes + elsewhere)).sorted()
    }

    /// The newest `version` this binary understands.
    public static let supportedVersion = 1

    public init() {}

    /// A declared type, or the built-in `apply_remediation`.
    public func taskType(named name: String) -> TaskType? {
        taskTypes[name]
            ?? (name == TaskType.remediationTypeName
                ? .applyRemediation(audit, heal: heal, remediations: remediations) : nil)
    }
}

extension Configuration: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case version, database, timezone, worker, queue, store
        case taskTypes = "task_types"
        case components, notify, approvals, gateway, producers, audit, remediations, heal, serve
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
        let types = try container.decodeNamedIfPresent(TaskTypeBody.self, forKey: .taskTypes) ?? [:]
        for (name, body) in types.sorted(by: { $0.key < $1.key }) {  // the first bad name, always the same
            guard TaskType.isValidName(name) else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [CodingKeys.taskTypes, ConfigKey(name)],
                        debugDescription: "a task type name uses letters, digits, '_', '-' and '.' only (at most 100)"))
            }
            guard name != TaskType.remediationTypeName else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: [CodingKeys.taskTypes, ConfigKey(name)],
                        debugDescription:
                            "\(name) is built in (fix proposals from `autonomy audit`); declare fixes under remediations"
                    ))
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
        audit = try container.decodeIfPresent(AuditSettings.self, forKey: .audit) ?? AuditSettings()
        remediations = try container.decodeNamedIfPresent(RemediationCommand.self, forKey: .remediations) ?? [:]
        for name in remediations.keys.sorted() where !TaskType.isValidName(name) {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: [CodingKeys.remediations, ConfigKey(name)],
                    debugDescription: "a remediation name uses letters, digits, '_', '-' and '.' only (at most 100)"))
        }
        heal = try container.decodeIfPresent(HealSettings.self, forKey: .heal) ?? HealSettings()
        serve = try container.decodeIfPresent(ServeSettings.self, forKey: .serve) ?? ServeSettings()
        try heal.checkTypes(declared: taskTypes, remediations: remediations, path: [CodingKeys.heal])
    }
}
