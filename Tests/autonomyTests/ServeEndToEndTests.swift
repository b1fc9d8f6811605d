import AsyncHTTPClient
import AutonomyCore
import Foundation
import NIOCore
import Testing

/// `autonomy serve` as it runs: a process on a loopback port, found by what it prints.
final class RunningServer: Sendable {
    let process: Process
    let address: String

    init(_ sandbox: Sandbox) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: autonomyBinary)
        process.arguments = ["serve", "--listen", "127.0.0.1:0"]
        var environment = ProcessInfo.processInfo.environment
        environment["AUTONOMY_CONFIG"] = sandbox.configPath
        environment["AUTONOMY_DATABASE"] = sandbox.databasePath
        environment["HOME"] = sandbox.path
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
        // The first line says where it listens: read until it does.
        var seen = Data()
        let deadline = Date().addingTimeInterval(30)
        while !String(decoding: seen, as: UTF8.self).contains("\n"), Date() < deadline, process.isRunning {
            seen += errors.fileHandleForReading.availableData
        }
        let text = String(decoding: seen, as: UTF8.self)
        guard let range = text.range(of: "listening on http://") else {
            process.terminate()
            throw CLIFailureInTest("serve did not start: \(text)")
        }
        address = String(text[range.upperBound...].prefix { !$0.isWhitespace })
    }

    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Sends one request; returns the status and the body parsed as JSON.
    func send(
        _ method: String, _ path: String, token: String?, headers: [(String, String)] = [],
        body: String? = nil
    ) async throws -> (status: Int, json: JSONValue) {
        var request = HTTPClientRequest(url: "http://\(address)\(path)")
        request.method = .init(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
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
