import Foundation
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
}
