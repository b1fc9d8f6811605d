import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// Someone who can write the database file can change its schema: a trigger is code that runs
/// inside the worker's own transactions. The worker runs only what the firewall checked, and the
/// commands that run handlers refuse a database whose schema is not autonomy's own.
@Suite struct SchemaIntegrityTests {
    /// A trigger that swaps the payload as the claim moves the task to running (the red team's).
    static func swap(to payload: String) -> String {
        """
        DROP TRIGGER tasks_immutable;
        CREATE TRIGGER swap BEFORE UPDATE OF state ON tasks WHEN NEW.state = 'running' BEGIN
          UPDATE tasks SET payload = '\(payload)' WHERE id = NEW.id;
        END;
        """
    }

    @Test func aFreshDatabaseHasExactlyItsOwnSchema() throws {
        let fixture = try Fixture(map: firewallMap)
        let found = try fixture.store.foreignSchema()
        // On a new migration, this prints the entries to pin in AutonomyStore.ownSchema.
        let entries = try fixture.store.read("entries") { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name"
            ).map {
                "\"\($0[0] as String) \($0[1] as String)\": \"\("\($0[2] as String)\n\($0[3] as String)".sha256Hex)\","
            }
        }
        #expect(found == nil, "\(entries.joined(separator: "\n"))")
        #expect(entries.count == AutonomyStore.ownSchema.count)
        let digest = try fixture.store.read("digest") { db in try AutonomyStore.schemaDigest(db) }
        #expect(digest == AutonomyStore.ownSchemaDigest, "ownSchemaDigest: \(digest)")
        #expect(AutonomyStore.ownSchema.keys.contains("trigger tasks_immutable"))
    }

    @Test func aDroppedAddedOrRewrittenEntryIsFound() throws {
        let fixture = try Fixture(map: firewallMap)
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_delete")
            try db.execute(sql: "CREATE TRIGGER spy AFTER INSERT ON ledger BEGIN SELECT 1; END")
            // The same name, doing nothing: only its text tells it apart.
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: "CREATE TRIGGER tasks_immutable BEFORE UPDATE ON tasks BEGIN SELECT 1; END")
            // A table's definition decides what a read returns.
            try db.execute(sql: "ALTER TABLE tasks ADD COLUMN extra TEXT")
        }
        let found = try #require(try fixture.store.foreignSchema())
        #expect(found.foreign == ["table tasks", "trigger spy", "trigger tasks_immutable"])
        #expect(found.missing == ["trigger ledger_no_delete"])
        #expect(found.description.contains("not made by autonomy: table tasks, trigger spy, trigger tasks_immutable"))
        #expect(throws: ForeignSchema.self) { try fixture.store.requireOwnSchema() }
    }

    @Test func aTriggerWrittenIntoTheSchemaTableInCapitalsIsFound() throws {
        let fixture = try Fixture(map: firewallMap)
        // SQLite builds a trigger from any row whose text is CREATE TRIGGER, whatever its type says.
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "PRAGMA writable_schema = ON")
            try db.execute(
                sql: """
                    INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES ('TRIGGER', 'evil', 'tasks', 0,
                      'CREATE TRIGGER evil BEFORE UPDATE OF state ON tasks BEGIN UPDATE tasks SET source = ''forged'' WHERE id = NEW.id; END')
                    """)
            try db.execute(sql: "PRAGMA writable_schema = OFF")
        }
        // Nor by any other spelling of the type.
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "PRAGMA writable_schema = ON")
            try db.execute(
                sql: """
                    INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES
                      ('TrIgGeR', 'evil2', 'ledger', 0, 'CREATE TRIGGER evil2 AFTER INSERT ON ledger BEGIN SELECT 1; END')
                    """)
            try db.execute(sql: "PRAGMA writable_schema = OFF")
        }
        let reopened = try AutonomyStore(path: fixture.store.path)
        #expect(try reopened.foreignSchema()?.foreign == ["TRIGGER evil", "TrIgGeR evil2"])
    }

    @Test func aTriggerAddedWhileTheWorkerRunsStopsTheNextClaim() throws {
        let fixture = try Fixture(map: firewallMap)
        try fixture.store.requireOwnSchema()
        _ = try fixture.enqueue("report", #"{"day":"monday"}"#)
        try fixture.store.write("tamper") { db in
            try db.execute(sql: "CREATE TRIGGER late AFTER UPDATE ON tasks BEGIN SELECT 1; END")
        }
        #expect(throws: ForeignSchema.self) {
            _ = try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t")
        }
    }

    @Test func aTriggerPresentWhenTheStoreOpenedAndGoneWhenItWasCheckedNeverRuns() throws {
        let fixture = try Fixture(map: firewallMap)
        _ = try fixture.enqueue("report", #"{"day":"monday"}"#)
        // Turned on and off through sqlite_master, without the schema's version changing: a
        // connection that loaded its schema meanwhile keeps it (the review's race at start).
        let attacker = try DatabaseQueue(path: fixture.store.path)
        func toggle(_ sql: String) throws {
            try attacker.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA writable_schema = ON")
                try db.execute(sql: sql)
                try db.execute(sql: "PRAGMA writable_schema = OFF")
            }
        }
        try toggle(
            """
            INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES ('trigger', 'evil', 'tasks', 0,
              'CREATE TRIGGER evil BEFORE UPDATE ON tasks BEGIN SELECT RAISE(ABORT, ''PWNED''); END')
            """)
        let worker = try AutonomyStore(path: fixture.store.path)  // loads the schema, trigger and all
        try toggle("DELETE FROM sqlite_master WHERE name = 'evil'")
        try worker.requireOwnSchema()  // the rows are autonomy's own again...
        // ...and the schema the connection runs with is the one checked, not the one it loaded.
        let step = try worker.claimNext(
            configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t")
        #expect(step.claimed != nil)
    }

    @Test func aTriggerAddedWhileAHandlerRunsStopsTheWriteThatWouldFireIt() throws {
        let fixture = try Fixture(map: firewallMap)
        try fixture.store.requireOwnSchema()
        let attacker = try DatabaseQueue(path: fixture.store.path)
        try attacker.write { db in
            try db.execute(sql: "CREATE TRIGGER late AFTER INSERT ON tasks BEGIN UPDATE tasks SET priority = 4242; END")
        }
        #expect(throws: ForeignSchema.self) { _ = try fixture.enqueue("report", #"{"day":"monday"}"#) }
        #expect(try fixture.store.read("count") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tasks") } == 0)
    }

    @Test(arguments: [
        #"{"body":"invoice 12000 EUR","to":"partner@example.com"}"#,
        // Canonically equal to what was checked (the Kelvin sign for K), but other bytes.
        #"{"body":"invoice 12 EUR \#u{212A}","to":"partner@example.com"}"#,
    ])
    func aPayloadSwappedBetweenTheCheckAndTheClaimNeverRuns(swapped: String) async throws {
        let fixture = try Fixture(map: firewallMap)
        // Safe by the rule on "to": it runs without approval, so only the check stands in the way.
        let task = try fixture.enqueue("send_email", #"{"body":"invoice 12 EUR K","to":"partner@example.com"}"#)
        try fixture.store.write("tamper") { db in try db.execute(sql: Self.swap(to: swapped)) }
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
