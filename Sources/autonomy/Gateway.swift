import ArgumentParser
import AutonomyCore
import Foundation

extension TierRequest: ExpressibleByArgument {}

struct LLM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llm",
        abstract: "Ask a model through the gateway (free first, under the daily cap); prints the completion.",
        discussion: prose(
            """
            For handler scripts: the call is recorded, and with --task its cost reaches that task's ledger.
            Exits 69 when no model could answer (the cap is reached and no free model fits, or every model failed).
            Example: autonomy llm --tier auto --max-tokens 300 "Summarise: $(cat notes.txt)"
            """))

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The prompt, or '-' to read it from stdin.") var prompt: String
    @Option(help: "auto (free, then cheap), free, cheap or strong.") var tier: TierRequest = .auto
    @Option(
        name: .customLong("max-tokens"), parsing: .unconditional,
        help: "The answer's length limit (default: the model's max_tokens).")
    var maxTokens: Int?
    @Option(help: "A system message.") var system: String?
    @Option(parsing: .unconditional, help: "The task this call is for (its ledger gets the cost).") var task: Int64?
    @Flag(help: "Print the completion with its model, tokens and cost as JSON.") var json = false

    func validate() throws {
        if let maxTokens, !(1...200_000).contains(maxTokens) {
            throw ValidationError("--max-tokens must be from 1 to 200000")
        }
        if let task, task < 1 { throw ValidationError("--task must be a task's id (1 or more)") }
    }

    func run() async throws {
        let text =
            prompt == "-"
            ? String(decoding: try readInput("-", what: "prompt", limit: InputLimit.prompt), as: UTF8.self) : prompt
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw CLIFailure("the prompt is empty", code: .badInput)
        }
        let loaded = try global.loadConfiguration()  // once: its warnings print once
        guard !loaded.configuration.gateway.models.isEmpty else {
            throw CLIFailure("no model is configured: add gateway.models to the configuration", code: .configError)
        }
        // One budget for every host: on PostgreSQL, the database's.
        let clock = try currentClock()
        let store: any BudgetStore
        var postgres: PostgresStore?
        switch try global.location(loaded) {
        case .sqlite: store = try global.open(loaded)
        case .postgres(let url):
            let opened = try await global.openPostgres(url, loaded)
            (postgres, store) = (opened, opened)
        }
        let gateway = ModelGateway(store: store, configuration: loaded.configuration, clock: clock)
        let answer: Result<LLMResponse, GatewayError>
        do {
            answer = .success(
                try await gateway.complete(
                    LLMRequest(prompt: text, system: system, tier: tier, maxTokens: maxTokens, taskID: task)))
        } catch {
            answer = .failure(error)
        }
        await postgres?.close()
        let response: LLMResponse
        switch answer {
        case .success(let answered): response = answered
        case .failure(let error): throw CLIFailure(error.description, code: .unavailable)
        }
        if json {
            struct Output: Encodable {
                var text, model, tier: String
                @Nullable var inputTokens: Int?
                @Nullable var outputTokens: Int?
                var costUSD: Double
                var latencyMs: Int64
                var passedOver: [String]
                enum CodingKeys: String, CodingKey {
                    case text, model, tier
                    case inputTokens = "input_tokens"
                    case outputTokens = "output_tokens"
                    case costUSD = "cost_usd"
                    case latencyMs = "latency_ms"
                    case passedOver = "passed_over"
                }
            }
            try printJSON(
                Output(
                    text: response.text, model: response.model, tier: response.tier.rawValue,
                    inputTokens: response.inputTokens, outputTokens: response.outputTokens, costUSD: response.costUSD,
                    latencyMs: response.latencyMs, passedOver: response.passedOver))
        } else {
            print(response.text)
        }
    }
}

struct Budget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget",
        abstract: "Today's model spend against the cap, open reservations, per model, and the last 7 days.",
        discussion: "Example: autonomy budget")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print as JSON.") var json = false

    func run() async throws {
        let loaded = try global.loadConfiguration()
        let configuration = loaded.configuration
        let status: BudgetStatus
        let now = try currentClock().now()
        status = try await global.onEither(
            loaded, create: false,
            sqlite: { try $0.budget(settings: configuration.gateway, timeZone: configuration.timezone, now: now) },
            postgres: { try await $0.budget(settings: configuration.gateway, timeZone: configuration.timezone) })
        if json {
            struct Model: Encodable {
                var model: String
                var calls, inputTokens, outputTokens: Int
                var costUSD: Double
                enum CodingKeys: String, CodingKey {
                    case model, calls
                    case inputTokens = "input_tokens"
                    case outputTokens = "output_tokens"
                    case costUSD = "cost_usd"
                }
            }
            struct Day: Encodable {
                var day: String
                var costUSD: Double
                enum CodingKeys: String, CodingKey {
                    case day
                    case costUSD = "cost_usd"
                }
            }
            struct Output: Encodable {
                var dayStart: ISOTime
                var window: String
                var capUSD, softCapUSD, spentUSD, reservedUSD: Double
                var models: [Model]
                var lastDays: [Day]
                enum CodingKeys: String, CodingKey {
                    case dayStart = "day_start"
                    case window
                    case capUSD = "cap_usd"
                    case softCapUSD = "soft_cap_usd"
                    case spentUSD = "spent_usd"
                    case reservedUSD = "reserved_usd"
                    case models
                    case lastDays = "last_days"
                }
            }
            return try printJSON(
                Output(
                    dayStart: ISOTime(status.dayStart), window: configuration.gateway.window.rawValue,
                    capUSD: status.capUSD, softCapUSD: status.softCapUSD, spentUSD: status.spentUSD,
                    reservedUSD: status.reservedUSD,
                    models: status.perModel.map {
                        Model(
                            model: $0.model, calls: $0.calls, inputTokens: $0.inputTokens,
                            outputTokens: $0.outputTokens, costUSD: $0.costUSD)
                    },
                    lastDays: status.lastDays.map {
                        Day(day: Timestamp.format($0.day, timeZone: configuration.timezone), costUSD: $0.costUSD)
                    }))
        }
        print(
            String(
                format: "today: $%.4f spent + $%.4f reserved of a $%.2f cap (free models only above $%.2f)",
                status.spentUSD, status.reservedUSD, status.capUSD, status.softCapUSD))
        if status.committedUSD >= status.capUSD {
            print("the cap is reached: paid calls are refused until tomorrow; free models keep working")
        }
        if !status.perModel.isEmpty {
            print(
                table(
                    ["MODEL", "CALLS", "IN TOKENS", "OUT TOKENS", "COST"],
                    status.perModel.map {
                        [
                            $0.model, String($0.calls), String($0.inputTokens), String($0.outputTokens),
                            String(format: "$%.4f", $0.costUSD),
                        ]
                    }))
        }
        print(
            "last 7 days: "
                + status.lastDays.map {
                    String(Timestamp.format($0.day, timeZone: configuration.timezone).prefix(10))
                        + String(format: " $%.2f", $0.costUSD)
                }.joined(separator: ", "))
    }
}
