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

/// A store on a fresh database file in its own folder, with the standard map.
struct Fixture {
    let folder: TemporaryFolder
    let store: AutonomyStore
    let loaded: LoadedConfiguration
    let clock: ManualClock

    init(map: String = standardMap) throws {
        folder = try TemporaryFolder()
        store = try AutonomyStore(path: folder.file("autonomy.db"))
        loaded = try loadMap(map)
        clock = ManualClock()
    }

    var configuration: Configuration { loaded.configuration }

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

    func worker(_ runner: any HandlerRunner) -> Worker {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return Worker(store: store, loaded: loaded, clock: clock, runner: runner, random: { 0.5 }, logger: logger)
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
