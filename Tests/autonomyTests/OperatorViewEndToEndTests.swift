import AutonomyCore
import Foundation
import Testing

/// What the operator sees is what there is: whole payloads, escaped text, producer-supplied fields
/// labelled as such.
@Suite struct OperatorViewEndToEndTests {
    static let config = """
        {
          "version": 1,
          "approvals": { "allowed_signers": "allowed_signers" },
          "task_types": {
            "send_email": {
              "safety": "dangerous",
              "handler": { "exec": { "argv": ["/bin/true"] } },
              "verify": [ { "command": { "argv": ["/bin/true"] } } ]
            },
            "noisy": {
              "safety": "safe", "retry": { "max_attempts": 1 },
              "handler": { "exec": { "argv": ["/bin/sh", "-c", "printf '\\\\033[2J\\\\033]0;pwned\\\\007boom\\\\n' >&2; exit 3"] } }
            }
          }
        }
        """

    @Test func approvalsShowPrintsTheWholePayloadEscaped() async throws {
        let sandbox = try Sandbox(config: Self.config)
        let padding = String(repeating: "p", count: 190)
        let payload = #"{"Note":"\#(padding)","bcc":"spy@evil.org","to":"client@customer.org \#u{202E}gro.live"}"#
        _ = try await sandbox.run(["enqueue", "send_email", "--payload", payload, "--subject", "invoice"])
        let shown = try await sandbox.run(["approvals", "show", "1"])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("spy@evil.org") && shown.stdout.contains(padding))
        #expect(shown.stdout.contains("\\u{202e}") && !shown.stdout.unicodeScalars.contains("\u{202E}"))
        #expect(shown.stdout.contains("subject:    invoice  (producer-supplied)"))
        #expect(shown.stdout.contains("sha256 \(payload.sha256Hex)"))
        #expect(shown.stdout.contains("runs at:"))
        let missing = try await sandbox.run(["approvals", "show", "9"])
        #expect(missing.status == 66)
    }

    @Test func tasksShowNeverPrintsATerminalEscapeAHandlerWrote() async throws {
        let sandbox = try Sandbox(config: Self.config)
        _ = try await sandbox.run(["enqueue", "noisy", "--source", "bot", "--subject", "cleanup"])
        _ = try await sandbox.run(["work-once"])
        let shown = try await sandbox.run(["tasks", "show", "1"])
        #expect(shown.status == 0)
        #expect(!shown.stdout.unicodeScalars.contains("\u{1B}") && !shown.stdout.unicodeScalars.contains("\u{7}"))
        #expect(shown.stdout.contains("\\u{1b}[2J") && shown.stdout.contains("boom"))
        #expect(shown.stdout.contains("source:    bot  (producer-supplied)"))
        let listed = try await sandbox.run(["tasks", "list"])
        #expect(!listed.stdout.unicodeScalars.contains("\u{1B}"))
    }
}
