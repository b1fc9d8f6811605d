import Foundation

extension LoadedConfiguration {
    /// The keys of the configuration that are each host's own: who it is and what it claims, where
    /// its database and password are, and its web server. Alert channels are shared: any host
    /// with a channel of a kind may send any alert of that kind, one-click links included.
    static let hostKeys = ["worker", "database", "store", "serve"]

    /// What every host of one PostgreSQL queue must share, as one hash: the configuration file
    /// without `hostKeys` (canonical JSON: the task types and their rules, approvals, the budget,
    /// producers, the audit's and heal's settings), then the contents of `allowed_signers`. Two
    /// hosts with different fingerprints apply different rules to the same queue.
    public var sharedMapFingerprint: String {
        var shared = "{}"
        if let path, let bytes = FileManager.default.contents(atPath: path) {
            // Read as `ConfigLoader` reads it: a byte-order mark is no part of the map.
            let data = (try? ConfigLoader.utf8Text(bytes, file: path)) ?? bytes
            let text = String(decoding: data, as: UTF8.self)
            if case .object(var fields)? = try? JSONValue.parse(text) {
                for key in Self.hostKeys { fields[key] = nil }
                shared = JSONValue.object(fields).canonicalText
            } else {
                shared = text  // not canonical JSON (a key given twice): compared as it is
            }
        }
        let signers =
            configuration.approvals.allowedSigners.flatMap { FileManager.default.contents(atPath: $0) }.map {
                String(decoding: $0, as: UTF8.self)
            } ?? ""
        return (shared + "\n" + signers).sha256Hex
    }
}
