import AutonomyCore
import AutonomyTestSupport
import Foundation
import Testing

@Suite struct VerificationEndToEndTests {
    /// The handler does its side effect, then its worker is SIGKILLed before it records anything.
    /// After the lease, the next work-once verifies, finds the evidence, and marks the task done:
    /// the side effect exists exactly once.
    @Test func aCrashNeverSendsTheSameEmailTwice() async throws {
        let sandbox = try Sandbox(
            config: """
                {
                  "version": 1,
                  "worker": { "lease": "60s" },
                  "task_types": {
                    "send_email": {
                      "safety": "safe",
                      "handler": { "exec": { "argv": ["/bin/sh", "-c",
                        "echo \\"$AUTONOMY_TASK_ID\\" >> sent.txt; kill -9 $PPID; sleep 1"] } },
                      "verify": [ { "command": { "argv": ["/bin/sh", "-c", "grep -qx \\"$AUTONOMY_TASK_ID\\" sent.txt"] } } ],
                      "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
                    }
                  }
                }
                """)
        let id = try await sandbox.run(["enqueue", "send_email", "--payload", #"{"to":"a@b.c"}"#])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let crashed = try await sandbox.run(["work-once"])
        #expect(crashed.status == 128 + SIGKILL)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'") == 1)

        let later = try await sandbox.run(["work-once", "--drain"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "61s"])
        #expect(later.status == 0, "\(later.stderr)")
        #expect(later.stdout.contains("recovered task \(id)") && later.stdout.contains(": done"))
        let sent = try String(contentsOfFile: sandbox.file("sent.txt"), encoding: .utf8).split(separator: "\n")
        #expect(sent == [Substring(id)])  // exactly once
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'verified'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'claimed'") == 1)  // never run again
    }

    func check(_ http: String, server: LoopbackHTTPServer, attempts: Int = 1) async throws -> CheckResult {
        let map = try ConfigLoader.parse(
            Data(
                """
                {"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}},
                 "verify": [{"http": \(http), "attempts": \(attempts), "interval": "0s"}]}}}
                """.utf8))
        let type = try #require(map.configuration.taskTypes["t"])
        let runner = VerificationRunner(
            runner: ExecRunner(settings: WorkerSettings()), baseDirectory: "/", pause: { _ in })
        let task = TaskRecord.sample(type: "t", payload: #"{"id":"INV 42/7"}"#, result: nil, now: 0)
        return try #require(
            await runner.verify(
                VerificationSubject(task: task, result: ["message_id": "m-1"], attemptStartedAt: 0), with: type.verify
            ).first)
    }

    @Test func anHTTPVerifierNeedsTheRightStatusAndEvidenceInTheBody() async throws {
        let server = try LoopbackHTTPServer(
            statuses: [200, 200, 200, 404, 503, 503],
            bodies: [#"{"status":"sent"}"#, #"{"status":"queued"}"#, ""])
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/messages/{{result.message_id}}?invoice={{payload.id}}"
        let withBody = #"{"url": "\#(url)", "body": {"path": "status", "equals": "sent"}}"#
        let pass = try await check(withBody, server: server)
        #expect(pass.outcome == .pass && pass.evidence.contains("status"))
        #expect(server.requests.first?.path == "/messages/m-1?invoice=INV%2042%2F7")  // encoded, never raw
        #expect(try await check(withBody, server: server).outcome == .fail)  // wrong value
        let empty = try await check(withBody, server: server)
        #expect(empty.outcome == .fail && empty.evidence.contains("empty body"))
        #expect(try await check(#"{"url": "\#(url)"}"#, server: server).outcome == .fail)  // 404
        let unsure = try await check(#"{"url": "\#(url)"}"#, server: server, attempts: 2)
        #expect(unsure.outcome == .inconclusive && unsure.looks == 2)  // 503 twice
    }

    @Test func aRedirectIsNeverFollowedForEvidence() async throws {
        let elsewhere = try LoopbackHTTPServer(bodies: [#"{"status":"sent"}"#])
        defer { elsewhere.stop() }
        let server = try LoopbackHTTPServer(
            statuses: [302], extraHeaders: "Location: http://127.0.0.1:\(elsewhere.port)/evidence\r\n")
        defer { server.stop() }
        let result = try await check(#"{"url": "http://127.0.0.1:\#(server.port)/m"}"#, server: server)
        #expect(result.outcome == .fail && result.evidence.contains("redirects are not followed"))
        #expect(elsewhere.requests.isEmpty)
    }

    @Test func anHTTPVerifierWithoutABodyAssertionStillNeedsAnAnswer() async throws {
        let server = try LoopbackHTTPServer(statuses: [200, 200, 200], bodies: ["", #"{"ok":1}"#, ""])
        defer { server.stop() }
        let url = "http://127.0.0.1:\(server.port)/q/{{payload.id}}"
        let empty = try await check(#"{"url": "\#(url)"}"#, server: server)
        #expect(empty.outcome == .fail)  // 200 with nothing in it is no evidence
        #expect(try await check(#"{"url": "\#(url)"}"#, server: server).outcome == .pass)
        #expect(try await check(#"{"url": "\#(url)", "method": "HEAD"}"#, server: server).outcome == .pass)
        #expect(server.requests.last?.method == "HEAD")
        // Task data never chooses the host.
        #expect(throws: ConfigError.self) {
            _ = try ConfigLoader.parse(
                Data(
                    """
                    {"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}},
                     "verify": [{"http": {"url": "https://{{payload.host}}/status"}}]}}}
                    """.utf8))
        }
    }

    @Test func verifyDryRunTriesAVerifierWithoutAQueue() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "task_types": {"report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}},
                  "verify": [{"json": {"path": "bytes", "min": 1}}]}}}
                """)
        let good = try await sandbox.run(["verify", "--dry-run", "report", "--result", #"{"bytes": 120}"#])
        #expect(good.status == 0 && good.stdout.contains("1. json: pass"))
        let bad = try await sandbox.run(["verify", "--dry-run", "report", "--result", #"{"bytes": 0}"#])
        #expect(bad.status == 1 && bad.stdout.contains("1. json: fail"))
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))
    }
}
