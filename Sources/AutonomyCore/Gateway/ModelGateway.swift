import AsyncHTTPClient
import Foundation
import NIOCore

/// A call for a completion.
public struct LLMRequest: Sendable {
    public var prompt: String
    public var system: String?
    public var tier: TierRequest = .auto
    public var maxTokens: Int?
    /// The task the call is for: its cost reaches the task's ledger rows.
    public var taskID: Int64?
    /// Start one tier above this one (an earlier attempt with it failed verification).
    public var escalateFrom: ModelTier?

    public init(
        prompt: String, system: String? = nil, tier: TierRequest = .auto, maxTokens: Int? = nil,
        taskID: Int64? = nil, escalateFrom: ModelTier? = nil
    ) {
        self.prompt = prompt
        self.system = system
        self.tier = tier
        self.maxTokens = maxTokens
        self.taskID = taskID
        self.escalateFrom = escalateFrom
    }
}

/// A completion and what it cost.
public struct LLMResponse: Sendable {
    public var text: String
    public var model: String
    public var tier: ModelTier
    public var inputTokens: Int?
    public var outputTokens: Int?
    public var costUSD: Double
    public var latencyMs: Int64
    /// Models tried before this one, and why they were passed over.
    public var passedOver: [String]
}

/// Why no completion came back.
public enum GatewayError: Error, Sendable, CustomStringConvertible {
    case noModels(TierRequest)
    /// Every model the request could use is paid, and the day's cap does not allow the call.
    case budgetExhausted(capUSD: Double, until: Int64, tried: [String])
    /// Every model that was tried failed.
    case allFailed([String])

    public var description: String {
        switch self {
        case .noModels(let tier):
            return "no model is configured for tier \(tier.rawValue) (add one under gateway.models)"
        case .budgetExhausted(let cap, let until, let tried):
            return String(
                format: "the daily cost cap ($%.2f) leaves no room for this call; paid models are refused until ", cap)
                + Timestamp.format(until) + " and no free model could take it (" + tried.joined(separator: "; ") + ")"
        case .allFailed(let reasons):
            return "every model failed: " + reasons.joined(separator: "; ")
        }
    }
}

/// The one chokepoint for model calls: picks the model (free first), reserves the worst-case cost
/// of a paid call against the daily cap, calls it, settles the real cost, records everything.
public struct ModelGateway: Sendable {
    public var store: any BudgetStore
    public var settings: GatewaySettings
    /// The zone the cap's day is counted in: the configuration's, made (UTC) only when first read.
    public var timeZone: TimeZone {
        get { zone ?? .gmt }
        set { zone = newValue }
    }
    private var zone: TimeZone?
    public var clock: any WallClock
    /// Where API keys are read from: the process environment, never the configuration.
    public var environment: [String: String]

    public init(
        store: any BudgetStore, configuration: Configuration, clock: any WallClock = SystemClock(),
        environment: [String: String] = ProcessEnvironment.variables
    ) {
        self.store = store
        self.settings = configuration.gateway
        self.zone = configuration.timezoneIfSet
        self.clock = clock
        self.environment = environment
    }

    /// The models to try, in order: the requested tier (or, for `auto`, free then cheap), then
    /// cheaper tiers; above the soft cap, `auto` and `cheap` use free models only.
    public func candidates(for request: LLMRequest, spentUSD: Double) -> [ModelSettings] {
        var tiers: [ModelTier]
        switch request.tier {
        case .auto: tiers = [.free, .cheap]
        case .free: tiers = [.free]
        case .cheap: tiers = [.cheap, .free]
        case .strong: tiers = [.strong, .cheap, .free]
        }
        let softCapped = spentUSD >= settings.dailyCapUSD * settings.softCapRatio
        if request.tier == .auto || request.tier == .cheap, softCapped {
            tiers = [.free]  // above the soft cap, even when escalating
        } else if request.tier != .free, let from = request.escalateFrom, let above = from.above,
            settings.models.contains(where: { $0.tier == above })
        {
            // Escalation: exactly one tier above the model whose answer failed verification; if the
            // budget refuses it, the task waits rather than asking the same model again. An explicit
            // `free` never escalates into paying.
            tiers = [above]
        }
        return tiers.flatMap { tier in settings.models.filter { $0.tier == tier } }
    }

    public func complete(_ request: LLMRequest) async throws(GatewayError) -> LLMResponse {
        let now = clock.now()
        let spent = (try? await store.committedUSD(settings: settings, timeZone: timeZone, now: now)) ?? 0
        let models = candidates(for: request, spentUSD: spent)
        guard !models.isEmpty else {
            if !candidates(for: request, spentUSD: -.infinity).isEmpty {  // only the soft cap took them away
                throw .budgetExhausted(
                    capUSD: settings.dailyCapUSD, until: settings.window.retryTime(after: now, timeZone),
                    tried: [
                        String(
                            format:
                                "above the soft cap ($%.2f of $%.2f spent or reserved), auto and cheap calls use free models only, and none is configured",
                            spent, settings.dailyCapUSD)
                    ])
            }
            throw .noModels(request.tier)
        }
        var passedOver: [String] = []
        for model in models {
            let maxTokens = request.maxTokens ?? model.maxTokens
            // An upper bound on the prompt's tokens: no tokenizer makes more tokens than bytes, plus a
            // generous allowance for the chat template a server wraps around each message.
            let messages = request.system == nil ? 1 : 2
            let inputBound = request.prompt.utf8.count + (request.system?.utf8.count ?? 0) + 256 * messages + 64
            let worstCase = model.cost(input: inputBound, output: maxTokens)
            let callID: Int64?
            do {
                callID = try await store.reserve(
                    model: model, amountUSD: worstCase, taskID: request.taskID, settings: settings, timeZone: timeZone,
                    now: clock.now(),
                    timeout: Interval(
                        milliseconds: model.timeout.milliseconds + settings.reservationTimeout.milliseconds))
            } catch {
                passedOver.append("\(model.name): \(error)")
                continue
            }
            guard let callID else {
                // The budget says no: the request needs a paid model it cannot have today. It does not
                // slide down to a cheaper tier (a free model already had its turn where free comes
                // first); it waits for tomorrow.
                passedOver.append(String(format: "%@: over the daily cap (needs up to $%.4f)", model.name, worstCase))
                throw .budgetExhausted(
                    capUSD: settings.dailyCapUSD, until: settings.window.retryTime(after: clock.now(), timeZone),
                    tried: passedOver)
            }
            let started = ContinuousClock.now
            let answer = await call(model, request, maxTokens: maxTokens)
            let elapsed = ContinuousClock.now - started
            let latency = elapsed.inMilliseconds
            switch answer {
            case .success(let completion):
                let cost = completion.usage.map { model.cost(input: $0.input, output: $0.output) }
                let overrun = (cost ?? 0) > worstCase + 1e-12
                try await settleOrFail(
                    callID: callID, costUSD: cost, inputTokens: completion.usage?.input,
                    outputTokens: completion.usage?.output, latencyMs: latency,
                    outcome: overrun ? "ok, but its usage passed the reservation (overrun)" : nil, charged: true)
                guard let text = completion.text else {
                    passedOver.append("\(model.name): the answer has no choices[0].message.content")
                    continue
                }
                return LLMResponse(
                    text: text, model: model.name, tier: model.tier, inputTokens: completion.usage?.input,
                    outputTokens: completion.usage?.output, costUSD: cost ?? worstCase, latencyMs: latency,
                    passedOver: passedOver)
            case .failure(let failure):
                // A provider bills what it may have run: anything but a refusal before the work (no
                // connection, 429, 5xx) is charged its reservation.
                try await settleOrFail(
                    callID: callID, costUSD: failure.billed ? nil : 0, inputTokens: nil, outputTokens: nil,
                    latencyMs: latency, outcome: failure.reason, charged: failure.billed)
                passedOver.append("\(model.name): \(failure.reason)")
                guard failure.fallBack else { throw .allFailed(passedOver) }
            }
        }
        throw .allFailed(passedOver)
    }

    /// Settles a call, retrying a busy database: a reservation that is never settled would drop out
    /// of the day's total when it times out, and its money could be spent again.
    private func settleOrFail(
        callID: Int64, costUSD: Double?, inputTokens: Int?, outputTokens: Int?, latencyMs: Int64, outcome: String?,
        charged: Bool
    ) async throws(GatewayError) {
        var lastError = ""
        for attempt in 0..<5 {
            do {
                try await store.settle(
                    callID: callID, costUSD: costUSD, inputTokens: inputTokens, outputTokens: outputTokens,
                    latencyMs: latencyMs, outcome: outcome, charged: charged, now: clock.now())
                return
            } catch {
                lastError = "\(error)"
                try? await Task.sleep(for: .milliseconds(50 * (attempt + 1)))
            }
        }
        throw .allFailed(["the call could not be recorded: \(lastError)"])
    }

    struct Completion {
        /// Nil when a 2xx answer had no text (it is still charged).
        var text: String?
        var usage: (input: Int, output: Int)?
    }

    struct CallFailure: Error {
        var reason: String
        /// Transport errors, 5xx and 429 fall back to the next model; anything else stops.
        var fallBack: Bool
        /// Whether the provider may have done (and billed) the work.
        var billed: Bool
    }

    private func call(_ model: ModelSettings, _ request: LLMRequest, maxTokens: Int) async -> Result<
        Completion, CallFailure
    > {
        var messages: [JSONValue] = []
        if let system = request.system { messages.append(["role": "system", "content": .string(system)]) }
        messages.append(["role": "user", "content": .string(request.prompt)])
        let body: JSONValue = [
            "model": .string(model.model), "messages": .array(messages), "max_tokens": .int(Int64(maxTokens)),
        ]
        var httpRequest = HTTPClientRequest(url: model.baseURL + "/chat/completions")
        httpRequest.method = .POST
        httpRequest.headers.add(name: "Content-Type", value: "application/json")
        if let name = model.apiKeyEnv {
            guard let key = environment[name], !key.isEmpty else {
                return .failure(
                    CallFailure(reason: "the API key variable \(name) is not set", fallBack: true, billed: false))
            }
            httpRequest.headers.add(name: "Authorization", value: "Bearer " + key)
        }
        httpRequest.body = .bytes(Array(body.canonicalText.utf8))
        let status: Int
        let buffer: ByteBuffer
        switch await HTTP.fetch(httpRequest, timeout: model.timeout, bodyLimit: 8 << 20) {
        case .answered(let code, let body):
            (status, buffer) = (code, body)
        case .bodyBroken(let code):
            return .failure(
                CallFailure(reason: "HTTP \(code), but the answer broke off", fallBack: true, billed: code < 400))
        case .unreachable(let refused, _):
            // Refused before any work (no connection) is free; anything later may be billed.
            return .failure(CallFailure(reason: "the endpoint could not be reached", fallBack: true, billed: !refused))
        case .timedOut:
            return .failure(CallFailure(reason: "no answer within \(model.timeout)", fallBack: true, billed: true))
        }
        if status >= 500 || status == 429 {
            return .failure(CallFailure(reason: "HTTP \(status)", fallBack: true, billed: false))
        }
        guard (200..<300).contains(status) else {
            return .failure(
                CallFailure(
                    reason: "HTTP \(status) (check the model id and the API key)", fallBack: false, billed: false))
        }
        let document = try? JSONValue.parse(Data(buffer.readableBytesView))
        var usage: (Int, Int)?
        if case .int(let input)? = document?[path: "usage.prompt_tokens"],
            case .int(let output)? = document?[path: "usage.completion_tokens"]
        {
            usage = (Int(max(0, input)), Int(max(0, output)))  // a negative count would lower the day's spend
        }
        return .success(Completion(text: document?[path: "choices.0.message.content"]?.stringValue, usage: usage))
    }
}
