import CYAML

/// A position in a config file (1-based, as editors show it).
public struct SourceMark: Sendable, Equatable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
}

/// The YAML document as a tree with positions, produced by libyaml's event parser. Only the
/// config loader sees it; the daemon only ever sees the typed, validated structs.
public indirect enum YAMLNode: Sendable {
    case scalar(String, SourceMark, plain: Bool)
    case mapping([(key: String, keyMark: SourceMark, value: YAMLNode)], SourceMark)
    case sequence([YAMLNode], SourceMark)

    public var mark: SourceMark {
        switch self {
        case .scalar(_, let m, _), .mapping(_, let m), .sequence(_, let m): m
        }
    }

    var kindName: String {
        switch self {
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}

/// A config problem, always with the file, line, column and (where known) the key path.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var mark: SourceMark
    public var key: String
    public var message: String

    public init(file: String, mark: SourceMark, key: String, message: String) {
        self.file = file; self.mark = mark; self.key = key; self.message = message
    }

    public var description: String {
        key.isEmpty ? "\(file):\(mark.line):\(mark.column): \(message)"
                    : "\(file):\(mark.line):\(mark.column): \(key): \(message)"
    }
}

/// Reads YAML text into a `YAMLNode` with libyaml. Anchors and aliases are resolved; tags are
/// ignored; a stream with more than one document is an error.
public enum YAMLReader {
    public static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError(file: file, mark: .init(line: 1, column: 1), key: "", message: "cannot initialise the YAML parser")
        }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { (buf) throws(ConfigError) -> YAMLNode in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            var builder = Builder(file: file)
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let m = SourceMark(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
                    let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
                    let context = parser.context.map { " " + String(cString: $0) } ?? ""
                    throw ConfigError(file: file, mark: m, key: "", message: "YAML syntax error: \(problem)\(context)")
                }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { break }
                try builder.handle(&event)
            }
            guard let root = builder.root else {
                return .mapping([], SourceMark(line: 1, column: 1))
            }
            return root
        }
    }

    private enum Frame {
        case mapping([(key: String, keyMark: SourceMark, value: YAMLNode)], SourceMark, pendingKey: (String, SourceMark)?, anchor: String?)
        case sequence([YAMLNode], SourceMark, anchor: String?)
    }

    private struct Builder {
        let file: String
        var stack: [Frame] = []
        var anchors: [String: YAMLNode] = [:]
        var root: YAMLNode?
        var documents = 0

        init(file: String) { self.file = file }

        static func mark(_ m: yaml_mark_t) -> SourceMark { .init(line: Int(m.line) + 1, column: Int(m.column) + 1) }

        mutating func handle(_ e: inout yaml_event_t) throws(ConfigError) {
            let m = Builder.mark(e.start_mark)
            switch e.type {
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 { throw ConfigError(file: file, mark: m, key: "", message: "only one YAML document is allowed") }
            case YAML_SCALAR_EVENT:
                let s = e.data.scalar
                let value = String(decoding: UnsafeBufferPointer(start: s.value, count: Int(s.length)), as: UTF8.self)
                let node = YAMLNode.scalar(value, m, plain: s.style == YAML_PLAIN_SCALAR_STYLE)
                if let a = s.anchor { anchors[String(cString: a)] = node }
                try add(node, m)
            case YAML_ALIAS_EVENT:
                let name = e.data.alias.anchor.map { String(cString: $0) } ?? ""
                guard let node = anchors[name] else {
                    throw ConfigError(file: file, mark: m, key: "", message: "unknown alias *\(name)")
                }
                try add(node, m)
            case YAML_MAPPING_START_EVENT:
                stack.append(.mapping([], m, pendingKey: nil, anchor: e.data.mapping_start.anchor.map { String(cString: $0) }))
            case YAML_SEQUENCE_START_EVENT:
                stack.append(.sequence([], m, anchor: e.data.sequence_start.anchor.map { String(cString: $0) }))
            case YAML_MAPPING_END_EVENT, YAML_SEQUENCE_END_EVENT:
                guard let top = stack.popLast() else { return }
                let node: YAMLNode
                let anchor: String?
                switch top {
                case .mapping(let items, let mm, _, let a): node = .mapping(items, mm); anchor = a
                case .sequence(let items, let mm, let a): node = .sequence(items, mm); anchor = a
                }
                if let a = anchor { anchors[a] = node }
                try add(node, node.mark)
            default:
                break
            }
        }

        mutating func add(_ node: YAMLNode, _ m: SourceMark) throws(ConfigError) {
            guard let top = stack.popLast() else { root = node; return }
            switch top {
            case .sequence(var items, let mm, let a):
                items.append(node)
                stack.append(.sequence(items, mm, anchor: a))
            case .mapping(var items, let mm, let pending, let a):
                if let (k, km) = pending {
                    if items.contains(where: { $0.key == k }) {
                        throw ConfigError(file: file, mark: km, key: k, message: "duplicate key")
                    }
                    items.append((key: k, keyMark: km, value: node))
                    stack.append(.mapping(items, mm, pendingKey: nil, anchor: a))
                } else {
                    guard case .scalar(let k, let km, _) = node else {
                        throw ConfigError(file: file, mark: m, key: "", message: "mapping keys must be plain scalars")
                    }
                    stack.append(.mapping(items, mm, pendingKey: (k, km), anchor: a))
                }
            }
        }
    }
}
