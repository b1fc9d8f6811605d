import Foundation
import PostgresNIO

// What `autonomy serve` asks of a PostgreSQL database: producers' bearer tokens, operators'
// sessions, one-click links, and the dashboard's reads. The same rows and rules as on SQLite
// (`ProducerTokens.swift`, `OperatorSessions.swift`, `AutonomyStore+Approvals.swift`); the
// times are the database's.

extension ProducerToken {
    init(postgres row: PostgresRow) throws {
        let (id, name, createdAt, revokedAt) = try row.decode((Int64, String, Int64, Int64?).self)
        self.init(id: id, name: name, createdAt: createdAt, revokedAt: revokedAt)
    }
}

extension OperatorSession {
    /// A row selected with `OperatorSession.columns`, in that order.
    init(postgres row: PostgresRow) throws {
        let (id, name, createdAt, openedAt, expiresAt, revokedAt) = try row.decode(
            (Int64, String, Int64, Int64?, Int64, Int64?).self)
        self.init(
            id: id, operatorName: name, createdAt: createdAt, openedAt: openedAt, expiresAt: expiresAt,
            revokedAt: revokedAt)
    }
}

// MARK: - Producers' tokens

extension PostgresStore {
    /// Makes a token for a producer `producers.users` lists; returns it with its secret, shown once
    /// (only its SHA-256 is stored). A ledger row records who got one, never the secret.
    public func issueProducerToken(name: String, configuration: Configuration) async throws -> (
        token: ProducerToken, secret: String
    ) {
        guard configuration.producers.users[name] != nil else { throw ProducerTokenError.notAProducer(name) }
        let secret = SecretToken.make(prefix: ProducerToken.prefix)
        let token = try await write("issue a producer token") { transaction in
            let row = try await transaction.rows(
                """
                INSERT INTO producer_tokens (name, token_sha256, created_at) VALUES (\(name), \(secret.sha256Hex), \(transaction.now))
                RETURNING id, name, created_at, revoked_at
                """)
            guard let token = try row.first.map(ProducerToken.init(postgres:)) else {
                throw StoreError.failed(path: "", operation: "issue a producer token", reason: "no row came back")
            }
            _ = try await transaction.appendLedger(
                .tokenIssued, taskID: nil, type: nil, detail: ["token": .int(token.id), "producer": .string(name)])
            return token
        }
        return (token, secret)
    }

    /// Every token, newest first.
    public func producerTokens() async throws -> [ProducerToken] {
        try await read("read the producer tokens") { transaction in
            try await transaction.rows("SELECT id, name, created_at, revoked_at FROM producer_tokens ORDER BY id DESC")
                .map(ProducerToken.init(postgres:))
        }
    }

    /// Revokes a token at once, with a ledger row naming who.
    public func revokeProducerToken(id: Int64, by actor: String) async throws -> ProducerToken {
        try await write("revoke a producer token") { transaction in
            guard
                var token = try await transaction.rows(
                    "SELECT id, name, created_at, revoked_at FROM producer_tokens WHERE id = \(id) FOR UPDATE"
                ).first.map(ProducerToken.init(postgres:))
            else { throw ProducerTokenError.notFound(id) }
            guard token.revokedAt == nil else { throw ProducerTokenError.alreadyRevoked(id) }
            try await transaction.query("UPDATE producer_tokens SET revoked_at = \(transaction.now) WHERE id = \(id)")
            token.revokedAt = transaction.now
            _ = try await transaction.appendLedger(
                .tokenRevoked, taskID: nil, type: nil,
                detail: ["token": .int(id), "producer": .string(token.name), "by": .string(actor)])
            return token
        }
    }

    /// The producer a bearer token names, or nil for an unknown or revoked one: one indexed read.
    public func producerName(bearer secret: String) async throws -> String? {
        guard secret.hasPrefix(ProducerToken.prefix), secret.utf8.count <= 128 else { return nil }
        return try await read("check a producer token") { transaction in
            try await transaction.rows(
                "SELECT name FROM producer_tokens WHERE token_sha256 = \(secret.sha256Hex) AND revoked_at IS NULL"
            ).first?.decode(String.self)
        }
    }
}

// MARK: - Operators' sessions

extension PostgresStore {
    /// A one-time login token for an operator `allowed_signers` names; only its hash is stored.
    public func issueLogin(operator name: String, verifier: DecisionVerifier, seal: TokenSeal = .plain) async throws
        -> (
            OperatorSession, token: String
        )
    {
        guard verifier.lists(operator: name) else { throw SessionError.notAnOperator(name) }
        let token = SecretToken.make()
        let session = try await write("issue a login link") { transaction in
            let expires = transaction.now + OperatorSession.loginValidity.milliseconds
            guard
                let session = try await transaction.rows(
                    """
                    INSERT INTO operator_sessions (operator, login_sha256, created_at, expires_at)
                    VALUES (\(name), \(seal.digest(token)), \(transaction.now), \(expires))
                    RETURNING \(unescaped: OperatorSession.columns)
                    """
                ).first.map(OperatorSession.init(postgres:))
            else { throw StoreError.failed(path: "", operation: "issue a login link", reason: "no row came back") }
            _ = try await transaction.appendLedger(
                .sessionIssued, taskID: nil, type: nil,
                detail: ["session": .int(session.id), "operator": .string(name)])
            return session
        }
        return (session, token)
    }

    /// Opens a session with a login token (once, within its 10 minutes): the session and its
    /// cookie secret, or nil for a used, expired, revoked or wrong token, or an operator
    /// `allowed_signers` no longer lists (it does not say which).
    public func openSession(login token: String, verifier: DecisionVerifier, seal: TokenSeal = .plain) async throws -> (
        OperatorSession, cookie: String
    )? {
        guard SecretToken.isPlausible(token) else { return nil }
        let cookie = SecretToken.make()
        return try await write("open a session") { transaction in
            let now = transaction.now
            guard
                var session = try await transaction.rows(
                    """
                    SELECT \(unescaped: OperatorSession.columns) FROM operator_sessions
                    WHERE login_sha256 = \(seal.digest(token)) AND opened_at IS NULL AND revoked_at IS NULL
                      AND expires_at > \(now)
                    FOR UPDATE
                    """
                ).first.map(OperatorSession.init(postgres:)),
                verifier.lists(operator: session.operatorName)
            else { return nil }
            (session.openedAt, session.expiresAt) = (now, now + OperatorSession.lifetime.milliseconds)
            try await transaction.query(
                """
                UPDATE operator_sessions SET opened_at = \(now), expires_at = \(session.expiresAt),
                                             session_sha256 = \(seal.digest(cookie))
                WHERE id = \(session.id)
                """)
            _ = try await transaction.appendLedger(
                .sessionOpened, taskID: nil, type: nil,
                detail: ["session": .int(session.id), "operator": .string(session.operatorName)])
            return (session, cookie)
        }
    }

    /// The open session a cookie belongs to, or nil: none, revoked, expired, or its operator is no
    /// longer in `allowed_signers`.
    public func session(cookie: String, verifier: DecisionVerifier, seal: TokenSeal = .plain) async throws
        -> OperatorSession?
    {
        guard SecretToken.isPlausible(cookie) else { return nil }
        let session = try await read("check a session") { transaction in
            try await transaction.rows(
                """
                SELECT \(unescaped: OperatorSession.columns) FROM operator_sessions
                WHERE session_sha256 = \(seal.digest(cookie)) AND revoked_at IS NULL AND expires_at > \(transaction.now)
                """
            ).first.map(OperatorSession.init(postgres:))
        }
        guard let session, verifier.lists(operator: session.operatorName) else { return nil }
        return session
    }

    public func operatorSessions() async throws -> [OperatorSession] {
        try await read("read the sessions") { transaction in
            try await transaction.rows(
                "SELECT \(unescaped: OperatorSession.columns) FROM operator_sessions ORDER BY id DESC"
            ).map(OperatorSession.init(postgres:))
        }
    }

    /// Ends a session (or an unused login link) at once, with a ledger row.
    public func revokeSession(id: Int64, by actor: String) async throws -> OperatorSession {
        try await write("revoke a session") { transaction in
            guard
                var session = try await transaction.rows(
                    "SELECT \(unescaped: OperatorSession.columns) FROM operator_sessions WHERE id = \(id) FOR UPDATE"
                ).first.map(OperatorSession.init(postgres:))
            else { throw SessionError.notFound(id) }
            guard session.revokedAt == nil else { throw SessionError.alreadyRevoked(id) }
            try await transaction.query(
                "UPDATE operator_sessions SET revoked_at = \(transaction.now) WHERE id = \(id)")
            session.revokedAt = transaction.now
            _ = try await transaction.appendLedger(
                .sessionRevoked, taskID: nil, type: nil,
                detail: ["session": .int(id), "operator": .string(session.operatorName), "by": .string(actor)])
            return session
        }
    }
}

// MARK: - One-click links

extension PostgresTransaction {
    /// A fresh token for a pending request (one per alert delivered, `via` its channel); only its
    /// digest under `seal` is stored. Nil when the request is no longer pending.
    nonisolated(nonsending) func issueToken(approvalID: Int64, via channel: NotifyChannel?, seal: TokenSeal)
        async throws -> String?
    {
        let token = SecretToken.make()
        let inserted = try await rows(
            """
            INSERT INTO approval_tokens (token_sha256, approval_id, issued_at, issued_via)
            SELECT \(seal.digest(token)), id, \(now), \(channel?.rawValue) FROM approvals
            WHERE id = \(approvalID) AND state = 'pending' AND expires_at > \(now)
            RETURNING approval_id
            """)
        return inserted.isEmpty ? nil : token
    }

    /// The pending request a one-click token belongs to, locked.
    nonisolated(nonsending) func approvalHolding(token: String, seal: TokenSeal) async throws -> ApprovalRecord? {
        guard SecretToken.isPlausible(token) else { return nil }
        return try await rows(
            """
            SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
            WHERE state = 'pending'
              AND id = (SELECT approval_id FROM approval_tokens WHERE token_sha256 = \(seal.digest(token)))
            FOR UPDATE
            """
        ).first.map(ApprovalRecord.init(postgres:))
    }
}

extension PostgresStore {
    /// What a one-click link shows before anyone decides (a GET never decides).
    ///
    /// - Throws: `ApprovalError.invalidToken` for a used, expired or wrong token, saying nothing more.
    public func pendingApproval(token: String, seal: TokenSeal = .plain) async throws -> PendingApproval {
        try await requireIssued(token, seal: seal)
        return try await write("read an approval by token") { transaction in
            _ = try await transaction.expireApprovals()
            guard let approval = try await transaction.approvalHolding(token: token, seal: seal),
                let task = try await transaction.task(id: approval.taskID)
            else { throw ApprovalError.invalidToken }
            return PendingApproval(approval: approval, task: task)
        }
    }

    /// Records a signed decision on the request a one-click token belongs to (the POST behind a
    /// link's button). A statement about another request, or any refusal of the request as it
    /// stands, is an invalid token, saying nothing more; a bad signature is a `TrustError`.
    public func decide(
        token: String, seal: TokenSeal = .plain, _ signed: SignedDecision, verifier: DecisionVerifier,
        channel: DecisionChannel = .link
    ) async throws -> ApprovalRecord {
        try await requireIssued(token, seal: seal)
        let statement = try DecisionStatement(text: signed.statement)
        let key = try verifier.verify(
            signed.statement, signature: signed.signature, principal: statement.principal,
            at: try await databaseNow())
        return try await write("decide an approval by token") { transaction in
            _ = try await transaction.expireApprovals()
            guard let approval = try await transaction.approvalHolding(token: token, seal: seal),
                approval.id == statement.approvalID
            else { throw ApprovalError.invalidToken }
            do {
                return try await transaction.record(
                    statement, signed, key: key, runWithin: verifier.runWithin, channel: channel)
            } catch ApprovalError.missingReason {
                throw ApprovalError.missingReason
            } catch is ApprovalError {
                throw ApprovalError.invalidToken
            }
        }
    }

    /// A token no alert was given is refused by a read, before any transaction takes the ledger's
    /// lock: a stranger's guesses hold up no host.
    private func requireIssued(_ token: String, seal: TokenSeal) async throws {
        guard SecretToken.isPlausible(token),
            try await read(
                "look up a link",
                { transaction in
                    try await !transaction.rows(
                        "SELECT 1 FROM approval_tokens WHERE token_sha256 = \(seal.digest(token))"
                    ).isEmpty
                })
        else { throw ApprovalError.invalidToken }
    }

    /// The alert channel a one-click token went out by, if it was one.
    public func linkChannel(token: String, seal: TokenSeal = .plain) async throws -> String? {
        guard SecretToken.isPlausible(token) else { return nil }
        return try await read("read a link's channel") { transaction in
            try await transaction.rows(
                "SELECT issued_via FROM approval_tokens WHERE token_sha256 = \(seal.digest(token))"
            ).first?.decode(String?.self) ?? nil
        }
    }

    /// The decided request a spent one-click token belongs to, if `approvalID` is that request and
    /// it was decided within `AutonomyStore.spentLinksShow`; nil for anything else.
    public func decidedApproval(token: String, seal: TokenSeal = .plain, approvalID: Int64) async throws
        -> ApprovalRecord?
    {
        guard SecretToken.isPlausible(token) else { return nil }
        return try await read("read a decided approval by token") { transaction in
            try await transaction.rows(
                """
                SELECT \(unescaped: ApprovalRecord.columns) FROM approvals
                WHERE id = \(approvalID) AND state IN ('approved', 'rejected')
                  AND decided_at > \(transaction.now - AutonomyStore.spentLinksShow.milliseconds)
                  AND id = (SELECT approval_id FROM approval_tokens WHERE token_sha256 = \(seal.digest(token)))
                """
            ).first.map(ApprovalRecord.init(postgres:))
        }
    }

    public func approval(id: Int64) async throws -> ApprovalRecord? {
        try await read("read an approval") { transaction in try await transaction.approval(id: id) }
    }
}

// MARK: - The dashboard's reads

extension PostgresStore {
    /// Open model-call reservations (calls under way), newest first.
    public func openReservations() async throws -> [(
        id: Int64, model: String, reservedUSD: Double, taskID: Int64?, since: Int64
    )] {
        try await read("read the reservations") { transaction in
            try await transaction.rows(
                """
                SELECT id, model, reserved_usd, task_id, started_at FROM llm_calls
                WHERE state = 'reserved' AND expires_at > \(transaction.now) ORDER BY id DESC LIMIT 100
                """
            ).map {
                let (id, model, reserved, task, since) = try $0.decode((Int64, String, Double, Int64?, Int64).self)
                return (id: id, model: model, reservedUSD: reserved, taskID: task, since: since)
            }
        }
    }

    /// The dashboard's first page (`AutonomyStore.overview`), as of the database's clock.
    public func overview(configuration: Configuration) async throws -> Overview {
        let (approvals, _) = try await pendingApprovals(limit: AutonomyStore.overviewApprovals)
        let (status, _) = try await status()
        let budget = try await budget(settings: configuration.gateway, timeZone: configuration.timezone)
        return try await read("read the overview") { transaction in
            let now = transaction.now
            let first = now - Interval.hours(24).milliseconds
            var hours = (0..<24).map { Overview.Hour(start: first + Int64($0) * 3_600_000, done: 0, dead: 0) }
            for row in try await transaction.rows(
                """
                SELECT (finished_at - \(first)) / 3600000, state, count(*)::bigint FROM tasks
                WHERE finished_at > \(first) AND state IN ('done', 'dead') GROUP BY 1, 2
                """)
            {
                let (hour, state, count) = try row.decode((Int64, String, Int).self)
                guard hours.indices.contains(Int(hour)) else { continue }
                if state == "done" { hours[Int(hour)].done = count } else { hours[Int(hour)].dead = count }
            }
            let lastSuccess = try await transaction.lastSuccess(of: configuration.taskTypes.keys)
            let lastAudit = try await transaction.rows(
                "SELECT id, at, headline, worst FROM audit_runs WHERE source = 'audit' ORDER BY id DESC LIMIT 1"
            ).first.map {
                let (id, at, headline, worst) = try $0.decode((Int64, Int64, String, String?).self)
                return Overview.AuditHeadline(id: id, at: at, headline: headline, worst: worst)
            }
            let failedAlerts = try await transaction.rows(
                """
                SELECT id, event, channel, task_id, attempts, last_error, created_at FROM notifications
                WHERE delivered_at IS NULL AND attempts > 0 ORDER BY id LIMIT 20
                """
            ).map {
                let (id, event, channel, task, attempts, error, created) = try $0.decode(
                    (Int64, String, String, Int64?, Int, String?, Int64).self)
                return Overview.FailedAlert(
                    id: id, event: event, channel: channel, taskID: task, attempts: attempts, lastError: error,
                    createdAt: created)
            }
            return Overview(
                approvals: approvals, status: status, hours: hours, budget: budget,
                shelfware: configuration.shelfware(now: now) { lastSuccess[$0] }, lastAudit: lastAudit,
                failedAlerts: failedAlerts)
        }
    }
}
