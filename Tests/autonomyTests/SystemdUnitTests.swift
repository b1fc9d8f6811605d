import Foundation
import Subprocess
import Testing

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

@Suite struct SystemdUnitTests {
    static let unitFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("systemd").path

    static let analyzer = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static let units = [
        "autonomy-worker.service", "autonomy-worker.timer", "autonomy-gate.socket", "autonomy-gate@.service",
        "autonomy-audit.service", "autonomy-audit.timer", "autonomy-heal.service", "autonomy-heal.timer",
        "autonomy-web.service",
    ]

    /// The units as installed, but with ExecStart pointing at the binary just built.
    private func installedCopies() throws -> (folder: String, service: String, timer: String, all: [String]) {
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("units-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var paths: [String] = []
        for name in Self.units {
            let text = try String(
                contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent(name), encoding: .utf8
            )
            .replacingOccurrences(of: "/usr/local/bin/autonomy", with: autonomyBinary)
            let path = (folder as NSString).appendingPathComponent(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        return (folder, paths[0], paths[1], paths)
    }

    private func analyze(_ arguments: [String]) async throws -> (Int32, String) {
        let result = try await Subprocess.run(
            .path(FilePath(try #require(Self.analyzer))), arguments: Arguments(arguments),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        let code: Int32 = if case .exited(let value) = result.terminationStatus { value } else { -1 }
        return (code, result.standardOutput + result.standardError)
    }

    @Test(.enabled(if: analyzer != nil, "systemd-analyze is not installed here; the unit checks are skipped"))
    func theUnitsVerify() async throws {
        let units = try installedCopies()
        defer { try? FileManager.default.removeItem(atPath: units.folder) }
        let (code, output) = try await analyze(["verify"] + units.all)
        #expect(code == 0, "\(output)")
        #expect(!output.contains("Unknown"), "\(output)")
    }

    /// `systemd-analyze security` rates each service's exposure; every one of ours is 2.0 or lower.
    @Test(
        .enabled(if: analyzer != nil, "systemd-analyze is not installed here; the unit checks are skipped"),
        arguments: [
            "autonomy-worker.service", "autonomy-gate@.service", "autonomy-audit.service", "autonomy-heal.service",
            "autonomy-web.service",
        ])
    func aServiceIsRatedTwoOrLower(_ name: String) async throws {
        let units = try installedCopies()
        defer { try? FileManager.default.removeItem(atPath: units.folder) }
        let path = try #require(units.all.first { $0.hasSuffix("/" + name) })
        let (_, output) = try await analyze(["security", "--offline=true", path])
        let line = try #require(output.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let score = try #require(line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) })
        // The web server listens on the network, which systemd rates a little higher: 2.5 for it.
        #expect(score <= (name == "autonomy-web.service" ? 2.5 : 2.0), "\(name): \(line)")
    }

    @Test func theAuditRunsWeeklyCatchesUpAndAlerts() throws {
        let timer = try String(
            contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent("autonomy-audit.timer"),
            encoding: .utf8
        ).split(separator: "\n").map(String.init)
        #expect(timer.contains("OnCalendar=Mon *-*-* 07:00:00") && timer.contains("Persistent=true"))
        #expect(timer.contains("Unit=autonomy-audit.service"))
        let service = try String(
            contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent("autonomy-audit.service"),
            encoding: .utf8
        ).split(separator: "\n").map(String.init)
        #expect(service.contains("ExecStart=/usr/local/bin/autonomy audit --notify"))
        #expect(service.contains("User=autonomy") && service.contains("Type=oneshot"))
    }

    /// `systemctl stop` signals the worker alone, which stops its handler and records the attempt
    /// as stopped (`InterruptEndToEndTests` sends that SIGTERM); systemd's SIGKILL comes after, for
    /// whatever is left in the unit.
    @Test func stoppingTheWorkerSignalsTheWorkerAloneThenKillsWhatIsLeft() throws {
        let service = try String(
            contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent("autonomy-worker.service"),
            encoding: .utf8
        ).split(separator: "\n").map(String.init)
        #expect(service.filter { $0.hasPrefix("KillMode=") } == ["KillMode=mixed"])
        #expect(!service.contains { $0.hasPrefix("KillSignal=") || $0.hasPrefix("SendSIGKILL=") })
    }

    @Test func healRunsEveryFifteenMinutesAsTheWorkerWithItsHardening() throws {
        func unit(_ name: String) throws -> [String] {
            try String(contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent(name), encoding: .utf8)
                .split(separator: "\n").map(String.init)
        }
        let timer = try unit("autonomy-heal.timer")
        #expect(timer.contains("OnCalendar=*-*-* *:00/15:00") && timer.contains("Persistent=true"))
        #expect(timer.contains("Unit=autonomy-heal.service"))
        let service = try unit("autonomy-heal.service")
        #expect(
            service.contains("ExecStart=/usr/local/bin/autonomy heal") && service.contains("KillMode=control-group"))
        // The worker's hardening, line for line.
        let worker = try unit("autonomy-worker.service")
        let hardening = worker.drop { !$0.hasPrefix("NoNewPrivileges=") }
        #expect(hardening.count > 20)
        for line in hardening { #expect(service.contains(line), "\(line)") }
    }

    /// The web server is its own user in the worker's group: its key is out of the worker's reach,
    /// the database (group_access) is not. The worker's units keep the state folder 0770.
    @Test func theWebServerRunsAsItsOwnUserInTheWorkersGroup() throws {
        func unit(_ name: String) throws -> [String] {
            try String(contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent(name), encoding: .utf8)
                .split(separator: "\n").map(String.init)
        }
        let web = try unit("autonomy-web.service")
        for line in [
            "User=autonomy-web", "Group=autonomy", "ReadWritePaths=/var/lib/autonomy",
            "ExecStart=/usr/local/bin/autonomy serve --listen 127.0.0.1:8787", "MemoryDenyWriteExecute=yes",
        ] {
            #expect(web.contains(line), "\(line)")
        }
        // It must not claim the worker's state folder (systemd would hand it to autonomy-web).
        #expect(!web.contains { $0.hasPrefix("StateDirectory=") })
        for name in [
            "autonomy-worker.service", "autonomy-audit.service", "autonomy-heal.service", "autonomy-gate@.service",
        ] {
            #expect(try unit(name).contains("StateDirectoryMode=0770"), "\(name)")
        }
    }

    @Test func theGateListensForTheProducersGroupAndRunsOneGateAConnectionAsTheWorker() throws {
        func unit(_ name: String) throws -> [String] {
            try String(contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent(name), encoding: .utf8)
                .split(separator: "\n").map(String.init)
        }
        let socket = try unit("autonomy-gate.socket")
        for line in [
            "ListenStream=/run/autonomy/gate.sock", "Accept=yes", "SocketGroup=autonomy-producers", "SocketMode=0660",
        ] {
            #expect(socket.contains(line), "\(line)")
        }
        let service = try unit("autonomy-gate@.service")
        for line in ["User=autonomy", "ExecStart=/usr/local/bin/autonomy gate", "StandardInput=socket"] {
            #expect(service.contains(line), "\(line)")
        }
        // The answer goes back on the connection; nothing else the process prints may reach it.
        #expect(service.contains("StandardOutput=journal"))
        // In a user namespace of its own, every peer would look like "nobody" to SO_PEERCRED.
        #expect(!service.contains { $0.hasPrefix("PrivateUsers=") })
    }

    @Test func theTimerRunsEveryMinuteAndCatchesUp() throws {
        let timer = try String(
            contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent("autonomy-worker.timer"),
            encoding: .utf8)
        #expect(timer.contains("OnCalendar=*-*-* *:*:00"))
        #expect(timer.contains("Persistent=true"))
        let service = try String(
            contentsOfFile: (Self.unitFolder as NSString).appendingPathComponent("autonomy-worker.service"),
            encoding: .utf8)
        #expect(service.contains("Type=oneshot"))
        #expect(service.contains("work-once --drain"))
        // Handlers are often node or python agents: they need a JIT.
        #expect(!service.split(separator: "\n").contains { $0.hasPrefix("MemoryDenyWriteExecute=") })
    }
}
