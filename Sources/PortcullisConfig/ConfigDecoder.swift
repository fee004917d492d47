import PortcullisCore

/// Walks a `YAMLNode` with a key path, so every error names file:line:column and the key.
/// Unknown keys are errors (a typo must not silently fall back to a default).
struct MappingReader {
    let file: String
    let path: String
    let mark: SourceMark
    let items: [(key: String, keyMark: SourceMark, value: YAMLNode)]
    private(set) var used: Set<String> = []

    init(_ node: YAMLNode, file: String, path: String) throws(ConfigError) {
        guard case .mapping(let items, let m) = node else {
            throw ConfigError(file: file, mark: node.mark, key: path, message: "expected a mapping, found \(node.kindName)")
        }
        self.file = file; self.path = path; self.mark = m; self.items = items
    }

    func keyPath(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }

    mutating func node(_ k: String) -> YAMLNode? {
        used.insert(k)
        return items.first(where: { $0.key == k })?.value
    }

    func error(_ k: String, _ node: YAMLNode, _ msg: String) -> ConfigError {
        ConfigError(file: file, mark: node.mark, key: keyPath(k), message: msg)
    }

    func missing(_ k: String) -> ConfigError {
        ConfigError(file: file, mark: mark, key: keyPath(k), message: "required key is missing")
    }

    mutating func string(_ k: String) throws(ConfigError) -> String? {
        guard let n = node(k) else { return nil }
        guard case .scalar(let s, _, _) = n else { throw error(k, n, "expected a string, found \(n.kindName)") }
        return s
    }

    mutating func requiredString(_ k: String) throws(ConfigError) -> String {
        guard let s = try string(k) else { throw missing(k) }
        guard !s.isEmpty, let n = node(k) else { throw missing(k) }
        _ = n
        return s
    }

    mutating func int(_ k: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let n = node(k) else { return nil }
        guard case .scalar(let s, _, let plain) = n, plain, let v = Int(s) else {
            throw error(k, n, "expected an integer, found \(describe(n))")
        }
        guard range.contains(v) else {
            throw error(k, n, "must be between \(range.lowerBound) and \(range.upperBound), found \(v)")
        }
        return v
    }

    mutating func bool(_ k: String) throws(ConfigError) -> Bool? {
        guard let n = node(k) else { return nil }
        if case .scalar(let s, _, true) = n {
            switch s {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        throw error(k, n, "expected true or false, found \(describe(n))")
    }

    mutating func duration(_ k: String) throws(ConfigError) -> Duration64? {
        guard let n = node(k) else { return nil }
        guard case .scalar(let s, _, _) = n, let d = Duration64.parse(s) else {
            throw error(k, n, "expected a duration such as 500ms, 5s, 2m or 1h, found \(describe(n))")
        }
        guard d.nanoseconds > 0 else { throw error(k, n, "must be greater than zero") }
        return d
    }

    mutating func stringList(_ k: String) throws(ConfigError) -> [(String, YAMLNode)]? {
        guard let n = node(k) else { return nil }
        switch n {
        case .scalar(let s, _, _): return [(s, n)]
        case .sequence(let items, _):
            var out: [(String, YAMLNode)] = []
            for item in items {
                guard case .scalar(let s, _, _) = item else {
                    throw error(k, item, "expected a list of strings, found \(item.kindName) in it")
                }
                out.append((s, item))
            }
            return out
        default:
            throw error(k, n, "expected a list of strings, found \(n.kindName)")
        }
    }

    /// Fails on the first key that no reader asked for.
    func rejectUnknownKeys(allowed: [String]) throws(ConfigError) {
        for item in items where !allowed.contains(item.key) {
            throw ConfigError(file: file, mark: item.keyMark, key: keyPath(item.key),
                              message: "unknown key (allowed here: \(allowed.joined(separator: ", ")))")
        }
    }

    func describe(_ n: YAMLNode) -> String {
        if case .scalar(let s, _, _) = n { return "'\(s)'" }
        return n.kindName
    }
}
