import Foundation

/// How the Oracle (`autonomy audit`) looks back: the window, what counts as drift, what is stuck.
public struct AuditSettings: Sendable {
    /// The window an audit reads, compared with the one before it.
    public var window: Interval = .days(7)
    /// A pending approval older than this is stuck.
    public var staleApproval: Interval = .hours(24)
    /// Fewer finished tasks than this in either window raise no drift: too small a sample.
    public var minSample = 10
    public var thresholds = AuditThresholds()
    /// A proposal rejected this recently is not proposed again.
    public var cooldown: Interval = .days(7)
    /// How long a proposal waits for a decision before it expires.
    public var proposalsExpireAfter: Interval = .days(7)
    /// How long an override a proposal makes lasts; nil: until removed.
    public var overridesExpireAfter: Interval?
    /// Ask the model gateway (free tier) for a short plain-language summary of the findings.
    public var explain = false

    public init() {}
}

/// When a change between two windows is drift.
public struct AuditThresholds: Sendable {
    /// The success rate fell by more than this many points (0.2: from 95% to under 75%).
    public var successRateDrop = 0.2
    /// p95 duration rose by more than this fraction (0.5: half as long again).
    public var p95Rise = 0.5
    /// Spend rose by more than this fraction.
    public var costRise = 0.5
    /// Failed, broken or inconclusive checks rose by more than this fraction.
    public var verificationFailuresRise = 0.5

    public init() {}
}

extension AuditSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case window
        case staleApproval = "stale_approval"
        case minSample = "min_sample"
        case thresholds, cooldown, explain
        case proposalsExpireAfter = "proposals_expire_after"
        case overridesExpireAfter = "overrides_expire_after"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        cooldown = try container.interval(.cooldown, default: cooldown, from: .zero, to: .days(366))
        proposalsExpireAfter = try container.interval(
            .proposalsExpireAfter, default: proposalsExpireAfter, from: .minutes(1), to: .days(366))
        if container.contains(.overridesExpireAfter) {
            overridesExpireAfter = try container.interval(
                .overridesExpireAfter, default: .days(7), from: .minutes(1), to: .days(366))
        }
        explain = try container.decodeIfPresent(Bool.self, forKey: .explain) ?? false
        window = try container.interval(.window, default: window, from: .hours(1), to: .days(366))
        staleApproval = try container.interval(
            .staleApproval, default: staleApproval, from: .minutes(1), to: .days(366))
        minSample = try container.decode(
            .minSample, default: minSample, in: 1...1_000_000, expected: "expected 1 to 1000000")
        thresholds = try container.decodeIfPresent(AuditThresholds.self, forKey: .thresholds) ?? thresholds
    }
}

extension AuditThresholds: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case successRateDrop = "success_rate_drop"
        case p95Rise = "p95_rise"
        case costRise = "cost_rise"
        case verificationFailuresRise = "verification_failures_rise"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        successRateDrop = try container.decode(
            .successRateDrop, default: successRateDrop, in: 0.01...1, expected: "expected a fraction from 0.01 to 1")
        p95Rise = try container.decode(.p95Rise, default: p95Rise, in: 0.01...100, expected: "expected 0.01 to 100")
        costRise = try container.decode(.costRise, default: costRise, in: 0.01...100, expected: "expected 0.01 to 100")
        verificationFailuresRise = try container.decode(
            .verificationFailuresRise, default: verificationFailuresRise, in: 0.01...100,
            expected: "expected 0.01 to 100")
    }
}
