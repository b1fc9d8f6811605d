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

    @Test func aCrashedCallersReservationIsReleasedAfterItsTimeout() throws {
        let fixture = try Fixture(map: Self.map)
        let model = try #require(fixture.configuration.gateway.models.first { $0.name == "mini" })
        let now = fixture.clock.now()
        let dayStart = Calendar.startOfDay(now, fixture.configuration.timezone)
        let first = try fixture.store.reserve(
            model: model, amountUSD: 0.7, taskID: nil, capUSD: 1.0, dayStart: dayStart,
            now: now, timeout: .minutes(10))
        #expect(first != nil)
        // The caller dies without settling: until the timeout the money stays reserved...
        #expect(
            try fixture.store.reserve(
                model: model, amountUSD: 0.5, taskID: nil, capUSD: 1.0, dayStart: dayStart,
                now: now, timeout: .minutes(10)) == nil)
        var budget = try fixture.store.budget(
            settings: fixture.configuration.gateway,
            timeZone: fixture.configuration.timezone, now: now)
        #expect(abs(budget.reservedUSD - 0.7) < 1e-9)
        // ...and after it, released.
        fixture.clock.advance(by: .minutes(11))
        #expect(
            try fixture.store.reserve(
                model: model, amountUSD: 0.5, taskID: nil, capUSD: 1.0, dayStart: dayStart,
                now: fixture.clock.now(), timeout: .minutes(10)) != nil)
        budget = try fixture.store.budget(
            settings: fixture.configuration.gateway,
            timeZone: fixture.configuration.timezone, now: fixture.clock.now())
        #expect(abs(budget.reservedUSD - 0.5) < 1e-9)
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
