import Foundation
import GRDB

/// An operator's session on `autonomy serve`: opened by a one-time login link that
/// `autonomy serve login --operator NAME` prints (valid 10 minutes, usable once), kept as a
/// cookie. Only the hashes of the link's token and of the cookie are stored.
public struct OperatorSession: Sendable, Equatable, Encodable {
    public var id: Int64
    public var operatorName: String
    @EpochTime public var createdAt: Int64
    /// When the login link was used; nil while it waits.
    @OptionalEpochTime public var openedAt: Int64? = nil
    @EpochTime public var expiresAt: Int64
    @OptionalEpochTime public var revokedAt: Int64? = nil

    enum CodingKeys: String, CodingKey {
        case id
        case operatorName = "operator"
        case createdAt = "created_at"
        case openedAt = "opened_at"
        case expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }

    public var line: String {
        let state =
            revokedAt.map { "revoked \(Timestamp.format($0))" }
            ?? (openedAt == nil ? "login link not used yet" : "opened \(Timestamp.format(openedAt ?? 0))")
        return "session \(id) for \(Visible.text(operatorName)): \(state), expires \(Timestamp.format(expiresAt))"
    }

    /// How long a login link may wait, and how long a session lasts.
    public static let loginValidity = Interval.minutes(10)
    public static let lifetime = Interval.hours(12)

    static let columns = "id, operator, created_at, opened_at, expires_at, revoked_at"
}

public enum SessionError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAnOperator(String)
    case notFound(Int64)
    case alreadyRevoked(Int64)

    public var description: String {
        switch self {
        case .notAnOperator(let name):
            return
                "\(Visible.text(name)) is not a principal in approvals.allowed_signers: only an operator may log in"
        case .notFound(let id): return "no session \(id) (see 'autonomy serve sessions')"
        case .alreadyRevoked(let id): return "session \(id) is already revoked"
        }
    }
}

extension DecisionVerifier {
    /// `allowed_signers`, read now, names this operator (false when it cannot be read).
    func lists(operator name: String) -> Bool {
        (try? signers().entries.contains { $0.name == name }) ?? false
    }
}

extension AutonomyStore {
    /// A one-time login token for an operator `allowed_signers` names; only its digest under
    /// `seal` is stored (the server's, where it has a key: see `TokenSeal`).
    public func issueLogin(operator name: String, verifier: DecisionVerifier, seal: TokenSeal = .plain, now: Int64)
        throws
        -> (
            OperatorSession, token: String
        )
    {
        guard verifier.lists(operator: name) else { throw SessionError.notAnOperator(name) }
        let token = SecretToken.make()
        let session = try write("issue a login link") { db in
            try db.execute(
                sql:
                    "INSERT INTO operator_sessions (operator, login_sha256, created_at, expires_at) VALUES (?, ?, ?, ?)",
                arguments: [name, seal.digest(token), now, now + OperatorSession.loginValidity.milliseconds])
            let session = OperatorSession(
                id: db.lastInsertedRowID, operatorName: name, createdAt: now,
                expiresAt: now + OperatorSession.loginValidity.milliseconds)
            try db.appendLedger(
                .sessionIssued, at: now, taskID: nil, type: nil,
                detail: ["session": .int(session.id), "operator": .string(name)])
            return session
        }
        return (session, token)
    }

    /// Opens a session with a login token (once, within its 10 minutes); returns the session and
    /// its cookie secret. Nil for a used, expired, revoked or wrong token, or an operator
    /// `allowed_signers` no longer lists (it does not say which).
    public func openSession(login token: String, verifier: DecisionVerifier, seal: TokenSeal = .plain, now: Int64)
        throws
        -> (
            OperatorSession, cookie: String
        )?
    {
        guard SecretToken.isPlausible(token) else { return nil }
        let cookie = SecretToken.make()
        return try write("open a session") { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT \(OperatorSession.columns) FROM operator_sessions
                        WHERE login_sha256 = ? AND opened_at IS NULL AND revoked_at IS NULL AND expires_at > ?
                        """, arguments: [seal.digest(token), now])
            else { return nil }
            var session = try OperatorSession(row: row)
            guard verifier.lists(operator: session.operatorName) else { return nil }
            (session.openedAt, session.expiresAt) = (now, now + OperatorSession.lifetime.milliseconds)
            try db.execute(
                sql: "UPDATE operator_sessions SET opened_at = ?, expires_at = ?, session_sha256 = ? WHERE id = ?",
                arguments: [now, session.expiresAt, seal.digest(cookie), session.id])
            try db.appendLedger(
                .sessionOpened, at: now, taskID: nil, type: nil,
                detail: ["session": .int(session.id), "operator": .string(session.operatorName)])
            return (session, cookie)
        }
    }

    /// The open session a cookie belongs to, or nil: none, revoked, expired, or its operator is
    /// no longer in `allowed_signers` (removing an operator ends their sessions at once).
    public func session(cookie: String, verifier: DecisionVerifier, seal: TokenSeal = .plain, now: Int64) throws
        -> OperatorSession?
    {
        guard SecretToken.isPlausible(cookie) else { return nil }
        let session = try read("check a session") { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT \(OperatorSession.columns) FROM operator_sessions
                    WHERE session_sha256 = ? AND revoked_at IS NULL AND expires_at > ?
                    """, arguments: [seal.digest(cookie), now]
            ).map(OperatorSession.init(row:))
        }
        guard let session, verifier.lists(operator: session.operatorName) else { return nil }
        return session
    }

    public func operatorSessions() throws -> [OperatorSession] {
        try read("read the sessions") { db in
            try Row.fetchAll(db, sql: "SELECT \(OperatorSession.columns) FROM operator_sessions ORDER BY id DESC")
                .map(OperatorSession.init(row:))
        }
    }

    /// Ends a session (or an unused login link) at once, with a ledger row.
    public func revokeSession(id: Int64, by actor: String, now: Int64) throws -> OperatorSession {
        try write("revoke a session") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT \(OperatorSession.columns) FROM operator_sessions WHERE id = ?", arguments: [id])
            else { throw SessionError.notFound(id) }
            var session = try OperatorSession(row: row)
            guard session.revokedAt == nil else { throw SessionError.alreadyRevoked(id) }
            try db.execute(sql: "UPDATE operator_sessions SET revoked_at = ? WHERE id = ?", arguments: [now, id])
            session.revokedAt = now
            try db.appendLedger(
                .sessionRevoked, at: now, taskID: nil, type: nil,
                detail: ["session": .int(id), "operator": .string(session.operatorName), "by": .string(actor)])
            return session
        }
    }
}

extension OperatorSession {
    init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        operatorName = try row.decode(forColumn: "operator")
        createdAt = try row.decode(forColumn: "created_at")
        openedAt = try row.decode(forColumn: "opened_at")
        expiresAt = try row.decode(forColumn: "expires_at")
        revokedAt = try row.decode(forColumn: "revoked_at")
    }
}
