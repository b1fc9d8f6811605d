import Foundation

/// Decodes the configuration from a document `JSONParser` has already read, through the same
/// hand-written `init(from:)` of each section and with the errors `JSONDecoder` gives.
///
/// It exists for start-up time. Every `autonomy` process reads the configuration first, and
/// `JSONDecoder` asks the runtime, for each type it decodes, whether that type conforms to one of
/// its marker protocols. Each first such question scans every conformance record in the
/// executable (about 12,000); with them, reading the file took 2.9 million of the 10.9 million
/// instructions of one `enqueue`, 0.9 million now. This decoder asks no such question. It also
/// gives an object's keys (`objectKeys`, `namedValues`) without the cast to `[any CodingKey]` that
/// `allKeys` makes, so the unknown-key warnings and the named entries cost no scan either.
final class ConfigValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: Any]

    init(_ value: JSONValue, codingPath: [any CodingKey] = [], userInfo: [CodingUserInfoKey: Any] = [:]) {
        self.value = value
        self.codingPath = codingPath
        self.userInfo = userInfo
    }

    /// The keys of the object being decoded, or nil when it is not an object.
    var objectKeys: Dictionary<String, JSONValue>.Keys? {
        guard case .object(let members) = value else { return nil }
        return members.keys
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = value else {
            throw ConfigValueDecoder.mismatch([String: Any].self, value, at: codingPath)
        }
        return KeyedDecodingContainer(Keyed<Key>(decoder: self, members: members))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else {
            throw ConfigValueDecoder.mismatch([Any].self, value, at: codingPath)
        }
        return Unkeyed(decoder: self, elements: elements)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(decoder: self) }

    /// The object's members by name, each decoded as `type`, in the order of their names; nil for
    /// null. `Dictionary`'s own `init(from:)` would enumerate them through `allKeys`, whose cast to
    /// `[any CodingKey]` costs a scan of the conformance records.
    func namedValues<Value: Decodable>(_ type: Value.Type) throws -> [String: Value]? {
        switch value {
        case .null:
            return nil
        case .object(let members):
            var values: [String: Value] = [:]
            values.reserveCapacity(members.count)
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                values[name] = try Value(from: child(member, at: ConfigKey(name)))
            }
            return values
        default:
            throw ConfigValueDecoder.mismatch([String: Value].self, value, at: codingPath)
        }
    }

    /// A decoder for a value inside this one, at `key`.
    fileprivate func child(_ value: JSONValue, at key: any CodingKey) -> ConfigValueDecoder {
        ConfigValueDecoder(value, codingPath: codingPath + [key], userInfo: userInfo)
    }

    // MARK: Scalars

    fileprivate static func mismatch(_ type: Any.Type, _ value: JSONValue, at path: [any CodingKey]) -> DecodingError {
        if value == .null {
            return .valueNotFound(
                type, .init(codingPath: path, debugDescription: "Expected \(type) value but found null instead."))
        }
        return .typeMismatch(
            type,
            .init(codingPath: path, debugDescription: "Expected to decode \(type) but found \(value.kind) instead."))
    }

    fileprivate static func outOfRange(_ value: JSONValue, at path: [any CodingKey]) -> DecodingError {
        .dataCorrupted(.init(codingPath: path, debugDescription: "\(value.canonicalText) is out of range for this key"))
    }

    fileprivate static func bool(_ value: JSONValue, at path: [any CodingKey]) throws -> Bool {
        guard case .bool(let bool) = value else { throw mismatch(Bool.self, value, at: path) }
        return bool
    }

    fileprivate static func string(_ value: JSONValue, at path: [any CodingKey]) throws -> String {
        guard case .string(let string) = value else { throw mismatch(String.self, value, at: path) }
        return string
    }

    /// A whole number, written as one (`5`) or as a number with no fraction (`5.0`, `5e0`), that
    /// fits `Integer`.
    fileprivate static func integer<Integer: FixedWidthInteger>(
        _ value: JSONValue, _ type: Integer.Type, at path: [any CodingKey]
    ) throws -> Integer {
        let number: Integer?
        switch value {
        case .int(let whole): number = Integer(exactly: whole)
        case .double(let real) where real == real.rounded(.towardZero): number = Integer(exactly: real)
        default: throw mismatch(type, value, at: path)
        }
        guard let number else {
            throw outOfRange(value, at: path)
        }
        return number
    }

    fileprivate static func real<Real: BinaryFloatingPoint>(
        _ value: JSONValue, _ type: Real.Type, at path: [any CodingKey]
    ) throws -> Real {
        let number: Real
        switch value {
        case .int(let whole): number = Real(whole)
        case .double(let real): number = Real(real)
        default: throw mismatch(type, value, at: path)
        }
        guard number.isFinite else {  // a Double beyond a Float's range
            throw outOfRange(value, at: path)
        }
        return number
    }
}

extension JSONValue {
    /// What a decoding error says was found instead.
    fileprivate var kind: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .int, .double: "number"
        case .string: "a string"
        case .array: "an array"
        case .object: "a dictionary"
        }
    }
}

// MARK: - Containers

extension ConfigValueDecoder {
    fileprivate struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: ConfigValueDecoder
        let members: [String: JSONValue]

        var codingPath: [any CodingKey] { decoder.codingPath }
        var allKeys: [Key] {
            // A loop, not `compactMap`: that generic would look its associated types up at run time.
            var keys: [Key] = []
            for name in members.keys {
                if let key = Key(stringValue: name) { keys.append(key) }
            }
            return keys
        }

        func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }

        private func value(_ key: Key) throws -> JSONValue {
            guard let value = members[key.stringValue] else {
                throw DecodingError.keyNotFound(
                    key,
                    .init(
                        codingPath: codingPath,
                        debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."))
            }
            return value
        }

        private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

        func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            try ConfigValueDecoder.bool(value(key), at: path(key))
        }
        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            try ConfigValueDecoder.string(value(key), at: path(key))
        }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            try ConfigValueDecoder.real(value(key), type, at: path(key))
        }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
            try ConfigValueDecoder.real(value(key), type, at: path(key))
        }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(key, type) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(key, type) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(key, type) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(key, type) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(key, type) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(key, type) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(key, type) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(key, type) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(key, type) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(key, type) }

        private func integer<Integer: FixedWidthInteger>(_ key: Key, _ type: Integer.Type) throws -> Integer {
            try ConfigValueDecoder.integer(value(key), type, at: path(key))
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try T(from: decoder.child(value(key), at: key))
        }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            try decoder.child(value(key), at: key).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try decoder.child(value(key), at: key).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder {
            decoder.child(members["super"] ?? .null, at: ConfigKey("super"))
        }

        func superDecoder(forKey key: Key) throws -> any Decoder {
            decoder.child(members[key.stringValue] ?? .null, at: key)
        }
    }

    fileprivate struct Unkeyed: UnkeyedDecodingContainer {
        let decoder: ConfigValueDecoder
        let elements: [JSONValue]
        private(set) var currentIndex = 0

        init(decoder: ConfigValueDecoder, elements: [JSONValue]) {
            self.decoder = decoder
            self.elements = elements
        }

        var codingPath: [any CodingKey] { decoder.codingPath }
        var count: Int? { elements.count }
        var isAtEnd: Bool { currentIndex >= elements.count }

        /// Reads the next element through a decoder of its own, and moves past it only when `read`
        /// succeeds.
        private mutating func next<T>(_ type: Any.Type, _ read: (ConfigValueDecoder) throws -> T) throws -> T {
            let key = ConfigKey(index: currentIndex)
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(
                    type, .init(codingPath: codingPath + [key], debugDescription: "Unkeyed container is at end."))
            }
            let result = try read(decoder.child(elements[currentIndex], at: key))
            currentIndex += 1
            return result
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, elements[currentIndex] == .null else { return false }
            currentIndex += 1
            return true
        }
        mutating func decode(_ type: Bool.Type) throws -> Bool {
            try next(type) { try ConfigValueDecoder.bool($0.value, at: $0.codingPath) }
        }
        mutating func decode(_ type: String.Type) throws -> String {
            try next(type) { try ConfigValueDecoder.string($0.value, at: $0.codingPath) }
        }
        mutating func decode(_ type: Double.Type) throws -> Double { try real(type) }
        mutating func decode(_ type: Float.Type) throws -> Float { try real(type) }
        mutating func decode(_ type: Int.Type) throws -> Int { try integer(type) }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

        private mutating func integer<Integer: FixedWidthInteger>(_ type: Integer.Type) throws -> Integer {
            try next(type) { try ConfigValueDecoder.integer($0.value, type, at: $0.codingPath) }
        }

        private mutating func real<Real: BinaryFloatingPoint>(_ type: Real.Type) throws -> Real {
            try next(type) { try ConfigValueDecoder.real($0.value, type, at: $0.codingPath) }
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try next(type) { try T(from: $0) }
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type
        ) throws -> KeyedDecodingContainer<NestedKey> {
            try next(KeyedDecodingContainer<NestedKey>.self) { try $0.container(keyedBy: type) }
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            try next((any UnkeyedDecodingContainer).self) { try $0.unkeyedContainer() }
        }

        mutating func superDecoder() throws -> any Decoder {
            try next((any Decoder).self) { $0 }
        }
    }

    fileprivate struct Single: SingleValueDecodingContainer {
        let decoder: ConfigValueDecoder

        var codingPath: [any CodingKey] { decoder.codingPath }
        private var value: JSONValue { decoder.value }

        func decodeNil() -> Bool { value == .null }
        func decode(_ type: Bool.Type) throws -> Bool { try ConfigValueDecoder.bool(value, at: codingPath) }
        func decode(_ type: String.Type) throws -> String { try ConfigValueDecoder.string(value, at: codingPath) }
        func decode(_ type: Double.Type) throws -> Double { try ConfigValueDecoder.real(value, type, at: codingPath) }
        func decode(_ type: Float.Type) throws -> Float { try ConfigValueDecoder.real(value, type, at: codingPath) }
        func decode(_ type: Int.Type) throws -> Int { try integer(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

        private func integer<Integer: FixedWidthInteger>(_ type: Integer.Type) throws -> Integer {
            try ConfigValueDecoder.integer(value, type, at: codingPath)
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: decoder) }
    }
}
