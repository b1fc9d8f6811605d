import Foundation
import GRDB
import Testing

@testable import AutonomyCore

/// The checks `doctor` makes of systemd, with `systemctl show`'s answers given.
@Suite struct DoctorTests {
    private func doctor(_ units: [String: [String: String]]?) -> Doctor {
        Doctor(
            loaded: .success(.builtInDefaults), configPath: nil, databasePath: "/nonexistent/autonomy.db", now: 0,
            gateSocket: "/nonexistent/gate.sock",
            systemd: units.map { table in { @Sendable unit in table[unit] } })
    }

    private func units(_ checks: [DoctorCheck]) -> [DoctorCheck] { checks.filter { $0.check == "units" } }

    @Test func anEnabledActiveTimerAndSocketAreOk() {
        let running = ["LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active"]
        let checks = units(doctor(["autonomy-worker.timer": running, "autonomy-gate.socket": running]).examine())
        #expect(checks.count == 2 && checks.allSatisfy { $0.status == .ok })
    }

    @Test func aTimerNotEnabledFailsAndAMissingGateSocketWarns() {
        let stopped = ["LoadState": "loaded", "UnitFileState": "disabled", "ActiveState": "inactive"]
        let checks = units(
            doctor(["autonomy-worker.timer": stopped, "autonomy-gate.socket": ["LoadState": "not-found"]]).examine())
        let timer = checks.first { $0.message.hasPrefix("autonomy-worker.timer") }
        #expect(timer?.status == .fail && timer?.fix == "sudo systemctl enable --now autonomy-worker.timer")
        let socket = checks.first { $0.message.hasPrefix("autonomy-gate.socket") }
        #expect(socket?.status == .warn && socket?.message.contains("not installed") == true)
    }

    @Test func withoutSystemdItIsAWarningNotAFailure() {
        let checks = units(doctor(nil).examine())
        #expect(checks.count == 1 && checks[0].status == .warn)
    }

    @Test func aMissingDatabaseIsAFailureAndNoDatabaseCheckRuns() {
        let checks = doctor(nil).examine()
        #expect(checks.first { $0.check == "database" }?.status == .fail)
        #expect(!checks.contains { $0.check == "ledger" || $0.check == "worker" })
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/autonomy.db"))
    }

    @Test func aDatabaseOthersMayReadFailsAndItsFixNamesOnlyTheFilesThatExist() throws {
        let folder = try TemporaryFolder()
        defer { withExtendedLifetime(folder) {} }  // its deinit removes the folder
        chmod(folder.path, 0o700)
        let path = folder.file("my queue.db")
        _ = try AutonomyStore(path: path)  // made, and closed: the last connection removes the -wal and -shm
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        chmod(path, 0o644)
        let doctor = Doctor(
            loaded: .success(.builtInDefaults), configPath: nil, databasePath: path, now: 0,
            gateSocket: "/nonexistent/gate.sock", systemd: nil)
        let alone = doctor.examine().first { $0.check == "state-folder" }
        #expect(alone?.status == .fail)
        #expect(alone?.fix == "sudo chmod 0600 '\(path)' (0660 with store.group_access)")
        // While something has it open (or after doctor's own read-only look), its -wal and -shm are
        // there, and named too.
        let open = try AutonomyStore(path: path)
        try withExtendedLifetime(open) {
            _ = try open.read("count") { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM tasks") }
            try #require(FileManager.default.fileExists(atPath: path + "-wal"))
            let shared = doctor.examine().first { $0.check == "state-folder" }
            #expect(
                shared?.fix == "sudo chmod 0600 '\(path)' '\(path)-wal' '\(path)-shm' (0660 with store.group_access)")
        }
    }

    /// A task whose payload was rewritten under its old hash (the guard dropped and put back):
    /// the firewall refuses to run or decide it, and `doctor` names it (the error sends people here).
    @Test func aPayloadRewrittenUnderItsOldHashFailsTheDatabaseCheck() throws {
        let fixture = try Fixture()
        let task = try fixture.enqueue("report", #"{"day":"monday"}"#)
        let doctor = Doctor(
            loaded: .success(.builtInDefaults), configPath: nil, databasePath: fixture.store.path,
            now: fixture.clock.now(), gateSocket: "/nonexistent/gate.sock", systemd: nil)
        #expect(doctor.examine().first { $0.check == "database" }?.status == .ok)
        try fixture.store.write("tamper") { db in
            let guardText = try #require(
                try String.fetchOne(db, sql: "SELECT sql FROM sqlite_master WHERE name = 'tasks_immutable'"))
            try db.execute(sql: "DROP TRIGGER tasks_immutable")
            try db.execute(sql: #"UPDATE tasks SET payload = '{"day":"sunday"}' WHERE id = ?"#, arguments: [task.id])
            try db.execute(sql: guardText)
        }
        let check = try #require(doctor.examine().first { $0.check == "database" })
        #expect(check.status == .fail && check.message.hasPrefix("task(s) \(task.id) hold a payload"), "\(check)")
    }

    @Test func aPathInAFixIsOneShellWord() {
        #expect(Doctor.shellWord("/var/lib/autonomy/autonomy.db") == "/var/lib/autonomy/autonomy.db")
        #expect(Doctor.shellWord("/srv/my queue.db") == "'/srv/my queue.db'")
        #expect(Doctor.shellWord("/srv/it's;rm -rf ~") == #"'/srv/it'\''s;rm -rf ~'"#)
        #expect(Doctor.shellWord("/srv/$HOME`x`") == "'/srv/$HOME`x`'")
        #expect(Doctor.shellWord("") == "''")
        #expect(Doctor.shellWord("-x.db") == "./-x.db")
        #expect(Doctor.shellWord("=autonomy") == "'=autonomy'")
        #expect(Doctor.shellWord("--reference=/etc/passwd") == "./--reference=/etc/passwd")
    }
}
