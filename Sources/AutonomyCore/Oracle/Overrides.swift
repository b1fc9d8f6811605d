import Foundation
import GRDB

/// A runtime adjustment an approved proposal made: a type paused, a timeout, the lease or a type's
/// attempts raised. The worker applies the active ones on top of the configuration, which is never
/// rewritten; `autonomy overrides remove ID` ends one.
public struct Override: Sendable, Equatable, Encodable {
    public enum Kind: String, Sendable, Codable, DatabaseValueConvertible {
        case pause, timeout, lease
        case maxAttempts = "max_attempts"
    }

    public var id: Int64
    public var kind: Kind
    /// The type it applies to; nil for the lease (the worker's, for every type).
    public var type: String?
    /// Milliseconds for a timeout or the lease, a count for attempts, nil for a pause.
    public var value: Int64?
    public var reason: String
    /// The proposal (an `apply_remediation` task) that made it; nil when made by hand.
    public var proposal: Int64?
    public var createdAt: Int64
    public var expiresAt: Int64?

    /// `pause`, `timeout 20m`, `lease 2m`, `max_attempts 5`.
    public var effect: String {
        switch kind {
        case .pause: return "pause"
        case .timeout, .lease: return "\(kind.rawValue) \(Interval(milliseconds: value ?? 0).exactText)"
        case .maxAttempts: return "max_attempts \(value ?? 0)"
        }
    }

    /// One line a person reads.
    public var line: String {
        let until = expiresAt.map { " until \(Timestamp.format($0))" } ?? ""
        return
            "override \(id): \(effect) \(type ?? "(all types)") since \(Timestamp.format(createdAt))\(until): \(Visible.text(reason))"
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, type, value, effect, reason, proposal
        case createdAt = "created_at"
        case expiresAt = "expires_at"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(kind, forKey: .kind)
        try container.encode(type, forKey: .type)
        try container.encode(value, forKey: .value)
        try container.encode(effect, forKey: .effect)
        try container.encode(reason, forKey: .reason)
        try container.encode(proposal, forKey: .proposal)
        try container.encode(ISOTime(createdAt), forKey: .createdAt)
        try container.encode(ISOTime(expiresAt), forKey: .expiresAt)
    }

    static let columns = "id, kind, type, value, reason, task_id, created_at, expires_at"
}

extension Override {
    init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        kind = try row.decode(forColumn: "kind")
        type = try row.decode(forColumn: "type")
        value = try row.decode(forColumn: "value")
        reason = try row.decode(forColumn: "reason")
        proposal = try row.decode(forColumn: "task_id")
        createdAt = try row.decode(forColumn: "created_at")
        expiresAt = try row.decode(forColumn: "expires_at")
    }
}

/// `overrides remove` on an override that does not exist or already ended.
public enum OverrideError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(Int64)
    case notActive(Int64)

    public var description: String {
        switch self {
        case .notFound(let id): return "no override \(id) (see 'autonomy overrides')"
        case .notActive(let id): return "override \(id) is no longer in effect (removed or expired)"
        }
    }
}

extension Configuration {
    /// The configuration the worker runs: the file's, with the active overrides on top.
    /// Applying again starts from the file's values, so an override that ended leaves no trace.
    public func applying(_ overrides: [Override]) -> Configuration {
        var configuration = self
        configuration.overrides = overrides
        let lease = declaredLease ?? worker.lease
        (configuration.declaredLease, configuration.worker.lease) = (lease, lease)
        for (name, var type) in taskTypes where type.paused || type.timeoutOverride != nil || type.attemptsFloor != nil
        {
            (type.paused, type.timeoutOverride, type.attemptsFloor) = (false, nil, nil)
            configuration.taskTypes[name] = type
        }
        for override in overrides {
            guard override.kind != .lease else {
                // An override raises, never lowers: the file may have been raised past it since.
                configuration.worker.lease = max(lease, Interval(milliseconds: override.value ?? 0))
                continue
            }
            guard let name = override.type, var type = configuration.taskTypes[name] else { continue }
            switch override.kind {
            case .pause: type.paused = true
            case .timeout: type.timeoutOverride = override.value.map(Interval.init(milliseconds:))
            case .maxAttempts: type.attemptsFloor = override.value.map { Int($0) }
            case .lease: break
            }
            configuration.taskTypes[name] = type
        }
        configuration.pausedTypes = configuration.taskTypes.values.filter(\.paused).map(\.name).sorted()
        return configuration
    }
}

extension Database {
    func activeOverrides(now: Int64) throws -> [Override] {
        try Row.fetchAll(
            cachedStatement(
                sql: """
                    SELECT \(Override.columns) FROM overrides
                    WHERE removed_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY id
                    """), arguments: [now]
        ).map(Override.init(row:))
    }

    /// Adds an override, ending any active one of the same kind on the same type (one at a time),
    /// with a ledger row for each.
    @discardableResult
    func setOverride(
        _ kind: Override.Kind, type: String?, value: Int64?, reason: String, proposal: Int64?, lasting: Interval?,
        now: Int64
    ) throws -> Override {
        for previous in try activeOverrides(now: now) where previous.kind == kind && previous.type == type {
            try endOverride(previous, by: "autonomy", reason: "replaced by a newer override", now: now)
        }
        let expiresAt = lasting.map { now + $0.milliseconds }
        try execute(
            sql: """
                INSERT INTO overrides (kind, type, value, reason, task_id, created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [kind.rawValue, type, value, reason, proposal, now, expiresAt])
        let made = Override(
            id: lastInsertedRowID, kind: kind, type: type, value: value, reason: reason, proposal: proposal,
            createdAt: now, expiresAt: expiresAt)
        try appendLedger(
            .overrideSet, at: now, taskID: proposal, type: type,
            detail: [
                "override": .int(made.id), "kind": .string(kind.rawValue), "value": value.map { .int($0) } ?? .null,
                "expires_at": expiresAt.map { .string(Timestamp.format($0)) } ?? .null,
            ], notes: ["reason": reason])
        return made
    }

    func endOverride(_ override: Override, by actor: String, reason: String?, now: Int64) throws {
        try execute(
            sql: "UPDATE overrides SET removed_at = ?, removed_by = ? WHERE id = ?",
            arguments: [now, actor, override.id])
        try appendLedger(
            .overrideRemoved, at: now, taskID: override.proposal, type: override.type,
            detail: ["override": .int(override.id), "kind": .string(override.kind.rawValue), "by": .string(actor)],
            notes: ["reason": reason])
    }
}

extension AutonomyStore {
    /// The overrides in effect now, oldest first.
    public func overrides(now: Int64) throws -> [Override] {
        try read("read the overrides") { db in try db.activeOverrides(now: now) }
    }

    /// `loaded` with the active overrides applied: what a worker runs.
    public func applyingOverrides(to loaded: LoadedConfiguration, now: Int64) throws -> LoadedConfiguration {
        var loaded = loaded
        loaded.configuration = loaded.configuration.applying(try overrides(now: now))
        return loaded
    }

    /// Ends an override now (`autonomy overrides remove`), with a ledger row naming who and why.
    ///
    /// - Throws: `OverrideError` (nothing changed) or `StoreError`.
    public func removeOverride(id: Int64, by actor: String, reason: String?, now: Int64) throws -> Override {
        try write("remove an override") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT \(Override.columns), removed_at FROM overrides WHERE id = ?", arguments: [id])
            else { throw OverrideError.notFound(id) }
            let override = try Override(row: row)
            let removedAt: Int64? = try row.decode(forColumn: "removed_at")
            guard removedAt == nil, override.expiresAt.map({ $0 > now }) ?? true else {
                throw OverrideError.notActive(id)
            }
            try db.endOverride(override, by: actor, reason: reason, now: now)
            return override
        }
    }
}
