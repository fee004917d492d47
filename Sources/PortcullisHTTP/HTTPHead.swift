/// One header field; `name` is lowercased at parse time so lookups are plain comparisons.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String
    /// `name` classified (computed from the name; the parser fills it from the raw bytes).
    public var known: KnownHeader
    public init(name: String, value: String) {
        self.name = name; self.value = value; self.known = KnownHeader.classify(name)
    }
    init(name: String, value: String, known: KnownHeader) {
        self.name = name; self.value = value; self.known = known
    }
}

/// How a message body is delimited (RFC 9112 §6).
public enum BodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked
    /// Response only: the body runs until the connection closes.
    case untilClose
}

/// A parsed request head. Immutable once parsed; a class so that passing it through the
/// pipeline shares one reference instead of copying (and retaining) every field.
public final class HTTPRequestHead: @unchecked Sendable {
    public let method: String
    /// The origin-form target (path and query); absolute-form is reduced to it.
    public let target: String
    /// `target` without the query string (computed once at parse time; routing reads it).
    public let path: String
    /// 0 for HTTP/1.0; 1 for HTTP/1.1 and any HTTP/1.x with x > 1 (served as 1.1).
    public let minorVersion: Int
    public let headers: [HTTPHeader]
    public let framing: BodyFraming
    public let keepAlive: Bool
    public let expectContinue: Bool

    public init(method: String, target: String, minorVersion: Int, headers: [HTTPHeader],
                framing: BodyFraming, keepAlive: Bool, expectContinue: Bool) {
        self.method = method; self.target = target; self.minorVersion = minorVersion
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            self.path = String(target[..<q])
        } else {
            self.path = target
        }
        self.headers = headers; self.framing = framing; self.keepAlive = keepAlive
        self.expectContinue = expectContinue
    }

    /// The parser's initialiser: `path` was cut from the bytes already.
    init(method: String, target: String, path: String, minorVersion: Int, headers: [HTTPHeader],
         framing: BodyFraming, keepAlive: Bool, expectContinue: Bool) {
        self.method = method; self.target = target; self.path = path; self.minorVersion = minorVersion
        self.headers = headers; self.framing = framing; self.keepAlive = keepAlive
        self.expectContinue = expectContinue
    }

    public func first(_ lowercasedName: String) -> String? {
        for i in headers.indices where headers[i].name == lowercasedName { return headers[i].value }
        return nil
    }

    /// (By index: a `for h in headers` loop copies each field, retaining both its strings.)
    public func first(_ known: KnownHeader) -> String? {
        for i in headers.indices where headers[i].known == known { return headers[i].value }
        return nil
    }

    /// How many fields are `known` (hygiene and authentication checks for repeats).
    public func count(_ known: KnownHeader) -> Int {
        var n = 0
        for i in headers.indices where headers[i].known == known { n += 1 }
        return n
    }
}

/// One header field of a response head, as offsets into `HTTPResponseHead.raw`.
public struct HeaderField: Sendable, Equatable {
    public var nameStart: Int32, nameEnd: Int32, valueStart: Int32, valueEnd: Int32
    public var known: KnownHeader
}

/// A parsed response head (from an upstream). The header section is kept as raw bytes with field
/// offsets, so forwarding a response head allocates no String per header.
public struct HTTPResponseHead: Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var minorVersion: Int
    /// The header lines (after the status line), bytes as received.
    public var raw: [UInt8]
    public var fields: [HeaderField]
    public var framing: BodyFraming
    public var keepAlive: Bool

    public func name(_ f: HeaderField) -> String {
        String(decoding: raw[Int(f.nameStart)..<Int(f.nameEnd)], as: UTF8.self).lowercased()
    }

    public func value(_ f: HeaderField) -> String {
        String(decoding: raw[Int(f.valueStart)..<Int(f.valueEnd)], as: UTF8.self)
    }

    public func first(_ known: KnownHeader) -> String? {
        for f in fields where f.known == known { return value(f) }
        return nil
    }

    public func first(_ lowercasedName: String) -> String? {
        for f in fields where name(f) == lowercasedName { return value(f) }
        return nil
    }

    /// All fields as (lowercased name, value) Strings (tests, diagnostics).
    public var headers: [HTTPHeader] { fields.map { HTTPHeader(name: name($0), value: value($0)) } }

    /// Whether the value of `f` starts with `lowercasePrefix`, ignoring ASCII case.
    public func valueHasPrefix(_ f: HeaderField, _ lowercasePrefix: StaticString) -> Bool {
        let n = lowercasePrefix.utf8CodeUnitCount
        guard Int(f.valueEnd - f.valueStart) >= n else { return false }
        let p = lowercasePrefix.utf8Start
        for i in 0..<n where HeadLexer.lower(raw[Int(f.valueStart) + i]) != p[i] { return false }
        return true
    }
}

public enum HTTPStatus {
    public static func reason(_ code: Int) -> String {
        switch code {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }
}

/// Method tests for the hot path: a first-byte test before the compare (an unequal `==` of two
/// strings goes through the standard library's general comparison, ~100 instructions).
public enum HTTPMethodName {
    @inlinable public static func isHEAD(_ m: String) -> Bool { m.utf8.first == 0x48 && m == "HEAD" }
    @inlinable public static func isGET(_ m: String) -> Bool { m.utf8.first == 0x47 && m == "GET" }
}
