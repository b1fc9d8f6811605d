import Crypto
import Foundation

/// Reads the SSH wire encoding (RFC 4251 §5): big-endian `uint32`s and length-prefixed strings.
struct SSHWireReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: ArraySlice<UInt8> { bytes[offset...] }

    mutating func uint32() throws(SSHFormatError) -> UInt32 {
        guard bytes.count - offset >= 4 else { throw .truncated }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func string() throws(SSHFormatError) -> [UInt8] {
        let length = Int(try uint32())
        guard bytes.count - offset >= length else { throw .truncated }
        defer { offset += length }
        return Array(bytes[offset..<offset + length])
    }

    mutating func text() throws(SSHFormatError) -> String {
        let raw = try string()
        guard let text = String(validating: raw, as: UTF8.self) else { throw .malformed("a name is not UTF-8") }
        return text
    }

    mutating func fixed(_ count: Int) throws(SSHFormatError) -> [UInt8] {
        guard bytes.count - offset >= count else { throw .truncated }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}

/// Writes the SSH wire encoding.
struct SSHWireWriter {
    var bytes: [UInt8] = []

    mutating func uint32(_ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    mutating func string(_ value: some Collection<UInt8>) {
        uint32(UInt32(value.count))
        bytes += value
    }

    mutating func string(_ value: String) { string(Array(value.utf8)) }
}

/// Text that is not the SSH format it claims to be.
public enum SSHFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated: return "it ends too early"
        case .malformed(let why): return why
        }
    }
}

/// An SSH public key: its type name and its wire blob, as in `authorized_keys` and `allowed_signers`.
public struct SSHPublicKey: Sendable, Hashable {
    public let type: String
    /// The whole key in wire encoding (it starts with the type name again).
    public let blob: [UInt8]

    init(blob: [UInt8]) throws(SSHFormatError) {
        var reader = SSHWireReader(blob)
        type = try reader.text()
        self.blob = blob
        if type == "ssh-ed25519" {
            guard try reader.string().count == 32, reader.isAtEnd else {
                throw .malformed("an ssh-ed25519 key holds 32 bytes")
            }
        }
    }

    public init(ed25519 key: Curve25519.Signing.PublicKey) {
        var writer = SSHWireWriter()
        writer.string("ssh-ed25519")
        writer.string(key.rawRepresentation)
        type = "ssh-ed25519"
        blob = writer.bytes
    }

    /// Parses `TYPE BASE64 [COMMENT]`, the form of a `.pub` file.
    public init(openSSH line: String) throws(SSHFormatError) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count >= 2, let blob = Data(base64Encoded: String(fields[1])) else {
            throw .malformed("expected \"TYPE BASE64 [COMMENT]\", as in a .pub file")
        }
        try self.init(blob: Array(blob))
        guard type == fields[0] else { throw .malformed("the key says it is \(type), the line says \(fields[0])") }
    }

    /// `ssh-ed25519 AAAA…`, as a `.pub` file and `allowed_signers` write it.
    public var openSSH: String { "\(type) \(Data(blob).base64EncodedString())" }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    public var fingerprint: String {
        "SHA256:" + Data(SHA256.hash(data: blob)).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    /// The key for swift-crypto, when it is an Ed25519 key.
    var ed25519: Curve25519.Signing.PublicKey? {
        guard type == "ssh-ed25519" else { return nil }
        var reader = SSHWireReader(blob)
        _ = try? reader.string()
        guard let raw = try? reader.string() else { return nil }
        return try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }
}

/// An unencrypted Ed25519 key in OpenSSH's private key format (`openssh-key-v1`, what
/// `ssh-keygen -t ed25519 -N ''` and `autonomy operator init` write).
public struct OpenSSHEd25519Key: Sendable {
    /// The 32-byte seed (swift-crypto's raw representation).
    private let seed: [UInt8]
    public let comment: String

    public var privateKey: Curve25519.Signing.PrivateKey {
        // The seed was checked when this value was made.
        (try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)) ?? Curve25519.Signing.PrivateKey()
    }

    public var publicKey: SSHPublicKey { SSHPublicKey(ed25519: privateKey.publicKey) }

    public init(privateKey: Curve25519.Signing.PrivateKey = Curve25519.Signing.PrivateKey(), comment: String) {
        self.seed = Array(privateKey.rawRepresentation)
        self.comment = comment
    }

    static let begin = "-----BEGIN OPENSSH PRIVATE KEY-----"
    static let end = "-----END OPENSSH PRIVATE KEY-----"
    static let magic = Array("openssh-key-v1".utf8) + [0]

    /// What a private key file holds, as far as signing natively goes.
    public enum Contents: Sendable {
        case ed25519(OpenSSHEd25519Key)
        /// A key this code does not sign with (encrypted, or not Ed25519): `ssh-keygen` does.
        case other(reason: String)
    }

    /// Reads a private key file's text.
    ///
    /// - Throws: `SSHFormatError` when the text is no OpenSSH private key at all.
    public static func read(_ text: String) throws(SSHFormatError) -> Contents {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix(begin), trimmed.hasSuffix(end) else {
            throw .malformed("not an OpenSSH private key (it should start with \(begin))")
        }
        let body = trimmed.dropFirst(begin.count).dropLast(end.count).filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: String(body)) else { throw .malformed("its base64 is damaged") }
        var reader = SSHWireReader(Array(data))
        guard try reader.fixed(magic.count) == magic else { throw .malformed("not an openssh-key-v1 key") }
        let cipher = try reader.text()
        let kdf = try reader.text()
        _ = try reader.string()  // KDF options
        guard try reader.uint32() == 1 else { return .other(reason: "the file holds several keys") }
        let publicBlob = try reader.string()
        guard cipher == "none", kdf == "none" else { return .other(reason: "the key is protected by a passphrase") }
        let publicKey = try SSHPublicKey(blob: publicBlob)
        guard publicKey.type == "ssh-ed25519" else { return .other(reason: "it is a \(publicKey.type) key") }
        var secret = SSHWireReader(try reader.string())
        guard try secret.uint32() == secret.uint32() else { throw .malformed("its check numbers differ") }
        guard try secret.text() == "ssh-ed25519" else { throw .malformed("its private part is not Ed25519") }
        let publicRaw = try secret.string()
        let privateRaw = try secret.string()
        let comment = try secret.text()
        guard privateRaw.count == 64, Array(privateRaw[32...]) == publicRaw,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: privateRaw[..<32]),
            Array(key.publicKey.rawRepresentation) == publicRaw
        else { throw .malformed("its private and public halves do not belong together") }
        return .ed25519(OpenSSHEd25519Key(privateKey: key, comment: comment))
    }

    /// The key as OpenSSH writes it (unencrypted), for a file of mode 0600.
    public var openSSHText: String {
        let publicRaw = Array(privateKey.publicKey.rawRepresentation)
        var secret = SSHWireWriter()
        let check = UInt32.random(in: .min ... .max)
        secret.uint32(check)
        secret.uint32(check)
        secret.string("ssh-ed25519")
        secret.string(publicRaw)
        secret.string(Array(privateKey.rawRepresentation) + publicRaw)
        secret.string(comment)
        var pad: UInt8 = 1
        while secret.bytes.count % 8 != 0 {
            secret.bytes.append(pad)
            pad += 1
        }
        var writer = SSHWireWriter()
        writer.bytes = Self.magic
        writer.string("none")
        writer.string("none")
        writer.string("")
        writer.uint32(1)
        writer.string(publicKey.blob)
        writer.string(secret.bytes)
        return Self.begin + "\n" + Self.wrap(Data(writer.bytes).base64EncodedString(), width: 70) + Self.end + "\n"
    }

    static func wrap(_ text: String, width: Int) -> String {
        var lines = ""
        var rest = Substring(text)
        while !rest.isEmpty {
            lines += rest.prefix(width) + "\n"
            rest = rest.dropFirst(width)
        }
        return lines
    }
}
