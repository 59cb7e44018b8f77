internal import CYAMLTree

/// A node of the config file's YAML, read by libyaml (Sources/CYAMLTree) and copied into Swift
/// values: a scalar, a sequence or a mapping, with the 1-based line it starts on (for errors).
struct YAMLNode: Sendable {
    enum Content: Sendable {
        /// `plain`: written without quotes, so `~`, `null` and nothing at all mean null.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    var content: Content
    var line: Int

    /// The text of a scalar (any scalar: `2`, `true` and `"2"` are all text here).
    var string: String? {
        if case .scalar(let text, _) = content { return text }
        return nil
    }

    var sequence: [YAMLNode]? {
        if case .sequence(let items) = content { return items }
        return nil
    }

    var mapping: [(key: YAMLNode, value: YAMLNode)]? {
        if case .mapping(let pairs) = content { return pairs }
        return nil
    }

    /// YAML's null: an unquoted `~`, `null` (any case YAML allows) or nothing (`replicas:`).
    var isNull: Bool {
        guard case .scalar(let text, plain: true) = content else { return false }
        return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL"
    }

    /// Nested collections deeper than this are refused (an alias can make a document recursive).
    static let maxDepth = 64

    /// Parses one YAML document; nil when the text holds none (empty, or only comments).
    static func parse(_ bytes: [UInt8]) throws(ConfigError) -> YAMLNode? {
        let result = bytes.withUnsafeBufferPointer { ra_yaml_load($0.baseAddress, $0.count) }
        guard let document = result.document else {
            let problem = result.problem.map { String(cString: $0) } ?? "cannot be parsed"
            throw ConfigError(key: nil, line: Int(result.line), "not valid YAML: \(problem)")
        }
        defer { ra_yaml_free(document) }
        let root = ra_yaml_root(document)
        guard root != 0 else { return nil }
        return try node(root, in: document, depth: 0)
    }

    private static func node(_ id: Int32, in document: OpaquePointer, depth: Int) throws(ConfigError) -> YAMLNode {
        let line = Int(ra_yaml_line(document, id))
        guard depth < maxDepth else { throw ConfigError(key: nil, line: line, "not valid YAML: nested too deeply") }
        switch ra_yaml_kind_of(document, id) {
        case RA_YAML_SCALAR:
            let text = ra_yaml_scalar(document, id)
            let string = String(decoding: UnsafeBufferPointer(start: text.bytes, count: text.length), as: UTF8.self)
            return YAMLNode(content: .scalar(string, plain: text.plain != 0), line: line)
        case RA_YAML_SEQUENCE:
            var items: [YAMLNode] = []
            for index in 0..<ra_yaml_count(document, id) {
                items.append(try node(ra_yaml_item(document, id, index), in: document, depth: depth + 1))
            }
            return YAMLNode(content: .sequence(items), line: line)
        case RA_YAML_MAPPING:
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            for index in 0..<ra_yaml_count(document, id) {
                pairs.append((try node(ra_yaml_key(document, id, index), in: document, depth: depth + 1),
                              try node(ra_yaml_value(document, id, index), in: document, depth: depth + 1)))
            }
            return YAMLNode(content: .mapping(pairs), line: line)
        default:
            throw ConfigError(key: nil, line: line, "not valid YAML: an empty node")
        }
    }
}
