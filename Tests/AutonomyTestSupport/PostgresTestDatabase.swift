import AutonomyCore
import Foundation
import Logging
import PostgresNIO

/// A fresh PostgreSQL database per test, on the cluster `scripts/postgres-test-cluster` starts
/// (AUTONOMY_TEST_POSTGRES names it, AUTONOMY_TEST_POSTGRES_PASSWORD is its password). Without
/// the variable the PostgreSQL tests are skipped; with AUTONOMY_REQUIRE_POSTGRES set (CI) they
/// are never skipped.
public struct PostgresTestDatabase: Sendable {
    public static let environment = ProcessInfo.processInfo.environment
    public static let adminURL = environment["AUTONOMY_TEST_POSTGRES"].flatMap { try? PostgresURL(parsing: $0) }
    public static let password = environment["AUTONOMY_TEST_POSTGRES_PASSWORD"]
    public static var available: Bool { adminURL != nil || environment["AUTONOMY_REQUIRE_POSTGRES"] != nil }

    public let url: PostgresURL
    public var password: String? { Self.password }

    /// Creates the database; `drop()` removes it.
    public static func make() async throws -> PostgresTestDatabase {
        guard var url = adminURL else {
            throw TestFailure(
                "AUTONOMY_TEST_POSTGRES is not set: eval \"$(scripts/postgres-test-cluster start)\" first")
        }
        let name = "autonomy_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await admin { connection, logger in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        url.database = name
        return PostgresTestDatabase(url: url)
    }

    public func drop() async {
        let name = url.database
        try? await Self.admin { connection, logger in
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    /// A store on this database, as a host named `host`.
    public func store(host: String = "test-host") async throws -> PostgresStore {
        try await PostgresStore.open(url, password: password, host: host)
    }

    /// Runs `body` on a plain connection to this database (what an attacker with the database's
    /// credentials, or a superuser, could do).
    public func connection<T: Sendable>(_ body: (PostgresConnection, Logger) async throws -> T) async throws -> T {
        try await Self.connect(url, body)
    }

    private static func admin(_ body: (PostgresConnection, Logger) async throws -> Void) async throws {
        guard let adminURL else { return }
        try await connect(adminURL, body)
    }

    private static func connect<T: Sendable>(
        _ url: PostgresURL, _ body: (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .critical
        let connection = try await PostgresConnection.connect(
            configuration: .init(
                host: url.host, port: url.port, username: url.user, password: password, database: url.database,
                tls: .disable), id: 99, logger: logger)
        do {
            let value = try await body(connection, logger)
            try await connection.close()
            return value
        } catch {
            try? await connection.close()
            throw error
        }
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
