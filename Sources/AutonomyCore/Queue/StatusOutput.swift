import Foundation

/// `status --json`.
public struct StatusOutput: Encodable, Sendable {
    struct Oldest: Encodable, Sendable {
        var id: Int64
        var type: String
        var since: ISOTime
        var ageSeconds: Int64
        enum CodingKeys: String, CodingKey {
            case id, type, since
            case ageSeconds = "age_seconds"
        }
    }
    struct Scheduled: Encodable, Sendable {
        var id: Int64
        var type: String
        var runAt: ISOTime
        enum CodingKeys: String, CodingKey {
            case id, type
            case runAt = "run_at"
        }
    }
    struct Dead: Encodable, Sendable {
        var id: Int64
        var type: String
        @Nullable var finishedAt: ISOTime?
        @Nullable var lastError: String?
        enum CodingKeys: String, CodingKey {
            case id, type
            case finishedAt = "finished_at"
            case lastError = "last_error"
        }
    }

    /// Every state, zero or not.
    var counts: [String: Int]
    var byType: [String: [String: Int]]
    @Nullable var oldestRunnable: Oldest?
    @Nullable var nextScheduled: Scheduled?
    var expiredLeases: Int
    var dead: [Dead]
    var overrides: [Override]
    var heal: HealSummary
    /// PostgreSQL only: each host's share (absent on SQLite).
    var hosts: [Host]?

    struct Host: Encodable, Sendable {
        var host: String
        var running: Int
        var finished: Int
        var lastSeen: ISOTime
        enum CodingKeys: String, CodingKey {
            case host, running, finished
            case lastSeen = "last_seen"
        }
    }

    enum CodingKeys: String, CodingKey {
        case counts
        case byType = "by_type"
        case oldestRunnable = "oldest_runnable"
        case nextScheduled = "next_scheduled"
        case expiredLeases = "expired_leases"
        case dead, overrides, heal, hosts
    }

    public init(_ status: QueueStatus, now: Int64) {
        counts = Dictionary(
            uniqueKeysWithValues: TaskState.allCases.map { ($0.rawValue, status.counts[$0, default: 0]) })
        byType = status.countsByType.mapValues { counts in
            Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })
        }
        oldestRunnable = status.oldestRunnable.map {
            Oldest(
                id: $0.id, type: $0.type, since: ISOTime($0.since),
                ageSeconds: Interval.between($0.since, now).milliseconds / 1000)
        }
        nextScheduled = status.nextScheduled.map { Scheduled(id: $0.id, type: $0.type, runAt: ISOTime($0.runAt)) }
        expiredLeases = status.expiredLeases
        dead = status.recentDead.map {
            Dead(id: $0.id, type: $0.type, finishedAt: ISOTime($0.finishedAt), lastError: $0.lastError)
        }
        overrides = status.overrides
        heal = HealSummary(breakers: status.breakers, lastDay: status.healLastDay)
        hosts =
            status.hosts.isEmpty
            ? nil
            : status.hosts.map {
                Host(host: $0.host, running: $0.running, finished: $0.finished, lastSeen: ISOTime($0.lastSeen))
            }
    }
}

/// Heal at a glance, for `status` and `map`: open breakers, and the automatic actions of the last
/// day by outcome.
public struct HealSummary: Encodable, Sendable {
    public var breakers: [HealBreaker]
    public var lastDay: [String: [String: Int]]

    public init(breakers: [HealBreaker], lastDay: [String: [String: Int]]) {
        (self.breakers, self.lastDay) = (breakers, lastDay)
    }

    enum CodingKeys: String, CodingKey {
        case breakers
        case lastDay = "last_day"
    }

    /// `enabled; last day: 2 automatic actions (fixed 1, did_not_fix 1); 1 breaker open`.
    public static func line(_ status: QueueStatus, enabled: Bool) -> String {
        line(breakers: status.breakers, lastDay: status.healLastDay, enabled: enabled)
    }

    public static func line(breakers: [HealBreaker], lastDay: [String: [String: Int]], enabled: Bool) -> String {
        var outcomes: [String: Int] = [:]
        for (_, counts) in lastDay { for (outcome, count) in counts { outcomes[outcome, default: 0] += count } }
        let total = outcomes.values.reduce(0, +)
        let detail =
            outcomes.isEmpty
            ? ""
            : " (" + outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"
        let open =
            breakers.isEmpty ? "no breaker open" : "\(breakers.count) breaker\(breakers.count == 1 ? "" : "s") open"
        return
            "\(enabled ? "enabled" : "disabled (heal.enabled)"); last day: \(total) automatic action\(total == 1 ? "" : "s")\(detail); \(open)"
    }
}
