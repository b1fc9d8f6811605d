import Foundation

/// A configuration that cannot be used, with the key path the operator has to fix.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    /// Where, e.g. `task_types.send_email.handler.exec.argv`; empty for the file as a whole.
    public var path: String
    public var message: String
    /// The file it came from, when there is one.
    public var file: String?

    public init(path: String, message: String, file: String? = nil) {
        self.path = path
        self.message = message
        self.file = file
    }

    public var description: String {
        let location = [file, path.isEmpty ? nil : path].compactMap { $0 }.joined(separator: ": ")
        return location.isEmpty ? message : "\(location): \(message)"
    }

    /// The database's `postgres://` URL cannot be used (the message never repeats the URL).
    static func invalidDatabaseURL(_ message: String) -> ConfigError {
        ConfigError(path: "database", message: message)
    }

    /// `task_types.send_email.retry.max_attempts`, `components[2].name`.
    static func keyPath(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return text
    }

    /// Turns a decoding failure into one sentence that names the key path.
    static func from(_ error: DecodingError, file: String?) -> ConfigError {
        switch error {
        case .typeMismatch(let type, let context):
            return ConfigError(path: keyPath(context.codingPath), message: "expected \(describe(type))", file: file)
        case .valueNotFound(let type, let context):
            return ConfigError(
                path: keyPath(context.codingPath), message: "expected \(describe(type)), got null", file: file)
        case .keyNotFound(let key, let context):
            let message =
                context.debugDescription.hasPrefix("missing") ? context.debugDescription : "missing required key"
            return ConfigError(path: keyPath(context.codingPath + [key]), message: message, file: file)
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty, context.underlyingError != nil {
                return ConfigError(path: "", message: "not valid JSON (\(context.underlyingErrorReason))", file: file)
            }
            return ConfigError(
                path: keyPath(context.codingPath), message: readable(context.debugDescription), file: file)
        @unknown default:
            return ConfigError(path: "", message: "\(error)", file: file)
        }
    }

    /// Foundation's "Cannot initialize Safety from invalid String value maybe", as the values the
    /// key takes: `expected "safe" or "dangerous", got "maybe"`.
    static func readable(_ description: String) -> String {
        let prefix = "Cannot initialize "
        guard description.hasPrefix(prefix), let from = description.range(of: " from invalid String value ") else {
            return description
        }
        let type = description[description.index(description.startIndex, offsetBy: prefix.count)..<from.lowerBound]
        let value = JSONValue.string(String(description[from.upperBound...])).canonicalText
        let choices: [String]
        switch type {
        case "Safety": choices = Safety.allCases.map(\.rawValue)
        case "Synchronous": choices = ["full", "normal"]
        case "ModelTier": choices = ModelTier.allCases.map(\.rawValue)
        default: return "\(value) is not one of the values this key takes (see config.example.json)"
        }
        let quoted = choices.map { JSONValue.string($0).canonicalText }
        let list = quoted.count == 2 ? quoted.joined(separator: " or ") : quoted.joined(separator: ", ")
        return "expected \(list), got \(value)"
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is [String].Type: return "an array of strings"
        case is [Any].Type: return "an array"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            if name.contains("Safety") { return "\"safe\" or \"dangerous\"" }
            if name.contains("Synchronous") { return "\"full\" or \"normal\"" }
            return "an object"
        }
    }
}

extension DecodingError.Context {
    var underlyingErrorReason: String {
        guard let underlying = underlyingError else { return debugDescription }
        let text = "\(underlying)"
        if let range = text.range(of: "NSDebugDescription=") {
            return String(text[range.upperBound...]).trimmingCharacters(in: CharacterSet(charactersIn: "})"))
        }
        return text
    }
}
