import Foundation

/// Checks decision signatures against the operators' keys: natively for Ed25519, through
/// `ssh-keygen -Y verify` for every other kind of key (RSA, ECDSA, security keys, certificates).
public struct DecisionVerifier: Sendable {
    /// The `allowed_signers` file; nil means nobody may decide.
    public var allowedSignersPath: String?
    /// Where `ssh-keygen` is, for keys that are not Ed25519; nil looks for it in `PATH` when one
    /// is needed (never for an Ed25519 key, so the claim path does not search for it).
    public var sshKeygen: String?
    /// The longest window a statement may give its task to start in (`approvals.run_within`).
    public var runWithin: Interval

    public init(allowedSignersPath: String?, sshKeygen: String? = nil, runWithin: Interval = .hours(24)) {
        self.allowedSignersPath = allowedSignersPath
        self.sshKeygen = sshKeygen
        self.runWithin = runWithin
    }

    public init(settings: ApprovalSettings) {
        self.init(allowedSignersPath: settings.allowedSigners, runWithin: settings.runWithin)
    }

    /// The operators' keys, read now.
    ///
    /// - Throws: `TrustError.noSigners` when none is configured, `.signersUnusable` when the file is unsafe.
    public func signers() throws(TrustError) -> AllowedSigners {
        guard let allowedSignersPath else { throw .noSigners }
        return try AllowedSigners.load(path: allowedSignersPath)
    }

    /// Checks that `signature` is a valid SSHSIG over `message` in the decision namespace, made
    /// by a key that `allowed_signers` lists for `principal` at `now`; returns the key.
    public func verify(
        _ message: String, signature armored: String, principal: String, at now: Int64
    ) throws(TrustError) -> SSHPublicKey {
        let signers = try signers()
        let signature: SSHSignature
        do {
            signature = try SSHSignature(armored: armored)
        } catch {
            throw .badSignature("\(error)")
        }
        guard signature.namespace == SSHSignature.decisionNamespace else {
            throw .badSignature("it was made for \"\(signature.namespace)\", not \(SSHSignature.decisionNamespace)")
        }
        if signature.publicKey.type == "ssh-ed25519" {
            guard signers.allows(signature.publicKey, as: principal, at: now) else {
                throw .unknownSigner(fingerprint: signature.publicKey.fingerprint, path: signers.path)
            }
            guard signature.isValidEd25519(for: Array(message.utf8), namespace: SSHSignature.decisionNamespace)
            else { throw .badSignature("it does not verify with \(signature.publicKey.fingerprint)") }
            return signature.publicKey
        }
        guard let sshKeygen = sshKeygen ?? SSHKeygen.locate() else {
            throw .badSignature("\(signature.publicKey.type) keys are checked by ssh-keygen, which is not installed")
        }
        let verdict = SSHKeygen.verify(
            sshKeygen, message: Array(message.utf8), signature: armored, allowedSigners: signers.path,
            principal: principal)
        guard verdict.passed else { throw .badSignature("ssh-keygen -Y verify refused it: \(verdict.detail)") }
        return signature.publicKey
    }
}

/// An operator's key, ready to sign: natively when it is an unencrypted Ed25519 file, else
/// through `ssh-keygen -Y sign` (ssh-agent, a passphrase, a hardware key).
public enum DecisionSigner: Sendable {
    case native(OpenSSHEd25519Key)
    case sshKeygen(program: String, keyPath: String, publicKey: SSHPublicKey)

    /// Where `operator init` writes a key, and where `approve` looks when no key is named.
    public static func defaultKeyPath(home: String = UserHome.path) -> String {
        (home as NSString).appendingPathComponent(".config/autonomy/operator_ed25519")
    }

    /// Opens the key at `path`: a private key file, or a `.pub` file whose key is in ssh-agent.
    ///
    /// - Throws: `TrustError.signingFailed` naming what is wrong with the file.
    public static func load(path: String) throws(TrustError) -> DecisionSigner {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw .signingFailed(exists ? "cannot read \(path) (check its permissions)" : "no key file \(path)")
        }
        if text.hasPrefix("-----BEGIN OPENSSH PRIVATE KEY-----") {
            do {
                if case .ed25519(let key) = try OpenSSHEd25519Key.read(text) { return .native(key) }
            } catch {
                throw .signingFailed("\(path): \(error)")
            }
        }
        guard let program = SSHKeygen.locate() else {
            throw .signingFailed(
                "\(path) is not an unencrypted Ed25519 key, and ssh-keygen is not installed to sign with it")
        }
        let publicKey: SSHPublicKey
        if let key = try? SSHPublicKey(openSSH: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            publicKey = key
        } else if let pub = FileManager.default.contents(atPath: path + ".pub"),
            let key = try? SSHPublicKey(openSSH: String(decoding: pub, as: UTF8.self))
        {
            publicKey = key
        } else {
            throw .signingFailed("cannot find the public half of \(path) (\(path).pub)")
        }
        return .sshKeygen(program: program, keyPath: path, publicKey: publicKey)
    }

    public var publicKey: SSHPublicKey {
        switch self {
        case .native(let key): return key.publicKey
        case .sshKeygen(_, _, let key): return key
        }
    }

    /// Signs `message` in the decision namespace (or another); returns the armored signature.
    public func sign(_ message: String, namespace: String = SSHSignature.decisionNamespace) throws(TrustError)
        -> String
    {
        switch self {
        case .native(let key):
            do {
                return try SSHSignature.sign(Array(message.utf8), namespace: namespace, with: key).armored
            } catch {
                throw .signingFailed("\(error)")
            }
        case .sshKeygen(let program, let keyPath, _):
            let result = SSHKeygen.sign(program, keyPath: keyPath, namespace: namespace, message: Array(message.utf8))
            guard result.passed, result.stdout.contains("BEGIN SSH SIGNATURE") else {
                throw .signingFailed("ssh-keygen -Y sign failed: \(result.detail)")
            }
            return result.stdout
        }
    }
}

/// OpenSSH's own tool, for the keys this code does not handle itself.
public enum SSHKeygen {
    public static func locate(environment: [String: String] = ProcessEnvironment.variables) -> String? {
        ExecRunner.locate("ssh-keygen", base: "/", searchPath: (environment["PATH"] ?? "") + ":/usr/bin:/bin")
    }

    /// How long `ssh-keygen` may take to check a signature: it reads files and computes.
    static let verifyTimeout = Interval.seconds(30)
    /// How long it may take to sign: an agent that asks for a confirmation or a key's touch, or a
    /// person typing a passphrase at the terminal, needs longer than a computation.
    static let signTimeout = Interval.minutes(2)

    static func verify(
        _ program: String, message: [UInt8], signature: String, allowedSigners: String, principal: String
    ) -> Tool.Result {
        let file: PayloadFile
        do {
            file = try PayloadFile(.decisionSignature, bytes: Array(signature.utf8))
        } catch {
            return Tool.Result(
                status: .couldNotStart("cannot write a temporary file: \(error)"), stdout: "", stderr: "")
        }
        defer { file.remove() }
        return Tool.run(
            program,
            [
                "-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", SSHSignature.decisionNamespace, "-s",
                file.path,
            ],
            input: message, timeout: verifyTimeout)
    }

    /// Signs `message` with the key at `keyPath` (or its agent); a passphrase prompt goes to the
    /// terminal when there is one.
    static func sign(_ program: String, keyPath: String, namespace: String, message: [UInt8]) -> Tool.Result {
        Tool.run(
            program, ["-Y", "sign", "-q", "-f", keyPath, "-n", namespace], input: message, timeout: signTimeout,
            terminal: isatty(STDIN_FILENO) == 1 || isatty(STDERR_FILENO) == 1)
    }
}
