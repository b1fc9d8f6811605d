import Foundation
import GRDB
import Synchronization
import SystemShims

/// The one front door to the database. Every method is one transaction that keeps the queue and the
/// ledger in step; callers never write SQL.
///
/// Several processes may open the same file at once (WAL, a busy timeout, IMMEDIATE write
/// transactions). Opening creates the file with mode 0600 and runs pending migrations.
public final class AutonomyStore: Sendable {
    public let path: String
    let writer: DatabaseQueue
    /// Whether the schema was found autonomy's own, and at which version (`requireOwnSchema`).
    let schemaGuard = SchemaGuard()

    /// Opens the database at `path`, creating it (mode 0600) when `create` is true.
    ///
    /// - Throws: `StoreError` when the file is missing (and not to be created), cannot be created or
    ///   opened, or was written by a newer autonomy.
    public init(path: String, settings: StoreSettings = StoreSettings(), create: Bool = true) throws {
        self.path = path
        if create {
            try Self.createPrivately(path)
        } else {
            // An empty file is no database yet either: a command that only reads never makes one.
            var info = stat()
            guard stat(path, &info) == 0, info.st_size > 0 || info.st_mode & S_IFMT != S_IFREG else {
                throw StoreError.missing(path: path)
            }
        }
        var configuration = GRDB.Configuration()
        // WAL is set below, once per file: GRDB's own WAL set-up writes to the file on every open.
        configuration.busyMode = .timeout(settings.busyTimeout.seconds)
        // Foreign keys are on, switched on here rather than by GRDB (`foreignKeysEnabled`): GRDB runs
        // its pragma as an SQL literal, whose first use in a process costs a scan of every
        // conformance record in the executable (0.48 million instructions of one `enqueue`). So do
        // the pragmas below and the migration check: every statement of a start is a plain one.
        configuration.foreignKeysEnabled = false
        configuration.prepareDatabase { db in try db.makeStatement(sql: "PRAGMA foreign_keys = ON").execute() }
        // The last connection to close checkpoints the WAL and removes it, as SQLite does by
        // default. Leaving it in place (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE) made every next process
        // rebuild the WAL index by reading the whole WAL, which then was never restarted: it
        // grew by each short-lived process's frames, without bound.
        do {
            // Openers of a new file race to switch it to WAL; SQLite answers a loser BUSY at once
            // (a lock it cannot wait for): it opens again.
            writer = try Self.retryingWhileBusy {
                let queue = try DatabaseQueue(path: path, configuration: configuration)
                try queue.writeWithoutTransaction { db in
                    // Several processes share the file: WAL lets readers and one writer work at once.
                    // The mode is stored in the file, so only its first opener pays for the switch.
                    if try String.fetchOne(db.makeStatement(sql: "PRAGMA journal_mode")) != "wal" {
                        guard try String.fetchOne(db.makeStatement(sql: "PRAGMA journal_mode = WAL")) == "wal" else {
                            throw StoreError.cannotOpen(path: path, reason: "cannot switch the database to WAL mode")
                        }
                    }
                    // FULL by default: a queued request must survive power loss.
                    try db.makeStatement(sql: "PRAGMA synchronous = \(settings.synchronous.rawValue.uppercased())")
                        .execute()
                }
                return queue
            }
        } catch {
            throw StoreError.wrap(error, path: path, operation: "open")
        }
        try migrate()
        if settings.groupAccess { Self.shareWithGroup(path) }
        Self.keptUntilExit.withLock { $0?.stores.append(self) }
    }

    /// The stores a process that ends with its command keeps to its end (how many of them are
    /// closed already), or nil.
    private static let keptUntilExit = Mutex<(stores: [AutonomyStore], closed: Int)?>(nil)

    /// For a process that ends as soon as its command has run (one `enqueue`, one `work-once`):
    /// each store it opens from now on is kept, and closed by `closeKept()`, never released.
    /// Releasing one is dear for a process that then ends: GRDB's queue unregisters itself from
    /// Foundation's notification centre (the centre's first use, and protocol conformance scans),
    /// and disposing of its dispatch queue starts a thread.
    public static func keepUntilExit() { keptUntilExit.withLock { $0 = $0 ?? ([], 0) } }

    /// Closes every store `keepUntilExit` kept that is not closed yet: each connection closes as a
    /// released one would, the last one checkpointing the WAL and removing it. The stores stay
    /// kept (released, they would cost what keeping them spares). Returns what could not be
    /// closed (its WAL is then left for the next process to take up).
    @discardableResult
    public static func closeKept() -> [any Error] {
        let stores = keptUntilExit.withLock { kept -> ArraySlice<AutonomyStore> in
            guard let (stores, closed) = kept else { return [] }
            kept = (stores, stores.count)
            return stores[closed...]
        }
        return stores.compactMap { store in
            do {
                try store.writer.close()
                return nil
            } catch {
                return StoreError.wrap(error, path: store.path, operation: "close")
            }
        }
    }

    /// SQLite's process-wide settings: no memory statistics, so its allocations take no global
    /// lock (nothing here reads them). `sqlite3_config` is not thread-safe: call this first thing in
    /// `main`, before any thread touches SQLite. After SQLite has started it changes nothing.
    public static func configureSQLite() { _ = autonomy_sqlite_without_memory_statistics() }

    /// Makes the database and its -wal and -shm files 0660 (`store.group_access`), where this
    /// process owns them; SQLite gives the files it creates later the database's mode.
    private static func shareWithGroup(_ path: String) {
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard stat(file, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o660 != 0o660 else { continue }
            chmod(file, (info.st_mode & 0o7777) | 0o660)
        }
    }

    private static func createPrivately(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            // An empty file of ours (`touch autonomy.db`) becomes the database as a new one would: 0600.
            if info.st_mode & S_IFMT == S_IFREG, info.st_size == 0, info.st_uid == geteuid() { chmod(path, 0o600) }
            return
        }
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty, !FileManager.default.fileExists(atPath: folder) {
            throw StoreError.cannotOpen(
                path: path, reason: "the folder \(folder) does not exist (create it, or pass --database)")
        }
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            close(descriptor)
        } else if errno != EEXIST {
            throw StoreError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// Runs pending migrations. Two processes opening a new file at once both succeed: the loser of
    /// the race finds the winner's migrations applied and retries.
    private func migrate() throws {
        let migrator = Migrations.migrator
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                // What the migrator's `hasBeenSuperseded` and `hasCompletedMigrations` answer, in
                // two plain statements instead of its three SQL literals.
                let (superseded, complete, unknown) = try readSnapshot { db in
                    let applied = try Self.appliedIdentifiers(db)
                    let known = Set(migrator.migrations)
                    let unknown = applied.subtracting(known).sorted()
                    return (!unknown.isEmpty, known.isSubset(of: applied), unknown)
                }
                if superseded { throw StoreError.newerSchema(path: path, unknownMigrations: unknown) }
                if complete { return }
                try migrator.migrate(writer)
                return
            } catch let error as StoreError {
                throw error
            } catch {
                lastError = error
                usleep(20_000)
            }
        }
        throw StoreError.wrap(lastError ?? StoreError.busy(path: path), path: path, operation: "migrate")
    }

    /// The identifiers of the migrations the file has had; none when it has had none.
    private static func appliedIdentifiers(_ db: Database) throws -> Set<String> {
        let hasTable = try Bool.fetchOne(
            db.makeStatement(
                sql: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'grdb_migrations')"))
        guard hasTable == true else { return [] }
        return try String.fetchSet(db.makeStatement(sql: "SELECT identifier FROM grdb_migrations"))
    }

    private static func retryingWhileBusy<T>(_ body: () throws -> T) throws -> T {
        var attempt = 0
        while true {
            do {
                return try body()
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && attempt < 50 {
                attempt += 1
                usleep(20_000)
            }
        }
    }

    /// Runs `body` in one IMMEDIATE write transaction: it waits for other writers (up to the busy
    /// timeout) instead of failing half-way.
    func write<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        try transaction(operation, ending: .commit, body)
    }

    /// Runs `body` as `write` does, then rolls everything back: what a run would do, told without
    /// doing it (`heal --dry-run`).
    func rehearse<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        try transaction(operation, ending: .rollback, body)
    }

    private func transaction<T>(
        _ operation: String, ending: Database.TransactionCompletion, _ body: (Database) throws -> T
    ) throws -> T {
        do {
            return try isolated("BEGIN IMMEDIATE", ending: ending) { db in
                LedgerTail.forget(db)
                defer { LedgerTail.forget(db) }
                // Where the schema was found autonomy's own, a change since is checked before
                // anything is written: a trigger added while a handler ran fires in this transaction.
                try recheckSchema(db)
                return try body(db)
            }
        } catch {
            throw StoreError.wrap(error, path: path, operation: operation)
        }
    }

    /// Runs `body` in a read transaction: a consistent snapshot.
    func read<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try readSnapshot(body)
        } catch {
            throw StoreError.wrap(error, path: path, operation: operation)
        }
    }

    /// What `read` runs, with SQLite's errors as they are (for `migrate`, which waits out a busy file).
    private func readSnapshot<T>(_ body: (Database) throws -> T) throws -> T {
        try isolated("BEGIN DEFERRED", ending: .commit) { db in try db.readOnly { try body(db) } }
    }

    /// Runs `body` in one transaction that `begin` starts and `ending` ends, or that is rolled back
    /// when `body` throws: GRDB's `inTransaction`, with its three statements cached, so they are not
    /// compiled again for every transaction, and not SQL literals, whose first use in a process
    /// costs a scan of every conformance record in the executable (0.48 million instructions).
    ///
    /// Unlike GRDB's, it cannot refuse the statements that follow one after which SQLite rolled the
    /// transaction back by itself (a full disk, an I/O error): those would run outside it. So no
    /// body carries on after a failed statement: each lets the error through (the one savepoint,
    /// in `recordAttemptAndClaimNext`, first checks that the transaction is still there). A
    /// transaction found gone at the end is an error (SQLITE_ABORT), never a commit or a
    /// rehearsal that looks whole.
    func isolated<T>(
        _ begin: String, ending: Database.TransactionCompletion, _ body: (Database) throws -> T
    ) throws -> T {
        try writer.writeWithoutTransaction { db in
            try db.run(sql: begin)
            do {
                let value = try body(db)
                guard db.isInsideTransaction else {
                    throw DatabaseError(resultCode: .SQLITE_ABORT, message: "Transaction was aborted")
                }
                try db.run(sql: ending == .commit ? "COMMIT" : "ROLLBACK")
                return value
            } catch {
                // SQLite may have rolled back already (a full disk, an interrupt): then there is
                // no transaction left to end.
                if db.isInsideTransaction { try? db.run(sql: "ROLLBACK") }
                throw error
            }
        }
    }

    /// The names of the migrations applied to this file, oldest first.
    public func appliedMigrations() throws -> [String] {
        try read("read migrations") { db in try Migrations.migrator.appliedMigrations(db) }
    }
}

extension Database {
    /// Executes one statement from the connection's statement cache: the hot paths run the same
    /// few statements for every task, and compiling them each time costs more than running them.
    ///
    /// What one `enqueue` or `work-once` runs is a cached or plain statement (`cachedStatement`,
    /// `makeStatement`), never an SQL literal (`execute(sql:)`, `fetchAll(db, sql:)`): GRDB joins a
    /// literal's parts with a generic that, the first time in a process, costs a scan of every
    /// conformance record in the executable (0.48 million instructions).
    func run(sql: String, arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }
}
