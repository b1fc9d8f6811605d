import ArgumentParser
import AutonomyCore
import Foundation

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole loop once in a scratch folder, on built-in example handlers.",
        discussion: prose(
            """
            Writes a configuration, example handler scripts and a database into a new folder,
            enqueues example tasks (one of them dangerous), runs the worker, and prints what happened.
            Example: autonomy demo
            """))

    @Option(help: ArgumentHelp("The folder to use (default: a new folder under /tmp).", valueName: "folder"))
    var dir: String?

    func run() async throws {
        let folder = try makeFolder()
        try writeHandlers(in: folder)
        // The operator's key, and the file that lists who may sign decisions.
        let keyPath = (folder as NSString).appendingPathComponent("operator_ed25519")
        let operatorKey = OpenSSHEd25519Key(comment: "demo-operator")
        try Data(utf8: operatorKey.openSSHText).write(to: URL(fileURLWithPath: keyPath))
        chmod(keyPath, 0o600)
        try Data(
            "demo-operator namespaces=\"\(SSHSignature.decisionNamespace)\" \(operatorKey.publicKey.openSSH)\n".utf8
        ).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("allowed_signers")))
        let configPath = (folder as NSString).appendingPathComponent("autonomy.json")
        try Data(utf8: Self.configText).write(to: URL(fileURLWithPath: configPath))
        chmod(configPath, 0o600)
        let loaded = try ConfigLoader.load(explicitPath: configPath)
        let store = try AutonomyStore(path: ConfigLoader.databasePath(flag: nil, loaded: loaded, environment: [:]))
        let clock = SystemClock()
        let config = "--config \(configPath)"
        print("demo folder: \(folder)\n")

        print("1. Producers enqueue tasks:")
        let requests = [
            EnqueueRequest(
                type: "daily_report", payload: #"{"day":"2026-11-24","tickets":17}"#, source: "cron",
                subject: "yesterday's tickets"),
            EnqueueRequest(
                type: "sync_crm", payload: #"{"since":"24h"}"#, source: "sales-agent", subject: "pull new leads"),
            EnqueueRequest(
                type: "reindex", payload: #"{"index":"docs"}"#, priority: -1, source: "ops",
                subject: "rebuild the search index"),
            EnqueueRequest(
                type: "send_email", payload: #"{"to":"client@customer.org","template":"invoice"}"#,
                source: "sales-agent", subject: "invoice to a client"),
        ]
        for request in requests {
            let task = try store.enqueue(request, configuration: loaded.configuration, now: clock.now()).task
            print("   $ autonomy enqueue \(request.type) --payload '\(request.payload)' \(config)")
            print("   → task \(task.id): \(task.state.rawValue)")
        }
        do {
            _ = try store.enqueue(
                EnqueueRequest(type: "wire_money"), configuration: loaded.configuration, now: clock.now())
        } catch {
            print("   $ autonomy enqueue wire_money \(config)\n   → error: \(error)")
        }

        print("\n2. The timer runs the worker:\n   $ autonomy work-once --drain \(config)")
        var options = Worker.Options()
        options.clock = clock
        options.handlerEnvironment = ["AUTONOMY_DATABASE": store.path, "AUTONOMY_CONFIG": configPath]
        options.logger = makeLogger("autonomy.demo")
        let worker = Worker(
            store: store, loaded: try store.applyingOverrides(to: loaded, now: clock.now()), options: options)
        let report = try await worker.work(drain: Worker.Limits(maxSeconds: 30))
        for attempt in report.attempts {
            let state = attempt.outcome?.state.rawValue ?? "lease lost"
            let error = attempt.outcome?.error.map { " (\($0))" } ?? ""
            print(
                "   task \(attempt.taskID) \(attempt.type) attempt \(attempt.attempt): \(state) after \(Interval(milliseconds: attempt.handler.durationMs))\(error)"
            )
        }

        print("\n3. Where everything stands:\n   $ autonomy status \(config)")
        let status = try store.status(now: clock.now())
        for state in TaskState.allCases where status.counts[state, default: 0] > 0 {
            print("   \(state.rawValue): \(status.counts[state, default: 0])")
        }

        print("\n4. The email waits for a human. The operator looks, then signs a yes for exactly that payload:")
        print("   $ autonomy approvals \(config)")
        let waiting = try store.pendingApprovals(now: clock.now())
        for item in waiting {
            print("   request \(item.approval.id): task \(item.task.id) \(item.task.type) — \(item.approval.reason)")
            print(
                "   $ autonomy approve \(item.approval.id) --note 'checked the recipient' --key \(keyPath) \(config)")
            let verifier = DecisionVerifier(settings: loaded.configuration.approvals)
            let statement = try store.decisionStatement(
                approvalID: item.approval.id, .approve(note: "checked the recipient"),
                signerKey: operatorKey.publicKey, verifier: verifier, settings: loaded.configuration.approvals,
                now: clock.now())
            let signature = try DecisionSigner.native(operatorKey).sign(statement.text)
            let approval = try store.decide(
                SignedDecision(statement: statement.text, signature: signature), verifier: verifier, channel: .cli,
                now: clock.now())
            print(
                "   → approval \(approval.id) approved by \(approval.decidedBy ?? "?"), signed with \(approval.signerKey ?? "?")"
            )
        }
        let second = try await worker.work(drain: Worker.Limits(maxSeconds: 30))
        for attempt in second.attempts {
            print(
                "   task \(attempt.taskID) \(attempt.type) attempt \(attempt.attempt): \(attempt.outcome?.state.rawValue ?? "lease lost")"
            )
        }
        print(
            """

            Nothing dangerous ran before a human signed a yes (a database row alone never counts). The flaky sync_crm task failed once and succeeded
            on its retry; reindex ran longer than its lease, which the worker kept renewing; every move is in
            the ledger. Reports written: \((folder as NSString).appendingPathComponent("reports"))

            Look around:
              autonomy tasks list \(config)
              autonomy tasks show 4 \(config)
              autonomy firewall check send_email --payload '{"to":"ops@example.com"}' \(config)
              autonomy config check \(config)
              autonomy sources \(config)
              autonomy serve \(config) &      then open the link: autonomy serve login --operator demo-operator \(config)
            """)
    }

    private func makeFolder() throws -> String {
        if let dir {
            // The demo writes a configuration, an operator's key, allowed_signers and a database:
            // in a folder that already holds anything, it could replace a real installation's.
            let path = ConfigLoader.absolutePath(dir)
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
                guard isFolder.boolValue else {
                    throw CLIFailure("--dir \(path) is a file, not a folder; pass a new folder", code: .cannotCreate)
                }
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? ["?"]
                guard entries.isEmpty else {
                    throw CLIFailure(
                        "--dir \(path) is not empty: the demo would write its configuration, key, allowed_signers and database over what is there; pass a new or empty folder",
                        code: .cannotCreate)
                }
            }
            // mkdir -p, each missing folder 0700, with the system's reason when one cannot be made.
            var made = ""
            for part in path.split(separator: "/") {
                made += "/" + part
                if mkdir(made, 0o700) != 0, errno != EEXIST {
                    throw CLIFailure(
                        "cannot create \(made): \(String(cString: strerror(errno))); pass a folder you can write",
                        code: .cannotCreate)
                }
            }
            guard FileManager.default.isWritableFile(atPath: path) else {
                throw CLIFailure("cannot write in \(path); pass a folder you can write", code: .cannotCreate)
            }
            return path
        }
        let path = "/tmp/autonomy-demo-" + UUID().uuidString.prefix(8).lowercased()
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: false,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw CLIFailure(
                "cannot create \(path): \(error.localizedDescription); pass --dir FOLDER", code: .databaseUnusable)
        }
        return path
    }

    private func writeHandlers(in folder: String) throws {
        let handlers = (folder as NSString).appendingPathComponent("handlers")
        try FileManager.default.createDirectory(atPath: handlers, withIntermediateDirectories: true)
        for (name, text) in Self.handlerScripts {
            let path = (handlers as NSString).appendingPathComponent(name)
            try Data(utf8: text).write(to: URL(fileURLWithPath: path))
            chmod(path, 0o755)
        }
    }

    static let handlerScripts: [(String, String)] = [
        (
            "report.sh",
            """
            #!/bin/sh
            # Writes a report from the payload (on stdin) and prints where it went, as JSON.
            set -eu
            dir="$(dirname "$0")/../reports"
            mkdir -p "$dir"
            out="$dir/report-$AUTONOMY_TASK_ID.md"
            { echo "# Report (task $AUTONOMY_TASK_ID)"; cat; echo; } > "$out"
            printf '{"report":"%s","bytes":%s}\\n' "$out" "$(wc -c < "$out" | tr -d ' ')"

            """
        ),
        (
            "sync-crm.sh",
            """
            #!/bin/sh
            # Fails its first attempt, as a flaky upstream API would; succeeds on the retry.
            if [ "$AUTONOMY_ATTEMPT" -lt 2 ]; then
              echo "CRM API timed out (attempt $AUTONOMY_ATTEMPT)" >&2
              exit 1
            fi
            echo '{"synced":42}'

            """
        ),
        (
            "reindex.sh",
            """
            #!/bin/sh
            # A long job: runs longer than the worker's lease, which the worker keeps renewing.
            sleep 3
            echo '{"indexed":1200}'

            """
        ),
        (
            "send-email.sh",
            """
            #!/bin/sh
            # Would send an email; reads the payload from the file the worker names.
            echo "{\\"sent_to\\":$(cat "$AUTONOMY_PAYLOAD_FILE" | sed 's/.*"to":\\("[^"]*"\\).*/\\1/')}"

            """
        ),
    ]

    static let configText = """
        {
          "version": 1,
          "database": "autonomy.db",
          "timezone": "UTC",
          "worker": { "lease": "2s", "kill_grace": "500ms", "drain_max_seconds": 30 },
          "approvals": { "allowed_signers": "allowed_signers", "run_within": "1h" },
          "task_types": {
            "daily_report": {
              "description": "Summarise yesterday's tickets", "owner": "ops", "safety": "safe",
              "handler": { "exec": { "argv": ["./handlers/report.sh"], "timeout": "1m" } },
              "verify": [ { "file": { "path": "reports/report-{{task.id}}.md", "non_empty": true, "modified_after_start": true } },
                          { "json": { "path": "bytes", "min": 1 } } ],
              "retry": { "max_attempts": 3, "backoff": "30s", "factor": 2, "max_backoff": "1h" }
            },
            "sync_crm": {
              "description": "Pull new leads from the CRM", "owner": "sales-agent", "safety": "safe",
              "handler": { "exec": { "argv": ["./handlers/sync-crm.sh"], "timeout": "1m" } },
              "retry": { "max_attempts": 3, "backoff": "0s", "jitter": 0 }
            },
            "reindex": {
              "description": "Rebuild the search index (long-running)", "owner": "ops", "safety": "safe",
              "handler": { "exec": { "argv": ["./handlers/reindex.sh"] } }, "timeout": "30m"
            },
            "send_email": {
              "description": "Send an email to a client", "owner": "sales-agent", "safety": "dangerous",
              "handler": { "exec": { "argv": ["./handlers/send-email.sh"], "timeout": "60s" } },
              "rules": [ { "path": "to", "suffix": "@example.com", "safety": "safe" } ],
              "verify": [ { "json": { "path": "sent_to", "non_empty": true } } ]
            }
          },
          "components": [
            { "name": "sales-agent", "owner": "sales", "kind": "agent", "task_types": ["sync_crm", "send_email"] },
            { "name": "ops-scripts", "owner": "ops", "kind": "script", "task_types": ["daily_report", "reindex"] }
          ]
        }

        """
}
