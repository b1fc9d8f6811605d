import AutonomyCore
import Foundation
import GRDB
import Testing

@Suite struct LedgerEndToEndTests {
    @Test func theLedgerCommandsReadVerifyAndExport() async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        for index in 1...3 { _ = try await sandbox.run(["enqueue", "append", "--payload", #"{"n":\#(index)}"#]) }
        _ = try await sandbox.run(["work-once", "--drain"])

        let verified = try await sandbox.run(["ledger", "verify"])
        #expect(verified.status == 0 && verified.stdout.contains("the chain holds"))
        let listed = try JSONValue.parse(try await sandbox.run(["ledger", "--task", "2", "--json"]).stdout)
        guard case .array(let rows) = listed else { throw CLIFailureInTest("not an array") }
        #expect(
            rows.map { $0[path: "event"] } == ["done", "verified", "executed", "verifying", "claimed", "enqueued"]
                || rows.map { $0[path: "event"] } == ["done", "executed", "claimed", "enqueued"])
        let csv = try await sandbox.run(["ledger", "export", "--format", "csv"])
        let lines = csv.stdout.split(separator: "\n")
        #expect(lines.first == Substring(LedgerEntry.csvHeader))
        #expect(lines.count == 1 + (try sandbox.count("SELECT COUNT(*) FROM ledger")))
        let jsonl = try await sandbox.run(["ledger", "export", "--since", "1h"])
        #expect(jsonl.stdout.split(separator: "\n").allSatisfy { (try? JSONValue.parse(String($0))) != nil })

        let map = try JSONValue.parse(try await sandbox.run(["map", "--json"]).stdout)
        guard case .array(let types) = map[path: "types"] else { throw CLIFailureInTest("no types") }
        let append = try #require(types.first { $0[path: "name"] == "append" })
        #expect(append[path: "done"] == 3 && append[path: "shelfware"] == false)
        #expect(types.first { $0[path: "name"] == "slow" }?[path: "shelfware"] == true)

        let prom = sandbox.file("metrics/autonomy.prom")
        try FileManager.default.createDirectory(atPath: sandbox.file("metrics"), withIntermediateDirectories: true)
        let metrics = try await sandbox.run(["metrics", "--textfile", prom])
        #expect(metrics.status == 0)
        #expect(try String(contentsOfFile: prom, encoding: .utf8).contains("autonomy_tasks{state=\"done\"} 3"))

        // Tampering shows, at the row that was changed.
        let database = try DatabaseQueue(path: sandbox.databasePath)
        try await database.write { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_update")
            try db.execute(sql: "UPDATE ledger SET event = 'done' WHERE id = 2")
        }
        let broken = try await sandbox.run(["ledger", "verify"])
        #expect(broken.status == 1 && broken.stdout.contains("broken at row 2"))
    }
}

@Suite struct LedgerAnchorEndToEndTests {
    @Test func workOnceReportsTheHeadAndAnchorsCatchALedgerCutBack() async throws {
        let sandbox = try Sandbox(
            config:
                #"{"version": 1, "task_types": {"report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}"#
        )
        _ = try await sandbox.run(["enqueue", "report"])
        let run = try await sandbox.run(["work-once"])
        let line = try #require(run.stderr.split(separator: "\n").first { $0.hasPrefix("ledger head: row ") })
        let anchor = try await sandbox.run(["ledger", "anchor"])
        let fields = anchor.stdout.split(whereSeparator: \.isWhitespace)
        #expect(anchor.status == 0 && fields.count == 2)
        #expect(line == "ledger head: row \(fields[0]) hash \(fields[1])")
        let kept = sandbox.file("anchors")
        try anchor.stdout.write(toFile: kept, atomically: true, encoding: .utf8)
        #expect(try await sandbox.run(["ledger", "verify", "--anchors", kept]).status == 0)
        // Someone cuts the newest rows: the chain alone still holds, the anchor does not.
        try await DatabaseQueue(path: sandbox.databasePath).write { db in
            try db.execute(sql: "DROP TRIGGER ledger_no_delete")
            try db.execute(sql: "DELETE FROM ledger WHERE id = (SELECT MAX(id) FROM ledger)")
        }
        #expect(try await sandbox.run(["ledger", "verify"]).status == 0)
        let checked = try await sandbox.run(["ledger", "verify", "--anchors", "-"], stdin: anchor.stdout)
        #expect(checked.status == 1 && checked.stdout.contains("the ledger was cut back"), "\(checked.stdout)")
    }
}
