import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The one-click approval pages behind the links in alerts: `/r/{request}#t=TOKEN`.
///
/// The token is in the fragment, so it never reaches a log, a proxy or a `Referer`; the page
/// moves it into a POST body. A GET (or HEAD: link previews, mail scanners) only serves that page
/// and decides nothing; a POST with `action=show` shows the request; only a POST with
/// `action=approve|reject`, a matching CSRF token and this server's `Origin` decides, signed with
/// the server's own key, and only with a link this server issued under that key
/// (`ServerState.linkSeals`); any other link shows its request to a logged-in operator's buttons.
enum ApprovalPages {
    static func add(to router: Router<ServerContext>, _ environment: ServerEnvironment, _ state: ServerState) {
        router.get("r/{id}") { request, context in try await landing(request, context, environment, state) }
        router.head("r/{id}") { request, context in try await landing(request, context, environment, state) }
        router.post("r/{id}") { request, context in try await post(request, context, environment, state) }
    }

    // MARK: - GET: the page that moves the token into a POST

    /// Without a session: the page that moves the link's token into a POST. A logged-in operator
    /// sees the request itself (still deciding nothing): its buttons while it is pending, else
    /// what became of it.
    static func landing(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        let id = try requestID(context)
        if let session = try await OperatorRoutes.currentSession(request, environment, state) {
            return try await sessionView(id, session, request, context, environment, state)
        }
        let nonce = SecretToken.nonce()
        let body = """
            <h1>Approval request \(id)</h1>
            <form id="show" method="post" action="/r/\(id)">
            <input type="hidden" name="action" value="show">
            <p><label>The link's token <input name="t" id="t" autocomplete="off" required></label>
            <button type="submit">Show the request</button></p>
            </form>
            <p>Opening this page decides nothing.</p>
            <script nonce="\(nonce)">
            var m = location.hash.match(/[#&]t=([^&]+)/);
            if (m) {
              document.getElementById("t").value = decodeURIComponent(m[1]);
              history.replaceState(null, "", location.pathname);
              document.getElementById("show").submit();
            }
            </script>
            """
        return Page.make(.ok, title: "Approval request \(id)", body: body, nonce: nonce)
    }

    /// A logged-in operator's view of a request: the buttons while it is pending, else its fate.
    static func sessionView(
        _ id: Int64, _ session: OperatorSession, _ request: Request, _ context: ServerContext,
        _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        let store = environment.store
        let now = environment.clock.now()
        // Expire what is due first, so a request past its time is not shown as pending.
        guard let found = try await store.pendingApprovals(now: now, id: id).first else {
            guard let approval = try await store.approval(id: id), let task = try await store.task(id: approval.taskID)
            else {
                return Page.message(.notFound, "No such request", "There is no approval request \(id).")
            }
            return fate(approval, task)
        }
        return showPage(found, link: nil, request, context, environment, state, viewer: session.operatorName)
    }

    // MARK: - POST: show, approve or reject

    static func post(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        let id = try requestID(context)
        let client = Client.address(request, context, trusted: environment.loaded.configuration.serve.trustedProxies)
        var request = request
        let form = Form(try await request.collectBody(upTo: 64 * 1024))
        let token = form["t"] ?? ""
        let store = environment.store
        let now = environment.clock.now()
        // Without a link's token, a logged-in operator decides as themself.
        if token.isEmpty, let session = try await OperatorRoutes.currentSession(request, environment, state) {
            return try await decide(
                id, form, request, context, environment, state,
                by: .session(session))
        }
        guard let (pending, link) = try await pendingLink(token, id: id, store: store, state: state, now: now) else {
            // The holder of a spent link learns what became of its request; anyone else, nothing.
            for (seal, _) in state.linkSeals {
                if let decided = try await store.decidedApproval(token: token, seal: seal, approvalID: id, now: now),
                    let task = try await store.task(id: decided.taskID)
                {
                    // Showing it again is a look; a decision sent again is refused (409), changing nothing.
                    return fate(
                        decided, task, status: form["action"] == "show" ? .ok : .conflict,
                        heading: "This link is no longer valid")
                }
            }
            guard await !state.failures.failed(client, now: now) else {
                return Page.message(
                    .tooManyRequests, "Too many tries", "Too many links that did not work from here. Try again later.")
            }
            return invalidLink()
        }
        switch form["action"] {
        case "show":
            return showPage(pending, link: link, request, context, environment, state, viewer: nil)
        case "approve", "reject":
            guard link.decides else {
                if state.signer == nil { return noSigningKey() }
                return Page.message(
                    .forbidden, "This link cannot decide",
                    "It shows the request; log in and open it again to decide (see the request's page).")
            }
            return try await decide(id, form, request, context, environment, state, by: .link(link))
        default:
            return Page.message(.badRequest, "Unknown action", "Open the link from the alert again.")
        }
    }

    /// A link's token as this server found it: the digest it was issued under, and whether it
    /// decides on its own (see `ServerState.linkSeals`).
    struct Link {
        let token: String
        let seal: TokenSeal
        let decides: Bool
    }

    /// The pending request `id` a link's token belongs to, tried under each of the server's seals;
    /// nil for a used, expired, replaced or wrong link.
    static func pendingLink(
        _ token: String, id: Int64, store: any ServerStore, state: ServerState, now: Int64
    ) async throws -> (PendingApproval, Link)? {
        for (seal, decides) in state.linkSeals {
            do {
                let pending = try await store.pendingApproval(token: token, seal: seal, now: now)
                guard pending.approval.id == id else { continue }
                return (pending, Link(token: token, seal: seal, decides: decides))
            } catch ApprovalError.invalidToken {
                continue
            }
        }
        return nil
    }

    /// Who decides on a page: the holder of an alert's link, or a logged-in operator.
    enum Decider {
        case link(Link)
        case session(OperatorSession)
    }

    /// The request, its payload and its buttons, with a fresh CSRF token in a cookie. A link that
    /// cannot decide shows the request without buttons, and says how to decide.
    static func showPage(
        _ pending: PendingApproval, link: Link?, _ request: Request, _ context: ServerContext,
        _ environment: ServerEnvironment, _ state: ServerState, viewer: String?
    ) -> Response {
        let csrf = CSRF(request)
        let cannotDecide: CannotDecide? =
            if !pending.payloadIsIntact {
                .payloadAltered
            } else if state.signer == nil {
                .noSigningKey
            } else if viewer == nil && link?.decides != true {
                .linkWithoutKey
            } else {
                nil
            }
        var response = Page.make(
            .ok, title: "Approve \(pending.task.type)?",
            body: details(pending, token: link?.token, csrf: csrf.value, viewer: viewer, cannotDecide: cannotDecide),
            nonce: SecretToken.nonce())
        if let cookie = csrf.setCookie(request, context, environment, state) { response.headers[.setCookie] = cookie }
        return response
    }

    /// Why a page shows a request without its buttons.
    enum CannotDecide {
        /// `serve.signing_key` is not set.
        case noSigningKey
        /// The link was issued without the server's key (by the worker): it shows, never decides.
        case linkWithoutKey
        /// The payload does not hash to what the request was made for (`ApprovalError.payloadAltered`).
        case payloadAltered
    }

    static func noSigningKey() -> Response {
        Page.message(
            .serviceUnavailable, "Cannot decide here",
            "This server has no signing key (serve.signing_key): decide with `autonomy approve` instead.")
    }

    /// Approves or rejects from a page: same origin, the page's own CSRF token, signed with the
    /// server's key; the note names the human (the link's alert channel, or the operator).
    static func decide(
        _ id: Int64, _ form: Form, _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment,
        _ state: ServerState, by decider: Decider
    ) async throws -> Response {
        // A form another site posts, or one without the page's own CSRF token, decides nothing; a
        // session's cookie alone needs the browser's `Origin` too.
        let needsOrigin: Bool
        if case .session = decider { needsOrigin = true } else { needsOrigin = false }
        guard ["approve", "reject"].contains(form["action"]),
            Client.sameOrigin(request, environment: environment, required: needsOrigin),
            CSRF(request).matches(form["csrf"])
        else {
            return Page.message(
                .forbidden, "Refused", "This form did not come from this page: open the request again.")
        }
        guard let signer = state.signer else { return noSigningKey() }
        let store = environment.store
        let now = environment.clock.now()
        let who: String
        switch decider {
        case .link(let link):
            who =
                "one-click link"
                + ((try? await store.linkChannel(token: link.token, seal: link.seal)).flatMap { $0 }
                    .map { " from the \($0) alert" } ?? "")
        case .session(let session):
            who = "operator \(session.operatorName) (web session \(session.id))"
        }
        let decision: Decision
        if form["action"] == "approve" {
            decision = .approve(note: who)
        } else {
            let reason = (form["reason"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty else {
                return Page.message(.unprocessableContent, "A reason, please", "Say why you reject it, then try again.")
            }
            decision = .reject(reason: "\(who): \(reason)")
        }
        let configuration = environment.loaded.configuration
        let verifier = DecisionVerifier(settings: configuration.approvals)
        do {
            let statement = try await store.decisionStatement(
                approvalID: id, decision, signerKey: signer.publicKey, verifier: verifier,
                settings: configuration.approvals, now: now)
            // What the page showed is what is signed: a payload changed since (by whoever can
            // write the database) is not approved on the strength of the old one's look.
            guard form["sha256"] == statement.payloadSHA256 else {
                return Page.message(
                    .conflict, "The request changed",
                    "What waits now is not what this page showed: open the request again, and decide on what it shows.")
            }
            let signed = SignedDecision(statement: statement.text, signature: try signer.sign(statement.text))
            let decided: ApprovalRecord
            switch decider {
            case .link(let link):
                decided = try await store.decide(
                    token: link.token, seal: link.seal, signed, verifier: verifier, channel: .link, now: now)
            case .session:
                decided = try await store.decide(signed, verifier: verifier, channel: .page, now: now)
            }
            let verdict = decided.state == .approved ? "Approved" : "Rejected"
            let task = try await store.task(id: decided.taskID)
            return Page.message(
                .ok, verdict,
                "\(verdict): task \(decided.taskID) (\(Page.escape(task?.type ?? "?"))), payload \(decided.payloadSHA256.prefix(12))…"
                    + (decided.state == .approved ? " It runs at the worker's next turn." : ""))
        } catch ApprovalError.invalidToken {
            return invalidLink()
        } catch let error as ApprovalError {
            // A logged-in operator may be told why: the request was decided or expired meanwhile.
            if let approval = try await store.approval(id: id), approval.state != .pending,
                let task = try await store.task(id: approval.taskID)
            {
                return fate(approval, task, status: .conflict)
            }
            return Page.message(.conflict, "Not decided", Page.escape(error.description))
        } catch let error as TrustError {
            return Page.message(.forbidden, "Not signed", Page.escape(error.description))
        }
    }

    /// One page for a used, expired or wrong link, which does not say which.
    static func invalidLink() -> Response {
        Page.message(.notFound, "This link is no longer valid", "It was used, it expired, or it is not a link we made.")
    }

    /// What became of a request that is no longer pending: who decided, when, how and why.
    /// A spent link's page says so first (`heading`), then what was decided.
    static func fate(
        _ approval: ApprovalRecord, _ task: TaskRecord, status: HTTPResponse.Status = .ok, heading: String? = nil
    ) -> Response {
        var title: String
        var lines: [String] = []
        switch approval.state {
        case .approved, .rejected:
            title = approval.state == .approved ? "Already approved" : "Already rejected"
            lines.append(
                "\(approval.state == .approved ? "Approved" : "Rejected") by \(Page.escape(approval.decidedBy ?? "?"))"
                    + (approval.decidedAt.map { " at \(Timestamp.format($0))" } ?? "")
                    + (approval.channel.map { " (\(Page.escape($0)))" } ?? "") + ".")
            if let note = approval.decisionNote, !note.isEmpty { lines.append(Page.escape(note)) }
            if approval.state == .approved {
                lines.append(
                    approval.usedAt.map { "The task started at \(Timestamp.format($0))." }
                        ?? "The task has not started yet.")
            }
        case .expired:
            title = "Expired"
            lines.append("Nobody decided before \(Timestamp.format(approval.expiresAt)); the task did not run.")
        case .superseded:
            title = "Replaced"
            lines.append("The task's payload or attempt changed: a newer request replaced this one.")
        case .pending:
            title = "Pending"
            lines.append("Nobody has decided yet.")
        }
        if let heading {
            lines.insert("\(title): request \(approval.id).", at: 0)
            title = heading
        } else {
            title += ": request \(approval.id)"
        }
        let body = """
            <h1>\(title)</h1>
            <p>Task \(task.id), \(Page.escape(task.type)), now \(task.state.rawValue); payload SHA-256 <code>\(approval.payloadSHA256)</code>.</p>
            \(lines.map { "<p>\($0)</p>" }.joined(separator: "\n"))
            <p>Nothing was changed by opening this page.</p>
            """
        return Page.make(status, title: title, body: body, nonce: SecretToken.nonce())
    }

    /// What the operator approves: exactly what will run, and who says so.
    static func details(
        _ pending: PendingApproval, token: String?, csrf: String, viewer: String?, cannotDecide: CannotDecide? = nil
    ) -> String {
        let (approval, task) = (pending.approval, pending.task)
        let payload = (try? JSONValue.parse(task.payload))?.prettyText ?? task.payload
        // The hash of the bytes shown here, not the stored column: it is what the form sends back.
        let sha256 = pending.shownPayloadSHA256
        func hidden(_ action: String) -> String {
            """
            \(token.map { "<input type=\"hidden\" name=\"t\" value=\"\(Page.escape($0))\">" } ?? "")
            <input type="hidden" name="csrf" value="\(csrf)">
            <input type="hidden" name="sha256" value="\(sha256)">
            <input type="hidden" name="action" value="\(action)">
            """
        }
        let buttons = """
            <form method="post" action="/r/\(approval.id)">
            \(hidden("approve"))
            <button type="submit">Approve</button>
            </form>
            <form method="post" action="/r/\(approval.id)">
            \(hidden("reject"))
            <p><label>Why reject it <input name="reason" required></label> <button type="submit">Reject</button></p>
            </form>
            """
        return """
            <h1>Task \(task.id): \(Page.escape(task.type))</h1>
            \(viewer.map { "<p>Logged in as \(Page.escape($0)): you decide as yourself.</p>" } ?? "")
            <dl>
            <dt>Rated dangerous because</dt><dd>\(Page.escape(approval.reason))</dd>
            <dt>Source (producer-supplied)</dt><dd>\(Page.escape(task.source ?? "none"))</dd>
            <dt>Subject (producer-supplied)</dt><dd>\(Page.escape(task.subject ?? "none"))</dd>
            <dt>Runs</dt><dd>\(Timestamp.format(task.runAt)) at the earliest</dd>
            <dt>This request expires</dt><dd>\(Timestamp.format(approval.expiresAt))</dd>
            <dt>Payload SHA-256</dt><dd><code>\(sha256)</code></dd>
            </dl>
            <h2>Payload, whole</h2>
            <pre>\(Page.escape(payload))</pre>
            \(cannotDecide.map { refusal($0, approvalID: approval.id) } ?? buttons)
            """
    }

    /// In place of the buttons: why this page cannot decide, and how to.
    static func refusal(_ why: CannotDecide, approvalID: Int64) -> String {
        switch why {
        case .noSigningKey:
            return """
                <p>This server has no signing key (<code>serve.signing_key</code>): it shows requests and cannot \
                decide them. Decide with <code>autonomy approve \(approvalID)</code>.</p>
                """
        case .payloadAltered:
            return """
                <p class="bad"><strong>Do not act on this request.</strong> Its payload above does not match the \
                SHA-256 it was requested for: someone changed the queue's database outside autonomy. It cannot be \
                decided. Run <code>autonomy doctor</code> and <code>autonomy ledger verify</code>, and find out who \
                can write the database.</p>
                """
        case .linkWithoutKey:
            return """
                <p>This link was made without the server's key (by the worker, when the server did not send \
                the alert itself), so it shows the request and cannot decide it: anyone who can write the \
                queue's database could have made it. Log in (<code>autonomy serve login --operator NAME</code>, \
                run as the server's user) and open this page again to decide, or decide with \
                <code>autonomy approve \(approvalID)</code>.</p>
                """
        }
    }

    static func requestID(_ context: ServerContext) throws -> Int64 {
        guard let id = context.parameters.get("id", as: Int64.self), id > 0 else {
            throw APIError(.notFound, "not_found", "no such request")
        }
        return id
    }
}

/// Failed tries (bad links, bad logins) per client: past `limit` in `window`, a failure is
/// answered 429 until the oldest falls out of it. Only failures count, and only after the token
/// was checked: a valid link or login always works, so nobody can lock an operator out by failing
/// from the same address (a proxy not in `serve.trusted_proxies`, say). An IPv6 client counts by
/// its /64, which it cannot rotate out of; at most `maxClients` are kept, the stalest dropped.
actor FailureLimiter {
    let limit: Int
    let window: Int64
    let maxClients: Int
    private var seen: [String: [Int64]] = [:]

    init(limit: Int = 10, window: Interval = .minutes(10), maxClients: Int = 10_000) {
        (self.limit, self.window, self.maxClients) = (limit, window.milliseconds, maxClients)
    }

    /// Records a failure; true when the client is now over its limit (answer 429).
    func failed(_ client: String, now: Int64) -> Bool {
        let key = Self.key(client)
        var times = (seen[key] ?? []).filter { $0 > now - window }
        times.append(now)
        if times.count > limit + 1 { times.removeFirst(times.count - limit - 1) }
        if seen[key] == nil, seen.count >= maxClients { evict(now: now) }
        seen[key] = times
        return times.count > limit
    }

    var clients: Int { seen.count }

    /// Drops those with no failure in the window, then, if still full, the stalest tenth.
    private func evict(now: Int64) {
        seen = seen.filter { $0.value.contains { $0 > now - window } }
        guard seen.count >= maxClients else { return }
        let stalest = seen.sorted { ($0.value.last ?? 0) < ($1.value.last ?? 0) }.prefix(max(1, maxClients / 10))
        for (key, _) in stalest { seen[key] = nil }
    }

    /// An IPv4 address as it is; an IPv6 one as its /64.
    static func key(_ address: String) -> String {
        var bytes = in6_addr()
        guard address.contains(":"), inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        return withUnsafeBytes(of: &bytes) { raw in
            raw.prefix(8).map { String(format: "%02x", $0) }.joined() + "::/64"
        }
    }
}

/// Who is asking, and from where: `X-Forwarded-*` believed only from `serve.trusted_proxies`.
enum Client {
    static let forwardedFor = HTTPField.Name.xForwardedFor
    static let forwardedProto = HTTPField.Name.xForwardedProto

    static func peer(_ context: ServerContext) -> String { context.remoteAddress?.ipAddress ?? "unknown" }

    static func address(_ request: Request, _ context: ServerContext, trusted: [String]) -> String {
        let peer = peer(context)
        guard trusted.contains(peer), let forwarded = request.headers[forwardedFor] else { return peer }
        return forwarded.split(separator: ",").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? peer
    }

    /// The browser reached us over TLS: ours (`--tls-cert`), the public address's
    /// (`approvals.base_url` is https), or a trusted proxy's that says so.
    static func isSecure(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) -> Bool {
        state.tls != nil || request.uri.scheme?.rawValue == "https"
            || environment.loaded.configuration.approvals.baseURL?.lowercased().hasPrefix("https://") == true
            || (environment.loaded.configuration.serve.trustedProxies.contains(peer(context))
                && request.headers[forwardedProto]?.lowercased() == "https")
    }

    /// The form came from this server's own pages. A browser says so in `Sec-Fetch-Site`
    /// (`same-origin`), whatever the page's referrer policy; our pages' `no-referrer` makes it send
    /// `Origin: null` on their own forms, so `Origin` alone cannot tell. Without that header (an
    /// older browser, a script), `Origin` must be the configured public address
    /// (`approvals.base_url`) or this request's own host. Where a cookie alone authenticates (an
    /// operator's session), one of the two is `required`; a link's POST carries its token, and
    /// without either it is judged by the token and the CSRF pair.
    static func sameOrigin(_ request: Request, environment: ServerEnvironment, required: Bool = false) -> Bool {
        if let site = request.headers[.secFetchSite] { return site == "same-origin" }
        guard let origin = request.headers[.origin] else { return !required }
        if let base = environment.loaded.configuration.approvals.baseURL, let url = URL(string: base),
            let scheme = url.scheme, let host = url.host
        {
            let expected = "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
            return origin == expected
        }
        guard let host = request.head.authority else { return false }
        return origin == "http://\(host)" || origin == "https://\(host)"
    }
}

/// An `application/x-www-form-urlencoded` body.
struct Form {
    private var fields: [String: String] = [:]

    init(_ body: ByteBuffer) {
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            let name = decode(parts[0])
            if fields[name] == nil { fields[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
    }

    subscript(name: String) -> String? { fields[name] }
}

/// Server-rendered pages: escaped text, no script but a nonce'd one, headers that keep them out
/// of frames, caches and `Referer`s.
enum Page {
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func make(_ status: HTTPResponse.Status, title: String, body: String, nonce: String) -> Response {
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="color-scheme" content="light dark">
            <title>\(escape(title)) · autonomy</title>
            </head><body>
            \(body)
            </body></html>
            """
        var headers = securityHeaders(nonce: nonce)
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(
            status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: Visible.page(html))))
    }

    static func message(_ status: HTTPResponse.Status, _ title: String, _ text: String) -> Response {
        make(status, title: title, body: "<h1>\(escape(title))</h1>\n<p>\(text)</p>", nonce: SecretToken.nonce())
    }

    static func securityHeaders(nonce: String) -> HTTPFields {
        [
            .contentSecurityPolicy:
                "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'nonce-\(nonce)'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            .referrerPolicy: "no-referrer",
            .xContentTypeOptions: "nosniff",
            .xFrameOptions: "DENY",
            .cacheControl: "no-store",
        ]
    }
}
