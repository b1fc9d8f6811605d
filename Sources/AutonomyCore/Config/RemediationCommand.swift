import Foundation

/// A fix the operator declares under `remediations`: a program run like an `exec` handler (argv,
/// no shell, a timeout, the proposal as JSON on stdin), proposed for the finding kinds it names.
///
/// ```json
/// "remediations": {
///   "restart-ollama": { "exec": { "argv": ["/usr/bin/systemctl", "restart", "ollama"], "timeout": "60s" },
///                       "findings": ["tier_without_model"] }
/// }
/// ```
public struct RemediationCommand: Sendable {
    public var exec: ExecHandler
    /// The finding kinds this fix answers: only those ever propose it.
    public var findings: Set<FindingKind>
    /// Only findings about these types or channels propose it; empty: any.
    public var subjects: Set<String> = []

    public init(exec: ExecHandler, findings: Set<FindingKind>, subjects: Set<String> = []) {
        (self.exec, self.findings, self.subjects) = (exec, findings, subjects)
    }

    /// When its own `exec.timeout` says nothing.
    public static let defaultTimeout = Interval.minutes(5)
}

extension RemediationCommand: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable { case exec, findings, subjects }

    public init(from decoder: any Decoder) throws {
        try decoder.reportUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard container.contains(.exec) else {
            throw missingKey(
                CodingKeys.exec, at: decoder.codingPath,
                "missing: a remediation runs a program, e.g. {\"exec\": {\"argv\": [\"/path/to/fix\"]}}")
        }
        exec = try container.decode(ExecHandler.self, forKey: .exec)
        let names = try container.decodeIfPresent([String].self, forKey: .findings) ?? []
        var kinds: Set<FindingKind> = []
        for name in names {
            guard let kind = FindingKind(rawValue: name) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .findings, in: container,
                    debugDescription:
                        "unknown finding kind \"\(name)\" (one of: \(FindingKind.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            kinds.insert(kind)
        }
        guard !kinds.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .findings, in: container,
                debugDescription: "name the finding kinds this fix answers, e.g. [\"missing_handler\"]")
        }
        findings = kinds
        subjects = Set(try container.decodeIfPresent([String].self, forKey: .subjects) ?? [])
    }
}
