/// A strict RFC 8259 reader: one JSON text, nothing after it but whitespace; no comments, no
/// trailing commas, no leading zeros, no lone surrogates, valid UTF-8 only; duplicate member
/// names in an object are an error (JOSE requires it, and a gateway must never read one value
/// where a provider reads another). Nesting is bounded (`maxDepth`).
///
/// Two uses: `parse` builds a `JSONValue` tree (small documents: tokens, keys); `topLevelMember`
/// finds one member of a top-level object as a byte range without building anything, so a
/// request body can have one value replaced and every other byte forwarded as sent.
public struct JSONReader {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at byte \(offset)" }
        public init(offset: Int, reason: String) { self.offset = offset; self.reason = reason }
    }

    public static let maxDepth = 64

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        let result: Result<JSONValue, Failure> = bytes.withUnsafeBytes { b in
            do throws(Failure) { return .success(try parse(b)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public static func parse(_ b: UnsafeRawBufferPointer) throws(Failure) -> JSONValue {
        var r = JSONReader(b)
        r.skipWhitespace()
        let v = try r.value(depth: 0)
        r.skipWhitespace()
        guard r.pos == b.count else { throw r.fail("unexpected data after the JSON value") }
        return v
    }

    /// Validates `bytes` as one JSON object and returns the byte range of the value of its
    /// top-level member `name` (nil when absent). Throws for invalid JSON, a non-object, or a
    /// duplicated top-level `name`.
    public static func topLevelMember(_ name: String, in bytes: UnsafeRawBufferPointer) throws(Failure) -> Range<Int>? {
        try topLevelMembers([name], in: bytes).members[0]
    }

    /// One validating pass over a top-level object: the value range of each of `names` (nil when
    /// absent) and the offset just after the opening `{` (where a member can be inserted), and
    /// whether the object has any member.
    public static func topLevelMembers(_ names: [String], in bytes: UnsafeRawBufferPointer) throws(Failure)
        -> (members: [Range<Int>?], afterBrace: Int, isEmpty: Bool) {
        var found = [Range<Int>?](repeating: nil, count: names.count)
        var r = JSONReader(bytes)
        r.skipWhitespace()
        guard r.pos < bytes.count, bytes[r.pos] == UInt8(ascii: "{") else { throw r.fail("expected a JSON object") }
        r.pos += 1
        let afterBrace = r.pos
        var isEmpty = false
        r.skipWhitespace()
        if r.peek == UInt8(ascii: "}") { r.pos += 1; isEmpty = true } else {
            var seen = Set<String>()
            while true {
                r.skipWhitespace()
                let keyStart = r.pos
                let key = try r.string()
                guard seen.insert(key).inserted else { r.pos = keyStart; throw r.fail("duplicate member name '\(key)'") }
                r.skipWhitespace()
                try r.expect(UInt8(ascii: ":"))
                r.skipWhitespace()
                let start = r.pos
                _ = try r.value(depth: 1, build: false)
                if let i = names.firstIndex(of: key) { found[i] = start..<r.pos }
                r.skipWhitespace()
                if r.peek == UInt8(ascii: ",") { r.pos += 1; continue }
                try r.expect(UInt8(ascii: "}"))
                break
            }
        }
        r.skipWhitespace()
        guard r.pos == bytes.count else { throw r.fail("unexpected data after the JSON value") }
        return (found, afterBrace, isEmpty)
    }

    // MARK: - machinery

    let b: UnsafeRawBufferPointer
    var pos = 0

    init(_ b: UnsafeRawBufferPointer) { self.b = b }

    var peek: UInt8? { pos < b.count ? b[pos] : nil }

    func fail(_ reason: String) -> Failure { Failure(offset: pos, reason: reason) }

    mutating func skipWhitespace() {
        while pos < b.count, b[pos] == 0x20 || b[pos] == 0x0A || b[pos] == 0x0D || b[pos] == 0x09 { pos += 1 }
    }

    mutating func expect(_ c: UInt8) throws(Failure) {
        guard pos < b.count, b[pos] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
        pos += 1
    }

    mutating func literal(_ word: StaticString) throws(Failure) {
        let n = word.utf8CodeUnitCount
        guard pos + n <= b.count else { throw fail("invalid literal") }
        for i in 0..<n where b[pos + i] != word.utf8Start[i] { throw fail("invalid literal") }
        pos += n
    }

    /// One value; with `build: false` it only validates and skips (the tree is `.null`).
    mutating func value(depth: Int, build: Bool = true) throws(Failure) -> JSONValue {
        guard depth < JSONReader.maxDepth else { throw fail("nesting deeper than \(JSONReader.maxDepth)") }
        guard let c = peek else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"):
            pos += 1
            var members: [(name: String, value: JSONValue)] = []
            var names = Set<String>()
            skipWhitespace()
            if peek == UInt8(ascii: "}") { pos += 1; return build ? .object(JSONObject(members)) : .null }
            while true {
                skipWhitespace()
                let keyStart = pos
                let key = try string()
                guard names.insert(key).inserted else { pos = keyStart; throw fail("duplicate member name '\(key)'") }
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let v = try value(depth: depth + 1, build: build)
                if build { members.append((key, v)) }
                skipWhitespace()
                if peek == UInt8(ascii: ",") { pos += 1; continue }
                try expect(UInt8(ascii: "}"))
                return build ? .object(JSONObject(members)) : .null
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if peek == UInt8(ascii: "]") { pos += 1; return build ? .array(items) : .null }
            while true {
                skipWhitespace()
                let v = try value(depth: depth + 1, build: build)
                if build { items.append(v) }
                skipWhitespace()
                if peek == UInt8(ascii: ",") { pos += 1; continue }
                try expect(UInt8(ascii: "]"))
                return build ? .array(items) : .null
            }
        case UInt8(ascii: "\""):
            let s = try string()
            return build ? .string(s) : .null
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = pos
            try number()
            return build ? .numberText(String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<pos]), as: UTF8.self)) : .null
        default:
            throw fail("unexpected character")
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    mutating func number() throws(Failure) {
        @inline(__always) func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 48 && $0 <= 57 } ?? false }
        if peek == UInt8(ascii: "-") { pos += 1 }
        guard isDigit(peek) else { throw fail("invalid number") }
        if peek == UInt8(ascii: "0") { pos += 1; if isDigit(peek) { throw fail("leading zero in number") } }
        else { while isDigit(peek) { pos += 1 } }
        if peek == UInt8(ascii: ".") {
            pos += 1
            guard isDigit(peek) else { throw fail("invalid number") }
            while isDigit(peek) { pos += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            pos += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            guard isDigit(peek) else { throw fail("invalid number") }
            while isDigit(peek) { pos += 1 }
        }
    }

    /// A string literal at `pos` (the opening quote), unescaped; raw bytes must be valid UTF-8.
    mutating func string() throws(Failure) -> String {
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        pos += 1
        let start = pos
        // Fast path: no escapes.
        while pos < b.count {
            let c = b[pos]
            if c == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: b[start..<pos])
                guard let s = String(validating: raw, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            pos += 1
        }
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: b[start..<pos]))
        while true {
            guard pos < b.count else { throw fail("unterminated string") }
            let c = b[pos]
            if c == UInt8(ascii: "\"") { pos += 1; break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); pos += 1; continue }
            pos += 1
            guard let e = peek else { throw fail("unterminated string") }
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard pos + 1 < b.count, b[pos] == UInt8(ascii: "\\"), b[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("lone surrogate in string")
                    }
                    pos += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("lone surrogate in string") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("lone surrogate in string")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
        return s
    }

    mutating func hex4() throws(Failure) -> UInt32 {
        guard pos + 4 <= b.count else { throw fail("invalid \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[pos]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}
