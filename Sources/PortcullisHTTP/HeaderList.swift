import PortcullisCore

/// The elements of a comma-separated header value (RFC 9110 §5.6.1, `#element`: `Connection`,
/// `Transfer-Encoding`) read as bytes, so a request or response head that carries one (every
/// HTTP/1.1 client library sends `Connection: keep-alive`) makes no String per element.
public enum HeaderList {
    /// Calls `body` with each element of `b[s..<e]`, without the optional whitespace around it
    /// (spaces and tabs); empty elements (`a,,b`, `a, ,b`) are skipped. Bytes ≥ 0x80 are passed
    /// as they are: elements are compared ignoring ASCII case only.
    @inline(__always)
    public static func forEach(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        var i = s
        while i < e {
            var j = i
            while j < e && b[j] != 44 /* , */ { j += 1 }
            var ts = i, te = j
            while ts < te && (b[ts] == HeadLexer.SP || b[ts] == HeadLexer.HT) { ts += 1 }
            while te > ts && (b[te - 1] == HeadLexer.SP || b[te - 1] == HeadLexer.HT) { te -= 1 }
            if te > ts { body(UnsafeRawBufferPointer(rebasing: b[ts..<te])) }
            i = j + 1
        }
    }

    /// Whether `element` is `lowercase` (a lowercase ASCII literal) ignoring ASCII case.
    @inline(__always)
    public static func equals(_ element: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        element.count == lowercase.utf8CodeUnitCount
            && HeadLexer.matchesLowercase(element, from: 0, UnsafeRawBufferPointer(start: lowercase.utf8Start, count: element.count))
    }

    /// `name`'s bytes as a header name is compared here: ASCII letters lowercased, and `_` read
    /// as `-` (the spelling a CGI-style backend merges into the dashed one).
    public static func folded(_ name: UnsafeRawBufferPointer) -> [UInt8] {
        name.map { $0 == 95 /* _ */ ? 45 : HeadLexer.lower($0) }
    }

    /// Whether the bytes of `b[s..<e]`, folded as `folded(_:)` does, are `folded`'s.
    @inline(__always)
    public static func foldedEquals(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ folded: [UInt8]) -> Bool {
        guard e - s == folded.count else { return false }
        var i = 0
        while i < folded.count {
            let c = b[s + i]
            if (c == 95 ? 45 : HeadLexer.lower(c)) != folded[i] { return false }
            i += 1
        }
        return true
    }

    /// Whether `b[s..<e]` holds `byte` (`_` in a name a CGI-style backend would fold): a word at
    /// a time, the last overlapping the one before (a name of 4–7 bytes is one word of two halves).
    @inline(__always)
    public static func contains(_ byte: UInt8, _ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> Bool {
        guard let p = b.baseAddress, e - s >= 4 else { return b[s..<e].contains(byte) }
        if e - s < 8 { return ByteWord.firstIndex(of: byte, or: byte, in: HeadLexer.shortWord(p, s, e - s)) != nil }
        var j = s
        while j + 8 < e {
            if ByteWord.firstIndex(of: byte, or: byte, in: (p + j).loadUnaligned(as: UInt64.self)) != nil { return true }
            j += 8
        }
        return ByteWord.firstIndex(of: byte, or: byte, in: (p + e - 8).loadUnaligned(as: UInt64.self)) != nil
    }
}
