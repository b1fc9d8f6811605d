import AutonomyTestSupport
import Foundation
import Logging
import Synchronization

@testable import AutonomyCore

/// A fresh folder per test, removed when the value goes away.
final class TemporaryFolder: Sendable {
    let path: String

    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    @discardableResult
    func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
        let target = file(name)
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        if executable { chmod(target, 0o755) }
        return target
    }
}

/// A configuration decoded from JSON text, as an operator would write it.
func loadMap(_ json: String) throws -> LoadedConfiguration {
    try ConfigLoader.parse(Data(json.utf8))
}

/// A map with a safe type, a dangerous type and a type with no retries.
let standardMap = """
    {
      "version": 1,
      "worker": { "lease": "60s" },
      "task_types": {
        "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                    "retry": { "max_attempts": 3, "backoff": "30s", "factor": 2, "max_backoff": "1h", "jitter": 0 } },
        "once": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } }, "retry": { "max_attempts": 1 } },
        "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                        "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
      }
    }
    """

/// A store on a fresh database file in its own folder, with the standard map and one operator,
/// "elad", whose key is the only line of the folder's allowed_signers file (unless the map names
/// another file).
struct Fixture {
    let folder: TemporaryFolder
    let store: AutonomyStore
    let loaded: LoadedConfiguration
    let clock: ManualClock
    let operatorKey = OpenSSHEd25519Key(comment: "elad")

    init(map: String = standardMap) throws {
        folder = try TemporaryFolder()
        store = try AutonomyStore(path: folder.file("autonomy.db"))
        var loaded = try loadMap(map)
        if loaded.configuration.approvals.allowedSigners == nil {
            loaded.configuration.approvals.allowedSigners = try folder.write(
                "allowed_signers", "elad \(operatorKey.publicKey.openSSH)\n")
        }
        self.loaded = loaded
        clock = ManualClock()
    }

    var configuration: Configuration { loaded.configuration }

    var verifier: DecisionVerifier { DecisionVerifier(settings: configuration.approvals) }

    /// Signs `decision` on a request with `key` (the operator's by default) and records it.
    @discardableResult
    func decide(
        _ approvalID: Int64, _ decision: Decision, key: OpenSSHEd25519Key? = nil, now: Int64? = nil
    ) throws -> ApprovalRecord {
        let now = now ?? clock.now()
        let signed = try sign(approvalID, decision, key: key, now: now)
        return try store.decide(signed, verifier: verifier, channel: .cli, now: now)
    }

    /// The signed statement for a decision, as `approve` would send it.
    func sign(
        _ approvalID: Int64, _ decision: Decision, key: OpenSSHEd25519Key? = nil, now: Int64? = nil
    ) throws -> SignedDecision {
        let key = key ?? operatorKey
        let statement = try store.decisionStatement(
            approvalID: approvalID, decision, signerKey: key.publicKey, verifier: verifier,
            settings: configuration.approvals, now: now ?? clock.now())
        return SignedDecision(statement: statement.text, signature: try DecisionSigner.native(key).sign(statement.text))
    }

    /// Decides through a one-click token, signed by the operator's key (as the web server will).
    @discardableResult
    func decide(token: String, _ decision: Decision, now: Int64) throws -> ApprovalRecord {
        let approval = try store.pendingApproval(token: token, now: now).approval
        let signed = try sign(approval.id, decision, now: now)
        return try store.decide(token: token, signed, verifier: verifier, now: now)
    }

    @discardableResult
    func enqueue(
        _ type: String, _ payload: String = "{}", priority: Int? = nil, delay: Interval? = nil,
        key: String? = nil, maxAttempts: Int? = nil
    ) throws -> TaskRecord {
        try store.enqueue(
            EnqueueRequest(
                type: type, payload: payload, priority: priority, delay: delay, maxAttempts: maxAttempts, key: key),
            configuration: configuration, now: clock.now()
        ).task
    }

    func worker(
        _ runner: any HandlerRunner, loaded: LoadedConfiguration? = nil,
        configure: (inout Worker.Options) -> Void = { _ in }
    ) -> Worker {
        var options = Worker.Options()
        options.clock = clock
        options.runner = runner
        options.random = { 0.5 }
        options.logger.logLevel = .critical
        configure(&options)
        return Worker(store: store, loaded: loaded ?? self.loaded, options: options)
    }

    func count(_ sql: String) throws -> Int {
        try store.read("count") { db in try Int.fetchOne(db, sql: sql) ?? -1 }
    }
}

/// A handler runner that answers from a script of outcomes and records what it was asked to run.
final class ScriptedRunner: HandlerRunner {
    private let state: Mutex<(outcomes: [HandlerStatus], calls: [HandlerInvocation])>
    private let onRun: @Sendable (HandlerInvocation) async -> Void

    init(_ outcomes: [HandlerStatus] = [], onRun: @escaping @Sendable (HandlerInvocation) async -> Void = { _ in }) {
        state = Mutex((outcomes, []))
        self.onRun = onRun
    }

    var calls: [HandlerInvocation] { state.withLock { $0.calls } }

    func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
        let status = state.withLock { state -> HandlerStatus in
            state.calls.append(invocation)
            return state.outcomes.isEmpty ? .exited(0) : state.outcomes.removeFirst()
        }
        await onRun(invocation)
        return HandlerOutcome(
            status: status, stdout: status.succeeded ? #"{"ok":true}"# : "",
            stderrTail: status.succeeded ? "" : "boom", durationMs: 5)
    }
}

/// A notifier that records what it was asked to send and fails on demand.
final class RecordingNotifier: Notifier {
    private let state = Mutex<(sent: [(NotificationMessage, NotifyChannel)], failures: Int)>(([], 0))

    /// The next `count` sends fail.
    func failNext(_ count: Int) { state.withLock { $0.failures = count } }

    var sent: [(message: NotificationMessage, channel: NotifyChannel)] {
        state.withLock { $0.sent.map { ($0.0, $0.1) } }
    }

    func send(_ message: NotificationMessage, via channel: NotifyChannel) async -> String? {
        state.withLock { state in
            if state.failures > 0 {
                state.failures -= 1
                return "the test channel is down"
            }
            state.sent.append((message, channel))
            return nil
        }
    }
}
