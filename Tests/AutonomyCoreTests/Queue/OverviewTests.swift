import AutonomyTestSupport
import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// The dashboard's overview: what needs the operator, the last day hour by hour, shelfware, the
/// last audit and the alerts that did not go out.
@Suite struct OverviewTests {
    @Test func theLastDayIsCountedByTheHourAndTheRestIsSaid() async throws {
        let fixture = try Fixture()
        // Two done and one dead, an hour apart, and a dangerous task waiting.
        try fixture.enqueue("report")
        try fixture.enqueue("report")
        try fixture.enqueue("once")
        _ = try await fixture.worker(ScriptedRunner([.exited(0), .exited(0), .exited(1)])).work(
            drain: .init(maxSeconds: 60, maxTasks: 10))
        fixture.clock.advance(by: .minutes(90))
        try fixture.enqueue("send_email", #"{"to": "a@b.c"}"#)
        _ = try await fixture.worker(ScriptedRunner()).work(drain: nil)
        try fixture.store.write("a failed alert") { db in
            try db.execute(
                sql: """
                    INSERT INTO notifications (event, channel, created_at, attempts, next_attempt_at, last_error)
                    VALUES ('test', 'webhook', 0, 2, 0, 'connection refused')
                    """)
        }
        let overview = try fixture.store.overview(configuration: fixture.configuration, now: fixture.clock.now())
        #expect(overview.hours.count == 24)
        #expect(overview.hours.map(\.done).reduce(0, +) == 2)
        #expect(overview.hours.map(\.dead).reduce(0, +) == 1)
        // They finished 90 minutes before now: in the hour before the last.
        #expect(overview.hours[22].done == 2 && overview.hours[23].done == 0)
        #expect(overview.requests.map(\.task.type) == ["send_email"] && overview.proposals.isEmpty)
        #expect(overview.status.counts[.awaitingApproval] == 1)
        // No success ever (once died, send_email waits): shelfware; report succeeded today: not.
        #expect(overview.shelfware == ["once", "send_email"])
        #expect(overview.failedAlerts.map(\.lastError) == ["connection refused"])
        #expect(overview.lastAudit == nil)
        _ = try fixture.store.audit(
            loaded: fixture.loaded, now: fixture.clock.now(), window: nil, notify: false, propose: false)
        let later = try fixture.store.overview(configuration: fixture.configuration, now: fixture.clock.now())
        #expect(later.lastAudit?.headline.isEmpty == false)
    }
}
