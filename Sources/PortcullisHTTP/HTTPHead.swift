import PortcullisCore

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

/// One header field, as offsets into its head's `raw` header lines.
public struct HeaderField: Sendable, Equatable {
    public var nameStart: Int32, nameEnd: Int32, valueStart: Int32, valueEnd: Int32
    public var known: KnownHeader

    /// Whether the line reads `name: value` in `raw` (its head's header bytes): one space
    /// between the colon and the value, so the line copies in one piece.
    @inline(__always) public func isColonSpaceSpelled(in raw: UnsafeRawBufferPointer) -> Bool {
        Int(valueStart) == Int(nameEnd) + 2 && raw[Int(nameEnd) + 1] == HeadLexer.SP
    }

    /// Where the line ends (after its CRLF) when it reads exactly `name: value\r\n` in `raw`
    /// (one space after the colon, nothing after the value), else nil. Such lines, adjacent in
    /// the head, copy out as one run of bytes (relayed response heads, upstream request lines).
    @inline(__always) public func plainLineEnd(in raw: UnsafeRawBufferPointer) -> Int? {
        let ve = Int(valueEnd)
        return isColonSpaceSpelled(in: raw) && ve + 1 < raw.count && raw[ve] == HeadLexer.CR ? ve + 2 : nil
    }
}

/// A head's header section as received: the header lines' bytes and each field's offsets into
/// them. Heads keep this instead of a String per name and value; Strings are made on demand
/// (`first`, `value`), and forwarding copies the bytes.
public protocol RawHeaderBlock {
    /// The header lines (after the start line, without the blank line), bytes as received.
    var raw: [UInt8] { get }
    var fields: [HeaderField] { get }
}

extension RawHeaderBlock {
    /// The field's name, lowercased.
    public func name(_ f: HeaderField) -> String {
        raw.withUnsafeBytes { b in      // (one read of `raw`: through the protocol, each read retains it)
            String(unsafeUninitializedCapacity: Int(f.nameEnd - f.nameStart)) { out in
                for i in Int(f.nameStart)..<Int(f.nameEnd) { out[i - Int(f.nameStart)] = HeadLexer.lower(b[i]) }
                return Int(f.nameEnd - f.nameStart)
            }
        }
    }

    /// Whether the name of `f` starts with `lowercasePrefix`, ignoring ASCII case (no String).
    public func nameHasPrefix(_ f: HeaderField, _ lowercasePrefix: StaticString) -> Bool {
        raw.withUnsafeBytes { f.nameHasPrefix(lowercasePrefix, in: $0) }
    }

    /// Calls `body` with each element of the comma-separated value of `f` (`HeaderList.forEach`).
    public func forEachListElement(_ f: HeaderField, _ body: (UnsafeRawBufferPointer) -> Void) {
        raw.withUnsafeBytes { HeaderList.forEach($0, Int(f.valueStart), Int(f.valueEnd), body) }
    }

    public func value(_ f: HeaderField) -> String {
        raw.withUnsafeBytes { HeadLexer.string($0, Int(f.valueStart), Int(f.valueEnd)) }
    }

    /// (By index: a `for f in fields` loop over a protocol's array copies it.)
    public func first(_ known: KnownHeader) -> String? {
        let fs = fields
        for i in fs.indices where fs[i].known == known { return value(fs[i]) }
        return nil
    }

    /// The first field named `lowercasedName` (compared ignoring ASCII case, without a String per field).
    public func first(_ lowercasedName: String) -> String? {
        let fs = fields
        return lowercasedName.withUTF8Bytes { want in
            raw.withUnsafeBytes { b in
                for i in fs.indices where Int(fs[i].nameEnd - fs[i].nameStart) == want.count
                    && HeadLexer.matchesLowercase(b, from: Int(fs[i].nameStart), want) {
                    return HeadLexer.string(b, Int(fs[i].valueStart), Int(fs[i].valueEnd))
                }
                return nil
            }
        }
    }

    /// How many fields are `known` (hygiene and authentication checks for repeats).
    public func count(_ known: KnownHeader) -> Int {
        var n = 0
        for f in fields where f.known == known { n += 1 }
        return n
    }

    /// All fields as (lowercased name, value) Strings (tests, diagnostics, rare paths).
    public var headers: [HTTPHeader] { fields.map { HTTPHeader(name: name($0), value: value($0), known: $0.known) } }

    /// Whether the value of `f` starts with `lowercasePrefix`, ignoring ASCII case.
    public func valueHasPrefix(_ f: HeaderField, _ lowercasePrefix: StaticString) -> Bool {
        let n = lowercasePrefix.utf8CodeUnitCount
        guard Int(f.valueEnd - f.valueStart) >= n else { return false }
        return raw.withUnsafeBytes {
            HeadLexer.matchesLowercase($0, from: Int(f.valueStart), UnsafeRawBufferPointer(start: lowercasePrefix.utf8Start, count: n))
        }
    }

    /// Writes `name: value\r\n` for `f`, the name lowercased, the value's bytes as received:
    /// its name's and value's bytes and 4 more, at most 3 more than the line as received.
    public func writeLine(_ f: HeaderField, to w: inout UnsafeByteWriter) {
        raw.withUnsafeBytes { f.writeLine(from: $0, to: &w) }
    }
}

extension HeaderField {
    /// Writes `name: value\r\n` for this field of `raw` (its head's header bytes), the name
    /// lowercased, the value's bytes as received: its name's and value's bytes and 4 more, at
    /// most 3 more than the line as received.
    @inline(__always)
    public func writeLine(from raw: UnsafeRawBufferPointer, to w: inout UnsafeByteWriter) {
        let ns = Int(nameStart), ne = Int(nameEnd), vs = Int(valueStart), ve = Int(valueEnd)
        let name = w.end
        if isColonSpaceSpelled(in: raw) {
            w.put(UnsafeRawBufferPointer(rebasing: raw[ns..<ve]))        // `name: value` as received: one copy
        } else {
            w.put(UnsafeRawBufferPointer(rebasing: raw[ns..<ne]))
            w.put(": ")
            w.put(UnsafeRawBufferPointer(rebasing: raw[vs..<ve]))
        }
        w.put("\r\n")
        HeadLexer.lowercase(name, count: ne - ns)
    }

    /// Whether this field's name in `raw` (its head's header bytes) starts with
    /// `lowercasePrefix`, ignoring ASCII case.
    @inline(__always)
    public func nameHasPrefix(_ lowercasePrefix: StaticString, in raw: UnsafeRawBufferPointer) -> Bool {
        let n = lowercasePrefix.utf8CodeUnitCount
        guard Int(nameEnd - nameStart) >= n else { return false }
        return HeadLexer.matchesLowercase(raw, from: Int(nameStart), UnsafeRawBufferPointer(start: lowercasePrefix.utf8Start, count: n))
    }

    /// Lowercases this field's name where a copy of its line put it (`name`: its first byte).
    @inline(__always)
    public func lowercaseName(at name: UnsafeMutablePointer<UInt8>) {
        HeadLexer.lowercase(name, count: Int(nameEnd - nameStart))
    }
}

/// A parsed request head. Read-only outside this module; a class so that passing it through the
/// pipeline shares one reference instead of copying (and retaining) every field. The header
/// section stays bytes (`RawHeaderBlock`): a request makes Strings only of the few fields the
/// gateway reads.
///
/// Reuse: a connection's parser keeps its last head (`HeadScanState.spare`) and refills that
/// object for the next request only when nothing else holds it (`isKnownUniquelyReferenced`),
/// so a head somebody still reads — a context kept by a late timer, a test — never changes
/// under them; they keep theirs and the parser makes a new one. Loop thread of its connection only.
public final class HTTPRequestHead: RawHeaderBlock, @unchecked Sendable {
    public internal(set) var method: String
    /// The origin-form target (path and query); absolute-form is reduced to it.
    public internal(set) var target: String
    /// `target` without the query string (computed once at parse time; routing reads it).
    public internal(set) var path: String
    /// 0 for HTTP/1.0; 1 for HTTP/1.1 and any HTTP/1.x with x > 1 (served as 1.1).
    public internal(set) var minorVersion: Int
    public internal(set) var raw: [UInt8]
    public internal(set) var fields: [HeaderField]
    public internal(set) var framing: BodyFraming
    public internal(set) var keepAlive: Bool
    public internal(set) var expectContinue: Bool

    /// The parser's initialiser: `path` was cut from the bytes already.
    init(method: String, target: String, path: String, minorVersion: Int, raw: [UInt8], fields: [HeaderField],
         framing: BodyFraming, keepAlive: Bool, expectContinue: Bool) {
        self.method = method; self.target = target; self.path = path; self.minorVersion = minorVersion
        self.raw = raw; self.fields = fields; self.framing = framing; self.keepAlive = keepAlive
        self.expectContinue = expectContinue
    }

    /// The parser's refill of a head nobody else holds: `raw` keeps its storage (a copy into
    /// it, no allocation), `fields` takes the parser's array.
    func refill(method: String, target: String, path: String, minorVersion: Int, raw bytes: UnsafeRawBufferPointer,
                fields: [HeaderField], framing: BodyFraming, keepAlive: Bool, expectContinue: Bool) {
        self.method = method; self.target = target; self.path = path; self.minorVersion = minorVersion
        raw.removeAll(keepingCapacity: true)
        raw.append(bytes: bytes)
        self.fields = fields; self.framing = framing; self.keepAlive = keepAlive
        self.expectContinue = expectContinue
    }
}

/// A parsed response head (from an upstream). The header section is kept as raw bytes with field
/// offsets, so forwarding a response head allocates no String per header.
public struct HTTPResponseHead: RawHeaderBlock, Sendable, Equatable {
    public var status: Int
    public var reason: String
    public var minorVersion: Int
    /// The header lines (after the status line), bytes as received.
    public var raw: [UInt8]
    public var fields: [HeaderField]
    public var framing: BodyFraming
    public var keepAlive: Bool
}

public enum HTTPStatus {
    public static func reason(_ code: Int) -> String { reasonPhrase(code).description }

    /// The standard reason phrase, as a literal (its bytes at hand with no String to make).
    public static func reasonPhrase(_ code: Int) -> StaticString {
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
