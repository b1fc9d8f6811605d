import AutonomyCore
import Foundation
import Testing

/// Log lines under systemd: when stderr is the journal stream `JOURNAL_STREAM` names, each line
/// carries its syslog priority, so `journalctl -p warning` shows exactly the warnings and errors.
@Suite struct JournalEndToEndTests {
    private let config = """
        {"version": 1, "task_types": {
          "ok": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}},
          "broken": {"safety": "safe", "retry": {"max_attempts": 1}, "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo 'no route\\n<0>forged' >&2; exit 2"]}}}
        }}
        """

    /// Runs `autonomy ARGS` with stderr in a file, as systemd connects it to the journal, and
    /// returns what it wrote there.
    private func stderrLines(
        _ sandbox: Sandbox, _ arguments: [String], journal: Bool
    ) async throws -> [String] {
        let file = sandbox.file("stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: file, contents: nil)
        var info = stat()
        #expect(stat(file, &info) == 0)
        let quoted = ([autonomyBinary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        _ = try await sandbox.run(
            ["-c", "exec \(quoted) 2>'\(file)'"],
            environment: [
                "AUTONOMY_LOG_LEVEL": "info",
                "JOURNAL_STREAM": journal ? "\(info.st_dev):\(info.st_ino)" : "",
            ], executable: "/bin/sh")
        return try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test func underTheJournalEveryLineCarriesItsPriorityAndTheTask() async throws {
        let sandbox = try Sandbox(config: config)
        #expect(try await sandbox.run(["enqueue", "ok", "--payload", "{}"]).status == 0)
        #expect(try await sandbox.run(["enqueue", "broken", "--payload", "{}"]).status == 0)
        let lines = try await stderrLines(sandbox, ["work-once", "--drain"], journal: true)
        #expect(lines.allSatisfy { $0.range(of: #"^<[2-7]>"#, options: .regularExpression) != nil }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<6>autonomy.worker: running task task=1 type=ok ") })
        #expect(
            lines.contains {
                $0.hasPrefix("<6>autonomy.worker: attempt ended task=1 type=ok ") && $0.contains("state=done")
            })
        let dead = try #require(lines.first { $0.hasPrefix("<3>autonomy.worker: attempt ended task=2 type=broken ") })
        #expect(dead.contains("state=dead"))
        // What the handler wrote is one escaped value: it cannot start a line, or claim a priority.
        #expect(dead.contains(#"error="exited with status 2: <0>forged""#))
        #expect(!lines.contains { $0.hasPrefix("<0>") })

        let refused = try await stderrLines(sandbox, ["enqueue", "no_such_type", "--payload", "{}"], journal: true)
        #expect(refused.count == 1 && refused[0].hasPrefix("<3>error: "), "\(refused)")
    }

    @Test func elsewhereLinesArePlainWithTheirTime() async throws {
        let sandbox = try Sandbox(config: config)
        #expect(try await sandbox.run(["enqueue", "broken", "--payload", "{}"]).status == 0)
        let lines = try await stderrLines(sandbox, ["work-once"], journal: false)
        #expect(!lines.isEmpty && !lines.contains { $0.hasPrefix("<") }, "\(lines)")
        #expect(lines.contains { $0.contains(" error autonomy.worker: attempt ended task=1 type=broken ") })
        let refused = try await stderrLines(sandbox, ["enqueue", "no_such_type"], journal: false)
        #expect(refused.first?.hasPrefix("error: ") == true)
    }

    /// A JOURNAL_STREAM that names another stream (a handler's stderr redirected to a file keeps
    /// the variable) is not believed.
    @Test func aJournalStreamThatIsNotStderrIsIgnored() async throws {
        let sandbox = try Sandbox(config: config)
        let lines = try await stderrLines(sandbox, ["enqueue", "no_such_type"], journal: false)
        let withOther = try await sandbox.run(
            ["enqueue", "no_such_type"], environment: ["JOURNAL_STREAM": "1:2"])
        #expect(withOther.stderrLines.first?.hasPrefix("error: ") == true)
        #expect(lines.first?.hasPrefix("error: ") == true)
    }
}
