import AutonomyCore
import Foundation
import GRDB
import Testing

/// An OpenAI-compatible chat-completions endpoint on loopback.
func completion(_ text: String, input: Int? = 10, output: Int? = 5) -> String {
    let usage = input.map { #","usage":{"prompt_tokens":\#($0),"completion_tokens":\#(output ?? 0)}"# } ?? ""
    return
        #"{"choices":[{"message":{"role":"assistant","content":\#(JSONValue.string(text).canonicalText)}}]\#(usage)}"#
}

func number(_ value: JSONValue?) -> Double {
    switch value {
    case .double(let number)?: return number
    case .int(let number)?: return Double(number)
    default: return -1
    }
}

@Suite struct GatewayEndToEndTests {
    func model(
        _ name: String, _ server: LoopbackHTTPServer, tier: String, input: Double, output: Double,
        maxTokens: Int = 100, keyEnv: String? = nil
    ) -> String {
        let key = keyEnv.map { #", "api_key_env": "\#($0)""# } ?? ""
        return """
            {"name": "\(name)", "provider": "openai", "base_url": "http://127.0.0.1:\(server.port)/v1", "model": "\(name)-id",
             "tier": "\(tier)", "input_usd_per_million": \(input), "output_usd_per_million": \(output),
             "max_tokens": \(maxTokens), "timeout": "10s"\(key)}
            """
    }

    func config(
        cap: Double, soft: Double = 0.8, models: [String], types: String = "{}", window: String = "day"
    ) -> String {
        """
        {"version": 1, "gateway": {"daily_cap_usd": \(cap), "soft_cap_ratio": \(soft), "window": "\(window)",
                                   "models": [\(models.joined(separator: ","))]},
         "task_types": \(types)}
        """
    }

    func spent(_ sandbox: Sandbox) throws -> Double {
        let queue = try DatabaseQueue(path: sandbox.databasePath)
        return try queue.read { db in
            try Double.fetchOne(db, sql: "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls") ?? 0
        }
    }

    /// The red team's leak: a caller killed mid-call never settles; its reservation must not simply
    /// vanish from the day's total when it times out.
    @Test func aCallerKilledMidCallIsChargedItsReservation() async throws {
        let server = try LoopbackHTTPServer(bodies: [completion("late")], delay: .seconds(20))
        defer { server.stop() }
        let sandbox = try Sandbox(
            config: config(
                cap: 5, models: [model("mini", server, tier: "cheap", input: 1, output: 2, maxTokens: 100)],
                // Eleven minutes later must be the same budget window, even when the test runs at 23:55.
                window: "rolling24h"))
        // work-once creates the database (budget, a reader, would not): it exists before the call.
        #expect(try await sandbox.run(["work-once"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: sandbox.databasePath))
        let caller = Process()
        caller.executableURL = URL(fileURLWithPath: autonomyBinary)
        caller.arguments = ["llm", "--tier", "cheap", "hello"]
        var environment = ProcessInfo.processInfo.environment
        environment["AUTONOMY_CONFIG"] = sandbox.configPath
        environment["AUTONOMY_DATABASE"] = sandbox.databasePath
        caller.environment = environment
        caller.standardOutput = FileHandle.nullDevice
        caller.standardError = FileHandle.nullDevice
        try caller.run()
        #expect(try await eventually { !server.requests.isEmpty })  // the provider has the request
        kill(caller.processIdentifier, SIGKILL)
        caller.waitUntilExit()
        let reservation = Double(5 + 256 + 64) * 1 / 1_000_000 + 100.0 * 2 / 1_000_000
        let during = try JSONValue.parse(try await sandbox.run(["budget", "--json"]).stdout)
        #expect(abs(number(during[path: "reserved_usd"]) - reservation) < 1e-9)
        // After the model's timeout (10s) and the reservation timeout (10m), it is spent, not released.
        let later = ["AUTONOMY_TEST_CLOCK_OFFSET": "11m"]
        let after = try JSONValue.parse(try await sandbox.run(["budget", "--json"], environment: later).stdout)
        #expect(abs(number(after[path: "spent_usd"]) - reservation) < 1e-9, "\(after.canonicalText)")
        #expect(number(after[path: "reserved_usd"]) == 0)
        // The next work-once charges it for good, with a ledger row.
        #expect(try await sandbox.run(["work-once"], environment: later).status == 0)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'llm_call' AND cost_usd > 0") == 1)
    }

    @Test func llmReadsTheConfigurationOnceSoEachWarningPrintsOnce() async throws {
        let sandbox = try Sandbox(
            config: #"""
                {"version": 1, "bogus": 1, "gateway": {"models": [{"name": "m", "tier": "free",
                  "base_url": "http://127.0.0.1:1/v1", "model": "x", "input_usd_per_million": 0,
                  "output_usd_per_million": 0}]}}
                """#)
        let result = try await sandbox.run(["llm", "hi"])
        #expect(result.status == 69)
        #expect(result.stderrLines.filter { $0.hasPrefix("warning: bogus") }.count == 1, "\(result.stderr)")
    }

    @Test func costComesFromUsageAndAnAnswerWithoutUsageIsChargedTheReservation() async throws {
        let server = try LoopbackHTTPServer(bodies: [
            completion("hello", input: 1000, output: 500), completion("again", input: nil),
        ])
        defer { server.stop() }
        // $1 per million in, $2 per million out.
        let sandbox = try Sandbox(
            config: config(cap: 5, models: [model("mini", server, tier: "cheap", input: 1, output: 2)]))
        let first = try await sandbox.run(["llm", "--tier", "cheap", "--json", "say hello"])
        #expect(first.status == 0, "\(first.stderr)")
        let answer = try JSONValue.parse(first.stdout)
        #expect(answer[path: "text"] == "hello" && answer[path: "model"] == "mini")
        #expect(abs(try spent(sandbox) - 0.002) < 1e-9)  // 1000 × $1/M + 500 × $2/M
        let second = try await sandbox.run(["llm", "--tier", "cheap", "--max-tokens", "50", "again"])
        #expect(second.stdout == "again\n")
        // No usage: charged its reservation, (5 prompt bytes + 256 + 64 of framing) in and 50 out.
        let reservation = Double(5 + 256 + 64) * 1 / 1_000_000 + 50.0 * 2 / 1_000_000
        #expect(abs(try spent(sandbox) - 0.002 - reservation) < 1e-9)
        let budget = try JSONValue.parse(try await sandbox.run(["budget", "--json"]).stdout)
        #expect(budget[path: "models.0.calls"] == 2)
    }

    @Test func anUnpricedModelIsAConfigError() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "gateway": {"models": [{"name": "m", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tier": "cheap"}]}}
                """)
        let check = try await sandbox.run(["config", "check"])
        #expect(check.status == 78)
        #expect(check.stderr.contains("gateway.models[0].input_usd_per_million: missing"))
    }

    @Test func fiftyConcurrentCallsNeverSpendPastTheCap() async throws {
        // Each call reserves up to 2000 output tokens at $100/M = $0.20; the cap fits five.
        let server = try LoopbackHTTPServer(defaultBody: completion("ok", input: 10, output: 2000))
        defer { server.stop() }
        let sandbox = try Sandbox(
            config: config(
                cap: 1.0, soft: 1.0,
                models: [
                    model("paid", server, tier: "cheap", input: 0, output: 100, maxTokens: 2000)
                ]))
        _ = try await sandbox.run(["budget"])  // create the database before the rush
        _ = try await sandbox.run(["enqueue", "--batch", "-"], stdin: "")
        let results = try await withThrowingTaskGroup(of: CLIResult.self) { group in
            for index in 0..<50 {
                group.addTask { try await sandbox.run(["llm", "--tier", "cheap", "call \(index)"]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let answered = results.filter { $0.status == 0 }.count
        let refused = results.filter { $0.status == 69 }.count
        #expect(answered + refused == 50)
        #expect(answered >= 1 && answered <= 5)
        #expect(refused >= 45)
        #expect(
            results.filter { $0.status == 69 }.allSatisfy { $0.stderr.contains("daily cost cap") },
            "\(results.filter { $0.status == 69 && !$0.stderr.contains("daily cost cap") }.map(\.stderr))")
        #expect(try spent(sandbox) <= 1.0 + 1e-9)
    }

    @Test func aboveTheSoftCapAutoUsesFreeAndAtTheCapOnlyFreeWorks() async throws {
        let free = try LoopbackHTTPServer(defaultBody: completion("from free", input: 10, output: 10))
        let paid = try LoopbackHTTPServer(defaultBody: completion("from paid", input: 10, output: 1000))
        defer {
            free.stop()
            paid.stop()
        }
        // $600/M both ways: one paid answer of 10 + 1000 tokens costs about $0.61.
        let sandbox = try Sandbox(
            config: config(
                cap: 1.0, soft: 0.5,
                models: [
                    model("local", free, tier: "free", input: 0, output: 0),
                    model("cloud", paid, tier: "cheap", input: 600, output: 600, maxTokens: 1000),
                ]))
        let cheap = try JSONValue.parse(try await sandbox.run(["llm", "--tier", "cheap", "--json", "x"]).stdout)
        #expect(cheap[path: "model"] == "cloud")
        // $0.61 spent, above the $0.50 soft cap: auto (and cheap) go to the free model.
        let auto = try JSONValue.parse(try await sandbox.run(["llm", "--json", "y"]).stdout)
        #expect(auto[path: "model"] == "local")
        // A strong request falls back to cheap, whose $0.80 worst case does not fit the $0.39 left:
        // refused, and no cheaper model stands in for a paid one.
        let strong = try await sandbox.run(["llm", "--tier", "strong", "z"])
        #expect(strong.status == 69 && strong.stderr.contains("daily cost cap"))
        // Free calls keep working.
        let freeCall = try JSONValue.parse(try await sandbox.run(["llm", "--tier", "free", "--json", "w"]).stdout)
        #expect(freeCall[path: "model"] == "local")
        #expect(try spent(sandbox) <= 1.0)
    }

    @Test func aRefusalThatIsNotAnOutageDoesNotFallBack() async throws {
        let unauthorized = try LoopbackHTTPServer(statuses: [401], defaultBody: "{}")
        let other = try LoopbackHTTPServer(defaultBody: completion("never"))
        defer {
            unauthorized.stop()
            other.stop()
        }
        let sandbox = try Sandbox(
            config: config(
                cap: 5,
                models: [
                    model("a", unauthorized, tier: "cheap", input: 1, output: 1),
                    model("b", other, tier: "cheap", input: 1, output: 1),
                ]))
        let answer = try await sandbox.run(["llm", "--tier", "cheap", "hi"])
        #expect(answer.status == 69 && answer.stderr.contains("HTTP 401"))
        #expect(other.requests.isEmpty)
        #expect(try spent(sandbox) == 0)
    }

    @Test func atTheCapNonCriticalLLMTasksWaitForTomorrowAndCriticalOnesFail() async throws {
        let paid = try LoopbackHTTPServer(defaultBody: completion("done"))
        defer { paid.stop() }
        let types = """
            {"summary": {"safety": "safe", "handler": {"llm": {"prompt": "Sum up {{payload.text}}", "tier": "cheap"}},
                         "retry": {"max_attempts": 1}},
             "urgent": {"safety": "safe", "critical": true, "handler": {"llm": {"prompt": "Now: {{payload.text}}", "tier": "cheap"}},
                        "retry": {"max_attempts": 1}}}
            """
        let sandbox = try Sandbox(
            config: config(
                cap: 0, models: [model("cloud", paid, tier: "cheap", input: 1, output: 1)],
                types: types))
        _ = try await sandbox.run(["enqueue", "summary", "--payload", #"{"text":"a"}"#])
        _ = try await sandbox.run(["enqueue", "urgent", "--payload", #"{"text":"b"}"#])
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(
            try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'summary' AND state = 'queued' AND attempts = 0")
                == 1,
            "\(run.stdout)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'deferred'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE type = 'urgent' AND state = 'dead'") == 1)
        #expect(paid.requests.isEmpty)  // nothing paid was called
    }

    @Test func failuresFallBackAndTheKeyNeverLeaks() async throws {
        let broken = try LoopbackHTTPServer(statuses: [500, 429], defaultBody: "{}")
        let good = try LoopbackHTTPServer(defaultBody: completion("from the second"))
        defer {
            broken.stop()
            good.stop()
        }
        let secret = "sk-test-\(UUID().uuidString)"
        let sandbox = try Sandbox(
            config: config(
                cap: 5,
                models: [
                    model("flaky", broken, tier: "cheap", input: 1, output: 1, keyEnv: "FLAKY_KEY"),
                    model("steady", good, tier: "cheap", input: 1, output: 1, keyEnv: "STEADY_KEY"),
                ]))
        let environment = ["FLAKY_KEY": secret, "STEADY_KEY": secret]
        var outputs: [String] = []
        for _ in 0..<2 {  // once on a 500, once on a 429
            let answer = try await sandbox.run(["llm", "--tier", "cheap", "--json", "hi"], environment: environment)
            #expect(answer.status == 0, "\(answer.stderr)")
            let value = try JSONValue.parse(answer.stdout)
            #expect(value[path: "model"] == "steady")
            outputs.append(answer.stdout + answer.stderr)
        }
        #expect(broken.requests.count == 2 && good.requests.count == 2)
        #expect(good.requests.first?.headers["authorization"] == "Bearer \(secret)")
        outputs.append(try await sandbox.run(["budget", "--json"]).stdout)
        outputs.append(try await sandbox.run(["ledger", "export"]).stdout)
        #expect(!outputs.contains { $0.contains(secret) })
        for file in try FileManager.default.contentsOfDirectory(atPath: sandbox.path) {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: sandbox.file(file)))
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(file) holds the key")
        }
    }

    @Test func aFailedVerificationEscalatesOneTierUp() async throws {
        let free = try LoopbackHTTPServer(defaultBody: completion(#"{"ok":false}"#))
        let cheap = try LoopbackHTTPServer(defaultBody: completion(#"{"ok":true}"#))
        defer {
            free.stop()
            cheap.stop()
        }
        let types = """
            {"answer": {"safety": "safe", "handler": {"llm": {"prompt": "Is {{payload.q}} ok?"}},
                        "verify": [{"json": {"path": "ok", "equals": true}}],
                        "retry": {"max_attempts": 2, "backoff": "0s", "jitter": 0}}}
            """
        let sandbox = try Sandbox(
            config: config(
                cap: 5,
                models: [
                    model("local", free, tier: "free", input: 0, output: 0),
                    model("cloud", cheap, tier: "cheap", input: 1, output: 1),
                ], types: types))
        _ = try await sandbox.run(["enqueue", "answer", "--payload", #"{"q":"this"}"#])
        let run = try await sandbox.run(["work-once", "--drain"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done' AND attempts = 2") == 1)
        #expect(free.requests.count == 1 && cheap.requests.count == 1)
        let prompt = try JSONValue.parse(try #require(free.requests.first).body)
        #expect(prompt[path: "messages.0.content"] == "Is this ok?")
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'llm_call' AND cost_usd > 0") == 1)
    }
}
