import ArgumentParser
import AutonomyCore
import Foundation

struct Approvals: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List the approval requests waiting for a decision, or show one in full.",
        subcommands: [List.self, Show.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List the approval requests waiting for a decision.",
            discussion: prose(
                """
                Requests whose time ran out are marked expired first. Through the gate, a producer sees \
                the requests about its own tasks only. Example: autonomy approvals
                """))

        @OptionGroup var global: GlobalOptions
        @OptionGroup var gate: GateOptions

        @Flag(help: "Print as JSON.")
        var json = false

        func run() async throws {
            var request = GateRequest(verb: .approvals)
            request.json = json
            try await perform(request, global, gate)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract:
                "Show one pending request in full: the whole payload (escaped), its hash, who asked, when it runs.",
            discussion: "Example: autonomy approvals show 7")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var gate: GateOptions
        @Argument(help: "The approval request's id.")
        var id: Int64
        @Flag(help: "Print as JSON.")
        var json = false

        func run() async throws {
            var request = GateRequest(verb: .approvals)
            (request.id, request.json) = (id, json)
            try await perform(request, global, gate)
        }
    }
}

/// What `approve` and `reject` share: the request, the key, and the retired `--by`.
struct DecisionOptions: ParsableArguments {
    @Argument(help: "The approval request's id (see 'autonomy approvals').")
    var id: Int64

    @Option(
        help: ArgumentHelp(
            "The operator's SSH key to sign with: an Ed25519 key file, any key ssh-keygen can use, or a .pub file whose key is in ssh-agent (default: $AUTONOMY_SIGNING_KEY, else ~/.config/autonomy/operator_ed25519).",
            valueName: "file"))
    var key: String?

    @Option(
        help: ArgumentHelp(
            "Sign only if the payload's SHA-256 starts with this (from 'autonomy approvals').", valueName: "prefix"))
    var sha256: String?

    @Flag(help: "Sign without asking, even on a terminal (the request is still shown).")
    var yes = false

    @Option(help: .hidden)
    var by: String?

    func validate() throws {
        if let sha256, sha256.count < 6 || !sha256.allSatisfy(\.isHexDigit) {
            throw ValidationError("--sha256 takes at least 6 hex digits of the payload's SHA-256")
        }
        if by != nil {
            throw ValidationError(
                "--by is gone for decisions: a decision is signed, and the decider is the principal allowed_signers gives the key (--key FILE)"
            )
        }
    }

    /// The key to sign with: `--key`, else `AUTONOMY_SIGNING_KEY`, else the one `operator init` makes.
    func signer() throws -> DecisionSigner {
        let environment = ProcessEnvironment.variables
        let chosen =
            key.map(ConfigLoader.absolutePath)
            ?? environment["AUTONOMY_SIGNING_KEY"].flatMap { $0.isEmpty ? nil : ConfigLoader.absolutePath($0) }
            ?? Optional(DecisionSigner.defaultKeyPath()).flatMap {
                FileManager.default.fileExists(atPath: $0) ? $0 : nil
            }
        guard let chosen else { throw TrustError.noSigningKey }
        return try DecisionSigner.load(path: chosen)
    }

    /// Asks for the statement that binds this decision, signs it here (the key never leaves this
    /// machine), and records it; prints the outcome and exits with its code.
    func decide(_ verdict: DecisionStatement.Verdict, note: String?, _ global: GlobalOptions, _ gate: GateOptions)
        async throws
    {
        let signer = try signer()
        var prepare = GateRequest(verb: .prepareDecision)
        (prepare.id, prepare.decision, prepare.note) = (id, verdict.rawValue, note)
        prepare.publicKey = signer.publicKey.openSSH
        let (prepared, _) = try await answer(prepare, global, gate, requireTrustedConfig: true)
        guard prepared.exit == 0, let text = prepared.statement else {
            emit(prepared)
            throw ExitCode(prepared.exit == 0 ? ExitCode.internalError.rawValue : prepared.exit)
        }
        // Sign only the decision that was asked for, about the payload the operator saw.
        let statement = try DecisionStatement(text: text)
        guard statement.approvalID == id, statement.decision == verdict, statement.note == note else {
            throw CLIFailure(
                "the statement offered for signing is not the decision asked for; nothing was signed",
                code: .internalError)
        }
        emit(GateAnswer(exit: 0, stderr: prepared.stderr))
        if let sha256, !statement.payloadSHA256.hasPrefix(sha256.lowercased()) {
            throw CLIFailure(
                "the payload's SHA-256 is \(statement.payloadSHA256), not \(sha256)…: it changed since you looked; nothing was signed",
                code: .notPermitted)
        }
        if !yes, isatty(STDIN_FILENO) == 1, isatty(STDERR_FILENO) == 1 {
            FileHandle.standardError.write(Data(utf8: "sign this decision? [y/N] "))
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                throw CLIFailure("not signed; nothing was decided", code: .refused)
            }
        }
        var decide = GateRequest(verb: .decide)
        (decide.statement, decide.signature) = (text, try signer.sign(text))
        try await perform(decide, global, gate, requireTrustedConfig: true)
    }
}

struct Approve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract:
            "Approve a pending request, signed with your SSH key: its task (exactly its current payload) may run.",
        discussion: prose(
            """
            The decision is an SSHSIG signature (namespace autonomy-decision) over the request, the \
            task, its type, its payload's SHA-256, the one attempt it allows and the window to run in \
            (approvals.run_within). Only keys in approvals.allowed_signers count; the decider is the \
            key's principal there.
            Example: autonomy approve 7 --note 'checked the recipient' --key ~/.ssh/id_ed25519
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var gate: GateOptions
    @OptionGroup var decision: DecisionOptions
    @Option(help: "Why, for the ledger.")
    var note: String?

    func run() async throws {
        try await decision.decide(.approve, note: note, global, gate)
    }
}

struct Reject: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Reject a pending request, signed with your SSH key: its task ends as rejected and never runs.",
        discussion: "Example: autonomy reject 7 --reason 'wrong customer'")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var gate: GateOptions
    @OptionGroup var decision: DecisionOptions
    @Option(help: "Why (required; it goes to the ledger).")
    var reason: String

    func run() async throws {
        try await decision.decide(.reject, note: reason, global, gate)
    }
}

struct Firewall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firewall",
        abstract: "Ask the firewall how it would rate a task.",
        subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Say how a task would be rated and why, without enqueuing it.",
            discussion: prose(
                """
                Exits 0 and prints "safe" or "dangerous" with the reasons; 65 when the type is not \
                declared or the payload is not JSON.
                Example: autonomy firewall check send_email --payload '{"to":"ops@example.com"}'
                """))

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A task type declared in the configuration.")
        var type: String
        @OptionGroup var payloadOptions: PayloadOptions
        @Flag(help: "Print as JSON.")
        var json = false

        func run() async throws {
            let loaded = try global.loadConfiguration()
            guard let taskType = loaded.configuration.taskType(named: type) else {
                throw QueueError.undeclaredType(type, declared: Array(loaded.configuration.taskTypes.keys))
            }
            var request = EnqueueRequest(type: type)
            try payloadOptions.apply(to: &request)
            let value: JSONValue
            do {
                value = try JSONValue.parse(request.payload)
            } catch {
                throw QueueError.invalidPayload(error.reason)
            }
            let rating = taskType.rate(value)
            if json {
                struct Output: Encodable {
                    var type, safety: String
                    var needsApproval: Bool
                    var reasons: [String]
                    var payloadSHA256: String
                    enum CodingKeys: String, CodingKey {
                        case type, safety
                        case needsApproval = "needs_approval"
                        case reasons
                        case payloadSHA256 = "payload_sha256"
                    }
                }
                return try printJSON(
                    Output(
                        type: type, safety: rating.safety.rawValue, needsApproval: rating.safety == .dangerous,
                        reasons: rating.reasons, payloadSHA256: value.canonicalText.sha256Hex))
            }
            print(rating.safety == .safe ? "safe: runs on its own" : "dangerous: waits for an operator's approval")
            for reason in rating.reasons { print("  because \(reason)") }
        }
    }
}

struct Notify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notify",
        abstract: "Check the alert channels.",
        subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test",
            abstract: "Send a test alert through every configured channel now.",
            discussion: "Exits 0 when every channel delivered, 69 when one did not. Example: autonomy notify test")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let configuration = loaded.configuration
            guard !configuration.notify.channels.isEmpty else {
                throw CLIFailure(
                    "no alert channel is configured: add notify.command or notify.webhook", code: .configError)
            }
            let clock = try currentClock()
            let reports: [AlertDelivery.Report]
            reports = try await global.onEither(
                loaded,
                sqlite: { store in
                    try store.queueTestNotification(notify: configuration.notify, now: clock.now())
                    return try await AlertDelivery(store: store, configuration: configuration, clock: clock)
                        .deliverDue()
                },
                postgres: { store in
                    try await store.queueTestNotification(notify: configuration.notify)
                    return try await AlertDelivery(store: store, configuration: configuration, clock: clock)
                        .deliverDue()
                })
            var failed = 0
            for report in reports where report.event == .test {
                if let error = report.error {
                    failed += 1
                    print("\(report.channel.rawValue): failed: \(error) (it will be retried by work-once)")
                } else {
                    print("\(report.channel.rawValue): delivered")
                }
            }
            if failed > 0 {
                throw CLIFailure("\(failed) channel(s) did not deliver the test alert", code: .unavailable)
            }
        }
    }
}
