import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import AutonomyServer

#if canImport(Glibc)
    import Glibc
#endif

/// A logged-in operator reaches a request's page from anywhere (the dashboard links there): it
/// shows the request without a link's token, decides as that operator, and once decided shows the
/// decision.
extension OperatorAPITests {
    func sessionCookie(_ client: some TestClientProtocol) async throws -> String {
        let (_, token) = try fixture.environment.sqlite.issueLogin(
            operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
        let opened = try await login(client, token)
        return try #require(
            opened.headers[.setCookie]?.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(
                String.init))
    }

    @Test func aLoggedInOperatorSeesTheRequestsPageDecidesAsThemselfThenSeesTheDecision() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            // Without a session, the page is only the one that moves a link's token into a POST.
            let anonymous = try await client.execute(uri: "/r/\(approval)", method: .get, headers: [:])
            #expect(!String(buffer: anonymous.body).contains("a@b.c"))
            // A POST without a token or a session decides nothing.
            let bare = try await client.execute(
                uri: "/r/\(approval)", method: .post,
                headers: [.contentType: "application/x-www-form-urlencoded", .origin: "http://localhost"],
                body: ByteBuffer(string: "action=approve"))
            #expect(bare.status == .notFound)

            let session = try await sessionCookie(client)
            for method in [HTTPRequest.Method.get, .head] {
                let viewed = try await client.execute(
                    uri: "/r/\(approval)", method: method, headers: [.cookie: "autonomy_session=\(session)"])
                #expect(viewed.status == .ok)
            }
            let viewed = try await client.execute(
                uri: "/r/\(approval)", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            let page = String(buffer: viewed.body)
            #expect(page.contains("a@b.c") && page.contains("Logged in as elad") && page.contains("<button"))
            #expect(!page.contains(#"name="t""#))
            #expect(try fixture.environment.sqlite.task(id: 1)?.state == .awaitingApproval)
            let csrf = try #require(
                viewed.headers[.setCookie]?.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(
                    String.init))

            func post(_ body: String, origin: String = "http://localhost", withCSRF: Bool = true) async throws
                -> TestResponse
            {
                try await client.execute(
                    uri: "/r/\(approval)", method: .post,
                    headers: [
                        .contentType: "application/x-www-form-urlencoded", .origin: origin,
                        .cookie: "autonomy_session=\(session)" + (withCSRF ? "; autonomy_csrf=\(csrf)" : ""),
                    ],
                    body: ByteBuffer(string: body))
            }
            // Another site's form, or one without the page's CSRF token, decides nothing.
            #expect(
                try await post("action=approve&csrf=\(csrf)&sha256=\(shown)", origin: "https://evil.example").status
                    == .forbidden)
            #expect(try await post("action=approve&csrf=\(csrf)&sha256=\(shown)", withCSRF: false).status == .forbidden)
            #expect(try await fixture.environment.sqlite.task(id: 1)?.state == .awaitingApproval)

            let approved = try await post("action=approve&csrf=\(csrf)&sha256=\(shown)")
            #expect(approved.status == .ok && String(buffer: approved.body).contains("Approved"))
            // Decided, the page shows the decision, without buttons; a second decision is refused.
            let after = try await client.execute(
                uri: "/r/\(approval)", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            let shown = String(buffer: after.body)
            #expect(shown.contains("Already approved") && shown.contains("operator elad") && !shown.contains("<button"))
            let again = try await post("action=reject&csrf=\(csrf)&reason=no&sha256=\(shown)")
            #expect(again.status == .conflict && String(buffer: again.body).contains("Already approved"))
        }
        let record = try #require(try fixture.environment.sqlite.approval(id: approval))
        #expect(record.state == .approved && record.channel == "page" && record.decidedBy == "autonomy-web")
        #expect(record.decisionNote == "operator elad (web session 1)")
        #expect(try fixture.environment.sqlite.task(id: 1)?.state == .queued)
    }

    @Test func anOperatorSeesWhatBecameOfAnExpiredRequest() async throws {
        defer { fixture.remove() }
        // Past the request's expiry (a day by default), then logged in.
        fixture.clock.advance(by: .days(2))
        try await app().test(.router) { client in
            let session = try await sessionCookie(client)
            let viewed = try await client.execute(
                uri: "/r/\(approval)", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            let page = String(buffer: viewed.body)
            #expect(viewed.status == .ok && page.contains("Expired") && !page.contains("<button"), "\(page)")
            let missing = try await client.execute(
                uri: "/r/999", method: .get, headers: [.cookie: "autonomy_session=\(session)"])
            #expect(missing.status == .notFound && String(buffer: missing.body).contains("No such request"))
        }
        #expect(try fixture.environment.sqlite.task(id: 1)?.state == .expired)
    }
}

/// Every request ends within `serve.request_timeout`: a body that never ends is answered 408,
/// in the one JSON shape, and its connection closed. The deadline is the test's own (it fires at
/// once), so nothing waits for the clock: the handler cannot finish before it, as its body never
/// comes.
@Suite struct RequestDeadlineTests {
    /// Sends `text` on a fresh connection and reads until the server closes it.
    static func exchange(port: Int, _ text: String) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(descriptor) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                // A safety net only: the answer comes at once or the test fails.
                var limit = timeval(tv_sec: 20, tv_usec: 0)
                setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                guard connected == 0 else {
                    return continuation.resume(throwing: APITestFailure("connect: \(errno)"))
                }
                _ = text.withCString { send(descriptor, $0, strlen($0), 0) }
                var received = [UInt8]()
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = recv(descriptor, &buffer, buffer.count, 0)
                    if count <= 0 { break }
                    received += buffer[0..<count]
                }
                continuation.resume(returning: String(decoding: received, as: UTF8.self))
            }
        }
    }

    @Test func aBodyThatNeverEndsIs408AndTheConnectionCloses() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        let app = Application(
            router: AutonomyAPI.router(fixture.environment, state: ServerState(signer: nil, deadline: {})),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            // Promises 100 bytes, sends 10, and never the rest.
            let answer = try await Self.exchange(
                port: port,
                "POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(fixture.salesToken)\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\": ")
            #expect(answer.hasPrefix("HTTP/1.1 408"), "\(answer)")
            #expect(answer.contains(#""code":"timeout""#) && answer.lowercased().contains("connection: close"))
            #expect(try fixture.environment.sqlite.status(now: fixture.clock.now()).counts.values.reduce(0, +) == 0)
        }
    }
}

/// Serving HTTPS itself (`--tls-cert`), the server marks its cookies `Secure`; over plain HTTP
/// (behind no proxy that says otherwise) it does not, or the browser would drop them.
extension ApprovalPageTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs openssl"))
    func withItsOwnTLSItsCookiesAreSecure() async throws {
        defer { fixture.remove() }
        let (certificate, key) = (fixture.folder + "/cert.pem", fixture.folder + "/key.pem")
        let made = Tool.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=localhost", "-keyout", key, "-out", certificate,
            ], timeout: .seconds(120))
        #expect(made.passed, "\(made.detail)")
        #expect(throws: ServerSetupError.self) { try AutonomyServer.tls(certificate: key, key: key) }
        let tls = try AutonomyServer.tls(certificate: certificate, key: key)
        for secure in [false, true] {
            let app = Application(
                router: AutonomyAPI.router(
                    fixture.environment, state: ServerState(signer: .native(serverKey), tls: secure ? tls : nil)))
            try await app.test(.router) { client in
                let shown = try await client.execute(
                    uri: "/r/\(approval)", method: .post, headers: form([]),
                    body: encoded([("t", token), ("action", "show")]))
                #expect(shown.headers[.setCookie]?.hasSuffix("; Secure") == secure)
            }
        }
    }
}

/// Removing an operator from `allowed_signers` ends their sessions and unused login links at
/// once, as delisting a producer ends its token.
extension OperatorAPITests {
    @Test func anOperatorRemovedFromAllowedSignersIsLoggedOutAtOnce() async throws {
        defer { fixture.remove() }
        let signers = try #require(fixture.environment.loaded.configuration.approvals.allowedSigners)
        try await app().test(.router) { client in
            let session = try await sessionCookie(client)
            let (_, unused) = try fixture.environment.sqlite.issueLogin(
                operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
            let before = try await client.execute(uri: "/api/v1/status", method: .get, headers: cookie(session))
            #expect(before.status == .ok)
            try "autonomy-web \(serverKey.publicKey.openSSH)\n".write(
                toFile: signers, atomically: true, encoding: .utf8)
            let after = try await client.execute(uri: "/api/v1/status", method: .get, headers: cookie(session))
            #expect(after.status == .unauthorized)
            let approve = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: cookie(session))
            #expect(approve.status == .unauthorized)
            #expect(try await login(client, unused).status == .notFound)
        }
        #expect(try fixture.environment.sqlite.task(id: 1)?.state == .awaitingApproval)
    }
}

/// The per-client failure limit: only failures count, an IPv6 client by its /64, and the table
/// of clients is bounded.
@Suite struct FailureLimiterTests {
    @Test func failuresPastTheLimitAreRefusedUntilTheWindowMoves() async {
        let limiter = FailureLimiter(limit: 3, window: .minutes(10))
        for _ in 0..<3 { #expect(await !limiter.failed("192.0.2.1", now: 0)) }
        #expect(await limiter.failed("192.0.2.1", now: 1))
        #expect(await !limiter.failed("192.0.2.2", now: 1))
        #expect(await !limiter.failed("192.0.2.1", now: Interval.minutes(11).milliseconds))
    }

    @Test func anIPv6ClientCountsByItsSlash64() async {
        #expect(FailureLimiter.key("2001:db8:1:2:aaaa::1") == FailureLimiter.key("2001:db8:1:2:bbbb::9"))
        #expect(FailureLimiter.key("2001:db8:1:2::1") != FailureLimiter.key("2001:db8:1:3::1"))
        #expect(FailureLimiter.key("192.0.2.1") == "192.0.2.1")
        let limiter = FailureLimiter(limit: 2, window: .minutes(10))
        _ = await limiter.failed("2001:db8::1", now: 0)
        _ = await limiter.failed("2001:db8::2", now: 0)
        #expect(await limiter.failed("2001:db8::ffff:3", now: 0))
    }

    @Test func theTableOfClientsIsBounded() async {
        let limiter = FailureLimiter(limit: 10, window: .minutes(10), maxClients: 100)
        for n in 0..<1000 { _ = await limiter.failed("10.0.\(n / 256).\(n % 256)", now: Int64(n)) }
        #expect(await limiter.clients <= 100)
    }
}

/// Behind a proxy that ends TLS, with `approvals.base_url` on https, cookies are `Secure` even
/// when the proxy is not listed as trusted; and the form must come from that public origin.
@Suite struct PublicAddressTests {
    @Test func withAnHTTPSBaseURLTheSessionCookieIsSecure() async throws {
        let operatorKey = OpenSSHEd25519Key(comment: "elad")
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-base-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let signers = (folder as NSString).appendingPathComponent("allowed_signers")
        try "elad \(operatorKey.publicKey.openSSH)\n".write(toFile: signers, atomically: true, encoding: .utf8)
        let fixture = try APIFixture(
            map: APIFixture.map.replacingOccurrences(
                of: #""queue": {"#,
                with:
                    #""approvals": { "allowed_signers": "\#(signers)", "base_url": "https://ops.example.com" }, "queue": {"#
            ))
        defer { fixture.remove() }
        let verifier = DecisionVerifier(settings: fixture.environment.loaded.configuration.approvals)
        let app = Application(router: AutonomyAPI.router(fixture.environment))
        try await app.test(.router) { client in
            for (origin, status) in [
                ("http://localhost", HTTPResponse.Status.forbidden), ("https://ops.example.com", .ok),
            ] {
                let (_, token) = try fixture.environment.sqlite.issueLogin(
                    operator: "elad", verifier: verifier, now: fixture.clock.now())
                let opened = try await client.execute(
                    uri: "/login", method: .post,
                    headers: [.contentType: "application/x-www-form-urlencoded", .origin: origin],
                    body: ByteBuffer(string: "t=\(token)"))
                #expect(opened.status == status)
                if status == .ok { #expect(opened.headers[.setCookie]?.hasSuffix("; Secure") == true) }
            }
        }
    }
}
