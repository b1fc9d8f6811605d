import AutonomyCore
import Foundation
import GRDB
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// The built `autonomy` binary: beside this test bundle in the build folder, or `AUTONOMY_BIN`.
let autonomyBinary: String = {
    if let path = ProcessInfo.processInfo.environment["AUTONOMY_BIN"], !path.isEmpty { return path }
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var folder = (me as NSString).deletingLastPathComponent
    // The test binary sits inside autonomyPackageTests.xctest on some layouts.
    while !folder.isEmpty, folder != "/" {
        let candidate = (folder as NSString).appendingPathComponent("autonomy")
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        folder = (folder as NSString).deletingLastPathComponent
    }
    return "autonomy"
}()

struct CLIResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String

    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
}

/// A scratch folder with a config and a database, and a way to run the binary against them the
/// way a shell script or systemd would. It holds an operator's key (principal "elad"), listed in
/// its `allowed_signers`, and is the HOME of every command it runs, whose signing key is that key.
final class Sandbox: Sendable {
    let path: String
    let configPath: String
    let databasePath: String
    let keyPath: String
    let operatorKey = OpenSSHEd25519Key(comment: "elad")

    init(config: String) throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        configPath = (path as NSString).appendingPathComponent("autonomy.json")
        databasePath = (path as NSString).appendingPathComponent("autonomy.db")
        keyPath = (path as NSString).appendingPathComponent("operator_ed25519")
        try Data(config.utf8).write(to: URL(fileURLWithPath: configPath))
        try Data(operatorKey.openSSHText.utf8).write(to: URL(fileURLWithPath: keyPath))
        chmod(keyPath, 0o600)
        try Data("elad \(operatorKey.publicKey.openSSH)\n".utf8).write(
            to: URL(fileURLWithPath: (path as NSString).appendingPathComponent("allowed_signers")))
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Runs `autonomy ARGS` with the sandbox's config and database in the environment.
    func run(
        _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
        executable: String = autonomyBinary
    ) async throws -> CLIResult {
        var variables: [Environment.Key: String?] = [
            "AUTONOMY_CONFIG": configPath, "AUTONOMY_DATABASE": databasePath, "AUTONOMY_OPERATOR": "tester",
            "AUTONOMY_SIGNING_KEY": keyPath, "HOME": path, "AUTONOMY_GATE": nil,
        ]
        for (name, value) in environment { variables[Environment.Key(stringLiteral: name)] = value }
        let result = try await Subprocess.run(
            .path(FilePath(executable)), arguments: Arguments(arguments),
            environment: .inherit.updating(variables), workingDirectory: FilePath(path),
            input: .string(stdin ?? ""), output: .string(limit: 16 << 20), error: .string(limit: 1 << 20))
        let status: Int32
        switch result.terminationStatus {
        case .exited(let code): status = code
        case .signaled(let signal): status = 128 + signal
        }
        return CLIResult(status: status, stdout: result.standardOutput, stderr: result.standardError)
    }

    /// Every row of the queue and the ledger, as text: equal snapshots mean nothing changed.
    func snapshot() throws -> String {
        guard FileManager.default.fileExists(atPath: databasePath) else { return "(no database)" }
        let queue = try DatabaseQueue(path: databasePath)
        return try queue.read { db in
            let tasks = try Row.fetchAll(db, sql: "SELECT * FROM tasks ORDER BY id").map(\.description)
            let ledger = try Row.fetchAll(db, sql: "SELECT * FROM ledger ORDER BY id").map(\.description)
            return (tasks + ["--"] + ledger).joined(separator: "\n")
        }
    }

    /// A notify command that appends each alert it is given, one per line, to `alerts.jsonl` here;
    /// returns the command's path.
    func alertLogger() throws -> String {
        let script = file("notify.sh")
        try "#!/bin/sh\ncat >> \"$(dirname \"$0\")/alerts.jsonl\"; echo >> \"$(dirname \"$0\")/alerts.jsonl\"\n".write(
            toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        return script
    }

    /// The alerts `alertLogger` has written so far, parsed.
    func loggedAlerts() throws -> [JSONValue] {
        let text = (try? String(contentsOfFile: file("alerts.jsonl"), encoding: .utf8)) ?? ""
        return try text.split(separator: "\n").map { try JSONValue.parse(String($0)) }
    }

    func count(_ sql: String) throws -> Int {
        let queue = try DatabaseQueue(path: databasePath)
        return try queue.read { db in try Int.fetchOne(db, sql: sql) ?? -1 }
    }
}

/// The value of a page's hidden form field, as a browser would send it back.
func hiddenField(_ name: String, in html: String) -> String? {
    guard let start = html.range(of: #"name="\#(name)" value=""#) else { return nil }
    return String(html[start.upperBound...].prefix { $0 != "\"" })
}

/// Waits (polling) until `condition` holds or `limit` passes; for events, never for time itself.
func eventually(_ limit: Duration = .seconds(30), _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}
