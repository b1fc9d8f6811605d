import ArgumentParser
import AutonomyCore
import AutonomyServer
import Foundation

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "The HTTP entry gate for remote producers, one-click approval pages, operator sessions.",
        discussion: prose(
            """
            Listens on loopback by default; put TLS in front of it (see the README). Remote producers
            send a bearer token made by 'autonomy producer token NAME'; NAME is an entry of
            producers.users, whose types and hourly limits apply, and the task's source.
            Example: autonomy serve --listen 127.0.0.1:8787
            """),
        subcommands: [Listen.self, Login.self, Sessions.self], defaultSubcommand: Listen.self)
}

extension Serve {
    /// The server's key and the seal it keeps tokens under, when `serve.signing_key` is set.
    static func serverKey(_ loaded: LoadedConfiguration, code: ExitCode) throws -> (
        signer: DecisionSigner, seal: TokenSeal
    )? {
        guard let path = loaded.configuration.serve.signingKey else { return nil }
        do {
            let signer = try DecisionSigner.load(path: path)
            return (signer, try TokenSeal(serverKey: signer))
        } catch {
            throw CLIFailure("serve.signing_key: \(error)", code: code)
        }
    }
}

extension Serve {
    struct Listen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "listen", abstract: "Serve HTTP until stopped (the default).",
            discussion: "Example: autonomy serve --listen 127.0.0.1:8787")

        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("Where to listen (port 0: any free port, printed).", valueName: "host:port"))
        var listen = "127.0.0.1:8787"
        @Option(help: ArgumentHelp("Serve HTTPS with this PEM certificate chain (with --tls-key).", valueName: "path"))
        var tlsCert: String?
        @Option(
            help: ArgumentHelp(
                "The certificate's PEM private key, unencrypted, not readable by others.", valueName: "path"))
        var tlsKey: String?

        func run() async throws {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                (0...65535).contains(port), colon > listen.startIndex
            else {
                throw CLIFailure("--listen \"\(listen)\" is not host:port, such as 127.0.0.1:8787", code: .usage)
            }
            let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            let tls = try tls()
            let loaded = try global.loadConfiguration()
            try loaded.requireTrusted()
            let store: any ServerStore
            switch try global.location(loaded) {
            case .sqlite: store = try global.open(loaded)
            case .postgres(let url): store = try await global.openPostgres(url, loaded)
            }
            let environment = ServerEnvironment(loaded: loaded, store: store, clock: try currentClock())
            // The key that signs the pages' decisions: loaded now, so a bad one is said at start.
            // The key signs decisions: nobody but the server's own user may read it.
            if let path = loaded.configuration.serve.signingKey {
                try Self.ownPrivate(path, named: "serve.signing_key")
            }
            let key = try Serve.serverKey(loaded, code: .configError)
            if key == nil {
                printError(
                    "warning: serve.signing_key is not set: approval pages show requests but cannot decide them")
            }
            let state = ServerState(signer: key?.signer, seal: key?.seal, tls: tls)
            let serve = { @Sendable in
                do {
                    try await AutonomyServer.run(
                        environment, state: state, host: host, port: port, logger: makeLogger("autonomy.serve"),
                        listening: { printError("autonomy serve: listening on \($0)") })
                } catch {
                    throw CLIFailure("cannot serve on \(self.listen): \(error)", code: .unavailable)
                }
            }
            // Where the pages sign, the server sends requests' alerts itself, with links under its
            // key (the only ones that decide); `work-once` leaves them to it for a while.
            let alerts = key.map { key in
                AlertDelivery(
                    store: store, configuration: loaded.configuration, clock: environment.clock, seal: key.seal,
                    approvalsOnly: true)
            }
            let postgres = store as? PostgresStore
            if let postgres {
                // A request waits for another host's transaction no longer than it may take.
                try await postgres.limitLockWait(to: loaded.configuration.serve.requestTimeout)
                // The server decides with this host's map: it is compared with the others' too.
                warnOfOtherMaps(try? await postgres.recordMap(loaded.sharedMapFingerprint))
            }
            // On a task of its own, not awaited at the end: a query on a dead connection cannot be
            // cancelled, and must not keep serve from stopping.
            let sending = alerts.flatMap { alerts in
                alerts.configuration.serverSendsRequestAlerts ? Task { try await Self.sendAlerts(alerts) } : nil
            }
            defer { sending?.cancel() }
            // With PostgreSQL, one connection serves every request: once it is lost, serve stops
            // (exit 69), and systemd (Restart=on-failure) starts it again with a new one.
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await serve() }
                    if let postgres { group.addTask { try await Self.watch(postgres) } }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            } catch {
                await postgres?.close()
                throw error
            }
            await postgres?.close()
        }

        /// Sends due alerts about requests every two seconds, for as long as the server runs. A
        /// failed round is said once (until another error, or a round that works) and tried again.
        static func sendAlerts(_ delivery: AlertDelivery) async throws {
            var said: String?
            while true {
                do {
                    for report in try await delivery.deliverDue(budget: .seconds(20)) {
                        if let warning = report.warning(retried: "tried again later") { printError(warning) }
                    }
                    said = nil
                } catch is CancellationError {
                    return
                } catch {
                    guard !Task.isCancelled else { return }
                    let line = "warning: alerts not sent: \(error) (tried again in 2 s)"
                    if line != said { printError(line) }
                    said = line
                }
                try await Task.sleep(for: .seconds(2))
            }
        }

        /// Returns never; throws once the connection is closed, or once it has been at work for
        /// three minutes without finishing anything (its server vanished without closing it).
        /// Requests queued behind a busy database keep finishing, one after another: that is not
        /// a stall. An idle connection is pinged every 30 seconds, so that a dead one is found.
        static func watch(_ postgres: PostgresStore) async throws {
            let lost = { (why: String) in
                CLIFailure(
                    "the connection to \(postgres.url) \(why): serve stops, to be started again", code: .unavailable)
            }
            var idle = 0
            while true {
                try await Task.sleep(for: .seconds(5))
                if postgres.isClosed { throw lost("was lost") }
                guard let stalled = await postgres.stalled() else {
                    idle += 5
                    if idle >= 30 {
                        idle = 0
                        // On a task of its own: a ping stuck on a dead connection cannot be cancelled.
                        Task { _ = try? await postgres.databaseNow() }
                    }
                    continue
                }
                idle = 0
                if stalled > .seconds(180) { throw lost("has not answered for three minutes") }
            }
        }

        /// A private key only the server's own user may read: its own, mode 0600 or stricter.
        static func ownPrivate(_ path: String, named name: String) throws {
            var info = stat()
            guard stat(path, &info) == 0 else { return }  // loading it says what is wrong
            if info.st_mode & S_IFMT == S_IFDIR {
                throw CLIFailure("\(name) \(path) is a folder: give the key's file", code: .configError)
            }
            if info.st_uid != geteuid() {
                throw CLIFailure(
                    "\(name) \(path) belongs to another user: it must be the server's own (chown it to the user serve runs as)",
                    code: .configError)
            }
            if info.st_mode & 0o077 != 0 {
                throw CLIFailure("\(name) \(path) is readable by others: run chmod 600 \(path)", code: .configError)
            }
        }

        /// HTTPS without a proxy: both files or neither; a key others may read is refused.
        func tls() throws -> TLSSetup? {
            switch (tlsCert, tlsKey) {
            case (nil, nil): return nil
            case (let certificate?, let key?):
                // The worker's group is the server's: a group-readable key would reach handlers.
                try Self.ownPrivate(key, named: "--tls-key")
                do {
                    return try AutonomyServer.tls(certificate: certificate, key: key)
                } catch let error as ServerSetupError {
                    throw CLIFailure(error.description, code: .configError)
                }
            default:
                throw CLIFailure("--tls-cert and --tls-key go together: give both, or neither", code: .usage)
            }
        }
    }
}

extension Serve {
    struct Login: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "login", abstract: "Print a one-time login link for an operator (10 minutes, usable once).",
            discussion: prose(
                """
                NAME must be a principal in approvals.allowed_signers. The link's token is in its
                fragment; only its digest is stored, under the server's key when serve.signing_key
                is set, so that only a user who can read that key makes links that log in: run it
                as the server's user (sudo -u autonomy-web). Exits 77 when NAME is not an operator
                or the key cannot be read.
                Example: sudo -u autonomy-web autonomy serve login --operator elad
                """))

        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("operator"), help: "The operator, as named in allowed_signers.") var name: String

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let verifier = DecisionVerifier(settings: loaded.configuration.approvals)
            let now = try currentClock().now()
            // The link is kept under the server's key, as the server looks it up: only whoever can
            // read that key (the server's user, root) makes links that log in.
            let seal: TokenSeal
            do {
                seal = try Serve.serverKey(loaded, code: .notPermitted)?.seal ?? .plain
            } catch let failure as CLIFailure {
                throw CLIFailure(
                    "\(failure.message); a login link is kept under the server's key: run this as the server's user (sudo -u autonomy-web autonomy serve login --operator \(name))",
                    code: .notPermitted)
            }
            do {
                let (session, token) = try await global.onEither(
                    loaded, sqlite: { try $0.issueLogin(operator: name, verifier: verifier, seal: seal, now: now) },
                    postgres: { try await $0.issueLogin(operator: name, verifier: verifier, seal: seal) })
                let base = loaded.configuration.approvals.baseURL ?? "http://127.0.0.1:8787"
                print("\(base)/login#t=\(token)")
                printError(
                    "session \(session.id) for \(name): the link works once, until \(Timestamp.format(session.expiresAt))"
                )
            } catch let error as SessionError {
                throw CLIFailure(error.description, code: .notPermitted)
            }
        }
    }

    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sessions", abstract: "List operators' web sessions, or revoke one.",
            discussion: "Example: autonomy serve sessions revoke 3",
            subcommands: [List.self, Revoke.self], defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "list", abstract: "The sessions, newest first (the default).")
            @OptionGroup var global: GlobalOptions
            @Flag(help: "Print as JSON.") var json = false

            func run() async throws {
                let sessions = try await global.onEither(
                    try global.loadConfiguration(), create: false, sqlite: { try $0.operatorSessions() },
                    postgres: { try await $0.operatorSessions() })
                if json { return try printJSON(sessions) }
                if sessions.isEmpty { return print("no session yet (autonomy serve login --operator NAME)") }
                for session in sessions { print(session.line) }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "revoke", abstract: "End a session (or an unused login link) at once.",
                discussion:
                    "Exits 66 for an unknown session, 1 for one already revoked. Example: autonomy serve sessions revoke 3"
            )
            @OptionGroup var global: GlobalOptions
            @Argument(help: "The session's id.") var id: Int64
            @Option(help: "Who revokes it (default: $AUTONOMY_OPERATOR, else the login user).") var by: String?

            func run() async throws {
                let loaded = try global.loadConfiguration()
                let (actor, now) = (try operatorName(by), try currentClock().now())
                do {
                    let session = try await global.onEither(
                        loaded, create: false, sqlite: { try $0.revokeSession(id: id, by: actor, now: now) },
                        postgres: { try await $0.revokeSession(id: id, by: actor) })
                    print("revoked session \(session.id) of \(Visible.text(session.operatorName))")
                } catch let error as SessionError {
                    if case .alreadyRevoked = error { throw CLIFailure(error.description, code: .refused) }
                    throw CLIFailure(error.description, code: .notFound)
                }
            }
        }
    }
}

struct ProducerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "producer",
        abstract: "Bearer tokens for remote producers of 'autonomy serve': make, list, revoke.",
        subcommands: [Token.self, Tokens.self, Revoke.self])

    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token", abstract: "Make a token for a producer listed under producers.users.",
            discussion: prose(
                """
                Prints the token once: only its SHA-256 is stored. Exits 78 when NAME is not listed.
                Example: autonomy producer token sales-bot
                """))

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The producer's name, as listed under producers.users.") var name: String

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let now = try currentClock().now()
            do {
                let made = try await global.onEither(
                    loaded,
                    sqlite: { try $0.issueProducerToken(name: name, configuration: loaded.configuration, now: now) },
                    postgres: { try await $0.issueProducerToken(name: name, configuration: loaded.configuration) })
                print(made.secret)
                printError(
                    "token \(made.token.id) for \(name): shown once, only its hash is kept (revoke: autonomy producer revoke \(made.token.id))"
                )
            } catch let error as ProducerTokenError {
                throw CLIFailure(error.description, code: .configError)
            }
        }
    }

    struct Tokens: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tokens", abstract: "List the producer tokens (never their secrets).",
            discussion: "Example: autonomy producer tokens --json")

        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() async throws {
            let tokens = try await global.onEither(
                try global.loadConfiguration(), create: false, sqlite: { try $0.producerTokens() },
                postgres: { try await $0.producerTokens() })
            if json { return try printJSON(tokens) }
            if tokens.isEmpty { return print("no producer token yet (autonomy producer token NAME)") }
            for token in tokens { print(token.line) }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Revoke a producer token at once.",
            discussion: prose(
                """
                Exits 66 for an unknown token, 1 for one already revoked.
                Example: autonomy producer revoke 3
                """))

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The token's id (autonomy producer tokens).") var id: Int64
        @Option(help: "Who revokes it (default: $AUTONOMY_OPERATOR, else the login user).") var by: String?

        func run() async throws {
            let loaded = try global.loadConfiguration()
            let (actor, now) = (try operatorName(by), try currentClock().now())
            do {
                let token = try await global.onEither(
                    loaded, create: false, sqlite: { try $0.revokeProducerToken(id: id, by: actor, now: now) },
                    postgres: { try await $0.revokeProducerToken(id: id, by: actor) })
                print("revoked token \(token.id) for \(Visible.text(token.name))")
            } catch let error as ProducerTokenError {
                switch error {
                case .notFound: throw CLIFailure(error.description, code: .notFound)
                default: throw CLIFailure(error.description, code: .refused)
                }
            }
        }
    }
}
