import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Operators on the server: a one-time login link opens a session (a cookie), which reads the
/// queue and decides approval requests through the API. A producer's token does neither.
enum OperatorRoutes {
    static let cookieName = "autonomy_session"

    static func add(to router: Router<ServerContext>, _ environment: ServerEnvironment, _ state: ServerState) {
        router.get("login") { _, _ in landing() }
        router.head("login") { _, _ in landing() }
        router.post("login") { request, context in try await login(request, context, environment, state) }
        let api = router.group("api/v1")
        api.get("status") { request, _ in
            _ = try await session(request, environment, state)
            let now = environment.clock.now()
            return try JSONResponse.make(
                .ok, encoding: StatusOutput(try await environment.store.status(now: now, source: nil), now: now))
        }
        api.get("approvals") { request, _ in
            _ = try await session(request, environment, state)
            let now = environment.clock.now()
            let pending = try await environment.store.pendingApprovals(now: now)
            return try JSONResponse.make(
                .ok, encoding: ["approvals": pending.map { PendingApprovalOutput($0, now: now) }])
        }
        api.post("approvals/{id}/approve") { request, context in
            try await decide(request, context, environment, state, approve: true)
        }
        api.post("approvals/{id}/reject") { request, context in
            try await decide(request, context, environment, state, approve: false)
        }
    }

    /// The operator whose live session cookie came with the request, if any.
    static func currentSession(_ request: Request, _ environment: ServerEnvironment, _ state: ServerState)
        async throws -> OperatorSession?
    {
        guard let cookie = request.cookies[cookieName]?.value else { return nil }
        return try await environment.store.session(
            cookie: cookie, verifier: DecisionVerifier(settings: environment.loaded.configuration.approvals),
            seal: state.seal, now: environment.clock.now())
    }

    /// The operator a session cookie belongs to; a producer's bearer token is not one.
    static func session(_ request: Request, _ environment: ServerEnvironment, _ state: ServerState) async throws
        -> OperatorSession
    {
        if let session = try await currentSession(request, environment, state) { return session }
        if request.headers[.authorization] != nil {
            throw APIError(
                .forbidden, "forbidden", "operators only: a producer's token cannot read approvals or decide them")
        }
        throw APIError(
            .unauthorized, "unauthorized", "log in first: autonomy serve login --operator NAME prints a link")
    }

    // MARK: - Login

    static func landing() -> Response {
        let nonce = SecretToken.nonce()
        let body = """
            <h1>Log in to autonomy</h1>
            <form id="login" method="post" action="/login">
            <p><label>The login link's token <input name="t" id="t" autocomplete="off" required></label>
            <button type="submit">Log in</button></p>
            </form>
            <script nonce="\(nonce)">
            var m = location.hash.match(/[#&]t=([^&]+)/);
            if (m) {
              document.getElementById("t").value = decodeURIComponent(m[1]);
              history.replaceState(null, "", location.pathname);
              document.getElementById("login").submit();
            }
            </script>
            """
        return Page.make(.ok, title: "Log in", body: body, nonce: nonce)
    }

    static func login(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        let client = Client.address(request, context, trusted: environment.loaded.configuration.serve.trustedProxies)
        let now = environment.clock.now()
        guard Client.sameOrigin(request, environment: environment) else {
            return Page.message(.forbidden, "Refused", "This form did not come from this server.")
        }
        var request = request
        let form = Form(try await request.collectBody(upTo: 16 * 1024))
        guard
            let (session, cookie) = try await environment.store.openSession(
                login: form["t"] ?? "",
                verifier: DecisionVerifier(settings: environment.loaded.configuration.approvals),
                seal: state.seal, now: now)
        else {
            guard await !state.failures.failed(client, now: now) else {
                return Page.message(.tooManyRequests, "Too many tries", "Too many logins that did not work from here.")
            }
            return Page.message(
                .notFound, "This login link is no longer valid",
                "It was used, it expired, or it is not one we made: ask for a new one (autonomy serve login).")
        }
        var response = Page.message(
            .ok, "Logged in",
            "Logged in as \(Page.escape(session.operatorName)) until \(Timestamp.format(session.expiresAt)).")
        response.headers[.setCookie] =
            "\(cookieName)=\(cookie); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(OperatorSession.lifetime.milliseconds / 1000)"
            + (Client.isSecure(request, context, environment, state)
                ? "; Secure" : "")
        return response
    }

    // MARK: - Decisions

    /// Approves or rejects, signed with the server's key; the statement's note names the operator
    /// and the session, so the ledger has both the key and the human.
    static func decide(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState,
        approve: Bool
    ) async throws -> Response {
        let session = try await session(request, environment, state)
        // A cookie alone authenticates: the browser's `Origin` must be this server's, and the body
        // JSON, which no other site's form can send.
        guard Client.sameOrigin(request, environment: environment, required: true) else {
            throw APIError(
                .forbidden, "forbidden", "this request did not come from this server's pages (Origin)")
        }
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            throw APIError(
                .unsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
        }
        guard let id = context.parameters.get("id", as: Int64.self) else {
            throw APIError(.notFound, "not_found", "no such approval request")
        }
        guard let signer = state.signer else {
            throw APIError(
                .serviceUnavailable, "no_signing_key", "this server has no signing key (serve.signing_key)")
        }
        var request = request
        let body = try await request.collectBody(upTo: 16 * 1024)
        var fields: [String: JSONValue] = [:]
        if body.readableBytes > 0 {
            guard case .object(let object)? = try? JSONValue.parse(Data(buffer: body)) else {
                throw APIError(.badRequest, "invalid_json", "the body must be a JSON object")
            }
            fields = object
        }
        let who = "operator \(session.operatorName) (web session \(session.id))"
        let decision: Decision
        if approve {
            let note = fields["note"]?.stringValue
            decision = .approve(note: [who, note].compactMap { $0 }.joined(separator: ": "))
        } else {
            guard let reason = fields["reason"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines),
                !reason.isEmpty
            else {
                throw APIError(.unprocessableContent, "invalid_field", "say why: a reason is required", field: "reason")
            }
            decision = .reject(reason: "\(who): \(reason)")
        }
        let configuration = environment.loaded.configuration
        let verifier = DecisionVerifier(settings: configuration.approvals)
        let now = environment.clock.now()
        do {
            let statement = try await environment.store.decisionStatement(
                approvalID: id, decision, signerKey: signer.publicKey, verifier: verifier,
                settings: configuration.approvals, now: now)
            // A client that names the payload it saw gets that one decided, or nothing.
            if let seen = fields["payload_sha256"]?.stringValue, seen != statement.payloadSHA256 {
                throw APIError(.conflict, "refused", "the request's payload is no longer the one you named")
            }
            let signed = SignedDecision(statement: statement.text, signature: try signer.sign(statement.text))
            let decided = try await environment.store.decide(signed, verifier: verifier, channel: .api, now: now)
            return try JSONResponse.make(
                .ok,
                encoding: [
                    "id": .int(decided.id), "task_id": .int(decided.taskID),
                    "state": .string(decided.state.rawValue), "decided_by": .string(decided.decidedBy ?? ""),
                    "operator": .string(session.operatorName),
                ] as JSONValue)
        } catch let error as ApprovalError {
            switch error {
            case .notFound: throw APIError(.notFound, "not_found", error.description)
            default: throw APIError(.conflict, "refused", error.description)
            }
        }
    }
}
