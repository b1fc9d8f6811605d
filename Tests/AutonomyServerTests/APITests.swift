import AutonomyCore
import AutonomyServer
import AutonomyTestSupport
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// A store on a fresh database with a map that lists two remote producers, and their tokens.
struct APIFixture: Sendable {
    let folder: String
    let environment: ServerEnvironment
    let clock: ManualClock
    let salesToken: String
    let otherToken: String

    static let map = """
        {"version": 1,
         "queue": { "max_payload_bytes": 2048 },
         "producers": { "users": {
           "sales-bot": { "types": ["report", "send_email"], "max_per_hour": 5 },
           "other-bot": { "types": ["report"] },
           "ops": { "types": [], "read_all": true } } },
         "task_types": {
           "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
           "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                           "verify": [ { "command": { "argv": ["/bin/true"] } } ] },
           "secret": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } }
         }}
        """

    /// In `folder` when given (a test that wrote files there first; `remove()` removes it), else in a new one.
    init(map: String = APIFixture.map, folder: String? = nil) throws {
        self.folder =
            folder
            ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: self.folder, withIntermediateDirectories: true)
        let loaded = try ConfigLoader.parse(Data(map.utf8))
        let store = try AutonomyStore(path: (self.folder as NSString).appendingPathComponent("autonomy.db"))
        clock = ManualClock()
        environment = ServerEnvironment(loaded: loaded, store: store, clock: clock)
        salesToken = try store.issueProducerToken(
            name: "sales-bot", configuration: loaded.configuration, now: clock.now()
        ).secret
        otherToken = try store.issueProducerToken(
            name: "other-bot", configuration: loaded.configuration, now: clock.now()
        ).secret
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }

    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: AutonomyAPI.router(environment))
        try await app.test(.router) { client in try await body(client) }
    }
}

extension TestResponse {
    var json: JSONValue { (try? JSONValue.parse(String(buffer: body))) ?? .null }
}

func headers(_ token: String?, _ extra: [(String, String)] = []) -> HTTPFields {
    var fields = HTTPFields()
    if let token { fields[.authorization] = "Bearer \(token)" }
    fields[.contentType] = "application/json"
    for (name, value) in extra { fields[HTTPField.Name(name)!] = value }
    return fields
}

func body(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

@Suite struct TaskAPITests {
    @Test func aProducerEnqueuesAndTheTaskIsItsOwn() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            let created = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"n": 1}, "subject": "client X"}"#))
            #expect(created.status == .created)
            #expect(created.json[path: "source"] == "sales-bot" && created.json[path: "state"] == "queued")
            #expect(created.json[path: "payload.n"] == 1 && created.json[path: "subject"] == "client X")
            #expect(created.headers[.contentType]?.hasPrefix("application/json") == true)
            // The source is the token's producer, whatever the body would claim.
            let forged = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "source": "ops"}"#))
            #expect(forged.status == .unprocessableContent && forged.json[path: "error.field"] == "source")

            guard case .int(let id)? = created.json[path: "id"] else { throw APITestFailure("no id") }
            let mine = try await client.execute(
                uri: "/api/v1/tasks/\(id)", method: .get, headers: headers(fixture.salesToken))
            #expect(mine.status == .ok && mine.json[path: "id"] == .int(id))
            // Another producer cannot see it, not even that it exists.
            let theirs = try await client.execute(
                uri: "/api/v1/tasks/\(id)", method: .get, headers: headers(fixture.otherToken))
            #expect(theirs.status == .notFound && theirs.json[path: "error.code"] == "not_found")
            let list = try await client.execute(
                uri: "/api/v1/tasks?state=queued&type=report", method: .get, headers: headers(fixture.otherToken))
            #expect(list.status == .ok && list.json[path: "tasks"] == [])
            let own = try await client.execute(
                uri: "/api/v1/tasks?state=queued", method: .get, headers: headers(fixture.salesToken))
            #expect(own.json[path: "tasks.0.id"] == .int(id))
            let badState = try await client.execute(
                uri: "/api/v1/tasks?state=zombie", method: .get, headers: headers(fixture.salesToken))
            #expect(badState.status == .unprocessableContent && badState.json[path: "error.field"] == "state")
        }
        #expect(try fixture.environment.sqlite.task(id: 1)?.source == "sales-bot")
    }

    @Test func anIdempotencyKeyNamesOneTask() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            let request = #"{"type": "report", "payload": {"order": 7}}"#
            let first = try await client.execute(
                uri: "/api/v1/tasks", method: .post,
                headers: headers(fixture.salesToken, [("Idempotency-Key", "order-7")]), body: body(request))
            let again = try await client.execute(
                uri: "/api/v1/tasks", method: .post,
                headers: headers(fixture.salesToken, [("Idempotency-Key", "order-7")]), body: body(request))
            #expect(first.status == .created && again.status == .ok)
            #expect(first.json[path: "id"] == again.json[path: "id"])
            // The same key for another payload is a conflict, not a second task.
            let other = try await client.execute(
                uri: "/api/v1/tasks", method: .post,
                headers: headers(fixture.salesToken, [("Idempotency-Key", "order-7")]),
                body: body(#"{"type": "report", "payload": {"order": 8}}"#))
            #expect(other.status == .conflict && other.json[path: "error.field"] == "Idempotency-Key")
        }
        #expect(try fixture.environment.sqlite.tasks(matching: TaskFilter()).count == 1)
    }

    @Test func aDangerousTaskWaitsForAnOperator() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            let created = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "send_email", "payload": {"to": "a@b.c"}}"#))
            #expect(created.status == .created && created.json[path: "state"] == "awaiting_approval")
        }
    }

    @Test(
        arguments: [
            (nil, #"{"type": "report"}"#, HTTPResponse.Status.unauthorized, "unauthorized", nil),
            ("aut_not-a-token", #"{"type": "report"}"#, .unauthorized, "unauthorized", nil),
            ("sales", "not json", .badRequest, "invalid_json", nil),
            ("sales", "[1, 2]", .badRequest, "invalid_json", nil),
            ("sales", #"{"payload": {}}"#, .unprocessableContent, "invalid_field", "type"),
            // A type it may not enqueue, declared or not: a producer learns nothing of the map.
            ("sales", #"{"type": "nope"}"#, .forbidden, "forbidden", "type"),
            (
                "sales", #"{"type": "report", "payload": {"a": 1}, "priority": "high"}"#, .unprocessableContent,
                "invalid_field", "priority"
            ),
            ("sales", #"{"type": "report", "run_at": "tomorrow"}"#, .unprocessableContent, "invalid_field", "run_at"),
            ("sales", #"{"type": "report", "color": "red"}"#, .unprocessableContent, "unknown_field", "color"),
            ("sales", #"{"type": "secret"}"#, .forbidden, "forbidden", "type"),
            ("other", #"{"type": "send_email"}"#, .forbidden, "forbidden", "type"),
        ] as [(String?, String, HTTPResponse.Status, String, String?)])
    func aBadRequestGetsOneErrorShapeNamingItsField(
        _ who: String?, _ request: String, _ status: HTTPResponse.Status, _ code: String, _ field: String?
    ) async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        let token = who.map { $0 == "sales" ? fixture.salesToken : $0 == "other" ? fixture.otherToken : $0 }
        try await fixture.test { client in
            let answer = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(token), body: body(request))
            #expect(answer.status == status, "\(String(buffer: answer.body))")
            #expect(answer.json[path: "error.code"] == .string(code))
            #expect(answer.json[path: "error.status"] == .int(Int64(status.code)))
            #expect(answer.json[path: "error.field"] == (field.map { .string($0) } ?? nil))
            if status == .unauthorized { #expect(answer.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true) }
        }
        #expect(try fixture.environment.sqlite.tasks(matching: TaskFilter()).isEmpty)
    }

    @Test func aBodyOverTheLimitIs413AndAPayloadOverItsLimitToo() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            let huge = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"x": ""# + String(repeating: "a", count: 40_000) + #""}}"#))
            #expect(huge.status == .contentTooLarge && huge.json[path: "error.code"] == "too_large")
            let large = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"x": ""# + String(repeating: "a", count: 4_000) + #""}}"#))
            #expect(large.status == .contentTooLarge && large.json[path: "error.field"] == "payload")
        }
    }

    @Test func overItsHourlyLimitAProducerIsToldWhenToTryAgain() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            for n in 0..<5 {
                let ok = try await client.execute(
                    uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                    body: body(#"{"type": "report", "payload": {"n": \#(n)}}"#))
                #expect(ok.status == .created)
            }
            let limited = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"n": 6}}"#))
            #expect(limited.status == .tooManyRequests && limited.json[path: "error.code"] == "rate_limited")
            let retry = try #require(limited.headers[.retryAfter].flatMap { Int($0) })
            #expect(retry >= 1 && retry <= 3600)
        }
    }

    @Test func aProducerRemovedFromTheFileIsRefusedWithoutARestart() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        // serve as the CLI starts it: from a configuration file, read again when it changes.
        let path = (fixture.folder as NSString).appendingPathComponent("autonomy.json")
        try APIFixture.map.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        let environment = ServerEnvironment(
            loaded: try ConfigLoader.load(explicitPath: path), store: fixture.environment.store, clock: fixture.clock)
        let app = Application(router: AutonomyAPI.router(environment))
        @Sendable func enqueue(_ client: any TestClientProtocol, _ n: Int) async throws -> TestResponse {
            try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"n": \#(n)}}"#))
        }
        try await app.test(.router) { client in
            #expect(try await enqueue(client, 1).status == .created)
            // The operator narrows sales-bot to send_email only, then removes it: each holds at once.
            let narrowed = APIFixture.map.replacingOccurrences(
                of: #""types": ["report", "send_email"]"#, with: #""types": ["send_email"]"#)
            #expect(narrowed != APIFixture.map)
            try narrowed.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            let answer = try await enqueue(client, 2)
            #expect(answer.status == .forbidden && answer.json[path: "error.code"] == "forbidden")
            let delisted = APIFixture.map.replacingOccurrences(
                of: #""sales-bot": { "types": ["report", "send_email"], "max_per_hour": 5 },"#, with: "")
            try delisted.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            #expect(try await enqueue(client, 3).status == .forbidden)
            try APIFixture.map.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            #expect(try await enqueue(client, 4).status == .created)
            // A file others could now write (its mode alone changed) admits nobody, rather than
            // what it said before.
            chmod(path, 0o666)
            let unsafe = try await enqueue(client, 5)
            #expect(unsafe.status == .serviceUnavailable && unsafe.json[path: "error.code"] == "unavailable")
            chmod(path, 0o600)
            #expect(try await enqueue(client, 6).status == .created)
        }
        #expect(try fixture.environment.sqlite.tasks(matching: TaskFilter()).count == 3)
    }

    @Test func aProducerLearnsNothingOfTheMapAndCannotRaiseItsTypesPriorityOrAttempts() async throws {
        let fixture = try APIFixture(
            map: APIFixture.map.replacingOccurrences(
                of: #""other-bot": { "types": ["report"] }"#, with: #""other-bot": { "types": ["report", "legacy"] }"#))
        defer { fixture.remove() }
        try await fixture.test { client in
            // A type it may ask for but the map no longer declares: refused as one it may not ask for.
            let legacy = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.otherToken),
                body: body(#"{"type": "legacy"}"#))
            #expect(legacy.status == .forbidden && legacy.json[path: "error.code"] == "forbidden")
            let message = String(buffer: legacy.body)
            #expect(!message.contains("send_email") && !message.contains("secret"), "\(message)")
            // Its priority and attempts may lower the type's, never raise them.
            let raised = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(
                    #"{"type": "report", "priority": 1000000, "max_attempts": 1000, "run_at": "2001-01-01T00:00:00Z"}"#)
            )
            #expect(raised.status == .created)
            let lowered = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report", "payload": {"n": 2}, "priority": -3, "max_attempts": 1}"#))
            #expect(lowered.status == .created)
        }
        let tasks = try fixture.environment.sqlite.tasks(matching: TaskFilter()).sorted { $0.id < $1.id }
        #expect(tasks.map(\.priority) == [0, -3])
        #expect(tasks.map(\.maxAttempts) == [3, 1])
        #expect(tasks[0].runAt == fixture.clock.now())  // not a time long past, ahead of everyone
    }

    @Test func aRevokedTokenOrADelistedProducerIsRefused() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        let tokens = try fixture.environment.sqlite.producerTokens()
        let other = try #require(tokens.first { $0.name == "other-bot" })
        _ = try fixture.environment.sqlite.revokeProducerToken(id: other.id, by: "test", now: fixture.clock.now())
        try await fixture.test { client in
            let revoked = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.otherToken),
                body: body(#"{"type": "report"}"#))
            #expect(revoked.status == .unauthorized)
        }
        // A token whose producer the map no longer lists opens nothing.
        let delisted = APIFixture.map.replacingOccurrences(
            of: #""sales-bot": { "types": ["report", "send_email"], "max_per_hour": 5 },"#, with: "")
        #expect(delisted != APIFixture.map)
        let reloaded = ServerEnvironment(
            loaded: try ConfigLoader.parse(Data(delisted.utf8)), store: fixture.environment.store,
            clock: fixture.clock)
        let app = Application(router: AutonomyAPI.router(reloaded))
        try await app.test(.router) { client in
            let answer = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: headers(fixture.salesToken),
                body: body(#"{"type": "report"}"#))
            #expect(answer.status == .forbidden && answer.json[path: "error.code"] == "forbidden")
        }
        #expect(try fixture.environment.sqlite.tasks(matching: TaskFilter()).isEmpty)
    }

    @Test func unknownRoutesAndMethodsAnswerInTheSameShape() async throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        try await fixture.test { client in
            let missing = try await client.execute(uri: "/api/v1/nothing", method: .get, headers: headers(nil))
            #expect(missing.status == .notFound && missing.json[path: "error.code"] == "not_found")
            // A path that exists, with a method it does not answer: 405, and what it does answer.
            let wrongMethod = try await client.execute(uri: "/api/v1/tasks", method: .delete, headers: headers(nil))
            #expect(
                wrongMethod.status == .methodNotAllowed && wrongMethod.json[path: "error.code"] == "method_not_allowed")
            #expect(wrongMethod.headers[.allow]?.contains("POST") == true)
            let notANumber = try await client.execute(
                uri: "/api/v1/tasks/abc", method: .get, headers: headers(fixture.salesToken))
            #expect(notANumber.status == .notFound && notANumber.json[path: "error.code"] == "not_found")
        }
    }

    @Test func aTokenIsStoredOnlyAsItsHash() throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        #expect(fixture.salesToken.hasPrefix("aut_") && fixture.salesToken.count == 4 + 43)
        let database = try String(
            decoding: Data(contentsOf: URL(fileURLWithPath: fixture.environment.sqlite.path)), as: UTF8.self)
        #expect(!database.contains(fixture.salesToken))
        #expect(try fixture.environment.sqlite.producerName(bearer: fixture.salesToken) == "sales-bot")
        #expect(try fixture.environment.sqlite.producerName(bearer: "aut_" + fixture.salesToken.dropFirst(5)) == nil)
    }
}

struct APITestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `openapi.yaml` describes every route the server answers: a route added without its entry
/// fails here.
@Suite struct OpenAPITests {
    static let document: String = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("openapi.yaml").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }()

    /// The methods listed under each path of the document.
    static var described: [String: Set<String>] {
        var paths: [String: Set<String>] = [:]
        var current: String?
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                current = String(line.dropFirst(2).dropLast())
                paths[current ?? ""] = []
            } else if !line.hasPrefix(" ") {
                current = nil
            } else if let path = current, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                paths[path]?.insert(line.trimmingCharacters(in: .whitespaces).dropLast().lowercased())
            }
        }
        return paths
    }

    @Test func everyRouteIsInTheDocument() throws {
        let fixture = try APIFixture()
        defer { fixture.remove() }
        let routes = AutonomyAPI.router(fixture.environment).routes
        #expect(routes.count >= 3)
        let described = Self.described
        for route in routes {
            let path = "\(route.path)".hasPrefix("/") ? "\(route.path)" : "/\(route.path)"
            #expect(
                described[path]?.contains(route.method.rawValue.lowercased()) == true,
                "\(route.method) \(path) is not in openapi.yaml (it has \(described))")
        }
    }
}

/// The one-click pages: a link's GET or HEAD decides nothing; a POST shows; only a POST from this
/// server's own page (Origin, CSRF) decides, signed with the server's key, and a link works once.
@Suite struct ApprovalPageTests {
    let fixture: APIFixture
    let serverKey = OpenSSHEd25519Key(comment: "autonomy-web")
    /// How the server keeps its tokens: what the tests issue links and logins under, as `serve`
    /// and `serve login` do.
    var seal: TokenSeal { get throws { try TokenSeal(serverKey: .native(serverKey)) } }
    /// The payload's SHA-256 as the request's page shows it (its forms send it back).
    var shown: String { (try? fixture.environment.sqlite.approval(id: approval)?.payloadSHA256) ?? "" }
    let token: String
    let approval: Int64

    init() throws {
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-pages-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let signers = (folder as NSString).appendingPathComponent("allowed_signers")
        try "autonomy-web \(serverKey.publicKey.openSSH)\n".write(toFile: signers, atomically: true, encoding: .utf8)
        fixture = try APIFixture(
            map: APIFixture.map.replacingOccurrences(
                of: #""queue": {"#, with: #""approvals": { "allowed_signers": "\#(signers)" }, "queue": {"#),
            folder: folder)
        let store = fixture.environment.sqlite
        let now = fixture.clock.now()
        _ = try store.enqueue(
            EnqueueRequest(type: "send_email", payload: #"{"to": "<b>client</b>@x.org"}"#, source: "sales-bot"),
            configuration: fixture.environment.loaded.configuration, now: now)
        approval = try #require(try store.pendingApprovals(now: now).first).approval.id
        token = try #require(
            try store.issueToken(approvalID: approval, seal: try TokenSeal(serverKey: .native(serverKey)), now: now))
    }

    func app(signed: Bool = true) -> some ApplicationProtocol {
        Application(
            router: AutonomyAPI.router(
                fixture.environment, state: ServerState(signer: signed ? .native(serverKey) : nil)))
    }

    func form(_ fields: [(String, String)], cookie: String? = nil, origin: String? = "http://localhost") -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = "application/x-www-form-urlencoded"
        if let cookie { headers[.cookie] = "autonomy_csrf=\(cookie)" }
        if let origin { headers[.origin] = origin }
        return headers
    }

    func encoded(_ fields: [(String, String)]) -> ByteBuffer {
        ByteBuffer(
            string: fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }
                .joined(separator: "&"))
    }

    var state: String { (try? fixture.environment.sqlite.task(id: 1)?.state.rawValue) ?? "none" }

    /// Shows the request with the link's token; returns the page and its CSRF token.
    func show(_ client: some TestClientProtocol, link: String? = nil) async throws -> (page: String, csrf: String) {
        let shown = try await client.execute(
            uri: "/r/\(approval)", method: .post, headers: form([]),
            body: encoded([("t", link ?? token), ("action", "show")]))
        #expect(shown.status == .ok)
        let page = String(buffer: shown.body)
        let cookie = try #require(shown.headers[.setCookie])
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
        let csrf = try #require(
            cookie.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(String.init))
        return (page, csrf)
    }

    @Test func aPageShowsInvisibleAndDirectionChangingCharactersEscaped() async throws {
        defer { fixture.remove() }
        let store = fixture.environment.sqlite
        let now = fixture.clock.now()
        // "\u{202E}1000000\u{202C}" reads "0000001" in a browser; tag characters are invisible.
        let task = try store.enqueue(
            EnqueueRequest(
                type: "send_email", payload: #"{"amount":"\u202e1000000\u202c","note":"ok\u2028\udb40\udc41"}"#,
                source: "sales-bot"),
            configuration: fixture.environment.loaded.configuration, now: now
        ).task
        let request = try #require(try store.pendingApprovals(now: now).first { $0.task.id == task.id })
        let link = try #require(try store.issueToken(approvalID: request.approval.id, seal: try seal, now: now))
        try await app().test(.router) { client in
            let shown = try await client.execute(
                uri: "/r/\(request.approval.id)", method: .post, headers: form([]),
                body: encoded([("t", link), ("action", "show")]))
            #expect(shown.status == .ok)
            let page = String(buffer: shown.body)
            #expect(page.contains(#"\u{202e}1000000\u{202c}"#), "\(page)")
            #expect(page.contains(#"ok\u{2028}\u{e0041}"#), "\(page)")
            let hidden = page.unicodeScalars.filter {
                [.control, .format, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory)
                    && !["\n", "\t", "\r"].contains($0)
            }
            #expect(hidden.isEmpty, "\(hidden.map { String($0.value, radix: 16) })")
        }
    }

    @Test func openingTheLinkDecidesNothingAndShowsWhatWouldRun() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            for method in [HTTPRequest.Method.get, .head] {
                let opened = try await client.execute(uri: "/r/\(approval)", method: method, headers: [:])
                #expect(opened.status == .ok)
                #expect(opened.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
                #expect(opened.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
                #expect(opened.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            }
            let landing = try await client.execute(uri: "/r/\(approval)", method: .get, headers: [:])
            let html = String(buffer: landing.body)
            // The only script carries the page's nonce, and the token is nowhere in the page.
            let nonce = try #require(
                landing.headers[.contentSecurityPolicy]?.split(separator: "'").first { $0.hasPrefix("nonce-") })
            #expect(html.contains("<script nonce=\"\(nonce.dropFirst(6))\">") && !html.contains(token))
            #expect(state == "awaiting_approval")

            let (page, _) = try await show(client)
            #expect(page.contains("send_email") && page.contains("&lt;b&gt;client&lt;/b&gt;@x.org"))
            #expect(!page.contains("<b>client</b>"))
            #expect(page.contains("Source (producer-supplied)") && page.contains("sales-bot"))
            #expect(page.contains("Approve") && page.contains("Reject"))
            #expect(state == "awaiting_approval")
        }
    }

    @Test func approvingSignsWithTheServersKeyAndTheLinkWorksOnce() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let (_, csrf) = try await show(client)
            let decided = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", shown)]))
            #expect(decided.status == .ok && String(buffer: decided.body).contains("Approved"))
            #expect(state == "queued")
            let record = try #require(try fixture.environment.sqlite.approval(id: approval))
            #expect(record.state == .approved && record.decidedBy == "autonomy-web" && record.channel == "link")
            #expect(record.signerKey == serverKey.publicKey.fingerprint)

            #expect(record.decisionNote == "one-click link")
            // Opened again, the link shows what was decided; a decision sent again is refused
            // (409) and changes nothing; a reject does not turn it over.
            let again = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "show")]))
            let shown = String(buffer: again.body)
            #expect(again.status == .ok && shown.contains("This link is no longer valid"))
            #expect(shown.contains("Already approved") && shown.contains("autonomy-web"))
            #expect(!shown.contains("<button"))
            for action in ["approve", "reject"] {
                let replay = try await client.execute(
                    uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                    body: encoded([
                        ("t", token), ("action", action), ("csrf", csrf), ("sha256", shown),
                        ("reason", "changed my mind"),
                    ]))
                #expect(replay.status == .conflict && String(buffer: replay.body).contains("Already approved"))
            }
            #expect(state == "queued")
            #expect(try fixture.environment.sqlite.approval(id: approval)?.state == .approved)
            // The spent link shows nothing about another request.
            let other = try await client.execute(
                uri: "/r/\(approval + 1)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "show")]))
            #expect(other.status == .notFound && String(buffer: other.body).contains("no longer valid"))
        }
    }

    @Test func aForeignOriginOrAMissingCSRFTokenDecidesNothing() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let (_, csrf) = try await show(client)
            let cases: [(HTTPFields, [(String, String)])] = [
                (
                    form([], cookie: csrf, origin: "https://evil.example"),
                    [("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", shown)]
                ),
                (form([], cookie: nil), [("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", shown)]),
                (form([], cookie: csrf), [("t", token), ("action", "approve")]),
                (form([], cookie: "other"), [("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", shown)]),
            ]
            for (headers, fields) in cases {
                let refused = try await client.execute(
                    uri: "/r/\(approval)", method: .post, headers: headers, body: encoded(fields))
                #expect(refused.status == .forbidden)
            }
            #expect(state == "awaiting_approval")
            // Rejecting needs a reason; with one, it is recorded, signed.
            let bare = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "reject"), ("csrf", csrf), ("sha256", shown)]))
            #expect(bare.status == .unprocessableContent && state == "awaiting_approval")
            let rejected = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([
                    ("t", token), ("action", "reject"), ("csrf", csrf), ("sha256", shown), ("reason", "wrong client"),
                ]))
            #expect(rejected.status == .ok && state == "rejected")
        }
    }

    @Test func aWrongTokenOrAnotherRequestsTokenIsOnePageAndTooManyAreRefused() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let wrong = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([]),
                body: encoded([("t", "nope"), ("action", "show")]))
            #expect(wrong.status == .notFound && String(buffer: wrong.body).contains("no longer valid"))
            let elsewhere = try await client.execute(
                uri: "/r/\(approval + 1)", method: .post, headers: form([]),
                body: encoded([("t", token), ("action", "show")]))
            #expect(elsewhere.status == .notFound)
            for _ in 0..<10 {
                _ = try await client.execute(
                    uri: "/r/\(approval)", method: .post, headers: form([]),
                    body: encoded([("t", "x"), ("action", "show")]))
            }
            let limited = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([]),
                body: encoded([("t", "y"), ("action", "show")]))
            #expect(limited.status == .tooManyRequests)
            // The link that works still works: failing from the same address locks nobody out.
            let valid = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([]),
                body: encoded([("t", token), ("action", "show")]))
            #expect(valid.status == .ok)
        }
        #expect(state == "awaiting_approval")
    }

    @Test func withoutASigningKeyThePageShowsButCannotDecide() async throws {
        defer { fixture.remove() }
        // Without a key, every link is one the worker made (kept as its SHA-256).
        let link = try #require(
            try fixture.environment.sqlite.issueToken(approvalID: approval, now: fixture.clock.now()))
        try await app(signed: false).test(.router) { client in
            let (page, csrf) = try await show(client, link: link)
            #expect(page.contains("no signing key") && !page.contains("Approve</button>"), "\(page)")
            let refused = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", link), ("action", "approve"), ("csrf", csrf), ("sha256", shown)]))
            #expect(refused.status == .serviceUnavailable)
        }
        #expect(state == "awaiting_approval")
    }

    /// The red team's way round the firewall: the worker user (any handler) writes a link of its
    /// own into the database, as `work-once` does for its alerts, and has the server sign. A link
    /// not kept under the server's key shows the request and decides nothing.
    @Test func aLinkMadeWithoutTheServersKeyShowsTheRequestAndDecidesNothing() async throws {
        defer { fixture.remove() }
        let link = try #require(
            try fixture.environment.sqlite.issueToken(approvalID: approval, now: fixture.clock.now()))
        try await app().test(.router) { client in
            let (page, csrf) = try await show(client, link: link)
            #expect(page.contains("&lt;b&gt;client&lt;/b&gt;@x.org"), "\(page)")
            #expect(page.contains("made without the server") && !page.contains("Approve</button>"), "\(page)")
            for action in ["approve", "reject"] {
                let refused = try await client.execute(
                    uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                    body: encoded([("t", link), ("action", action), ("csrf", csrf), ("sha256", shown), ("reason", "r")])
                )
                #expect(refused.status == .forbidden)
            }
            // The server's own link to the same request still decides.
            let (_, own) = try await show(client)
            let approved = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: own),
                body: encoded([("t", token), ("action", "approve"), ("csrf", own), ("sha256", shown)]))
            #expect(approved.status == .ok)
        }
        #expect(state == "queued")
        #expect(try fixture.environment.sqlite.approval(id: approval)?.decisionNote == "one-click link")
    }

    /// Whoever can write the database changes what waits while the operator looks at the page:
    /// the decision is on what the page showed, or nothing.
    @Test func aPayloadChangedAfterThePageShowedItIsNotApproved() async throws {
        defer { fixture.remove() }
        try await app().test(.router) { client in
            let (page, csrf) = try await show(client)
            #expect(page.contains(#"name="sha256" value="\#(shown)""#))
            let seen = shown
            try await DatabaseQueue(path: fixture.environment.sqlite.path).write { db in
                try db.execute(
                    sql: "UPDATE approvals SET payload_sha256 = ? WHERE id = ?",
                    arguments: [String(repeating: "0", count: 64), approval])
            }
            let refused = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", seen)]))
            // The payload no longer hashes to the request's: refused before the page's hash is compared.
            #expect(
                refused.status == .conflict && String(buffer: refused.body).contains("changed outside autonomy"),
                "\(String(buffer: refused.body))")
        }
        #expect(state == "awaiting_approval")
        #expect(try fixture.environment.sqlite.approval(id: approval)?.state == .pending)
    }

    /// The red team's swap: the payload is rewritten (the immutability trigger dropped and put
    /// back) to show the operator something harmless, under the stored hash of the real one. The
    /// page says so and offers no button; the hash it shows is of what it shows; and once the real
    /// payload is back, a form sent from that page is refused, never signed for the real one.
    @Test func aPayloadRewrittenUnderItsOldHashIsShownAsAlteredAndNeverSigned() async throws {
        defer { fixture.remove() }
        let real = try #require(try fixture.environment.sqlite.task(id: 1)).payload
        let harmless = #"{"to": "friend@x.org"}"#
        @Sendable func rewrite(_ payload: String) throws {
            try DatabaseQueue(path: fixture.environment.sqlite.path).write { db in
                let trigger = try #require(
                    try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
                try db.execute(sql: "DROP TRIGGER tasks_immutable")
                try db.execute(sql: "UPDATE tasks SET payload = ? WHERE id = 1", arguments: [payload])
                try db.execute(sql: trigger)
            }
        }
        try rewrite(harmless)
        try await app().test(.router) { client in
            let (page, csrf) = try await show(client)
            #expect(page.contains("Do not act on this request") && !page.contains("Approve</button>"), "\(page)")
            #expect(page.contains(harmless.sha256Hex) && !page.contains(shown))
            let overview = try await client.execute(uri: "/", method: .get)
            #expect(!String(buffer: overview.body).contains(#"value="\#(shown)""#))
            try rewrite(real)
            let refused = try await client.execute(
                uri: "/r/\(approval)", method: .post, headers: form([], cookie: csrf),
                body: encoded([("t", token), ("action", "approve"), ("csrf", csrf), ("sha256", harmless.sha256Hex)]))
            #expect(refused.status == .conflict && String(buffer: refused.body).contains("The request changed"))
        }
        #expect(state == "awaiting_approval")
        #expect(try fixture.environment.sqlite.approval(id: approval)?.state == .pending)
    }

    /// The key the tokens are kept under is derived as documented, from a signature OpenSSH's
    /// `ssh-keygen -Y sign -n autonomy-token-seal` made over "autonomy-token-seal/v1" with another
    /// key: not this key's, so the server's seal differs from it.
    @Test func theServersSealIsItsOwnAndNotTheTokensSHA256() throws {
        let seal = try TokenSeal(serverKey: .native(serverKey))
        #expect(seal.isKeyed && seal.digest("abc") != "abc".sha256Hex)
        #expect(
            try TokenSeal(serverKey: .native(OpenSSHEd25519Key(comment: "other"))).digest("abc") != seal.digest("abc"))
        #expect(TokenSeal.plain.digest("abc") == "abc".sha256Hex)
    }
}

/// Operators: a one-time login link opens a session, which reads and decides through the API; a
/// producer's token cannot, and a revoked session no longer can.
@Suite struct OperatorAPITests {
    let fixture: APIFixture
    let serverKey = OpenSSHEd25519Key(comment: "autonomy-web")
    /// How the server keeps its tokens: what the tests issue links and logins under, as `serve`
    /// and `serve login` do.
    var seal: TokenSeal { get throws { try TokenSeal(serverKey: .native(serverKey)) } }
    /// The payload's SHA-256 as the request's page shows it (its forms send it back).
    var shown: String { (try? fixture.environment.sqlite.approval(id: approval)?.payloadSHA256) ?? "" }
    let operatorKey = OpenSSHEd25519Key(comment: "elad")
    let approval: Int64

    init() throws {
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-ops-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let signers = (folder as NSString).appendingPathComponent("allowed_signers")
        try "autonomy-web \(serverKey.publicKey.openSSH)\nelad \(operatorKey.publicKey.openSSH)\n".write(
            toFile: signers, atomically: true, encoding: .utf8)
        fixture = try APIFixture(
            map: APIFixture.map.replacingOccurrences(
                of: #""queue": {"#, with: #""approvals": { "allowed_signers": "\#(signers)" }, "queue": {"#),
            folder: folder)
        let now = fixture.clock.now()
        _ = try fixture.environment.sqlite.enqueue(
            EnqueueRequest(type: "send_email", payload: #"{"to": "a@b.c"}"#, source: "sales-bot"),
            configuration: fixture.environment.loaded.configuration, now: now)
        approval = try #require(try fixture.environment.sqlite.pendingApprovals(now: now).first).approval.id
    }

    var verifier: DecisionVerifier { DecisionVerifier(settings: fixture.environment.loaded.configuration.approvals) }

    func app() -> some ApplicationProtocol {
        Application(
            router: AutonomyAPI.router(fixture.environment, state: ServerState(signer: .native(serverKey))))
    }

    func login(_ client: some TestClientProtocol, _ token: String) async throws -> TestResponse {
        try await client.execute(
            uri: "/login", method: .post,
            headers: [.contentType: "application/x-www-form-urlencoded", .origin: "http://localhost"],
            body: ByteBuffer(string: "t=\(token)"))
    }

    func cookie(_ session: String, origin: String? = "http://localhost") -> HTTPFields {
        var fields: HTTPFields = [.cookie: "autonomy_session=\(session)", .contentType: "application/json"]
        if let origin { fields[.origin] = origin }
        return fields
    }

    /// Whoever can write the database (the worker user, every handler) can add a login link or a
    /// session row of its own; neither is kept under the server's key, so neither logs in.
    @Test func aLoginOrSessionWrittenIntoTheDatabaseWithoutTheServersKeyIsNone() async throws {
        defer { fixture.remove() }
        let store = fixture.environment.sqlite
        let (_, forged) = try store.issueLogin(operator: "elad", verifier: verifier, now: fixture.clock.now())
        let cookie = SecretToken.make()
        try await DatabaseQueue(path: store.path).write { db in
            try db.execute(
                sql: """
                    INSERT INTO operator_sessions (operator, login_sha256, session_sha256, created_at, opened_at, expires_at)
                    VALUES ('elad', ?, ?, 0, 0, ?)
                    """, arguments: [SecretToken.make().sha256Hex, cookie.sha256Hex, Int64.max / 2])
        }
        try await app().test(.router) { client in
            let opened = try await login(client, forged)
            #expect(opened.status == .notFound && opened.headers[.setCookie] == nil)
            for uri in ["/api/v1/approvals", "/api/v1/status"] {
                let read = try await client.execute(uri: uri, method: .get, headers: self.cookie(cookie))
                #expect(read.status == .unauthorized)
            }
            let decided = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: self.cookie(cookie),
                body: ByteBuffer(string: "{}"))
            #expect(decided.status == .unauthorized)
        }
        #expect(try store.approval(id: approval)?.state == .pending)
    }

    @Test func onlyAnOperatorsSessionReadsAndDecides() async throws {
        defer { fixture.remove() }
        #expect(throws: SessionError.self) {
            try fixture.environment.sqlite.issueLogin(operator: "sales-bot", verifier: verifier, now: 0)
        }
        let (_, token) = try fixture.environment.sqlite.issueLogin(
            operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
        try await app().test(.router) { client in
            for (uri, method) in [
                ("/api/v1/status", HTTPRequest.Method.get), ("/api/v1/approvals", .get),
                ("/api/v1/approvals/\(approval)/approve", .post),
            ] {
                let anonymous = try await client.execute(uri: uri, method: method, headers: [:])
                #expect(anonymous.status == .unauthorized)
                // A producer's token is not an operator's session.
                let producer = try await client.execute(uri: uri, method: method, headers: headers(fixture.salesToken))
                #expect(producer.status == .forbidden && producer.json[path: "error.code"] == "forbidden")
            }
            let opened = try await login(client, token)
            #expect(opened.status == .ok)
            let set = try #require(opened.headers[.setCookie])
            #expect(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age="))
            let session = try #require(
                set.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(String.init))
            // The link works once.
            let reused = try await login(client, token)
            #expect(reused.status == .notFound)

            let status = try await client.execute(uri: "/api/v1/status", method: .get, headers: cookie(session))
            #expect(status.status == .ok && status.json[path: "counts.awaiting_approval"] == 1)
            let pending = try await client.execute(uri: "/api/v1/approvals", method: .get, headers: cookie(session))
            #expect(pending.json[path: "approvals.0.id"] == .int(approval))
            let foreign = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post,
                headers: cookie(session, origin: "https://evil.example"))
            #expect(foreign.status == .forbidden)
            // A cookie alone is not enough: no Origin, or a body no JSON client sends, decides nothing.
            let noOrigin = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: cookie(session, origin: nil))
            #expect(noOrigin.status == .forbidden)
            var plain = cookie(session)
            plain[.contentType] = "text/plain"
            let asText = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: plain,
                body: ByteBuffer(string: "{}"))
            #expect(
                asText.status == .unsupportedMediaType && asText.json[path: "error.code"] == "unsupported_media_type")
            #expect(try fixture.environment.sqlite.task(id: 1)?.state == .awaitingApproval)
            let approved = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: cookie(session),
                body: ByteBuffer(string: #"{"note": "looks right"}"#))
            #expect(approved.status == .ok && approved.json[path: "state"] == "approved", "\(approved.json)")
            let again = try await client.execute(
                uri: "/api/v1/approvals/\(approval)/approve", method: .post, headers: cookie(session))
            #expect(again.status == .conflict)
        }
        // Signed with the server's key; the human is in the signed statement.
        let record = try #require(try fixture.environment.sqlite.approval(id: approval))
        #expect(record.decidedBy == "autonomy-web" && record.channel == "api")
        #expect(record.decisionNote == "operator elad (web session 1): looks right")
        #expect(try fixture.environment.sqlite.task(id: 1)?.state == .queued)
    }

    @Test func aRevokedSessionNoLongerWorksAndBadLoginsAreLimited() async throws {
        defer { fixture.remove() }
        let (made, token) = try fixture.environment.sqlite.issueLogin(
            operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
        try await app().test(.router) { client in
            let opened = try await login(client, token)
            let session = try #require(
                opened.headers[.setCookie]?.split(separator: ";").first?.split(separator: "=", maxSplits: 1).last.map(
                    String.init))
            _ = try fixture.environment.sqlite.revokeSession(id: made.id, by: "test", now: fixture.clock.now())
            // Revoking it again is refused, not reported as done a second time (nor written to the ledger).
            #expect(throws: SessionError.alreadyRevoked(made.id)) {
                _ = try fixture.environment.sqlite.revokeSession(id: made.id, by: "test", now: fixture.clock.now())
            }
            let status = try await client.execute(uri: "/api/v1/status", method: .get, headers: cookie(session))
            #expect(status.status == .unauthorized)
            for _ in 0..<10 { _ = try await login(client, "wrong") }
            let limited = try await login(client, "wrong again")
            #expect(limited.status == .tooManyRequests)
            // A good login link still opens a session from the same address.
            let (_, fresh) = try fixture.environment.sqlite.issueLogin(
                operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
            #expect(try await login(client, fresh).status == .ok)
        }
    }

    @Test func aLoginLinkExpiresAfterTenMinutes() async throws {
        defer { fixture.remove() }
        let (_, token) = try fixture.environment.sqlite.issueLogin(
            operator: "elad", verifier: verifier, seal: try seal, now: fixture.clock.now())
        fixture.clock.advance(by: .minutes(11))
        try await app().test(.router) { client in
            let expired = try await login(client, token)
            #expect(expired.status == .notFound)
        }
    }
}

/// `X-Forwarded-For` counts only from `serve.trusted_proxies`: from anyone else, a client cannot
/// dodge the per-client limit by naming itself another address.
@Suite struct TrustedProxyTests {
    func tries(trusted: [String]) async throws -> HTTPResponse.Status {
        let map = APIFixture.map.replacingOccurrences(
            of: #""queue": {"#,
            with:
                #""serve": { "trusted_proxies": \#(JSONValue.array(trusted.map { .string($0) }).canonicalText) }, "queue": {"#
        )
        let fixture = try APIFixture(map: map)
        defer { fixture.remove() }
        let app = Application(
            router: AutonomyAPI.router(fixture.environment),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            var last = HTTPResponse.Status.ok
            for n in 0..<12 {
                let answer = try await client.execute(
                    uri: "/r/1", method: .post,
                    headers: [
                        .contentType: "application/x-www-form-urlencoded",
                        HTTPField.Name("X-Forwarded-For")!: "10.0.0.\(n)",
                    ],
                    body: ByteBuffer(string: "t=wrong&action=show"))
                last = answer.status
            }
            return last
        }
    }

    @Test func forwardedForCountsOnlyFromATrustedProxy() async throws {
        // Untrusted: every try is the peer's own, and the 11th is refused.
        #expect(try await tries(trusted: []) == .tooManyRequests)
        // From a trusted proxy: twelve clients, one try each, none refused.
        #expect(try await tries(trusted: ["127.0.0.1"]) == .notFound)
    }
}

extension ServerEnvironment {
    /// The SQLite store these tests serve from, with its own functions (`store` is any engine's).
    var sqlite: AutonomyStore {
        guard let store = store as? AutonomyStore else { fatalError("these tests serve from an SQLite file") }
        return store
    }
}
