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
        softCapRatio = try container.decode(
            .softCapRatio, default: softCapRatio, in: 0...1, expected: "expected 0 to 1")
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
        maxTokens = try container.decode(
            .maxTokens, default: maxTokens, in: 1...200_000, expected: "expected 1 to 200000")
    }
}
