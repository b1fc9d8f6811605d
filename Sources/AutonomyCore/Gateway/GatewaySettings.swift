import Foundation

/// How much a model costs and how good it is: the gateway tries free models first.
public enum ModelTier: String, Sendable, Codable, CaseIterable, Comparable {
    case free, cheap, strong

    var rank: Int {
        switch self {
        case .free: return 0
        case .cheap: return 1
        case .strong: return 2
        }
    }

    public static func < (lhs: ModelTier, rhs: ModelTier) -> Bool { lhs.rank < rhs.rank }

    /// The next tier up, for escalation.
    public var above: ModelTier? {
        switch self {
        case .free: return .cheap
        case .cheap: return .strong
        case .strong: return nil
        }
    }
}

/// What a caller asks for: a tier, or `auto` (free first, then cheap; strong only when escalating).
public enum TierRequest: String, Sendable, CaseIterable {
    case auto, free, cheap, strong
}

/// One model behind an OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp, vLLM,
/// OpenRouter, OpenAI...).
public struct ModelSettings: Sendable {
    public var name: String
    public var provider = "openai"
    /// e.g. `http://127.0.0.1:11434/v1`; the gateway POSTs to `{base_url}/chat/completions`.
    public var baseURL: String
    /// The model id the endpoint expects.
    public var model: String
    /// The name of the environment variable holding the API key; the key itself is never in the
    /// config, the database, the logs or any output.
    public var apiKeyEnv: String?
    public var tier: ModelTier
    public var inputUSDPerMillion: Double
    public var outputUSDPerMillion: Double
    public var timeout: Interval = .seconds(120)
    public var maxTokens: Int = 1024

    public var isFree: Bool { inputUSDPerMillion == 0 && outputUSDPerMillion == 0 }

    /// The cost of a call with these token counts, in USD.
    public func cost(input: Int, output: Int) -> Double {
        (Double(input) * inputUSDPerMillion + Double(output) * outputUSDPerMillion) / 1_000_000
    }
}

/// `gateway` in the configuration.
public struct GatewaySettings: Sendable {
    public var dailyCapUSD: Double = 5
    /// Above this share of the cap, `auto` and `cheap` calls use free models only.
    public var softCapRatio: Double = 0.8
    /// A reservation a crashed process never settled is released after this.
    public var reservationTimeout: Interval = .minutes(10)
    /// Which spend the cap holds: today's (midnight in `timezone`), or the last 24 hours.
    public var window: SpendWindow = .day
    public var models: [ModelSettings] = []
    public init() {}
}

/// The span of time the daily cap covers.
public enum SpendWindow: String, Sendable, CaseIterable {
    /// From midnight in the configured zone to the next midnight.
    case day
    /// The last 24 hours, so that spend just before midnight and just after never adds up to twice
    /// the cap.
    case rolling24h

    /// `[start, end)` of the window that holds `now`.
    public func bounds(_ now: Int64, _ zone: TimeZone) -> (start: Int64, end: Int64) {
        switch self {
        case .day: return (LocalDay.start(of: now, in: zone), LocalDay.start(ofDayAfter: now, in: zone))
        case .rolling24h: return (now - Interval.hours(24).milliseconds + 1, now + 1)
        }
    }

    /// When a call refused now may be tried again.
    public func retryTime(after now: Int64, _ zone: TimeZone) -> Int64 {
        switch self {
        case .day: return LocalDay.start(ofDayAfter: now, in: zone)
        case .rolling24h: return now + Interval.hours(1).milliseconds
        }
    }
}
