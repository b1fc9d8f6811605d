import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// What every route works with: the map, the queue, and the clock. The routes call the same core
/// functions the CLI does; none of them writes SQL of its own.
public struct ServerEnvironment: Sendable {
    public var loaded: LoadedConfiguration
    public var store: any ServerStore
    public var clock: any WallClock
    /// `producers` as the configuration file says now.
    let producers: ProducerRules

    public init(loaded: LoadedConfiguration, store: any ServerStore, clock: any WallClock) {
        (self.loaded, self.store, self.clock) = (loaded, store, clock)
        producers = ProducerRules(loaded)
    }
}

/// `producers` read again from the configuration file whenever it changed (as the gate reads it
/// per connection): an operator who removes a producer, or narrows its types or limits, cuts its
/// token off at once, without restarting `serve`. A file that can no longer be read, or that
/// others could now write, refuses every producer until it is fixed (it never falls back to what
/// was read before).
final class ProducerRules: Sendable {
    /// What changes when the file is rewritten, replaced, or given to someone else (its mode and
    /// owner, and the change time every such change moves).
    private struct Stamp: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, mode: UInt32, owner: UInt32, group: UInt32
        var modified: Int, modifiedNanoseconds: Int, changed: Int, changedNanoseconds: Int
    }
    private let path: String?
    private let seen: Mutex<(stamp: Stamp?, producers: ProducerSettings)>

    init(_ loaded: LoadedConfiguration) {
        path = loaded.path
        var info = stat()
        let stamp = loaded.path.flatMap { stat($0, &info) == 0 ? Self.stamp(info) : nil }
        seen = Mutex((stamp, loaded.configuration.producers))
    }

    func current() throws(APIError) -> ProducerSettings {
        guard let path else { return seen.withLock { $0.producers } }
        var info = stat()
        guard stat(path, &info) == 0 else { throw Self.unreadable }
        let stamp = Self.stamp(info)
        if let producers = seen.withLock({ $0.stamp == stamp ? $0.producers : nil }) { return producers }
        guard let loaded = try? ConfigLoader.load(explicitPath: path), (try? loaded.requireTrusted()) != nil else {
            throw Self.unreadable
        }
        seen.withLock { $0 = (stamp, loaded.configuration.producers) }
        return loaded.configuration.producers
    }

    private static let unreadable = APIError(
        .serviceUnavailable, "unavailable",
        "the server cannot read its configuration now, so it admits no producer: ask the operator (`autonomy config check`)"
    )

    private static func stamp(_ info: stat) -> Stamp {
        Stamp(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size), mode: info.st_mode,
            owner: info.st_uid, group: info.st_gid, modified: info.st_mtim.tv_sec,
            modifiedNanoseconds: info.st_mtim.tv_nsec, changed: info.st_ctim.tv_sec,
            changedNanoseconds: info.st_ctim.tv_nsec)
    }
}

/// A request's context: the core's, and the peer's address (for limits per client).
public struct ServerContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// The Delegator's entry gate for remote producers, as a versioned JSON API (`openapi.yaml`).
public enum AutonomyAPI {
    /// The routes of `autonomy serve`.
    public static func router(_ environment: ServerEnvironment, state: ServerState = ServerState(signer: nil))
        -> Router<ServerContext>
    {
        let router = Router(context: ServerContext.self)
        let known = KnownRoutes()
        router.add(middleware: JSONErrorMiddleware(known: known))
        router.add(
            middleware: DeadlineMiddleware(
                deadline: state.deadline ?? sleep(environment.loaded.configuration.serve.requestTimeout)))
        let api = router.group("api/v1")
        api.post("tasks") { request, context in try await enqueue(request, context, environment, state) }
        api.get("tasks") { request, _ in try await list(request, environment) }
        api.get("tasks/{id}") { request, context in try await show(request, context, environment) }
        ApprovalPages.add(to: router, environment, state)
        OperatorRoutes.add(to: router, environment, state)
        Dashboard.add(to: router, environment, state)
        known.set(router.routes.map { (path: "\($0.path)", method: $0.method.rawValue) })
        return router
    }

    // MARK: - Who is asking

    /// The producer a bearer token names, with its `producers.users` entry as it stands now.
    static func producer(_ request: Request, _ environment: ServerEnvironment) async throws -> ProducerPolicy {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError.unauthorized
        }
        let secret = header.dropFirst("Bearer ".count).trimmingCharacters(in: .whitespaces)
        guard let name = try await environment.store.producerName(bearer: secret) else { throw APIError.unauthorized }
        // A token outlives nothing: its producer must still be listed, with what it may do now.
        guard let policy = try environment.producers.current().policy(user: name, groups: []) else {
            throw APIError(
                .forbidden, "forbidden", "\(name) is no longer listed under producers.users: ask the operator")
        }
        return policy
    }

    // MARK: - POST /api/v1/tasks

    /// The fields a task request may carry; anything else is refused by name.
    static let taskFields: Set<String> = ["type", "payload", "priority", "max_attempts", "subject", "run_at", "delay"]
    static let idempotencyKey = HTTPField.Name.idempotencyKey

    static func enqueue(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    )
        async throws -> Response
    {
        let policy = try await producer(request, environment)
        let configuration = environment.loaded.configuration
        // The payload's own limit, with room for the other fields around it.
        let limit = configuration.queue.maxPayloadBytes + 16 * 1024
        var request = request
        let body = try await request.collectBody(upTo: limit)
        let fields: [String: JSONValue]
        do {
            guard case .object(let object) = try JSONValue.parse(Data(buffer: body)) else {
                throw APIError(.badRequest, "invalid_json", "the body must be a JSON object")
            }
            fields = object
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.badRequest, "invalid_json", "the body is not JSON: \(error)")
        }
        if let unknown = fields.keys.sorted().first(where: { !taskFields.contains($0) }) {
            throw APIError(
                .unprocessableContent, "unknown_field",
                "unknown field (known: \(taskFields.sorted().joined(separator: ", ")))", field: unknown)
        }
        guard let type = fields["type"]?.stringValue, !type.isEmpty else {
            throw APIError(.unprocessableContent, "invalid_field", "type is required, as a string", field: "type")
        }
        func integer(_ name: String) throws -> Int? {
            guard let value = fields[name], value != .null else { return nil }
            guard case .int(let number) = value, let exact = Int(exactly: number) else {
                throw APIError(.unprocessableContent, "invalid_field", "\(name) must be a whole number", field: name)
            }
            return exact
        }
        func text(_ name: String) throws -> String? {
            guard let value = fields[name], value != .null else { return nil }
            guard let string = value.stringValue else {
                throw APIError(.unprocessableContent, "invalid_field", "\(name) must be a string", field: name)
            }
            return string
        }
        var task = EnqueueRequest(
            type: type, payload: (fields["payload"] ?? [:]).canonicalText, priority: try integer("priority"),
            maxAttempts: try integer("max_attempts"), source: policy.name, subject: try text("subject"))
        if let key = request.headers[idempotencyKey] {
            guard !key.isEmpty, key.utf8.count <= 200 else {
                throw APIError(
                    .unprocessableContent, "invalid_field", "an Idempotency-Key has 1 to 200 bytes",
                    field: "Idempotency-Key")
            }
            task.key = key
        }
        if let runAt = try text("run_at") {
            guard let time = Timestamp.parse(runAt) else {
                throw APIError(
                    .unprocessableContent, "invalid_field", "run_at is a time such as 2026-12-01T09:00:00Z",
                    field: "run_at")
            }
            task.runAt = time
        }
        if let delay = try text("delay") {
            guard let interval = Interval(parsing: delay) else {
                throw APIError(
                    .unprocessableContent, "invalid_field", "delay is a duration such as 30s, 10m or 24h",
                    field: "delay")
            }
            task.delay = interval
        }
        let outcome = try await environment.store.enqueue(
            task, configuration: configuration, now: environment.clock.now(), producer: policy)
        if case .created(let created) = outcome, created.state == .awaitingApproval,
            !configuration.notify.channels.isEmpty
        {
            // The operator hears of it at once, with a link under the server's key; a failure
            // leaves the alert to be tried again.
            let delivery = AlertDelivery(
                store: environment.store, configuration: configuration, clock: environment.clock, seal: state.seal)
            Task { _ = await delivery.deliverNow(tasks: [created.id]) }
        }
        switch outcome {
        case .created(let created): return try JSONResponse.make(.created, encoding: TaskOutput(created))
        case .existing(let existing): return try JSONResponse.make(.ok, encoding: TaskOutput(existing))
        }
    }

    // MARK: - GET /api/v1/tasks, /api/v1/tasks/{id}

    static func show(_ request: Request, _ context: ServerContext, _ environment: ServerEnvironment) async throws
        -> Response
    {
        let policy = try await producer(request, environment)
        guard let id = context.parameters.get("id", as: Int64.self) else {
            throw APIError(.notFound, "not_found", "no such task")
        }
        // Another producer's task does not exist, as far as this one can tell.
        guard let task = try await environment.store.task(id: id),
            policy.rule.readAll || task.source == policy.name
        else { throw APIError(.notFound, "not_found", "no task \(id)") }
        return try JSONResponse.make(.ok, encoding: TaskOutput(task))
    }

    static func list(_ request: Request, _ environment: ServerEnvironment) async throws -> Response {
        let policy = try await producer(request, environment)
        let query = request.uri.queryParameters
        var filter = TaskFilter(source: policy.rule.readAll ? nil : policy.name)
        if let state = query["state"].map(String.init) {
            guard let parsed = TaskState(rawValue: state) else {
                throw APIError(
                    .unprocessableContent, "invalid_field",
                    "state is one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))", field: "state")
            }
            filter.state = parsed
        }
        if let type = query["type"].map(String.init) { filter.type = type }
        if let limit = query["limit"].map(String.init) {
            guard let value = Int(limit), (1...1000).contains(value) else {
                throw APIError(.unprocessableContent, "invalid_field", "limit is 1 to 1000", field: "limit")
            }
            filter.limit = value
        }
        let tasks = try await environment.store.tasks(matching: filter)
        return try JSONResponse.make(.ok, encoding: ["tasks": tasks.map { TaskOutput($0) }])
    }
}
