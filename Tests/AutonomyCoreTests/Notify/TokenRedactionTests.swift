import Foundation
import Testing

@testable import AutonomyCore

/// What is stored or logged about an alert never carries a one-click token.
@Suite struct TokenRedactionTests {
    @Test(arguments: [
        (
            "the webhook answered HTTP 500: see https://ops.example.com/autonomy/approvals/7?decision=approve#token=Zx9-_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ",
            "the webhook answered HTTP 500: see https://ops.example.com/autonomy/approvals/7?decision=approve#token=[redacted]"
        ),
        (
            "review #token=abc, approve ?decision=approve#token=def\" and reject token=g_h-i.",
            "review #token=[redacted], approve ?decision=approve#token=[redacted]\" and reject token=[redacted]."
        ),
        ("token=", "token=[redacted]"),
        ("token=abc", "token=[redacted]"),
    ])
    func aTokenIsRedactedUpToItsEnd(_ text: String, _ redacted: String) {
        #expect(redactingTokens(text) == redacted)
    }

    @Test(arguments: [
        "",
        "the notify command exited with status 1: connection refused",
        "a token is not a token: TOKEN and token-less text, token = spaced",
        "approval needed: task 3 send_email (40 bytes, sha256 0123456789ab; request 2)",
    ])
    func textWithoutATokenIsUnchanged(_ text: String) {
        #expect(redactingTokens(text) == text)
    }

    /// A real alert's text holds a real token (43 base64url characters) in its link.
    @Test func anIssuedTokenInAnAlertIsRedactedWhole() throws {
        let fixture = try Fixture(map: standardMap)
        let task = try fixture.enqueue("send_email", #"{"to":"x@y.z"}"#)
        let approval = try #require(try fixture.store.pendingApprovals(now: fixture.clock.now()).first).approval
        let token = try #require(try fixture.store.issueToken(approvalID: approval.id, now: fixture.clock.now()))
        let message = NotificationMessage.approvalNeeded(
            task: try #require(try fixture.store.task(id: task.id)), approval: approval, token: token,
            baseURL: "https://ops.example.com/autonomy", timeZone: .gmt, watched: [])
        #expect(message.text.contains("#t=\(token)"))
        let redacted = redactingTokens(message.text)
        #expect(!redacted.contains(token))
        #expect(redacted == message.text.replacingOccurrences(of: token, with: "[redacted]"))
    }
}
