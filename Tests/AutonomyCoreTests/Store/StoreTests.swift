import Foundation
import GRDB
import Testing

@testable import AutonomyCore

@Suite struct StoreTests {
    /// `write`, `rehearse` and `read` begin and end their transactions themselves (`isolated`).
    @Test func aTransactionThatThrowsLeavesNothingAndTheStoreWritesOnAfterIt() throws {
        struct Refused: Error {}
        let folder = try TemporaryFolder()
        let store = try AutonomyStore(path: folder.file("a.db"))
        let count = { try store.read("count") { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM tasks") } }
        let insert =
            "INSERT INTO tasks (type, state, run_at, payload, payload_sha256, created_at, updated_at) VALUES ('a', 'queued', 0, '{}', 'x', 0, 0)"
        #expect(throws: (any Error).self) {
            try store.write("refused") { db in
                try db.execute(sql: insert)
                throw Refused()
            }
        }
        #expect(try count() == 0)
        try store.rehearse("rehearsed") { db in try db.execute(sql: insert) }
        #expect(try count() == 0)
        // A read is read-only, and leaves the connection writable.
        #expect {
            try store.read("write in a read") { db in try db.execute(sql: insert) }
        } throws: { error in
            "\(error)".contains("readonly")
        }
        try store.write("kept") { db in try db.execute(sql: insert) }
        #expect(try count() == 1)
        #expect(try store.read("in a transaction") { db in db.isInsideTransaction })
        // SQLite rolls a transaction back by itself (here `INSERT OR ROLLBACK` on a taken id; a full
        // disk does the same): a body that carried on regardless ends in an error, not a commit, and
        // a rehearsal does not look whole either.
        let rollingBack = insert.replacingOccurrences(
            of: "INSERT INTO tasks (", with: "INSERT OR ROLLBACK INTO tasks (id, "
        ).replacingOccurrences(of: "VALUES (", with: "VALUES (1, ")
        let carryOn: (Database) throws -> Void = { db in
            try db.execute(sql: insert)
            _ = try? db.execute(sql: rollingBack)
        }
        for end in [store.write, store.rehearse] as [(String, (Database) throws -> Void) throws -> Void] {
            #expect {
                try end("carry on", carryOn)
            } throws: { error in
                "\(error)".contains("Transaction was aborted")
            }
        }
        #expect(try count() == 1)
        try store.write("after an abort") { db in try db.execute(sql: insert) }
        #expect(try count() == 2)
    }

    @Test func aNewFileIsCreatedPrivateWithWALAndEveryMigration() throws {
        let folder = try TemporaryFolder()
        let store = try AutonomyStore(path: folder.file("a.db"))
        var info = stat()
        #expect(stat(store.path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try store.appliedMigrations() == Migrations.migrator.migrations)
        let (mode, synchronous, foreignKeys) = try store.read("pragmas") { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"),
                try Int.fetchOne(db, sql: "PRAGMA foreign_keys")
            )
        }
        #expect(mode == "wal")
        #expect(synchronous == 2)  // FULL
        #expect(foreignKeys == 1)
    }

    @Test func reopeningAnExistingFileKeepsItsRows() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report")
        let again = try AutonomyStore(path: fixture.store.path)
        #expect(try again.task(id: task.id) == task)
        #expect(try again.appliedMigrations() == Migrations.migrator.migrations)
    }

    @Test func aDatabaseFromANewerBinaryIsRefused() throws {
        let fixture = try Fixture()
        try fixture.store.write("fake a newer migration") { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
        }
        #expect {
            _ = try AutonomyStore(path: fixture.store.path)
        } throws: { error in
            guard case StoreError.newerSchema(_, let unknown) = error else { return false }
            return unknown == ["v99-from-the-future"] && "\(error)".contains("upgrade autonomy")
        }
    }

    @Test func aFileThatIsNotADatabaseIsRefusedClearly() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("junk.db", String(repeating: "not sqlite ", count: 200))
        #expect {
            _ = try AutonomyStore(path: path)
        } throws: { error in
            "\(error)".contains("not an autonomy database")
        }
    }

    @Test func aMissingFolderIsNamed() throws {
        #expect {
            _ = try AutonomyStore(path: "/nonexistent-folder-for-autonomy/a.db")
        } throws: { error in
            "\(error)".contains("the folder /nonexistent-folder-for-autonomy does not exist")
        }
    }

    @Test func manyOpenersOfANewFileAtOnceAllSucceed() async throws {
        let folder = try TemporaryFolder()
        let path = folder.file("race.db")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { _ = try AutonomyStore(path: path) }
            }
            try await group.waitForAll()
        }
        #expect(try AutonomyStore(path: path).appliedMigrations() == Migrations.migrator.migrations)
    }

    @Test func theLedgerIsAppendOnly() throws {
        let fixture = try Fixture()
        try fixture.enqueue("report")
        #expect {
            try fixture.store.write("edit") { db in try db.execute(sql: "UPDATE ledger SET event = 'x'") }
        } throws: { error in
            error is StoreError && "\(error)".contains("the ledger is append-only")
        }
        #expect {
            try fixture.store.write("delete") { db in try db.execute(sql: "DELETE FROM ledger") }
        } throws: { error in
            error is StoreError && "\(error)".contains("the ledger is append-only")
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM ledger WHERE event = 'enqueued'") == 1)
    }
}
