import AutonomyCore
import Foundation
import Subprocess
import Testing

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Ctrl-C (SIGINT) or `kill` (SIGTERM) to a `work-once` started by hand: the handler, in a process
/// group of its own that the terminal's signal never reaches, is stopped; its attempt is recorded;
/// no other task starts; and the worker ends by the signal, as a shell and systemd expect.
@Suite struct InterruptEndToEndTests {
    static let config = """
        {
          "version": 1,
          "task_types": {
            "slow": {
              "safety": "safe",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo $$ > handler.pid; sleep 300 & wait"] } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            }
          }
        }
        """

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsTheHandlerRecordsItsAttemptAndStartsNothingElse(_ number: Int32) async throws {
        let sandbox = try Sandbox(config: Self.config)
        for _ in 0..<2 { _ = try await sandbox.run(["enqueue", "slow"]) }
        let marker = sandbox.file("handler.pid")
        let result = try await Subprocess.run(
            .path(FilePath(autonomyBinary)), arguments: ["work-once", "--drain"],
            environment: .inherit.updating([
                "AUTONOMY_CONFIG": sandbox.configPath, "AUTONOMY_DATABASE": sandbox.databasePath, "HOME": sandbox.path,
            ]),
            workingDirectory: FilePath(sandbox.path), input: .none, output: .string(limit: 1 << 20),
            error: .string(limit: 1 << 20)
        ) { execution in
            // The handler is running (its shell wrote its pid): now the signal.
            #expect(try await eventually { FileManager.default.fileExists(atPath: marker) })
            try execution.send(signal: Signal(rawValue: number))
        }
        #expect(result.terminationStatus == .signaled(number), "\(result.standardError)")
        #expect(result.standardOutput.contains("attempt 1: retry"), "\(result.standardOutput)")
        #expect(result.standardOutput.contains("stopped by the worker"))
        #expect(result.standardError.contains("no other task was started"), "\(result.standardError)")
        let handler = try #require(
            Int32(try String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(try await eventually { kill(handler, 0) != 0 })
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND attempts = 1") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND attempts = 0") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'") == 0)
    }
}
