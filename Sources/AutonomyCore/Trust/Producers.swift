import Foundation

/// What one producer (a Unix user, or the members of a group) may do through the gate.
public struct ProducerRule: Sendable, Equatable {
    /// The task types it may enqueue; `"*"` means every declared type.
    public var types: [String] = []
    /// Tasks it may enqueue in any hour; nil means no limit.
    public var maxPerHour: Int?
    /// Dangerous tasks (each one asks an operator) it may enqueue in any hour; nil means no limit
    /// beyond `maxPerHour`.
    public var maxDangerousPerHour: Int?
    /// It may read every task, not just its own (an operator's login account).
    public var readAll = false
    public init() {}
}

/// The `producers` section: who may use the gate. A user it does not list is refused.
public struct ProducerSettings: Sendable {
    public var users: [String: ProducerRule] = [:]
    public var groups: [String: ProducerRule] = [:]
    public init() {}

    /// The rules for a Unix user: its own entry when it has one; else its groups' entries together:
    /// every type any of them allows, `read_all` if any gives it, and each limit the highest among
    /// the entries that allow types (so a group that only lets operators read lifts no limit). Nil
    /// when no entry applies.
    public func policy(user: String, groups memberOf: [String]) -> ProducerPolicy? {
        if let rule = users[user] { return ProducerPolicy(name: user, rule: rule) }
        let rules = memberOf.compactMap { groups[$0] }
        guard !rules.isEmpty else { return nil }
        var merged = ProducerRule()
        merged.types = rules.flatMap(\.types)
        merged.readAll = rules.contains { $0.readAll }
        let granting = rules.filter { !$0.types.isEmpty }
        if let first = granting.first {
            merged.maxPerHour = granting.dropFirst().reduce(first.maxPerHour) { higher($0, $1.maxPerHour) }
            merged.maxDangerousPerHour = granting.dropFirst().reduce(first.maxDangerousPerHour) {
                higher($0, $1.maxDangerousPerHour)
            }
        }
        return ProducerPolicy(name: user, rule: merged)
    }

    /// The higher of two limits, where nil (no limit) is the highest.
    private func higher(_ a: Int?, _ b: Int?) -> Int? {
        guard let a, let b else { return nil }
        return max(a, b)
    }
}

/// One connected producer's rights, as the gate applies them.
public struct ProducerPolicy: Sendable, Equatable {
    /// The Unix user name the kernel reported: the `source` of every task it enqueues.
    public var name: String
    public var rule: ProducerRule

    public init(name: String, rule: ProducerRule) {
        self.name = name
        self.rule = rule
    }

    public func allows(type: String) -> Bool { rule.types.contains("*") || rule.types.contains(type) }
}

extension ProducerSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case users, groups }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        users = try container.decodeNamedIfPresent(ProducerRule.self, forKey: .users) ?? [:]
        groups = try container.decodeNamedIfPresent(ProducerRule.self, forKey: .groups) ?? [:]
        for (key, names) in [(CodingKeys.users, users.keys), (.groups, groups.keys)] {
            for name in names.sorted() where name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == ":" }) {
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
