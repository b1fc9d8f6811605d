import Foundation
import Testing

/// Every refused input: a non-zero documented exit code, one `error:` line, no backtrace, and a
/// database left exactly as it was.
@Suite struct RefusedInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var arguments: [String]
        var stdin: String?
        var status: Int32
        var mentions: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let cases: [Case] = [
        Case(arguments: ["enqueue", "wire_money"], status: 65, mentions: "not declared"),
        Case(arguments: ["enqueue", "append", "--payload", "{oops"], status: 65, mentions: "not valid JSON"),
        Case(arguments: ["enqueue", "append", "--payload", ""], status: 65, mentions: "not valid JSON"),
        Case(
            arguments: ["enqueue", "append", "--payload", #"{"x":"\#(String(repeating: "y", count: 2000))"}"#],
            status: 65, mentions: "over the limit"),
        Case(arguments: ["enqueue", "append", "--delay", "soon"], status: 65, mentions: "--delay"),
        Case(arguments: ["enqueue", "append", "--run-at", "tomorrow"], status: 65, mentions: "--run-at"),
        Case(arguments: ["enqueue", "append", "--run-at", "2026-13-45T99:00:00Z"], status: 65, mentions: "--run-at"),
        Case(
            arguments: ["enqueue", "append", "--delay", "5m", "--run-at", "2026-12-01T09:00:00Z"], status: 64,
            mentions: "not both"),
        Case(arguments: ["enqueue", "append", "--max-attempts", "0"], status: 65, mentions: "max attempts"),
        // A negative number or duration is read as the option's value and refused for what it is,
        // not taken for another option ("Missing value").
        Case(arguments: ["enqueue", "append", "--max-attempts", "-1"], status: 65, mentions: "got -1"),
        Case(arguments: ["enqueue", "append", "--delay", "-5m"], status: 65, mentions: "--delay \"-5m\""),
        Case(arguments: ["enqueue", "append", "--run-at", "-1"], status: 65, mentions: "--run-at \"-1\""),
        Case(arguments: ["tasks", "list", "--limit", "-3"], status: 64, mentions: "--limit must be"),
        Case(arguments: ["ledger", "--limit", "-2"], status: 64, mentions: "--limit must be"),
        Case(arguments: ["ledger", "--since", "-1d"], status: 65, mentions: "--since \"-1d\""),
        Case(arguments: ["work-once", "--drain", "--max-tasks", "-1"], status: 64, mentions: "--max-tasks must be"),
        Case(
            arguments: ["work-once", "--drain", "--max-seconds", "-5"], status: 64, mentions: "--max-seconds must be"),
        Case(arguments: ["audit", "--window", "-3d"], status: 65, mentions: "--window \"-3d\""),
        Case(arguments: ["llm", "--max-tokens", "-4", "hi"], status: 64, mentions: "--max-tokens must be"),
        Case(arguments: ["llm", "--task", "-5", "hi"], status: 64, mentions: "--task must be"),
        Case(arguments: ["ledger", "--task", "-5"], status: 64, mentions: "--task must be"),
        Case(arguments: ["ledger", "list", "--task", "0"], status: 64, mentions: "--task must be"),
        Case(
            arguments: ["prune", "--finished-older-than", "-3d"], status: 65,
            mentions: "--finished-older-than \"-3d\""),
        Case(arguments: ["enqueue", "append", "--delay", "106751991167d"], status: 65, mentions: "at most 100 years"),
        Case(
            arguments: ["enqueue", "append", "--run-at", "9999-01-01T00:00:00Z"], status: 65,
            mentions: "within 100 years"),
        Case(
            arguments: ["work-once", "--drain", "--max-seconds", "10000000000000000"], status: 64,
            mentions: "--max-seconds"),
        // With no allowed_signers configured, nothing can be approved, and the error says how to fix it.
        Case(arguments: ["approve", "99"], status: 77, mentions: "autonomy operator init"),
        Case(arguments: ["approve", "99", "--key", "/nonexistent/key"], status: 77, mentions: "no key file"),
        Case(arguments: ["approve", "99", "--by", "elad"], status: 64, mentions: "--by is gone"),
        // An endless input is refused after its limit, not read until memory runs out.
        Case(arguments: ["enqueue", "append", "--payload-file", "/dev/zero"], status: 65, mentions: "over 64 MiB"),
        Case(
            arguments: ["firewall", "check", "append", "--payload-file", "/dev/zero"], status: 65,
            mentions: "over 64 MiB"),
        Case(arguments: ["reject", "99"], status: 64, mentions: "--reason"),
        Case(arguments: ["firewall", "check", "nope"], status: 65, mentions: "not declared"),
        Case(arguments: ["metrics", "--textfile", "/nonexistent-dir/a.prom"], status: 73, mentions: "cannot write"),
        Case(arguments: ["ledger", "--since", "soon"], status: 65, mentions: "--since"),
        Case(arguments: ["prune", "--finished-older-than", "soon"], status: 65, mentions: "--finished-older-than"),
        Case(arguments: ["verify", "99"], status: 66, mentions: "no task 99"),
        Case(arguments: ["llm", "hello"], status: 78, mentions: "no model is configured"),
        Case(arguments: ["ledger", "export", "--format", "xml"], status: 64, mentions: "xml"),
        Case(arguments: ["enqueue", "append", "--priority", "many"], status: 64, mentions: "priority"),
        Case(
            arguments: ["enqueue", "append", "--payload-file", "/nonexistent/payload.json"], status: 66,
            mentions: "no such payload file"),
        Case(
            arguments: ["enqueue", "append", "--payload-file", "/tmp"], status: 66, mentions: "is a folder, not a file"),
        Case(arguments: ["enqueue", "--batch", "/tmp"], status: 66, mentions: "is a folder, not a file"),
        Case(arguments: ["config", "check", "--config", "/tmp"], status: 78, mentions: "is a folder, not a file"),
        Case(
            arguments: ["enqueue", "append", "--key", "k", "--payload", #"{"other":1}"#], status: 65,
            mentions: "idempotency key"),
        Case(
            arguments: ["enqueue", "--batch", "-"], stdin: "{\"type\":\"append\"}\n{\"type\":\"nope\"}\n", status: 65,
            mentions: "line 2"),
        Case(
            arguments: ["enqueue", "--batch", "-"], stdin: "{\"type\":\"append\"}\nnot json\n", status: 65,
            mentions: "line 2"),
        Case(arguments: ["enqueue"], status: 64, mentions: "task type"),
        Case(arguments: ["enqueue", "append", "--no-such-flag"], status: 64, mentions: "--no-such-flag"),
        Case(arguments: ["frobnicate"], status: 64, mentions: "frobnicate"),
        Case(arguments: ["tasks", "show", "999"], status: 66, mentions: "no task 999"),
        Case(arguments: ["tasks", "show", "abc"], status: 64, mentions: "abc"),
        Case(arguments: ["tasks", "cancel", "1"], status: 1, mentions: "only queued"),
        Case(arguments: ["tasks", "retry", "1"], status: 1, mentions: "only dead"),
        Case(
            arguments: ["tasks", "list", "--state", "sleeping"], status: 64,
            mentions: "sleeping' is invalid for '--state <state>'. Please provide one of the following: queued, "),
        Case(arguments: ["work-once", "--max-tasks", "3"], status: 64, mentions: "--drain"),
        Case(arguments: ["status", "--config", "/nonexistent/autonomy.json"], status: 78, mentions: "no such file"),
        Case(arguments: ["status", "--database", "/nonexistent-dir/x.db"], status: 66, mentions: "no database at"),
        Case(
            arguments: ["enqueue", "append", "--database", "/nonexistent-dir/x.db"], status: 74,
            mentions: "does not exist"),
        // The demo never writes its configuration, key and allowed_signers over what a folder holds.
        Case(arguments: ["demo", "--dir", "/etc"], status: 73, mentions: "is not empty"),
        Case(arguments: ["demo", "--dir", "/proc/nope"], status: 73, mentions: "cannot create /proc/nope"),
        Case(arguments: ["demo", "--dir", "/etc/passwd"], status: 73, mentions: "is a file"),
        Case(arguments: ["approvals", "show", "1"], status: 66, mentions: "waiting for a decision"),
        Case(arguments: ["ledger", "--event", "bogus"], status: 64, mentions: "the events are: enqueued, held"),
    ]

    @Test(arguments: cases)
    func isRefusedWithOneErrorLineAndChangesNothing(_ refused: Case) async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        // Task 1 exists, is done, and holds key "k".
        _ = try await sandbox.run(["enqueue", "append", "--key", "k", "--payload", #"{"first":1}"#])
        _ = try await sandbox.run(["work-once"])
        let before = try sandbox.snapshot()

        let result = try await sandbox.run(refused.arguments, stdin: refused.stdin)
        #expect(result.status == refused.status, "\(result.stderr)")
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("error: "))
        #expect(result.stderr.contains(refused.mentions), "\(result.stderr)")
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"))
        #expect(try sandbox.snapshot() == before)
    }

    @Test func anArgumentThatIsNotUTF8IsRefusedNotRepaired() async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        _ = try await sandbox.run(["enqueue", "append"])
        let before = try sandbox.snapshot()
        // A shell passes the bytes as they are; Swift's CommandLine.arguments would repair them.
        let result = try await sandbox.run(
            ["-c", #""$0" enqueue append --payload "$(printf '{"a":"\377\376"}')""#, autonomyBinary],
            executable: "/bin/sh")
        #expect(result.status == 65 && result.stderrLines.count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("error: argument 4 is not valid UTF-8"), "\(result.stderr)")
        #expect(try sandbox.snapshot() == before)
    }

    @Test func aNegativePriorityIsAValueNotAnOption() async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        let result = try await sandbox.run(["enqueue", "append", "--delay", "10m", "--priority", "-5"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try sandbox.count("SELECT COUNT(*) FROM tasks WHERE priority = -5") == 1)
    }

    @Test func readingCommandsDoNotCreateAMissingDatabase() async throws {
        let sandbox = try Sandbox(config: QueueEndToEndTests.config)
        for arguments in [["status"], ["tasks", "list"], ["tasks", "show", "1"], ["tasks", "cancel", "1"]] {
            let result = try await sandbox.run(arguments)
            #expect(result.status == 66, "\(arguments): \(result.stderr)")
            #expect(
                result.stderrLines == [
                    "error: no database at \(sandbox.databasePath) yet (nothing was enqueued there; check --database or AUTONOMY_DATABASE)"
                ])
        }
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))
        // A refused enqueue makes none either.
        let refused = try await sandbox.run(["enqueue", "wire_money"])
        #expect(refused.status == 65 && !FileManager.default.fileExists(atPath: sandbox.databasePath))
        // An empty file is no database yet to a command that reads; an enqueue makes it one, 0600.
        FileManager.default.createFile(
            atPath: sandbox.databasePath, contents: nil, attributes: [.posixPermissions: 0o644])
        #expect(try await sandbox.run(["status"]).status == 66)
        #expect(try FileManager.default.attributesOfItem(atPath: sandbox.databasePath)[.size] as? Int == 0)
        #expect(try await sandbox.run(["enqueue", "append"]).status == 0)
        let mode = try FileManager.default.attributesOfItem(atPath: sandbox.databasePath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try FileManager.default.removeItem(atPath: sandbox.databasePath)
        // The worker's timer may fire before anything was enqueued: that is not a failure.
        let idle = try await sandbox.run(["work-once", "--drain"])
        #expect(idle.status == 0 && idle.stdout.contains("nothing to do"))
    }

    @Test func aBrokenConfigurationNamesTheKeyPathAndExits78() async throws {
        let sandbox = try Sandbox(
            config: #"{"version": 1, "task_types": {"send_email": {"handler": {"exec": {"argv": []}}}}}"#)
        let result = try await sandbox.run(["work-once"])
        #expect(result.status == 78)
        #expect(result.stderr.contains("task_types.send_email.handler.exec.argv: expected a non-empty array"))
        #expect(!FileManager.default.fileExists(atPath: sandbox.databasePath))
        let check = try await sandbox.run(["config", "check"])
        #expect(check.status == 78)
    }
}
