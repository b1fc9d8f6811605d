import AutonomyCore
import Foundation
import GRDB
import Testing

@Suite struct QueueEndToEndTests {
    static let config = """
        {
          "version": 1,
          "worker": { "lease": "60s" },
          "queue": { "max_payload_bytes": 1024 },
          "task_types": {
            "append": {
              "safety": "safe",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo \\"$AUTONOMY_TASK_ID\\" >> ids.txt"] } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            },
            "slow": {
              "safety": "safe",
              "handler": { "exec": {
                "argv": ["/bin/sh", "-c", "if [ \\"$AUTONOMY_ATTEMPT\\" = 1 ]; then echo $$ > started.new; mv started.new started.pid; sleep 300; fi; echo \\"$AUTONOMY_TASK_ID\\" >> ids.txt"]
              } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            },
            "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                            "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
          }
        }
        """

    @Test func fourConcurrentDrainingWorkersRunEveryTaskExactlyOnce() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let batch = (1...400).map { #"{"type": "append", "payload": {"n": \#($0)}}"# }.joined(separator: "\n")
        let enqueued = try await sandbox.run(["enqueue", "--batch", "-"], stdin: batch)
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        let ids = enqueued.stdout.split(separator: "\n").map(String.init)
        #expect(ids.count == 400)

        let results = try await withThrowingTaskGroup(of: CLIResult.self) { group in
            for _ in 0..<4 {
                group.addTask { try await sandbox.run(["work-once", "--drain", "--max-seconds", "300", "--json"]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for result in results { #expect(result.status == 0, "\(result.stderr)") }
        let ran = try String(contentsOfFile: sandbox.file("ids.txt"), encoding: .utf8).split(separator: "\n").map(
            String.init)
        #expect(ran.count == 400)
        #expect(Set(ran) == Set(ids))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done'") == 400)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'claimed'") == 400)
        // Each task is in exactly one worker's report (how they shared the work is the scheduler's).
        let reported = try results.flatMap { result -> [String] in
            guard case .array(let attempts)? = try JSONValue.parse(result.stdout)[path: "attempts"] else { return [] }
            return attempts.compactMap { $0[path: "id"].map(\.canonicalText) }
        }
        #expect(reported.count == 400 && Set(reported) == Set(ids))
    }

    @Test func aKilledWorkersTaskIsRecoveredAfterTheLeaseAndCompletedOnce() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let enqueued = try await sandbox.run(["enqueue", "slow"])
        let id = enqueued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        // A worker starts the task; it is killed with SIGKILL while the handler runs.
        let worker = Task { try await sandbox.run(["work-once"]) }
        let started = try await eventually { FileManager.default.fileExists(atPath: sandbox.file("started.pid")) }
        #expect(started)
        let workerPID = try #require(try findWorker(handlerPIDFile: sandbox.file("started.pid")))
        kill(workerPID, SIGKILL)
        let killed = try await worker.value
        #expect(killed.status == 128 + SIGKILL)
        // The handler lives on in its own process group; stop it as systemd's cgroup would.
        if let handler = Int32(
            try String(contentsOfFile: sandbox.file("started.pid"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(-handler, SIGKILL)
        }
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'") == 1)

        // Within the lease, the next run leaves it alone.
        let early = try await sandbox.run(["work-once", "--drain"])
        #expect(early.status == 0)
        #expect(early.stdout.contains("nothing to do"))

        // After the lease (the clock moved 61 s on), the next run recovers and completes it.
        let late = try await sandbox.run(["work-once", "--drain"], environment: ["AUTONOMY_TEST_CLOCK_OFFSET": "61s"])
        #expect(late.status == 0, "\(late.stderr)")
        #expect(late.stdout.contains("recovered task \(id)"))
        let ran = try String(contentsOfFile: sandbox.file("ids.txt"), encoding: .utf8).split(separator: "\n").map(
            String.init)
        #expect(ran == [id])
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event = 'lease_expired'") == 1)
    }

    /// The worker is the handler's parent: its pid is the PPid of the handler's process.
    private func findWorker(handlerPIDFile: String) throws -> Int32? {
        guard
            let handler = Int32(
                try String(contentsOfFile: handlerPIDFile, encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        let status = try String(contentsOfFile: "/proc/\(handler)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("PPid:") }
        return line.flatMap { Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) }
    }

    @Test func theSameKeyTwiceReturnsTheFirstIDAndSaysSo() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let first = try await sandbox.run(["enqueue", "append", "--payload", #"{"a":1}"#, "--key", "order-1"])
        let second = try await sandbox.run(["enqueue", "append", "--payload", #"{ "a": 1 }"#, "--key", "order-1"])
        #expect(first.status == 0 && second.status == 0)
        #expect(first.stdout == second.stdout)
        #expect(second.stderr.contains("already names task"))
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks") == 1)
    }

    /// A pruned task says its payload is gone (with the hash it was enqueued with), rather than
    /// showing an empty one.
    @Test func aPrunedTaskSaysItsPayloadIsGone() async throws {
        let sandbox = try Sandbox(config: Self.config)
        #expect(try await sandbox.run(["enqueue", "append", "--payload", #"{"a":1}"#]).status == 0)
        #expect(try await sandbox.run(["tasks", "cancel", "1"]).status == 0)
        let before = try await sandbox.run(["tasks", "show", "1"])
        #expect(before.stdout.contains("payload (7 bytes, sha256 \(#"{"a":1}"#.sha256Hex)):"), "\(before.stdout)")
        #expect(
            try await sandbox.run(["prune", "--finished-older-than", "0s"]).stdout == "pruned 1 finished task(s)\n")
        let shown = try await sandbox.run(["tasks", "show", "1"])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(
            shown.stdout.contains("payload:   pruned by retention (enqueued with sha256 \(#"{"a":1}"#.sha256Hex))"),
            "\(shown.stdout)")
        #expect(!shown.stdout.contains("bytes, sha256"))
        // An empty payload on a task that never finished is no retention: it was written by hand.
        try await DatabaseQueue(path: sandbox.databasePath).write { db in
            try db.execute(
                sql: """
                    INSERT INTO tasks (id, type, state, run_at, payload, payload_sha256, created_at, updated_at)
                    VALUES (2, 'append', 'queued', 0, '', ?, 0, 0)
                    """, arguments: [#"{"b":2}"#.sha256Hex])
        }
        let edited = try await sandbox.run(["tasks", "show", "2"])
        #expect(edited.stdout.contains("ALTERED: enqueued with sha256 \(#"{"b":2}"#.sha256Hex)"), "\(edited.stdout)")
        #expect(!edited.stdout.contains("pruned"))
    }

    /// A dead task whose payload retention removed has nothing left to run: `tasks retry` refuses it
    /// in its state (exit 1), as it refuses a task that is not dead, and changes nothing.
    @Test func aPrunedDeadTaskIsNotRetried() async throws {
        let sandbox = try Sandbox(
            config: """
                {
                  "version": 1,
                  "task_types": {
                    "fail": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/false"] } },
                              "retry": { "max_attempts": 1 } }
                  }
                }
                """)
        #expect(try await sandbox.run(["enqueue", "fail", "--payload", #"{"a":1}"#]).status == 0)
        #expect(try await sandbox.run(["work-once"]).status == 0)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'dead'") == 1)
        #expect(
            try await sandbox.run(["prune", "--finished-older-than", "0s"]).stdout == "pruned 1 finished task(s)\n")
        let rows = try sandbox.count("SELECT COUNT(*) FROM ledger")
        let retried = try await sandbox.run(["tasks", "retry", "1"])
        #expect(retried.status == 1)
        #expect(retried.stderr == "error: task 1's payload was pruned; enqueue it again instead\n")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'dead'") == 1)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger") == rows)
    }

    /// A worker that cannot write payload files (its TMPDIR is gone) is the machine's fault, not the
    /// tasks': exit 73 and one `error:` line that names the folder, and nothing is claimed or
    /// recovered. Mended, each task runs on its first attempt. (A folder that fails only once a task
    /// is claimed gives that task back: `DrainLimitTests`.)
    @Test func aWorkerThatCannotWritePayloadFilesSpendsNoAttempt() async throws {
        let sandbox = try Sandbox(
            config: """
                {"version": 1, "task_types": {"noop": {"safety": "safe", "handler": {"exec": {"argv": ["true"]}}}}}
                """)
        for n in 1...2 {
            #expect(try await sandbox.run(["enqueue", "noop", "--payload", #"{"n":\#(n)}"#]).status == 0)
        }
        let missing = sandbox.file("no-such-folder")
        let broken = try await sandbox.run(["work-once", "--drain"], environment: ["TMPDIR": missing])
        #expect(broken.status == 73, "\(broken)")
        #expect(
            broken.stderr
                == "error: cannot write payload files: \(missing): No such file or directory (TMPDIR names the folder for payload files; it must exist and be writable); no task was started\n"
        )
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND attempts = 0") == 2)
        #expect(try sandbox.count("SELECT COUNT(*) FROM ledger WHERE event <> 'enqueued'") == 0)
        // A file where the folder should be, or a folder the worker may not write: the same.
        try "".write(toFile: sandbox.file("a-file"), atomically: true, encoding: .utf8)
        let notFolder = try await sandbox.run(["work-once"], environment: ["TMPDIR": sandbox.file("a-file")])
        #expect(notFolder.status == 73 && notFolder.stderr.contains("a-file: Not a directory"), "\(notFolder)")

        let mended = try await sandbox.run(["work-once", "--drain"])
        #expect(mended.status == 0, "\(mended)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done' AND attempts = 1") == 2)
    }

    /// Each short-lived process, the last to close the file, checkpoints the WAL and removes it: the
    /// next one starts without reading it back, and it cannot grow with the number of processes.
    @Test func aShortLivedProcessLeavesNoWALBehind() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let wal = sandbox.databasePath + "-wal"
        for n in 1...3 {
            let enqueued = try await sandbox.run(["enqueue", "append", "--payload", #"{"n":\#(n)}"#])
            #expect(enqueued.status == 0, "\(enqueued.stderr)")
            #expect(!FileManager.default.fileExists(atPath: wal), "after enqueue \(n)")
        }
        let worked = try await sandbox.run(["work-once", "--drain"])
        #expect(worked.status == 0, "\(worked.stderr)")
        #expect(!FileManager.default.fileExists(atPath: wal), "after work-once")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'done'") == 3)
        // Refused once the database is open (a trigger autonomy did not make): still none left.
        let database = try DatabaseQueue(path: sandbox.databasePath)
        try await database.write {
            try $0.execute(sql: "CREATE TRIGGER stray AFTER INSERT ON tasks BEGIN SELECT 1; END")
        }
        try database.close()
        #expect(!FileManager.default.fileExists(atPath: wal), "after the test's own connection")
        let refused = try await sandbox.run(["work-once"])
        #expect(refused.status == 74, "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: wal), "after a refused work-once")
    }

    @Test func aPayloadFromStdinAndTheJSONViewsAgree() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let enqueued = try await sandbox.run(
            ["enqueue", "send_email", "--payload-file", "-", "--source", "bot", "--subject", "hello", "--json"],
            stdin: #"{"to": "client@example.com"}"#)
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        let task = try JSONValue.parse(enqueued.stdout)
        #expect(task[path: "state"] == "awaiting_approval")
        #expect(task[path: "payload.to"] == "client@example.com")
        let status = try JSONValue.parse(try await sandbox.run(["status", "--json"]).stdout)
        #expect(status[path: "counts.awaiting_approval"] == 1)
        let shown = try await sandbox.run(["tasks", "show", "1"])
        #expect(shown.stdout.contains("enqueued") && shown.stdout.contains("held"))
        let listed = try JSONValue.parse(
            try await sandbox.run(["tasks", "list", "--state", "awaiting_approval", "--json"]).stdout)
        #expect(listed == .array([task]))
        let cancelled = try await sandbox.run(["tasks", "cancel", "1"])
        #expect(cancelled.status == 0)
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'cancelled'") == 1)
    }

    @Test func theDemoRunsTheWholeLoop() async throws {
        let sandbox = try Sandbox(config: "{}")
        let demo = try await sandbox.run(["demo", "--dir", sandbox.file("demo")])
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("awaiting_approval: 1"))
        #expect(demo.stdout.contains("done: 3"))
        #expect(demo.stdout.contains("sync_crm attempt 2: done"))
        #expect(demo.stdout.contains("task 4 send_email attempt 1: done"))  // only after the approval
        #expect(FileManager.default.fileExists(atPath: sandbox.file("demo/reports/report-1.md")))
    }
}
