import Crypto
import Foundation

/// How a secret token (an alert's one-click link, a login link, a session cookie) is kept in the
/// database: never itself, only a digest to look it up by.
///
/// - `plain`: its SHA-256. Anyone who can write the database can add a row for a token they
///   made up, so such a token proves nothing beyond what the database already grants.
/// - `keyed`: an HMAC-SHA256 under a key only the holder of `serve.signing_key` can derive. A row
///   someone wrote into the database without that key is not a token `serve` honours, so the
///   worker user (and every handler) cannot mint a session or a link that makes the server sign.
///
/// The key is derived from the server's signing key by signing a fixed text in a namespace of its
/// own (`autonomy-token-seal`), so it works for a key in a file and for one only ssh-keygen or
/// ssh-agent can use. The signature must come out the same every time (Ed25519 and RSA do; ECDSA
/// does not, and is refused).
public struct TokenSeal: Sendable {
    /// The HMAC key's bytes (`SymmetricKey` is not `Sendable`); nil: plain SHA-256.
    private let key: [UInt8]?

    /// Tokens kept as their SHA-256: what a process without the server's key issues.
    public static let plain = TokenSeal(key: nil)

    private init(key: [UInt8]?) { self.key = key }

    /// The namespace and the text whose signature the key is derived from.
    static let namespace = "autonomy-token-seal"
    static let text = "autonomy-token-seal/v1"

    /// The seal of the server whose key this is.
    ///
    /// - Throws: `TrustError.signingFailed` when the key cannot sign, or signs the same text
    ///   differently twice (an ECDSA key).
    public init(serverKey signer: DecisionSigner) throws(TrustError) {
        let first = try Self.material(signer)
        guard try Self.material(signer) == first else {
            throw .signingFailed(
                "\(signer.publicKey.type) keys sign the same text differently each time: the server's key must be Ed25519 (or RSA)"
            )
        }
        key = Array(SHA256.hash(data: Array((Self.text + "\n").utf8) + first))
    }

    private static func material(_ signer: DecisionSigner) throws(TrustError) -> [UInt8] {
        let armored = try signer.sign(text, namespace: namespace)
        do {
            return try SSHSignature(armored: armored).signature
        } catch {
            throw .signingFailed("the key's signature cannot be read: \(error)")
        }
    }

    /// True when tokens are kept under the server's key.
    public var isKeyed: Bool { key != nil }

    /// The digest a token is stored and looked up by: 64 lowercase hex digits.
    public func digest(_ token: String) -> String {
        guard let key else { return token.sha256Hex }
        return HMAC<SHA256>.authenticationCode(for: Array(token.utf8), using: SymmetricKey(data: key)).hexString
    }
}
