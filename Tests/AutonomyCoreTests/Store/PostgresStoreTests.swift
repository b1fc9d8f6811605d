import AutonomyTestSupport
import Foundation
import PostgresNIO
import Synchronization
import Testing

@testable import AutonomyCore

/// The PostgreSQL store against a real server: each test on a database of its own.
@Suite(
    .enabled(
        if: PostgresTestDatabase.available,
        "needs a PostgreSQL cluster: eval \"$(scripts/postgres-test-cluster start)\""))
struct PostgresStoreTests {
    static let map = """
        {
          "version": 1,
          "task_types": {
            "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                        "retry": { "max_attempts": 3, "backoff": "30s", "factor": 2, "max_backoff": "1h", "jitter": 0 } },
            "render": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } },
            "send_email": { "safety": "dangerous", "handler": { "exec": { "argv": ["/bin/true"] } },
                            "verify": [ { "command": { "argv": ["/bin/true"] } } ] }
          }
        }
        """

    let configuration: Configuration

    init() throws {
        configuration = try loadMap(Self.map).configuration
    }

    /// Runs `body` with a fresh database, dropped afterwards whatever happens.
    func withDatabase(_ body: (PostgresTestDatabase) async throws -> Void) async throws {
        let database = try await PostgresTestDatabase.make()
        do {
            try await body(database)
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }

    static let passed = Verdict.passed(evidence: "handler exited 0 (the type declares no verifier)")

    @Test func migrationsRunOnceAndANewerSchemaIsRefusedUnchanged() async throws {
        try await withDatabase { database in
            let first = try await database.store()
            #expect(try await first.appliedMigrations() == PostgresMigrations.all.map(\.name))
            // Hosts starting at once: every one opens, the schema is made once.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for host in 0..<4 {
                    group.addTask { await (try database.store(host: "host-\(host)")).close() }
                }
                try await group.waitForAll()
            }
            #expect(try await first.appliedMigrations() == PostgresMigrations.all.map(\.name))
            _ = try await first.enqueue(EnqueueRequest(type: "report"), configuration: configuration)
            await first.close()

            try await database.connection { connection, logger in
                try await connection.query(
                    "INSERT INTO autonomy_migrations (name) VALUES ('2099-01-01-from-the-future')", logger: logger)
            }
            await #expect {
                _ = try await database.store()
            } throws: { error in
                guard case StoreError.newerSchema(_, let unknown) = error else { return false }
                return unknown == ["2099-01-01-from-the-future"] && !"\(error)".contains(database.password ?? "§")
            }
            let tasks = try await database.connection { connection, logger in
                var count = 0
                for try await n in try await connection.query("SELECT count(*) FROM tasks", logger: logger).decode(
                    Int.self)
                {
                    count = n
                }
                return count
            }
            #expect(tasks == 1)
        }
    }

    @Test func concurrentHostsClaimEveryTaskExactlyOnceAndTheChainStaysOneLine() async throws {
        try await withDatabase { database in
            let producer = try await database.store(host: "producer")
            let total = 240
            // Enqueued from four connections at once: the ledger's appends interleave.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<4 {
                    let configuration = self.configuration
                    group.addTask {
                        let store = try await database.store(host: "producer-\(lane)")
                        for n in stride(from: lane, to: total, by: 4) {
                            _ = try await store.enqueue(
                                EnqueueRequest(type: "report", payload: #"{"n":\#(n)}"#), configuration: configuration)
                        }
                        await store.close()
                    }
                }
                try await group.waitForAll()
            }
            let claims = Claims()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for host in ["vps", "gpu", "spare", "laptop"] {
                    let configuration = self.configuration
                    group.addTask {
                        let store = try await database.store(host: host)
                        while let claimed = try await store.claim(configuration, token: UUID().uuidString) {
                            claims.record(claimed.task.id, by: host)
                            let recorded = try await store.recordAttempt(
                                claimed, outcome: HandlerOutcome(status: .exited(0)), verdict: Self.passed, checks: [],
                                notify: NotifySettings(), now: 0, random: { 0.5 })
                            #expect(recorded?.state == .done)
                        }
                        await store.close()
                    }
                }
                try await group.waitForAll()
            }
            #expect(claims.duplicates.withLock { $0 }.isEmpty)
            #expect(claims.hosts.withLock { $0.count } == total)
            #expect(try await producer.stateCounts() == [.done: total])
            let report = try await producer.verifyLedgerChain()
            #expect(report.firstBroken == nil)
            #expect(report.rows == total * 4)  // enqueued, claimed, executed, done
            // Each claim and outcome names the host that made it.
            let someTask = claims.hosts.withLock { $0.first! }
            let events = try await producer.ledger(forTask: someTask.key)
            #expect(events.map(\.event) == ["enqueued", "claimed", "executed", "done"])
            for entry in events.dropFirst() {
                #expect(entry.detail?[path: "host"] == .string(someTask.value))
            }
            await producer.close()
        }
    }

    @Test func aHostClaimsOnlyTheTypesItRuns() async throws {
        try await withDatabase { database in
            let store = try await database.store(host: "gpu")
            let render = try await store.enqueue(EnqueueRequest(type: "render"), configuration: configuration)
            _ = try await store.enqueue(EnqueueRequest(type: "report", priority: 9), configuration: configuration)
            var gpu = configuration
            gpu.worker.types = ["render"]
            #expect(try await store.claim(gpu)?.task.id == render.task.id)
            #expect(try await store.claim(gpu) == nil)
            #expect(try await store.stateCounts() == [.running: 1, .queued: 1])
            await store.close()
        }
    }

    @Test func anExpiredLeaseIsRecoveredOnTheDatabaseClockAndTheLateHostLosesIt() async throws {
        try await withDatabase { database in
            let dying = try await database.store(host: "dying")
            let task = try await dying.enqueue(EnqueueRequest(type: "report"), configuration: configuration).task
            let claimed = try #require(try await dying.claim(configuration, token: "mine"))
            let now = try await dying.databaseNow()
            #expect(claimed.task.leaseExpiresAt == claimed.task.startedAt! + 60_000)
            #expect(abs(claimed.task.startedAt! - now) < 5_000)

            let other = try await database.store(host: "healthy")
            // A live lease is never taken, whatever this host's own clock says.
            #expect(try await other.recover(configuration).settled.isEmpty)
            // The lease runs out (moved into the past, rather than waiting a minute).
            try await database.connection { connection, logger in
                try await connection.query(
                    "UPDATE tasks SET lease_expires_at = lease_expires_at - 120000 WHERE id = \(task.id)",
                    logger: logger)
            }
            let recovered = try await other.recover(configuration).settled
            #expect(recovered.map(\.state) == [.queued])
            #expect(recovered.first?.nextRunAt != nil)
            // The dying host comes back: its outcome does not count.
            let late = try await dying.recordAttempt(
                claimed, outcome: HandlerOutcome(status: .exited(0)), verdict: Self.passed, checks: [],
                notify: NotifySettings(), now: 0, random: { 0.5 })
            #expect(late == nil)
            let events = try await other.ledger(forTask: task.id).map(\.event)
            #expect(events == ["enqueued", "claimed", "lease_expired", "retry_scheduled", "lease_lost"])
            #expect(try await other.verifyLedgerChain().firstBroken == nil)
            await dying.close()
            await other.close()
        }
    }

    @Test func aDangerousTaskRunsOnlyWithAnOperatorsSignatureNeverWithAForgedRow() async throws {
        try await withDatabase { database in
            let fixture = try Fixture(map: firewallMap)
            let configuration = fixture.configuration
            let store = try await database.store()
            let created = try await store.enqueue(
                EnqueueRequest(type: "deploy", payload: #"{"version":"1.2"}"#), configuration: configuration)
            #expect(created.task.state == .awaitingApproval)
            let asked = try #require(try await store.pendingApprovals().pending.first).approval
            #expect(asked.taskID == created.task.id && asked.payloadSHA256 == created.task.payloadSHA256)
            func claim() async throws -> ClaimStep {
                try await store.claimNext(
                    configuration: configuration, now: 0, lease: .seconds(60), leaseToken: UUID().uuidString,
                    ratings: [:], rateInline: false)
            }
            func sql(_ statements: String...) async throws {
                try await database.connection { connection, logger in
                    for text in statements {
                        try await connection.query(PostgresQuery(unsafeSQL: text), logger: logger)
                    }
                }
            }
            // Someone with the database's credentials marks the request approved and the task queued.
            try await sql(
                "UPDATE approvals SET state = 'approved', decided_by = 'elad', channel = 'cli', decided_at = 0",
                "UPDATE tasks SET state = 'queued'")
            let forged = try await claim()
            #expect(forged.claimed == nil)
            #expect(forged.skipped.first?.reason.contains("carries no operator's signature") == true)
            #expect(try await store.task(id: created.task.id)?.state == .awaitingApproval)
            // The forged row is withdrawn, and a new request waits for a real decision.
            let pending = try await store.pendingApprovals().pending
            #expect(pending.count == 1 && pending[0].approval.id != asked.id)
            let states = try await database.connection { connection, logger in
                var states: [String] = []
                for try await state in try await connection.query(
                    "SELECT state FROM approvals ORDER BY id", logger: logger
                ).decode(String.self) {
                    states.append(state)
                }
                return states
            }
            #expect(states == ["superseded", "pending"])

            // The operator signs; the claim checks the signature again and runs it, once.
            let (statement, task) = try await store.decisionStatement(
                approvalID: pending[0].approval.id, .approve(note: "go"), signerKey: fixture.operatorKey.publicKey,
                verifier: fixture.verifier, settings: configuration.approvals)
            #expect(task.id == created.task.id && statement.attempt == 1 && statement.principal == "elad")
            let signed = SignedDecision(
                statement: statement.text,
                signature: try DecisionSigner.native(fixture.operatorKey).sign(statement.text))
            let decided = try await store.decide(signed, verifier: fixture.verifier, channel: .cli)
            #expect(decided.state == .approved && decided.decidedBy == "elad")
            await #expect(throws: ApprovalError.self) {
                _ = try await store.decide(signed, verifier: fixture.verifier, channel: .cli)
            }
            let released = try #require(try await claim().claimed)
            #expect(released.task.id == created.task.id)
            let claimRow = try #require(try await store.ledger(forTask: created.task.id).last)
            #expect(claimRow.event == "claimed" && claimRow.detail?[path: "approved_by"] == "elad")

            // Resetting the task and the approval's use does not replay it: the ledger has its claim.
            try await sql(
                "UPDATE approvals SET used_at = NULL",
                "UPDATE tasks SET state = 'queued', attempts = 0, lease_token = NULL")
            let replay = try await claim()
            #expect(replay.claimed == nil)
            #expect(replay.skipped.first?.reason.contains("already used it") == true)
            #expect(try await store.verifyLedgerChain().firstBroken == nil)
            await store.close()
        }
    }

    @Test func aRejectionEndsTheTaskAndAnExpiredRequestCannotBeDecided() async throws {
        try await withDatabase { database in
            let fixture = try Fixture(map: firewallMap)
            let store = try await database.store()
            for version in ["1", "2"] {
                _ = try await store.enqueue(
                    EnqueueRequest(type: "deploy", payload: #"{"version":"\#(version)"}"#),
                    configuration: fixture.configuration)
            }
            let pending = try await store.pendingApprovals().pending
            #expect(pending.count == 2)
            await #expect(throws: ApprovalError.missingReason) {
                _ = try await store.decisionStatement(
                    approvalID: pending[0].approval.id, .reject(reason: " "), signerKey: fixture.operatorKey.publicKey,
                    verifier: fixture.verifier, settings: fixture.configuration.approvals)
            }
            let (statement, _) = try await store.decisionStatement(
                approvalID: pending[0].approval.id, .reject(reason: "not today"),
                signerKey: fixture.operatorKey.publicKey, verifier: fixture.verifier,
                settings: fixture.configuration.approvals)
            _ = try await store.decide(
                SignedDecision(
                    statement: statement.text,
                    signature: try DecisionSigner.native(fixture.operatorKey).sign(statement.text)),
                verifier: fixture.verifier, channel: .cli)
            #expect(try await store.task(id: pending[0].task.id)?.state == .rejected)
            // The second request's time runs out (on the database's clock): expired, with its task.
            try await database.connection { connection, logger in
                try await connection.query(
                    "UPDATE approvals SET expires_at = 0 WHERE id = \(pending[1].approval.id)", logger: logger)
            }
            let expired = try await store.housekeeping(now: 0)
            #expect(expired.map(\.id) == [pending[1].approval.id])
            #expect(try await store.task(id: pending[1].task.id)?.state == .expired)
            #expect(try await store.pendingApprovals().pending.isEmpty)
            await store.close()
        }
    }

    @Test func fiftyCallersOnFiveHostsNeverReserveBeyondTheCap() async throws {
        try await withDatabase { database in
            let configuration = try loadMap(
                """
                {"version": 1, "gateway": {"daily_cap_usd": 1, "models": [
                  {"name": "mini", "base_url": "http://127.0.0.1:9/v1", "model": "m", "tier": "cheap",
                   "input_usd_per_million": 1, "output_usd_per_million": 1}]}}
                """
            ).configuration
            let settings = configuration.gateway
            let model = try #require(settings.models.first)
            var hosts: [PostgresStore] = []
            for host in 0..<5 { hosts.append(try await database.store(host: "host-\(host)")) }
            // 50 callers at once, 10 per host, each reserving a tenth of the cap: ten fit, never eleven.
            let granted = try await withThrowingTaskGroup(of: Int64?.self) { [hosts] group in
                for caller in 0..<50 {
                    group.addTask {
                        try await hosts[caller % hosts.count].reserve(
                            model: model, amountUSD: 0.1, taskID: nil, settings: settings, timeZone: .gmt, now: 0,
                            timeout: .minutes(10))
                    }
                }
                var granted: [Int64] = []
                for try await id in group { if let id { granted.append(id) } }
                return granted
            }
            #expect(granted.count == 10)
            #expect(abs(try await hosts[0].committedUSD(settings: settings, timeZone: .gmt, now: 0) - 1) < 1e-9)
            // A settled call frees what its reservation held beyond its cost; a free call is never refused.
            try await hosts[1].settle(
                callID: granted[0], costUSD: 0.04, inputTokens: 10, outputTokens: 5, latencyMs: 3, outcome: nil,
                charged: true, now: 0)
            #expect(
                try await hosts[2].reserve(
                    model: model, amountUSD: 0.05, taskID: nil, settings: settings, timeZone: .gmt, now: 0,
                    timeout: .minutes(10)) != nil)
            #expect(
                try await hosts[3].reserve(
                    model: model, amountUSD: 0.02, taskID: nil, settings: settings, timeZone: .gmt, now: 0,
                    timeout: .minutes(10)) == nil)
            #expect(
                try await hosts[4].reserve(
                    model: model, amountUSD: 0, taskID: nil, settings: settings, timeZone: .gmt, now: 0,
                    timeout: .minutes(10)) != nil)
            let status = try await hosts[0].budget(settings: settings, timeZone: .gmt)
            #expect(abs(status.spentUSD - 0.04) < 1e-9 && abs(status.reservedUSD - 0.95) < 1e-9)
            for host in hosts { await host.close() }
        }
    }

    @Test func aPlainBatchGoesInBulkWithTheSameRowsAndChainAsOneByOne() async throws {
        try await withDatabase { database in
            let store = try await database.store()
            _ = try await store.enqueue(EnqueueRequest(type: "report"), configuration: configuration)
            let requests = [
                EnqueueRequest(type: "report", payload: #"{"n":1}"#, priority: 5, source: "bot", subject: "first"),
                EnqueueRequest(type: "render", payload: #"{"n":2,"s":"\u0000 ok"}"#, maxAttempts: 7),
                EnqueueRequest(type: "report", payload: "{}", delay: .minutes(5)),
            ]
            let outcomes = try await store.enqueueBatch(requests, configuration: configuration)
            #expect(outcomes.map(\.task.id) == [2, 3, 4])
            for outcome in outcomes {
                let stored = try #require(try await store.task(id: outcome.task.id))
                #expect(stored == outcome.task)
            }
            let second = try #require(try await store.task(id: 2))
            #expect(second.source == "bot" && second.subject == "first" && second.priority == 5)
            let third = try #require(try await store.task(id: 3))
            #expect(third.source == nil && third.subject == nil && third.maxAttempts == 7)
            #expect(try await store.task(id: 4)?.maxAttempts == nil)
            // The bulk rows hash as the one-by-one rows do: the chain holds across both, and goes on.
            _ = try await store.enqueue(EnqueueRequest(type: "report", key: "k"), configuration: configuration)
            let report = try await store.verifyLedgerChain()
            #expect(report.firstBroken == nil && report.rows == 5)
            let enqueued = try #require(try await store.ledger(forTask: 2).first)
            #expect(
                enqueued.detail == [
                    "payload_sha256": .string(second.payloadSHA256), "source": "bot", "state": "queued",
                ])
            await store.close()
        }
    }

    @Test func aHostTakesOnlyTheAlertsOfItsOwnChannels() async throws {
        try await withDatabase { database in
            let notify = try loadMap(#"{"version": 1, "notify": {"command": ["/bin/true"]}}"#).configuration.notify
            let store = try await database.store()
            try await store.queueTestNotification(notify: notify)
            // A host whose only channel is a webhook leaves the command's alert for a host that has it.
            #expect(
                try await store.takeDueNotification(now: 0, channels: [.webhook], tasks: nil, groupAfter: 10) == nil)
            let taken = try #require(
                try await store.takeDueNotification(now: 0, channels: [.command], tasks: nil, groupAfter: 10))
            #expect(taken.event == .test && taken.channel == .command)
            // Held while it is sent: a second host finds nothing due.
            #expect(
                try await store.takeDueNotification(now: 0, channels: [.command], tasks: nil, groupAfter: 10) == nil)
            await store.close()
        }
    }

    @Test func anEditedLedgerRowIsFoundAtThatRow() async throws {
        try await withDatabase { database in
            let store = try await database.store()
            for n in 0..<5 {
                _ = try await store.enqueue(
                    EnqueueRequest(type: "report", payload: #"{"n":\#(n)}"#), configuration: configuration)
            }
            #expect(
                try await store.verifyLedgerChain()
                    == ChainReport(
                        rows: 5, firstBroken: nil, lastHash: try await store.verifyLedgerChain().lastHash))
            // The append-only trigger refuses an edit…
            await #expect(throws: (any Error).self) {
                try await database.connection { connection, logger in
                    try await connection.query("UPDATE ledger SET detail = '{}' WHERE id = 3", logger: logger)
                }
            }
            // …and a superuser who drops it is still caught by the chain.
            try await database.connection { connection, logger in
                try await connection.query("ALTER TABLE ledger DISABLE TRIGGER USER", logger: logger)
                try await connection.query("UPDATE ledger SET detail = '{}' WHERE id = 3", logger: logger)
            }
            let report = try await store.verifyLedgerChain()
            #expect(report.firstBroken?.id == 3)
            #expect(report.firstBroken?.reason.contains("does not match its hash") == true)
            await store.close()
        }
    }

    /// `doctor` names a task whose payload was rewritten under its old hash, as on SQLite.
    @Test func aPayloadRewrittenUnderItsOldHashIsFound() async throws {
        try await withDatabase { database in
            let store = try await database.store()
            let created = try await store.enqueue(
                EnqueueRequest(type: "report", payload: #"{"day":"monday"}"#), configuration: configuration)
            #expect(try await store.alteredPayloads().isEmpty)
            try await database.connection { connection, logger in
                try await connection.query("ALTER TABLE tasks DISABLE TRIGGER USER", logger: logger)
                try await connection.query(#"UPDATE tasks SET payload = '{"day":"sunday"}'"#, logger: logger)
            }
            #expect(try await store.alteredPayloads() == [created.task.id])
            await store.close()
        }
    }

    @Test func theSameKeyReturnsTheSameTask() async throws {
        try await withDatabase { database in
            let store = try await database.store()
            let first = try await store.enqueue(
                EnqueueRequest(type: "report", payload: #"{"a":1}"#, key: "k1", source: "bot"),
                configuration: configuration)
            let again = try await store.enqueue(
                EnqueueRequest(type: "report", payload: #"{ "a" : 1 }"#, key: "k1", source: "bot"),
                configuration: configuration)
            #expect(again == .existing(first.task))
            await #expect(throws: QueueError.self) {
                _ = try await store.enqueue(
                    EnqueueRequest(type: "report", payload: #"{"a":2}"#, key: "k1", source: "bot"),
                    configuration: configuration)
            }
            await store.close()
        }
    }

    @Test func anSQLiteQueueIsExportedWithItsChainIntactAndGoesOnThere() async throws {
        try await withDatabase { database in
            let fixture = try Fixture()
            for n in 0..<1_500 { try fixture.enqueue("report", #"{"n":\#(n)}"#) }
            let dangerous = try fixture.enqueue("send_email", #"{"to":"a@example.com"}"#)
            let worker = fixture.worker(ScriptedRunner())
            _ = try await worker.work(drain: Worker.Limits(maxSeconds: 3600, maxTasks: 700))
            let audited = try fixture.store.audit(loaded: fixture.loaded, now: fixture.clock.now(), propose: false)
            // An override in force moves with the queue: a paused type stays paused.
            let paused = try fixture.store.write("pause") { db in
                try db.setOverride(
                    .pause, type: "send_email", value: nil, reason: "by hand", proposal: nil, lasting: nil,
                    now: fixture.clock.now())
            }
            let head = try #require(try fixture.store.ledgerHead())

            let store = try await database.store()
            let report = try await store.importing(from: fixture.store, now: fixture.clock.now())
            #expect(report.tables.first { $0.name == "tasks" }?.rows == 1_501)
            #expect(report.tables.first { $0.name == "approvals" }?.rows == 1)
            // The Oracle's history comes along: the dashboard lists the run, with its findings.
            let runs = try await store.auditRuns(limit: 5)
            #expect(runs.map(\.id) == [audited.runID] && runs.first?.headline == audited.headline)
            #expect(runs.first?.findings.count == audited.findings.count)
            #expect(try await store.overrides(now: 0) == [paused])
            #expect(report.tables.first { $0.name == "overrides" }?.rows == 1 && report.leftBehind.isEmpty)
            #expect(report.chain.rows == Int(head.id))
            #expect(report.chain.lastHash == head.hash)
            #expect(try await store.task(id: dangerous.id)?.state == .awaitingApproval)
            // The queue goes on from where it was: new ids after the old ones, the chain continued.
            let next = try await store.enqueue(EnqueueRequest(type: "report"), configuration: fixture.configuration)
            #expect(next.task.id == dangerous.id + 1)
            let claimed = try #require(try await store.claim(fixture.configuration))
            #expect(claimed.task.id == 701)  // the oldest task not yet run on SQLite
            let after = try await store.verifyLedgerChain()
            #expect(after.firstBroken == nil && after.rows == Int(head.id) + 2)

            // A second export into a database that holds tasks writes nothing.
            await #expect(throws: ExportError.self) {
                _ = try await store.importing(from: fixture.store, now: fixture.clock.now())
            }
            #expect(try await store.verifyLedgerChain().rows == Int(head.id) + 2)
            await store.close()
        }
    }

    @Test func aLockHeldPastTheWaitIsBusyNotABrokenDatabase() async throws {
        try await withDatabase { database in
            let fixture = try Fixture()
            let store = try await database.store()
            try await store.limitLockWait(to: Interval(milliseconds: 200))
            // Another host holds the ledger's lock (a long transaction): this one gives up, busy.
            try await database.connection { connection, logger in
                try await connection.query("SELECT pg_advisory_lock(\(PostgresStore.ledgerLock))", logger: logger)
                await #expect {
                    _ = try await store.enqueue(EnqueueRequest(type: "report"), configuration: fixture.configuration)
                } throws: { error in
                    guard case StoreError.busy = error else { return false }
                    return "\(error)".contains("try again")
                }
                try await connection.query("SELECT pg_advisory_unlock(\(PostgresStore.ledgerLock))", logger: logger)
            }
            #expect(try await store.stateCounts().isEmpty)
            _ = try await store.enqueue(EnqueueRequest(type: "report"), configuration: fixture.configuration)
            await store.close()
        }
    }

    @Test func anExportWhileATaskRunsOnSQLiteIsRefused() async throws {
        try await withDatabase { database in
            let fixture = try Fixture()
            try fixture.enqueue("report")
            _ = try fixture.store.claimNext(
                configuration: fixture.configuration, now: fixture.clock.now(), lease: .seconds(60), leaseToken: "t")
            let store = try await database.store()
            await #expect {
                _ = try await store.importing(from: fixture.store, now: fixture.clock.now())
            } throws: { error in
                "\(error)".contains("running on the SQLite queue")
            }
            #expect(try await store.stateCounts().isEmpty)
            await store.close()
        }
    }

    @Test func theWorkerRunsOnPostgresWithVerifiersAndAlerts() async throws {
        try await withDatabase { database in
            let fixture = try Fixture(
                map: """
                    {
                      "version": 1,
                      "notify": { "command": ["/bin/true"] },
                      "task_types": {
                        "checked": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } },
                                     "verify": [ { "command": { "argv": ["/bin/true"] } } ] },
                        "doomed": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/false"] } },
                                    "retry": { "max_attempts": 1 } },
                        "ask_model": { "safety": "safe", "handler": { "llm": { "prompt": "hi" } } }
                      }
                    }
                    """)
            let store = try await database.store(host: "box")
            for type in ["checked", "doomed", "ask_model"] {
                _ = try await store.enqueue(EnqueueRequest(type: type), configuration: fixture.configuration)
            }
            var options = Worker.Options()
            options.clock = fixture.clock
            options.random = { 0.5 }
            options.logger.logLevel = .critical
            options.pause = { _ in }
            let worker = Worker(postgres: store, loaded: fixture.loaded, options: options)
            let report = try await worker.work(drain: Worker.Limits(maxSeconds: 3600))
            #expect(report.attempts.map(\.outcome?.state) == [.done, .dead, .queued])
            #expect(report.skipped.isEmpty)
            // The model task reached the gateway on PostgreSQL (which has no model in this map); the
            // end-to-end tests make real calls through it.
            #expect(report.attempts.last?.outcome?.error?.contains("no model is configured") == true)
            // The ledger shows the handler's error text beside its fingerprint, as on SQLite.
            let died = try #require(try await store.ledger(forTask: 2).first { $0.event == "dead" })
            #expect(died.detail?[path: "error"]?.stringValue?.isEmpty == false, "\(String(describing: died.detail))")
            #expect(died.detail?[path: "error_sha256"] != nil)
            // The note is checked against that fingerprint: an edited one breaks `ledger verify` and is not shown.
            #expect(try await store.verifyLedgerChain().firstBroken == nil)
            try await database.connection { connection, logger in
                try await connection.query(
                    "UPDATE ledger_notes SET text = 'disk full (operator: ignore)' WHERE task_id = 2", logger: logger)
            }
            let edited = try await store.verifyLedgerChain().firstBroken
            #expect(edited?.reason.contains("was edited") == true, "\(String(describing: edited))")
            let shown = try await store.ledger(forTask: 2).first { $0.event == "dead" }?.detail?[path: "error"]
            #expect(shown?.stringValue == LedgerChain.alteredNote)
            // Once pruned, a dead task cannot be retried with nothing to run.
            // (A cutoff a minute ahead of the database's clock: every finished task, however recent.)
            #expect(try await store.prune(olderThan: Interval(milliseconds: -60_000), by: "test") >= 1)
            await #expect(throws: QueueError.self) { _ = try await store.retry(taskID: 2, by: "test") }
            #expect(try await store.task(id: 2)?.state == .dead)
            let events = try await store.ledger(forTask: 1).map(\.event)
            #expect(events == ["enqueued", "claimed", "executed", "verifying", "verified", "done"])
            let alerts = try await database.connection { connection, logger in
                var events: [String] = []
                for try await event in try await connection.query(
                    "SELECT event FROM notifications ORDER BY id", logger: logger
                ).decode(String.self) {
                    events.append(event)
                }
                return events
            }
            #expect(alerts == ["task_dead"])
            #expect(try await store.verifyLedgerChain().firstBroken == nil)
            await store.close()
        }
    }

    @Test func aProducerNamedAsSourceKeepsItsHourlyLimits() async throws {
        try await withDatabase { database in
            let configuration = try loadMap(
                """
                {
                  "version": 1,
                  "producers": { "users": { "bot": { "types": ["*"], "max_per_hour": 2 } } },
                  "task_types": { "report": { "safety": "safe", "handler": { "exec": { "argv": ["/bin/true"] } } } }
                }
                """
            ).configuration
            let store = try await database.store()
            for n in 0..<2 {
                _ = try await store.enqueue(
                    EnqueueRequest(type: "report", payload: #"{"n":\#(n)}"#, source: "bot"),
                    configuration: configuration)
            }
            await #expect {
                _ = try await store.enqueue(
                    EnqueueRequest(type: "report", payload: #"{"n":3}"#, source: "bot"), configuration: configuration)
            } throws: { error in
                guard case TrustError.rateLimited(let producer, let limit, false, _) = error else { return false }
                return producer == "bot" && limit == 2
            }
            // Another source is not held back by the bot's limit.
            _ = try await store.enqueue(
                EnqueueRequest(type: "report", payload: #"{"n":4}"#, source: "cron"), configuration: configuration)
            #expect(try await store.stateCounts() == [.queued: 3])
            await store.close()
        }
    }

    @Test func aWrongPasswordIsReportedWithoutIt() async throws {
        try await withDatabase { database in
            await #expect {
                _ = try await PostgresStore.open(database.url, password: "not-the-password-\u{1F511}")
            } throws: { error in
                let text = "\(error)"
                return text.contains("password authentication failed") && !text.contains("not-the-password")
                    && text.contains(database.url.description)
            }
        }
    }
}

extension PostgresStore {
    /// The next task under a one-minute lease, or nil.
    func claim(_ configuration: Configuration, token: String = "t") async throws -> ClaimedTask? {
        try await claimNext(
            configuration: configuration, now: 0, lease: .seconds(60), leaseToken: token, ratings: [:],
            rateInline: false
        ).claimed
    }

    func recover(_ configuration: Configuration) async throws -> AutonomyStore.Recovery {
        try await recoverExpiredLeases(configuration: configuration, now: 0, lease: .seconds(60), random: { 0.5 })
    }
}

/// Which host claimed each task, and every task claimed twice.
final class Claims: Sendable {
    let hosts = Mutex<[Int64: String]>([:])
    let duplicates = Mutex<[Int64]>([])

    func record(_ id: Int64, by host: String) {
        let first = hosts.withLock { $0.updateValue(host, forKey: id) == nil }
        if !first { duplicates.withLock { $0.append(id) } }
    }
}

@Suite struct PostgresURLTests {
    @Test func aURLIsParsedAndShownWithoutSecrets() throws {
        let url = try PostgresURL(parsing: "postgres://worker@db.example.com:6543/autonomy")
        #expect(
            url
                == PostgresURL(
                    user: "worker", host: "db.example.com", port: 6543, database: "autonomy", tls: .verifyFull))
        #expect(url.description == "postgres://worker@db.example.com:6543/autonomy")
        #expect(try PostgresURL(parsing: "postgresql://w@h/d").port == 5432)
        // Loopback is in the clear unless asked; elsewhere TLS is verified unless asked otherwise.
        #expect(try PostgresURL(parsing: "postgres://w@127.0.0.1/d").tls == .disable)
        let plain = try PostgresURL(parsing: "postgres://w@db.example.com/d?sslmode=disable")
        #expect(plain.tls == .disable && plain.description.hasSuffix("?sslmode=disable"))
    }

    @Test(arguments: [
        ("postgres://worker:hunter2@db/autonomy", "carries a password"),
        ("postgres://db/autonomy", "names no user"),
        ("postgres://worker@db/", "names no database"),
        ("postgres://worker@db/autonomy?sslmode=maybe", "sslmode must be"),
        ("postgres://worker@db/autonomy?sslmode=prefer", "in the clear"),
        ("postgres://worker@db/autonomy?application_name=x", "unknown URL parameter"),
        ("postgres://worker@/autonomy", "names no host"),
    ])
    func aBadURLIsRefusedWithoutRepeatingIt(text: String, expected: String) {
        #expect {
            _ = try PostgresURL(parsing: text, environment: [:])
        } throws: { error in
            "\(error)".contains(expected) && !"\(error)".contains("hunter2") && "\(error)".hasPrefix("database: ")
        }
    }

    @Test func thePasswordComesFromTheNamedVariableThenPGPASSWORDThenThePasswordFile() throws {
        let folder = try TemporaryFolder()
        let url = try PostgresURL(parsing: "postgres://worker@db.example.com/autonomy")
        let file = try folder.write(
            "pgpass",
            """
            # comment
            other.example.com:*:*:worker:wrong
            db.example.com:5432:autonomy:worker:from\\:file
            *:*:*:*:fallback
            """)
        chmod(file, 0o600)
        #expect(try url.password(environment: ["PGPASSFILE": file]) == "from:file")
        #expect(try url.password(environment: ["PGPASSFILE": file, "PGPASSWORD": "env"]) == "env")
        #expect(
            try url.password(variable: "AUTONOMY_PG", environment: ["AUTONOMY_PG": "named", "PGPASSWORD": "env"])
                == "named")
        #expect(throws: ConfigError.self) { try url.password(variable: "AUTONOMY_PG", environment: [:]) }
        // A password file others may read is refused, as libpq ignores it.
        chmod(file, 0o644)
        #expect(throws: ConfigError.self) { try url.password(environment: ["PGPASSFILE": file]) }
        #expect(try url.password(environment: ["PGPASSFILE": folder.file("none")]) == nil)
    }
}
