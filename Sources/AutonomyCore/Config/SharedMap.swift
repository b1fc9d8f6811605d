import Foundation

extension LoadedConfiguration {
    /// The keys of the configuration that are each host's own: who it is and what it claims, where
    /// its database and password are, its server and its alert channels.
    static let hostKeys = ["worker", "database", "store", "serve", "notify"]

    /// What every host of one PostgreSQL queue must share, as one hash: the configuration file
    /// without `hostKeys` (canonical JSON: the task types and their rules, approvals, the budget,
    /// producers, the audit's and heal's settings), then the contents of `allowed_signers`. Two
    /// hosts with different fingerprints apply different rules to the same queue.
    public var sharedMapFingerprint: String {
        var shared = "{}"
        if let path, let data = FileManager.default.contents(atPath: path),
            case .object(var fields)? = try? JSONValue.parse(String(decoding: data, as: UTF8.self))
        {
            for key in Self.hostKeys { fields[key] = nil }
            shared = JSONValue.object(fields).canonicalText
        }
        let signers =
            configuration.approvals.allowedSigners.flatMap { FileManager.default.contents(atPath: $0) }.map {
                String(decoding: $0, as: UTF8.self)
            } ?? ""
        return (shared + "\n" + signers).sha256Hex
    }
}
