import AsyncHTTPClient
import AutonomyCore
import AutonomyTestSupport
import Foundation
import NIOCore
import PostgresNIO
import Testing

/// Several hosts, one PostgreSQL queue: the built binary, run as a shell script or a systemd timer
/// would on each host. The hosts are processes on this machine, each with its own configuration
/// (`worker.host`), reaching the server over TCP on loopback.
@Suite(
    .enabled(
        if: PostgresTestDatabase.available,
        "needs a PostgreSQL cluster: eval \"$(scripts/postgres-test-cluster start)\""))
struct PostgresEndToEndTests {
    /// A sandbox whose database is `database`, with one configuration per host.
    final class Cluster: Sendable {
        let sandbox: Sandbox
        let database: PostgresTestDatabase

        init(_ database: PostgresTestDatabase, taskTypes: String, hosts: [String], extra: String = "") throws {
            self.database = database
            sandbox = try Sandbox(config: Self.config(taskTypes, host: "producer", extra: extra))
            for host in hosts {
                try Self.config(taskTypes, host: host, extra: extra).write(
                    toFile: sandbox.file("\(host).json"), atomically: true, encoding: .utf8)
            }
        }

        static func config(_ taskTypes: String, host: String, extra: String = "") -> String {
            #"""
            {"version": 1, "worker": {"host": "\#(host)", "lease": "60s"},\#(extra)
             "approvals": {"allowed_signers": "allowed_signers"}, "task_types": {\#(taskTypes)}}
            """#
        }

        /// The environment every command gets: the URL (no password in it) and the password apart.
        var environment: [String: String] {
            [
                "AUTONOMY_DATABASE": database.url.description + "?sslmode=disable",
                "PGPASSWORD": database.password ?? "", "PGPASSFILE": "/nonexistent",
            ]
        }

        func run(_ arguments: [String], host: String? = nil, stdin: String? = nil) async throws -> CLIResult {
            var environment = self.environment
            if let host { environment["AUTONOMY_CONFIG"] = sandbox.file("\(host).json") }
            return try await sandbox.run(arguments, stdin: stdin, environment: environment)
        }

        /// Runs `autonomy ARGS` inside a network namespace: a host of its own, reaching the
        /// database server over its veth link.
        func run(_ arguments: [String], host: String, namespace: String, ip: String, address: String) async throws
            -> CLIResult
        {
            var environment = self.environment
            environment["AUTONOMY_CONFIG"] = sandbox.file("\(host).json")
            environment["AUTONOMY_DATABASE"] =
                "postgres://\(database.url.user)@\(address):\(database.url.port)/\(database.url.database)?sslmode=disable"
            return try await sandbox.run(
                ["netns", "exec", namespace, autonomyBinary] + arguments, environment: environment, executable: ip)
        }

        /// The one number a query of the test database answers.
        func count(_ query: String) async throws -> Int {
            try await database.connection { connection, logger in
                var count = 0
                for try await n in try await connection.query(PostgresQuery(unsafeSQL: query), logger: logger).decode(
                    Int.self)
                {
                    count = n
                }
                return count
            }
        }

        func lines(_ name: String) -> [String] {
            ((try? String(contentsOfFile: sandbox.file(name), encoding: .utf8)) ?? "").split(separator: "\n").map(
                String.init)
        }
    }

    func withCluster(
        taskTypes: String, hosts: [String], extra: String = "", _ body: (Cluster) async throws -> Void
    ) async throws {
        let database = try await PostgresTestDatabase.make()
        do {
            try await body(try Cluster(database, taskTypes: taskTypes, hosts: hosts, extra: extra))
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }

    @Test func threeHostsDrainTenThousandTasksAndRunEachExactlyOnce() async throws {
        let hosts = ["vps", "gpu", "spare"]
        let total = 10_000
        try await withCluster(
            taskTypes: #"""
                "record": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo \"$AUTONOMY_TASK_ID\" >> runs.log"]}}}
                """#, hosts: hosts
        ) { cluster in
            let batch = (0..<total).map { #"{"type":"record","payload":{"n":\#($0)}}"# }.joined(separator: "\n")
            let enqueued = try await cluster.run(["enqueue", "--batch", "-"], stdin: batch)
            #expect(enqueued.status == 0, "\(enqueued.stderr)")
            #expect(enqueued.stdout.split(separator: "\n").count == total)

            // Each host in a network namespace of its own where the machine allows it (CI does),
            // else a process on loopback. The server notes where each ledger write came from.
            let network = NetworkHosts(count: hosts.count)
            try await cluster.database.connection { connection, logger in
                for statement in [
                    "CREATE TABLE autonomy_test_clients (client_addr inet)",
                    """
                    CREATE FUNCTION autonomy_test_note_client() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN INSERT INTO autonomy_test_clients VALUES (inet_client_addr()); RETURN NULL; END $$
                    """,
                    """
                    CREATE TRIGGER autonomy_test_note_client AFTER INSERT ON ledger
                        FOR EACH STATEMENT EXECUTE FUNCTION autonomy_test_note_client()
                    """,
                ] {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
            }
            let results = try await withThrowingTaskGroup(of: (String, CLIResult).self) { group in
                for (index, host) in hosts.enumerated() {
                    let drain = ["work-once", "--drain", "--max-seconds", "3600"]
                    group.addTask {
                        guard let network else { return (host, try await cluster.run(drain, host: host)) }
                        return (
                            host,
                            try await cluster.run(
                                drain, host: host, namespace: network.namespaces[index], ip: network.ip,
                                address: network.address)
                        )
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            for (host, result) in results { #expect(result.status == 0, "\(host): \(result.stderr)") }
            // Every task ran once: the handlers' own record, and the ledger's.
            let runs = cluster.lines("runs.log")
            #expect(runs.count == total)
            #expect(Set(runs).count == total)
            let status = try await cluster.run(["status", "--json"])
            #expect(status.stdout.contains(#""done":\#(total)"#) || status.stdout.contains(#""done" : \#(total)"#))
            let verify = try await cluster.run(["ledger", "verify"])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stdout.contains("the chain holds: \(total * 4) rows"))
            // The work was shared, and each claim names the host that made it.
            let perHost = try await cluster.database.connection { connection, logger in
                var counts: [String: Int] = [:]
                for try await (host, count) in try await connection.query(
                    "SELECT detail::json->>'host', count(*)::bigint FROM ledger WHERE event = 'claimed' GROUP BY 1",
                    logger: logger
                ).decode((String, Int).self) {
                    counts[host] = count
                }
                return counts
            }
            #expect(perHost.values.reduce(0, +) == total)
            #expect(Set(perHost.keys) == Set(hosts))
            if network == nil {
                print("note: the three hosts ran as processes on loopback (network namespaces need root and iproute2)")
            } else {
                // They came from the namespaces' own addresses, not from loopback.
                let clients = try await cluster.database.connection { connection, logger in
                    var addresses: Set<String> = []
                    for try await address in try await connection.query(
                        "SELECT DISTINCT host(client_addr) FROM autonomy_test_clients", logger: logger
                    ).decode(String.self) {
                        addresses.insert(address)
                    }
                    return addresses
                }
                #expect(clients.count == hosts.count && clients.allSatisfy { $0.hasPrefix("10.213.") })
            }
        }
    }

    @Test func aHostKilledMidTaskIsRecoveredByAnotherWithoutRunningItAgain() async throws {
        try await withCluster(
            taskTypes: #"""
                "send": {"safety": "safe",
                         "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo \"$AUTONOMY_TASK_ID\" >> sent.log; echo $$ > handler.pid; exec sleep 600"]}},
                         "verify": [{"command": {"argv": ["/bin/sh", "-c", "grep -qx \"$AUTONOMY_TASK_ID\" sent.log"]}}]}
                """#, hosts: ["dying", "healthy"]
        ) { cluster in
            #expect(try await cluster.run(["enqueue", "send"]).stdout == "1\n")
            let dying = Process()
            dying.executableURL = URL(fileURLWithPath: autonomyBinary)
            dying.arguments = ["work-once"]
            dying.currentDirectoryURL = URL(fileURLWithPath: cluster.sandbox.path)
            dying.environment = ProcessInfo.processInfo.environment.merging(cluster.environment) { $1 }.merging([
                "AUTONOMY_CONFIG": cluster.sandbox.file("dying.json"), "HOME": cluster.sandbox.path,
            ]) { $1 }
            dying.standardOutput = FileHandle.nullDevice
            dying.standardError = FileHandle.nullDevice
            try dying.run()
            // The side effect happened; then the host dies (the worker and its handler, SIGKILL).
            #expect(try await eventually { !cluster.lines("handler.pid").isEmpty })
            kill(dying.processIdentifier, SIGKILL)
            dying.waitUntilExit()
            if let pid = cluster.lines("handler.pid").first.flatMap({ pid_t($0) }) { kill(pid, SIGKILL) }

            // Another host finds the lease live: nothing to take over.
            let early = try await cluster.run(["work-once"], host: "healthy")
            #expect(early.stdout == "nothing to do\n", "\(early.stdout)\(early.stderr)")
            // The lease runs out on the database's clock (moved back, rather than waiting a minute).
            try await cluster.database.connection { connection, logger in
                try await connection.query(
                    "UPDATE tasks SET lease_expires_at = lease_expires_at - 120000", logger: logger)
            }
            let recovered = try await cluster.run(["work-once"], host: "healthy")
            #expect(recovered.status == 0, "\(recovered.stderr)")
            #expect(
                recovered.stdout.contains("recovered task 1 (send) after a dead worker: done"), "\(recovered.stdout)")
            #expect(cluster.lines("sent.log") == ["1"])  // verified, not sent again
            let events = try await cluster.database.connection { connection, logger in
                var events: [String] = []
                for try await (event, host) in try await connection.query(
                    "SELECT event, coalesce(detail::json->>'host', '') FROM ledger WHERE task_id = 1 ORDER BY id",
                    logger: logger
                ).decode((String, String).self) {
                    events.append(host.isEmpty ? event : "\(event)@\(host)")
                }
                return events
            }
            #expect(
                events == [
                    "enqueued", "claimed@dying", "lease_expired@healthy", "verifying@healthy", "verified",
                    "done@healthy",
                ])
        }
    }

    @Test func anOperatorsSignedApprovalReleasesADangerousTaskOnAnyHostOnce() async throws {
        try await withCluster(
            taskTypes: #"""
                "deploy": {"safety": "dangerous", "retry": {"max_attempts": 1},
                           "verify": [{"file": {"path": "deployed.log", "non_empty": true}}],
                           "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo \"$AUTONOMY_TASK_ID\" >> deployed.log"]}}}
                """#, hosts: ["vps", "gpu"]
        ) { cluster in
            let enqueued = try await cluster.run(["enqueue", "deploy", "--payload", #"{"version":"1.2"}"#])
            #expect(enqueued.stderr.contains("waits for an operator's approval"), "\(enqueued.stderr)")
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            #expect(cluster.lines("deployed.log").isEmpty)
            let listed = try JSONValue.parse(try await cluster.run(["approvals", "--json"]).stdout)
            guard case .array(let items) = listed, case .int(let id)? = items.first?[path: "id"] else {
                throw CLIFailureInTest("no pending approval on PostgreSQL: \(listed)")
            }
            #expect(items.count == 1)
            let shown = try await cluster.run(["approvals", "show", "\(id)"])
            #expect(shown.stdout.contains(#""version" : "1.2""#), "\(shown.stdout)")
            let approved = try await cluster.run(["approve", "\(id)", "--note", "ship it"])
            #expect(approved.status == 0, "\(approved.stderr)")
            #expect(approved.stdout.contains("approved by elad"))
            let again = try await cluster.run(["approve", "\(id)"])
            #expect(again.status == 1 && again.stderr.contains("already decided"), "\(again.stderr)")
            _ = try await cluster.run(["work-once", "--drain"], host: "gpu")
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            #expect(cluster.lines("deployed.log") == ["1"])
            let task = try await cluster.run(["tasks", "show", "1"])
            #expect(task.stdout.contains("approval_decided") && task.stdout.contains(#""approved_by":"elad""#))
            #expect(task.stdout.contains(#""host":"gpu""#), "\(task.stdout)")
            // The evidence checked again on demand, and nothing stuck.
            let rechecked = try await cluster.run(["verify", "1"], host: "gpu")
            #expect(
                rechecked.status == 0 && rechecked.stdout.contains("task 1 stays done"),
                "\(rechecked.stdout)\(rechecked.stderr)")
            let stuck = try await cluster.run(["verify", "--pending"], host: "gpu")
            #expect(stuck.stdout.contains("no task is stuck"), "\(stuck.stdout)\(stuck.stderr)")
            let list = try await cluster.run(["tasks", "list", "--state", "done"])
            #expect(list.status == 0 && list.stdout.contains("deploy"), "\(list.stdout)")
            // Who asked for what, and about whom.
            _ = try await cluster.run([
                "enqueue", "deploy", "--source", "bridge", "--subject", "Acme Ltd", "--payload", "{}",
            ])
            let sources = try await cluster.run(["sources"])
            #expect(sources.stdout.contains("bridge") && sources.stdout.contains("1 pending"), "\(sources.stdout)")
            let subjects = try await cluster.run(["subjects", "--search", "acme"])
            #expect(subjects.stdout.hasPrefix("Acme Ltd: 1 tasks"), "\(subjects.stdout)\(subjects.stderr)")
            let about = try await cluster.run(["subject", "Acme Ltd"])
            #expect(about.stdout.contains("deploy awaiting_approval from bridge (pending)"), "\(about.stdout)")
            #expect(try await cluster.run(["subject", "Nobody"]).status == 66)
            #expect(try await cluster.run(["tasks", "cancel", "2"]).status == 0)
            // An operator cancels a queued task and retries a dead one, on any host.
            _ = try await cluster.run(["enqueue", "deploy", "--payload", #"{"version":"1.3"}"#])
            let cancelled = try await cluster.run(["tasks", "cancel", "3", "--reason", "not today"], host: "gpu")
            #expect(cancelled.status == 0 && cancelled.stdout.contains("task 3 cancelled"), "\(cancelled.stderr)")
            let left = try await cluster.run(["approvals", "--json"])
            #expect(try JSONValue.parse(left.stdout) == .array([]), "\(left.stdout)")
            let twice = try await cluster.run(["tasks", "cancel", "3"])
            #expect(twice.status == 1, "\(twice.stderr)")
            let notDead = try await cluster.run(["tasks", "retry", "1"])
            #expect(notDead.status == 1 && notDead.stderr.contains("error: "), "\(notDead.stderr)")
            let verify = try await cluster.run(["ledger", "verify"])
            #expect(verify.status == 0, "\(verify.stderr)")
            // The ledger read three ways: newest rows, the head, the whole export.
            let rows = try JSONValue.parse(
                try await cluster.run(["ledger", "list", "--limit", "2", "--json"]).stdout)
            guard case .array(let newest) = rows else { throw CLIFailureInTest("no rows: \(rows)") }
            if case .int(let first)? = newest.first?[path: "id"], case .int(let second)? = newest.last?[path: "id"] {
                #expect(newest.count == 2 && first == second + 1)
            } else {
                Issue.record("ledger list --json: \(rows)")
            }
            let head = try await cluster.run(["ledger", "anchor"]).stdout
            let exported = try await cluster.run(["ledger", "export"]).stdout.split(separator: "\n")
            #expect(!exported.isEmpty && head.hasPrefix("\(exported.count) "), "\(head)")
            #expect(try JSONValue.parse(String(exported[0]))[path: "id"] == .int(1))
        }
    }

    @Test func fiftyModelCallersOnThreeHostsNeverPassTheCap() async throws {
        let hosts = ["vps", "gpu", "spare"]
        let network = NetworkHosts(count: hosts.count)
        // Every answer reports the whole reservation as used ($1.00: 325 tokens in, 675 out), so a
        // $10 cap has room for exactly ten calls, however they interleave (no soft cap: its free-only
        // rule would turn some away before the reservation is even tried).
        let server = try LoopbackHTTPServer(
            defaultBody: completion("ok", input: 325, output: 675), delay: .milliseconds(200),
            host: network?.address ?? "127.0.0.1")
        defer { server.stop() }
        let gateway = #"""
             "gateway": {"daily_cap_usd": 10, "soft_cap_ratio": 1, "models": [
               {"name": "mini", "base_url": "http://\#(server.host):\#(server.port)/v1", "model": "mini-id",
                "tier": "cheap", "input_usd_per_million": 1000, "output_usd_per_million": 1000,
                "max_tokens": 675, "timeout": "60s"}]},
            """#
        try await withCluster(taskTypes: "", hosts: hosts, extra: gateway) { cluster in
            let results = try await withThrowingTaskGroup(of: CLIResult.self) { group in
                for caller in 0..<50 {
                    let index = caller % hosts.count
                    let ask = ["llm", "--tier", "cheap", "hello"]
                    group.addTask {
                        guard let network else { return try await cluster.run(ask, host: hosts[index]) }
                        return try await cluster.run(
                            ask, host: hosts[index], namespace: network.namespaces[index], ip: network.ip,
                            address: network.address)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let answered = results.filter { $0.status == 0 }
            let refused = results.filter { $0.status == 69 }
            #expect(answered.count == 10, "\(results.filter { $0.status != 0 && $0.status != 69 }.map(\.stderr))")
            #expect(refused.count == 40)
            #expect(refused.allSatisfy { $0.stderr.contains("daily cost cap") }, "\(refused.first?.stderr ?? "")")
            #expect(server.requests.count == 10)
            let (calls, spent, open) = try await cluster.database.connection { connection, logger in
                var totals = (0, 0.0, 0)
                for try await row in try await connection.query(
                    """
                    SELECT count(*) FILTER (WHERE state = 'settled')::bigint, coalesce(sum(cost_usd), 0),
                           count(*) FILTER (WHERE state = 'reserved')::bigint
                    FROM llm_calls
                    """, logger: logger
                ).decode((Int, Double, Int).self) {
                    totals = row
                }
                return totals
            }
            #expect(calls == 10 && abs(spent - 10) < 1e-9 && open == 0)
            let budget = try JSONValue.parse(try await cluster.run(["budget", "--json"]).stdout)
            #expect(abs(number(budget[path: "spent_usd"]) - 10) < 1e-9)
            if network == nil {
                print(
                    "note: the fifty callers ran as processes on loopback (network namespaces need root and iproute2)")
            }
        }
    }

    @Test func alertsAreSentFromPostgresOnceEachByTheHostsWithTheirChannel() async throws {
        let notify = #"""
             "notify": {"command": ["/bin/sh", "-c", "echo \"$AUTONOMY_NOTIFY_EVENT $AUTONOMY_NOTIFY_TEXT\" >> alerts.log"]},
            """#
        try await withCluster(
            taskTypes: #"""
                "deploy": {"safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}},
                           "verify": [{"command": {"argv": ["/bin/true"]}}]},
                "doomed": {"safety": "safe", "retry": {"max_attempts": 1}, "handler": {"exec": {"argv": ["/bin/false"]}}}
                """#, hosts: ["vps", "gpu"], extra: notify
        ) { cluster in
            // The operator hears of the request as it is enqueued, with the command to decide.
            let enqueued = try await cluster.run(["enqueue", "deploy", "--payload", #"{"version":"2"}"#])
            #expect(enqueued.status == 0, "\(enqueued.stderr)")
            #expect(cluster.lines("alerts.log").count == 1)
            #expect(
                cluster.lines("alerts.log").first?.hasPrefix("approval_needed approval needed: task 1 deploy") == true)
            #expect(cluster.lines("alerts.log").first?.contains("autonomy approve 1 --sha256") == true)
            // A task that dies on one host is reported once; a host without that channel leaves it alone.
            _ = try await cluster.run(["enqueue", "doomed"])
            let vps = try await cluster.run(["work-once", "--drain"], host: "vps")
            #expect(vps.status == 0, "\(vps.stderr)")
            let gpu = try await cluster.run(["work-once", "--drain"], host: "gpu")
            #expect(gpu.status == 0, "\(gpu.stderr)")
            #expect(
                cluster.lines("alerts.log").map { $0.prefix(21) } == ["approval_needed appro", "task_dead task dead: "])
            let test = try await cluster.run(["notify", "test"])
            #expect(test.status == 0 && test.stdout.contains("command: delivered"), "\(test.stdout)\(test.stderr)")
            #expect(cluster.lines("alerts.log").count == 3)
            let (delivered, tokens) = try await cluster.database.connection { connection, logger in
                var counts = (0, 0)
                for try await row in try await connection.query(
                    """
                    SELECT (SELECT count(*) FROM ledger WHERE event = 'notified')::bigint,
                           (SELECT count(*) FROM approval_tokens)::bigint
                    """, logger: logger
                ).decode((Int, Int).self) {
                    counts = row
                }
                return counts
            }
            // The approval alert carries a one-click token (its hash stored), as on SQLite.
            #expect(delivered == 3 && tokens == 1)
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
            // The map says which host ran what.
            let map = try JSONValue.parse(try await cluster.run(["map", "--json"]).stdout)
            guard case .array(let types) = map[path: "types"] else { throw CLIFailureInTest("no types: \(map)") }
            let doomed = types.first { $0[path: "name"] == "doomed" }
            #expect(doomed?[path: "hosts.vps"] == .int(1) && doomed?[path: "dead"] == .int(1), "\(map)")
            let shown = try await cluster.run(["map"])
            #expect(shown.stdout.contains("attempts per host (PostgreSQL):"), "\(shown.stdout)\(shown.stderr)")
            let metrics = try await cluster.run(["metrics"])
            #expect(metrics.stdout.contains(#"autonomy_tasks_finished_total{type="doomed",outcome="dead"} 1"#))
            #expect(metrics.stdout.contains(#"autonomy_tasks{state="awaiting_approval"} 1"#), "\(metrics.stdout)")
            #expect(metrics.stdout.contains("autonomy_approvals_pending 1"))
            // Retention: nothing finished an hour ago yet; everything finished, at once.
            #expect(
                try await cluster.run(["prune", "--finished-older-than", "1h"]).stdout == "pruned 0 finished task(s)\n")
            let retried = try await cluster.run(["tasks", "retry", "2"], host: "gpu")
            #expect(retried.status == 0 && retried.stdout.contains("task 2 queued again"), "\(retried.stderr)")
            #expect(try await cluster.run(["tasks", "show", "2"]).stdout.hasPrefix("task 2  doomed  queued"))
            _ = try await cluster.run(["tasks", "cancel", "1"])
            let pruned = try await cluster.run(["prune", "--finished-older-than", "0s"])
            #expect(pruned.stdout == "pruned 1 finished task(s)\n", "\(pruned.stdout)\(pruned.stderr)")
            #expect(try await cluster.run(["tasks", "show", "1"]).stdout.contains("payload:   pruned by retention"))
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    @Test func aProducerWithoutTheDatabasesPasswordGoesThroughTheGateWithItsRights() async throws {
        let producers = #"""
             "producers": {"users": {"\#(currentUserName)": {"types": ["report"], "max_per_hour": 3}}},
            """#
        try await withCluster(
            taskTypes: #"""
                "report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}},
                "send_email": {"safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}},
                               "verify": [{"command": {"argv": ["/bin/true"]}}]}
                """#, hosts: [], extra: producers
        ) { cluster in
            // The gate runs as the worker's user, with the password; the producer has none.
            let gate = try GateListener(sandbox: cluster.sandbox, environment: cluster.environment)
            defer { gate.stop() }
            var producer = cluster.environment
            (producer["PGPASSWORD"], producer["AUTONOMY_GATE"]) = ("", gate.socketPath)
            func asProducer(_ arguments: [String], stdin: String? = nil) async throws -> CLIResult {
                try await cluster.sandbox.run(arguments, stdin: stdin, environment: producer)
            }
            let mine = try await asProducer(["enqueue", "report", "--json"])
            #expect(mine.status == 0, "\(mine.stderr)")
            #expect(try JSONValue.parse(mine.stdout)[path: "source"] == .string(currentUserName))
            let notAllowed = try await asProducer(["enqueue", "send_email", "--payload", "{}"])
            #expect(notAllowed.status == 77 && notAllowed.stderr.contains("may not enqueue send_email"))
            let forged = try await asProducer(["enqueue", "report", "--source", "sales-bot"])
            #expect(forged.status == 77 && forged.stderr.contains("the source is who you are"), "\(forged.stderr)")
            // Another producer's task (enqueued by the operator) is not this producer's to see.
            let theirs = try await cluster.run(["enqueue", "send_email", "--payload", "{}", "--source", "sales-bot"])
            #expect(theirs.status == 0, "\(theirs.stderr)")
            let listed = try await asProducer(["tasks", "list", "--json"])
            guard case .array(let tasks) = try JSONValue.parse(listed.stdout) else {
                throw CLIFailureInTest("no list: \(listed.stderr)")
            }
            #expect(tasks.count == 1 && tasks[0][path: "source"] == .string(currentUserName))
            #expect(
                try await asProducer(["tasks", "show", theirs.stdout.trimmingCharacters(in: .whitespacesAndNewlines)])
                    .status == 66)
            let status = try await asProducer(["status"])
            #expect(status.stdout.contains("showing:  the tasks of \(currentUserName) only"), "\(status.stdout)")
            // Where the database is, and as whom, is not a producer's to know.
            #expect(
                status.stdout.contains("database: PostgreSQL (through the gate)")
                    && !status.stdout.contains("postgres://"))
            // The operator's pending request is for sales-bot's task: not this producer's.
            #expect(try await asProducer(["approvals"]).stdout == "no approval requests are waiting\n")
            let decide = try await asProducer(["approve", "1"])
            #expect(decide.status == 77, "\(decide.stderr)")
            // A batch counts against the hourly limit as a whole: three more are over it, none go in.
            let batch = try await asProducer(
                ["enqueue", "--batch", "-"], stdin: String(repeating: #"{"type":"report"}"# + "\n", count: 3))
            #expect(batch.status == 75 && batch.stderr.contains("try again in"), "\(batch.stderr)")
            let counted = try await cluster.run(["tasks", "list", "--json"])
            guard case .array(let all) = try JSONValue.parse(counted.stdout) else { throw CLIFailureInTest("no list") }
            #expect(all.count == 2)
            #expect(
                gate.log.contains { $0.contains("gate: \(currentUserName) (uid") && $0.contains("enqueue: exit 0") })
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    private struct Check: Decodable {
        var check: String
        var status: String
        var message: String
        var fix: String?
    }

    @Test func doctorChecksAPostgresInstallationReadingOnly() async throws {
        try await withCluster(
            taskTypes: #""noop": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}"#, hosts: []
        ) { cluster in
            chmod(cluster.sandbox.configPath, 0o640)
            func doctor(_ environment: [String: String]? = nil) async throws -> (Int32, [Check], String) {
                let result = try await cluster.sandbox.run(
                    ["doctor", "--json"], environment: environment ?? cluster.environment)
                return (
                    result.status, try JSONDecoder().decode([Check].self, from: Data(result.stdout.utf8)), result.stderr
                )
            }
            func migrationsTable() async throws -> Bool {
                try await cluster.database.connection { connection, logger in
                    for try await exists in try await connection.query(
                        "SELECT to_regclass('autonomy_migrations') IS NOT NULL", logger: logger
                    ).decode(Bool.self) { return exists }
                    return false
                }
            }
            // A database no autonomy has migrated: pending, said so, and left as it was.
            let (_, fresh, _) = try await doctor()
            let pending = try #require(fresh.first { $0.check == "database" })
            #expect(pending.status == "warn" && pending.message.contains("migration(s) pending"), "\(pending)")
            #expect(try await migrationsTable() == false)
            #expect(try await cluster.run(["enqueue", "noop"]).status == 0)
            #expect(try await cluster.run(["work-once"]).status == 0)
            let (status, checks, _) = try await doctor()
            #expect(status == 0, "\(checks.filter { $0.status == "fail" })")
            for name in ["database", "ledger", "worker", "tasks", "signers"] {
                #expect(
                    checks.first { $0.check == name }?.status == "ok", "\(name): \(checks.filter { $0.check == name })")
            }
            #expect(checks.first { $0.check == "database" }?.message.contains("schema current") == true)
            let worker = checks.first { $0.check == "worker" }?.message ?? ""
            #expect(worker.contains("the last claim by this host (producer)"), "\(worker)")
            #expect(!checks.contains { $0.check == "state-folder" })  // no file, no folder
            // A row edited by someone who could turn off the append-only trigger is found, as on SQLite.
            try await cluster.database.connection { connection, logger in
                try await connection.query("ALTER TABLE ledger DISABLE TRIGGER USER", logger: logger)
                try await connection.query("UPDATE ledger SET detail = '{}' WHERE id = 2", logger: logger)
            }
            let (broken, brokenChecks, _) = try await doctor()
            let ledger = try #require(brokenChecks.first { $0.check == "ledger" })
            #expect(broken == 1 && ledger.status == "fail" && ledger.message.contains("breaks at row 2"), "\(ledger)")
            // A wrong password: the server's words, never the password.
            var wrong = cluster.environment
            wrong["PGPASSWORD"] = "wrong-\(UUID().uuidString)"
            let (denied, deniedChecks, stderr) = try await doctor(wrong)
            let database = try #require(deniedChecks.first { $0.check == "database" })
            #expect(denied == 1 && database.status == "fail")
            #expect(database.message.contains("password authentication failed"), "\(database)")
            #expect(!database.message.contains(wrong["PGPASSWORD"]!) && !stderr.contains(wrong["PGPASSWORD"]!))
            #expect(!deniedChecks.contains { $0.check == "ledger" })
        }
    }

    @Test func serveOnPostgresTakesARemoteTaskAndItsAlertsLinkApprovesIt() async throws {
        try await withCluster(taskTypes: "", hosts: []) { cluster in
            let sandbox = cluster.sandbox
            let port = try freePort()
            let script = try sandbox.alertLogger()
            _ = try sandbox.addServerKey()
            try #"""
            {"version": 1, "worker": {"host": "vps", "lease": "60s"},
             "notify": {"command": ["\#(script)"]},
             "approvals": {"allowed_signers": "allowed_signers", "base_url": "http://127.0.0.1:\#(port)"},
             "serve": {"signing_key": "server_ed25519"},
             "producers": {"users": {"remote-bot": {"types": ["send_email"]}}},
             "task_types": {
               "send_email": {"safety": "dangerous",
                              "handler": {"exec": {"argv": ["/bin/sh", "-c", "cat > sent.json"]}},
                              "verify": [{"command": {"argv": ["/bin/true"]}}]}}}
            """#.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let made = try await cluster.run(["producer", "token", "remote-bot"])
            #expect(made.status == 0, "\(made.stderr)")
            let token = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let login = try await cluster.run(["serve", "login", "--operator", "elad"])
            #expect(login.status == 0, "\(login.stderr)")
            let loginToken = try #require(
                login.stdout.split(separator: "#t=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })

            let server = try RunningServer(sandbox, listen: "127.0.0.1:\(port)", environment: cluster.environment)
            defer { _ = server.stop() }
            let created = try await server.send(
                "POST", "/api/v1/tasks", token: token, body: #"{"type": "send_email", "payload": {"to": "a@b.c"}}"#)
            #expect(created.status == 201 && created.json[path: "state"] == "awaiting_approval", "\(created)")
            #expect(created.json[path: "source"] == "remote-bot")
            // The server sends the approval alert at once, with a one-click link to itself.
            #expect(
                try await eventually { try sandbox.loggedAlerts().contains { $0[path: "event"] == "approval_needed" } })
            let alert = try #require(try sandbox.loggedAlerts().first { $0[path: "event"] == "approval_needed" })
            let link = try #require(alert[path: "approval.links.review"]?.stringValue)
            let parts = link.split(separator: "#", maxSplits: 1)
            let page = String(parts[0])
            let linkToken = try #require(parts.last.map { String($0.dropFirst("t=".count)) })
            #expect(page == "http://127.0.0.1:\(port)/r/1", "\(link)")

            func post(_ url: String, _ fields: String, cookie: String? = nil) async throws -> HTTPClientResponse {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                request.headers.add(name: "Origin", value: "http://127.0.0.1:\(port)")
                if let cookie { request.headers.add(name: "Cookie", value: cookie) }
                request.body = .bytes(ByteBuffer(string: fields))
                return try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            }
            // A guessed token is refused by a look-up, before any transaction.
            let guessed = try await post(page, "t=\(String(repeating: "A", count: 43))&action=show")
            #expect(guessed.status == .notFound, "\(guessed.status)")
            let shown = try await post(page, "t=\(linkToken)&action=show")
            #expect(shown.status == .ok)
            let csrf = try #require(
                shown.headers.first(name: "Set-Cookie")?.split(separator: ";").first?.split(separator: "=").last.map(
                    String.init))
            let sha = try #require(
                hiddenField("sha256", in: String(buffer: try await shown.body.collect(upTo: 1 << 20))))
            let approved = try await post(
                page, "t=\(linkToken)&action=approve&csrf=\(csrf)&sha256=\(sha)", cookie: "autonomy_csrf=\(csrf)")
            #expect(approved.status == .ok)
            let replayed = try await post(
                page, "t=\(linkToken)&action=approve&csrf=\(csrf)&sha256=\(sha)", cookie: "autonomy_csrf=\(csrf)")
            #expect(replayed.status == .conflict)

            // Any host's worker checks the server's signature in its claim and runs that payload.
            let work = try await cluster.run(["work-once", "--drain"])
            #expect(work.status == 0, "\(work.stderr)")
            let shownTask = try await server.send("GET", "/api/v1/tasks/1", token: token)
            #expect(shownTask.json[path: "state"] == "done", "\(shownTask)")
            #expect(try String(contentsOfFile: sandbox.file("sent.json"), encoding: .utf8) == #"{"to":"a@b.c"}"#)
            let ledger = try JSONValue.parse(try await cluster.run(["ledger", "list", "--task", "1", "--json"]).stdout)
            guard case .array(let rows) = ledger else { throw CLIFailureInTest("no ledger: \(ledger)") }
            #expect(
                rows.contains {
                    $0[path: "event"] == "claimed" && $0[path: "detail.approved_by"] == "autonomy-web"
                })
            #expect(
                rows.contains {
                    $0[path: "event"] == "approval_decided"
                        && $0[path: "detail.note"] == "one-click link from the command alert"
                })

            // An operator's session opens the dashboard's pages, read from PostgreSQL.
            let opened = try await post("http://127.0.0.1:\(port)/login", "t=\(loginToken)")
            #expect(opened.status == .ok)
            let cookie = try #require(
                opened.headers.first(name: "Set-Cookie")?.split(separator: ";").first.map(String.init))
            for path in ["/", "/tasks", "/tasks/1", "/map", "/budget", "/ledger", "/sources", "/subjects", "/audits"] {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
                request.headers.add(name: "Cookie", value: cookie)
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = String(buffer: try await response.body.collect(upTo: 1 << 22))
                #expect(response.status == .ok, "\(path): \(response.status)")
                if path == "/tasks/1" { #expect(body.contains("send_email"), "\(body.prefix(400))") }
            }
            let sessions = try JSONValue.parse(try await cluster.run(["serve", "sessions", "--json"]).stdout)
            #expect(sessions[path: "0.operator"] == "elad" && sessions[path: "0.opened_at"] != .null)
            // Revoked, the token opens nothing, at once.
            #expect(try await cluster.run(["producer", "revoke", "1"]).status == 0)
            #expect(try await server.send("GET", "/api/v1/tasks/1", token: token).status == 401)
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
            // The server's one connection ended (PostgreSQL restarted): serve stops, for systemd to
            // start it again, instead of answering every request with an error.
            try await cluster.database.connection { connection, logger in
                try await connection.query(
                    """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                    """, logger: logger)
            }
            #expect(try await eventually { !server.process.isRunning })
            server.process.waitUntilExit()
            #expect(server.process.terminationStatus == 69)
        }
    }

    @Test func theAuditReadsEveryHostsRowsAndSavesItsRunOnPostgres() async throws {
        try await withCluster(
            taskTypes: #"""
                "flaky": {"safety": "safe", "retry": {"max_attempts": 1},
                          "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo \"upstream 5$AUTONOMY_TASK_ID refused\" >&2; exit 3"]}}},
                "report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}
                """#, hosts: ["vps", "gpu"],
            extra: #" "notify": {"command": ["/bin/sh", "-c", "echo \"$AUTONOMY_NOTIFY_EVENT\" >> alerts.log"]},"#
        ) { cluster in
            for _ in 0..<2 { #expect(try await cluster.run(["enqueue", "flaky"]).status == 0) }
            #expect(try await cluster.run(["enqueue", "report"]).status == 0)
            #expect(try await cluster.run(["work-once"], host: "vps").status == 0)
            #expect(try await cluster.run(["work-once", "--drain"], host: "gpu").status == 0)
            let audited = try await cluster.run(["audit", "--json", "--notify"])
            #expect(audited.status == 0, "\(audited.stderr)")
            let report = try JSONValue.parse(audited.stdout)
            guard case .array(let findings) = report[path: "findings"] else {
                throw CLIFailureInTest("no findings: \(audited.stdout)")
            }
            // Both hosts' failures, under one signature (the numbers that vary replaced).
            let dead = try #require(findings.first { $0[path: "kind"] == "dead_tasks" })
            #expect(dead[path: "subject"] == "flaky" && dead[path: "evidence.dead"] == .int(2), "\(dead)")
            let signature = try #require(findings.first { $0[path: "kind"] == "failure_signature" })
            #expect(signature[path: "evidence.count"] == .int(2), "\(signature)")
            // flaky was never done, but the queue is younger than the window: not called unused.
            #expect(!findings.contains { $0[path: "kind"] == "shelfware" }, "\(report)")
            #expect(report[path: "run_id"] == .int(1))
            #expect(try proposed(report, "retry_dead")?.status == "proposed", "\(report)")
            // Each proposal asks the operator (approval_needed) in the audit's transaction.
            #expect(
                cluster.lines("alerts.log").filter { $0 != "approval_needed" } == [
                    "task_dead", "task_dead", "audit_report",
                ])
            // Saved: the next run is the second, and a high finding fails --fail-on high.
            let again = try await cluster.run(["audit", "--fail-on", "high", "--no-proposals"])
            #expect(again.status == 1, "\(again.stderr)")
            let runs = try await cluster.database.connection { connection, logger in
                var count = 0
                for try await n in try await connection.query(
                    "SELECT count(*)::bigint FROM audit_runs", logger: logger
                ).decode(Int.self) { count = n }
                return count
            }
            #expect(runs == 2)
            // The custodian reads every host's ledger too: a type the new map drops is still there.
            let trimmed = cluster.sandbox.file("trimmed.json")
            try PostgresEndToEndTests.Cluster.config(
                #""report": {"safety": "safe", "owner": "ops", "handler": {"exec": {"argv": ["/bin/true"]}}}"#,
                host: "vps"
            ).write(toFile: trimmed, atomically: true, encoding: .utf8)
            let checked = try await cluster.sandbox.run(
                ["map", "check", "--json", "--config", trimmed], environment: cluster.environment)
            #expect(checked.status == 0, "\(checked.stderr)")
            guard case .array(let gaps) = try JSONValue.parse(checked.stdout) else {
                throw CLIFailureInTest("no findings: \(checked.stdout)")
            }
            #expect(
                gaps.contains { $0[path: "kind"] == "undeclared_type" && $0[path: "subject"] == "flaky" }, "\(gaps)")
            // In a deploy script without the password: the map alone, said so.
            var unknown = cluster.environment
            unknown["PGPASSWORD"] = ""
            let alone = try await cluster.sandbox.run(["map", "check", "--config", trimmed], environment: unknown)
            #expect(alone.status == 0 && alone.stderr.contains("the map is checked alone"), "\(alone.stderr)")
        }
    }

    @Test func hostsThatRunAnotherMapAreToldAndDoctorFails() async throws {
        let report = #""report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}"#
        try await withCluster(taskTypes: report, hosts: ["vps", "gpu"]) { cluster in
            chmod(cluster.sandbox.configPath, 0o640)
            // The same map apart from each host's own keys (worker here): nothing to say.
            let vps = try await cluster.run(["work-once"], host: "vps")
            let gpu = try await cluster.run(["work-once"], host: "gpu")
            #expect(
                vps.status == 0 && gpu.status == 0 && !vps.stderr.contains("another map")
                    && !gpu.stderr.contains("another map"))
            // gpu's file lets report run longer: the same queue, another rule.
            try PostgresEndToEndTests.Cluster.config(
                #""report": {"safety": "safe", "timeout": "2h", "handler": {"exec": {"argv": ["/bin/true"]}}}"#,
                host: "gpu"
            ).write(toFile: cluster.sandbox.file("gpu.json"), atomically: true, encoding: .utf8)
            let changed = try await cluster.run(["work-once"], host: "gpu")
            #expect(
                changed.status == 0 && changed.stderr.contains("warning: vps runs another map"), "\(changed.stderr)")
            let told = try await cluster.run(["work-once"], host: "vps")
            #expect(told.stderr.contains("warning: gpu runs another map"), "\(told.stderr)")
            let doctor = try await cluster.run(["doctor", "--json"], host: "vps")
            let checks = try JSONDecoder().decode([Check].self, from: Data(doctor.stdout.utf8))
            let hosts = try #require(checks.first { $0.check == "hosts" })
            #expect(
                doctor.status == 1 && hosts.status == "fail" && hosts.message.hasPrefix("gpu runs another map"),
                "\(hosts)")
            // An allowed_signers that differs is another map too; the same file again is agreement.
            try PostgresEndToEndTests.Cluster.config(report, host: "gpu").write(
                toFile: cluster.sandbox.file("gpu.json"), atomically: true, encoding: .utf8)
            #expect(!(try await cluster.run(["work-once"], host: "gpu")).stderr.contains("another map"))
            let signers = cluster.sandbox.file("allowed_signers")
            let before = try String(contentsOfFile: signers, encoding: .utf8)
            try (before + "intruder \(OpenSSHEd25519Key(comment: "x").publicKey.openSSH)\n").write(
                toFile: signers, atomically: true, encoding: .utf8)
            #expect(try await cluster.run(["work-once"], host: "gpu").stderr.contains("warning: vps runs another map"))
        }
    }

    @Test func aHandlerWhoseLeaseRenewalFailsIsStoppedAndRecordsNothing() async throws {
        let slow = #"""
            "slow": {"safety": "safe", "timeout": "5m",
                     "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo $$ > handler.pid; sleep 30; echo finished > finished.log"]}}}
            """#
        try await withCluster(taskTypes: slow, hosts: ["vps"]) { cluster in
            // A 3 s lease, renewed every second; stopping takes at most a second.
            let config = try String(contentsOfFile: cluster.sandbox.file("vps.json"), encoding: .utf8)
                .replacingOccurrences(of: #""lease": "60s""#, with: #""lease": "3s", "kill_grace": "1s""#)
            try config.write(toFile: cluster.sandbox.file("vps.json"), atomically: true, encoding: .utf8)
            #expect(try await cluster.run(["enqueue", "slow"]).status == 0)
            let running = Task { try await cluster.run(["work-once"], host: "vps") }
            let pidFile = cluster.sandbox.file("handler.pid")
            #expect(
                try await eventually {
                    FileManager.default.fileExists(atPath: pidFile) && !cluster.lines("handler.pid").isEmpty
                })
            let pid = try #require(cluster.lines("handler.pid").first.flatMap { Int32($0) })
            // Another host took the task over (its lease token is no longer this worker's): the
            // next renewal fails, and the handler is stopped before it could finish.
            try await cluster.database.connection { connection, logger in
                try await connection.query(
                    "UPDATE tasks SET lease_token = 'taken-over', host = 'gpu' WHERE id = 1", logger: logger)
            }
            let result = try await running.value
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("lease lost; another worker owns it"), "\(result.stdout)")
            #expect(result.stderr.contains("lease lost; stopping"), "\(result.stderr)")
            #expect(kill(pid, 0) == -1 && errno == ESRCH)  // the handler is gone, not orphaned
            #expect(!FileManager.default.fileExists(atPath: cluster.sandbox.file("finished.log")))
            // This worker recorded that it lost the lease, and no outcome: the task is still the
            // other host's, running (newest row first).
            let ledger = try JSONValue.parse(try await cluster.run(["ledger", "list", "--task", "1", "--json"]).stdout)
            guard case .array(let rows) = ledger else { throw CLIFailureInTest("no ledger") }
            #expect(rows.map { $0[path: "event"]?.stringValue ?? "" } == ["lease_lost", "claimed", "enqueued"])
            #expect(rows.first?[path: "detail.state_now"] == "running" && rows.first?[path: "detail.host"] == "vps")
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    /// The task and status of the proposal with this action in an audit's JSON report.
    func proposed(_ report: JSONValue, _ action: String) throws -> (task: Int64, status: String)? {
        guard case .array(let items)? = report[path: "proposals"],
            let item = items.first(where: { $0[path: "action"] == .string(action) }),
            case .int(let task)? = item[path: "task"], let status = item[path: "status"]?.stringValue
        else { return nil }
        return (task, status)
    }

    @Test func anApprovedFixProposalRunsOnAnyHostAndItsOverrideHoldsOnEveryHost() async throws {
        try await withCluster(
            taskTypes: #"""
                "flaky": {"owner": "ops", "safety": "safe", "retry": {"max_attempts": 1},
                          "handler": {"exec": {"argv": ["/bin/sh", "-c", "test -e fixed"]}}},
                "broken": {"owner": "ops", "safety": "safe", "handler": {"exec": {"argv": ["./missing"]}}}
                """#, hosts: ["vps", "gpu"], extra: #" "audit": {"cooldown": "1h"},"#
        ) { cluster in
            let sql = cluster.count
            func approve(_ task: Int64) async throws {
                let listed = try JSONValue.parse(try await cluster.run(["approvals", "--json"]).stdout)
                guard case .array(let items) = listed,
                    case .int(let id)? = items.first(where: { $0[path: "task_id"] == .int(task) })?[path: "id"]
                else { throw CLIFailureInTest("no pending approval for task \(task): \(listed)") }
                let approved = try await cluster.run(["approve", "\(id)", "--note", "proposal"])
                #expect(approved.status == 0, "\(approved.stderr)")
            }
            #expect(try await cluster.run(["enqueue", "flaky", "--payload", #"{"n":1}"#]).status == 0)
            #expect(try await cluster.run(["work-once", "--drain"], host: "vps").status == 0)
            let audited = try await cluster.run(["audit", "--json"])
            #expect(audited.status == 0, "\(audited.stderr)")
            let report = try JSONValue.parse(audited.stdout)
            let retry = try #require(try proposed(report, "retry_dead"), "\(report)")
            let pause = try #require(try proposed(report, "pause_type"), "\(report)")
            #expect(retry.status == "proposed" && pause.status == "proposed")
            // Audited again: the same proposals are still open, none is added.
            let second = try JSONValue.parse(try await cluster.run(["audit", "--json"]).stdout)
            #expect(try proposed(second, "retry_dead")! == (retry.task, "still_open"))
            let proposals = try await sql("SELECT count(*)::bigint FROM tasks WHERE type = 'apply_remediation'")
            #expect(proposals == (try await sql("SELECT count(*)::bigint FROM proposals")))
            // Nothing runs before the operator signs: the worker leaves them waiting.
            _ = try await cluster.run(["work-once", "--drain"], host: "gpu")
            #expect(try await sql("SELECT count(*)::bigint FROM heal_actions") == 0)

            // Approved, on another host: retry_dead sends the dead task back and it succeeds now;
            // pause_type pauses the broken type for every host.
            FileManager.default.createFile(atPath: cluster.sandbox.file("fixed"), contents: nil)
            try await approve(retry.task)
            try await approve(pause.task)
            let applied = try await cluster.run(["work-once", "--drain"], host: "gpu")
            #expect(applied.status == 0, "\(applied.stderr)")
            let done = try await sql(
                "SELECT count(*)::bigint FROM tasks WHERE id IN (1, \(retry.task), \(pause.task)) AND state = 'done'")
            #expect(done == 3, "\(applied.stdout)")
            #expect(
                try await sql(
                    """
                    SELECT count(*)::bigint FROM ledger WHERE task_id = 1 AND event = 'retried'
                      AND detail::jsonb ->> 'by' = 'proposal task \(retry.task)'
                    """) == 1)
            // Each checked by the built-in verifier, recorded as applied by a human's approval.
            let shown = try await cluster.run(["tasks", "show", "\(retry.task)"]).stdout
            #expect(
                try await sql(
                    """
                    SELECT count(*)::bigint FROM ledger WHERE event = 'verified' AND detail::jsonb ->> 'verifier' = 'finding'
                      AND detail::jsonb ->> 'outcome' = 'pass' AND task_id IN (\(retry.task), \(pause.task))
                    """) == 2, "\(shown)")
            #expect(try await sql("SELECT count(*)::bigint FROM heal_actions WHERE automatic = 0") == 2)
            let overrides = try await cluster.run(["overrides"], host: "vps")
            #expect(overrides.stdout.hasPrefix("override 1: pause broken since "), "\(overrides.stdout)")
            // Paused on every host: its task waits, and the audit reports the pause.
            #expect(try await cluster.run(["enqueue", "broken"]).status == 0)
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            #expect(try await sql("SELECT count(*)::bigint FROM tasks WHERE type = 'broken' AND state = 'queued'") == 1)
            // Waiting on purpose: doctor does not count it as work the worker left behind.
            let doctor = try await cluster.run(["doctor", "--json"], host: "vps")
            let checks = try JSONDecoder().decode([Check].self, from: Data(doctor.stdout.utf8))
            let worker = try #require(checks.first { $0.check == "worker" })
            #expect(worker.message.hasPrefix("nothing runnable is waiting"), "\(worker)")
            let status = try JSONValue.parse(try await cluster.run(["status", "--json"]).stdout)
            #expect("\(status)".contains("pause"), "\(status)")
            let paused = try JSONValue.parse(try await cluster.run(["audit", "--json", "--no-proposals"]).stdout)
            #expect("\(paused[path: "findings"] ?? .null)".contains("paused_type"), "\(paused)")
            // Ended by hand, with who and why in the ledger; once only.
            let removed = try await cluster.run(["overrides", "remove", "1", "--reason", "fixed by hand"], host: "gpu")
            #expect(removed.status == 0 && removed.stdout.hasPrefix("removed override 1 (pause broken)"))
            #expect(
                try await sql(
                    "SELECT count(*)::bigint FROM ledger WHERE event = 'override_removed' AND detail::jsonb ->> 'by' = 'tester'"
                ) == 1)
            let again = try await cluster.run(["overrides", "remove", "1"])
            #expect(again.status == 1 && again.stderr.contains("no longer in effect"), "\(again.stderr)")
            #expect(try await cluster.run(["overrides", "remove", "9"]).status == 66)
            let noBreaker = try await cluster.run(["heal", "reset", "flaky"])
            #expect(noBreaker.status == 66 && noBreaker.stderr.contains("no heal breaker is open for flaky"))
            // A proposal is the audit's alone, here too.
            // A bad line in a batch is named as the file numbers it, blank lines counted.
            let batch = try await cluster.run(
                ["enqueue", "--batch", "-"], stdin: #"{"type":"flaky"}"# + "\n\n" + #"{"type":"nope"}"# + "\n")
            #expect(batch.status == 65 && batch.stderr.hasPrefix("error: line 3: "), "\(batch.stderr)")
            let forged = try await cluster.run([
                "enqueue", "apply_remediation", "--payload",
                #"{"action":"retry_dead","parameters":{"type":"flaky"},"finding":{"kind":"dead_tasks"}}"#,
            ])
            #expect(forged.status == 65 && forged.stderr.contains("only `autonomy audit` makes"))
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    @Test func aFixHealTrustsRunsOnItsOwnOnPostgresWithinItsGuardrails() async throws {
        try await withCluster(
            taskTypes: #"""
                "flaky": {"owner": "ops", "safety": "safe", "retry": {"max_attempts": 1},
                          "handler": {"exec": {"argv": ["/bin/sh", "-c", "test -e fixed"]}}},
                "other": {"owner": "ops", "safety": "safe", "retry": {"max_attempts": 1},
                          "handler": {"exec": {"argv": ["/bin/sh", "-c", "test -e fixed"]}}}
                """#, hosts: ["vps"],
            extra: #"""
                 "heal": {"enabled": true, "max_actions": {"per_hour": 1, "per_day": 5},
                          "auto_apply": [{"finding": "dead_tasks", "action": "retry_dead", "types": ["flaky", "other"]}]},
                """#
        ) { cluster in
            let sql = cluster.count
            #expect(try await cluster.run(["enqueue", "flaky"]).status == 0)
            #expect(try await cluster.run(["enqueue", "other"]).status == 0)
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            FileManager.default.createFile(atPath: cluster.sandbox.file("fixed"), contents: nil)
            let report = try JSONValue.parse(try await cluster.run(["audit", "--json"]).stdout)
            guard case .array(let items)? = report[path: "proposals"] else {
                throw CLIFailureInTest("no proposals: \(report)")
            }
            let retries = items.filter { $0[path: "action"] == "retry_dead" }
            #expect(retries.count == 2, "\(report)")
            // Trusted: no approval asked. The first runs on its own; the hourly limit holds the second.
            #expect(try JSONValue.parse(try await cluster.run(["approvals", "--json"]).stdout) == .array([]))
            let work = try await cluster.run(["work-once", "--drain"], host: "vps")
            #expect(work.status == 0, "\(work.stderr)")
            #expect(try await sql("SELECT count(*)::bigint FROM heal_actions WHERE automatic = 1") == 1)
            #expect(
                try await sql(
                    """
                    SELECT count(*)::bigint FROM ledger WHERE event = 'heal_applied'
                      AND detail::jsonb ->> 'allowed_by' LIKE 'heal.auto_apply[0]%'
                    """) == 1)
            #expect(
                try await sql(
                    """
                    SELECT count(*)::bigint FROM ledger WHERE event = 'heal_skipped'
                      AND detail::jsonb ->> 'why' = 'rate_limit'
                    """) == 1, "\(work.stdout)")
            #expect(
                try await sql(
                    "SELECT count(*)::bigint FROM tasks WHERE type = 'apply_remediation' AND state = 'queued' AND run_at > created_at"
                ) == 1)
            // Only one of the two dead tasks was sent back, and it ran.
            #expect(
                try await sql("SELECT count(*)::bigint FROM tasks WHERE type <> 'apply_remediation' AND state = 'done'")
                    == 1)
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    @Test func healAppliesJudgesAndTripsItsBreakerOnPostgres() async throws {
        try await withCluster(
            taskTypes: #"""
                "doomed": {"owner": "ops", "safety": "safe", "retry": {"max_attempts": 1},
                           "handler": {"exec": {"argv": ["/bin/sh", "-c", "echo 'upstream refused' >&2; exit 3"]}}}
                """#, hosts: ["vps", "gpu"],
            extra: #"""
                 "audit": {"cooldown": "0s"},
                 "notify": {"command": ["/bin/sh", "-c", "echo \"$AUTONOMY_NOTIFY_EVENT\" >> alerts.log"]},
                 "heal": {"enabled": true, "window": "1d", "settle": "5m", "breaker": {"failures": 1, "cooldown": "1h"},
                          "auto_apply": [{"finding": "dead_tasks", "action": "retry_dead", "types": ["doomed"]}]},
                """#
        ) { cluster in
            let sql = cluster.count
            func heal(_ arguments: [String] = [], host: String) async throws -> JSONValue {
                let result = try await cluster.run(["heal", "--json"] + arguments, host: host)
                guard result.status == 0 else { throw CLIFailureInTest("heal: \(result.stderr)") }
                return try JSONValue.parse(result.stdout)
            }
            func decision(_ report: JSONValue) -> JSONValue? {
                guard case .array(let items)? = report[path: "decisions"] else { return nil }
                return items.first { $0[path: "action"] == "retry_dead" }
            }
            #expect(try await cluster.run(["enqueue", "doomed"]).status == 0)
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            // A dry run says what it would do and writes nothing.
            let rows = try await sql("SELECT count(*)::bigint FROM ledger")
            let dry = try await heal(["--dry-run"], host: "gpu")
            #expect(decision(dry)?[path: "status"] == "would_apply", "\(dry)")
            #expect(try await sql("SELECT count(*)::bigint FROM ledger") == rows)
            #expect(try await sql("SELECT count(*)::bigint FROM tasks") == 1)

            // Applied on its own by one host's cycle: the dead task goes back to the queue.
            let first = try await heal(host: "gpu")
            #expect(decision(first)?[path: "status"] == "applied", "\(first)")
            #expect(first[path: "attempts.0.state"] == "done", "\(first)")
            #expect(try await sql("SELECT count(*)::bigint FROM tasks WHERE id = 1 AND state = 'queued'") == 1)
            #expect(try await sql("SELECT count(*)::bigint FROM ledger WHERE event = 'heal_applied'") == 1)
            // Another host's cycle does not apply it again while it has not settled.
            let second = try await heal(host: "vps")
            #expect(decision(second)?[path: "status"] == "already_applied", "\(second)")
            // It dies again; once the fix has settled (its rows aged past heal.settle), the next
            // cycle judges that it did not fix, trips the breaker and calls the owner.
            _ = try await cluster.run(["work-once", "--drain"], host: "vps")
            _ = try await sql(
                "UPDATE tasks SET finished_at = finished_at - 600000 WHERE type = 'apply_remediation' RETURNING 0")
            let judged = try await heal(host: "vps")
            #expect(judged[path: "judged.0.outcome"] == "did_not_fix", "\(judged)")
            #expect(judged[path: "breakers_opened.0.target"] == "doomed", "\(judged)")
            #expect(decision(judged)?[path: "status"] == "skipped", "\(judged)")
            #expect(cluster.lines("alerts.log").contains("heal_breaker_opened"), "\(cluster.lines("alerts.log"))")
            #expect(cluster.lines("alerts.log").contains("owner_needed"))
            let status = try await cluster.run(["status"], host: "gpu")
            #expect(status.stdout.contains("breaker 1 open for doomed"), "\(status.stdout)")
            let map = try JSONValue.parse(try await cluster.run(["map", "--json"]).stdout)
            #expect(map[path: "heal.breakers.0.target"] == "doomed", "\(map[path: "heal"] ?? .null)")
            let metrics = try await cluster.run(["metrics"])
            #expect(metrics.stdout.contains(#"autonomy_heal_breaker_open{target="doomed"} 1"#), "\(metrics.stdout)")
            // The operator closes it, by name, in the ledger.
            let reset = try await cluster.run(["heal", "reset", "doomed"], host: "gpu")
            #expect(reset.status == 0 && reset.stdout.contains("closed breaker 1 for doomed"), "\(reset.stderr)")
            #expect(
                try await sql(
                    "SELECT count(*)::bigint FROM ledger WHERE event = 'heal_breaker_closed' AND detail::jsonb ->> 'by' = 'tester'"
                ) == 1)
            #expect(try await cluster.run(["ledger", "verify"]).status == 0)
        }
    }

    @Test func aPasswordInTheURLOrAWrongOneIsRefusedWithoutShowingIt() async throws {
        try await withCluster(
            taskTypes: #""noop": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}"#, hosts: []
        ) { cluster in
            var withPassword = cluster.environment
            withPassword["AUTONOMY_DATABASE"] = "postgres://someone:hunter2@127.0.0.1/x"
            let refused = try await cluster.sandbox.run(["status"], environment: withPassword)
            #expect(refused.status == 78)
            #expect(refused.stderr.contains("carries a password") && !refused.stderr.contains("hunter2"))
            var wrong = cluster.environment
            wrong["PGPASSWORD"] = "wrong-\(UUID().uuidString)"
            let denied = try await cluster.sandbox.run(["enqueue", "noop"], environment: wrong)
            #expect(denied.status == 74)
            #expect(denied.stderr.contains("password authentication failed"))
            #expect(!denied.stderr.contains(wrong["PGPASSWORD"]!))
        }
    }
}

/// Network namespaces as hosts: each its own network stack, linked to this one by a veth pair,
/// reaching the test cluster at the address `scripts/postgres-test-cluster` gives it for them.
/// Nil where this machine does not let the tests make them (not root, no iproute2, or a cluster
/// that listens on loopback only); the tests then run the hosts as processes on loopback.
final class NetworkHosts: Sendable {
    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    let ip: String
    let address: String
    let namespaces: [String]

    init?(count: Int) {
        guard getuid() == 0, let ip = Self.ip,
            let address = ProcessInfo.processInfo.environment["AUTONOMY_TEST_POSTGRES_NETNS_ADDRESS"]
        else { return nil }
        (self.ip, self.address) = (ip, address)
        let tag = String(UInt32.random(in: 0x1000...0xffff), radix: 16)
        let base = Int.random(in: 0...200)
        var made: [String] = []
        for index in 0..<count {
            let namespace = "autonomy-\(tag)-\(index)"
            let (outer, inner) = ("au\(tag)\(index)a", "au\(tag)\(index)b")
            let subnet = "10.213.\(base + index)"
            let steps: [[String]] = [
                ["netns", "add", namespace],
                ["link", "add", outer, "type", "veth", "peer", "name", inner],
                ["link", "set", inner, "netns", namespace],
                ["addr", "add", "\(subnet).1/30", "dev", outer],
                ["link", "set", outer, "up"],
                ["netns", "exec", namespace, ip, "addr", "add", "\(subnet).2/30", "dev", inner],
                ["netns", "exec", namespace, ip, "link", "set", inner, "up"],
                ["netns", "exec", namespace, ip, "link", "set", "lo", "up"],
                ["netns", "exec", namespace, ip, "route", "add", "\(address)/32", "via", "\(subnet).1"],
            ]
            made.append(namespace)
            guard steps.allSatisfy({ Self.run(ip, $0) }) else {
                _ = Self.run(ip, ["link", "del", outer])  // if it never reached the namespace
                Self.remove(made, ip: ip)
                return nil
            }
        }
        // The server must answer from there (a firewall may drop it): else, loopback.
        let port = PostgresTestDatabase.adminURL?.port ?? 5432
        guard
            made.allSatisfy({
                Self.run(
                    ip, ["netns", "exec", $0, "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/\(address)/\(port)"])
            })
        else {
            Self.remove(made, ip: ip)
            return nil
        }
        namespaces = made
    }

    deinit { Self.remove(namespaces, ip: ip) }

    /// Deleting a namespace deletes the veth pair with it.
    private static func remove(_ namespaces: [String], ip: String) {
        for namespace in namespaces { _ = run(ip, ["netns", "del", namespace]) }
    }

    private static func run(_ ip: String, _ arguments: [String]) -> Bool {
        Tool.run(ip, arguments, timeout: .seconds(60)).passed
    }
}
