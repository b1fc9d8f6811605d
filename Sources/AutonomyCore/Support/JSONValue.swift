import Foundation

/// A JSON document held as a value: payloads, handler results and ledger details.
///
/// Numbers keep their integer form when they have one, so a payload's canonical text does not
/// change an integer into a float.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue {
    /// Parses JSON text; throws `JSONTextError` with a readable reason when it is not JSON.
    public static func parse(_ text: String) throws(JSONTextError) -> JSONValue {
        try parse(Data(text.utf8))
    }

    /// Parses JSON bytes; throws `JSONTextError` with a readable reason when they are not JSON.
    public static func parse(_ data: Data) throws(JSONTextError) -> JSONValue {
        do {
            return try JSONCoding.decoder.decode(JSONValue.self, from: data)
        } catch {
            throw JSONTextError(reason: reasonNotJSON(data))
        }
    }

    /// JSONDecoder says only "not valid JSON"; JSONSerialization says where.
    private static func reasonNotJSON(_ data: Data) -> String {
        if data.isEmpty { return "it is empty" }
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            if let reason = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String { return reason }
        }
        return "it does not parse as JSON"
    }

    /// The canonical text: keys sorted, no insignificant white space. Equal documents give equal text.
    public var canonicalText: String {
        // Encoding a JSONValue cannot fail: every case maps to a JSON value.
        let data = (try? JSONCoding.canonicalEncoder.encode(self)) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The value at a dotted path of object keys (`"to"`, `"meta.channel"`), or nil.
    public subscript(path path: String) -> JSONValue? {
        var current: JSONValue? = self
        for key in path.split(separator: ".") {
            guard case .object(let object)? = current else { return nil }
            current = object[String(key)]
        }
        return current
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }
}

/// Why a text is not JSON.
public struct JSONTextError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// Shared coders: creating a JSONEncoder or JSONDecoder per call is measurable on the hot path.
enum JSONCoding {
    static let decoder = JSONDecoder()
    static let canonicalEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
    static let prettyEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return encoder
    }()
}

extension JSONValue {
    /// Indented text with sorted keys, for people reading `--json` output.
    public var prettyText: String {
        let data = (try? JSONCoding.prettyEncoder.encode(self)) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
