import Foundation
import Testing

@testable import AutonomyCore

@Suite struct GatewayTests {
    static let map = """
        {"version": 1, "gateway": {"daily_cap_usd": 1.0, "soft_cap_ratio": 0.8, "reservation_timeout": "10m", "models": [
          {"name": "local", "base_url": "http://127.0.0.1:9/v1", "model": "l", "tier": "free",
           "input_usd_per_million": 0, "output_usd_per_million": 0},
          {"name": "mini", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tier": "cheap",
           "input_usd_per_million": 1, "output_usd_per_million": 2},
          {"name": "big", "base_url": "http://127.0.0.1:9/v1", "model": "b", "tier": "strong",
           "input_usd_per_million": 10, "output_usd_per_million": 30}
        ]}}
        """

    @Test func routingIsFreeFirstAndCheaperOnFallback() throws {
        let fixture = try Fixture(map: Self.map)
        let gateway = ModelGateway(store: fixture.store, configuration: fixture.configuration, clock: fixture.clock)
        func names(_ tier: TierRequest, spent: Double = 0, from: ModelTier? = nil) -> [String] {
            gateway.candidates(for: LLMRequest(prompt: "x", tier: tier, escalateFrom: from), spentUSD: spent).map(
                \.name)
        }
        #expect(names(.auto) == ["local", "mini"])
        #expect(names(.free) == ["local"])
        #expect(names(.cheap) == ["mini", "local"])
        #expect(names(.strong) == ["big", "mini", "local"])
        #expect(names(.auto, spent: 0.8) == ["local"])  // at the soft cap
        #expect(names(.cheap, spent: 0.9) == ["local"])
        #expect(names(.strong, spent: 0.9) == ["big", "mini", "local"])  // asked for explicitly
        #expect(names(.auto, from: .free) == ["mini"])  // escalation: exactly one tier up
        #expect(names(.auto, from: .cheap) == ["big"])
        #expect(names(.auto, spent: 0.9, from: .free) == ["local"])  // not above the soft cap
        #expect(names(.free, from: .free) == ["local"])  // an explicit free never pays
    }

    @Test func aReservationNobodySettledIsChargedInFullAfterItsTimeout() throws {
        let fixture = try Fixture(map: Self.map)
        let gateway = fixture.configuration.gateway
        let zone = fixture.configuration.timezone
        let model = try #require(gateway.models.first { $0.name == "mini" })
        func reserve(_ amount: Double) throws -> Int64? {
            let now = fixture.clock.now()
            return try fixture.store.reserve(
                model: model, amountUSD: amount, taskID: nil, capUSD: 1.0, window: gateway.window.bounds(now, zone),
                now: now, timeout: .minutes(10))
        }
        #expect(try reserve(0.7) != nil)
        // The caller dies without settling: until the timeout the money stays reserved...
        #expect(try reserve(0.5) == nil)
        var budget = try fixture.store.budget(settings: gateway, timeZone: zone, now: fixture.clock.now())
        #expect(abs(budget.reservedUSD - 0.7) < 1e-9)
        // ...and after it, it is spent: the provider may have done the work.
        fixture.clock.advance(by: .minutes(11))
        budget = try fixture.store.budget(settings: gateway, timeZone: zone, now: fixture.clock.now())
        #expect(abs(budget.spentUSD - 0.7) < 1e-9 && budget.reservedUSD == 0)
        #expect(try reserve(0.5) == nil)
        #expect(try reserve(0.3) != nil)
        let charged = try fixture.count(
            "SELECT COUNT(*) FROM ledger WHERE event = 'llm_call' AND json_extract(detail, '$.outcome') = 'abandoned' AND cost_usd = 0.7"
        )
        #expect(charged == 1)
    }

    @Test func aRollingWindowKeepsMidnightFromDoublingTheCap() throws {
        for (window, allowedAfterMidnight) in [(SpendWindow.day, true), (.rolling24h, false)] {
            let fixture = try Fixture(map: Self.map)
            let zone = fixture.configuration.timezone
            let model = try #require(fixture.configuration.gateway.models.first { $0.name == "mini" })
            fixture.clock.set(try #require(Timestamp.parse("2026-11-25T23:58:00Z")))
            func reserve() throws -> Int64? {
                let now = fixture.clock.now()
                return try fixture.store.reserve(
                    model: model, amountUSD: 0.9, taskID: nil, capUSD: 1.0, window: window.bounds(now, zone), now: now,
                    timeout: .minutes(1))
            }
            let call = try #require(try reserve())
            try fixture.store.settle(
                callID: call, costUSD: 0.9, inputTokens: 1, outputTokens: 1, latencyMs: 1, outcome: nil, charged: true,
                now: fixture.clock.now())
            fixture.clock.advance(by: .minutes(4))  // 00:02 the next day
            #expect((try reserve() != nil) == allowedAfterMidnight, "\(window)")
        }
    }

    @Test func badGatewaySettingsNameTheirKeyPath() {
        for (json, expected) in [
            (
                #"{"version": 1, "gateway": {"models": [{"name": "x", "base_url": "http://h/v1", "model": "x", "tier": "free", "input_usd_per_million": 1, "output_usd_per_million": 0}]}}"#,
                "gateway.models[0].tier: a free-tier model must have prices of 0"
            ),
            (
                #"{"version": 1, "gateway": {"models": [{"name": "x", "base_url": "http://h/v1", "model": "x", "tier": "cheap", "input_usd_per_million": 1}]}}"#,
                "gateway.models[0].output_usd_per_million: missing"
            ),
            (#"{"version": 1, "gateway": {"soft_cap_ratio": 2}}"#, "gateway.soft_cap_ratio: expected 0 to 1"),
            (
                #"{"version": 1, "gateway": {"models": [{"name": "x", "base_url": "ftp://h", "model": "x", "tier": "cheap", "input_usd_per_million": 1, "output_usd_per_million": 1}]}}"#,
                "gateway.models[0].base_url"
            ),
        ] {
            #expect { _ = try loadMap(json) } throws: { "\($0)".contains(expected) }
        }
    }
}
