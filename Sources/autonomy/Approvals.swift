import ArgumentParser
import AutonomyCore
import Foundation

struct Approvals: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List the approval requests waiting for a decision.",
        discussion: "Requests whose time ran out are marked expired first. Example: autonomy approvals")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print as JSON.")
    var json = false

    func run() async throws {
        let (_, store) = try global.open(create: false)
        let now = try currentClock().now()
        let pending = try store.pendingApprovals(now: now)
        if json { return printJSON(.array(pending.map { $0.jsonValue(now: now) })) }
        guard !pending.isEmpty else { return print("no approval requests are waiting") }
        print(
            table(
                ["ID", "TASK", "TYPE", "SOURCE", "SUBJECT", "AGE", "EXPIRES", "PAYLOAD"],
                pending.map { item in
                    [
                        String(item.approval.id), String(item.task.id), item.task.type, item.task.source ?? "-",
                        String((item.task.subject ?? "-").prefix(40)),
                        Interval(milliseconds: now - item.approval.requestedAt).description,
                        relative(item.approval.expiresAt, now: now), String(item.task.payloadSummary.prefix(60)),
                    ]
                }))
        print("\nwhy: " + pending.map { "\($0.approval.id): \($0.approval.reason)" }.joined(separator: "\n     "))
        print("decide: autonomy approve ID [--note TEXT] | autonomy reject ID --reason TEXT")
    }
}

struct Approve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a pending request: its task (exactly its current payload) may run.",
        discussion: "Example: autonomy approve 7 --note 'checked the recipient'")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The approval request's id (see 'autonomy approvals').")
    var id: Int64
    @Option(help: "Who decides (default: $AUTONOMY_OPERATOR, else the login user).")
    var by: String?
    @Option(help: "Why, for the ledger.")
    var note: String?

    func run() async throws {
        let (_, store) = try global.open(create: false)
        let approval = try store.decide(
            approvalID: id, .approve(note: note), by: try operatorName(by), channel: .cli, now: try currentClock().now()
        )
        print("approval \(approval.id) approved: task \(approval.taskID) is queued to run")
    }
}

struct Reject: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Reject a pending request: its task ends as rejected and never runs.",
        discussion: "Example: autonomy reject 7 --reason 'wrong customer'")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The approval request's id (see 'autonomy approvals').")
    var id: Int64
    @Option(help: "Why (required; it goes to the ledger).")
    var reason: String
    @Option(help: "Who decides (default: $AUTONOMY_OPERATOR, else the login user).")
    var by: String?

    func run() async throws {
        let (_, store) = try global.open(create: false)
        let approval = try store.decide(
            approvalID: id, .reject(reason: reason), by: try operatorName(by), channel: .cli,
            now: try currentClock().now())
        print("approval \(approval.id) rejected: task \(approval.taskID) will not run")
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
            discussion: """
                Exits 0 and prints "safe" or "dangerous" with the reasons; 65 when the type is not \
                declared or the payload is not JSON.
                Example: autonomy firewall check send_email --payload '{"to":"ops@example.com"}'
                """)

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
                return printJSON(
                    .object([
                        "type": .string(type), "safety": .string(rating.safety.rawValue),
                        "needs_approval": .bool(rating.safety == .dangerous),
                        "reasons": .array(rating.reasons.map { .string($0) }),
                        "payload_sha256": .string(value.canonicalText.sha256Hex),
                    ]))
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
            let (loaded, store) = try global.open()
            let configuration = loaded.configuration
            guard !configuration.notify.channels.isEmpty else {
                throw CLIFailure(
                    "no alert channel is configured: add notify.command or notify.webhook", code: .configError)
            }
            let clock = try currentClock()
            try store.queueTestNotification(notify: configuration.notify, now: clock.now())
            let reports = try await AlertDelivery(store: store, configuration: configuration, clock: clock).deliverDue()
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
