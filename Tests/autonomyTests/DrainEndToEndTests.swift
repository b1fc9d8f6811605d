import AutonomyCore
import Foundation
import Testing

@Suite struct DrainEndToEndTests {
    @Test func workOnceDrainStopsOnMaxSecondsAndLeavesTheRestQueued() async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        let batch = (1...3).map { #"{"type": "append", "payload": {"n": \#($0)}}"# }.joined(separator: "\n")
        #expect(try await sandbox.run(["enqueue", "--batch", "-"], stdin: batch).status == 0)

        let run = try await sandbox.run(["work-once", "--drain", "--max-seconds", "0", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try JSONValue.parse(run.stdout)
        #expect(report[path: "stopped"] == "max_seconds")
        #expect(report[path: "attempts.0.state"] == "done" && report[path: "attempts.1"] == nil)
        #expect(try String(contentsOfFile: sandbox.file("ids.txt"), encoding: .utf8) == "1\n")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'") == 2)
    }
}
