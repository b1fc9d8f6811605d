import Crypto
import Foundation

/// OpenSSH's SSHSIG signature format (`PROTOCOL.sshsig`): what `ssh-keygen -Y sign` writes and
/// `ssh-keygen -Y verify` checks, and what signed git commits use.
///
/// The signature covers `"SSHSIG" ‖ string(namespace) ‖ string(reserved) ‖ string(hash algorithm) ‖
/// string(H(message))`, so a signature made for one namespace never counts in another.
public struct SSHSignature: Sendable, Equatable {
    public let publicKey: SSHPublicKey
    public let namespace: String
    /// `sha512` (what ssh-keygen uses) or `sha256`.
    public let hashAlgorithm: String
    /// The signature's own algorithm name (`ssh-ed25519`, `rsa-sha2-512`, …).
    public let algorithm: String
    public let signature: [UInt8]

    static let magic = Array("SSHSIG".utf8)
    static let begin = "-----BEGIN SSH SIGNATURE-----"
    static let end = "-----END SSH SIGNATURE-----"

    /// The namespace every decision is signed in.
    public static let decisionNamespace = "autonomy-decision"

    /// Signs `message` with an Ed25519 key, exactly as `ssh-keygen -Y sign -n NAMESPACE` would.
    public static func sign(
        _ message: [UInt8], namespace: String, with key: OpenSSHEd25519Key
    ) throws -> SSHSignature {
        let data = signedData(message, namespace: namespace, hashAlgorithm: "sha512")
        let signature = try key.privateKey.signature(for: data)
        return SSHSignature(
            publicKey: key.publicKey, namespace: namespace, hashAlgorithm: "sha512", algorithm: "ssh-ed25519",
            signature: Array(signature))
    }

    /// What the key really signs: the message is hashed and framed with the namespace.
    static func signedData(_ message: [UInt8], namespace: String, hashAlgorithm: String) -> [UInt8] {
        let digest: [UInt8] =
            hashAlgorithm == "sha256" ? Array(SHA256.hash(data: message)) : Array(SHA512.hash(data: message))
        var writer = SSHWireWriter()
        writer.bytes = magic
        writer.string(namespace)
        writer.string("")
        writer.string(hashAlgorithm)
        writer.string(digest)
        return writer.bytes
    }

    /// Parses the armored text (`-----BEGIN SSH SIGNATURE-----` …).
    public init(armored text: String) throws(SSHFormatError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix(Self.begin), trimmed.hasSuffix(Self.end), trimmed.count < 64 * 1024 else {
            throw .malformed("not an SSH signature (it should start with \(Self.begin))")
        }
        let body = trimmed.dropFirst(Self.begin.count).dropLast(Self.end.count).filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: String(body)) else { throw .malformed("its base64 is damaged") }
        var reader = SSHWireReader(Array(data))
        guard try reader.fixed(6) == Self.magic else { throw .malformed("it does not start with SSHSIG") }
        guard try reader.uint32() == 1 else { throw .malformed("unknown SSHSIG version") }
        publicKey = try SSHPublicKey(blob: try reader.string())
        namespace = try reader.text()
        _ = try reader.string()  // reserved
        hashAlgorithm = try reader.text()
        guard hashAlgorithm == "sha512" || hashAlgorithm == "sha256" else {
            throw .malformed("unknown hash algorithm \(hashAlgorithm)")
        }
        var inner = SSHWireReader(try reader.string())
        algorithm = try inner.text()
        signature = try inner.string()
        guard reader.isAtEnd else { throw .malformed("it has bytes after the signature") }
    }

    init(
        publicKey: SSHPublicKey, namespace: String, hashAlgorithm: String, algorithm: String, signature: [UInt8]
    ) {
        self.publicKey = publicKey
        self.namespace = namespace
        self.hashAlgorithm = hashAlgorithm
        self.algorithm = algorithm
        self.signature = signature
    }

    /// The armored text, line for line as ssh-keygen writes it.
    public var armored: String {
        var inner = SSHWireWriter()
        inner.string(algorithm)
        inner.string(signature)
        var writer = SSHWireWriter()
        writer.bytes = Self.magic
        writer.uint32(1)
        writer.string(publicKey.blob)
        writer.string(namespace)
        writer.string("")
        writer.string(hashAlgorithm)
        writer.string(inner.bytes)
        return Self.begin + "\n" + OpenSSHEd25519Key.wrap(Data(writer.bytes).base64EncodedString(), width: 70)
            + Self.end + "\n"
    }

    /// Checks an Ed25519 signature over `message` in `namespace`. False for any other key type
    /// (those are checked by `ssh-keygen`).
    func isValidEd25519(for message: [UInt8], namespace expected: String) -> Bool {
        guard namespace == expected, algorithm == "ssh-ed25519", let key = publicKey.ed25519 else { return false }
        return key.isValidSignature(
            signature, for: Self.signedData(message, namespace: namespace, hashAlgorithm: hashAlgorithm))
    }
}
