import AutonomyCore
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import AutonomyServer

/// The dashboard's pages, through the router: only an operator's session sees them; every page
/// renders, escapes what producers wrote, and its forms carry the session's CSRF token.
extension OperatorAPITests {
    static let pages = [
        "/", "/tasks", "/tasks?state=awaiting_approval&type=send_email", "/tasks/1", "/map", "/map?since=30d",
        "/audits", "/budget", "/ledger", "/ledger?type=send_email&since=24h",
        "/sources",
        "/subjects", "/subjects?search=acme", "/subject?name=Acme%20%3Cb%3E",
    ]

    /// Logs in, opens the overview; returns the session, the page and its CSRF token.
    func overviewWithCSRF(_ client: some TestClientProtocol) async throws -> (String, TestResponse, String) {
        let session = try await sessionCookie(client)
        let page = try await client.execute(uri: "/", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
        return (session, page, try #require(csrf(page)))
    }

    func csrf(_ response: TestResponse) -> String? {
        response.headers[.setCookie]?.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(
            String.init)
    }

    @Test func withoutASessionEveryPageSaysHowToLogInAndShowsNothing() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            for page in Self.pages {
                let answer = try await client.execute(uri: page, method: .get, headers: [:])
                let html = String(buffer: answer.body)
                #expect(answer.status == .unauthorized && html.contains("autonomy serve login"), "\(page)")
                #expect(!html.contains("Logged in as"), "\(page)")
                #expect(!html.contains("a@b.c") && !html.contains("sales-bot"), "\(page)")
            }
            // A producer's token is no session either.
            let producer = try await client.execute(uri: "/", method: .get, headers: headers(fixture.salesToken))
            #expect(producer.status == .unauthorized)
        }
    }

    @Test func everyPageRendersForAnOperatorAndEscapesWhatProducersWrote() async throws {
        defer { fixture.remove() }
        let store = fixture.environment.sqlite
        _ = try store.enqueue(
            EnqueueRequest(
                type: "report", payload: #"{"note": "<img src=x onerror=alert(1)>"}"#, source: "sales-bot",
                subject: "Acme <b>"), configuration: fixture.environment.loaded.configuration, now: fixture.clock.now())
        try await app().test(.router) { client in
            let session = try await sessionCookie(client)
            for page in Self.pages {
                let answer = try await client.execute(
                    uri: page, method: .get, headers: [.cookie: "autonomy_session=\(session)"])
                let html = String(buffer: answer.body)
                #expect(answer.status == .ok, "\(page): \(answer.status)")
                #expect(!html.contains("<img src=x") && !html.contains("Acme <b>"), "\(page)")
                #expect(html.contains("Logged in as elad"), "\(page)")
                let policy = answer.headers[.contentSecurityPolicy] ?? ""
                #expect(policy.contains("frame-ancestors 'none'") && policy.contains("connect-src 'self'"))
                // Every script and style carries the page's nonce.
                let nonce = try #require(policy.split(separator: "'").first { $0.hasPrefix("nonce-") }?.dropFirst(6))
                #expect(
                    html.components(separatedBy: "<script").count - 1 == html.components(
                        separatedBy: "<script nonce=\"\(nonce)\""
                    ).count - 1)
                #expect(
                    html.components(separatedBy: "<style").count - 1 == html.components(
                        separatedBy: "<style nonce=\"\(nonce)\""
                    ).count - 1)
            }
            let overview = String(
                buffer: try await client.execute(
                    uri: "/", method: .get, headers: [.cookie: "autonomy_session=\(session)"]
                )
                .body)
            #expect(overview.contains("Waiting for you: 1") && overview.contains("a@b.c"))
            #expect(overview.contains("<svg") && overview.contains("setInterval"))
            let subject = String(
                buffer: try await client.execute(
                    uri: "/subject?name=Acme%20%3Cb%3E", method: .get, headers: [.cookie: "autonomy_session=\(session)"]
                ).body)
            #expect(subject.contains("Acme &lt;b&gt;") && subject.contains("/tasks/2"))
            // The map shows the overrides in effect, as the worker runs them.
            _ = try store.setOverride(
                .pause, type: "report", value: nil, reason: "by hand", proposal: 1, lasting: nil,
                now: fixture.clock.now())
            let map = String(
                buffer: try await client.execute(
                    uri: "/map", method: .get, headers: [.cookie: "autonomy_session=\(session)"]
                ).body)
            #expect(map.contains("<td>pause</td>"), "\(map)")
            let missing = try await client.execute(
                uri: "/tasks/999", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(missing.status == .notFound)
        }
    }

    /// The worker user can write any number into a time column; every page and the API still
    /// answer (the red team's `requested_at = INT64_MIN` trapped `serve` on the next overview).
    @Test func extremeTimesInRowsNeverTakeTheServerDown() async throws {
        defer { fixture.remove() }
        try await DatabaseQueue(path: fixture.environment.sqlite.path).write { db in
            try db.execute(
                sql: "UPDATE approvals SET requested_at = ?, expires_at = ?", arguments: [Int64.min, Int64.max])
            try db.execute(
                sql: "UPDATE tasks SET created_at = ?, run_at = ?, updated_at = ?, started_at = ?",
                arguments: [Int64.min, Int64.min, Int64.min, Int64.max])
        }
        try await app().test(.router) { client in
            let session = try await sessionCookie(client)
            for page in Self.pages + ["/api/v1/approvals", "/api/v1/status"] {
                let answer = try await client.execute(
                    uri: page, method: .get, headers: [.cookie: "autonomy_session=\(session)"])
                // (No task here has the subject that page asks for.)
                #expect(answer.status == (page.hasPrefix("/subject?") ? .notFound : .ok), "\(page): \(answer.status)")
            }
        }
    }

    @Test func theOverviewsButtonsDecideAsTheOperatorAndItThenSaysNothingWaits() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let (session, page, token) = try await overviewWithCSRF(client)
            #expect(String(buffer: page.body).contains(#"name="csrf" value="\#(token)""#))
            // The cookie is kept while it lasts: a page that refreshed itself keeps working forms.
            let again = try await client.execute(
                uri: "/", method: .get, headers: [.cookie: "autonomy_session=\(session); autonomy_csrf=\(token)"])
            #expect(again.headers[.setCookie] == nil && String(buffer: again.body).contains(token))
            let approved = try await client.execute(
                uri: "/r/\(approval)", method: .post,
                headers: [
                    .contentType: "application/x-www-form-urlencoded", .origin: "http://localhost",
                    .cookie: "autonomy_session=\(session); autonomy_csrf=\(token)",
                ], body: ByteBuffer(string: "action=approve&csrf=\(token)&sha256=\(shown)"))
            #expect(approved.status == .ok)
            let after = try await client.execute(
                uri: "/", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(String(buffer: after.body).contains("Nothing needs you"))
        }
        #expect(try fixture.environment.sqlite.approval(id: approval)?.channel == "page")
    }

    @Test func theLedgerPagesBackwardsAndVerifiesFromItsOwnPageOnly() async throws {
        defer { fixture.remove() }
        for n in 0..<60 {
            _ = try fixture.environment.sqlite.enqueue(
                EnqueueRequest(type: "report", payload: #"{"n": \#(n)}"#, source: "cron"),
                configuration: fixture.environment.loaded.configuration, now: fixture.clock.now())
        }
        try await app().test(.router) { client in
            let session = try await sessionCookie(client)
            let first = try await client.execute(
                uri: "/ledger?event=enqueued", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            let html = String(buffer: first.body)
            #expect(html.components(separatedBy: "<td>enqueued</td>").count - 1 == 50)
            let next = try #require(html.range(of: #"href="/ledger?before="#).map { html[$0.lowerBound...] })
            let link = String(next.dropFirst(6).prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
            let second = try await client.execute(
                uri: link, method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(String(buffer: second.body).components(separatedBy: "<td>enqueued</td>").count - 1 == 11)
            let bad = try await client.execute(
                uri: "/ledger?since=soon", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(String(buffer: bad.body).contains("Since is a duration"))

            let token = try #require(csrf(first))
            func verify(origin: String?, csrf: String) async throws -> TestResponse {
                var fields: HTTPFields = [
                    .contentType: "application/x-www-form-urlencoded",
                    .cookie: "autonomy_session=\(session); autonomy_csrf=\(token)",
                ]
                if let origin { fields[.origin] = origin }
                return try await client.execute(
                    uri: "/ledger/verify", method: .post, headers: fields, body: ByteBuffer(string: "csrf=\(csrf)"))
            }
            #expect(try await verify(origin: "https://evil.example", csrf: token).status == .forbidden)
            #expect(try await verify(origin: nil, csrf: token).status == .forbidden)
            #expect(try await verify(origin: "http://localhost", csrf: "wrong").status == .forbidden)
            let verified = try await verify(origin: "http://localhost", csrf: token)
            #expect(verified.status == .ok && String(buffer: verified.body).contains("intact"))
        }
    }

    /// A browser says where a form came from in `Sec-Fetch-Site`, even when the page's
    /// `no-referrer` makes its `Origin` "null": same-origin decides, same-site or cross-site does not.
    @Test func secFetchSiteTellsOurOwnFormsFromOthers() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let (session, _, token) = try await overviewWithCSRF(client)
            func approve(site: String, origin: String) async throws -> HTTPResponse.Status {
                try await client.execute(
                    uri: "/r/\(approval)", method: .post,
                    headers: [
                        .contentType: "application/x-www-form-urlencoded", .origin: origin,
                        HTTPField.Name("Sec-Fetch-Site")!: site,
                        .cookie: "autonomy_session=\(session); autonomy_csrf=\(token)",
                    ], body: ByteBuffer(string: "action=approve&csrf=\(token)&sha256=\(shown)")
                ).status
            }
            #expect(try await approve(site: "same-site", origin: "http://localhost") == .forbidden)
            #expect(try await approve(site: "cross-site", origin: "null") == .forbidden)
            #expect(try await fixture.environment.sqlite.task(id: 1)?.state == .awaitingApproval)
            #expect(try await approve(site: "same-origin", origin: "null") == .ok)
        }
        #expect(try fixture.environment.sqlite.task(id: 1)?.state == .queued)
    }

    /// A payload longer than the overview shows gets no buttons there: it is decided on its own
    /// page, where it is shown whole.
    @Test func aLongPayloadIsDecidedOnlyWhereItIsShownWhole() async throws {
        defer { fixture.remove() }
        let long = String(repeating: "harmless words ", count: 60) + "AND THE DANGEROUS PART"
        _ = try fixture.environment.sqlite.enqueue(
            EnqueueRequest(type: "send_email", payload: #"{"body": "\#(long)"}"#, source: "cron"),
            configuration: fixture.environment.loaded.configuration, now: fixture.clock.now())
        try await app().test(.router) { client in
            let (session, page, _) = try await overviewWithCSRF(client)
            let html = String(buffer: page.body)
            // Request 1 (short) has its buttons; request 2 (long) only a link to its page.
            #expect(html.contains(#"<form method="post" action="/r/1">"#))
            #expect(!html.contains(#"<form method="post" action="/r/2">"#) && html.contains("open it to read it whole"))
            #expect(!html.contains("THE DANGEROUS PART"))
            let whole = try await client.execute(
                uri: "/r/2", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(
                String(buffer: whole.body).contains("THE DANGEROUS PART")
                    && String(buffer: whole.body).contains("<button"))
            let bogus = try await client.execute(
                uri: "/tasks?state=bogus", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(String(buffer: bogus.body).contains("No state is called that"))
        }
        // A subject's page lists the most recent tasks and counts them all.
        for _ in 0..<3 {
            _ = try fixture.environment.sqlite.enqueue(
                EnqueueRequest(type: "report", source: "cron", subject: "Initech"),
                configuration: fixture.environment.loaded.configuration, now: fixture.clock.now())
            fixture.clock.advance(by: .seconds(1))
        }
        let history = try #require(try fixture.environment.sqlite.subject("Initech", limit: 2))
        #expect(history.total == 3 && history.tasks.map(\.id) == [4, 5])
    }

    @Test func everyTemplateCompilesAndRenders() {
        for name in Templates.sources.keys {
            #expect(Templates.library.getTemplate(named: name) != nil, "\(name) did not compile")
        }
        #expect(Templates.render("login", [String: Any]()).contains("autonomy serve login"))
    }
}
