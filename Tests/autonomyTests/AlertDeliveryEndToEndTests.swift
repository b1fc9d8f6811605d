import AutonomyCore
import Foundation
import Testing

@Suite struct AlertDeliveryEndToEndTests {
    static let config = """
        {
          "version": 1,
          "notify": { "command": ["/bin/sh", "-c", "sleep 0.05; echo \\"$AUTONOMY_NOTIFY_TEXT\\" >> alerts.txt"] },
          "task_types": {
            "doomed": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/false"] } }, "retry": { "max_attempts": 1 } }
          }
        }
        """

    @Test func twoProcessesDeliveringAtOnceSendEachAlertOnce() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let count = 20
        let batch = (1...count).map { #"{"type": "doomed", "payload": {"n": \#($0)}}"# }.joined(separator: "\n")
        let enqueued = try await sandbox.run(["enqueue", "--batch", "-"], stdin: batch)
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        let ids = enqueued.stdout.split(separator: "\n").map(String.init)
        // The tasks die without anyone delivering their alerts: the outbox holds one per task.
        do {
            let store = try AutonomyStore(path: sandbox.databasePath)
            let loaded = try ConfigLoader.load(explicitPath: sandbox.configPath)
            let report = try await Worker(store: store, loaded: loaded).work(drain: .init(maxSeconds: 300))
            #expect(report.attempts.count == count && report.alerts.isEmpty)
        }
        #expect(try sandbox.count("SELECT COUNT(*) FROM notifications WHERE delivered_at IS NULL") == count)

        let results = try await withThrowingTaskGroup(of: CLIResult.self) { group in
            for _ in 0..<2 { group.addTask { try await sandbox.run(["work-once", "--drain", "--json"]) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        var delivered: [Int] = []
        for result in results {
            #expect(result.status == 0, "\(result.stderr)")
            guard case .array(let alerts)? = try JSONValue.parse(result.stdout)[path: "alerts"] else {
                throw CLIFailureInTest("no alerts in \(result.stdout)")
            }
            #expect(alerts.allSatisfy { $0[path: "error"] == .null })
            delivered.append(alerts.count)
        }
        #expect(delivered.reduce(0, +) == count)
        #expect(delivered.allSatisfy { $0 > 0 }, "one process delivered everything: \(delivered)")

        let lines = try String(contentsOfFile: sandbox.file("alerts.txt"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let prefix = "task dead: task "
        let alerted = lines.filter { $0.hasPrefix(prefix) }.map {
            String($0.dropFirst(prefix.count).prefix(while: \.isNumber))
        }
        #expect(lines.count == count, "\(lines)")
        #expect(alerted.sorted() == ids.sorted())  // each task's alert, exactly once
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'notified'") == count)
        #expect(try sandbox.count("SELECT COUNT(*) FROM notifications WHERE delivered_at IS NULL") == 0)
    }
}
