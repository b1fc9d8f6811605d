import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// Someone who can write the database file can add triggers: code that runs inside the worker's own
/// transactions. The worker runs only what the firewall checked, and the commands that run handlers
/// refuse a database whose triggers are not autonomy's own.
@Suite struct SchemaIntegrityTests {
    /// A trigger that swaps the payload as the claim moves the task to running, and one that puts
    /// the approved payload back when it is done (the red team's attack).
    static let swap = """
        DROP TRIGGER tasks_immutable;
        CREATE TRIGGER swap BEFORE UPDATE OF state ON tasks WHEN NEW.state = 'running' BEGIN
          UPDATE tasks SET payload = '{"body":"invoice 12000 EUR","to":"partner@example.com"}' WHERE id = NEW.id;
        END;
        """

    @Test func aFreshDatabaseHasOnlyItsOwnTriggers() throws {
        let fixture = try Fixture(map: firewallMap)
        #expect(try fixture.store.foreignTriggers() == nil)
        let names = try fixture.store.read("names") { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        }
        #expect(names == AutonomyStore.ownTriggers.keys.sorted())
    }

    @Test func aDroppedAddedOrRewrittenTriggerIsFound() throws {
        let fixture = try Fixture(map: firewallMap)
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_delete")
            try db.execute(sql: "CREATE TRIGGER spy AFTER INSERT ON ledger BEGIN SELECT 1; END")
            // The same name, doing nothing: only its text tells it apart.
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: "CREATE TRIGGER tasks_immutable BEFORE UPDATE ON tasks BEGIN SELECT 1; END")
        }
        let found = try #require(try fixture.store.foreignTriggers())
        #expect(found.foreign == ["spy", "tasks_immutable"])
        #expect(found.missing == ["ledger_no_delete"])
        #expect(found.description.contains("triggers autonomy did not make: spy, tasks_immutable"))
        #expect(throws: ForeignTriggers.self) { try fixture.store.requireOwnTriggers() }
    }

    @Test func aPayloadSwappedBetweenTheCheckAndTheClaimNeverRuns() async throws {
        let fixture = try Fixture(map: firewallMap)
        // Safe by the rule on "to": it runs without approval, so only the check stands in the way.
        let task = try fixture.enqueue("send_email", #"{"body":"invoice 12 EUR","to":"partner@example.com"}"#)
        try fixture.store.write("tamper") { db in try db.execute(sql: Self.swap) }
        let runner = ScriptedRunner()
        await #expect {
            _ = try await fixture.worker(runner).work(drain: .init(maxSeconds: 600))
        } throws: { error in
            "\(error)".contains("changed between the firewall's check and the claim")
        }
        #expect(runner.calls.isEmpty)
        // The claim was rolled back: the task waits, and the ledger has no claim of it.
        #expect(try fixture.store.task(id: task.id)?.state == .queued)
        #expect(try !fixture.store.ledger(forTask: task.id).contains { $0.event == "claimed" })
    }
}
