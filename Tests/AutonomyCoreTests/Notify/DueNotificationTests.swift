import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// `serve` looks for due alerts every 2 s: a look that finds none must not take the write lock, or
/// an idle server would contend with every worker and batch for it.
@Suite struct DueNotificationTests {
    @Test func aLookWithNothingDueTakesNoWriteLock() throws {
        let fixture = try Fixture()
        // Another connection holds the write lock, as a long batch enqueue does.
        let other = try DatabaseQueue(path: fixture.store.path)
        try other.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            defer { try? db.execute(sql: "ROLLBACK") }
            // Waiting for the lock would end in SQLITE_BUSY after the busy timeout: a throw.
            let taken = try fixture.store.takeDueNotification(now: fixture.clock.now(), channels: [.command])
            #expect(taken == nil)
        }
    }
}
