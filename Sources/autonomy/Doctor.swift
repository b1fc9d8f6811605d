import ArgumentParser
import AutonomyCore
import Foundation

/// `autonomy doctor`: is this installation healthy, and how to fix what is not.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the installation: configuration, database, systemd units, worker, signers, gate, alerts.",
        discussion: prose(
            """
            One line per check: ok, warn or fail, and the fix. Reads only: the database is opened \
            read-only, systemd is asked with `systemctl show`. Exits 1 when a check fails, 0 otherwise \
            (warnings included). With no --config, AUTONOMY_CONFIG or ./autonomy.json, it reads \
            /etc/autonomy/autonomy.json. Run it as the worker user to see what the worker sees:
              sudo -u autonomy autonomy doctor
            """))

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the checks as JSON: [{check, status, message, fix}].") var json = false

    func run() async throws {
        let environment = ProcessEnvironment.variables
        // Installed as a service, doctor looks at the service's configuration unless told otherwise.
        let installed = "/etc/autonomy/autonomy.json"
        let explicit =
            global.config
            ?? (environment[ConfigLoader.configVariable, default: ""].isEmpty
                && !FileManager.default.fileExists(atPath: ConfigLoader.defaultConfigFile)
                && FileManager.default.fileExists(atPath: installed) ? installed : nil)
        let loaded: Result<LoadedConfiguration, ConfigError>
        do {
            loaded = .success(try ConfigLoader.load(explicitPath: explicit))
        } catch {
            loaded = .failure(error)
        }
        let configPath = (try? loaded.get().path) ?? explicit ?? environment[ConfigLoader.configVariable]
        let location = try ConfigLoader.databaseLocation(
            flag: global.database, loaded: (try? loaded.get()) ?? .builtInDefaults)
        let gate = environment[GateWire.pathVariable].flatMap { $0.isEmpty ? nil : $0 } ?? GateWire.defaultPath
        let checks: [DoctorCheck]
        switch location {
        case .sqlite(let databasePath):
            checks = Doctor(
                loaded: loaded, configPath: configPath, databasePath: databasePath, now: try currentClock().now(),
                gateSocket: gate, systemd: SystemdUnits.available ? SystemdUnits.show : nil
            ).examine()
        case .postgres(let url):
            checks = await Doctor(
                loaded: loaded, configPath: configPath, databasePath: url.description, now: try currentClock().now(),
                gateSocket: gate, systemd: SystemdUnits.available ? SystemdUnits.show : nil
            ).examine(postgres: url)
        }
        if json {
            try printJSON(checks)
        } else {
            for check in checks {
                print(
                    "\(check.status.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)) \(check.check): \(check.message)"
                )
                if let fix = check.fix, check.status != .ok { print("     fix: \(fix)") }
            }
            let failed = checks.filter { $0.status == .fail }.count
            let warned = checks.filter { $0.status == .warn }.count
            print(failed == 0 && warned == 0 ? "healthy" : "\(failed) failed, \(warned) warning(s)")
        }
        if checks.contains(where: { $0.status == .fail }) { throw ExitCode.failure }
    }
}

/// systemd, asked read-only.
enum SystemdUnits {
    /// systemd is the init here (sd_booted(3)'s test) and `systemctl` is installed.
    static var available: Bool {
        var info = stat()
        return lstat("/run/systemd/system", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
            && FileManager.default.isExecutableFile(atPath: systemctl)
    }

    static let systemctl =
        ["/usr/bin/systemctl", "/bin/systemctl"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "/usr/bin/systemctl"

    /// A unit's load, enable and active states (`systemctl show -p …`), or nil if systemctl failed.
    @Sendable static func show(_ unit: String) -> [String: String]? {
        let result = Tool.run(
            systemctl, ["show", "--property=LoadState,UnitFileState,ActiveState", "--", unit], timeout: .seconds(10))
        guard result.passed else { return nil }
        var properties: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { properties[String(parts[0])] = String(parts[1]) }
        }
        return properties
    }
}
