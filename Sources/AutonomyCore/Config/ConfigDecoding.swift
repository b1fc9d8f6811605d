import Foundation

// Decoding is hand-written per section, beside each section's type, so that every key has a
// default, unknown keys are reported with their full path, and every error names the key path the
// operator has to fix. What the sections share is here.

extension KeyedDecodingContainer {
    /// The object under `key` whose members are named by the operator (task types, variables), or
    /// nil when the key is absent or null.
    func decodeNamedIfPresent<Value: Decodable>(_ type: Value.Type, forKey key: Key) throws -> [String: Value]? {
        guard let decoder = try superDecoder(forKey: key) as? ConfigValueDecoder else {
            return try decodeIfPresent([String: Value].self, forKey: key)
        }
        return try decoder.namedValues(type)
    }

    /// A duration under `key` (or `value` when absent) that must lie in `lower...upper`.
    func interval(_ key: Key, default value: Interval, from lower: Interval, to upper: Interval) throws -> Interval {
        try decode(key, default: value, in: lower...upper, expected: "expected from \"\(lower)\" to \"\(upper)\"")
    }
}

/// A required key is absent: the message says what to write there.
func missingKey(_ key: any CodingKey, at path: [any CodingKey], _ message: String) -> DecodingError {
    .keyNotFound(key, .init(codingPath: path, debugDescription: message))
}

/// An absolute http(s) address with a host.
func isHTTPAddress(_ text: String) -> Bool {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else { return false }
    return (scheme == "http" || scheme == "https") && !(url.host ?? "").isEmpty
}

// MARK: - Unknown keys and key paths

/// A coding key for names not known in advance (task type names, unknown keys).
struct ConfigKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        self.stringValue = "\(intValue)"
        self.intValue = intValue
    }
    init(index: Int) {
        stringValue = "\(index)"
        intValue = index
    }
}

/// Collects warnings while a configuration is decoded; reached through the decoder's user info.
final class ConfigWarnings: @unchecked Sendable {
    static let userInfoKey = CodingUserInfoKey(rawValue: "autonomy.configWarnings")!
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}

extension Decoder {
    /// Refuses a name that cannot be an environment variable's: empty, or holding `=`. The error's
    /// path ends with the name itself (`keyed`, for an object's keys) or its index in the list.
    func checkVariableNames(_ names: [String], under key: any CodingKey, keyed: Bool = false) throws {
        for (index, name) in names.enumerated() where name.isEmpty || name.contains("=") {
            let last: any CodingKey = keyed ? ConfigKey(name) : ConfigKey(index: index)
            throw DecodingError.dataCorrupted(
                .init(codingPath: codingPath + [key, last], debugDescription: "not a valid environment variable name"))
        }
    }

    /// Records a warning for each key of this object that `known` does not list.
    func reportUnknownKeys<Keys: CodingKey & CaseIterable>(_ known: Keys.Type) throws {
        // Only `ConfigLoader` asks for warnings, and it decodes with `ConfigValueDecoder`, whose keys
        // come without the runtime cast that `allKeys` costs.
        guard let warnings = userInfo[ConfigWarnings.userInfoKey] as? ConfigWarnings,
            let keys = (self as? ConfigValueDecoder)?.objectKeys
        else { return }
        let names = Set(Keys.allCases.map(\.stringValue))
        for key in keys where !names.contains(key) {
            let path = ConfigError.keyPath(codingPath + [ConfigKey(key)])
            warnings.add("\(path): unknown key, ignored (check its spelling)")
        }
    }
}

extension KeyedDecodingContainer {
    /// The value under `key`, or `value` when the key is absent, which must lie in `range`; else
    /// an error at the key's path that says what is `expected` there.
    func decode<Value: Decodable & Comparable>(
        _ key: Key, default value: Value, in range: ClosedRange<Value>, expected: String
    ) throws -> Value {
        let decoded = try decodeIfPresent(Value.self, forKey: key) ?? value
        guard range.contains(decoded) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: expected)
        }
        return decoded
    }
}
