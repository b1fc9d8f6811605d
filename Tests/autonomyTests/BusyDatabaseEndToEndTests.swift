import Foundation
import GRDB
import Testing

/// Another process holding the write lock past `store.busy_timeout` is a temporary failure: exit
/// 75 (EX_TEMPFAIL), one `error:` line, and nothing written.
@Suite struct BusyDatabaseEndToEndTests {
    static let config = """
        {
          "version": 1,
          "store": { "busy_timeout": "300ms" },
          "task_types": {
            "append": {
              "safety": "safe",
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "echo \\"$AUTONOMY_TASK_ID\\" >> ids.txt"] } }
            }
          }
        }
        """

    @Test(arguments: [["enqueue", "append"], ["work-once", "--drain"], ["tasks", "cancel", "1"]])
    func aWriteLockHeldPastTheBusyTimeoutExits75AndWritesNothing(_ arguments: [String]) async throws {
        let sandbox = try Sandbox(config: Self.config)
        let first = try await sandbox.run(["enqueue", "append"])  // task 1, queued
        #expect(first.status == 0, "\(first.stderr)")
        let before = try sandbox.snapshot()

        // Another writer takes the lock and keeps it for as long as the command runs.
        var configuration = GRDB.Configuration()
        configuration.allowsUnsafeTransactions = true
        let holder = try DatabaseQueue(path: sandbox.databasePath, configuration: configuration)
        try await holder.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
        let started = ContinuousClock.now
        let result = try await sandbox.run(arguments)
        let waited = ContinuousClock.now - started
        try await holder.writeWithoutTransaction { try $0.execute(sql: "ROLLBACK") }

        #expect(result.status == 75, "\(result.stderr)")
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains("store.busy_timeout"), "\(result.stderr)")
        // It waited for the lock, as long as store.busy_timeout says (the default, 5s, is longer).
        #expect(waited >= .milliseconds(300) && waited < .seconds(15), "\(waited)")
        #expect(try sandbox.snapshot() == before)
        #expect(!FileManager.default.fileExists(atPath: sandbox.file("ids.txt")))
    }
}
