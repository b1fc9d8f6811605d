import Foundation
import Testing

@testable import AutonomyCore

/// The daily cap's day is the operator's calendar day: on a daylight-saving change it lasts 23 or
/// 25 hours, and spend just before or after local midnight counts in its own day.
@Suite struct BudgetDaylightSavingTests {
    static func map(zone: String) -> String {
        """
        {"version": 1, "timezone": "\(zone)",
         "gateway": {"daily_cap_usd": 1.0, "soft_cap_ratio": 1.0, "window": "day", "models": [
          {"name": "mini", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tier": "cheap",
           "input_usd_per_million": 1, "output_usd_per_million": 2}]}}
        """
    }

    static func time(_ text: String) throws -> Int64 { try #require(Timestamp.parse(text)) }

    struct SwitchDay: Sendable, CustomTestStringConvertible {
        var zone: String
        var noon: String
        var start: String
        var end: String
        var hours: Int64
        var testDescription: String { "\(zone) \(noon.prefix(10))" }
    }

    static let switchDays: [SwitchDay] = [
        SwitchDay(
            zone: "Europe/Berlin", noon: "2026-03-29T12:00:00+02:00", start: "2026-03-28T23:00:00Z",
            end: "2026-03-29T22:00:00Z", hours: 23),
        SwitchDay(
            zone: "Europe/Berlin", noon: "2026-10-25T12:00:00+01:00", start: "2026-10-24T22:00:00Z",
            end: "2026-10-25T23:00:00Z", hours: 25),
        SwitchDay(
            zone: "America/New_York", noon: "2026-03-08T12:00:00-04:00", start: "2026-03-08T05:00:00Z",
            end: "2026-03-09T04:00:00Z", hours: 23),
        SwitchDay(
            zone: "America/New_York", noon: "2026-11-01T12:00:00-05:00", start: "2026-11-01T04:00:00Z",
            end: "2026-11-02T05:00:00Z", hours: 25),
    ]

    @Test(arguments: switchDays)
    func aSwitchDayRunsFromLocalMidnightToLocalMidnight(_ day: SwitchDay) throws {
        let zone = try #require(TimeZone(identifier: day.zone))
        let noon = try Self.time(day.noon)
        let (start, end) = SpendWindow.day.bounds(noon, zone)
        #expect(Timestamp.format(start) == day.start && Timestamp.format(end) == day.end)
        #expect(end - start == Interval.hours(day.hours).milliseconds)
        #expect(SpendWindow.day.retryTime(after: noon, zone) == end)
        #expect(LocalDay.start(of: noon, in: zone) == start)
    }

    /// Every three hours of 2026, and the milliseconds either side of each midnight: the window holds
    /// the instant, begins on its local date and ends on the next.
    @Test(arguments: ["Europe/Berlin", "America/New_York", "Australia/Sydney"])
    func everyInstantOfTheYearFallsInTheWindowOfItsLocalDate(_ zone: String) throws {
        let failures = try Self.misplacedInstants(zone: zone, from: "2026-01-01T00:00:00Z", to: "2027-01-01T00:00:00Z")
        #expect(failures.isEmpty, "\(failures)")
    }

    /// Santiago moves its clocks at midnight: on 2026-09-06 the day begins at 01:00, and still ends
    /// at the next midnight (23 hours).
    @Test func aDayWhoseMidnightIsSkippedEndsAtTheNextMidnight() throws {
        let zone = try #require(TimeZone(identifier: "America/Santiago"))
        let (start, end) = SpendWindow.day.bounds(try Self.time("2026-09-06T12:00:00-03:00"), zone)
        #expect(Timestamp.format(start, timeZone: zone) == "2026-09-06T01:00:00-03:00")
        // Not 01:00 the next day (one day after the day's start): the next day's own midnight.
        #expect(Timestamp.format(end, timeZone: zone) == "2026-09-07T00:00:00-03:00")
        #expect(end - start == Interval.hours(23).milliseconds)
        let failures = try Self.misplacedInstants(
            zone: "America/Santiago", from: "2026-09-05T00:00:00Z", to: "2026-09-09T00:00:00Z")
        #expect(failures.isEmpty, "\(failures)")
    }

    /// Instants in `[from, to)` whose day window is not their local date's, as readable lines.
    static func misplacedInstants(zone name: String, from: String, to: String) throws -> [String] {
        let zone = try #require(TimeZone(identifier: name))
        func date(_ milliseconds: Int64) -> String { String(Timestamp.format(milliseconds, timeZone: zone).prefix(10)) }
        var failures: [String] = []
        var now = try time(from)
        let last = try time(to)
        while now < last, failures.count < 5 {
            let (start, end) = SpendWindow.day.bounds(now, zone)
            for instant in [now, start, start - 1, end, end - 1] {
                let (from, to) = SpendWindow.day.bounds(instant, zone)
                if !(from <= instant && instant < to) || date(from) != date(instant) || date(to - 1) != date(instant)
                    || date(to) == date(instant) || date(from - 1) == date(instant)
                {
                    failures.append(
                        "\(Timestamp.format(instant, timeZone: zone)): [\(Timestamp.format(from, timeZone: zone)), \(Timestamp.format(to, timeZone: zone)))"
                    )
                }
            }
            if date(start) != date(now) || ![23, 24, 25].map({ Interval.hours($0).milliseconds }).contains(end - start)
            {
                failures.append(
                    "\(date(now)) runs [\(Timestamp.format(start, timeZone: zone)), \(Timestamp.format(end, timeZone: zone)))"
                )
            }
            if LocalDay.start(of: now, in: zone) != start {
                failures.append("the metrics' day of \(Timestamp.format(now, timeZone: zone)) starts elsewhere")
            }
            now += Interval.hours(3).milliseconds
        }
        return failures
    }

    /// Spends `usd` on a call started at `time`.
    private func spend(_ usd: Double, at time: String, _ fixture: Fixture) throws {
        let now = try Self.time(time)
        let gateway = fixture.configuration.gateway
        let model = try #require(gateway.models.first)
        let call = try #require(
            try fixture.store.reserve(
                model: model, amountUSD: usd, taskID: nil, capUSD: gateway.dailyCapUSD,
                window: gateway.window.bounds(now, fixture.configuration.timezone), now: now, timeout: .minutes(1)),
            "the cap refused \(usd) at \(time)")
        try fixture.store.settle(
            callID: call, costUSD: usd, inputTokens: 1, outputTokens: 1, latencyMs: 1, outcome: nil, charged: true,
            now: now)
    }

    private func spent(at time: String, _ fixture: Fixture) throws -> Double {
        try fixture.store.budget(
            settings: fixture.configuration.gateway, timeZone: fixture.configuration.timezone, now: Self.time(time)
        ).spentUSD
    }

    private func roomFor(_ usd: Double, at time: String, _ fixture: Fixture) throws -> Bool {
        let now = try Self.time(time)
        let gateway = fixture.configuration.gateway
        let model = try #require(gateway.models.first)
        // A probe: released at once, so it never counts.
        guard
            let call = try fixture.store.reserve(
                model: model, amountUSD: usd, taskID: nil, capUSD: gateway.dailyCapUSD,
                window: gateway.window.bounds(now, fixture.configuration.timezone), now: now, timeout: .minutes(1))
        else { return false }
        try fixture.store.settle(
            callID: call, costUSD: 0, inputTokens: nil, outputTokens: nil, latencyMs: 0, outcome: "probe",
            charged: false, now: now)
        return true
    }

    @Test func spendJustBeforeMidnightIsYesterdaysOnAShortDay() throws {
        let fixture = try Fixture(map: Self.map(zone: "Europe/Berlin"))
        try spend(0.6, at: "2026-03-28T23:59:00+01:00", fixture)
        #expect(try spent(at: "2026-03-28T23:59:30+01:00", fixture) == 0.6)
        #expect(try !roomFor(0.5, at: "2026-03-28T23:59:30+01:00", fixture))
        // One minute later it is Sunday, the 23-hour day: a fresh cap.
        #expect(try spent(at: "2026-03-29T00:00:00+01:00", fixture) == 0)
        #expect(try roomFor(0.9, at: "2026-03-29T00:00:30+01:00", fixture))
        try spend(0.7, at: "2026-03-29T00:01:00+01:00", fixture)
        // Its last minute (22:59 UTC is already Monday): still the same day.
        #expect(try spent(at: "2026-03-29T23:59:00+02:00", fixture) == 0.7)
        #expect(try !roomFor(0.5, at: "2026-03-29T23:59:00+02:00", fixture))
        #expect(try spent(at: "2026-03-30T00:00:00+02:00", fixture) == 0)
        let days = try fixture.store.budget(
            settings: fixture.configuration.gateway, timeZone: fixture.configuration.timezone,
            now: Self.time("2026-03-30T12:00:00+02:00")
        ).lastDays
        #expect(
            days.suffix(2).map(\.day) == [
                try Self.time("2026-03-28T00:00:00+01:00"), try Self.time("2026-03-29T00:00:00+01:00"),
            ])
        #expect(days.suffix(2).map(\.costUSD) == [0.6, 0.7])
    }

    @Test func spendJustAfterMidnightStillCountsAtTheEndOfALongDay() throws {
        for (zone, morning, evening, tomorrow) in [
            ("Europe/Berlin", "2026-10-25T00:01:00+02:00", "2026-10-25T23:59:00+01:00", "2026-10-26T00:00:00+01:00"),
            ("America/New_York", "2026-11-01T00:01:00-04:00", "2026-11-01T23:59:00-05:00", "2026-11-02T00:00:00-05:00"),
        ] {
            let fixture = try Fixture(map: Self.map(zone: zone))
            try spend(0.6, at: morning, fixture)
            // 24h58m later, and still the same 25-hour day: the morning's spend holds the cap.
            #expect(try spent(at: evening, fixture) == 0.6, "\(zone)")
            #expect(try !roomFor(0.5, at: evening, fixture), "\(zone)")
            #expect(try spent(at: tomorrow, fixture) == 0, "\(zone)")
            #expect(try roomFor(0.9, at: tomorrow, fixture), "\(zone)")
            let metrics = try PrometheusMetrics.render(
                store: fixture.store, configuration: fixture.configuration, now: Self.time(evening))
            #expect(metrics.contains("\nautonomy_cost_usd_today 0.6\n"), "\(zone): \(metrics)")
        }
    }
}
