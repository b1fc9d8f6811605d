import Foundation
import GRDB

/// 32 random bytes from the system's cryptographic generator, base64url without padding: a
/// secret shown once and stored only as its SHA-256.
public enum SecretToken {
    public static func make(prefix: String = "") -> String { text(bytes: 32, prefix: prefix) }

    /// 16 random bytes: a page's script nonce.
    public static func nonce() -> String { text(bytes: 16, prefix: "") }

    /// Text that could be one of ours: not empty, not absurdly long. Anything else is not looked up.
    static func isPlausible(_ text: String) -> Bool { !text.isEmpty && text.utf8.count <= 256 }

    private static func text(bytes count: Int, prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()  // getrandom(2): cryptographically secure
        let bytes = (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return prefix
            + Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// A bearer token a remote producer sends to `autonomy serve`. The producer's name is an entry of
/// `producers.users`: the task's `source`, with that entry's types and limits.
public struct ProducerToken: Sendable, Equatable, Encodable {
    public var id: Int64
    public var name: String
    @EpochTime public var createdAt: Int64
    @OptionalEpochTime public var revokedAt: Int64? = nil

    enum CodingKeys: String, CodingKey {
        case id, name
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }

    /// One line a person reads.
    public var line: String {
        "token \(id) for \(Visible.text(name)), made \(Timestamp.format(createdAt))"
            + (revokedAt.map { ", revoked \(Timestamp.format($0))" } ?? "")
    }

    /// What every token starts with, so a leaked one is easy to recognise (and to scan for).
    public static let prefix = "aut_"
}

/// `producer token` for a name `producers.users` does not list, or `producer revoke` of an
/// unknown or revoked token.
public enum ProducerTokenError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAProducer(String)
    case notFound(Int64)
    case alreadyRevoked(Int64)

    public var description: String {
        switch self {
        case .notAProducer(let name):
            return
                "\(Visible.text(name)) is not listed under producers.users: add it there with the types it may enqueue first"
        case .notFound(let id): return "no producer token \(id) (see 'autonomy producer tokens')"
        case .alreadyRevoked(let id): return "producer token \(id) is already revoked"
        }
    }
}

extension AutonomyStore {
    /// Makes a token for a producer `producers.users` lists; returns it with its secret, which is
    /// shown once: only its SHA-256 is stored. A ledger row records who got one (never the secret).
    public func issueProducerToken(name: String, configuration: Configuration, now: Int64) throws -> (
        token: ProducerToken, secret: String
    ) {
        guard configuration.producers.users[name] != nil else { throw ProducerTokenError.notAProducer(name) }
        let secret = SecretToken.make(prefix: ProducerToken.prefix)
        let token = try write("issue a producer token") { db in
            try db.execute(
                sql: "INSERT INTO producer_tokens (name, token_sha256, created_at) VALUES (?, ?, ?)",
                arguments: [name, secret.sha256Hex, now])
            let token = ProducerToken(id: db.lastInsertedRowID, name: name, createdAt: now)
            try db.appendLedger(
                .tokenIssued, at: now, taskID: nil, type: nil,
                detail: ["token": .int(token.id), "producer": .string(name)])
            return token
        }
        return (token, secret)
    }

    /// Every token, newest first.
    public func producerTokens() throws -> [ProducerToken] {
        try read("read the producer tokens") { db in
            try Row.fetchAll(
                db, sql: "SELECT id, name, created_at, revoked_at FROM producer_tokens ORDER BY id DESC"
            ).map(ProducerToken.init(row:))
        }
    }

    /// Revokes a token at once, with a ledger row naming who.
    public func revokeProducerToken(id: Int64, by actor: String, now: Int64) throws -> ProducerToken {
        try write("revoke a producer token") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT id, name, created_at, revoked_at FROM producer_tokens WHERE id = ?",
                    arguments: [id])
            else { throw ProducerTokenError.notFound(id) }
            var token = try ProducerToken(row: row)
            guard token.revokedAt == nil else { throw ProducerTokenError.alreadyRevoked(id) }
            try db.execute(sql: "UPDATE producer_tokens SET revoked_at = ? WHERE id = ?", arguments: [now, id])
            token.revokedAt = now
            try db.appendLedger(
                .tokenRevoked, at: now, taskID: nil, type: nil,
                detail: ["token": .int(id), "producer": .string(token.name), "by": .string(actor)])
            return token
        }
    }

    /// The producer a bearer token names, or nil for an unknown or revoked one. Only the token's
    /// SHA-256 is looked up: one indexed read, no write.
    public func producerName(bearer secret: String) throws -> String? {
        guard secret.hasPrefix(ProducerToken.prefix), secret.utf8.count <= 128 else { return nil }
        return try read("check a producer token") { db in
            try String.fetchOne(
                db.cachedStatement(
                    sql: "SELECT name FROM producer_tokens WHERE token_sha256 = ? AND revoked_at IS NULL"),
                arguments: [secret.sha256Hex])
        }
    }
}

extension ProducerToken {
    init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        name = try row.decode(forColumn: "name")
        createdAt = try row.decode(forColumn: "created_at")
        revokedAt = try row.decode(forColumn: "revoked_at")
    }
}
