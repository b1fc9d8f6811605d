import Foundation
import Testing

@testable import AutonomyCore

/// Golden vectors made by OpenSSH 9.2's ssh-keygen, not by this code: a key (`ssh-keygen -t ed25519
/// -N '' -C golden`), a decision statement typed by hand, and `ssh-keygen -Y sign -n
/// autonomy-decision` over it. Ed25519 signatures are deterministic, so the native signer must
/// write these bytes exactly.
enum Golden {
    static let privateKey = """
        -----BEGIN OPENSSH PRIVATE KEY-----
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
        QyNTUxOQAAACB+HvHkMqdhIEyGe0DmC8zI0XUYjJCD65JP7iWa7SGpZwAAAJCoueDxqLng
        8QAAAAtzc2gtZWQyNTUxOQAAACB+HvHkMqdhIEyGe0DmC8zI0XUYjJCD65JP7iWa7SGpZw
        AAAEBE94li5GNE0PYdKjxNPGk0ErtM8K2JDisTbskAvskTiH4e8eQyp2EgTIZ7QOYLzMjR
        dRiMkIPrkk/uJZrtIalnAAAABmdvbGRlbgECAwQFBgc=
        -----END OPENSSH PRIVATE KEY-----

        """
    static let publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH4e8eQyp2EgTIZ7QOYLzMjRdRiMkIPrkk/uJZrtIaln"
    /// `ssh-keygen -lf`.
    static let fingerprint = "SHA256:x+7sf1pWd1y4mEwQBBkHdj1HrWodZiBVMKPtyAgY2mw"
    /// Keys sorted, no spaces; the payload hash is `printf '{}' | sha256sum`.
    static let statement =
        #"{"approval_id":7,"at":"2026-11-25T12:00:00Z","attempt":1,"decision":"approve","note":"checked the recipient","payload_sha256":"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","principal":"elad","statement":"autonomy-decision/v1","task_id":3,"type":"send_email","valid_until":"2026-11-26T12:00:00Z"}"#
    static let signature = """
        -----BEGIN SSH SIGNATURE-----
        U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgfh7x5DKnYSBMhntA5gvMyNF1GI
        yQg+uST+4lmu0hqWcAAAARYXV0b25vbXktZGVjaXNpb24AAAAAAAAABnNoYTUxMgAAAFMA
        AAALc3NoLWVkMjU1MTkAAABAm/UzNTHkYPB2l1L50t++ya05xgKfqxkA0Pch5NtrTUord0
        TP7KkCRBbWVjGr5jX6LYvXnybYMJvDd8hUmXOPDg==
        -----END SSH SIGNATURE-----

        """

    static func key() throws -> OpenSSHEd25519Key {
        guard case .ed25519(let key) = try OpenSSHEd25519Key.read(privateKey) else {
            throw SSHFormatError.malformed("the golden key is not read as Ed25519")
        }
        return key
    }
}

@Suite struct SSHSignatureGoldenTests {
    @Test func aDecisionStatementHasOneCanonicalText() throws {
        let statement = DecisionStatement(
            approvalID: 7, taskID: 3, type: "send_email", payloadSHA256: "{}".sha256Hex, attempt: 1,
            decision: .approve, at: try #require(Timestamp.parse("2026-11-25T12:00:00Z")),
            validUntil: try #require(Timestamp.parse("2026-11-26T12:00:00Z")), note: "checked the recipient",
            principal: "elad")
        #expect(statement.text == Golden.statement)
        #expect(try DecisionStatement(text: Golden.statement) == statement)
        // Any other spelling of the same facts is not a statement: one decision, one signed text.
        let spaced = Golden.statement.replacingOccurrences(of: #""attempt":1"#, with: #""attempt": 1"#)
        #expect(throws: TrustError.self) { try DecisionStatement(text: spaced) }
    }

    @Test func theNativeSignerWritesExactlyWhatSSHKeygenWrote() throws {
        let key = try Golden.key()
        #expect(key.comment == "golden")
        #expect(key.publicKey.openSSH == Golden.publicKey)
        #expect(key.publicKey.fingerprint == Golden.fingerprint)
        let signature = try SSHSignature.sign(
            Array(Golden.statement.utf8), namespace: SSHSignature.decisionNamespace, with: key)
        #expect(signature.armored == Golden.signature)
    }

    @Test func theNativeVerifierAcceptsSSHKeygensSignatureAndNothingElse() throws {
        let signature = try SSHSignature(armored: Golden.signature)
        #expect(signature.publicKey.openSSH == Golden.publicKey)
        #expect(signature.namespace == "autonomy-decision" && signature.hashAlgorithm == "sha512")
        #expect(signature.isValidEd25519(for: Array(Golden.statement.utf8), namespace: "autonomy-decision"))
        let tampered = Golden.statement.replacingOccurrences(of: "\"attempt\":1", with: "\"attempt\":2")
        #expect(!signature.isValidEd25519(for: Array(tampered.utf8), namespace: "autonomy-decision"))
        // The same signature never counts in another namespace (a signed git commit is no decision).
        #expect(!signature.isValidEd25519(for: Array(Golden.statement.utf8), namespace: "git"))
        #expect(throws: SSHFormatError.self) { try SSHSignature(armored: "-----BEGIN SSH SIGNATURE-----\nAAAA\n") }
    }

    @Test func aWrittenKeyReadsBackTheSame() throws {
        let key = OpenSSHEd25519Key(comment: "elad")
        guard case .ed25519(let again) = try OpenSSHEd25519Key.read(key.openSSHText) else {
            Issue.record("a key this code wrote is not read back as Ed25519")
            return
        }
        #expect(again.publicKey == key.publicKey && again.comment == "elad")
        #expect(try SSHPublicKey(openSSH: key.publicKey.openSSH + " elad") == key.publicKey)
        // Every line of the armor is at most 70 characters, as OpenSSH writes it.
        #expect(key.openSSHText.split(separator: "\n").allSatisfy { $0.count <= 70 || $0.hasPrefix("-----") })
    }

    @Test func keysThisCodeDoesNotSignWithAreLeftToSSHKeygen() throws {
        let encrypted = Golden.privateKey.replacingOccurrences(
            of: "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB",
            with: "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAAAAAAAAB")
        if case .ed25519 = try OpenSSHEd25519Key.read(encrypted) {
            Issue.record("a passphrase-protected key was taken as a plain one")
        }
        #expect(throws: SSHFormatError.self) { try OpenSSHEd25519Key.read("not a key") }
    }
}
