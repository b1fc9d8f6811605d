import Foundation
import Testing

@testable import AutonomyCore

let producerMap = """
    {
      "version": 1,
      "task_types": {
        "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
        "deploy": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                    "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
      },
      "producers": {
        "users": { "bot": { "types": ["report", "deploy"], "max_per_hour": 5, "max_dangerous_per_hour": 2 } },
        "groups": { "agents": { "types": ["report"], "max_per_hour": 10 },
                    "deployers": { "types": ["deploy"] },
                    "ops": { "read_all": true } }
      }
    }
    """

@Suite struct ProducerTests {
    @Test func aUsersOwnEntryWinsElseItsGroupsTogether() throws {
        let producers = try loadMap(producerMap).configuration.producers
        #expect(producers.policy(user: "bot", groups: ["agents"])?.rule.maxPerHour == 5)
        let both = try #require(producers.policy(user: "alice", groups: ["alice", "agents", "deployers"]))
        #expect(both.allows(type: "report") && both.allows(type: "deploy"))
        #expect(both.rule.maxPerHour == nil)  // the highest of 10 and no limit
        #expect(producers.policy(user: "stranger", groups: ["users"]) == nil)
        // A group that only lets its members read lifts no limit of another.
        let reader = try #require(producers.policy(user: "carol", groups: ["agents", "ops"]))
        #expect(reader.rule.maxPerHour == 10 && reader.rule.readAll && !reader.allows(type: "deploy"))
    }

    @Test func aProducerEnqueuesOnlyItsTypesUnderItsOwnName() throws {
        let fixture = try Fixture(map: producerMap)
        let agents = try #require(fixture.configuration.producers.policy(user: "alice", groups: ["agents"]))
        let task = try fixture.store.enqueue(
            EnqueueRequest(type: "report"), configuration: fixture.configuration, now: fixture.clock.now(),
            producer: agents
        ).task
        #expect(task.source == "alice")
        #expect(throws: TrustError.typeNotAllowed(producer: "alice", type: "deploy", allowed: ["report"])) {
            try fixture.store.enqueue(
                EnqueueRequest(type: "deploy"), configuration: fixture.configuration, now: fixture.clock.now(),
                producer: agents)
        }
        #expect(throws: TrustError.sourceForged(claimed: "bot", actual: "alice")) {
            try fixture.store.enqueue(
                EnqueueRequest(type: "report", source: "bot"), configuration: fixture.configuration,
                now: fixture.clock.now(), producer: agents)
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks") == 1)
    }

    @Test func hourlyLimitsCountDangerousTasksApart() throws {
        let fixture = try Fixture(map: producerMap)
        let bot = try #require(fixture.configuration.producers.policy(user: "bot", groups: []))
        func enqueue(_ type: String, _ n: Int) throws {
            _ = try fixture.store.enqueue(
                EnqueueRequest(type: type, payload: #"{"n":\#(n)}"#), configuration: fixture.configuration,
                now: fixture.clock.now(), producer: bot)
        }
        try enqueue("deploy", 1)
        try enqueue("deploy", 2)
        #expect(throws: TrustError.self) { try enqueue("deploy", 3) }  // two approval requests an hour
        try enqueue("report", 4)
        try enqueue("report", 5)
        try enqueue("report", 6)
        do {
            try enqueue("report", 7)
            Issue.record("a sixth task in the hour was accepted")
        } catch let error as TrustError {
            guard case .rateLimited(_, 5, false, let retry) = error else { throw error }
            #expect(retry == 3600)
        }
        fixture.clock.advance(by: .seconds(3601))
        try enqueue("deploy", 8)
        #expect(try fixture.count("SELECT COUNT(*) FROM tasks WHERE source = 'bot'") == 6)
    }

    @Test func aSourcesLimitsHoldOnTheDirectPathToo() throws {
        let fixture = try Fixture(map: producerMap)
        for n in 1...2 {
            _ = try fixture.store.enqueue(
                EnqueueRequest(type: "deploy", payload: #"{"n":\#(n)}"#, source: "bot"),
                configuration: fixture.configuration, now: fixture.clock.now())
        }
        // The third dangerous task in the hour is refused, not queued as yet another approval request.
        #expect(throws: TrustError.self) {
            try fixture.store.enqueue(
                EnqueueRequest(type: "deploy", payload: #"{"n":3}"#, source: "bot"),
                configuration: fixture.configuration, now: fixture.clock.now())
        }
        #expect(try fixture.count("SELECT COUNT(*) FROM approvals") == 2)
        // A batch counts its own lines too.
        let lines = (4...6).map { #"{"type":"deploy","payload":{"n":\#($0)},"source":"bot"}"# }.joined(separator: "\n")
        #expect(throws: TrustError.self) {
            try fixture.store.enqueueBatch(
                jsonLines: Data(lines.utf8), configuration: fixture.configuration, now: fixture.clock.now())
        }
    }

    @Test func anIdempotencyKeyIsItsProducersOwn() throws {
        let fixture = try Fixture(map: producerMap)
        let producers = fixture.configuration.producers
        let bot = try #require(producers.policy(user: "bot", groups: []))
        let alice = try #require(producers.policy(user: "alice", groups: ["agents"]))
        let bots = try fixture.store.enqueue(
            EnqueueRequest(type: "report", key: "report-2026-11-25"), configuration: fixture.configuration,
            now: fixture.clock.now(), producer: bot)
        // Another producer with the same key gets a task of its own: it neither takes nor sees the bot's.
        let alices = try fixture.store.enqueue(
            EnqueueRequest(type: "report", payload: #"{"other":true}"#, key: "report-2026-11-25"),
            configuration: fixture.configuration, now: fixture.clock.now(), producer: alice)
        guard case .created(let mine) = alices, case .created(let theirs) = bots else {
            Issue.record("both enqueues should create a task")
            return
        }
        #expect(mine.id != theirs.id && mine.source == "alice")
        // The same key again is each one's own task.
        let again = try fixture.store.enqueue(
            EnqueueRequest(type: "report", key: "report-2026-11-25"), configuration: fixture.configuration,
            now: fixture.clock.now(), producer: bot)
        #expect(again == .existing(theirs))
    }

    @Test func aProducerReadsItsOwnTasksOnly() throws {
        let fixture = try Fixture(map: producerMap)
        let bot = try #require(fixture.configuration.producers.policy(user: "bot", groups: []))
        _ = try fixture.store.enqueue(
            EnqueueRequest(type: "deploy"), configuration: fixture.configuration, now: fixture.clock.now(),
            producer: bot)
        _ = try fixture.enqueue("deploy", #"{"other":1}"#)
        #expect(try fixture.store.tasks(matching: TaskFilter(source: "bot")).count == 1)
        #expect(try fixture.store.status(now: fixture.clock.now(), source: "bot").counts[.awaitingApproval] == 1)
        #expect(try fixture.store.status(now: fixture.clock.now()).counts[.awaitingApproval] == 2)
        #expect(try fixture.store.pendingApprovals(now: fixture.clock.now(), source: "bot").count == 1)
    }
}

@Suite struct FileTrustTests {
    @Test func aFileOthersCanWriteIsRefusedAndTheFixIsNamed() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("autonomy.json", "{}")
        try FileTrust.check(path, what: "the configuration")
        chmod(path, 0o664)
        #expect(throws: FileTrustError.self) { try FileTrust.check(path, what: "the configuration") }
        do {
            try FileTrust.check(path, what: "the configuration")
        } catch {
            #expect(error.description.contains("chmod go-w"))
        }
        chmod(path, 0o644)
        chmod(folder.path, 0o777)  // anyone could swap the file in its folder
        #expect(throws: FileTrustError.self) { try FileTrust.check(path, what: "the configuration") }
        chmod(folder.path, 0o1777)  // the sticky bit: nobody can replace another's file
        try FileTrust.check(path, what: "the configuration")
        chmod(folder.path, 0o755)
        // A link to a good file, standing in a folder anyone may write, can be swapped: refused.
        let open = folder.file("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        try FileManager.default.createSymbolicLink(atPath: open + "/autonomy.json", withDestinationPath: path)
        #expect(throws: FileTrustError.self) { try FileTrust.check(open + "/autonomy.json", what: "the configuration") }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a file to another user"))
    func aFileOwnedBySomeoneElseIsRefused() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("autonomy.json", "{}")
        chown(path, 65534, 65534)
        #expect(throws: FileTrustError.self) { try FileTrust.check(path, what: "the configuration") }
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give a file to another user"))
    func theWorkerUsersOwnFileIsRefusedToIt() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("autonomy.json", "{}")
        chown(path, 65534, 65534)
        // Read by its owner, a file passes (a developer's own ./autonomy.json)...
        try FileTrust.check(path, what: "the configuration", user: 65534, isWorker: { _ in false })
        // ...but not when that owner is the worker: every handler runs as it and could rewrite it.
        #expect {
            try FileTrust.check(path, what: "the configuration", user: 65534, isWorker: { $0 == 65534 })
        } throws: { error in
            "\(error)".contains("owned by the worker user autonomy") && "\(error)".contains("sudo chown root")
        }
        // Root's file is the one it may trust.
        chown(path, 0, 0)
        try FileTrust.check(path, what: "the configuration", user: 65534, isWorker: { $0 == 65534 })
        #expect(!FileTrust.isWorker(0))
    }
}

@Suite struct HandlerEnvironmentTests {
    @Test func aHandlerGetsTheMinimalEnvironmentAndOnlyTheSecretsItsTypeNames() {
        let worker = [
            "PATH": "/usr/bin:/bin", "HOME": "/var/lib/autonomy", "LANG": "C.UTF-8", "TZ": "UTC",
            "OPENAI_API_KEY": "sk-secret", "AWS_SECRET_ACCESS_KEY": "x", "AUTONOMY_CONFIG": "/etc/a.json",
            "AUTONOMY_WEBHOOK_SECRET": "w", "AUTONOMY_SIGNING_KEY": "/home/elad/key", "AUTONOMY_BOT_TOKEN": "t",
        ]
        let minimal = HandlerEnvironment.minimal(from: worker, withholding: ["AUTONOMY_WEBHOOK_SECRET"])
        #expect(
            minimal == [
                "PATH": "/usr/bin:/bin", "HOME": "/var/lib/autonomy", "LANG": "C.UTF-8", "TZ": "UTC",
                "AUTONOMY_CONFIG": "/etc/a.json",
            ])
    }
}
