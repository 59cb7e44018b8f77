/// JSON for the admin endpoint's `Encodable` views, without Foundation: keys sorted, two-space
/// indent (what `/config` always printed). Only encoding; nothing here reads JSON.
public enum JSON {
    /// A JSON value.
    public indirect enum Value: Equatable, Sendable {
        case null
        case bool(Bool)
        case number(String)
        case string(String)
        case array([Value])
        case object([String: Value])
    }

    /// `value` as pretty-printed JSON text, with a final newline.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var text = ""
        write(try self.value(of: value), indent: "", into: &text)
        text += "\n"
        return Array(text.utf8)
    }

    /// `value` as a JSON value tree.
    public static func value<T: Encodable>(of value: T) throws -> Value {
        let box = Box()
        try value.encode(to: TreeEncoder(box: box, codingPath: []))
        return box.resolved
    }

    static func write(_ value: Value, indent: String, into text: inout String) {
        switch value {
        case .null: text += "null"
        case .bool(let flag): text += flag ? "true" : "false"
        case .number(let digits): text += digits
        case .string(let string): quote(string, into: &text)
        case .array(let items):
            guard !items.isEmpty else { text += "[]"; return }
            text += "[\n"
            for (index, item) in items.enumerated() {
                text += indent + "  "
                write(item, indent: indent + "  ", into: &text)
                text += index == items.count - 1 ? "\n" : ",\n"
            }
            text += indent + "]"
        case .object(let members):
            guard !members.isEmpty else { text += "{}"; return }
            text += "{\n"
            let keys = members.keys.sorted()
            for (index, key) in keys.enumerated() {
                text += indent + "  "
                quote(key, into: &text)
                text += " : "
                write(members[key]!, indent: indent + "  ", into: &text)
                text += index == keys.count - 1 ? "\n" : ",\n"
            }
            text += indent + "}"
        }
    }

    static func quote(_ string: String, into text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    /// Where an encoder puts what it encodes; containers fill it as they go.
    final class Box {
        enum Content { case value(Value), array([Box]), object([String: Box]) }
        var content: Content = .value(.null)

        var resolved: Value {
            switch content {
            case .value(let value): return value
            case .array(let boxes): return .array(boxes.map(\.resolved))
            case .object(let boxes): return .object(boxes.mapValues(\.resolved))
            }
        }

        func child(forKey key: String) -> Box {
            let box = Box()
            if case .object(var boxes) = content {
                boxes[key] = box
                content = .object(boxes)
            } else {
                content = .object([key: box])
            }
            return box
        }

        func appended() -> Box {
            let box = Box()
            if case .array(var boxes) = content {
                boxes.append(box)
                content = .array(boxes)
            } else {
                content = .array([box])
            }
            return box
        }

        /// Encodes one value into this box, numbers and text as themselves.
        func store<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws {
            switch value {
            case let flag as Bool: content = .value(.bool(flag))
            case let text as String: content = .value(.string(text))
            case let number as Int: content = .value(.number(String(number)))
            case let number as Double:
                content = .value(number.isFinite ? .number(number == number.rounded() && abs(number) < 1e15
                                                           ? String(Int(number)) : String(number)) : .null)
            default: try value.encode(to: TreeEncoder(box: self, codingPath: codingPath))
            }
        }
    }

    struct TreeEncoder: Encoder {
        let box: Box
        var codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if case .object = box.content {} else { box.content = .object([:]) }
            return KeyedEncodingContainer(Keyed<Key>(box: box, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            if case .array = box.content {} else { box.content = .array([]) }
            return Unkeyed(box: box, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer { Single(box: box, codingPath: codingPath) }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let box: Box
        var codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { box.child(forKey: key.stringValue).content = .value(.null) }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try box.child(forKey: key.stringValue).store(value, codingPath: codingPath + [key])
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key)
            -> KeyedEncodingContainer<NestedKey> {
            TreeEncoder(box: box.child(forKey: key.stringValue), codingPath: codingPath + [key]).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            TreeEncoder(box: box.child(forKey: key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
        }

        mutating func superEncoder() -> any Encoder { TreeEncoder(box: box.child(forKey: "super"), codingPath: codingPath) }

        mutating func superEncoder(forKey key: Key) -> any Encoder {
            TreeEncoder(box: box.child(forKey: key.stringValue), codingPath: codingPath + [key])
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let box: Box
        var codingPath: [any CodingKey]
        var count: Int {
            if case .array(let boxes) = box.content { return boxes.count }
            return 0
        }

        mutating func encodeNil() throws { box.appended().content = .value(.null) }

        mutating func encode<T: Encodable>(_ value: T) throws { try box.appended().store(value, codingPath: codingPath) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            TreeEncoder(box: box.appended(), codingPath: codingPath).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            TreeEncoder(box: box.appended(), codingPath: codingPath).unkeyedContainer()
        }

        mutating func superEncoder() -> any Encoder { TreeEncoder(box: box.appended(), codingPath: codingPath) }
    }

    struct Single: SingleValueEncodingContainer {
        let box: Box
        var codingPath: [any CodingKey]

        mutating func encodeNil() throws { box.content = .value(.null) }
        mutating func encode(_ value: Bool) throws { box.content = .value(.bool(value)) }
        mutating func encode(_ value: String) throws { box.content = .value(.string(value)) }
        mutating func encode(_ value: Double) throws { try box.store(value, codingPath: codingPath) }
        mutating func encode(_ value: Float) throws { try box.store(Double(value), codingPath: codingPath) }
        mutating func encode(_ value: Int) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: Int8) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: Int16) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: Int32) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: Int64) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: UInt) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: UInt8) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: UInt16) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: UInt32) throws { box.content = .value(.number(String(value))) }
        mutating func encode(_ value: UInt64) throws { box.content = .value(.number(String(value))) }
        mutating func encode<T: Encodable>(_ value: T) throws { try box.store(value, codingPath: codingPath) }
    }
}
