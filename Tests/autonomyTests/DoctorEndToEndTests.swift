import AutonomyCore
import Foundation
import GRDB
import Testing

/// `autonomy doctor`: a healthy workspace passes; each kind of breakage fails with its fix.
@Suite struct DoctorEndToEndTests {
    private func healthySandbox() async throws -> Sandbox {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "approvals": {"allowed_signers": "allowed_signers"},
                 "notify": {"command": ["./notify.sh"]},
                 "task_types": {"report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}
                """)
        _ = try sandbox.alertLogger()
        chmod(sandbox.configPath, 0o640)
        #expect(try await sandbox.run(["enqueue", "report", "--payload", "{}"]).status == 0)
        #expect(try await sandbox.run(["work-once"]).status == 0)
        return sandbox
    }

    private struct Check: Decodable {
        var check: String
        var status: String
        var message: String
        var fix: String?
    }

    private func doctor(_ sandbox: Sandbox, environment: [String: String] = [:]) async throws -> (Int32, [Check]) {
        let result = try await sandbox.run(["doctor", "--json"], environment: environment)
        return (result.status, try JSONDecoder().decode([Check].self, from: Data(result.stdout.utf8)))
    }

    @Test func aHealthyWorkspacePasses() async throws {
        let sandbox = try await healthySandbox()
        let (status, checks) = try await doctor(sandbox)
        #expect(status == 0)
        #expect(!checks.contains { $0.status == "fail" }, "\(checks.filter { $0.status != "ok" })")
        for name in ["config", "database", "ledger", "signers", "worker", "tasks", "alerts"] {
            #expect(checks.first { $0.check == name }?.status == "ok", "\(name): \(checks.filter { $0.check == name })")
        }
        let text = try await sandbox.run(["doctor"])
        #expect(text.status == 0 && text.stdout.contains("ok   ledger: the newest"), "\(text.stdout)")
    }

    @Test func aWorldWritableConfigurationFails() async throws {
        let sandbox = try await healthySandbox()
        chmod(sandbox.configPath, 0o666)
        let (status, checks) = try await doctor(sandbox)
        #expect(status == 1)
        let config = try #require(checks.first { $0.check == "config" })
        #expect(config.status == "fail" && config.fix?.contains("chmod 0640") == true, "\(config)")
    }

    @Test func aMissingSignerFileFails() async throws {
        let sandbox = try await healthySandbox()
        try FileManager.default.removeItem(atPath: sandbox.file("allowed_signers"))
        let (status, checks) = try await doctor(sandbox)
        #expect(status == 1)
        let signers = try #require(checks.first { $0.check == "signers" })
        #expect(signers.status == "fail" && signers.message.contains("does not exist"))
        #expect(signers.fix?.contains("autonomy operator init") == true)
    }

    @Test func aWorkerThatStoppedRunningFails() async throws {
        let sandbox = try await healthySandbox()
        #expect(try await sandbox.run(["enqueue", "report", "--payload", "{}"]).status == 0)
        let (soon, early) = try await doctor(sandbox)
        #expect(soon == 0 && early.first { $0.check == "worker" }?.status == "ok")
        let (status, checks) = try await doctor(sandbox, environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "1h"])
        #expect(status == 1)
        let worker = try #require(checks.first { $0.check == "worker" })
        #expect(
            worker.status == "fail" && worker.message.contains("1 runnable task(s), the oldest waiting 1h"), "\(worker)"
        )
        #expect(worker.fix?.contains("systemctl status autonomy-worker.timer") == true)
        let (_, later) = try await doctor(sandbox, environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "5m"])
        #expect(later.first { $0.check == "worker" }?.status == "warn")
    }

    @Test func aBrokenChainFails() async throws {
        let sandbox = try await healthySandbox()
        let queue = try DatabaseQueue(path: sandbox.databasePath)
        try await queue.write { db in
            // As an attacker with the file would: past the append-only trigger.
            try db.execute(sql: "DROP TRIGGER ledger_no_update")
            try db.execute(sql: "UPDATE ledger SET detail = '{\"state\":\"done\",\"edited\":true}' WHERE id = 2")
        }
        let before = try sandbox.snapshot()
        let (status, checks) = try await doctor(sandbox)
        #expect(status == 1)
        let ledger = try #require(checks.first { $0.check == "ledger" })
        #expect(ledger.status == "fail" && ledger.message.contains("row 2"), "\(ledger)")
        #expect(ledger.fix?.contains("autonomy ledger verify") == true)
        #expect(try sandbox.snapshot() == before)  // doctor only reads
    }

    @Test func aMissingDatabaseFailsAndIsNotCreated() async throws {
        let sandbox = try Sandbox(config: #"{"version": 1}"#)
        let (status, checks) = try await doctor(sandbox)
        #expect(status == 1 && checks.first { $0.check == "database" }?.status == "fail")
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))
    }

    @Test func aFolderWhereTheDatabaseShouldBeIsNamedAsSuch() async throws {
        let sandbox = try Sandbox(config: #"{"version": 1}"#)
        try FileManager.default.createDirectory(atPath: sandbox.databasePath, withIntermediateDirectories: true)
        let (status, checks) = try await doctor(sandbox)
        let database = try #require(checks.first { $0.check == "database" })
        #expect(
            status == 1 && database.status == "fail" && database.message.hasSuffix("is a folder, not a database file"))
        #expect(database.fix?.contains("autonomy.db") == true)
        // The folder check does not tell to chmod it as if it were the database.
        #expect(checks.first { $0.check == "state-folder" }?.fix?.contains("chmod 0600") != true)
    }
}
