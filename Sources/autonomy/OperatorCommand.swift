import ArgumentParser
import AutonomyCore
import Foundation

struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator",
        abstract: "Set up an operator's signing key.",
        subcommands: [Init.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Make an Ed25519 key for signing decisions, and print the allowed_signers line to add.",
            discussion: prose(
                """
                Writes the private key (mode 0600, OpenSSH's format, so ssh-keygen can use it too) and \
                its .pub beside it, and never overwrites a key. An operator who already has an SSH key \
                can skip this and pass --key to approve and reject.
                Example: autonomy operator init --principal elad
                """))

        @Option(
            help: ArgumentHelp(
                "Where to write the key (default: ~/.config/autonomy/operator_ed25519).", valueName: "file"))
        var key: String?

        @Option(help: "The name decisions are signed as (default: your login name).")
        var principal: String?

        func validate() throws {
            if let principal,
                principal.isEmpty || principal.contains(where: { $0.isWhitespace || $0 == "," || $0 == "\"" })
            {
                throw ValidationError("--principal is one name, without spaces, commas or quotes")
            }
        }

        func run() async throws {
            let path = key.map(ConfigLoader.absolutePath) ?? DecisionSigner.defaultKeyPath()
            let name = try principal ?? loginName()
            let folder = (path as NSString).deletingLastPathComponent
            if !FileManager.default.fileExists(atPath: folder) {
                do {
                    try FileManager.default.createDirectory(
                        atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                } catch {
                    throw CLIFailure("cannot create \(folder): \(error.localizedDescription)", code: .cannotCreate)
                }
            }
            let key = OpenSSHEd25519Key(comment: name)
            try create(path, key.openSSHText, mode: 0o600)
            try create(path + ".pub", key.publicKey.openSSH + " \(name)\n", mode: 0o644)
            print("wrote \(path) (private, 0600) and \(path).pub")
            print("its fingerprint: \(key.publicKey.fingerprint)")
            print("\nadd this line to the allowed_signers file named by approvals.allowed_signers:\n")
            print("\(name) namespaces=\"\(SSHSignature.decisionNamespace)\" \(key.publicKey.openSSH)")
            print("\nthen decide with: autonomy approve ID" + (self.key == nil ? "" : " --key \(path)"))
        }

        private func create(_ path: String, _ text: String, mode: mode_t) throws {
            let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode)
            guard descriptor >= 0 else {
                let reason =
                    errno == EEXIST ? "it exists already (nothing was overwritten)" : String(cString: strerror(errno))
                throw CLIFailure("cannot write \(path): \(reason)", code: .cannotCreate)
            }
            defer { close(descriptor) }
            let bytes = Array(text.utf8)
            guard write(descriptor, bytes, bytes.count) == bytes.count else {
                throw CLIFailure("cannot write \(path): \(String(cString: strerror(errno)))", code: .cannotCreate)
            }
        }
    }
}

/// The login name of the user running this.
func loginName() throws -> String {
    let environment = ProcessEnvironment.variables
    if let name = environment["USER"] ?? environment["LOGNAME"], !name.isEmpty { return name }
    if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name { return String(cString: name) }
    throw CLIFailure("cannot tell your login name: pass --principal NAME", code: .usage)
}
