import Foundation

/// Where alerts go: a command, a webhook, or both. Neither configured means no alerts.
public struct NotifySettings: Sendable {
    /// A program (argv, no shell) that gets the message as JSON on stdin and a one-line text in
    /// `AUTONOMY_NOTIFY_TEXT`; exit 0 means delivered.
    public var command: [String]?
    public var commandTimeout: Interval = .seconds(30)
    /// Variables the command gets from the worker's environment beyond the minimal set.
    public var passEnv: [String] = []
    /// More approval alerts than this due at once on a channel become one "requests waiting" alert.
    public var groupAfter = 10
    public var webhook: WebhookSettings?
    /// The first wait before a failed delivery is tried again; it doubles up to an hour.
    public var retryBackoff: Interval = .minutes(1)
    public init() {}

    /// The channels configured, in delivery order.
    public var channels: [NotifyChannel] {
        (command != nil ? [.command] : []) + (webhook != nil ? [.webhook] : [])
    }
}

public enum NotifyChannel: String, Sendable, CaseIterable {
    case command, webhook
}

/// A webhook: the message is POSTed as JSON.
public struct WebhookSettings: Sendable {
    public var url: String
    /// The name of the environment variable that holds the HMAC-SHA256 signing secret; when set,
    /// each request carries `X-Autonomy-Signature: sha256=HEX` over its body.
    public var secretEnv: String?
    public var timeout: Interval = .seconds(10)
    public init(url: String) { self.url = url }
}

extension NotifySettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case command
        case commandTimeout = "command_timeout"
        case passEnv = "pass_env"
        case groupAfter = "group_after"
        case webhook
        case retryBackoff = "retry_backoff"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        if let command = try container.decodeIfPresent([String].self, forKey: .command) {
            guard let program = command.first, !program.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .command, in: container, debugDescription: "expected a non-empty array")
            }
            self.command = command
        }
        commandTimeout = try container.interval(
            .commandTimeout, default: commandTimeout, from: .seconds(1), to: .minutes(10))
        passEnv = try container.decodeIfPresent([String].self, forKey: .passEnv) ?? []
        groupAfter = try container.decode(
            .groupAfter, default: groupAfter, in: 1...100_000, expected: "expected 1 to 100000")
        try decoder.checkVariableNames(passEnv, under: CodingKeys.passEnv)
        webhook = try container.decodeIfPresent(WebhookSettings.self, forKey: .webhook)
        retryBackoff = try container.decode(
            .retryBackoff, default: retryBackoff, in: .seconds(1)...Interval.days(3660),
            expected: "expected at least \"1s\"")
    }
}

extension WebhookSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case url
        case secretEnv = "secret_env"
        case timeout
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let url = try container.decode(String.self, forKey: .url)
        guard isHTTPAddress(url) else {
            throw DecodingError.dataCorruptedError(
                forKey: .url, in: container, debugDescription: "expected an http(s) address")
        }
        self.init(url: url)
        secretEnv = try container.decodeIfPresent(String.self, forKey: .secretEnv)
        if let secretEnv, secretEnv.isEmpty || secretEnv.contains("=") {
            throw DecodingError.dataCorruptedError(
                forKey: .secretEnv, in: container, debugDescription: "expected the name of an environment variable")
        }
        timeout = try container.interval(.timeout, default: timeout, from: .seconds(1), to: .minutes(10))
    }
}
