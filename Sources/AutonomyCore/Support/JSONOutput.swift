import Foundation

/// The one encoder every `--json` output goes through: keys sorted, indented, `/` unescaped.
/// Report types are `Encodable`; their keys are their `CodingKeys`, the shapes scripts rely on
/// (pinned by `JSONShapeTests`).
public enum JSONOutput {
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return encoder
    }()

    /// The value as indented JSON text.
    ///
    /// - Throws: `EncodingError` for a value JSON cannot hold (a non-finite number).
    public static func text(_ value: some Encodable) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// An optional that is written as `null` when absent, where Swift's synthesized coding would
/// leave the key out: a script reads every key of a `--json` object, present or not.
@propertyWrapper
public struct Nullable<Value: Encodable & Sendable>: Encodable, Sendable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

/// A time held as epoch milliseconds, written as ISO 8601 UTC text.
public struct ISOTime: Encodable, Sendable {
    public var milliseconds: Int64

    public init(_ milliseconds: Int64) { self.milliseconds = milliseconds }

    public init?(_ milliseconds: Int64?) {
        guard let milliseconds else { return nil }
        self.milliseconds = milliseconds
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Timestamp.format(milliseconds))
    }
}

/// A stored time, epoch milliseconds, that JSON output writes as ISO 8601 UTC text (`null` when
/// absent): records keep the number, their `--json` shows the time, and no hand-written
/// `encode(to:)` is needed for it.
@propertyWrapper
public struct EpochTime: Encodable, Sendable, Equatable {
    public var wrappedValue: Int64

    public init(wrappedValue: Int64) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws { try ISOTime(wrappedValue).encode(to: encoder) }
}

/// `EpochTime` that may be absent.
@propertyWrapper
public struct OptionalEpochTime: Encodable, Sendable, Equatable {
    public var wrappedValue: Int64?

    public init(wrappedValue: Int64?) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws {
        try Nullable(wrappedValue: ISOTime(wrappedValue)).encode(to: encoder)
    }
}

extension JSONValue {
    /// Stored JSON text as a value to show: parsed, or kept as a string when it is not JSON.
    public static func shown(_ text: String) -> JSONValue {
        (try? JSONValue.parse(text)) ?? .string(text)
    }
}

extension Nullable: Equatable where Value: Equatable {}
