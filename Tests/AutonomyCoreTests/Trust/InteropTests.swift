import Foundation
import Testing

@testable import AutonomyCore

/// Both ways with OpenSSH's own tool, where it is installed: ssh-keygen verifies what this code
/// signs, this code verifies what ssh-keygen signs, and keys other than Ed25519 go through it.
@Suite(.enabled(if: SSHKeygen.locate() != nil, "ssh-keygen is not installed here; the interop checks are skipped"))
struct SSHKeygenInteropTests {
    let folder: TemporaryFolder
    let program: String

    init() throws {
        folder = try TemporaryFolder()
        program = try #require(SSHKeygen.locate())
    }

    private func keygen(_ arguments: [String], input: String = "") -> Tool.Result {
        Tool.run(program, arguments, input: Array(input.utf8), timeout: .seconds(60))
    }

    @Test func sshKeygenVerifiesANativeSignature() throws {
        let key = OpenSSHEd25519Key(comment: "elad")
        let signers = try folder.write("allowed_signers", "elad \(key.publicKey.openSSH)\n")
        let signature = try DecisionSigner.native(key).sign(Golden.statement)
        let file = try folder.write("decision.sig", signature)
        let verdict = keygen(
            ["-Y", "verify", "-f", signers, "-I", "elad", "-n", "autonomy-decision", "-s", file],
            input: Golden.statement)
        #expect(verdict.passed, "\(verdict.stderr)")
        let otherNamespace = keygen(
            ["-Y", "verify", "-f", signers, "-I", "elad", "-n", "git", "-s", file], input: Golden.statement)
        #expect(!otherNamespace.passed)
    }

    @Test func aNativeVerifierAcceptsWhatSSHKeygenSigned() throws {
        let keyPath = folder.file("id_ed25519")
        #expect(keygen(["-q", "-t", "ed25519", "-N", "", "-C", "op", "-f", keyPath]).passed)
        let publicKey = try SSHPublicKey(openSSH: try String(contentsOfFile: keyPath + ".pub", encoding: .utf8))
        let signed = keygen(["-Y", "sign", "-q", "-f", keyPath, "-n", "autonomy-decision"], input: Golden.statement)
        #expect(signed.passed)
        let signers = try folder.write("allowed_signers", "elad \(publicKey.openSSH)\n")
        // An Ed25519 signature is checked natively: a verifier whose ssh-keygen is missing still accepts it.
        let verifier = DecisionVerifier(allowedSignersPath: signers, sshKeygen: "/nonexistent/ssh-keygen")
        #expect(try verifier.verify(Golden.statement, signature: signed.stdout, principal: "elad", at: 0) == publicKey)
        #expect(throws: TrustError.self) {
            try verifier.verify(Golden.statement + " ", signature: signed.stdout, principal: "elad", at: 0)
        }
        #expect(throws: TrustError.unknownSigner(fingerprint: publicKey.fingerprint, path: signers)) {
            try verifier.verify(Golden.statement, signature: signed.stdout, principal: "mallory", at: 0)
        }
    }

    @Test func aKeyThisCodeWroteIsOneSSHKeygenReads() throws {
        let key = OpenSSHEd25519Key(comment: "elad")
        let path = try folder.write("operator_ed25519", key.openSSHText)
        chmod(path, 0o600)
        let derived = keygen(["-y", "-f", path])
        #expect(derived.passed, "\(derived.stderr)")
        #expect(derived.stdout.hasPrefix(key.publicKey.openSSH))
    }

    @Test func anECDSAKeySignsAndIsCheckedThroughSSHKeygen() throws {
        let keyPath = folder.file("id_ecdsa")
        #expect(keygen(["-q", "-t", "ecdsa", "-N", "", "-C", "op", "-f", keyPath]).passed)
        let signer = try DecisionSigner.load(path: keyPath)
        guard case .sshKeygen = signer else {
            Issue.record("an ECDSA key should be signed with by ssh-keygen")
            return
        }
        let signature = try signer.sign(Golden.statement)
        let signers = try folder.write("allowed_signers", "elad \(signer.publicKey.openSSH)\n")
        let verifier = DecisionVerifier(allowedSignersPath: signers)
        #expect(
            try verifier.verify(Golden.statement, signature: signature, principal: "elad", at: 0) == signer.publicKey)
        let tampered = Golden.statement.replacingOccurrences(of: "send_email", with: "wire_money")
        #expect(throws: TrustError.self) {
            try verifier.verify(tampered, signature: signature, principal: "elad", at: 0)
        }
    }
}

@Suite struct AllowedSignersTests {
    let elad = OpenSSHEd25519Key(comment: "elad")
    let mallory = OpenSSHEd25519Key(comment: "mallory")

    @Test func linesGivePrincipalsToKeysWithinTheirNamespacesAndTimes() throws {
        let text = """
            # operators
            elad,ops-* \(elad.publicKey.openSSH) elad's laptop
            mallory namespaces="git" \(mallory.publicKey.openSSH)

            "later" valid-after="20300101Z",namespaces="autonomy-decision,git" \(mallory.publicKey.openSSH)
            not a line at all
            """
        let signers = AllowedSigners.parse(text, path: "allowed_signers")
        #expect(signers.entries.count == 3)
        #expect(signers.warnings.count == 1 && signers.warnings[0].contains("allowed_signers:6"))
        #expect(signers.principal(for: elad.publicKey, at: 0) == "elad")
        #expect(signers.allows(elad.publicKey, as: "ops-bot", at: 0))
        #expect(!signers.allows(elad.publicKey, as: "mallory", at: 0))
        // A key allowed only for git commits signs no decision.
        #expect(signers.principal(for: mallory.publicKey, at: 0) == nil)
        // Nor before its valid-after time.
        let after2030 = try #require(AllowedSigners.timestamp("20300102Z"))
        #expect(signers.principal(for: mallory.publicKey, at: after2030) == "later")
        #expect(!signers.allows(mallory.publicKey, as: "later", at: 0))
        #expect(signers.decisionSignerCount == 2)
    }

    @Test func anExcludedPrincipalIsNotMatched() {
        let signers = AllowedSigners.parse("*,!mallory \(elad.publicKey.openSSH)\n", path: "f")
        #expect(signers.allows(elad.publicKey, as: "anyone", at: 0))
        #expect(!signers.allows(elad.publicKey, as: "mallory", at: 0))
        #expect(signers.principal(for: elad.publicKey, at: 0) == nil)  // no plain name to sign as
    }

    @Test func linesSSHKeygenWouldRefuseGrantNothing() {
        let text = """
            excluded namespaces="*,!autonomy-decision" \(elad.publicKey.openSSH)
            bad-date valid-before="20261399" \(mallory.publicKey.openSSH)
            """
        let signers = AllowedSigners.parse(text, path: "f")
        #expect(signers.principal(for: elad.publicKey, at: 0) == nil)
        #expect(signers.decisionSignerCount == 0)
        #expect(signers.entries.count == 1 && signers.warnings.count == 1)
        // Only * and ? are wildcards, as in OpenSSH: brackets are plain characters.
        #expect(PatternList.matches(["[ab]*"], "[ab]x") && !PatternList.matches(["[ab]*"], "ax"))
        #expect(PatternList.matches(["ops-?"], "ops-1") && !PatternList.matches(["ops-?"], "ops-12"))
    }

    @Test func anAllowedSignersFileOthersCanWriteIsRefused() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("allowed_signers", "elad \(elad.publicKey.openSSH)\n")
        chmod(path, 0o666)
        #expect(throws: TrustError.self) { try AllowedSigners.load(path: path) }
        chmod(path, 0o644)
        #expect(try AllowedSigners.load(path: path).entries.count == 1)
    }
}
