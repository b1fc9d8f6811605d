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
            let result = SSHKeygen.run(
                program, ["-Y", "sign", "-q", "-f", keyPath, "-n", namespace],
                input: Array(message.utf8))
            guard result.status == 0, result.stdout.contains("BEGIN SSH SIGNATURE") else {
                throw .signingFailed(
                    "ssh-keygen -Y sign failed: \(result.stderr.isEmpty ? "exit \(result.status)" : result.stderr)")
            }
            return result.stdout
        }
    }
}

/// OpenSSH's own tool, for the keys this code does not handle itself.
public enum SSHKeygen {
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        ExecRunner.locate("ssh-keygen", base: "/", searchPath: (environment["PATH"] ?? "") + ":/usr/bin:/bin")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var passed: Bool { status == 0 }
        var detail: String {
            let text = (stderr + stdout).split(separator: "\n").first.map(String.init) ?? ""
            return text.isEmpty ? "exit \(status)" : text
        }
    }

    static func verify(
        _ program: String, message: [UInt8], signature: String, allowedSigners: String, principal: String
    ) -> Result {
        let folder = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-sig-\(UUID().uuidString)")
        guard mkdir(folder, 0o700) == 0 else {
            return Result(status: -1, stdout: "", stderr: "cannot make a temporary folder")
        }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = (folder as NSString).appendingPathComponent("decision.sig")
        guard FileManager.default.createFile(atPath: file, contents: Data(signature.utf8)) else {
            return Result(status: -1, stdout: "", stderr: "cannot write a temporary file")
        }
        return run(
            program,
            ["-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", SSHSignature.decisionNamespace, "-s", file],
            input: message)
    }

    /// Runs the tool with `input` on stdin; a passphrase prompt goes to the terminal, as usual.
    static func run(_ program: String, _ arguments: [String], input: [UInt8]) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let (stdin, stdout, stderr) = (Pipe(), Pipe(), Pipe())
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        do {
            try process.run()
        } catch {
            return Result(status: -1, stdout: "", stderr: "cannot start \(program): \(error)")
        }
        try? stdin.fileHandleForWriting.write(contentsOf: Data(input))  // a program that quit early is judged by its status
        try? stdin.fileHandleForWriting.close()
        let errors = ReadAll(stderr.fileHandleForReading)
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: output, as: UTF8.self),
            stderr: errors.text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Reads a pipe to its end on another thread, so two pipes never block each other.
private final class ReadAll: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    var text: String {
        done.wait()
        return String(decoding: data, as: UTF8.self)
    }
}
