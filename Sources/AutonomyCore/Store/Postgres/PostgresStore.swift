import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// The queue and its ledger in a PostgreSQL database: one queue for several machines.
///
/// The same rows as the SQLite store, and the same rules, held by PostgreSQL's own means:
/// - a claim takes the next task `FOR UPDATE SKIP LOCKED`, so no two hosts ever hold one attempt;
/// - every transaction that appends to the ledger first takes one transaction-scoped advisory
///   lock, so the hash chain stays one line however many hosts append (and no two such
///   transactions can deadlock over rows: they never run at once);
/// - time is the database's clock (`clock_timestamp()`), read once per transaction: leases are
///   taken and found expired on one clock, so a host whose clock is off never steals a live lease.
///
/// One connection, used by one transaction at a time (an actor).
public actor PostgresStore {
    public nonisolated let url: PostgresURL
    /// This machine, as the ledger records it for claims and outcomes.
    public nonisolated let host: String
    let connection: PostgresConnection
    let logger: Logger
    /// One transaction at a time on the one connection: an actor lets another call in at every
    /// `await`, so calls queue here instead.
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// When the connection last finished a transaction (or took one up while idle).
    private var lastProgress = ContinuousClock.now

    func acquire() async {
        guard busy else {
            busy = true
            lastProgress = .now
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        lastProgress = .now
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }

    /// The advisory lock every ledger-appending transaction holds ("autonomy" in ASCII).
    static let ledgerLock: Int64 = 0x6175_746f_6e6f_6d79
    /// The advisory lock migrations run under ("autmigra").
    static let migrationLock: Int64 = 0x6175_746d_6967_7261

    private init(url: PostgresURL, host: String, connection: PostgresConnection, logger: Logger) {
        (self.url, self.host, self.connection, self.logger) = (url, host, connection, logger)
    }

    /// Connects, then runs pending migrations (under an advisory lock, so hosts starting at once
    /// migrate once). Refuses a database a newer autonomy migrated. With `migrate: false` it only
    /// connects (`doctor`, which reads only, looks at the schema with `schema()`).
    public static func open(
        _ url: PostgresURL, password: String?, host: String = ProcessInfo.processInfo.hostName, migrate: Bool = true
    ) async throws -> PostgresStore {
        var logger = Logger(label: "autonomy.postgres")
        // postgres-nio logs queries and their binds at debug and trace: never let them out.
        logger.logLevel = .critical
        let tls: PostgresConnection.Configuration.TLS
        do {
            switch url.tls {
            case .disable: tls = .disable
            // NIOSSL's client configuration checks the chain and the host name.
            case .require, .verifyFull: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        } catch {
            throw StoreError.cannotOpen(path: url.description, reason: "cannot set up TLS: \(error)")
        }
        var configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.user, password: password, database: url.database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            let refused =
                (error as? PSQLError)?.code == .authMechanismRequiresPassword
                || Self.sqlState(error)?.hasPrefix("28") == true
            throw refused
                ? StoreError.refused(path: url.description, reason: Self.reason(error))
                : StoreError.cannotOpen(path: url.description, reason: Self.reason(error))
        }
        let store = PostgresStore(url: url, host: host, connection: connection, logger: logger)
        do {
            // A host that goes silent in the middle of a transaction gives the ledger's lock back
            // within seconds, and no transaction waits for that lock forever.
            try await connection.query("SET idle_in_transaction_session_timeout = '15s'", logger: logger)
            try await connection.query("SET lock_timeout = '300s'", logger: logger)
            if migrate { try await store.migrate() }
        } catch {
            try? await connection.close()
            throw error
        }
        return store
    }

    /// Closes the connection. A store is not used after this.
    public func close() async {
        try? await connection.close()
    }

    /// How long a transaction of this connection waits for a lock (the ledger's, a row's) before it
    /// fails: `serve` waits no longer than a request may take.
    public func limitLockWait(to limit: Interval) async throws {
        await acquire()
        defer { release() }
        try await connection.query(
            PostgresQuery(unsafeSQL: "SET lock_timeout = '\(max(1, limit.milliseconds))ms'"), logger: logger)
    }

    /// How long the connection has been at work without finishing anything; nil when idle. A
    /// connection whose server vanished without closing it stalls for good.
    public func stalled() -> Duration? { busy ? ContinuousClock.now - lastProgress : nil }

    /// The connection is gone (the server restarted, or ended it): every call fails from now on,
    /// so a long-running command (`serve`) stops and is started again with a new one.
    public nonisolated var isClosed: Bool { connection.isClosed }

    /// What went wrong, in the server's words when it sent some; never the query or its binds.
    static func reason(_ error: any Error) -> String {
        if let error = error as? PostgresTransactionError {
            return reason(error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError ?? error)
        }
        guard let error = error as? PSQLError else { return "\(error)" }
        if error.code == .authMechanismRequiresPassword {
            return
                "the server asks for a password and none was found here (the variable store.password_env names, PGPASSWORD, or ~/.pgpass)"
        }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        if let underlying = error.underlying { return "\(underlying)" }
        return "\(error.code)"
    }

    /// The SQLSTATE the server answered with, if it answered.
    static func sqlState(_ error: any Error) -> String? {
        if let error = error as? PostgresTransactionError, let inner = error.closureError ?? error.commitError {
            return sqlState(inner)
        }
        return (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Runs `body` in one transaction that holds the ledger's advisory lock, with the database's
    /// clock read once (epoch milliseconds); without `ledger`, without that lock.
    func write<T: Sendable>(
        _ operation: String, ledger: Bool = true, _ body: (PostgresTransaction) async throws -> T
    ) async throws -> T {
        await acquire()
        defer { release() }
        var attempt = 0
        while true {
            do {
                return try await connection.withTransaction(logger: logger) { connection in
                    // Without `ledger` (a lease renewal, which writes no ledger row), the transaction
                    // never waits for the ledger's lock: a long batch on another host cannot starve it.
                    if ledger {
                        // Read to its end: a lock that times out fails there, not at the query's start
                        // (else the next statement would meet an aborted transaction instead).
                        for try await _ in try await connection.query(
                            "SELECT pg_advisory_xact_lock(\(Self.ledgerLock))", logger: logger)
                        {}
                    }
                    let transaction = PostgresTransaction(
                        connection: connection, logger: logger, now: try await Self.now(connection, logger: logger))
                    return try await body(transaction)
                }
            } catch {
                // Serialization failures and deadlocks are retried; so is a lock that stayed taken past
                // lock_timeout, once.
                let state = Self.sqlState(error)
                if state == "40001" || state == "40P01" || (state == "55P03" && attempt == 0), attempt < 5 {
                    attempt += 1
                    continue
                }
                // Our own refusals pass through as they are; the server's errors are told in its words.
                if let refused = (error as? PostgresTransactionError)?.closureError, !(refused is PSQLError) {
                    throw refused
                }
                // Contention that outlasted the retries: busy, as SQLITE_BUSY is (exit 75, a 503 to
                // retry), not a database that cannot be used.
                if ["40001", "40P01", "55P03"].contains(state) { throw StoreError.busy(path: url.description) }
                throw StoreError.failed(path: url.description, operation: operation, reason: Self.reason(error))
            }
        }
    }

    /// Runs `body` in a read-only transaction: one snapshot.
    func read<T: Sendable>(_ operation: String, _ body: (PostgresTransaction) async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        do {
            return try await connection.withTransaction(logger: logger) { connection in
                try await connection.query("SET TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ", logger: logger)
                return try await body(
                    PostgresTransaction(
                        connection: connection, logger: logger, now: try await Self.now(connection, logger: logger)))
            }
        } catch {
            // Our own refusals pass through as they are; the server's errors are told in its words.
            if let inner = (error as? PostgresTransactionError)?.closureError, !(inner is PSQLError) { throw inner }
            throw StoreError.failed(path: url.description, operation: operation, reason: Self.reason(error))
        }
    }

    /// The database's clock, in epoch milliseconds.
    static func now(_ connection: PostgresConnection, logger: Logger) async throws -> Int64 {
        let rows = try await connection.query(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", logger: logger)
        for try await now in rows.decode(Int64.self) { return now }
        throw StoreError.failed(path: "", operation: "read the clock", reason: "no row")
    }

    /// The database's clock now, in epoch milliseconds: what leases are measured against.
    public func databaseNow() async throws -> Int64 {
        try await read("read the clock") { $0.now }
    }
}

/// One transaction on the PostgreSQL store, with its clock and the ledger's newest row.
final class PostgresTransaction {
    let connection: PostgresConnection
    let logger: Logger
    /// The database's clock at the transaction's start, epoch milliseconds.
    let now: Int64
    /// The newest ledger row's id and hash, once read: the advisory lock keeps it ours.
    var ledgerTail: (Int64, String)?

    init(connection: PostgresConnection, logger: Logger, now: Int64) {
        (self.connection, self.logger, self.now) = (connection, logger, now)
    }

    @discardableResult
    nonisolated(nonsending) func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        try await connection.query(query, logger: logger)
    }

    /// Runs a statement and collects its rows.
    nonisolated(nonsending) func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        var rows: [PostgresRow] = []
        for try await row in try await connection.query(query, logger: logger) { rows.append(row) }
        return rows
    }
}
