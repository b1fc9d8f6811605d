import AutonomyCore
import Foundation
import GRDB
import Testing

/// Who asked for what, from the command line: `sources`, `subjects`, `subject NAME`.
@Suite struct PeopleEndToEndTests {
    static let config = """
        {"version": 1,
         "producers": { "users": { "sales-bot": { "types": ["report", "fail"] }, "idle-bot": { "types": ["report"] } } },
         "task_types": {
           "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
           "fail": { "safety": "safe", "retry": { "max_attempts": 1 }, "handler": { "exec": { "argv": ["/bin/false"] } } }
         }}
        """

    @Test func sourcesAndSubjectsSayWhoAskedForWhatAndWhatItCost() async throws {
        let sandbox = try Sandbox(config: Self.config)
        for (type, subject) in [("report", "Acme Corp"), ("fail", "Acme Corp"), ("report", "Globex")] {
            let made = try await sandbox.run(["enqueue", type, "--source", "sales-bot", "--subject", subject])
            #expect(made.status == 0, "\(made.stderr)")
        }
        _ = try await sandbox.run(["enqueue", "report", "--source", "cron", "--subject", "Globex"])
        #expect(try await sandbox.run(["work-once", "--drain"]).status == 0)
        // A paid model call charged to the failed task, as the gateway records it.
        let queue = try DatabaseQueue(path: sandbox.databasePath)
        try await queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO llm_calls (task_id, model, tier, state, reserved_usd, cost_usd, started_at, expires_at)
                    VALUES (2, 'paid', 'paid', 'settled', 0.5, 0.25, 1, 2)
                    """)
        }

        let sources = try JSONValue.parse(try await sandbox.run(["sources", "--json"]).stdout)
        guard case .array(let list) = sources else {
            Issue.record("not a list: \(sources)")
            return
        }
        let sales = try #require(list.first { $0[path: "name"] == "sales-bot" })
        #expect(sales[path: "tasks"] == 3 && sales[path: "by_state.done"] == 2 && sales[path: "by_state.dead"] == 1)
        #expect(sales[path: "cost_usd"] == .double(0.25) && sales[path: "listed"] == true)
        guard case .double(let rate)? = sales[path: "success_rate"] else {
            Issue.record("no rate")
            return
        }
        #expect(abs(rate - 2.0 / 3.0) < 0.001)
        // A listed producer with nothing yet, and one no longer (or never) listed, both show.
        #expect(list.contains { $0[path: "name"] == "idle-bot" && $0[path: "tasks"] == 0 })
        #expect(list.contains { $0[path: "name"] == "cron" && $0[path: "listed"] == false })
        let text = try await sandbox.run(["sources"])
        #expect(text.stdout.contains("sales-bot: 3 tasks, 67% ok, $0.25"), "\(text.stdout)")

        let subjects = try JSONValue.parse(try await sandbox.run(["subjects", "--json"]).stdout)
        #expect(subjects[path: "0.name"] != nil)
        let acme = try JSONValue.parse(try await sandbox.run(["subjects", "--json", "--search", "acme"]).stdout)
        guard case .array(let found) = acme else {
            Issue.record("not a list")
            return
        }
        #expect(found.count == 1 && acme[path: "0.name"] == "Acme Corp" && acme[path: "0.dead"] == 1)
        #expect(acme[path: "0.types"] == ["fail", "report"] && acme[path: "0.cost_usd"] == .double(0.25))

        let history = try await sandbox.run(["subject", "Globex", "--json"])
        let globex = try JSONValue.parse(history.stdout)
        #expect(globex[path: "tasks.0.id"] == 3 && globex[path: "tasks.1.source"] == "cron")
        let shown = try await sandbox.run(["subject", "Acme Corp"])
        #expect(shown.stdout.contains("Acme Corp: 2 tasks, $0.25") && shown.stdout.contains("#2 fail dead"))

        // Nothing about a subject nobody named: exit 66 and one line; a bad window: 65.
        let unknown = try await sandbox.run(["subject", "Initech"])
        #expect(unknown.status == 66 && unknown.stderr.hasPrefix("error: no task names the subject"))
        let window = try await sandbox.run(["subject", "Globex", "--since", "soon"])
        #expect(window.status == 65, "\(window.stderr)")
    }
}
