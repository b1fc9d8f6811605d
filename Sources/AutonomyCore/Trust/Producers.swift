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
