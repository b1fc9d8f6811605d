import AutonomyCore
import AutonomyTestSupport
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
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo $$ > handler.new; mv handler.new handler.pid; sleep 300 & wait"] } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            }
          }
        }
        """

    /// Runs `work-once ARGUMENTS` in `sandbox` (its stderr into a file, as the journal would
    /// take it), sends the first of `signals` once `marker` exists and each next one once the
    /// worker said it is stopping; returns how it ended. (A handler writes its pid file under another name and
    /// renames it: a signal between the file's creation and its write left it empty.)
    func interrupted(
        _ sandbox: Sandbox, _ arguments: [String], marker: String, signals: [Int32],
        environment: [Environment.Key: String?] = [:]
    ) async throws -> (status: TerminationStatus, stdout: String, stderr: String) {
        let errors = sandbox.file("stderr.txt")
        let result = try await Subprocess.run(
            .path("/bin/sh"),
            arguments: Arguments(["-c", #"exec "$0" work-once "$@" 2> stderr.txt"#, autonomyBinary] + arguments),
            environment: .inherit.updating(
                [
                    "AUTONOMY_CONFIG": sandbox.configPath, "AUTONOMY_DATABASE": sandbox.databasePath,
                    "HOME": sandbox.path,
                ].merging(environment) { $1 }),
            workingDirectory: FilePath(sandbox.path), input: .none, output: .string(limit: 1 << 20),
            error: .string(limit: 1 << 20)
        ) { execution in
            #expect(try await eventually { FileManager.default.fileExists(atPath: sandbox.file(marker)) })
            for (index, number) in signals.enumerated() {
                if index > 0 {
                    #expect(
                        try await eventually {
                            (try? String(contentsOfFile: errors, encoding: .utf8))?.contains("stopping") == true
                        })
                }
                try execution.send(signal: Signal(rawValue: number))
            }
        }
        return (
            result.terminationStatus, result.standardOutput ?? "",
            (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        )
    }

    /// Verifiers cut short judge nothing: a task whose handler succeeded is not retried (its side
    /// effect would happen twice); it stays `verifying` for the next run's recovery. With `--json`
    /// the run still ends by the signal.
    @Test func aStopWhileVerifyingLeavesTheTaskToBeVerifiedAgainNeverRetried() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "task_types": {"mail": {"safety": "safe",
                  "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo sent >> sent.txt"]}},
                  "verify": [{"command": {"argv": ["/bin/sh", "-c", "test -e pass && exit 0; touch verifying; sleep 300"]}}]}}}
                """)
        _ = try await sandbox.run(["enqueue", "mail"])
        let ended = try await interrupted(sandbox, ["--json"], marker: "verifying", signals: [SIGINT])
        #expect(ended.status == .signaled(SIGINT), "\(ended.stderr)")
        #expect(
            !FileManager.default.fileExists(atPath: sandbox.databasePath + "-wal"), "checkpointed before the signal")
        let report = try JSONValue.parse(ended.stdout)
        #expect(report[path: "stopped"] == "interrupted" && report[path: "attempts.0.state"] == "verifying")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'verifying' AND attempts = 1") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event IN ('retry_scheduled', 'dead')") == 0)
        // The handler's outcome is in the chain already, before the checks that were cut short.
        #expect(
            try sandbox.count(
                "SELECT COUNT(*) FROM ledger WHERE event = 'executed' AND attempt = 1 AND id < (SELECT id FROM ledger WHERE event = 'verifying')"
            ) == 1)
        // The next run verifies it again and writes no second `executed` row for the attempt.
        FileManager.default.createFile(atPath: sandbox.file("pass"), contents: nil)
        _ = try await sandbox.run(["work-once"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "+2h"])
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'executed'") == 1)
    }

    /// The payload files (`autonomy-task-*`) in a worker's temporary folder.
    func payloadFiles(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter {
            $0.hasPrefix("autonomy-task-")
        }
    }

    /// A second Ctrl-C ends the worker at once, and the handler with it (it ignores TERM here, and
    /// its grace is long): nothing of the attempt is left running, and its payload file is gone.
    @Test func aSecondSignalEndsTheWorkerAndItsHandlerAtOnce() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "worker": {"kill_grace": "10m", "lease": "30m"}, "task_types": {"stubborn": {"safety": "safe",
                  "handler": {"exec": {"argv": ["/bin/sh", "-c", "trap '' TERM; cp \\"$AUTONOMY_PAYLOAD_FILE\\" seen.json; echo $$ > handler.new; mv handler.new handler.pid; sleep 300 & wait"]}}}}}
                """)
        let temporary = sandbox.file("tmp")
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        _ = try await sandbox.run(["enqueue", "stubborn", "--payload", #"{"token":"t0"}"#])
        let ended = try await interrupted(
            sandbox, [], marker: "handler.pid", signals: [SIGINT, SIGINT], environment: ["TMPDIR": temporary])
        #expect(ended.status == .exited(128 + SIGINT), "\(ended.stderr)")
        #expect(ended.stderr.contains("stopped at once"))
        let handler = try #require(
            Int32(
                try String(contentsOfFile: sandbox.file("handler.pid"), encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines)))
        #expect(try await eventually { isZombie(handler) })
        #expect(try String(contentsOfFile: sandbox.file("seen.json"), encoding: .utf8) == #"{"token":"t0"}"#)
        #expect(payloadFiles(temporary).isEmpty)
    }

    /// A worker killed with SIGKILL cannot remove the payload file of the task it was running. A
    /// run that recovers a dead worker's task removes it, once nothing holds it: not while the
    /// handler that outlived its worker still reads it (its stdin is the file, lock and all).
    @Test func aKilledWorkersPayloadFileIsRemovedOnceNothingHoldsIt() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "task_types": {"slow": {"safety": "safe", "retry": {"max_attempts": 1},
                  "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo $$ > handler.new; mv handler.new handler.pid; exec sleep 300"]}}}}}
                """)
        let temporary = sandbox.file("tmp")
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        /// Runs a worker on the next task and kills it (SIGKILL) while its handler runs; the handler
        /// outlives it, in its own group. Returns the handler's process group.
        func killedMidTask() async throws -> pid_t {
            try? FileManager.default.removeItem(atPath: sandbox.file("handler.pid"))
            let ended = try await interrupted(
                sandbox, [], marker: "handler.pid", signals: [SIGKILL], environment: ["TMPDIR": temporary])
            #expect(ended.status == .signaled(SIGKILL), "\(ended.stderr)")
            return try #require(
                pid_t(
                    try String(contentsOfFile: sandbox.file("handler.pid"), encoding: .utf8).trimmingCharacters(
                        in: .whitespacesAndNewlines)))
        }
        func recover() async throws {
            let recovered = try await sandbox.run(
                ["work-once"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "+2h", "TMPDIR": temporary])
            #expect(recovered.status == 0 && recovered.stdout.contains("recovered task"), "\(recovered)")
        }

        _ = try await sandbox.run(["enqueue", "slow", "--payload", #"{"token":"t1"}"#])
        let first = try await killedMidTask()
        let left = payloadFiles(temporary)
        #expect(left.count == 1, "\(left)")
        let file = temporary + "/" + (left.first ?? "")
        #expect((try? String(contentsOfFile: file, encoding: .utf8)) == #"{"token":"t1"}"#)

        // Its handler still runs: the file stays.
        try await recover()
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'dead'") == 1)
        #expect(FileManager.default.fileExists(atPath: file))

        // Once the handler has ended, the next recovery on this host removes it, with its own task's.
        kill(-first, SIGKILL)
        #expect(try await eventually { isZombie(first) })
        _ = try await sandbox.run(["enqueue", "slow", "--payload", #"{"token":"t2"}"#])
        let second = try await killedMidTask()
        kill(-second, SIGKILL)
        #expect(try await eventually { isZombie(second) })
        #expect(payloadFiles(temporary).count == 2)
        try await recover()
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'dead'") == 2)
        #expect(payloadFiles(temporary).isEmpty, "\(payloadFiles(temporary))")
    }

    /// A stop sends no alert (systemd's SIGTERM reaches the worker alone, and a stop must not wait
    /// on a channel): the task that went dead is told of by the next run.
    @Test func aStoppedWorkerLeavesItsAlertsToTheNextRun() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1,
                 "notify": {"command": ["/bin/sh", "-c", "echo \\"$AUTONOMY_NOTIFY_TEXT\\" >> alerts.txt"]},
                 "task_types": {"once": {"safety": "safe", "retry": {"max_attempts": 1},
                   "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo $$ > handler.new; mv handler.new handler.pid; sleep 300"]}}}}}
                """)
        _ = try await sandbox.run(["enqueue", "once"])
        let ended = try await interrupted(sandbox, [], marker: "handler.pid", signals: [SIGTERM])
        #expect(ended.status == .signaled(SIGTERM), "\(ended.stderr)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'dead'") == 1)
        #expect(!FileManager.default.fileExists(atPath: sandbox.file("alerts.txt")))
        #expect(try await sandbox.run(["work-once"]).status == 0)
        let alerts = try String(contentsOfFile: sandbox.file("alerts.txt"), encoding: .utf8)
        #expect(alerts.contains("dead"), "\(alerts)")
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsTheHandlerRecordsItsAttemptAndStartsNothingElse(_ number: Int32) async throws {
        let sandbox = try Sandbox(config: Self.config)
        for _ in 0..<2 { _ = try await sandbox.run(["enqueue", "slow"]) }
        let marker = sandbox.file("handler.pid")
        let result = try await interrupted(sandbox, ["--drain"], marker: "handler.pid", signals: [number])
        #expect(result.status == .signaled(number), "\(result.stderr)")
        #expect(result.stdout.contains("attempt 1: retry"), "\(result.stdout)")
        #expect(result.stdout.contains("stopped by the worker"))
        #expect(result.stderr.contains("no other task was started"), "\(result.stderr)")
        let handler = try #require(
            Int32(try String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(try await eventually { isZombie(handler) })
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND attempts = 1") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND attempts = 0") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'") == 0)
    }
}
