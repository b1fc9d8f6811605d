import Foundation

/// `autonomy serve`: the HTTP entry gate and the one-click approval pages.
public struct ServeSettings: Sendable {
    /// The server's own OpenSSH Ed25519 private key, readable by the server's user alone: the
    /// decisions a one-click page records are signed with it, under the principal
    /// `allowed_signers` gives its public half. Without it the pages show but cannot decide.
    public var signingKey: String?
    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed (their addresses,
    /// exactly); from anyone else those headers are ignored.
    public var trustedProxies: [String] = []
    /// How long one request may take, its body included, before it is answered 408 and its
    /// connection closed: a client that trickles a body in holds nothing longer than this.
    public var requestTimeout: Interval = .seconds(30)

    public init() {}
}

extension ServeSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case signingKey = "signing_key"
        case trustedProxies = "trusted_proxies"
        case requestTimeout = "request_timeout"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        signingKey = try container.decodeIfPresent(String.self, forKey: .signingKey)
        trustedProxies = try container.decodeIfPresent([String].self, forKey: .trustedProxies) ?? []
        requestTimeout = try container.interval(
            .requestTimeout, default: requestTimeout, from: .seconds(1), to: .minutes(10))
    }
}
