import Foundation
import GRDB

/// How one declared task type performs, from the ledger.
public struct TypeStats: Sendable, Encodable {
    public var name: String
    public var owner: String?
    public var safety: Safety
    public var hasVerifiers: Bool
    /// Attempts whose handler ran in the window.
    public var runs: Int
    public var done: Int
    public var dead: Int
    /// Done over finished (done + dead) in the window; nil when nothing finished.
    public var successRate: Double?
    public var medianMs: Int64?
    public var p95Ms: Int64?
    public var costUSD: Double
    public var lastSuccess: Int64?
    public var everSucceeded: Bool
    /// Verification failures (fail, error or inconclusive checks) in the window.
    public var verificationFailures: Int
    /// Checks made in the window, passed or not.
    public var checks = 0
    /// The overrides in effect on the type (`pause`, `timeout 20m`…), when the map was given them.
    public var overrides: [String] = []
    /// Attempts run in the window per host (PostgreSQL; empty on SQLite, where there is one).
    public var hosts: [String: Int] = [:]

    /// Declared, but never done in the window (or ever): shelfware.
    public var shelfware: Bool { lastSuccessInWindow == false }
    var lastSuccessInWindow = false

    enum CodingKeys: String, CodingKey {
        case name, owner, safety
        case hasVerifiers = "verified"
        case runs, done, dead
        case successRate = "success_rate"
        case medianMs = "median_ms"
        case p95Ms = "p95_ms"
        case costUSD = "cost_usd"
        case lastSuccess = "last_success"
        case everSucceeded = "ever_succeeded"
        case shelfware
        case verificationFailures = "verification_failures"
        case overrides, hosts
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if !hosts.isEmpty { try container.encode(hosts, forKey: .hosts) }
        try container.encode(name, forKey: .name)
        try container.encode(owner, forKey: .owner)
        try container.encode(safety, forKey: .safety)
        try container.encode(hasVerifiers, forKey: .hasVerifiers)
        try container.encode(runs, forKey: .runs)
        try container.encode(done, forKey: .done)
        try container.encode(dead, forKey: .dead)
        try container.encode(successRate, forKey: .successRate)
        try container.encode(medianMs, forKey: .medianMs)
        try container.encode(p95Ms, forKey: .p95Ms)
        try container.encode(costUSD, forKey: .costUSD)
        try container.encode(ISOTime(lastSuccess), forKey: .lastSuccess)
        try container.encode(everSucceeded, forKey: .everSucceeded)
        try container.encode(shelfware, forKey: .shelfware)
        try container.encode(verificationFailures, forKey: .verificationFailures)
        try container.encode(overrides, forKey: .overrides)
    }
}

/// A declared component and how its task types perform together.
public struct ComponentStats: Sendable, Encodable {
    public var component: Component
    public var runs: Int
    public var done: Int
    public var dead: Int
    public var costUSD: Double
    public var lastSuccess: Int64?
    /// None of its task types was done in the window.
    public var shelfware: Bool

    enum CodingKeys: String, CodingKey {
        case name, owner, kind, safety
        case taskTypes = "task_types"
        case runs, done, dead
        case costUSD = "cost_usd"
        case lastSuccess = "last_success"
        case shelfware
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(component.name, forKey: .name)
        try container.encode(component.owner, forKey: .owner)
        try container.encode(component.kind, forKey: .kind)
        try container.encode(component.safety, forKey: .safety)
        try container.encode(component.taskTypes, forKey: .taskTypes)
        try container.encode(runs, forKey: .runs)
        try container.encode(done, forKey: .done)
        try container.encode(dead, forKey: .dead)
        try container.encode(costUSD, forKey: .costUSD)
        try container.encode(ISOTime(lastSuccess), forKey: .lastSuccess)
        try container.encode(shelfware, forKey: .shelfware)
    }
}

/// The declared map beside what the ledger says happened.
public struct SystemMapReport: Sendable {
    public var since: Int64
    public var types: [TypeStats]
    public var components: [ComponentStats]
    /// Types the ledger has seen that the map no longer declares.
    public var undeclared: [String]
}

extension AutonomyStore {
    /// Every declared type and component with its runs, success rate, durations, cost and last
    /// success since `since`, and the shelfware signal; plus the types the map no longer declares.
    public func systemMap(configuration: Configuration, since: Int64) throws -> SystemMapReport {
        try read("build the system map") { db in
            try SystemMapReport(
                configuration: configuration, since: since, tally: try LedgerTally.read([since, .max], db: db),
                lastSuccess: { try db.lastSuccess(of: $0) }, seen: try db.typesInLedger())
        }
    }
}

extension SystemMapReport {
    /// The map from one tally of its window, whichever store it came from: `lastSuccess` gives a
    /// type's last success ever, `seen` every type the ledger names.
    init(
        configuration: Configuration, since: Int64, tally: LedgerTally, lastSuccess: (String) throws -> Int64?,
        seen: [String]
    ) rethrows {
        var types: [TypeStats] = []
        for type in configuration.taskTypes.values.sorted(by: { $0.name < $1.name }) {
            var stats = TypeStats(
                type, tally.windows[0][type.name], lastSuccess: try lastSuccess(type.name), since: since)
            stats.overrides = configuration.overrides.filter { $0.type == type.name }.map(\.effect)
            types.append(stats)
        }
        let byName = Dictionary(uniqueKeysWithValues: types.map { ($0.name, $0) })
        let components = configuration.components.map { component -> ComponentStats in
            let members = component.taskTypes.compactMap { byName[$0] }
            return ComponentStats(
                component: component, runs: members.map(\.runs).reduce(0, +),
                done: members.map(\.done).reduce(0, +),
                dead: members.map(\.dead).reduce(0, +), costUSD: members.map(\.costUSD).reduce(0, +),
                lastSuccess: members.compactMap(\.lastSuccess).max(),
                shelfware: !members.contains { !$0.shelfware })
        }
        let undeclared = seen.filter { configuration.taskType(named: $0) == nil }
        self.init(since: since, types: types, components: components, undeclared: undeclared)
    }
}
