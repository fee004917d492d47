import FoundationEssentials

/// A decoded JSON value (JWT headers, claim sets, JWKS documents). Decoded with
/// FoundationEssentials' JSONDecoder: no ICU, no full Foundation.
public enum JSONValue: Decodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Parses a JSON object; nil for invalid JSON or a non-object.
    public static func object(from bytes: [UInt8]) -> [String: JSONValue]? {
        guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)), case .object(let o) = v else { return nil }
        return o
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var number: Double? { if case .number(let n) = self { n } else { nil } }
}
