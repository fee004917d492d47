/// A decoded JSON value (JWT headers and claim sets, JWKS documents, request bodies).
/// Objects keep their members in document order; `JSONReader` refuses duplicate member names,
/// so `object` lookups are unambiguous (RFC 7515 §5.2, RFC 8259 §4 "names SHOULD be unique").
public enum JSONValue: Sendable, Equatable {
    case string(String)
    /// The number as written (JSON does not bound precision); `number` gives it as a Double.
    case numberText(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object(JSONObject)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var number: Double? { if case .numberText(let t) = self { Double(t) } else { nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { o } else { nil } }

    /// Parses a JSON object strictly (no duplicate names); nil for anything else.
    public static func object(from bytes: [UInt8]) -> JSONObject? {
        guard case .object(let o)? = try? JSONReader.parse(bytes) else { return nil }
        return o
    }
}

/// A JSON object's members in document order, names unique. Lookups are linear: the objects
/// this gateway reads (JOSE headers, claim sets, JWKs) have a handful of members.
public struct JSONObject: Sendable, Equatable {
    public let members: [(name: String, value: JSONValue)]
    public init(_ members: [(name: String, value: JSONValue)]) { self.members = members }

    public subscript(_ name: String) -> JSONValue? {
        for m in members where m.name == name { return m.value }
        return nil
    }

    public var keys: [String] { members.map(\.name) }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.members.count == b.members.count && zip(a.members, b.members).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}
