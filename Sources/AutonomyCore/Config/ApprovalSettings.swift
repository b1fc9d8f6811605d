import Foundation

/// How approval requests reach a human.
public struct ApprovalSettings: Sendable {
    /// The dashboard's public address; one-click links in alerts are built from it. Without it,
    /// alerts carry the `autonomy approve` / `reject` commands only.
    public var baseURL: String?
    /// The operators' keys (OpenSSH `allowed_signers`), made absolute when the file is loaded.
    /// Without it nobody can approve anything dangerous.
    public var allowedSigners: String?
    /// An approved task that has not started within this goes back to approval.
    public var runWithin: Interval = .hours(24)
    public init() {}
}

extension ApprovalSettings: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case baseURL = "base_url"
        case allowedSigners = "allowed_signers"
        case runWithin = "run_within"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        if let url = try container.decodeIfPresent(String.self, forKey: .baseURL) {
            guard isHTTPAddress(url) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .baseURL, in: container,
                    debugDescription: "expected an http(s) address such as \"https://ops.example.com/autonomy\"")
            }
            baseURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
        if let path = try container.decodeIfPresent(String.self, forKey: .allowedSigners) {
            guard !path.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .allowedSigners, in: container,
                    debugDescription: "expected the path of an OpenSSH allowed_signers file")
            }
            allowedSigners = path
        }
        runWithin = try container.interval(.runWithin, default: runWithin, from: .minutes(1), to: .days(30))
    }
}
