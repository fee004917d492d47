#if canImport(Glibc)
import Glibc
#endif
import PortcullisCore

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
        try topLevelMembers([name], in: bytes).member(0)
    }

    /// What `topLevelMembers` found: fixed-size storage (this runs per request; an array here
    /// costs an allocation and a runtime metadata lookup).
    public struct TopLevelScan {
        var b0 = -1, e0 = -1, b1 = -1, e1 = -1, b2 = -1, e2 = -1, b3 = -1, e3 = -1, b4 = -1, e4 = -1, b5 = -1, e5 = -1
        let count: Int
        /// Just after the opening `{`: where a member can be inserted.
        public var afterBrace = 0
        /// The object has no member.
        public var isEmpty = false

        init(count: Int) { self.count = count }

        /// The value range of the `i`th asked-for name, nil when absent.
        public func member(_ i: Int) -> Range<Int>? {
            let (b, e) = switch i { case 0: (b0, e0); case 1: (b1, e1); case 2: (b2, e2); case 3: (b3, e3); case 4: (b4, e4); default: (b5, e5) }
            return b < 0 ? nil : b..<e
        }

        mutating func set(_ i: Int, _ b: Int, _ e: Int) {
            switch i {
            case 0: (b0, e0) = (b, e); case 1: (b1, e1) = (b, e); case 2: (b2, e2) = (b, e)
            case 3: (b3, e3) = (b, e); case 4: (b4, e4) = (b, e); default: (b5, e5) = (b, e)
            }
        }

        /// Every asked-for name's value range (tests, diagnostics).
        public var members: [Range<Int>?] { (0..<count).map(member) }
    }

    /// One validating pass over a top-level object (strict RFC 8259 throughout): the value range
    /// of each of `names` (at most 6), where a member can be inserted, and whether the object is
    /// empty. A name the gateway reads may occur once (in any spelling: escapes are decoded);
    /// other duplicate names, like everything nested, are the provider's to judge. Allocates
    /// nothing unless a top-level name contains an escape.
    public static func topLevelMembers(_ names: [String], in bytes: UnsafeRawBufferPointer) throws(Failure) -> TopLevelScan {
        try members(names, in: bytes, nestedIn: -1, []).outer
    }

    /// The same pass, which also finds `nestedNames` in the value of `names[member]` when that
    /// value is an object (`nested`; nil when it is absent or not an object), as
    /// `topLevelMembers` would find them in that object alone — a nested name it reads may occur
    /// once there too — with ranges into `bytes`: one pass where two would read the inner object
    /// twice. Names prepared as bytes (`JSONNames`): a key is compared with one length test and
    /// one `memcmp` a name.
    public static func topLevelMembers(_ names: JSONNames, in bytes: UnsafeRawBufferPointer, nestedIn member: Int,
                                       _ nestedNames: JSONNames) throws(Failure) -> (outer: TopLevelScan, nested: TopLevelScan?) {
        try members(names, in: bytes, nestedIn: member, nestedNames)
    }

    /// `topLevelMembers` for either kind of name set. `member` −1: no value is read for names of
    /// its own, and `nestedNames` is never read (callers pass `names` or `[]`). (A sentinel, not an
    /// optional `(member, names)`: that version cost a translated stream event ~600 instructions.)
    static func members<N: MemberNameSet>(_ names: N, in bytes: UnsafeRawBufferPointer, nestedIn member: Int,
                                          _ nestedNames: N) throws(Failure) -> (outer: TopLevelScan, nested: TopLevelScan?) {
        precondition(names.count <= JSONNames.maxCount && nestedNames.count <= JSONNames.maxCount, "topLevelMembers reads at most 6 names")
        var r = JSONReader(bytes)
        r.skipWhitespace()
        guard r.pos < bytes.count, bytes[r.pos] == UInt8(ascii: "{") else { throw r.fail("expected a JSON object") }
        var nested: TopLevelScan?
        let found = try r.objectMembers(names, depth: 0, nestedIn: member, nestedNames, &nested)
        r.skipWhitespace()
        guard r.pos == bytes.count else { throw r.fail("unexpected data after the JSON value") }
        return (found, nested)
    }

    /// The object at `pos` (its `{`), read strictly to just past its `}`: the value ranges of
    /// `names`, refusing any of them repeated; the object value of `names[member]` read the same
    /// way for `nestedNames` into `nested`. Member values are read at `depth + 1`.
    mutating func objectMembers<N: MemberNameSet>(_ names: N, depth: Int, nestedIn member: Int, _ nestedNames: N,
                                                  _ nested: inout TopLevelScan?) throws(Failure) -> TopLevelScan {
        var found = TopLevelScan(count: names.count)
        pos += 1
        found.afterBrace = pos
        skipWhitespace()
        if peek == UInt8(ascii: "}") { pos += 1; found.isEmpty = true; return found }
        while true {
            skipWhitespace()
            let keyStart = pos
            let escaped = try skipString()
            let raw = (keyStart + 1)..<(pos - 1)
            var matchIndex: Int? = nil
            if escaped {
                var kr = JSONReader(b); kr.pos = keyStart
                matchIndex = names.index(decoded: try kr.string())
            } else {
                matchIndex = names.index(in: b, raw: raw)
            }
            if let i = matchIndex, found.member(i) != nil {
                pos = keyStart
                throw fail("duplicate member name '\(names.name(i))'")
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            let start = pos
            if let i = matchIndex, i == member, peek == UInt8(ascii: "{") {
                var none: TopLevelScan?
                nested = try objectMembers(nestedNames, depth: depth + 1, nestedIn: -1, nestedNames, &none)
            } else {
                _ = try value(depth: depth + 1, build: false)
            }
            if let i = matchIndex { found.set(i, start, pos) }
            skipWhitespace()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            try expect(UInt8(ascii: "}"))
            return found
        }
    }

    /// The string literal occupying exactly `range` of `bytes`, unescaped; nil if it is not one.
    public static func stringValue(_ range: Range<Int>, in bytes: UnsafeRawBufferPointer) -> String? {
        var r = JSONReader(UnsafeRawBufferPointer(rebasing: bytes[range]))
        guard let s = try? r.string(), r.pos == range.count else { return nil }
        return s
    }

    @inline(__always) static func equal(_ b: UnsafeRawBufferPointer, _ x: Range<Int>, _ y: Range<Int>) -> Bool {
        guard x.count == y.count, let base = b.baseAddress else { return false }
        return memcmp(base + x.lowerBound, base + y.lowerBound, x.count) == 0
    }

    @inline(__always) static func equal(_ b: UnsafeRawBufferPointer, _ x: Range<Int>, _ name: String) -> Bool {
        guard x.count == name.utf8.count, let base = b.baseAddress else { return false }
        if let r = name.utf8.withContiguousStorageIfAvailable({ memcmp(base + x.lowerBound, $0.baseAddress!, x.count) == 0 }) { return r }
        var i = x.lowerBound
        for c in name.utf8 { if b[i] != c { return false }; i += 1 }
        return true
    }

    // MARK: - machinery

    let b: UnsafeRawBufferPointer
    var pos = 0

    init(_ b: UnsafeRawBufferPointer) { self.b = b }

    var peek: UInt8? { pos < b.count ? b[pos] : nil }

    func fail(_ reason: String) -> Failure { Failure(offset: pos, reason: reason) }

    mutating func skipWhitespace() {
        var p = pos
        let n = b.count
        while p < n {
            let c = b[p]
            guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { break }
            p += 1
        }
        pos = p
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
            skipWhitespace()
            if peek == UInt8(ascii: "}") { pos += 1; return build ? .object(JSONObject([])) : .null }
            if !build { try skipObjectMembers(depth: depth); return .null }   // nested names: the provider's to read
            var members: [(name: String, value: JSONValue)] = []
            var names = Set<String>()
            while true {
                skipWhitespace()
                let keyStart = pos
                let key = try string()
                guard names.insert(key).inserted else { pos = keyStart; throw fail("duplicate member name '\(key)'") }
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let v = try value(depth: depth + 1, build: build)
                members.append((key, v))
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
            if !build { _ = try skipString(); return .null }
            return .string(try string())
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

    /// The members of an object being validated only (after its `{`, not empty), through its `}`.
    mutating func skipObjectMembers(depth: Int) throws(Failure) {
        while true {
            skipWhitespace()
            _ = try skipString()
            skipWhitespace()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            _ = try value(depth: depth + 1, build: false)
            skipWhitespace()
            if peek == UInt8(ascii: ",") { pos += 1; continue }
            try expect(UInt8(ascii: "}"))
            return
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
        let quote = pos
        // Validate the whole literal first (UTF-8, escapes, controls); then decoding cannot fail.
        let escaped = try skipString()
        let start = quote + 1
        if !escaped { return String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<(pos - 1)]), as: UTF8.self) }
        pos = start
        while pos < b.count && b[pos] != UInt8(ascii: "\\") { pos += 1 }
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
                guard let u = Unicode.Scalar(try unicodeEscape()) else { throw fail("invalid escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Validates the string literal at `pos` (escapes, surrogate pairs, control characters,
    /// UTF-8) without building it; returns whether it contained an escape.
    mutating func skipString() throws(Failure) -> Bool {
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        pos += 1
        var escaped = false
        guard let base = b.baseAddress?.assumingMemoryBound(to: UInt8.self) else { throw fail("unterminated string") }
        let n = b.count
        while pos < n {
            // Plain printable ASCII runs need no more than this test (a local index: `pos` is
            // stored through `self` and would be written back on every byte).
            var p = pos
            // Eight plain bytes a word (`ByteWord.isPlainJSONStringWord`), then byte by byte
            // from the first word holding anything else.
            while p &+ 8 <= n && ByteWord.isPlainJSONStringWord(UnsafeRawPointer(base + p).loadUnaligned(as: UInt64.self)) { p &+= 8 }
            if p == n { pos = p; throw fail("unterminated string") }
            var c = base[p]
            while c >= 0x20 && c < 0x80 && c != 0x22 && c != 0x5C {
                p += 1
                if p == n { pos = p; throw fail("unterminated string") }
                c = base[p]
            }
            pos = p
            if c == UInt8(ascii: "\"") { pos += 1; return escaped }
            if c < 0x20 { throw fail("control character in string") }
            if c == UInt8(ascii: "\\") {
                escaped = true
                pos += 1
                guard let e = peek else { break }
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    continue
                case UInt8(ascii: "u"):
                    _ = try unicodeEscape()
                    continue
                default:
                    throw fail("invalid escape")
                }
            }
            if c < 0x80 { pos += 1; continue }
            // A UTF-8 sequence (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
            let more: Int, lo: UInt8, hi: UInt8
            switch c {
            case 0xC2...0xDF: (more, lo, hi) = (1, 0x80, 0xBF)
            case 0xE0: (more, lo, hi) = (2, 0xA0, 0xBF)
            case 0xE1...0xEC, 0xEE, 0xEF: (more, lo, hi) = (2, 0x80, 0xBF)
            case 0xED: (more, lo, hi) = (2, 0x80, 0x9F)
            case 0xF0: (more, lo, hi) = (3, 0x90, 0xBF)
            case 0xF1...0xF3: (more, lo, hi) = (3, 0x80, 0xBF)
            case 0xF4: (more, lo, hi) = (3, 0x80, 0x8F)
            default: throw fail("invalid UTF-8 in string")
            }
            guard pos + more < n, b[pos + 1] >= lo, b[pos + 1] <= hi else { throw fail("invalid UTF-8 in string") }
            for k in 2...max(2, more) where k <= more {
                guard b[pos + k] >= 0x80 && b[pos + k] <= 0xBF else { throw fail("invalid UTF-8 in string") }
            }
            pos += more + 1
        }
        throw fail("unterminated string")
    }

    /// The code point of a `\\uXXXX` escape (after the `u`), joining a surrogate pair; a lone
    /// surrogate is an error.
    mutating func unicodeEscape() throws(Failure) -> UInt32 {
        let v = try hex4()
        if v >= 0xDC00 && v < 0xE000 { throw fail("lone surrogate in string") }
        guard v >= 0xD800 && v < 0xDC00 else { return v }
        guard pos + 1 < b.count, b[pos] == UInt8(ascii: "\\"), b[pos + 1] == UInt8(ascii: "u") else {
            throw fail("lone surrogate in string")
        }
        pos += 2
        let low = try hex4()
        guard low >= 0xDC00 && low < 0xE000 else { throw fail("lone surrogate in string") }
        return 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
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

/// The names a strict member read looks for: a key without escapes compared as raw bytes, an
/// escaped one as its decoded string. `[String]` for general callers, `JSONNames` (bytes
/// prepared once) on hot paths; `objectMembers` is specialized for each.
protocol MemberNameSet {
    var count: Int { get }
    func index(in b: UnsafeRawBufferPointer, raw: Range<Int>) -> Int?
    func index(decoded: String) -> Int?
    func name(_ i: Int) -> String
}

extension Array: MemberNameSet where Element == String {
    func index(in b: UnsafeRawBufferPointer, raw: Range<Int>) -> Int? {
        for (i, n) in enumerated() where JSONReader.equal(b, raw, n) { return i }
        return nil
    }
    func index(decoded: String) -> Int? { firstIndex(of: decoded) }
    func name(_ i: Int) -> String { self[i] }
}

extension JSONNames: MemberNameSet {
    @inline(__always) func index(in b: UnsafeRawBufferPointer, raw: Range<Int>) -> Int? {
        guard let base = b.baseAddress else { return nil }
        return index(of: base + raw.lowerBound, count: raw.count)
    }
    func index(decoded: String) -> Int? { strings.firstIndex(of: decoded) }
    func name(_ i: Int) -> String { strings[i] }
}
