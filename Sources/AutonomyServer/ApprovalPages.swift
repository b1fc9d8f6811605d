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
/// the server's own key.
enum ApprovalPages {
    static func add(to router: Router<ServerContext>, _ environment: ServerEnvironment, _ state: ServerState) {
        router.get("r/{id}") { request, context in try landing(request, context) }
        router.head("r/{id}") { request, context in try landing(request, context) }
        router.post("r/{id}") { request, context in try await post(request, context, environment, state) }
    }

    // MARK: - GET: the page that moves the token into a POST

    static func landing(_ request: Request, _ context: ServerContext) throws -> Response {
        let id = try requestID(context)
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

    // MARK: - POST: show, approve or reject

    static func post(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        let id = try requestID(context)
        let client = Client.address(request, context, trusted: environment.loaded.configuration.serve.trustedProxies)
        guard await state.failures.allows(client, now: environment.clock.now()) else {
            return Page.message(
                .tooManyRequests, "Too many tries", "Too many links that did not work from here. Try again later.")
        }
        var request = request
        let form = Form(try await request.collectBody(upTo: 64 * 1024))
        let token = form["t"] ?? ""
        let store = environment.store
        let now = environment.clock.now()
        let pending: PendingApproval
        do {
            pending = try store.pendingApproval(token: token, now: now)
            guard pending.approval.id == id else { throw ApprovalError.invalidToken }
        } catch ApprovalError.invalidToken {
            await state.failures.failed(client, now: now)
            return invalidLink()
        }
        switch form["action"] {
        case "show":
            let csrf = SecretToken.make()
            var response = Page.make(
                .ok, title: "Approve \(pending.task.type)?", body: details(pending, token: token, csrf: csrf),
                nonce: SecretToken.nonce())
            response.headers[.setCookie] =
                "autonomy_csrf=\(csrf); Path=/r/; HttpOnly; SameSite=Strict; Max-Age=3600"
                + (Client.isSecure(request, context, trusted: environment.loaded.configuration.serve.trustedProxies)
                    ? "; Secure" : "")
            return response
        case "approve", "reject":
            // A form another site posts, or one without the page's own CSRF token, decides nothing.
            guard Client.sameOrigin(request, environment: environment),
                let csrf = form["csrf"], !csrf.isEmpty, request.cookies["autonomy_csrf"]?.value == csrf
            else {
                return Page.message(
                    .forbidden, "Refused", "This form did not come from this page: open the link from the alert again.")
            }
            guard let signer = state.signer else {
                return Page.message(
                    .serviceUnavailable, "Cannot decide here",
                    "This server has no signing key (serve.signing_key): decide with `autonomy approve` instead.")
            }
            let decision: Decision
            if form["action"] == "approve" {
                decision = .approve(note: "one-click link")
            } else {
                let reason = (form["reason"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                guard !reason.isEmpty else {
                    return Page.message(
                        .unprocessableContent, "A reason, please", "Say why you reject it, then try again.")
                }
                decision = .reject(reason: reason)
            }
            let configuration = environment.loaded.configuration
            let verifier = DecisionVerifier(settings: configuration.approvals)
            do {
                let statement = try store.decisionStatement(
                    approvalID: id, decision, signerKey: signer.publicKey, verifier: verifier,
                    settings: configuration.approvals, now: now)
                let signed = SignedDecision(statement: statement.text, signature: try signer.sign(statement.text))
                let decided = try store.decide(token: token, signed, verifier: verifier, channel: .link, now: now)
                let verdict = decided.state == .approved ? "Approved" : "Rejected"
                return Page.message(
                    .ok, verdict,
                    "\(verdict): task \(pending.task.id) (\(Page.escape(pending.task.type))), payload \(pending.approval.payloadSHA256.prefix(12))…"
                        + (decided.state == .approved ? " It runs at the worker's next turn." : ""))
            } catch ApprovalError.invalidToken {
                return invalidLink()
            } catch let error as TrustError {
                return Page.message(.forbidden, "Not signed", Page.escape(error.description))
            }
        default:
            return Page.message(.badRequest, "Unknown action", "Open the link from the alert again.")
        }
    }

    /// One page for a used, expired or wrong link, which does not say which.
    static func invalidLink() -> Response {
        Page.message(.notFound, "This link is no longer valid", "It was used, it expired, or it is not a link we made.")
    }

    /// What the operator approves: exactly what will run, and who says so.
    static func details(_ pending: PendingApproval, token: String, csrf: String) -> String {
        let (approval, task) = (pending.approval, pending.task)
        let payload = (try? JSONValue.parse(task.payload))?.prettyText ?? task.payload
        func hidden(_ action: String) -> String {
            """
            <input type="hidden" name="t" value="\(Page.escape(token))">
            <input type="hidden" name="csrf" value="\(csrf)">
            <input type="hidden" name="action" value="\(action)">
            """
        }
        return """
            <h1>Task \(task.id): \(Page.escape(task.type))</h1>
            <dl>
            <dt>Rated dangerous because</dt><dd>\(Page.escape(approval.reason))</dd>
            <dt>Source (producer-supplied)</dt><dd>\(Page.escape(task.source ?? "none"))</dd>
            <dt>Subject (producer-supplied)</dt><dd>\(Page.escape(task.subject ?? "none"))</dd>
            <dt>Runs</dt><dd>\(Timestamp.format(task.runAt)) at the earliest</dd>
            <dt>This request expires</dt><dd>\(Timestamp.format(approval.expiresAt))</dd>
            <dt>Payload SHA-256</dt><dd><code>\(approval.payloadSHA256)</code></dd>
            </dl>
            <h2>Payload, whole</h2>
            <pre>\(Page.escape(payload))</pre>
            <form method="post" action="/r/\(approval.id)">
            \(hidden("approve"))
            <button type="submit">Approve</button>
            </form>
            <form method="post" action="/r/\(approval.id)">
            \(hidden("reject"))
            <p><label>Why reject it <input name="reason" required></label> <button type="submit">Reject</button></p>
            </form>
            """
    }

    static func requestID(_ context: ServerContext) throws -> Int64 {
        guard let id = context.parameters.get("id", as: Int64.self), id > 0 else {
            throw APIError(.notFound, "not_found", "no such request")
        }
        return id
    }
}

/// What the server keeps between requests: its signing key, and the failed tries per client.
public final class ServerState: Sendable {
    let signer: DecisionSigner?
    let failures = FailureLimiter()

    public init(signer: DecisionSigner?) { self.signer = signer }
}

/// At most `limit` failed tries (bad links, bad logins) per client in `window`; then refused until
/// the oldest falls out of it.
actor FailureLimiter {
    let limit: Int
    let window: Int64
    private var seen: [String: [Int64]] = [:]

    init(limit: Int = 10, window: Interval = .minutes(10)) { (self.limit, self.window) = (limit, window.milliseconds) }

    func allows(_ client: String, now: Int64) -> Bool {
        seen[client] = seen[client]?.filter { $0 > now - window }
        if seen[client]?.isEmpty == true { seen[client] = nil }
        return (seen[client]?.count ?? 0) < limit
    }

    func failed(_ client: String, now: Int64) {
        seen[client, default: []].append(now)
        if seen.count > 10_000 { seen = seen.filter { $0.value.contains { $0 > now - window } } }
    }
}

/// Who is asking, and from where: `X-Forwarded-*` believed only from `serve.trusted_proxies`.
enum Client {
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let forwardedProto = HTTPField.Name("X-Forwarded-Proto")!

    static func peer(_ context: ServerContext) -> String { context.remoteAddress?.ipAddress ?? "unknown" }

    static func address(_ request: Request, _ context: ServerContext, trusted: [String]) -> String {
        let peer = peer(context)
        guard trusted.contains(peer), let forwarded = request.headers[forwardedFor] else { return peer }
        return forwarded.split(separator: ",").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? peer
    }

    static func isSecure(_ request: Request, _ context: ServerContext, trusted: [String]) -> Bool {
        request.uri.scheme?.rawValue == "https"
            || (trusted.contains(peer(context)) && request.headers[forwardedProto]?.lowercased() == "https")
    }

    /// The form came from this server's own pages: its `Origin` is the configured public address
    /// (`approvals.base_url`), or this request's own host. A browser sends `Origin` with every
    /// POST; a request without one is judged by its CSRF token alone.
    static func sameOrigin(_ request: Request, environment: ServerEnvironment) -> Bool {
        guard let origin = request.headers[.origin] else { return true }
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
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static func message(_ status: HTTPResponse.Status, _ title: String, _ text: String) -> Response {
        make(status, title: title, body: "<h1>\(escape(title))</h1>\n<p>\(text)</p>", nonce: SecretToken.nonce())
    }

    static func securityHeaders(nonce: String) -> HTTPFields {
        [
            .contentSecurityPolicy:
                "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'nonce-\(nonce)'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("X-Frame-Options")!: "DENY",
            .cacheControl: "no-store",
        ]
    }
}
