import ArgumentParser
import AutonomyCore
import Foundation

/// `--gate PATH`: the commands a producer uses (enqueue, status, tasks list/show, approvals,
/// approve, reject) speak to the local entry gate when this user cannot open the database.
/// `QuickCommandLine` reads it too. An option added or renamed here must be added there
/// (`QuickCommandLineTests` fails until it is); one given a `transform` or another parsing
/// strategy must be left to the parser there.
struct GateOptions: ParsableArguments {
    @Option(
        name: .customLong("gate"),
        help: ArgumentHelp(
            "Always go through the gate at this socket (default: \(GateWire.defaultPath), or $\(GateWire.pathVariable), when the database cannot be opened here).",
            valueName: "socket"))
    var path: String?
}

/// How a command reaches the queue: itself, or through the gate.
enum Route {
    case direct
    case gate(String)

    /// The gate stands in for a caller that cannot reach the queue itself: one whose configuration
    /// or database file it may not open, or one with no configuration of its own, on a machine
    /// where the gate's socket exists (on PostgreSQL, one the server does not accept: see
    /// `answer`). `--gate` always goes through it.
    static func choose(_ global: GlobalOptions, _ gate: GateOptions) -> Route {
        let environment = ProcessEnvironment.variables
        if let flag = gate.path, !flag.isEmpty { return .gate(ConfigLoader.absolutePath(flag)) }
        guard let socketPath = gateSocket() else { return .direct }
        var own = stat()
        let configPath =
            global.config.flatMap { $0.isEmpty ? nil : $0 }
            ?? environment[ConfigLoader.configVariable].flatMap { $0.isEmpty ? nil : $0 }
            // Someone else's ./autonomy.json is not this user's map (and must not stop its commands).
            ?? (stat(ConfigLoader.defaultConfigFile, &own) == 0 && own.st_uid == geteuid()
                ? ConfigLoader.defaultConfigFile : nil)
        let databaseGiven = global.database != nil || (environment[ConfigLoader.databaseVariable] ?? "") != ""
        guard let configPath else { return databaseGiven ? .direct : .gate(socketPath) }
        if access(configPath, R_OK) != 0, errno == EACCES { return .gate(socketPath) }
        guard let loaded = try? ConfigLoader.load(explicitPath: global.config),
            let location = try? ConfigLoader.databaseLocation(flag: global.database, loaded: loaded)
        else { return .direct }
        switch location {
        case .sqlite(let database):
            if access(database, R_OK | W_OK) != 0, errno == EACCES || errno == EPERM || errno == EROFS {
                return .gate(socketPath)
            }
        case .postgres:
            break  // whether the server takes this user's credentials is known once it answers
        }
        return .direct
    }

    /// The database server did not accept this user: no password found here (or the variable the
    /// configuration names is not set), or a wrong one.
    static func notAccepted(_ error: any Error) -> Bool {
        if case StoreError.refused = error { return true }
        // The variable the configuration names for the password is not set for this user. (A
        // password file others may read is not this: that is said, and stops the command.)
        if let error = error as? ConfigError, error.path == PostgresURL.passwordVariableKey { return true }
        return false
    }

    /// The gate's socket when it exists here (`$AUTONOMY_GATE`, else the default path).
    static func gateSocket() -> String? {
        let environment = ProcessEnvironment.variables
        let socketPath = environment[GateWire.pathVariable].flatMap { $0.isEmpty ? nil : $0 } ?? GateWire.defaultPath
        var info = stat()
        guard stat(socketPath, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return nil }
        return socketPath
    }
}

/// Runs one queue request the way the route says, prints what it answered, and exits with its code.
func perform(
    _ request: GateRequest, _ global: GlobalOptions, _ gate: GateOptions, create: Bool = false,
    requireTrustedConfig: Bool = false
) async throws {
    let (answer, followUp) = try await answer(
        request, global, gate, create: create, requireTrustedConfig: requireTrustedConfig)
    emit(answer)
    for line in await followUp?() ?? [] { printError(line) }
    if answer.exit != 0 { throw ExitCode(answer.exit) }
}

/// One queue request's answer, from the database here or from the gate.
func answer(
    _ request: GateRequest, _ global: GlobalOptions, _ gate: GateOptions, create: Bool = false,
    requireTrustedConfig: Bool = false
) async throws -> (GateAnswer, QueueService.FollowUp?) {
    switch Route.choose(global, gate) {
    case .gate(let path):
        return (try GateWire.send(request, to: path), nil)
    case .direct:
        do {
            let loaded = try global.loadConfiguration()
            if requireTrustedConfig { try loaded.requireTrusted() }
            if case .postgres(let url) = try global.location(loaded) {
                let store: PostgresStore
                do {
                    store = try await global.openPostgres(url, loaded)
                } catch let error where Route.notAccepted(error) {
                    // The server does not take this user's credentials (none, or not the role's):
                    // a producer, which the gate stands in for where it runs.
                    guard let socket = Route.gateSocket() else { throw error }
                    return (try GateWire.send(request, to: socket), nil)
                }
                let (answer, followUp) = await PostgresQueueService(loaded: loaded, store: store).answer(request)
                guard let followUp else {
                    await store.close()
                    return (answer, nil)
                }
                return (
                    answer,
                    {
                        let warnings = await followUp()
                        await store.close()
                        return warnings
                    }
                )
            }
            if create, request.verb == .enqueue, request.batch == nil,
                case .sqlite(let path) = try global.location(loaded),
                !FileManager.default.fileExists(atPath: path)
            {
                // A request the map refuses makes no database on its way out.
                try request.enqueueRequest().check(loaded.configuration, now: try currentClock().now())
            }
            let store = try global.open(loaded, create: create)
            let service = QueueService(loaded: loaded, store: store, caller: .local, clock: try currentClock())
            return await service.answer(request)
        } catch {
            let (code, message) = failure(error)
            return (GateAnswer(exit: code.rawValue, stderr: "error: \(message)\n"), nil)
        }
    }
}

func emit(_ answer: GateAnswer) {
    if !answer.stdout.isEmpty { FileHandle.standardOutput.write(Data(utf8: answer.stdout)) }
    if !answer.stderr.isEmpty { Journal.write(answer.stderr) }
}

/// `autonomy gate`: serves one producer's request on the socket systemd accepted, and exits.
struct Gate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Serve one request from the local entry gate's socket (started by autonomy-gate.socket).",
        discussion: prose(
            """
            Reads one JSON request from the connection on standard input, answers on the same
            connection, and exits. The kernel says who connected (SO_PEERCRED): that Unix user is the
            task's source, and the configuration's producers section says what it may do. Producers
            never run this themselves: 'autonomy enqueue' and the other queue commands reach it
            when they cannot open the database.
            Example (what systemd runs): autonomy gate
            """))

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let connection: Int32 = 0
        let peer: PeerCredentials
        do {
            peer = try PeerCredentials.of(connection)
        } catch {
            throw CLIFailure(error.description, code: .usage)
        }
        // One journal line per request; a producer's text never starts a line of its own there.
        let who = "gate: \(Visible.text(peer.user)) (uid \(peer.uid), pid \(peer.pid))"
        let refuse = { (code: ExitCode, message: String) in
            GateWire.write(GateAnswer(exit: code.rawValue, stderr: "error: \(message)\n"), to: connection)
            printError("\(who): refused: \(Visible.text(message))")
        }
        let loaded: LoadedConfiguration
        let location: DatabaseLocation
        do {
            loaded = try global.loadConfiguration(quiet: true)
            try loaded.requireTrusted()
            location = try global.location(loaded)
        } catch {
            return try unavailable(error, refuse)
        }
        let request: GateRequest
        do {
            let limit = max(1 << 20, loaded.configuration.queue.maxPayloadBytes * 8 + (64 << 10))
            request = try GateWire.readRequest(from: connection, limit: limit, timeout: .seconds(10))
        } catch {
            return refuse(.usage, error.description)
        }
        guard let policy = loaded.configuration.producers.policy(user: peer.user, groups: peer.groups) else {
            return refuse(.notPermitted, TrustError.notAProducer(user: peer.user).description)
        }
        // The database is opened only for a producer's request: anyone else costs it nothing.
        let answer: GateAnswer
        let followUp: QueueService.FollowUp?
        var postgres: PostgresStore?
        do {
            switch location {
            case .sqlite:
                let service = QueueService(
                    loaded: loaded, store: try global.open(loaded), caller: .producer(policy), clock: try currentClock()
                )
                (answer, followUp) = await service.answer(request)
            case .postgres(let url):
                let store = try await global.openPostgres(url, loaded)
                postgres = store
                (answer, followUp) = await PostgresQueueService(loaded: loaded, store: store, caller: .producer(policy))
                    .answer(request)
            }
        } catch {
            return try unavailable(error, refuse)
        }
        GateWire.write(answer, to: connection)
        printError(
            "gate: \(peer.user) (uid \(peer.uid), pid \(peer.pid)): \(request.verb.rawValue): exit \(answer.exit)")
        for line in await followUp?() ?? [] { printError(line) }
        await postgres?.close()
    }

    /// The gate itself cannot work: it says so to the caller, and fails the unit for the operator.
    private func unavailable(_ error: any Error, _ refuse: (ExitCode, String) -> Void) throws {
        let (code, message) = failure(error)
        refuse(.unavailable, "the gate cannot serve requests now; an operator must look at it")
        throw CLIFailure(message, code: code)
    }
}
