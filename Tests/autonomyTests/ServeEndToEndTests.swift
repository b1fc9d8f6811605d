import AsyncHTTPClient
import AutonomyCore
import Foundation
import NIOCore
import NIOSSL
import Testing

/// `autonomy serve` as it runs: a process on a loopback port, found by what it prints.
final class RunningServer: Sendable {
    let process: Process
    let address: String
    /// `http`, or `https` with `--tls-cert`.
    let scheme: String

    init(
        _ sandbox: Sandbox, arguments: [String] = [], listen: String = "127.0.0.1:0",
        environment extra: [String: String] = [:]
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: autonomyBinary)
        process.arguments = ["serve", "--listen", listen] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["AUTONOMY_CONFIG"] = sandbox.configPath
        environment["AUTONOMY_DATABASE"] = sandbox.databasePath
        environment["HOME"] = sandbox.path
        environment.merge(extra) { _, new in new }
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
        // A line says where it listens: read until it does.
        var seen = Data()
        let deadline = Date().addingTimeInterval(30)
        while !String(decoding: seen, as: UTF8.self).contains("listening on"), Date() < deadline, process.isRunning {
            seen += errors.fileHandleForReading.availableData
        }
        let text = String(decoding: seen, as: UTF8.self)
        guard let range = text.range(of: "listening on "),
            case let url = text[range.upperBound...].prefix(while: { !$0.isWhitespace }),
            let separator = url.range(of: "://")
        else {
            process.terminate()
            throw CLIFailureInTest("serve did not start: \(text)")
        }
        scheme = String(url[..<separator.lowerBound])
        address = String(url[separator.upperBound...])
    }

    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Sends one request; returns the status and the body parsed as JSON.
    func send(
        _ method: String, _ path: String, token: String?, headers: [(String, String)] = [],
        body: String? = nil, client: HTTPClient? = nil
    ) async throws -> (status: Int, json: JSONValue) {
        var request = HTTPClientRequest(url: "\(scheme)://\(address)\(path)")
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await (client ?? HTTPClient.shared).execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), (try? JSONValue.parse(String(buffer: bytes))) ?? .null)
    }
}

@Suite struct ServeEndToEndTests {
    @Test func aRemoteProducerEnqueuesOverHTTPAndTheWorkerRunsTheTask() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1,
                 "producers": { "users": { "remote-bot": { "types": ["report"] } } },
                 "task_types": {
                   "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/sh", "-c", "cat > report.json"] } } }
                 }}
                """)
        // Not listed: no token.
        let refused = try await sandbox.run(["producer", "token", "stranger"])
        #expect(refused.status == 78 && refused.stderr.contains("producers.users"), "\(refused.stderr)")
        let made = try await sandbox.run(["producer", "token", "remote-bot"])
        #expect(made.status == 0, "\(made.stderr)")
        let token = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let snapshot = try sandbox.snapshot()
        #expect(token.hasPrefix("aut_") && !snapshot.contains(token))

        let server = try RunningServer(sandbox)
        let created = try await server.send(
            "POST", "/api/v1/tasks", token: token, headers: [("Idempotency-Key", "r-1")],
            body: #"{"type": "report", "payload": {"quarter": 3}}"#)
        #expect(created.status == 201 && created.json[path: "source"] == "remote-bot")
        let again = try await server.send(
            "POST", "/api/v1/tasks", token: token, headers: [("Idempotency-Key", "r-1")],
            body: #"{"type": "report", "payload": {"quarter": 3}}"#)
        #expect(again.status == 200 && again.json[path: "id"] == created.json[path: "id"])
        let anonymous = try await server.send("POST", "/api/v1/tasks", token: nil, body: #"{"type": "report"}"#)
        #expect(anonymous.status == 401 && anonymous.json[path: "error.code"] == "unauthorized")

        let work = try await sandbox.run(["work-once", "--drain"])
        #expect(work.status == 0, "\(work.stderr)")
        let shown = try await server.send("GET", "/api/v1/tasks/1", token: token)
        #expect(shown.status == 200 && shown.json[path: "state"] == "done")
        #expect(try String(contentsOfFile: sandbox.file("report.json"), encoding: .utf8) == #"{"quarter":3}"#)

        // Revoked, the token opens nothing, at once.
        let revoke = try await sandbox.run(["producer", "revoke", "1"])
        #expect(revoke.status == 0, "\(revoke.stderr)")
        let after = try await server.send("GET", "/api/v1/tasks/1", token: token)
        #expect(after.status == 401)
        #expect(server.stop() == 0)
        let listed = try JSONValue.parse(try await sandbox.run(["producer", "tokens", "--json"]).stdout)
        #expect(listed[path: "0.name"] == "remote-bot" && listed[path: "0.revoked_at"] != .null)
    }
}

extension Sandbox {
    /// The web server's own key (0600), listed in the sandbox's `allowed_signers` as
    /// `autonomy-web`, beside the operator's; returns its path.
    func addServerKey() throws -> String {
        let serverKey = OpenSSHEd25519Key(comment: "autonomy-web")
        let keyPath = file("server_ed25519")
        try Data(serverKey.openSSHText.utf8).write(to: URL(fileURLWithPath: keyPath))
        chmod(keyPath, 0o600)
        let signers = file("allowed_signers")
        let operators = try String(contentsOfFile: signers, encoding: .utf8)
        try (operators + "autonomy-web \(serverKey.publicKey.openSSH)\n").write(
            toFile: signers, atomically: true, encoding: .utf8)
        return keyPath
    }
}

extension Sandbox {
    /// One dangerous type, `send_email`, run by `handler` (a JSON argv); alerts to `alertLogger`;
    /// pages on `port` signed with a server key (returned). What the one-click tests share.
    func oneClick(port: Int, handler: String) throws -> String {
        let script = try alertLogger()
        let keyPath = try addServerKey()
        try """
        {"version": 1,
         "notify": {"command": ["\(script)"]},
         "approvals": { "allowed_signers": "allowed_signers", "base_url": "http://127.0.0.1:\(port)" },
         "serve": { "signing_key": "server_ed25519" },
         "task_types": {
           "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": \(handler) } },
                           "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
         }}
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        return keyPath
    }
}

/// A free loopback port, found by binding port 0 and letting it go.
func freePort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw CLIFailureInTest("socket: \(errno)") }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
        }
    }
    guard bound else { throw CLIFailureInTest("bind: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

@Suite struct OneClickEndToEndTests {
    @Test func anAlertsLinkShowsThenApprovesSignedByTheServerAndTheWorkerRunsExactlyThatPayload() async throws {
        let port = try freePort()
        let sandbox = try Sandbox(config: "{}")
        let keyPath = try sandbox.oneClick(port: port, handler: #"["/bin/sh", "-c", "cat > sent.json"]"#)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: autonomyBinary)
        process.arguments = ["serve", "--listen", "127.0.0.1:\(port)"]
        var environment = ProcessInfo.processInfo.environment
        environment["AUTONOMY_CONFIG"] = sandbox.configPath
        environment["AUTONOMY_DATABASE"] = sandbox.databasePath
        process.environment = environment
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        // The request's alert is the server's to send, with a link kept under its key: `enqueue`
        // (the worker user) leaves it, and the running server sends it.
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c","body":"hi"}"#])
        #expect(try await eventually { try sandbox.loggedAlerts().contains { $0[path: "event"] == "approval_needed" } })
        let alert = try #require(try sandbox.loggedAlerts().first { $0[path: "event"] == "approval_needed" })
        let link = try #require(alert[path: "approval.links.review"]?.stringValue)
        #expect(link.hasPrefix("http://127.0.0.1:\(port)/r/"))
        let parts = link.split(separator: "#", maxSplits: 1)
        let page = String(parts[0])
        let token = try #require(parts.last.map { String($0.dropFirst("t=".count)) })

        // A link preview and a mail scanner open the link: nothing is decided.
        var opened: HTTPClientResponse?
        for _ in 0..<100 where opened == nil {
            opened = try? await HTTPClient.shared.execute(HTTPClientRequest(url: page), timeout: .seconds(5))
            if opened == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(opened?.status == .ok)
        var head = HTTPClientRequest(url: page)
        head.method = .HEAD
        #expect(try await HTTPClient.shared.execute(head, timeout: .seconds(5)).status == .ok)
        #expect(try sandbox.state(1) == "awaiting_approval")

        func post(_ fields: String, cookie: String? = nil, origin: String = "http://127.0.0.1:\(port)") async throws
            -> HTTPClientResponse
        {
            var request = HTTPClientRequest(url: page)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.headers.add(name: "Origin", value: origin)
            if let cookie { request.headers.add(name: "Cookie", value: "autonomy_csrf=\(cookie)") }
            request.body = .bytes(ByteBuffer(string: fields))
            return try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        }
        let shown = try await post("t=\(token)&action=show")
        #expect(shown.status == .ok)
        let csrf = try #require(
            shown.headers.first(name: "Set-Cookie")?.split(separator: ";").first?.split(separator: "=").last.map(
                String.init))
        // The page's forms send back the payload's hash it showed.
        let sha = try #require(hiddenField("sha256", in: String(buffer: try await shown.body.collect(upTo: 1 << 20))))
        // From another site, with the right token and cookie: refused.
        let foreign = try await post(
            "t=\(token)&action=approve&csrf=\(csrf)&sha256=\(sha)", cookie: csrf, origin: "https://evil.example")
        let stateAfterForeign = try sandbox.state(1)
        #expect(foreign.status == .forbidden && stateAfterForeign == "awaiting_approval")
        let approved = try await post("t=\(token)&action=approve&csrf=\(csrf)&sha256=\(sha)", cookie: csrf)
        #expect(approved.status == .ok)
        // Replayed, the link decides nothing again: it is refused, saying what was decided.
        let replayed = try await post("t=\(token)&action=approve&csrf=\(csrf)&sha256=\(sha)", cookie: csrf)
        #expect(replayed.status == .conflict)
        // The ledger has the key (the server's principal) and the human: the alert the link came by.
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM approvals WHERE decided_by = 'autonomy-web' AND decision_note LIKE 'one-click link from the % alert'"
            ) == 1)
        #expect(
            try sandbox.count("SELECT COUNT(*) FROM ledger WHERE task_id = 1 AND event = 'approval_decided'") == 1)

        // The claim checks the server's signature like an operator's, and runs exactly that payload.
        let work = try await sandbox.run(["work-once", "--drain"])
        #expect(work.status == 0, "\(work.stderr)")
        #expect(try sandbox.state(1) == "done")
        #expect(
            try String(contentsOfFile: sandbox.file("sent.json"), encoding: .utf8) == #"{"body":"hi","to":"a@b.c"}"#)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE task_id = 1 AND event = 'claimed' AND json_extract(detail, '$.approved_by') = 'autonomy-web'"
            ) == 1)
    }
}

/// HTTPS without a proxy: `--tls-cert` and `--tls-key`, a throwaway certificate made by openssl.
/// The red team's way round the firewall: a handler (the worker user) has the server sign for a
/// link the worker made. The worker leaves a request's alert to the server while it may send it;
/// the link the worker sends at last shows the request and decides nothing.
@Suite struct WorkerLinkEndToEndTests {
    @Test func aLinkTheWorkerSentShowsTheRequestAndDecidesNothing() async throws {
        let port = try freePort()
        let sandbox = try Sandbox(config: "{}")
        _ = try sandbox.oneClick(port: port, handler: #"["/bin/true"]"#)
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
        // Left to the server for two minutes: neither `enqueue` nor `work-once` sends it now.
        let now = try await sandbox.run(["work-once"])
        #expect(now.status == 0, "\(now.stderr)")
        #expect(try sandbox.loggedAlerts().isEmpty)
        // No server came: past those minutes, the worker sends it with a link of its own.
        let late = try await sandbox.run(["work-once"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "3m"])
        #expect(late.status == 0, "\(late.stderr)")
        let alert = try #require(try sandbox.loggedAlerts().first { $0[path: "event"] == "approval_needed" })
        let link = try #require(alert[path: "approval.links.review"]?.stringValue)
        let parts = link.split(separator: "#", maxSplits: 1)
        let (page, token) = (String(parts[0]), String(parts[1].dropFirst("t=".count)))

        let server = try RunningServer(sandbox, listen: "127.0.0.1:\(port)")
        defer { _ = server.stop() }
        func post(_ fields: String, cookie: String? = nil) async throws -> HTTPClientResponse {
            var request = HTTPClientRequest(url: page)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.headers.add(name: "Origin", value: "http://127.0.0.1:\(port)")
            if let cookie { request.headers.add(name: "Cookie", value: "autonomy_csrf=\(cookie)") }
            request.body = .bytes(ByteBuffer(string: fields))
            return try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        }
        let shown: HTTPClientResponse? = try await post("t=\(token)&action=show")
        let page200 = try #require(shown)
        #expect(page200.status == .ok)
        let body = String(buffer: try await page200.body.collect(upTo: 1 << 20))
        #expect(body.contains("made without the server") && !body.contains("Approve</button>"), "\(body)")
        let csrf = try #require(
            page200.headers.first(name: "Set-Cookie")?.split(separator: ";").first?.split(separator: "=").last.map(
                String.init))
        let refused = try await post("t=\(token)&action=approve&csrf=\(csrf)", cookie: csrf)
        #expect(refused.status == .forbidden)
        #expect(try sandbox.state(1) == "awaiting_approval")
        #expect(try sandbox.count("SELECT COUNT(*) FROM approvals WHERE decided_at IS NOT NULL") == 0)
    }

    /// A login link is kept under the server's key: who cannot read it makes none.
    @Test func serveLoginWithoutTheServersKeyMakesNoLink() async throws {
        let sandbox = try Sandbox(config: "{}")
        try """
        {"version": 1, "approvals": { "allowed_signers": "allowed_signers" },
         "serve": { "signing_key": "server_ed25519" }}
        """.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        let refused = try await sandbox.run(["serve", "login", "--operator", "elad"])
        #expect(refused.status == 77 && refused.stdout.isEmpty, "\(refused.stderr)")
        #expect(
            refused.stderr.hasPrefix("error: serve.signing_key: ") && refused.stderr.contains("sudo -u autonomy-web"))
        #expect(refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        _ = try sandbox.addServerKey()
        let made = try await sandbox.run(["serve", "login", "--operator", "elad"])
        #expect(made.status == 0 && made.stdout.contains("/login#t="), "\(made.stderr)")
    }
}

@Suite struct ServeTLSTests {
    /// A self-signed certificate for 127.0.0.1, and its key (0600).
    static func certificate(in sandbox: Sandbox) throws -> (certificate: String, key: String) {
        let (certificate, key) = (sandbox.file("cert.pem"), sandbox.file("key.pem"))
        let made = Tool.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out",
                certificate,
            ], timeout: .seconds(120))
        guard made.passed else { throw CLIFailureInTest("openssl req failed: \(made.detail)") }
        chmod(key, 0o600)
        return (certificate, key)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs openssl"))
    func withACertificateItServesHTTPSOnly() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "producers": { "users": { "remote-bot": { "types": ["report"] } } },
                 "task_types": { "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } } }}
                """)
        let (certificate, key) = try Self.certificate(in: sandbox)
        let token = try await sandbox.run(["producer", "token", "remote-bot"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try RunningServer(sandbox, arguments: ["--tls-cert", certificate, "--tls-key", key])
        defer { _ = server.stop() }
        #expect(server.scheme == "https")
        // A client that trusts this certificate, and only it.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificate))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        let created = try await server.send(
            "POST", "/api/v1/tasks", token: token, body: #"{"type": "report"}"#, client: client)
        #expect(created.status == 201 && created.json[path: "source"] == "remote-bot")
        // Plain HTTP on the same port gets no answer; a client that does not trust it is refused.
        var plain = HTTPClientRequest(url: "http://\(server.address)/api/v1/tasks")
        plain.headers.add(name: "Authorization", value: "Bearer \(token)")
        await #expect(throws: (any Error).self) {
            _ = try await HTTPClient.shared.execute(plain, timeout: .seconds(10))
        }
        await #expect(throws: (any Error).self) {
            _ = try await server.send("GET", "/api/v1/tasks", token: token)
        }
        try await client.shutdown()
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs openssl"))
    func aBadCertificateOrKeyIsOneLineAndNoServer() async throws {
        let sandbox = try Sandbox(config: #"{"version": 1}"#)
        let (certificate, key) = try Self.certificate(in: sandbox)
        let alone = try await sandbox.run(["serve", "--listen", "127.0.0.1:0", "--tls-cert", certificate])
        #expect(alone.status == 64 && alone.stderr.contains("go together"), "\(alone.stderr)")
        chmod(key, 0o640)  // the group is the worker's: handlers could read it
        let readable = try await sandbox.run([
            "serve", "--listen", "127.0.0.1:0", "--tls-cert", certificate, "--tls-key", key,
        ])
        #expect(readable.status == 78 && readable.stderr.contains("chmod 600"), "\(readable.stderr)")
        chmod(key, 0o600)
        // A folder is not a key: said as such, not with a chmod that would not help.
        let folder = try await sandbox.run([
            "serve", "--listen", "127.0.0.1:0", "--tls-cert", certificate, "--tls-key", sandbox.path,
        ])
        #expect(folder.status == 78 && folder.stderr.contains("is a folder"), "\(folder.stderr)")
        #expect(!folder.stderr.contains("chmod") && folder.stderr.split(separator: "\n").count == 1)
        // Another certificate's key: said at start, not at the first handshake.
        let elsewhere = try Sandbox(config: #"{"version": 1}"#)
        let other = try Self.certificate(in: elsewhere)
        let mismatched = try await sandbox.run(
            ["serve", "--listen", "127.0.0.1:0", "--tls-cert", certificate, "--tls-key", other.key])
        #expect(mismatched.status == 78 && mismatched.stderr.contains("does not go with"), "\(mismatched.stderr)")
        let garbage = sandbox.file("garbage.pem")
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        for (cert, keyFile, named) in [(garbage, key, "--tls-cert"), (certificate, garbage, "--tls-key")] {
            chmod(garbage, 0o600)
            let bad = try await sandbox.run([
                "serve", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", keyFile,
            ])
            #expect(bad.status == 78 && bad.stderr.hasPrefix("error: \(named)"), "\(bad.stderr)")
            #expect(bad.stderr.split(separator: "\n").count == 1 && !bad.stderr.contains("Fatal"))
        }
    }
}

@Suite struct ServeKeyTests {
    /// The server's key must be its own user's alone; a key others may read is refused at start.
    @Test func aSigningKeyOthersCanReadIsRefused() async throws {
        let sandbox = try Sandbox(
            config:
                #"{"version": 1, "serve": {"signing_key": "server_ed25519"}, "approvals": {"allowed_signers": "allowed_signers"}}"#
        )
        let key = sandbox.file("server_ed25519")
        try Data(OpenSSHEd25519Key(comment: "autonomy-web").openSSHText.utf8).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o640)
        let refused = try await sandbox.run(["serve", "--listen", "127.0.0.1:0"])
        #expect(refused.status == 78 && refused.stderr.contains("chmod 600"), "\(refused.stderr)")
    }

    /// Where the tests run as root: the key, 0600 and owned by the server's user, is not readable
    /// by another user (the worker's, here nobody), while the database with group_access is 0660.
    @Test(.enabled(if: geteuid() == 0, "needs root to act as another user"))
    func theServersKeyIsNotReadableByTheWorkerUser() async throws {
        let sandbox = try Sandbox(
            config:
                #"{"version": 1, "store": {"group_access": true}, "task_types": {"nothing": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}"#
        )
        _ = try await sandbox.run(["status"])  // creates nothing: status only reads
        _ = try await sandbox.run(["enqueue", "undeclared"])  // nor does a refused enqueue
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))
        _ = try await sandbox.run(["enqueue", "nothing"])  // the database exists now
        var info = stat()
        #expect(stat(sandbox.databasePath, &info) == 0 && info.st_mode & 0o777 == 0o660)
        let key = sandbox.file("server_ed25519")
        try Data(OpenSSHEd25519Key(comment: "autonomy-web").openSSHText.utf8).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o600)
        chmod(sandbox.path, 0o755)
        let read = Tool.run(
            "/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/cat", key],
            timeout: .seconds(60))
        #expect(!read.passed && read.stdout.isEmpty && read.stderr.contains("Permission denied"), "\(read.detail)")
    }
}

@Suite struct OperatorSessionEndToEndTests {
    /// An operator logs in with the printed link, approves through the API, and the worker's claim
    /// checks the server's signature like any operator's; a producer's token cannot approve.
    @Test func aSessionApprovesAndTheClaimVerifiesIt() async throws {
        let sandbox = try Sandbox(config: "{}")
        let keyPath = try sandbox.addServerKey()
        try """
        {"version": 1,
         "approvals": { "allowed_signers": "allowed_signers" },
         "serve": { "signing_key": "server_ed25519" },
         "producers": { "users": { "remote-bot": { "types": ["send_email"] } } },
         "task_types": {
           "send_email": { "safety": "dangerous",
                           "handler": { "exec": { "argv": ["/bin/sh", "-c", "cat > sent.json"] } },
                           "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
         }}
        """.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        let token = try await sandbox.run(["producer", "token", "remote-bot"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let notOperator = try await sandbox.run(["serve", "login", "--operator", "remote-bot"])
        #expect(notOperator.status == 77, "\(notOperator.stderr)")
        let printed = try await sandbox.run(["serve", "login", "--operator", "elad"])
        #expect(printed.status == 0, "\(printed.stderr)")
        let login = try #require(
            printed.stdout.split(separator: "#t=").last.map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            })

        let server = try RunningServer(sandbox)
        defer { _ = server.stop() }
        let created = try await server.send(
            "POST", "/api/v1/tasks", token: token, body: #"{"type": "send_email", "payload": {"to": "a@b.c"}}"#)
        #expect(created.status == 201 && created.json[path: "state"] == "awaiting_approval")
        let approvals = try JSONValue.parse(try await sandbox.run(["approvals", "--json"]).stdout)
        guard case .int(let request)? = approvals[path: "0.id"] else { throw CLIFailureInTest("no request") }
        // A producer's token cannot approve.
        let byProducer = try await server.send("POST", "/api/v1/approvals/\(request)/approve", token: token)
        #expect(byProducer.status == 403)

        var opening = HTTPClientRequest(url: "http://\(server.address)/login")
        opening.method = .POST
        opening.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        opening.headers.add(name: "Origin", value: "http://\(server.address)")
        opening.body = .bytes(ByteBuffer(string: "t=\(login)"))
        let opened = try await HTTPClient.shared.execute(opening, timeout: .seconds(10))
        #expect(opened.status == .ok)
        let cookie = try #require(
            opened.headers.first(name: "Set-Cookie")?.split(separator: ";").first.map(String.init))
        var approving = HTTPClientRequest(url: "http://\(server.address)/api/v1/approvals/\(request)/approve")
        approving.method = .POST
        approving.headers.add(name: "Cookie", value: cookie)
        approving.headers.add(name: "Origin", value: "http://\(server.address)")
        approving.headers.add(name: "Content-Type", value: "application/json")
        let approved = try await HTTPClient.shared.execute(approving, timeout: .seconds(10))
        #expect(approved.status == .ok)

        let work = try await sandbox.run(["work-once", "--drain"])
        #expect(work.status == 0, "\(work.stderr)")
        #expect(try sandbox.state(1) == "done")
        #expect(try String(contentsOfFile: sandbox.file("sent.json"), encoding: .utf8) == #"{"to":"a@b.c"}"#)
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE task_id = 1 AND event = 'claimed' AND json_extract(detail, '$.approved_by') = 'autonomy-web'"
            ) == 1)
        let sessions = try JSONValue.parse(try await sandbox.run(["serve", "sessions", "--json"]).stdout)
        #expect(sessions[path: "0.operator"] == "elad" && sessions[path: "0.opened_at"] != .null)
    }
}
