import AutonomyCore
import AutonomyTestSupport
import Foundation
import Testing

/// An answer whose headers arrive and whose body never does is no answer: each caller gives up
/// within its own time limit, not the HTTP client's (60s) nor the server's stall. (The webhook's
/// case is `FirewallEndToEndTests.aWebhookThatRedirectsOrStallsItsBodyIsAFailureWithinItsTimeout`.)
@Suite struct StalledAnswerTests {
    /// Far longer than any time limit below: a caller that waits for it fails the bound. The bound
    /// is generous (the limits are 1s) because a full parallel run on two cores can keep a time-out's
    /// task waiting for a thread for many seconds (seen: 15.9s); it still tells a caller that gives
    /// up at its own limit from one that waits for the server.
    static let stall: Duration = .seconds(120)
    static let bound: Duration = .seconds(60)

    @Test func anHTTPVerifierWhoseBodyStallsIsInconclusiveWithinItsTimeout() async throws {
        let server = try LoopbackHTTPServer(stallBody: Self.stall)
        defer { server.stop() }
        let map = try ConfigLoader.parse(
            Data(
                """
                {"version": 1, "task_types": {"t": {"safety": "safe", "handler": {"exec": {"argv": ["x"]}},
                 "verify": [{"http": {"url": "\(server.url)", "timeout": "1s"}, "attempts": 1}]}}}
                """.utf8))
        let type = try #require(map.configuration.taskTypes["t"])
        let runner = VerificationRunner(
            runner: ExecRunner(settings: WorkerSettings()), baseDirectory: "/", pause: { _ in })
        let task = TaskRecord.sample(type: "t", payload: "{}", result: nil, now: 0)

        let started = ContinuousClock.now
        let checks = await runner.verify(
            VerificationSubject(task: task, result: nil, attemptStartedAt: 0), with: type.verify)
        let elapsed = ContinuousClock.now - started

        let check = try #require(checks.first)
        #expect(check.outcome == .inconclusive)
        #expect(check.evidence == "no complete answer within 1s")
        #expect(server.requests.count == 1)  // the headers came: it was the body that stalled
        #expect(elapsed < Self.bound, "the verifier waited \(elapsed) for a body that never came")
    }

    @Test func aModelWhoseAnswerStallsFailsWithinItsTimeout() async throws {
        let server = try LoopbackHTTPServer(stallBody: Self.stall)
        defer { server.stop() }
        let sandbox = try Sandbox(config: "{}")
        let loaded = try ConfigLoader.parse(
            Data(
                """
                {"version": 1, "gateway": {"daily_cap_usd": 1, "models": [
                  {"name": "mini", "base_url": "http://127.0.0.1:\(server.port)/v1", "model": "m", "tier": "cheap",
                   "input_usd_per_million": 1, "output_usd_per_million": 2, "max_tokens": 10, "timeout": "1s"}]}}
                """.utf8))
        let store = try AutonomyStore(path: sandbox.databasePath)
        let gateway = ModelGateway(store: store, configuration: loaded.configuration, environment: [:])

        let started = ContinuousClock.now
        var failure: GatewayError?
        do {
            let answer = try await gateway.complete(LLMRequest(prompt: "hello", tier: .cheap))
            Issue.record("a stalled answer was taken as \(answer.text)")
        } catch {
            failure = error
        }
        let elapsed = ContinuousClock.now - started

        #expect(failure?.description == "every model failed: mini: no answer within 1s")
        #expect(server.requests.count == 1)
        #expect(elapsed < Self.bound, "the gateway waited \(elapsed) for a body that never came")
        // The provider may have done the work: the call is settled at its reservation, not left open.
        #expect(try sandbox.count("SELECT COUNT(*) FROM llm_calls WHERE state = 'settled' AND cost_usd > 0") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM llm_calls WHERE state = 'reserved'") == 0)
    }
}
