import Foundation
import Testing

@testable import AutonomyCore

/// The server's token seal, pinned by vectors computed without this code: `printf %s
/// autonomy-token-seal/v1 | ssh-keygen -Y sign -n autonomy-token-seal -f golden` (OpenSSH 9.2,
/// the golden key of `SSHSignatureTests`), then in Python: the key is SHA-256 of
/// `"autonomy-token-seal/v1\n"` and the signature's 64 raw Ed25519 bytes, a token's digest is
/// `hmac.new(key, token, sha256).hexdigest()`.
@Suite struct TokenSealTests {
    static let signature = """
        -----BEGIN SSH SIGNATURE-----
        U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgfh7x5DKnYSBMhntA5gvMyNF1GI
        yQg+uST+4lmu0hqWcAAAATYXV0b25vbXktdG9rZW4tc2VhbAAAAAAAAAAGc2hhNTEyAAAA
        UwAAAAtzc2gtZWQyNTUxOQAAAECIweytovriOliqupKFC0C38bwXrLYRIN7Z3gB13HtIqH
        zgc13nLk5nA/5YL0dh3gVlBd1CtqPfZbeblQxlw9kJ
        -----END SSH SIGNATURE-----

        """
    static let vectors = [
        "abc": "c5c17ab51c8c1352bca5a3513ef5e3ee295c1022e28713296dff6fe2925d8837",
        "q3x_7Zk-example-token": "17771a356be387345991b8dc2ec7a5f1d23b2587a4bca9660dde5a2766cff8fb",
    ]

    @Test func theSealOfTheGoldenKeyGivesThePinnedDigests() throws {
        let signer = DecisionSigner.native(try Golden.key())
        // The signature the key is derived from is exactly the one ssh-keygen made.
        #expect(try signer.sign(TokenSeal.text, namespace: TokenSeal.namespace) == Self.signature)
        let seal = try TokenSeal(serverKey: signer)
        #expect(seal.isKeyed)
        for (token, digest) in Self.vectors { #expect(seal.digest(token) == digest) }
    }

    @Test(.enabled(if: SSHKeygen.locate() != nil, "needs ssh-keygen"))
    func aKeyOnlySSHKeygenUsesSealsTheSame() throws {
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("seal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = (folder as NSString).appendingPathComponent("golden")
        try Golden.privateKey.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        let signer = DecisionSigner.sshKeygen(
            program: try #require(SSHKeygen.locate()), keyPath: path, publicKey: try Golden.key().publicKey)
        let seal = try TokenSeal(serverKey: signer)
        for (token, digest) in Self.vectors { #expect(seal.digest(token) == digest) }
    }

    @Test func withoutAKeyATokenIsKeptAsItsSHA256() {
        #expect(!TokenSeal.plain.isKeyed)
        // printf %s abc | sha256sum
        #expect(TokenSeal.plain.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
