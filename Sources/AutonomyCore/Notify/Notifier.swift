import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore

/// Sends one alert through one channel. Returns nil when delivered, else one line saying why not.
public protocol Notifier: Sendable {
    func send(_ message: NotificationMessage, via channel: NotifyChannel) async -> String?
}

/// The configured channels: a command (argv, no shell) and a webhook.
public struct ChannelNotifier: Notifier {
    public var settings: NotifySettings
    /// Where the webhook secret is read from (the process environment).
    public var environment: [String: String]

    public init(settings: NotifySettings, environment: [String: String] = ProcessEnvironment.variables) {
        self.settings = settings
        self.environment = environment
    }

    public func send(_ message: NotificationMessage, via channel: NotifyChannel) async -> String? {
        switch channel {
        case .command:
            guard let argv = settings.command else { return "no notify.command is configured" }
            return await runCommand(argv, message)
        case .webhook:
            guard let webhook = settings.webhook else { return "no notify.webhook is configured" }
            return await post(message, to: webhook)
        }
    }

    /// The message as JSON on stdin, the one-line text in `AUTONOMY_NOTIFY_TEXT`; exit 0 is delivered.
    private func runCommand(_ argv: [String], _ message: NotificationMessage) async -> String? {
        guard
            let path = ExecRunner.locate(
                argv[0], base: FileManager.default.currentDirectoryPath,
                searchPath: environment["PATH"])
        else {
            return "\(argv[0]): not found"
        }
        // The alert program gets what a handler would, and the variables notify.pass_env names.
        var variables = HandlerEnvironment.minimal(from: environment, withholding: [])
        for name in settings.passEnv { variables[name] = environment[name] }
        variables["AUTONOMY_NOTIFY_TEXT"] = message.text
        variables["AUTONOMY_NOTIFY_EVENT"] = message.event.rawValue
        let body: PayloadFile
        do {
            body = try PayloadFile(taskID: 0, payload: message.body.canonicalText + "\n")
        } catch {
            return "the notify command could not run: cannot write its input: \(error)"
        }
        defer { body.remove() }
        let timeout = settings.commandTimeout
        let ran = await ExecRunner.run(
            ExecRunner.Program(
                name: argv[0], path: path, arguments: Array(argv.dropFirst()), environment: variables,
                workingDirectory: nil),
            input: body, timeout: timeout, grace: .seconds(2), limits: (stdout: 0, stderr: 4096))
        let stderr =
            String(decoding: ran.captured.stderrTail, as: UTF8.self).split(whereSeparator: \.isNewline).last
            .map { ": \($0.prefix(200))" } ?? ""
        switch ran.status {
        case .exited(0): return nil
        case .exited(let code): return "the notify command exited with status \(code)\(stderr)"
        case .signaled(let signal): return "the notify command was killed by signal \(signal)"
        case .timedOut: return "the notify command did not finish within \(timeout)"
        case .couldNotStart(let reason), .workerUnfit(let reason):
            return "the notify command could not run: \(reason)"
        case .stopped, .deferred: return "the notify command was stopped"
        }
    }

    /// POSTs the message as JSON; a 2xx answer is delivered. With a secret, the body is signed.
    ///
    /// AsyncHTTPClient rather than URLSession: FoundationNetworking would load libcurl and some
    /// thirty libraries into every `autonomy` process, sending or not.
    private func post(_ message: NotificationMessage, to webhook: WebhookSettings) async -> String? {
        let body = Array(message.body.canonicalText.utf8)
        var request = HTTPClientRequest(url: webhook.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "autonomy")
        request.headers.add(name: "X-Autonomy-Event", value: message.event.rawValue)
        if let name = webhook.secretEnv {
            guard let secret = environment[name], !secret.isEmpty else {
                return
                    "the webhook secret variable \(name) is not set in this process's environment (the worker's, or serve's for the alerts it sends)"
            }
            // Signed as "TIMESTAMP.BODY" (as Stripe and Slack do): a receiver that refuses old
            // timestamps cannot be fed a captured alert again later.
            let timestamp = String(Int64(Date().timeIntervalSince1970))
            request.headers.add(name: "X-Autonomy-Timestamp", value: timestamp)
            request.headers.add(
                name: "X-Autonomy-Signature",
                value: "sha256=" + Self.signature(of: Data(body), timestamp: timestamp, secret: secret))
        }
        request.body = .bytes(body)
        // The whole exchange, body included, within the webhook's time limit.
        switch await HTTP.fetch(request, timeout: webhook.timeout, bodyLimit: 64 * 1024) {
        case .answered(let status, _) where (200..<300).contains(status):
            return nil
        case .answered(let status, _) where (300..<400).contains(status):
            return "the webhook answered HTTP \(status): redirects are not followed"
        case .answered(let status, _), .bodyBroken(let status):
            return "the webhook answered HTTP \(status)"
        case .unreachable(_, let detail):
            return "the webhook could not be reached: \(detail)"
        case .timedOut:
            return "the webhook did not answer within \(webhook.timeout)"
        }
    }

    /// HMAC-SHA256 of `TIMESTAMP.BODY` under the secret, as lowercase hex: what a receiver
    /// recomputes from the `X-Autonomy-Timestamp` header and the raw body.
    public static func signature(of body: Data, timestamp: String, secret: String) -> String {
        HMAC<SHA256>.authenticationCode(
            for: Data(utf8: timestamp + ".") + body, using: SymmetricKey(data: Data(utf8: secret))
        )
        .hexString
    }
}

/// Delivers what the outbox holds: used by `work-once`, by `enqueue` (so an operator hears at
/// once), by `notify test`, and by `serve`, which sends requests' alerts with links of its own.
public struct AlertDelivery: Sendable {
    public var store: any NotificationStore
    public var configuration: Configuration
    public var notifier: any Notifier
    public var clock: any WallClock
    /// How the one-click tokens this delivery issues are kept: `serve` keys them with its own key,
    /// so that only its links decide on their own; everyone else's are plain.
    public var seal: TokenSeal
    /// Sends only alerts about requests (`serve`'s share: the worker sends the rest).
    public var approvalsOnly: Bool

    public init(
        store: any NotificationStore, configuration: Configuration, notifier: (any Notifier)? = nil,
        clock: any WallClock = SystemClock(), seal: TokenSeal = .plain, approvalsOnly: Bool = false
    ) {
        self.store = store
        self.configuration = configuration
        self.notifier = notifier ?? ChannelNotifier(settings: configuration.notify)
        self.clock = clock
        self.seal = seal
        self.approvalsOnly = approvalsOnly
    }

    /// How long a process without the server's key leaves a new request's alert to `serve`, where
    /// the pages sign (`serve.signing_key` and `approvals.base_url` set): a link the worker made is
    /// one the worker knows, so it shows a request and decides nothing; the server's link decides.
    /// Past this, the alert goes out anyway (the server may be down), with the worker's link.
    public static let serverSendsFirst = Interval.minutes(2)

    /// What this delivery leaves to the server, in milliseconds; nil when it sends everything.
    var holdingApprovalAlerts: Int64? {
        guard !seal.isKeyed, configuration.serverSendsRequestAlerts else { return nil }
        return Self.serverSendsFirst.milliseconds
    }

    /// One delivery attempt.
    public struct Report: Sendable, Equatable {
        public var event: NotificationEvent
        public var channel: NotifyChannel
        public var error: String?

        /// The line a failed delivery prints; nil when it was delivered.
        public func warning(retried when: String) -> String? {
            error.map { "warning: alert via \(channel.rawValue) failed: \($0) (\(when))" }
        }
    }

    /// Sends due alerts, one at a time, until none is due or `budget` has passed. A failure is
    /// recorded and retried later; it never throws past here unless the database itself fails.
    /// With `tasks`, only alerts about those tasks (what an `enqueue` just queued) are sent.
    /// Sends the alerts about `tasks` now, as they are enqueued, so an operator hears at once. A
    /// failure changes nothing (work-once retries the alert): it comes back as a warning line.
    public func deliverNow(tasks: Set<Int64>, budget: Duration = .seconds(30)) async -> [String] {
        do {
            return try await deliverDue(budget: budget, tasks: tasks).compactMap {
                $0.warning(retried: "work-once retries it")
            }
        } catch {
            return ["warning: alerts not sent now: \(error) (work-once retries them)"]
        }
    }

    public func deliverDue(budget: Duration = .seconds(60), tasks: Set<Int64>? = nil) async throws -> [Report] {
        let channels = configuration.notify.channels
        guard !channels.isEmpty else { return [] }
        let deadline = ContinuousClock.now + budget
        var reports: [Report] = []
        while ContinuousClock.now < deadline,
            let pending = try await store.takeDueNotification(
                now: clock.now(), channels: channels, tasks: tasks, groupAfter: configuration.notify.groupAfter,
                holdingApprovalAlerts: holdingApprovalAlerts, approvalsOnly: approvalsOnly)
        {
            guard
                let message = try await store.message(
                    for: pending, configuration: configuration, seal: seal, now: clock.now())
            else {
                continue
            }
            let error = await notifier.send(message, via: pending.channel)
            try await store.recordDelivery(pending, error: error, notify: configuration.notify, now: clock.now())
            reports.append(Report(event: pending.event, channel: pending.channel, error: error.map(redactingTokens)))
        }
        return reports
    }
}

extension Configuration {
    /// `serve` sends the alerts about requests itself, with links under its key (the only ones that
    /// decide): it has a key to sign with (`serve.signing_key`), an address to link to
    /// (`approvals.base_url`) and a channel. Other processes then leave those alerts to it for
    /// `AlertDelivery.serverSendsFirst`.
    public var serverSendsRequestAlerts: Bool {
        serve.signingKey != nil && approvals.baseURL != nil && !notify.channels.isEmpty
    }
}
